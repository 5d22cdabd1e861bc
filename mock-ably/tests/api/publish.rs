//! `POST /channels/{channel}/messages` (`docs/protocol.md#publishing`) and the
//! handle's `publish`.

use serde_json::{Value, json};
use shared::Message;
use shared::token::TokenParams;

use crate::helpers::*;

impl TestMock {
    /// The channel's history as JSON, oldest first.
    pub(crate) async fn history_forwards(&self, channel: &str) -> Vec<Value> {
        let response = self
            .get(&format!(
                "/channels/{}/messages?direction=forwards&key={}",
                enc(channel),
                enc(KEY)
            ))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// POSTs `body` to the channel with `Authorization: Bearer base64(token)`
    /// and optional extra headers.
    pub(crate) async fn publish_as(
        &self,
        channel: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/channels/{}/messages", enc(channel))))
            .bearer_auth(b64(token))
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        within(request.send()).await.unwrap()
    }
}

#[tokio::test]
async fn publishing_an_object_answers_201_with_channel_message_id_and_serials() {
    let app = spawn().await;

    let response = app
        .publish("chat", json!({"name": "greeting", "data": "hello"}))
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["channel"], "chat");
    let history = app.history_forwards("chat").await;
    assert_eq!(body["messageId"], history[0]["id"]);
    assert_eq!(body["serials"].as_array().unwrap().len(), 1);
    assert_eq!(history[0]["name"], "greeting");
    assert_eq!(history[0]["data"], "hello");
    assert!(history[0]["timestamp"].as_u64().unwrap() > 0);
    assert!(history[0].get("encoding").is_none());
}

#[tokio::test]
async fn json_values_are_stored_as_text_with_json_encoding() {
    let app = spawn().await;

    app.publish("c", json!({"data": {"foo": 1, "bar": [true]}}))
        .await;
    app.publish("c", json!({"data": [1, 2]})).await;

    let history = app.history_forwards("c").await;
    assert_eq!(history[0]["data"], r#"{"bar":[true],"foo":1}"#);
    assert_eq!(history[0]["encoding"], "json");
    assert_eq!(history[1]["data"], "[1,2]");
    assert_eq!(history[1]["encoding"], "json");
}

#[tokio::test]
async fn what_ably_js_sends_is_stored_as_sent() {
    let app = spawn().await;

    // `docs/real-clients.md#rest-endpoints`: ably-js always sends an array,
    // with action and size.
    let response = app
        .publish(
            "c",
            json!([
                {"name":"obj","data":"{\"a\":1,\"b\":[true]}","encoding":"json","id":"JPga3Ax5kris:0","action":0,"size":21},
                {"name":"bin","data":"AQID/w==","encoding":"base64","id":"TzwkCEwW5txC:0","action":0,"size":7},
                {"name":null,"data":"noname","id":"R4nTBTWnC/6B:0","action":0,"size":6}
            ]),
        )
        .await;

    assert_eq!(response.status(), 201);
    let history = app.history_forwards("c").await;
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["data"], "{\"a\":1,\"b\":[true]}");
    assert_eq!(history[0]["id"], "JPga3Ax5kris:0");
    assert_eq!(history[1]["data"], "AQID/w==");
    assert_eq!(history[1]["encoding"], "base64");
    assert!(history[2].get("name").is_none());
    // The publisher's `action` and `size` are not kept: the mock stamps
    // every message `message.create` (0) with its serial.
    assert_eq!(history[2]["action"], 0);
    assert!(history[2].get("size").is_none());
}

#[tokio::test]
async fn a_batch_keeps_its_order_and_gets_ably_js_style_ids() {
    let app = spawn().await;

    let response = app
        .publish("c", json!([{"data": "a"}, {"data": "b"}, {"data": "c"}]))
        .await;

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["serials"].as_array().unwrap().len(), 3);
    let history = app.history_forwards("c").await;
    let data: Vec<_> = history
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["a", "b", "c"]);
    let ids: Vec<_> = history.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let base = ids[0].strip_suffix(":0").unwrap();
    assert_eq!(
        ids,
        [
            format!("{base}:0"),
            format!("{base}:1"),
            format!("{base}:2")
        ]
    );
}

#[tokio::test]
async fn a_repeated_message_id_is_stored_and_delivered_once() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;

    let first = app.publish("c", json!({"id": "same:0", "data": "x"})).await;
    let retry = app.publish("c", json!({"id": "same:0", "data": "x"})).await;
    app.publish("c", json!({"id": "other:0", "data": "y"}))
        .await;

    assert_eq!(first.status(), 201);
    assert_eq!(retry.status(), 201);
    let first: Value = first.json().await.unwrap();
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(first["serials"], retry["serials"]);
    assert_eq!(app.history_forwards("c").await.len(), 2);
    assert_eq!(frames.message().await["id"], "same:0");
    assert_eq!(frames.message().await["id"], "other:0");
    assert_eq!(app.mock.stats().published, 2);
}

#[tokio::test]
async fn invalid_data_is_40013() {
    let app = spawn().await;

    let number = app.publish("c", json!({"data": 42})).await;
    let boolean = app
        .publish("c", json!([{"data": "ok"}, {"data": true}]))
        .await;
    let bad_base64 = app
        .publish("c", json!({"data": "not base64!", "encoding": "base64"}))
        .await;

    assert_error(number, 400, 40013).await;
    assert_error(boolean, 400, 40013).await;
    assert_error(bad_base64, 400, 40013).await;
    assert!(app.history_forwards("c").await.is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_a_message_is_40001_in_json_or_msgpack() {
    let app = spawn().await;

    let scalar = app.publish("c", json!("just a string")).await;
    let bad_field = app.publish("c", json!({"name": 5})).await;
    let not_json = within(
        app.client
            .post(app.url("/channels/c/messages"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .body("{oops")
            .send(),
    )
    .await
    .unwrap();
    let msgpack = within(
        app.client
            .post(app.url("/channels/c/messages"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .header("content-type", "application/x-msgpack")
            // The msgpack string "x".
            .body(vec![0xa1_u8, b'x'])
            .send(),
    )
    .await
    .unwrap();

    assert_error(scalar, 400, 40001).await;
    assert_error(bad_field, 400, 40001).await;
    assert_error(not_json, 400, 40001).await;
    let error = assert_error(msgpack, 400, 40001).await;
    assert_eq!(
        error.message,
        "Request body must be a Message object or an array of them"
    );
}

#[tokio::test]
async fn more_than_64_kib_is_40009() {
    let app = spawn().await;

    let response = app
        .publish("c", json!({"data": "x".repeat(64 * 1024 + 1)}))
        .await;

    assert_error(response, 413, 40009).await;
}

#[tokio::test]
async fn a_body_past_the_server_limit_is_40009_too() {
    let app = spawn().await;

    let response = app.publish("c", json!({"data": "x".repeat(3 << 20)})).await;

    assert_error(response, 413, 40009).await;
}

#[tokio::test]
async fn channel_names_are_percent_decoded_and_checked() {
    let app = spawn().await;

    let odd = app
        .publish("chan with space/and:colon", json!({"data": "x"}))
        .await;
    let bracket = app.publish("[x]y", json!({"data": "x"})).await;
    let colon = app.publish(":x", json!({"data": "x"})).await;
    let meta = app.publish("[meta]log", json!({"data": "x"})).await;

    assert_eq!(odd.status(), 201);
    let body: Value = odd.json().await.unwrap();
    assert_eq!(body["channel"], "chan with space/and:colon");
    assert_error(bracket, 400, 40010).await;
    assert_error(colon, 400, 40010).await;
    assert_error(meta, 401, 40160).await;
}

#[tokio::test]
async fn publishing_needs_the_publish_capability() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            capability: Some(r#"{"c":["subscribe"],"d":["publish"]}"#.into()),
            ..TokenParams::default()
        })
        .token;

    let denied = app.publish_as("c", &token, &[], json!({"data": "x"})).await;
    let allowed = app.publish_as("d", &token, &[], json!({"data": "x"})).await;

    let error = assert_error(denied, 401, 40160).await;
    assert!(error.message.contains("channel = c"));
    assert_eq!(allowed.status(), 201);
}

#[tokio::test]
async fn a_token_client_id_is_filled_in_and_enforced() {
    let app = spawn().await;
    let alice = app
        .mock
        .issue_token(TokenParams {
            client_id: Some("alice".into()),
            ..TokenParams::default()
        })
        .token;
    let anonymous = app.mock.issue_token(TokenParams::default()).token;
    let wildcard = jwt(&app.mock, r#"{"*":["*"]}"#, Some("*"), 600);

    let filled = app.publish_as("c", &alice, &[], json!({"data": "1"})).await;
    let same = app
        .publish_as("c", &alice, &[], json!({"data": "2", "clientId": "alice"}))
        .await;
    let other = app
        .publish_as("c", &alice, &[], json!({"data": "3", "clientId": "bob"}))
        .await;
    let header = app
        .publish_as(
            "c",
            &alice,
            &[("x-ably-clientid", &b64("bob"))],
            json!({"data": "4"}),
        )
        .await;
    let anonymous_claims = app
        .publish_as(
            "c",
            &anonymous,
            &[],
            json!({"data": "5", "clientId": "bob"}),
        )
        .await;
    let wildcard_claims = app
        .publish_as("c", &wildcard, &[], json!({"data": "6", "clientId": "bob"}))
        .await;
    let empty = app
        .publish_as("c", &alice, &[], json!({"data": "7", "clientId": ""}))
        .await;

    assert_eq!(filled.status(), 201);
    assert_eq!(same.status(), 201);
    assert_error(other, 401, 40102).await;
    assert_error(header, 401, 40102).await;
    assert_error(anonymous_claims, 401, 40102).await;
    assert_eq!(wildcard_claims.status(), 201);
    assert_error(empty, 400, 40012).await;
    let history = app.history_forwards("c").await;
    let client_ids: Vec<_> = history
        .iter()
        .map(|m| m["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(client_ids, ["alice", "alice", "bob"]);
}

#[tokio::test]
async fn a_key_may_publish_as_any_client_id_and_declare_one_by_header() {
    let app = spawn().await;

    let response = within(
        app.client
            .post(app.url("/channels/c/messages"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .header("x-ably-clientid", b64("carol"))
            .json(&json!([{"data": "a"}]))
            .send(),
    )
    .await
    .unwrap();
    app.publish("c", json!({"data": "b", "clientId": "dave"}))
        .await;

    assert_eq!(response.status(), 201);
    let history = app.history_forwards("c").await;
    assert_eq!(history[0]["clientId"], "carol");
    assert_eq!(history[1]["clientId"], "dave");
}

#[tokio::test]
async fn the_handle_publishes_like_rest() {
    let app = spawn().await;
    let mut message = Message::default();
    message.name = Some("n".into());
    message.data = Some(json!({"k": "v"}));

    let id = app.mock.publish("c", message);
    let text_id = app.mock.publish_data("c", "", "plain");

    let history = app.history_forwards("c").await;
    assert_eq!(history[0]["id"], id.as_str());
    assert_eq!(history[0]["encoding"], "json");
    assert_eq!(history[0]["data"], r#"{"k":"v"}"#);
    assert_eq!(history[1]["id"], text_id.as_str());
    assert!(history[1].get("name").is_none());
    let error = app
        .mock
        .try_publish("[bad]", vec![Message::default()])
        .unwrap_err();
    assert_eq!(error.code, 40010);
}
