//! Batch publish (`POST /messages`, `docs/protocol.md#batch-publish`) and
//! channel status (`GET /channels/{name}`,
//! `docs/protocol.md#channel-status`).

use mock_ably::MockAbly;
use serde_json::{Value, json};

use crate::helpers::*;

/// The capability of the key ably-js's batch tests use: some channels may
/// be published to, others not.
const PARTIAL: &str = r#"{"channel0":["publish"],"channel3":["subscribe"],"channel4":["presence","publish","subscribe"],"channel5":["presence"]}"#;

impl TestMock {
    /// POSTs `body` as JSON to `path` with [`KEY`].
    async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        within(
            self.client
                .post(self.url(path))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .json(body)
                .send(),
        )
        .await
        .unwrap()
    }

    /// The data of `channel`'s history, oldest first.
    async fn history_data(&self, channel: &str) -> Vec<Value> {
        let response = within(
            self.client
                .get(self.url(&format!(
                    "/channels/{}/messages?direction=forwards",
                    enc(channel)
                )))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .send(),
        )
        .await
        .unwrap();
        let page: Vec<Value> = response.json().await.unwrap();
        page.into_iter().map(|m| m["data"].clone()).collect()
    }
}

#[tokio::test]
async fn a_batch_publish_answers_per_spec_and_per_channel_checking_each_capability() {
    let app = with(MockAbly::builder().key_with_capability(KEY, PARTIAL)).await;
    let specs = json!([
        {"channels": ["channel0", "channel3"], "messages": [{"data": "message1"}, {"data": "message2"}]},
        {"channels": ["channel4", "channel5"], "messages": {"data": "message3"}},
    ]);

    let response = app.post_json("/messages", &specs).await;

    assert_eq!(response.status(), 201);
    let results: Value = response.json().await.unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (result, ok, denied) in [
        (&results[0], "channel0", "channel3"),
        (&results[1], "channel4", "channel5"),
    ] {
        assert_eq!(result["successCount"], 1);
        assert_eq!(result["failureCount"], 1);
        let items = result["results"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["channel"], ok);
        assert!(!items[0]["messageId"].as_str().unwrap().is_empty());
        assert!(items[0].get("error").is_none());
        assert_eq!(items[1]["channel"], denied);
        assert!(items[1].get("messageId").is_none());
        assert_eq!(items[1]["error"]["statusCode"], 401);
        assert_eq!(items[1]["error"]["code"], 40160);
        assert_eq!(
            items[1]["error"]["message"],
            format!(
                "Channel denied access based on given capability; channel = {denied}, operation = publish"
            )
        );
    }
    assert_eq!(
        results[0]["results"][0]["serials"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.mock.stats().channels["channel0"].published, 2);
    assert_eq!(app.mock.stats().channels["channel4"].published, 1);
    assert!(!app.mock.stats().channels.contains_key("channel3"));
}

#[tokio::test]
async fn a_single_batch_spec_gets_its_channel_results_flat_and_lands_in_history() {
    let app = spawn().await;

    let response = app
        .post_json(
            "/messages",
            &json!({"channels": ["a", "b"], "messages": [{"name": "n", "data": "x"}, {"data": {"k": 1}}]}),
        )
        .await;
    let in_an_array = app
        .post_json(
            "/messages",
            &json!([{"channels": "c", "messages": {"data": "y"}}]),
        )
        .await;

    assert_eq!(response.status(), 201);
    let results: Value = response.json().await.unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["channel"], "a");
    assert_eq!(results[1]["channel"], "b");
    assert!(
        results
            .iter()
            .all(|r| r.get("error").is_none() && r.get("successCount").is_none())
    );
    let wrapped: Value = in_an_array.json().await.unwrap();
    assert_eq!(wrapped[0]["successCount"], 1);
    assert_eq!(wrapped[0]["failureCount"], 0);
    assert_eq!(wrapped[0]["results"][0]["channel"], "c");
    assert_eq!(
        app.history_data("a").await,
        [json!("x"), json!(r#"{"k":1}"#)]
    );
    assert_eq!(
        app.history_data("b").await,
        [json!("x"), json!(r#"{"k":1}"#)]
    );
}

#[tokio::test]
async fn a_batch_spec_with_a_bad_channel_name_fails_that_channel_only() {
    let app = spawn().await;

    let response = app
        .post_json(
            "/messages",
            &json!({"channels": ["ok", "[meta]log", ":bad"], "messages": {"data": "x"}}),
        )
        .await;

    let results: Value = response.json().await.unwrap();
    assert!(results[0].get("error").is_none());
    assert_eq!(results[1]["error"]["code"], 40160);
    assert_eq!(results[2]["error"]["code"], 40010);
}

#[tokio::test]
async fn a_batch_body_that_is_not_specs_is_40001() {
    let app = spawn().await;

    let no_channels = app
        .post_json("/messages", &json!({"messages": [{"data": "x"}]}))
        .await;
    let no_messages = app
        .post_json("/messages", &json!({"channels": ["a"]}))
        .await;
    let scalar = app.post_json("/messages", &json!("specs")).await;
    let unauthenticated = within(
        app.client
            .post(app.url("/messages"))
            .json(&json!([]))
            .send(),
    )
    .await
    .unwrap();

    let error = assert_error(no_channels, 400, 40001).await;
    assert_eq!(
        error.message,
        "Invalid batch publish request: channels must be a non-empty array of channel names"
    );
    assert_error(no_messages, 400, 40001).await;
    assert_error(scalar, 400, 40001).await;
    assert_error(unauthenticated, 401, 40101).await;
}

#[tokio::test]
async fn channel_status_reports_the_occupancy_of_the_one_channel_model() {
    let app = spawn().await;

    let quiet: Value = app
        .get(&format!("/channels/room?key={}", enc(KEY)))
        .await
        .json()
        .await
        .unwrap();
    let _first = app.sse("channels=room").await;
    let _second = app.sse("channels=room,other").await;
    let busy: Value = app
        .get(&format!("/channels/room?key={}", enc(KEY)))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(
        quiet,
        json!({
            "channelId": "room",
            "name": "room",
            "status": {
                "isActive": false,
                "occupancy": {"metrics": {
                    "connections": 0, "publishers": 0, "subscribers": 0,
                    "presenceConnections": 0, "presenceMembers": 0, "presenceSubscribers": 0,
                }},
            },
        })
    );
    assert_eq!(busy["status"]["isActive"], true);
    assert_eq!(
        busy["status"]["occupancy"]["metrics"],
        json!({
            "connections": 2, "publishers": 0, "subscribers": 2,
            "presenceConnections": 0, "presenceMembers": 0, "presenceSubscribers": 0,
        })
    );
}

#[tokio::test]
async fn channel_status_needs_the_channel_metadata_capability() {
    let app = with(MockAbly::builder().key_with_capability(
        KEY,
        r#"{"meta:*":["channel-metadata"],"other":["subscribe","publish","history"]}"#,
    ))
    .await;

    let allowed = app.get(&format!("/channels/meta:x?key={}", enc(KEY))).await;
    let denied = app.get(&format!("/channels/other?key={}", enc(KEY))).await;

    assert_eq!(allowed.status(), 200);
    let error = assert_error(denied, 401, 40160).await;
    assert_eq!(
        error.message,
        "Channel denied access based on given capability; channel = other, operation = channel-metadata"
    );
}
