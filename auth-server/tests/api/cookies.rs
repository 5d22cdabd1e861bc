//! `AUTH_APP_JWT_COOKIE`: the app JWT read from a session cookie when there
//! is no `Authorization` header, and the CORS credentials that let listed
//! origins send it.

use auth_server::{Config, CorsOrigins};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderValue};
use serde_json::json;

use crate::helpers::*;

/// A server reading the app JWT from the `session` cookie.
async fn with_cookie() -> TestApp {
    spawn_app(Config {
        app_jwt_cookie: Some("session".to_owned()),
        ..config()
    })
    .await
}

/// `GET /api/ably-jwt` with exactly these extra headers (raw values).
async fn jwt_with(
    app: &TestApp,
    headers: &[(reqwest::header::HeaderName, HeaderValue)],
) -> reqwest::Response {
    let mut request = app.client.get(app.url("/api/ably-jwt"));
    for (name, value) in headers {
        request = request.header(name, value.clone());
    }
    within(request.send()).await.unwrap()
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap()
}

#[tokio::test]
async fn the_app_jwt_is_read_from_the_cookie_when_there_is_no_authorization_header() {
    let app = with_cookie().await;
    let alice = user_token("alice", &json!({}));

    let among_others = jwt_with(
        &app,
        &[(
            COOKIE,
            value(&format!("theme=dark; flag; session={alice}; lang=en")),
        )],
    )
    .await;
    let quoted = jwt_with(&app, &[(COOKIE, value(&format!("session=\"{alice}\"")))]).await;
    // HTTP/2 and some proxies split cookies over several headers.
    let second_header = jwt_with(
        &app,
        &[
            (COOKIE, value("theme=dark")),
            (COOKIE, value(&format!("session={alice}"))),
        ],
    )
    .await;

    for response in [among_others, quoted, second_header] {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/jwt");
        let jwt = within(response.text()).await.unwrap();
        assert_eq!(verified_jwt(&jwt).client_id, "alice");
    }
}

#[tokio::test]
async fn the_authorization_header_wins_over_the_cookie() {
    let app = with_cookie().await;
    let alice = user_token("alice", &json!({}));
    let bob = user_token("bob", &json!({}));

    let both = jwt_with(
        &app,
        &[
            (AUTHORIZATION, value(&format!("Bearer {bob}"))),
            (COOKIE, value(&format!("session={alice}"))),
        ],
    )
    .await;
    // A bad header is not rescued by a good cookie.
    let bad_header = jwt_with(
        &app,
        &[
            (AUTHORIZATION, value("Bearer not-a-jwt")),
            (COOKIE, value(&format!("session={alice}"))),
        ],
    )
    .await;

    assert_eq!(both.status(), 200);
    let jwt = within(both.text()).await.unwrap();
    assert_eq!(verified_jwt(&jwt).client_id, "bob");
    assert_ably_error(bad_header, 401, 40101, "invalid app token").await;
}

#[tokio::test]
async fn without_the_setting_no_cookie_is_read() {
    let app = spawn_app(config()).await;
    let alice = user_token("alice", &json!({}));

    let response = jwt_with(&app, &[(COOKIE, value(&format!("session={alice}")))]).await;

    let error = assert_ably_error(response, 401, 40101, "").await;
    assert_eq!(
        error["message"],
        "no app token: send Authorization: Bearer <app JWT>"
    );
}

#[tokio::test]
async fn no_header_and_no_cookie_is_a_401_naming_the_cookie() {
    let app = with_cookie().await;

    let no_cookie = jwt_with(&app, &[]).await;
    let other_cookies =
        jwt_with(&app, &[(COOKIE, value("sessionx=1; xsession=2; session="))]).await;

    for response in [no_cookie, other_cookies] {
        let error = assert_ably_error(response, 401, 40101, "").await;
        assert_eq!(
            error["message"],
            "no app token: send Authorization: Bearer <app JWT> or the session cookie"
        );
    }
}

#[tokio::test]
async fn a_malformed_or_oversized_cookie_is_a_clear_401() {
    let app = with_cookie().await;
    let alice = user_token("alice", &json!({}));
    let cases = [
        (
            HeaderValue::from_bytes(b"session=caf\xc3\xa9").unwrap(),
            "invalid app token: Cookie header is not visible ASCII",
        ),
        (
            value("session=a\\b"),
            "invalid app token: the session cookie holds a character no cookie value may hold",
        ),
        (
            value("session=\"unterminated"),
            "invalid app token: the session cookie holds a character no cookie value may hold",
        ),
        (
            value(&format!("session={}", "a".repeat(4097))),
            "invalid app token: the session cookie is longer than 4096 bytes",
        ),
        (value("session=not-a-jwt"), "invalid app token: "),
    ];

    for (cookie, message) in cases {
        let response = jwt_with(&app, &[(COOKIE, cookie)]).await;

        let error = assert_ably_error(response, 401, 40101, message).await;
        assert!(error["message"].as_str().unwrap().starts_with(message));
    }
    // The server is still there, and the same cookie well formed works.
    let fine = jwt_with(&app, &[(COOKIE, value(&format!("session={alice}")))]).await;
    assert_eq!(fine.status(), 200);
}

/// A preflight and a cross-origin GET from `origin`, as a page's
/// `fetch(..., {credentials: 'include'})` makes them.
async fn cross_origin(app: &TestApp, origin: &str) -> (reqwest::Response, reqwest::Response) {
    let preflight = within(
        app.client
            .request(Method::OPTIONS, app.url("/api/ably-jwt"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send(),
    )
    .await
    .unwrap();
    let get = within(
        app.client
            .get(app.url("/api/ably-jwt"))
            .header("origin", origin)
            .header(
                COOKIE,
                format!("session={}", user_token("alice", &json!({}))),
            )
            .send(),
    )
    .await
    .unwrap();
    (preflight, get)
}

#[tokio::test]
async fn listed_origins_may_send_the_cookie_cross_origin() {
    let app = spawn_app(Config {
        app_jwt_cookie: Some("session".to_owned()),
        cors_origins: CorsOrigins::List(vec!["https://app.example".to_owned()]),
        ..config()
    })
    .await;

    let (preflight, get) = cross_origin(&app, "https://app.example").await;
    let (other_preflight, _) = cross_origin(&app, "https://evil.example").await;

    for response in [&preflight, &get] {
        let headers = response.headers();
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example"
        );
        assert_eq!(headers["access-control-allow-credentials"], "true");
    }
    assert_eq!(get.status(), 200);
    // Without `Access-Control-Allow-Origin` the browser refuses the
    // preflight, whatever else it says.
    assert!(
        other_preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn credentials_are_never_allowed_with_any_origin_or_without_the_cookie() {
    let any = spawn_app(Config {
        app_jwt_cookie: Some("session".to_owned()),
        cors_origins: CorsOrigins::Any,
        ..config()
    })
    .await;
    let listed_without_cookie = spawn_app(Config {
        cors_origins: CorsOrigins::List(vec!["https://app.example".to_owned()]),
        ..config()
    })
    .await;

    let (any_preflight, any_get) = cross_origin(&any, "https://app.example").await;
    let (listed_preflight, listed_get) =
        cross_origin(&listed_without_cookie, "https://app.example").await;

    for response in [&any_preflight, &any_get] {
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
    }
    for response in [&listed_preflight, &listed_get] {
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example"
        );
    }
    for response in [any_preflight, any_get, listed_preflight, listed_get] {
        assert!(
            response
                .headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
}

/// The cookie with `AUTH_CORS_ORIGINS=*` is allowed (same-origin pages still
/// send it) but said at start-up to work same-origin only.
#[test]
fn the_cookie_with_any_origin_is_a_start_up_warning() {
    let capture = crate::logs::Capture::default();
    let _guard = capture.trace();

    let _any = auth_server::AppState::new(Config {
        app_jwt_cookie: Some("session".to_owned()),
        cors_origins: CorsOrigins::Any,
        ..config()
    })
    .unwrap();
    let warned_for_any = capture.text();
    let _listed = auth_server::AppState::new(Config {
        app_jwt_cookie: Some("session".to_owned()),
        cors_origins: CorsOrigins::List(vec!["https://app.example".to_owned()]),
        ..config()
    })
    .unwrap();

    let line = warned_for_any
        .lines()
        .find(|line| line.contains("AUTH_APP_JWT_COOKIE with AUTH_CORS_ORIGINS=*"))
        .unwrap_or_else(|| panic!("no warning in {warned_for_any}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("cookie=session"), "{line}");
    assert_eq!(
        capture.text(),
        warned_for_any,
        "no warning with listed origins"
    );
}
