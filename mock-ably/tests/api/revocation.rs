//! `POST /keys/{keyName}/revokeTokens`: Ably's result shape, who may call
//! it, and revoked credentials refused everywhere from when the revocation
//! applies: REST, open SSE streams, realtime connections (with AUTH first
//! under `allowReauthMargin`).

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::{Value, json};
use shared::TokenParams;
use shared::jwt::{AblyJwtClaims, encode_jwt};
use shared::protocol::{Action, Format};

use crate::helpers::{
    KEY, KEY_NAME, Next, TestMock, api_key, assert_error, enc, spawn, with, within,
};
use crate::ws::Client;

fn token_for(app: &TestMock, client_id: &str) -> String {
    app.mock
        .issue_token(TokenParams {
            client_id: Some(client_id.to_owned()),
            ..TokenParams::default()
        })
        .token
}

impl TestMock {
    /// POSTs `body` to `revokeTokens` of [`KEY`] with Basic auth as `key`.
    async fn revoke_as(&self, key: (&str, &str), body: Value) -> reqwest::Response {
        within(
            self.client
                .post(self.url(&format!("/keys/{KEY_NAME}/revokeTokens")))
                .basic_auth(key.0, Some(key.1))
                .json(&body)
                .send(),
        )
        .await
        .unwrap()
    }

    async fn revoke(&self, body: Value) -> Value {
        let response = self.revoke_as((KEY_NAME, "test-secret"), body).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// GETs history of `channel` with `token`: the status code.
    async fn history_with(&self, token: &str) -> reqwest::Response {
        within(
            self.client
                .get(self.url("/channels/any/messages"))
                .bearer_auth(token)
                .send(),
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn revoke_tokens_answers_a_result_per_target_and_refuses_revoked_tokens_with_40141() {
    let app = spawn().await;
    let alice = token_for(&app, "alice");
    let bob = token_for(&app, "bob");
    app.mock.advance_clock(Duration::from_millis(5));
    let before = app.mock.now_ms();

    let result = app
        .revoke(json!({"targets": ["clientId:alice", "invalidType:abc"]}))
        .await;

    assert_eq!(result["successCount"], 1);
    assert_eq!(result["failureCount"], 1);
    let first = &result["results"][0];
    let issued_before = first["issuedBefore"].as_u64().unwrap();
    assert!((before..=app.mock.now_ms()).contains(&issued_before));
    assert_eq!(
        *first,
        json!({"target": "clientId:alice", "issuedBefore": issued_before, "appliesAt": issued_before})
    );
    assert_eq!(result["results"][1]["target"], "invalidType:abc");
    assert_eq!(result["results"][1]["error"]["statusCode"], 400);
    assert_error(app.history_with(&alice).await, 401, 40141).await;
    assert_eq!(app.history_with(&bob).await.status(), 200);
    // A token issued from now on is not revoked.
    let renewed = token_for(&app, "alice");
    assert_eq!(app.history_with(&renewed).await.status(), 200);
}

#[tokio::test]
async fn only_the_keys_own_basic_auth_may_revoke_and_bad_requests_are_refused() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .key("testApp.other:other-secret"),
    )
    .await;
    let token = token_for(&app, "alice");
    let body = json!({"targets": ["clientId:alice"]});

    let with_token = within(
        app.client
            .post(app.url(&format!("/keys/{KEY_NAME}/revokeTokens")))
            .bearer_auth(&token)
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_error(with_token, 401, 40162).await;
    let other = app
        .revoke_as(("testApp.other", "other-secret"), body.clone())
        .await;
    assert_error(other, 401, 40101).await;
    let wrong = app.revoke_as((KEY_NAME, "wrong"), body.clone()).await;
    assert_error(wrong, 401, 40101).await;

    let key = (KEY_NAME, "test-secret");
    let future = app.mock.now_ms() + 60_000;
    for bad in [
        json!({"targets": []}),
        json!({"targets": ["clientId:a"], "issuedBefore": future}),
    ] {
        assert_error(app.revoke_as(key, bad).await, 400, 40003).await;
    }
    assert_error(app.revoke_as(key, json!({"nope": 1})).await, 400, 40001).await;
    assert_eq!(
        app.history_with(&token).await.status(),
        200,
        "nothing revoked"
    );
}

#[tokio::test]
async fn a_jwt_is_revoked_by_its_revocation_key_and_issued_before_is_honoured() {
    let app = spawn().await;
    let now = app.mock.now_ms() / 1000;
    let jwt = |session: &str, iat: u64| {
        let mut claims = AblyJwtClaims::new(iat, iat + 600, r#"{"*":["*"]}"#);
        claims.client_id = Some("carol".to_owned());
        claims.revocation_key = Some(session.to_owned());
        encode_jwt(&api_key(), &claims).unwrap()
    };
    let old = jwt("s1", now - 100);
    let recent = jwt("s1", now - 10);
    let other = jwt("s2", now - 100);

    app.revoke(json!({
        "targets": ["revocationKey:s1"],
        "issuedBefore": (now - 50) * 1000,
    }))
    .await;

    assert_error(app.history_with(&old).await, 401, 40141).await;
    assert_eq!(app.history_with(&recent).await.status(), 200);
    assert_eq!(app.history_with(&other).await.status(), 200);
}

#[tokio::test]
async fn an_open_sse_stream_on_a_revoked_token_gets_40141_and_ends() {
    let app = spawn().await;
    let token = token_for(&app, "dora");
    let response = app
        .sse_response(&format!("channels=news&accessToken={}", enc(&token)))
        .await;
    assert_eq!(response.status(), 200);
    let mut frames = crate::helpers::Frames::new(response);

    app.revoke(json!({"targets": ["clientId:dora"]})).await;

    let Next::Frame(frame) = frames.next().await else {
        panic!("an error event first");
    };
    assert_eq!(frame.event.as_deref(), Some("error"));
    assert_eq!(frame.json()["code"], 40141);
    assert!(matches!(frames.next().await, Next::End));
}

#[tokio::test]
async fn a_realtime_connection_is_asked_to_renew_under_the_margin_then_disconnected_40141() {
    let app = spawn().await;
    for format in [Format::Json, Format::Msgpack] {
        let client_id = format!("erin-{format:?}");
        let (mut renews, _) =
            Client::with_token(&app.mock, &token_for(&app, &client_id), format).await;
        let old_token = token_for(&app, &client_id);
        let (mut stays, _) = Client::with_token(&app.mock, &old_token, format).await;
        app.mock.advance_clock(Duration::from_millis(1));

        let result = app
            .revoke(
                json!({"targets": [format!("clientId:{client_id}")], "allowReauthMargin": true}),
            )
            .await;
        let first = &result["results"][0];
        assert_eq!(
            first["appliesAt"].as_u64().unwrap(),
            first["issuedBefore"].as_u64().unwrap() + 30_000
        );

        // Both are asked to renew at once; one does.
        renews.expect(Action::AUTH).await;
        stays.expect(Action::AUTH).await;
        let mut auth = shared::protocol::ProtocolMessage::new(Action::AUTH);
        auth.auth = Some(shared::protocol::AuthDetails::new(token_for(
            &app, &client_id,
        )));
        renews.send(&auth).await;
        renews.expect(Action::CONNECTED).await;

        app.mock.advance_clock(Duration::from_secs(30));
        let disconnected = stays.expect(Action::DISCONNECTED).await;
        assert_eq!(disconnected.error.unwrap().code, 40141);
        stays.expect_close().await;
        renews.nothing_queued("renewed-in-time").await;

        // Its token is refused in-band from now on.
        let mut again = Client::connect(
            &app.mock,
            &format!("access_token={}", enc(&old_token)),
            format,
        )
        .await;
        assert_eq!(again.expect(Action::ERROR).await.error.unwrap().code, 40141);
    }
}
