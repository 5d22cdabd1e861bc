//! Credentials from the auth server used against mock-ably, which checks
//! them as Ably does: the token from `/api/ably-token`, the JWT from
//! `/api/ably-jwt` and the TokenRequest from `/api/ably-token-request` each
//! open an SSE stream on an allowed channel and are refused on others.

use auth_server::{Config, Policy};
use mock_ably::MockAbly;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::*;

const POLICY: &str = "[default]\n\"chat:*\" = [\"subscribe\"]\n";

async fn with_mock() -> (MockAbly, TestApp) {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(Config {
        ably_rest_url: Url::parse(mock.base_url()).unwrap(),
        policy: Policy::from_toml(POLICY).unwrap(),
        ..config()
    })
    .await;
    (mock, app)
}

/// The status of opening an SSE stream on `channel` with `token`; the
/// stream itself is dropped at once.
async fn sse_status(mock: &MockAbly, token: &str, channel: &str) -> u16 {
    let url = Url::parse_with_params(
        &format!("{}/sse", mock.base_url()),
        [("v", "1.2"), ("channels", channel), ("accessToken", token)],
    )
    .unwrap();
    within(reqwest::get(url)).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_token_from_ably_token_opens_only_the_granted_channels() {
    let (mock, app) = with_mock().await;

    let response = app
        .get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await;

    assert_eq!(response.status(), 200);
    let details: Value = within(response.json()).await.unwrap();
    assert_eq!(details["clientId"], "alice");
    assert_eq!(details["capability"], r#"{"chat:*":["subscribe"]}"#);
    let token = details["token"].as_str().unwrap();
    assert_eq!(sse_status(&mock, token, "chat:lobby").await, 200);
    assert_eq!(sse_status(&mock, token, "secret").await, 401);
}

#[tokio::test]
async fn the_jwt_from_ably_jwt_is_accepted_by_the_mock() {
    let (mock, app) = with_mock().await;

    let response = app
        .get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
        .await;

    let jwt = within(response.text()).await.unwrap();
    assert_eq!(sse_status(&mock, &jwt, "chat:lobby").await, 200);
    assert_eq!(sse_status(&mock, &jwt, "secret").await, 401);
}

#[tokio::test]
async fn the_token_request_is_exchanged_by_the_mock() {
    let (mock, app) = with_mock().await;
    let token_request: Value = within(
        app.get(
            "/api/ably-token-request",
            Some(&user_token("alice", &json!({}))),
        )
        .await
        .json(),
    )
    .await
    .unwrap();

    let exchanged = within(
        app.client
            .post(format!(
                "{}/keys/{}/requestToken",
                mock.base_url(),
                token_request["keyName"].as_str().unwrap()
            ))
            .json(&token_request)
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(exchanged.status(), 200);
    let details: Value = within(exchanged.json()).await.unwrap();
    assert_eq!(details["clientId"], "alice");
    let token = details["token"].as_str().unwrap();
    assert_eq!(sse_status(&mock, token, "chat:lobby").await, 200);
}

#[tokio::test]
async fn a_server_key_ably_refuses_is_a_500_naming_the_servers_key_not_the_users() {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    // The right key name with a wrong secret: Ably says the MAC does not match.
    let app = spawn_app(Config {
        api_key: "appA.keyA:not-the-real-secret".parse().unwrap(),
        ably_rest_url: Url::parse(mock.base_url()).unwrap(),
        ..config()
    })
    .await;

    let response = app
        .get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await;

    let error = assert_ably_error(response, 500, 50000, "check its ABLY_API_KEY").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("(Ably code 40101)"), "{message}");
    assert!(!message.contains("not-the-real-secret"), "{message}");
}
