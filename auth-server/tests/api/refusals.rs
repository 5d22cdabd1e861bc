//! Every refusal the issue lists, with its exact status, code and headers.

use auth_server::{AppJwtRules, Config, Policy};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::helpers::*;

const JWT: &str = "/api/ably-jwt";

#[tokio::test]
async fn no_app_token_is_401_with_the_ably_envelope() {
    let app = spawn_app(config()).await;

    let response = app.get(JWT, None).await;

    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_ably_error(response, 401, 40101, "no app token").await;
}

#[tokio::test]
async fn a_non_bearer_authorization_is_401() {
    let app = spawn_app(config()).await;

    let response = within(
        app.client
            .get(app.url(JWT))
            .basic_auth("user", Some("pass"))
            .send(),
    )
    .await
    .unwrap();

    assert_ably_error(response, 401, 40101, "Bearer").await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = spawn_app(config()).await;
    let claims = user_claims("mallory", &json!({}));
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );

    let response = app.get(JWT, Some(&token)).await;

    assert_ably_error(response, 401, 40101, "not a signed JWT").await;
}

#[tokio::test]
async fn an_algorithm_outside_the_configured_list_is_refused() {
    let app = spawn_app(config()).await;
    let token = sign(
        Algorithm::HS512,
        None,
        &EncodingKey::from_secret(APP_SECRET.as_bytes()).unwrap(),
        &user_claims("mallory", &json!({})),
    );

    let response = app.get(JWT, Some(&token)).await;

    assert_ably_error(response, 401, 40101, "algorithm HS512 is not accepted").await;
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let app = spawn_app(config()).await;
    let token = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"some other secret").unwrap(),
        &user_claims("mallory", &json!({})),
    );

    let response = app.get(JWT, Some(&token)).await;

    assert_ably_error(response, 401, 40101, "signature does not verify").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway() {
    // The leeway only matters with AUTH_TTL_WITHIN_APP_TOKEN=false: by
    // default nothing is issued past `exp` (see the tests of that below).
    let app = spawn_app(Config {
        ttl_within_app_token: false,
        ..config()
    })
    .await;
    let now = now_secs();
    let expired = app_token(&json!({"sub": "alice", "iat": now - 600, "exp": now - 31}));
    let within_leeway = app_token(&json!({"sub": "alice", "iat": now - 600, "exp": now - 5}));

    let refused = app.get(JWT, Some(&expired)).await;
    let accepted = app.get(JWT, Some(&within_leeway)).await;

    assert_ably_error(refused, 401, 40101, "expired").await;
    assert_eq!(accepted.status(), 200);
}

/// An app token 20 s past `exp` is inside the default 30 s leeway, so it
/// verifies; it used to get whatever TTL it asked for, 24 h included.
#[tokio::test]
async fn an_app_token_past_its_exp_inside_the_leeway_gets_no_credential() {
    let app = spawn_app(config()).await;
    let now = now_secs();
    let lapsed = app_token(&json!({"sub": "alice", "iat": now - 600, "exp": now - 20}));
    let last_second = app_token(&json!({"sub": "alice", "iat": now - 600, "exp": now}));

    for token in [&lapsed, &last_second] {
        for path in [
            "/api/ably-jwt?ttl=86400000",
            "/api/ably-token-request?ttl=86400000",
            // Refused before Ably (the real one, by default) is asked.
            "/api/ably-token?ttl=86400000",
        ] {
            // Twice: the second verification is remembered, and checked too.
            for _ in 0..2 {
                let response = app.get(path, Some(token)).await;

                assert_ably_error(response, 401, 40101, "invalid app token: expired").await;
            }
        }
    }
}

#[test]
fn a_leeway_with_a_fraction_of_a_second_is_refused_at_start_up() {
    let config = Config {
        app_jwt: AppJwtRules {
            leeway: std::time::Duration::from_millis(500),
            ..config().app_jwt
        },
        ..config()
    };

    let err = auth_server::AppState::new(config).unwrap_err();

    assert_eq!(err.name, "AUTH_JWT_LEEWAY");
}

#[tokio::test]
async fn a_not_yet_valid_token_is_refused() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({"nbf": now_secs() + 120}));

    let response = app.get(JWT, Some(&token)).await;

    assert_ably_error(response, 401, 40101, "not yet valid").await;
}

#[tokio::test]
async fn nbf_within_the_leeway_is_accepted_and_just_beyond_it_refused() {
    // The default leeway is 30 s. The server reads its clock a moment after
    // the test, at most a second later: that second is the margin.
    let app = spawn_app(config()).await;
    let now = now_secs();
    let within_leeway = user_token("alice", &json!({"nbf": now + 29}));
    let beyond_leeway = user_token("alice", &json!({"nbf": now + 32}));

    let accepted = app.get(JWT, Some(&within_leeway)).await;
    let refused = app.get(JWT, Some(&beyond_leeway)).await;

    assert_eq!(accepted.status(), 200);
    assert_ably_error(refused, 401, 40101, "not yet valid (nbf is in the future)").await;
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let app = spawn_app(config()).await;
    let token = app_token(&json!({"sub": "alice", "iat": now_secs()}));

    let response = app.get(JWT, Some(&token)).await;

    assert_ably_error(response, 401, 40101, "no exp claim").await;
}

#[tokio::test]
async fn a_token_without_the_client_id_claim_is_refused() {
    let app = spawn_app(Config {
        app_jwt: AppJwtRules {
            client_id_claim: "uid".to_owned(),
            ..config().app_jwt
        },
        ..config()
    })
    .await;

    let missing = app.get(JWT, Some(&user_token("alice", &json!({})))).await;
    let present = app
        .get(JWT, Some(&user_token("ignored", &json!({"uid": "u-1"}))))
        .await;

    assert_ably_error(missing, 401, 40101, "no uid claim").await;
    assert_eq!(present.status(), 200);
}

#[tokio::test]
async fn the_wildcard_client_id_is_never_an_identity() {
    let app = spawn_app(config()).await;

    let response = app.get(JWT, Some(&user_token("*", &json!({})))).await;

    assert_ably_error(response, 401, 40101, "wildcard").await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app(Config {
        app_jwt: AppJwtRules {
            issuer: Some("https://idp.example/".to_owned()),
            audience: vec!["ably-auth".to_owned()],
            ..config().app_jwt
        },
        ..config()
    })
    .await;
    let good = json!({"iss": "https://idp.example/", "aud": "ably-auth"});
    let good_array = json!({"iss": "https://idp.example/", "aud": ["other", "ably-auth"]});
    let wrong_issuer = json!({"iss": "https://evil.example/", "aud": "ably-auth"});
    let wrong_audience = json!({"iss": "https://idp.example/", "aud": ["other"]});
    let no_issuer = json!({"aud": "ably-auth"});
    let no_audience = json!({"iss": "https://idp.example/"});

    for claims in [good, good_array] {
        let response = app.get(JWT, Some(&user_token("alice", &claims))).await;
        assert_eq!(response.status(), 200, "{claims}");
    }
    let response = app
        .get(JWT, Some(&user_token("alice", &wrong_issuer)))
        .await;
    assert_ably_error(response, 401, 40101, "issuer").await;
    let response = app
        .get(JWT, Some(&user_token("alice", &wrong_audience)))
        .await;
    assert_ably_error(response, 401, 40101, "audience").await;
    let response = app.get(JWT, Some(&user_token("alice", &no_issuer))).await;
    assert_ably_error(response, 401, 40101, "no iss claim").await;
    let response = app.get(JWT, Some(&user_token("alice", &no_audience))).await;
    assert_ably_error(response, 401, 40101, "no aud claim").await;
}

#[tokio::test]
async fn a_client_id_other_than_the_users_is_403() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));

    let response = app.get("/api/ably-jwt?clientId=bob", Some(&token)).await;
    let wildcard = app
        .post_form("/api/ably-token-request", &token, &[("clientId", "*")])
        .await;

    assert_ably_error(response, 403, 40102, "\"bob\" does not match").await;
    assert_ably_error(wildcard, 403, 40102, "does not match").await;
}

#[tokio::test]
async fn a_capability_with_nothing_allowed_is_403() {
    let app = spawn_app(Config {
        policy: Policy::from_toml("[default]\n\"chat:*\" = [\"subscribe\"]\n").unwrap(),
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));

    let outside = app
        .get(
            "/api/ably-jwt?capability=%7B%22secret%22%3A%5B%22subscribe%22%5D%7D",
            Some(&token),
        )
        .await;
    let empty = app.post_json(JWT, &token, &json!({"capability": {}})).await;

    assert_ably_error(outside, 403, 40160, "nothing in the requested capability").await;
    assert_ably_error(empty, 403, 40160, "nothing in the requested capability").await;
}

#[tokio::test]
async fn a_user_the_policy_grants_nothing_is_403() {
    let app = spawn_app(Config {
        policy: Policy::from_toml("[roles.staff]\n\"*\" = [\"subscribe\"]\n").unwrap(),
        ..config()
    })
    .await;

    let response = app.get(JWT, Some(&user_token("alice", &json!({})))).await;

    assert_ably_error(response, 403, 40160, "grants this user nothing").await;
}

#[tokio::test]
async fn malformed_parameters_are_400_with_40003() {
    let app = spawn_app(config()).await;
    let token = user_token("alice", &json!({}));

    let cases = [
        ("/api/ably-jwt?ttl=soon", "ttl must be"),
        ("/api/ably-jwt?ttl=0", "ttl must be"),
        ("/api/ably-jwt?ttl=-5", "ttl must be"),
        ("/api/ably-jwt?capability=nope", "capability"),
        (
            "/api/ably-jwt?capability=%7B%22x%22%3A%5B%22publsh%22%5D%7D",
            "unknown operation \"publsh\"",
        ),
        ("/api/ably-jwt?clientId=", "clientId must be"),
    ];
    for (path, message) in cases {
        let response = app.get(path, Some(&token)).await;
        assert_ably_error(response, 400, 40003, message).await;
    }
    let many: serde_json::Map<String, serde_json::Value> = (0..101)
        .map(|i| (format!("chat:{i}"), json!(["subscribe"])))
        .collect();
    let too_many = app
        .post_json(JWT, &token, &json!({ "capability": many }))
        .await;
    assert_ably_error(too_many, 400, 40003, "lists 101 resources; at most 100").await;
    let not_json = within(
        app.client
            .post(app.url(JWT))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{nope")
            .send(),
    )
    .await
    .unwrap();
    assert_ably_error(not_json, 400, 40003, "not valid JSON").await;
    let unknown_type = within(
        app.client
            .post(app.url(JWT))
            .bearer_auth(&token)
            .header("content-type", "text/xml")
            .body("<ttl/>")
            .send(),
    )
    .await
    .unwrap();
    assert_ably_error(
        unknown_type,
        400,
        40003,
        "application/x-www-form-urlencoded",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app(Config {
        max_body_bytes: 1024,
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));
    let padding = "x".repeat(2000);

    let response = app.post_form(JWT, &token, &[("pad", &padding)]).await;

    assert_ably_error(response, 413, 40009, "larger than 1024 bytes").await;
}

#[tokio::test]
async fn unknown_paths_are_404_with_the_envelope() {
    let app = spawn_app(config()).await;

    let response = app.get("/api/nothing", None).await;

    assert_ably_error(response, 404, 40400, "not found").await;
}

#[tokio::test]
async fn a_wrong_method_on_a_production_route_is_405_with_the_envelope() {
    let app = spawn_app(config()).await;

    let response = within(app.client.put(app.url("/api/ably-jwt")).send())
        .await
        .unwrap();

    assert_ably_error(response, 405, 40500, "method not allowed").await;
}
