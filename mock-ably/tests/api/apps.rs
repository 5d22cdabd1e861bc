//! `POST /apps` and `DELETE /apps/{id}`: test apps as Ably's sandbox makes
//! them, each on its own port, sharing nothing.

use futures_util::{SinkExt as _, StreamExt as _};
use mock_ably::MockAbly;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{TestMock, assert_error, enc, spawn, with, within};

/// An app as `POST /apps` answered it.
struct App {
    body: Value,
    base_url: String,
}

impl App {
    fn key_str(&self, index: usize) -> String {
        self.body["keys"][index]["keyStr"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn id(&self) -> &str {
        self.body["appId"].as_str().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

async fn post_apps(mock: &TestMock, setup: &Value) -> reqwest::Response {
    within(mock.client.post(mock.url("/apps")).json(setup).send())
        .await
        .unwrap()
}

async fn create(mock: &TestMock, setup: &Value) -> App {
    let response = post_apps(mock, setup).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let base_url = format!(
        "http://{}:{}",
        body["endpoint"].as_str().unwrap(),
        body["port"]
    );
    App { body, base_url }
}

/// GET `path` on `app` with Basic auth as `key_str`.
async fn get_as(mock: &TestMock, url: String, key_str: &str) -> reqwest::Response {
    let (name, secret) = key_str.split_once(':').unwrap();
    within(mock.client.get(url).basic_auth(name, Some(secret)).send())
        .await
        .unwrap()
}

async fn publish_as(mock: &TestMock, url: String, key_str: &str, body: Value) {
    let (name, secret) = key_str.split_once(':').unwrap();
    let response = within(
        mock.client
            .post(url)
            .basic_auth(name, Some(secret))
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

fn fixtures_setup() -> Value {
    json!({
        "limits": { "presence": { "maxMembers": 250 } },
        "keys": [{}],
        "namespaces": [],
        "channels": [{
            "name": "persisted:presence_fixtures",
            "presence": [
                { "clientId": "client_bool", "data": "true" },
                { "clientId": "client_decoded", "data": "{\"a\":1}", "encoding": "json" }
            ]
        }]
    })
}

#[tokio::test]
async fn post_apps_answers_as_the_sandbox_with_the_setups_keys_and_where_the_app_listens() {
    let mock = spawn().await;
    let setup = json!({
        "keys": [
            {},
            { "capability": "{ \"chat:*\":[\"subscribe\", \"publish\"] }" },
            { "revocableTokens": true }
        ],
        "namespaces": [{ "id": "persisted", "persisted": true }],
        "channels": [{ "name": "plain" }]
    });

    let app = create(&mock, &setup).await;

    let body = &app.body;
    let app_id = app.id();
    assert_eq!(body["id"], app_id);
    assert_eq!(body["endpoint"], "127.0.0.1");
    assert_eq!(body["tls"], false);
    assert_ne!(body["port"], mock.mock.addr().port());
    assert_eq!(body["namespaces"], setup["namespaces"]);
    assert_eq!(body["channels"], setup["channels"]);
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for key in keys {
        let name = key["keyName"].as_str().unwrap();
        assert!(name.starts_with(&format!("{app_id}.")), "{name}");
        assert_eq!(
            key["keyStr"],
            format!("{name}:{}", key["keySecret"].as_str().unwrap())
        );
    }
    let capabilities: Vec<&Value> = keys.iter().map(|k| &k["capability"]).collect();
    assert_eq!(
        capabilities,
        [
            r#"{"*":["*"]}"#,
            r#"{"chat:*":["publish","subscribe"]}"#,
            r#"{"*":["*"]}"#
        ]
    );
    let revocable: Vec<&Value> = keys.iter().map(|k| &k["revocableTokens"]).collect();
    assert_eq!(revocable, [false, false, true]);
}

#[tokio::test]
async fn an_apps_keys_work_on_its_own_server_only() {
    let mock = spawn().await;
    let app = create(
        &mock,
        &json!({ "keys": [{}], "namespaces": [], "channels": [] }),
    )
    .await;
    let key = app.key_str(0);

    let on_app = get_as(&mock, app.url("/channels/chat/messages"), &key).await;
    assert_eq!(on_app.status(), 200);
    assert_eq!(on_app.json::<Value>().await.unwrap(), json!([]));
    let on_root = get_as(&mock, mock.url("/channels/chat/messages"), &key).await;
    assert_error(on_root, 404, 40400).await;
    let root_key_on_app = get_as(
        &mock,
        app.url("/channels/chat/messages"),
        crate::helpers::KEY,
    )
    .await;
    assert_error(root_key_on_app, 404, 40400).await;
}

#[tokio::test]
async fn apps_share_no_channels_or_history() {
    let mock = spawn().await;
    let setup = json!({ "keys": [{}], "namespaces": [], "channels": [] });
    let first = create(&mock, &setup).await;
    let second = create(&mock, &setup).await;
    assert_ne!(first.id(), second.id());
    assert_ne!(first.body["port"], second.body["port"]);

    publish_as(
        &mock,
        first.url("/channels/chat/messages"),
        &first.key_str(0),
        json!({ "name": "n", "data": "only in the first" }),
    )
    .await;

    let first_history = get_as(
        &mock,
        first.url("/channels/chat/messages"),
        &first.key_str(0),
    )
    .await;
    let first_history: Value = first_history.json().await.unwrap();
    assert_eq!(first_history[0]["data"], "only in the first");
    let second_history = get_as(
        &mock,
        second.url("/channels/chat/messages"),
        &second.key_str(0),
    )
    .await;
    assert_eq!(second_history.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn an_app_keeps_the_creating_mocks_settings() {
    let mock = with(
        MockAbly::builder()
            .key(crate::helpers::KEY)
            .retention_count(1),
    )
    .await;
    let app = create(
        &mock,
        &json!({ "keys": [{}], "namespaces": [], "channels": [] }),
    )
    .await;
    let key = app.key_str(0);

    for data in ["one", "two"] {
        publish_as(
            &mock,
            app.url("/channels/chat/messages"),
            &key,
            json!({ "data": data }),
        )
        .await;
    }

    let history: Value = get_as(&mock, app.url("/channels/chat/messages"), &key)
        .await
        .json()
        .await
        .unwrap();
    let data: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, ["two"]);
}

#[tokio::test]
async fn presence_fixtures_are_members_for_rest_presence() {
    let mock = spawn().await;
    let app = create(&mock, &fixtures_setup()).await;

    let response = get_as(
        &mock,
        app.url(&format!(
            "/channels/{}/presence",
            enc("persisted:presence_fixtures")
        )),
        &app.key_str(0),
    )
    .await;

    assert_eq!(response.status(), 200);
    let members: Value = response.json().await.unwrap();
    let members = members.as_array().unwrap();
    let seen: Vec<(&Value, &Value, &Value, &Value)> = members
        .iter()
        .map(|m| (&m["action"], &m["clientId"], &m["data"], &m["encoding"]))
        .collect();
    assert_eq!(
        seen,
        [
            (
                &json!(1),
                &json!("client_bool"),
                &json!("true"),
                &Value::Null
            ),
            (
                &json!(1),
                &json!("client_decoded"),
                &json!("{\"a\":1}"),
                &json!("json")
            ),
        ]
    );
    let connection = members[0]["connectionId"].as_str().unwrap();
    assert_eq!(members[1]["connectionId"], connection);
    assert_eq!(members[0]["id"], format!("{connection}:0:0"));
}

#[tokio::test]
async fn presence_fixtures_are_in_the_realtime_sync() {
    let mock = spawn().await;
    let app = create(&mock, &fixtures_setup()).await;
    let url = format!(
        "ws://{}:{}/?key={}&format=json",
        app.body["endpoint"].as_str().unwrap(),
        app.body["port"],
        enc(&app.key_str(0))
    );
    let (mut socket, _) = within(tokio_tungstenite::connect_async(url)).await.unwrap();
    let attach = json!({ "action": 10, "channel": "persisted:presence_fixtures" });
    socket
        .send(WsMessage::text(attach.to_string()))
        .await
        .unwrap();

    let sync = loop {
        let frame = within(socket.next()).await.unwrap().unwrap();
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        // SYNC
        if frame["action"] == 16 {
            break frame;
        }
    };

    assert_eq!(sync["channel"], "persisted:presence_fixtures");
    let members: Vec<(&Value, &Value)> = sync["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (&m["clientId"], &m["data"]))
        .collect();
    assert_eq!(
        members,
        [
            (&json!("client_bool"), &json!("true")),
            (&json!("client_decoded"), &json!("{\"a\":1}")),
        ]
    );
}

#[tokio::test]
async fn only_a_key_set_up_with_revocable_tokens_can_revoke() {
    let mock = spawn().await;
    let app = create(
        &mock,
        &json!({ "keys": [{}, { "revocableTokens": true }], "namespaces": [], "channels": [] }),
    )
    .await;
    let revoke = |index: usize| {
        let key_str = app.key_str(index);
        let (name, secret) = key_str.split_once(':').unwrap();
        mock.client
            .post(app.url(&format!("/keys/{name}/revokeTokens")))
            .basic_auth(name, Some(secret.to_owned()))
            .json(&json!({ "targets": ["clientId:alice"] }))
            .send()
    };

    assert_error(within(revoke(0)).await.unwrap(), 400, 40000).await;
    let revocable = within(revoke(1)).await.unwrap();
    assert_eq!(revocable.status(), 200);
    let body: Value = revocable.json().await.unwrap();
    assert_eq!(body["successCount"], 1);
}

#[tokio::test]
async fn delete_stops_the_app_and_an_unknown_app_is_404() {
    let mock = spawn().await;
    let app = create(
        &mock,
        &json!({ "keys": [{}], "namespaces": [], "channels": [] }),
    )
    .await;
    let url = mock.url(&format!("/apps/{}", app.id()));

    let deleted = within(mock.client.delete(&url).send()).await.unwrap();
    assert_eq!(deleted.status(), 204);

    let after = within(mock.client.get(app.url("/time")).send()).await;
    assert!(after.unwrap_err().is_connect(), "the app's port is closed");
    let again = within(mock.client.delete(&url).send()).await.unwrap();
    assert_error(again, 404, 40400).await;
}

#[tokio::test]
async fn live_apps_are_bounded_and_a_delete_frees_a_place() {
    let mock = with(MockAbly::builder().key(crate::helpers::KEY).max_apps(2)).await;
    let setup = json!({ "keys": [{}], "namespaces": [], "channels": [] });
    let first = create(&mock, &setup).await;
    create(&mock, &setup).await;

    let refused = assert_error(post_apps(&mock, &setup).await, 429, 42910).await;
    assert!(refused.message.contains("2 apps"), "{}", refused.message);

    let url = mock.url(&format!("/apps/{}", first.id()));
    let deleted = within(mock.client.delete(url).send()).await.unwrap();
    assert_eq!(deleted.status(), 204);
    create(&mock, &setup).await;
}

#[tokio::test]
async fn a_setup_that_does_not_read_is_400_and_makes_no_app() {
    let mock = with(MockAbly::builder().key(crate::helpers::KEY).max_apps(1)).await;

    let bad_capability = json!({ "keys": [{ "capability": "{\"x\":[\"publsh\"]}" }] });
    let error = assert_error(post_apps(&mock, &bad_capability).await, 400, 40000).await;
    assert!(error.message.contains("keys[0]"), "{}", error.message);
    let not_json = within(mock.client.post(mock.url("/apps")).body("{").send())
        .await
        .unwrap();
    assert_error(not_json, 400, 40000).await;
    let bad_channel = json!({ "channels": [{ "name": "" }] });
    assert_error(post_apps(&mock, &bad_channel).await, 400, 40010).await;

    // No place was taken: the one app allowed still fits.
    create(&mock, &json!({})).await;
}

#[tokio::test]
async fn an_apps_own_server_and_a_mock_with_max_apps_zero_do_not_provision() {
    let mock = spawn().await;
    let app = create(&mock, &json!({ "keys": [{}] })).await;
    let on_app = within(mock.client.post(app.url("/apps")).json(&json!({})).send())
        .await
        .unwrap();
    assert_error(on_app, 404, 40400).await;

    let off = with(MockAbly::builder().key(crate::helpers::KEY).max_apps(0)).await;
    assert_error(post_apps(&off, &json!({})).await, 404, 40400).await;
}
