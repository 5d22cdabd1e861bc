//! Message operations by serial (`docs/protocol.md#message-operations`):
//! get a message, update, delete and append it, list its versions; the
//! capabilities they need; delivery of new versions; msgpack.

use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::{Value, json};
use shared::protocol::{Action, Format};
use shared::token::TokenParams;

use crate::helpers::*;
use crate::ws::Client;

impl TestMock {
    /// Publishes one message on `channel` and returns its serial.
    async fn publish_one(&self, channel: &str, body: Value) -> String {
        let response = self.publish(channel, body).await;
        assert_eq!(response.status(), 201);
        let answer: Value = response.json().await.unwrap();
        answer["serials"][0].as_str().unwrap().to_owned()
    }

    /// PATCHes `body` as JSON to `/channels/{channel}/messages/{serial}`
    /// with `auth` (a bearer token) or [`KEY`].
    async fn patch(
        &self,
        channel: &str,
        serial: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let request = self.client.patch(self.url(&format!(
            "/channels/{}/messages/{}",
            enc(channel),
            enc(serial)
        )));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request.basic_auth(KEY_NAME, Some("test-secret")),
        };
        within(request.json(body).send()).await.unwrap()
    }

    /// GETs `/channels/{channel}/messages/{serial}{rest}` with [`KEY`].
    async fn get_serial(&self, channel: &str, serial: &str, rest: &str) -> reqwest::Response {
        self.get(&format!(
            "/channels/{}/messages/{}{rest}key={}",
            enc(channel),
            enc(serial),
            enc(KEY)
        ))
        .await
    }
}

/// A token for clientId `client_id` with `capability`.
fn token(app: &TestMock, capability: &str, client_id: &str) -> String {
    app.mock
        .issue_token(TokenParams {
            capability: Some(capability.into()),
            client_id: Some(client_id.into()),
            ..TokenParams::default()
        })
        .token
}

#[tokio::test]
async fn get_message_answers_the_published_message_and_404_for_an_unknown_serial() {
    let app = spawn().await;
    let serial = app
        .publish_one("c", json!({"id": "m1", "name": "greeting", "data": "hi"}))
        .await;

    let response = app.get_serial("c", &serial, "?").await;
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    let unknown = app.get_serial("c", "0000000000000-000000099@x", "?").await;

    assert_eq!(message["id"], "m1");
    assert_eq!(message["name"], "greeting");
    assert_eq!(message["data"], "hi");
    assert_eq!(message["serial"], serial.as_str());
    assert_eq!(message["action"], 0);
    assert_error(unknown, 404, 40400).await;
}

#[tokio::test]
async fn an_update_records_a_version_with_the_operation_and_get_message_answers_it() {
    let app = spawn().await;
    let serial = app
        .publish_one("c", json!({"name": "n", "data": {"value": "original"}}))
        .await;
    let published: Value = app
        .get_serial("c", &serial, "?")
        .await
        .json()
        .await
        .unwrap();
    app.mock.advance_clock(Duration::from_millis(5));

    let response = app
        .patch(
            "c",
            &serial,
            &json!({
                "serial": serial,
                "action": 1,
                "data": {"value": "updated"},
                "version": {"clientId": "updater", "description": "why", "metadata": {"reason": "testing"}},
            }),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let latest: Value = app
        .get_serial("c", &serial, "?")
        .await
        .json()
        .await
        .unwrap();

    let version_serial = answer["versionSerial"].as_str().unwrap();
    assert!(
        version_serial > serial.as_str(),
        "{version_serial} after {serial}"
    );
    assert_eq!(latest["serial"], serial.as_str());
    assert_eq!(latest["action"], 1);
    assert_eq!(latest["name"], "n");
    assert_eq!(latest["data"], r#"{"value":"updated"}"#);
    assert_eq!(latest["encoding"], "json");
    assert_eq!(latest["timestamp"], published["timestamp"]);
    // The mock clock runs on from the advance: the version is stamped at
    // least 5 ms after the publish, at the ms its serial carries.
    let published_at = published["timestamp"].as_u64().unwrap();
    let stamped = latest["version"]["timestamp"].as_u64().unwrap();
    assert!(stamped >= published_at + 5, "{stamped} vs {published_at}");
    assert!(version_serial.starts_with(&format!("{stamped:013}-")));
    assert_eq!(
        latest["version"],
        json!({
            "serial": version_serial,
            "timestamp": stamped,
            "clientId": "updater",
            "description": "why",
            "metadata": {"reason": "testing"},
        })
    );
}

#[tokio::test]
async fn a_delete_records_action_delete_with_the_data_it_carries() {
    let app = spawn().await;
    let serial = app
        .publish_one("c", json!({"name": "gone", "data": "secret"}))
        .await;

    let response = app
        .patch(
            "c",
            &serial,
            &json!({"action": 2, "data": {}, "version": {"description": "spam"}}),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let latest: Value = app
        .get_serial("c", &serial, "?")
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(latest["action"], 2);
    assert_eq!(latest["name"], "gone");
    assert_eq!(latest["data"], "{}");
    assert_eq!(latest["encoding"], "json");
    assert_eq!(latest["version"]["description"], "spam");
}

#[tokio::test]
async fn an_append_adds_its_string_data_and_reads_back_as_an_update() {
    let app = spawn().await;
    let serial = app.publish_one("c", json!({"data": "Hello"})).await;

    for part in [" World", "!"] {
        let response = app
            .patch("c", &serial, &json!({"action": 5, "data": part}), None)
            .await;
        assert_eq!(response.status(), 200);
    }
    let latest: Value = app
        .get_serial("c", &serial, "?")
        .await
        .json()
        .await
        .unwrap();
    let onto_json = app
        .patch("c", &serial, &json!({"action": 5, "data": {"a": 1}}), None)
        .await;

    assert_eq!(latest["data"], "Hello World!");
    assert_eq!(latest["action"], 1);
    assert_error(onto_json, 400, 40013).await;
}

#[tokio::test]
async fn versions_lists_every_version_and_pages_with_link() {
    let app = spawn().await;
    let serial = app.publish_one("c", json!({"data": "v1"})).await;
    app.publish_one("c", json!({"data": "other"})).await;
    for data in ["v2", "v3"] {
        app.patch("c", &serial, &json!({"action": 1, "data": data}), None)
            .await;
    }

    let all: Vec<Value> = app
        .get_serial("c", &serial, "/versions?")
        .await
        .json()
        .await
        .unwrap();
    let first = app
        .get_serial("c", &serial, "/versions?direction=forwards&limit=2&")
        .await;
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let first: Vec<Value> = first.json().await.unwrap();
    let next = link
        .split(", ")
        .find_map(|entry| entry.strip_suffix(">; rel=\"next\""))
        .unwrap()
        .trim_start_matches("<./")
        .to_owned();
    let rest: Vec<Value> = app
        .get(&format!(
            "/channels/c/messages/{}/{next}&key={}",
            enc(&serial),
            enc(KEY)
        ))
        .await
        .json()
        .await
        .unwrap();
    let unknown = app.get_serial("c", "nope", "/versions?").await;

    let data = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|m| format!("{}:{}", m["action"], m["data"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(data(&all), ["1:v3", "1:v2", "0:v1"]);
    assert_eq!(data(&first), ["0:v1", "1:v2"]);
    assert_eq!(data(&rest), ["1:v3"]);
    assert!(all.iter().all(|m| m["serial"] == serial.as_str()));
    assert_error(unknown, 404, 40400).await;
}

#[tokio::test]
async fn operations_need_the_any_capability_or_the_own_one_on_ones_own_message() {
    let app = spawn().await;
    let mine = app
        .publish_one("c", json!({"clientId": "alice", "data": "a"}))
        .await;
    let theirs = app
        .publish_one("c", json!({"clientId": "bob", "data": "b"}))
        .await;
    let own = token(
        &app,
        r#"{"c":["message-update-own","message-delete-own"]}"#,
        "alice",
    );
    let any = token(&app, r#"{"c":["message-update-any"]}"#, "carol");
    let update = json!({"action": 1, "data": "x"});
    let delete = json!({"action": 2});

    let own_update = app
        .patch("c", &mine, &update, Some(&own))
        .await
        .status()
        .as_u16();
    let own_delete = app
        .patch("c", &mine, &delete, Some(&own))
        .await
        .status()
        .as_u16();
    let others_update = app.patch("c", &theirs, &update, Some(&own)).await;
    let any_update = app
        .patch("c", &theirs, &update, Some(&any))
        .await
        .status()
        .as_u16();
    let any_delete = app.patch("c", &theirs, &delete, Some(&any)).await;

    assert_eq!((own_update, own_delete, any_update), (200, 200, 200));
    assert_error(others_update, 401, 40160).await;
    assert_error(any_delete, 401, 40160).await;
    let versions: Vec<Value> = app
        .get_serial("c", &theirs, "/versions?")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions.len(), 2, "a refused operation records nothing");
}

#[tokio::test]
async fn an_unsupported_action_is_40003_and_an_unknown_serial_404() {
    let app = spawn().await;
    let serial = app.publish_one("c", json!({"data": "a"})).await;

    let create = app
        .patch("c", &serial, &json!({"action": 0, "data": "b"}), None)
        .await;
    let unknown = app
        .patch("c", "nope", &json!({"action": 1, "data": "b"}), None)
        .await;

    assert_error(create, 400, 40003).await;
    assert_error(unknown, 404, 40400).await;
}

#[tokio::test]
async fn a_new_version_reaches_realtime_and_sse_subscribers() {
    let app = spawn().await;
    let (mut client, _) = Client::connected(&app.mock, "", Format::Json).await;
    client.attach("c").await;
    let mut frames = app.sse("channels=c").await;
    let serial = app
        .publish_one("c", json!({"id": "m1", "data": "one"}))
        .await;
    client.expect(Action::MESSAGE).await;
    frames.event().await;

    let answer: Value = app
        .patch(
            "c",
            &serial,
            &json!({"action": 1, "data": "two", "version": {"clientId": "ed"}}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();

    let frame = client.expect(Action::MESSAGE).await;
    let message = &frame.messages.unwrap()[0];
    assert_eq!(message.serial.as_deref(), Some(serial.as_str()));
    assert_eq!(message.action, Some(shared::message::MessageAction::UPDATE));
    assert_eq!(message.data, Some(json!("two")));
    let version = message.version.as_ref().unwrap();
    assert_eq!(version["serial"], answer["versionSerial"]);
    assert_eq!(version["clientId"], "ed");
    let event = frames.event().await.json();
    assert_eq!(event["id"], "m1");
    assert_eq!(event["data"], "two");
    assert_eq!(
        event.get("version"),
        None,
        "SSE 1.2 envelopes carry no version"
    );
}

#[tokio::test]
async fn a_msgpack_patch_and_get_are_answered_in_msgpack() {
    const MSGPACK: &str = "application/x-msgpack";
    let app = spawn().await;
    let serial = app.publish_one("c", json!({"data": "a"})).await;
    let mut body = Vec::new();
    let patch = Mp::Map(vec![
        (Mp::from("action"), Mp::from(1)),
        (Mp::from("data"), Mp::Binary(vec![1, 2, 3])),
    ]);
    rmpv::encode::write_value(&mut body, &patch).unwrap();

    let patched = within(
        app.client
            .patch(app.url(&format!("/channels/c/messages/{}", enc(&serial))))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .header("content-type", MSGPACK)
            .header("accept", MSGPACK)
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.headers()["content-type"], MSGPACK);
    let answer = rmpv::decode::read_value(&mut &patched.bytes().await.unwrap()[..]).unwrap();
    let got = within(
        app.client
            .get(app.url(&format!("/channels/c/messages/{}", enc(&serial))))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .header("accept", MSGPACK)
            .send(),
    )
    .await
    .unwrap();
    let latest = rmpv::decode::read_value(&mut &got.bytes().await.unwrap()[..]).unwrap();

    let field = |value: &Mp, key: &str| {
        value
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    };
    assert!(field(&answer, "versionSerial").unwrap().is_str());
    assert_eq!(field(&latest, "data"), Some(Mp::Binary(vec![1, 2, 3])));
    assert_eq!(field(&latest, "action"), Some(Mp::from(1)));
    assert_eq!(field(&latest, "encoding"), None);
}
