//! The HTTP envelope around the endpoints: health, CORS, rate limits,
//! metrics.

use std::time::Duration;

use auth_server::{Config, CorsOrigins, RateLimit};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_answer_200_without_credentials() {
    let app = spawn_app(config()).await;

    let health = app.get("/healthz", None).await;
    let ready = app.get("/readyz", None).await;

    assert_eq!(health.status(), 200);
    assert_eq!(within(health.text()).await.unwrap(), "ok\n");
    assert_eq!(ready.status(), 200);
    assert_eq!(within(ready.text()).await.unwrap(), "ready\n");
}

async fn preflight(app: &TestApp, origin: &str, method: &str) -> reqwest::Response {
    within(
        app.client
            .request(Method::OPTIONS, app.url("/api/ably-jwt"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn cors_any_answers_preflights_naming_authorization_and_content_type() {
    let app = spawn_app(Config {
        cors_origins: CorsOrigins::Any,
        ..config()
    })
    .await;

    for method in ["GET", "POST"] {
        let response = preflight(&app, "https://app.example", method).await;

        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert_eq!(headers["access-control-allow-methods"], "GET,POST");
        assert_eq!(
            headers["access-control-allow-headers"],
            "authorization,content-type"
        );
    }
}

#[tokio::test]
async fn cors_list_allows_only_listed_origins_and_exposes_ably_error_headers() {
    let app = spawn_app(Config {
        cors_origins: CorsOrigins::List(vec!["https://app.example".to_owned()]),
        ..config()
    })
    .await;

    let allowed = preflight(&app, "https://app.example", "GET").await;
    let other = preflight(&app, "https://evil.example", "GET").await;
    let error = within(
        app.client
            .get(app.url("/api/ably-jwt"))
            .header("origin", "https://app.example")
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_eq!(error.status(), 401);
    assert_eq!(
        error.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        error.headers()["access-control-expose-headers"],
        "x-ably-errorcode,x-ably-errormessage,retry-after"
    );
}

#[tokio::test]
async fn without_cors_origins_no_cors_headers_are_sent() {
    let app = spawn_app(config()).await;

    let response = preflight(&app, "https://app.example", "GET").await;

    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn per_user_rate_limit_is_429_with_retry_after() {
    let app = spawn_app(Config {
        rate_limit_per_user: Some(RateLimit {
            count: 2,
            period: Duration::from_secs(60),
        }),
        ..config()
    })
    .await;
    let alice = user_token("alice", &json!({}));
    let bob = user_token("bob", &json!({}));

    let first = app.get("/api/ably-jwt", Some(&alice)).await;
    let second = app.get("/api/ably-jwt", Some(&alice)).await;
    let third = app.get("/api/ably-jwt", Some(&alice)).await;
    let other_user = app.get("/api/ably-jwt", Some(&bob)).await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(other_user.status(), 200);
    assert_eq!(third.headers()["retry-after"], "30");
    assert_ably_error(third, 429, 42910, "rate limit exceeded (per user)").await;
}

#[tokio::test]
async fn per_ip_rate_limit_applies_before_verification() {
    let app = spawn_app(Config {
        rate_limit_per_ip: Some(RateLimit {
            count: 1,
            period: Duration::from_secs(1),
        }),
        ..config()
    })
    .await;

    let first = app.get("/api/ably-jwt", Some("not-even-a-jwt")).await;
    let second = app
        .get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
        .await;
    let health = app.get("/healthz", None).await;

    assert_eq!(first.status(), 401);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_ably_error(second, 429, 42910, "rate limit exceeded (per IP)").await;
    assert_eq!(health.status(), 200, "health checks are not limited");
}

#[tokio::test]
async fn metrics_count_issued_tokens_refusals_and_latency() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));
    app.get("/api/ably-jwt", Some(&token)).await;
    app.get("/api/ably-token-request", Some(&token)).await;
    app.get("/api/ably-jwt", None).await;

    let response = app.get("/metrics", None).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let text = within(response.text()).await.unwrap();
    for line in [
        "auth_tokens_issued_total{kind=\"jwt\"} 1",
        "auth_tokens_issued_total{kind=\"token_request\"} 1",
        "auth_tokens_issued_total{kind=\"token\"} 0",
        "auth_refusals_total{reason=\"no_credentials\"} 1",
        "auth_request_duration_seconds_count{route=\"/api/ably-jwt\"} 2",
        "auth_request_duration_seconds_bucket{route=\"/api/ably-token-request\",le=\"+Inf\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_per_ip_limit_uses_x_forwarded_for() {
    let limit = Some(RateLimit {
        count: 1,
        period: Duration::from_secs(60),
    });
    let trusting = spawn_app(Config {
        rate_limit_per_ip: limit,
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..config()
    })
    .await;
    let untrusting = spawn_app(Config {
        rate_limit_per_ip: limit,
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));
    let from = |app: &TestApp, client: &'static str| {
        app.client
            .get(app.url("/api/ably-jwt"))
            .bearer_auth(&token)
            .header("x-forwarded-for", client)
            .send()
    };

    let first = within(from(&trusting, "198.51.100.1")).await.unwrap();
    let other_client = within(from(&trusting, "198.51.100.2")).await.unwrap();
    let same_client = within(from(&trusting, "198.51.100.1")).await.unwrap();
    let spoofed_first = within(from(&untrusting, "198.51.100.1")).await.unwrap();
    let spoofed_second = within(from(&untrusting, "198.51.100.2")).await.unwrap();

    assert_eq!(first.status(), 200);
    assert_eq!(other_client.status(), 200);
    assert_eq!(same_client.status(), 429);
    assert_eq!(spoofed_first.status(), 200);
    assert_eq!(
        spoofed_second.status(),
        429,
        "an untrusted peer's header is ignored"
    );
}

#[tokio::test]
async fn rotating_addresses_inside_one_ipv6_64_cannot_escape_the_per_ip_limit() {
    let app = spawn_app(Config {
        rate_limit_per_ip: Some(RateLimit {
            count: 1,
            period: Duration::from_secs(60),
        }),
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));
    let status = |client: &'static str| {
        let request = app
            .client
            .get(app.url("/api/ably-jwt"))
            .bearer_auth(&token)
            .header("x-forwarded-for", client)
            .send();
        async move { within(request).await.unwrap().status() }
    };

    let first = status("2001:db8:1:2::1").await;
    let same_64 = status("2001:db8:1:2:a:b:c:d").await;
    let other_64 = status("2001:db8:1:3::1").await;
    let ipv4 = status("198.51.100.7").await;
    let mapped_ipv4 = status("::ffff:198.51.100.7").await;

    assert_eq!(first, 200);
    assert_eq!(same_64, 429, "another address of the same /64");
    assert_eq!(other_64, 200, "the next /64 is someone else");
    assert_eq!(ipv4, 200);
    assert_eq!(
        mapped_ipv4, 429,
        "an IPv4-mapped address is its IPv4 address"
    );
}
