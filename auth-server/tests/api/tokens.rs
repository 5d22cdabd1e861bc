//! Issuing Ably JWTs and TokenRequests: shapes, claims, policy, narrowing and
//! TTLs. Every credential is checked independently of the `shared` code
//! that mints it: JWTs with jsonwebtoken itself, MACs recomputed by hand.

use std::time::Duration;

use auth_server::{Config, Policy};
use serde_json::{Value, json};
use shared::jwt::verify_jwt;
use shared::{Capability, TokenRequest};

use crate::helpers::*;

const ALL_FOUR: &str = r#"{"*":["history","presence","publish","subscribe"]}"#;

const POLICY: &str = r#"
[default]
"chat:*" = ["subscribe", "publish", "presence", "history"]
"private:{clientId}" = ["*"]

[roles.admin]
"*" = ["*"]

[roles.designer]
spaces = ["board-1"]
"#;

fn with_policy() -> Config {
    Config {
        policy: Policy::from_toml(POLICY).unwrap(),
        ..config()
    }
}

/// Checks an Ably JWT independently of `shared` and returns its claims.
fn verified(jwt: &str) -> IssuedJwt {
    verified_jwt(jwt)
}

async fn jwt_body(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/jwt");
    assert_eq!(response.headers()["cache-control"], "no-store");
    within(response.text()).await.unwrap()
}

#[tokio::test]
async fn jwt_endpoint_issues_a_verifiable_ably_jwt_with_the_default_capability() {
    let app = spawn_app(config()).await;
    let before = now_secs();

    let response = app
        .get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
        .await;

    let jwt = jwt_body(response).await;
    let claims = verified(&jwt);
    assert_eq!(claims.client_id, "alice");
    assert_eq!(claims.capability, ALL_FOUR);
    assert!(claims.iat >= before && claims.iat <= now_secs());
    assert_eq!(claims.exp - claims.iat, 3600);
    // And Ably's own rules, as `shared` (and so the mock) applies them.
    let key = ably_key();
    let ably = verify_jwt(&jwt, [&key], now_secs(), 0).unwrap().claims;
    assert_eq!(ably.client_id.as_deref(), Some("alice"));
    assert_eq!(ably.jti.as_deref(), Some(claims.jti.as_str()));
}

#[tokio::test]
async fn a_jwt_signed_with_another_secret_or_algorithm_fails_the_independent_check() {
    let app = spawn_app(config()).await;
    let jwt = jwt_body(
        app.get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
            .await,
    )
    .await;
    let mut wrong_secret = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    wrong_secret.validate_exp = false;
    let mut wrong_algorithm = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS512);
    wrong_algorithm.validate_exp = false;
    let secret = |s: &str| jsonwebtoken::DecodingKey::from_secret(s.as_bytes()).unwrap();

    let other_secret = jsonwebtoken::decode::<Value>(&jwt, &secret("other"), &wrong_secret);
    let other_algorithm =
        jsonwebtoken::decode::<Value>(&jwt, &secret(ABLY_KEY_SECRET), &wrong_algorithm);

    assert_eq!(
        other_secret.unwrap_err().kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
    assert_eq!(
        other_algorithm.unwrap_err().kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
    );
}

#[tokio::test]
async fn two_jwts_for_the_same_user_in_the_same_second_differ() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));

    let first = jwt_body(app.get("/api/ably-jwt", Some(&token)).await).await;
    let second = jwt_body(app.get("/api/ably-jwt", Some(&token)).await).await;

    assert_ne!(first, second);
    assert_ne!(verified(&first).jti, verified(&second).jti);
}

#[tokio::test]
async fn policy_substitutes_the_client_id_and_adds_role_tables() {
    let app = spawn_app(with_policy()).await;

    let user = jwt_body(
        app.get("/api/ably-jwt", Some(&user_token("bob", &json!({}))))
            .await,
    )
    .await;
    let admin = user_token("root", &json!({"roles": ["admin"]}));
    let admin = jwt_body(app.get("/api/ably-jwt", Some(&admin)).await).await;

    assert_eq!(
        verified(&user).capability,
        r#"{"chat:*":["history","presence","publish","subscribe"],"private:bob":["*"]}"#
    );
    // `*` covers the default table's resources, so they are left out.
    assert_eq!(verified(&admin).capability, r#"{"*":["*"]}"#);
}

#[tokio::test]
async fn roles_are_read_from_a_dotted_path_and_spaces_expand() {
    let app = spawn_app(Config {
        app_jwt: auth_server::AppJwtRules {
            roles_claim: "realm_access.roles".to_owned(),
            ..config().app_jwt
        },
        ..with_policy()
    })
    .await;
    let token = user_token("dee", &json!({"realm_access": {"roles": ["designer"]}}));

    let jwt = jwt_body(
        app.get(
            "/api/ably-jwt?capability=%7B%22board-1%3A%3A%24space%22%3A%5B%22*%22%5D%7D",
            Some(&token),
        )
        .await,
    )
    .await;

    assert_eq!(
        verified(&jwt).capability,
        r#"{"board-1::$space":["presence","subscribe"]}"#
    );
}

#[tokio::test]
async fn requested_capability_narrows_and_a_widening_attempt_gets_only_the_policy() {
    let app = spawn_app(with_policy()).await;
    let token = user_token("bob", &json!({}));

    let narrowed = app
        .post_form(
            "/api/ably-jwt",
            &token,
            &[("capability", r#"{"chat:lobby":["subscribe"]}"#)],
        )
        .await;
    let widened = app
        .post_form(
            "/api/ably-jwt",
            &token,
            &[("capability", r#"{"*":["*"],"[*]*":["*"]}"#)],
        )
        .await;

    assert_eq!(
        verified(&jwt_body(narrowed).await).capability,
        r#"{"chat:lobby":["subscribe"]}"#
    );
    assert_eq!(
        verified(&jwt_body(widened).await).capability,
        r#"{"chat:*":["history","presence","publish","subscribe"],"private:bob":["*"]}"#
    );
}

#[tokio::test]
async fn the_keys_capability_bounds_every_grant() {
    let app = spawn_app(Config {
        key_capability: Capability::parse(r#"{"chat:*":["subscribe"]}"#).unwrap(),
        ..with_policy()
    })
    .await;
    let admin = user_token("root", &json!({"roles": ["admin"]}));

    let jwt = jwt_body(app.get("/api/ably-jwt", Some(&admin)).await).await;

    assert_eq!(verified(&jwt).capability, r#"{"chat:*":["subscribe"]}"#);
}

#[tokio::test]
async fn json_body_takes_a_capability_object_ttl_and_matching_client_id() {
    let app = spawn_app(with_policy()).await;
    let token = user_token("bob", &json!({}));

    let response = app
        .post_json(
            "/api/ably-jwt",
            &token,
            &json!({"capability": {"private:bob": ["publish"]}, "ttl": 60000, "clientId": "bob"}),
        )
        .await;

    let claims = verified(&jwt_body(response).await);
    assert_eq!(claims.capability, r#"{"private:bob":["publish"]}"#);
    assert_eq!(claims.exp - claims.iat, 60);
    assert_eq!(claims.client_id, "bob");
}

#[tokio::test]
async fn query_parameters_are_read_on_post_and_the_body_wins() {
    let app = spawn_app(config()).await;
    let token = user_token("bob", &json!({}));
    let url = app.url("/api/ably-jwt?ttl=120000&rnd=123");

    let response = within(
        app.client
            .post(url)
            .bearer_auth(&token)
            .form(&[("ttl", "30000")])
            .send(),
    )
    .await
    .unwrap();

    let claims = verified(&jwt_body(response).await);
    assert_eq!(claims.exp - claims.iat, 30);
}

#[tokio::test]
async fn ttl_is_clamped_to_the_configured_maximum() {
    let app = spawn_app(Config {
        max_token_ttl: Duration::from_secs(7200),
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));

    let clamped = app.get("/api/ably-jwt?ttl=999999999", Some(&token)).await;
    let default_ttl = app.get("/api/ably-jwt", Some(&token)).await;

    let claims = verified(&jwt_body(clamped).await);
    assert_eq!(claims.exp - claims.iat, 7200);
    let claims = verified(&jwt_body(default_ttl).await);
    assert_eq!(claims.exp - claims.iat, 3600);
}

#[tokio::test]
async fn ttl_is_never_above_24_hours_by_default() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));

    let response = app
        .post_json(
            "/api/ably-token-request",
            &token,
            &json!({"ttl": "172800000"}),
        )
        .await;

    let body: Value = within(response.json()).await.unwrap();
    assert_signed_token_request(&body);
    assert_eq!(body["ttl"], 86_400_000);
}

#[tokio::test]
async fn token_request_endpoint_returns_a_signed_token_request() {
    let app = spawn_app(with_policy()).await;
    let token = user_token("bob", &json!({}));
    let before = now_secs() * 1000;

    let response = app
        .get("/api/ably-token-request?capability=%7B%22chat%3Ax%22%3A%5B%22subscribe%22%5D%7D&ttl=60000", Some(&token))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = within(response.json()).await.unwrap();
    assert_signed_token_request(&body);
    let request = TokenRequest::from_json(body.to_string()).unwrap();
    request.verify_mac(ably_key().secret()).unwrap();
    assert_eq!(request.key_name, "appA.keyA");
    assert_eq!(request.client_id.as_deref(), Some("bob"));
    assert_eq!(
        request.capability.as_deref(),
        Some(r#"{"chat:x":["subscribe"]}"#)
    );
    assert_eq!(request.ttl, Some(60_000));
    assert_eq!(request.nonce.len(), 32);
    assert!(request.timestamp >= before && request.timestamp <= now_secs() * 1000 + 1000);
    request.validate(request.timestamp).unwrap();
}

#[tokio::test]
async fn token_requests_are_never_reused() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));

    let first: Value = within(
        app.get("/api/ably-token-request", Some(&token))
            .await
            .json(),
    )
    .await
    .unwrap();
    let second: Value = within(
        app.get("/api/ably-token-request", Some(&token))
            .await
            .json(),
    )
    .await
    .unwrap();

    assert_signed_token_request(&first);
    assert_signed_token_request(&second);
    assert_ne!(first["nonce"], second["nonce"]);
    assert_ne!(first["mac"], second["mac"]);
}

#[tokio::test]
async fn json_body_takes_the_capability_as_a_string_too_and_ignores_unknown_fields() {
    let app = spawn_app(with_policy()).await;
    let token = user_token("bob", &json!({}));

    let response = app
        .post_json(
            "/api/ably-token-request",
            &token,
            &json!({"capability": r#"{"chat:a":["publish","subscribe"]}"#, "timestamp": 1, "rnd": "x", "clientId": null}),
        )
        .await;

    assert_eq!(response.status(), 200);
    let body: Value = within(response.json()).await.unwrap();
    assert_signed_token_request(&body);
    assert_eq!(body["capability"], r#"{"chat:a":["publish","subscribe"]}"#);
    assert_eq!(body["clientId"], "bob");
}

#[tokio::test]
async fn a_post_without_a_body_uses_the_defaults() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));

    let response = within(
        app.client
            .post(app.url("/api/ably-jwt"))
            .bearer_auth(&token)
            .send(),
    )
    .await
    .unwrap();

    let claims = verified(&jwt_body(response).await);
    assert_eq!(claims.capability, ALL_FOUR);
    assert_eq!(claims.exp - claims.iat, 3600);
}

/// A credential asked for 24 h on an app token with 100 s left ends when
/// the app token does, whichever endpoint mints it and whether or not the
/// verification was remembered.
#[tokio::test]
async fn a_credential_never_outlives_the_app_token_it_came_from() {
    let app = spawn_app(config()).await;
    let exp = now_secs() + 100;
    let token = user_token("alice", &json!({"exp": exp}));

    for _ in 0..2 {
        let jwt = app.get("/api/ably-jwt?ttl=86400000", Some(&token)).await;
        let request = app
            .get("/api/ably-token-request?ttl=86400000", Some(&token))
            .await;

        let claims = verified(&jwt_body(jwt).await);
        assert_eq!(claims.exp, exp);
        let request: Value = within(request.json()).await.unwrap();
        assert_signed_token_request(&request);
        assert_eq!(
            request["timestamp"].as_u64().unwrap() + request["ttl"].as_u64().unwrap(),
            exp * 1000,
            "{request}"
        );
    }
}

#[tokio::test]
async fn ttl_within_app_token_off_lets_a_credential_outlive_the_app_token() {
    let app = spawn_app(Config {
        ttl_within_app_token: false,
        ..config()
    })
    .await;
    let now = now_secs();
    let token = user_token("alice", &json!({"exp": now + 100}));
    let lapsed = app_token(&json!({"sub": "alice", "iat": now - 600, "exp": now - 20}));

    let jwt = app.get("/api/ably-jwt?ttl=86400000", Some(&token)).await;
    let in_leeway = app.get("/api/ably-jwt?ttl=7200000", Some(&lapsed)).await;

    let claims = verified(&jwt_body(jwt).await);
    assert_eq!(claims.exp - claims.iat, 86_400);
    let claims = verified(&jwt_body(in_leeway).await);
    assert_eq!(claims.exp - claims.iat, 7200);
}
