//! The keys the mock accepts and their capabilities: Ably's default
//! `{"*":["*"]}` for a key given without one, and a capability given in the
//! key's text after `=` (`docs/protocol.md#capability-intersection`).

use reqwest::StatusCode;
use shared::token::{TokenDetails, TokenParams};

use crate::helpers::*;

/// GET history of `channel` with `key` in the query, and the status.
async fn history_status(app: &TestMock, channel: &str, key: &str) -> StatusCode {
    app.get(&format!(
        "/channels/{}/messages?key={}",
        enc(channel),
        enc(key)
    ))
    .await
    .status()
}

#[tokio::test]
async fn a_key_without_a_capability_gets_ably_default_of_star() {
    let app = spawn().await;
    let request = token_request(&app.mock, TokenParams::default());

    let response = app
        .request_token(KEY_NAME, &serde_json::to_value(&request).unwrap())
        .await;

    assert_eq!(response.status(), 200);
    let details: TokenDetails = response.json().await.unwrap();
    assert_eq!(details.capability.as_deref(), Some(r#"{"*":["*"]}"#));
    assert_eq!(history_status(&app, "chat:lobby", KEY).await, 200);
    // Ably's `*` resource does not match `[meta]` (or any `[qualifier]`)
    // channels.
    let meta = app
        .get(&format!(
            "/channels/{}/messages?key={}",
            enc("[meta]log"),
            enc(KEY)
        ))
        .await;
    let error = assert_error(meta, 401, 40160).await;
    assert_eq!(
        error.message,
        "Channel denied access based on given capability; channel = [meta]log, operation = history"
    );
}

#[tokio::test]
async fn the_development_key_gets_ably_default_of_star_too() {
    let app = with(mock_ably::MockAbly::builder()).await;

    let token = app.mock.issue_token(TokenParams::default());

    assert_eq!(token.capability.as_deref(), Some(r#"{"*":["*"]}"#));
    assert_eq!(history_status(&app, "x", mock_ably::DEV_KEY).await, 200);
    assert_eq!(
        history_status(&app, "[meta]log", mock_ably::DEV_KEY).await,
        401
    );
}

#[tokio::test]
async fn a_capability_after_the_secret_is_the_key_capability() {
    let app = with(mock_ably::MockAbly::builder().key(&format!(
        r#"{KEY}={{"chat:*":["history","subscribe"],"[meta]*":["history"]}}"#
    )))
    .await;

    let token = app.mock.issue_token(TokenParams::default());
    let publish = app
        .publish("chat:lobby", serde_json::json!({"data": "x"}))
        .await;

    assert_eq!(
        token.capability.as_deref(),
        Some(r#"{"[meta]*":["history"],"chat:*":["history","subscribe"]}"#)
    );
    assert_eq!(history_status(&app, "chat:lobby", KEY).await, 200);
    assert_eq!(history_status(&app, "[meta]log", KEY).await, 200);
    assert_eq!(history_status(&app, "news", KEY).await, 401);
    let error = assert_error(publish, 401, 40160).await;
    assert!(
        error.message.contains("operation = publish"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn key_spec_parse_gives_the_key_and_its_capability() {
    let spec = mock_ably::KeySpec::parse(r#"app.key:s3cr3t={"a":["publish"]}"#).unwrap();
    let plain = mock_ably::KeySpec::parse("app.key:s3cr3t").unwrap();

    let app = with(mock_ably::MockAbly::builder().key_spec(spec.clone())).await;
    let token = app.mock.issue_token(TokenParams::default());

    assert_eq!(spec.key().key_name(), "app.key");
    assert_eq!(spec.capability().to_string(), r#"{"a":["publish"]}"#);
    assert_eq!(
        plain.capability().to_string(),
        mock_ably::DEFAULT_KEY_CAPABILITY
    );
    assert_eq!(token.capability.as_deref(), Some(r#"{"a":["publish"]}"#));
}

#[test]
fn a_bad_capability_names_the_key_and_never_prints_the_secret() {
    let err = mock_ably::KeySpec::parse(r#"app.key:TopSecret={"a":["publsh"]}"#).unwrap_err();

    assert_eq!(
        err.to_string(),
        r#"key app.key: invalid capability: unknown operation "publsh" for resource "a""#
    );
    let panic = std::panic::catch_unwind(|| {
        mock_ably::MockAbly::builder().key(r#"app.key:TopSecret={"a":"#)
    })
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("mock-ably: key app.key: invalid capability: not valid JSON"),
        "{message}"
    );
    assert!(!message.contains("TopSecret"));
}
