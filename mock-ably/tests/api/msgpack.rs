//! msgpack on REST (`docs/protocol.md#msgpack-on-rest`): msgpack request
//! bodies, msgpack answers (errors included) for requests that prefer them,
//! and binary `data` round-tripping between the two formats.

use rmpv::Value as Mp;
use serde_json::{Value, json};

use crate::helpers::*;

const MSGPACK: &str = "application/x-msgpack";

fn pack(value: &Mp) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    bytes
}

fn unpack(bytes: &[u8]) -> Mp {
    let mut reader = bytes;
    let value = rmpv::decode::read_value(&mut reader).unwrap();
    assert!(reader.is_empty(), "{} trailing bytes", reader.len());
    value
}

fn map(entries: &[(&str, Mp)]) -> Mp {
    Mp::Map(
        entries
            .iter()
            .map(|(key, value)| (Mp::from(*key), value.clone()))
            .collect(),
    )
}

/// The value of `key` in a msgpack map.
fn field<'a>(value: &'a Mp, key: &str) -> &'a Mp {
    value
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key:?} in {value}"))
}

impl TestMock {
    /// GET `path` with [`KEY`] and `Accept: accept`.
    async fn get_accepting(&self, path: &str, accept: &str) -> reqwest::Response {
        within(
            self.client
                .get(self.url(path))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .header("accept", accept)
                .send(),
        )
        .await
        .unwrap()
    }

    /// POSTs msgpack `body` to `path` with [`KEY`], asking for `accept`.
    async fn post_msgpack(&self, path: &str, body: &Mp, accept: &str) -> reqwest::Response {
        within(
            self.client
                .post(self.url(path))
                .basic_auth(KEY_NAME, Some("test-secret"))
                .header("content-type", MSGPACK)
                .header("accept", accept)
                .body(pack(body))
                .send(),
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_msgpack_publish_is_answered_in_msgpack_and_binary_data_round_trips() {
    let app = spawn().await;
    let body = Mp::Array(vec![
        map(&[
            ("name", "bin".into()),
            ("data", Mp::Binary(vec![0, 1, 2, 255])),
        ]),
        map(&[("name", "text".into()), ("data", "hello".into())]),
    ]);

    let published = app
        .post_msgpack("/channels/c/messages", &body, MSGPACK)
        .await;

    assert_eq!(published.status(), 201);
    assert_eq!(published.headers()["content-type"], MSGPACK);
    let answer = unpack(&published.bytes().await.unwrap());
    assert_eq!(field(&answer, "channel"), &Mp::from("c"));
    assert_eq!(field(&answer, "serials").as_array().unwrap().len(), 2);
    // In JSON, the binary data is base64 with `encoding: base64`.
    let json_page: Value = app
        .get_accepting(
            "/channels/c/messages?direction=forwards",
            "application/json",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json_page[0]["name"], "bin");
    assert_eq!(json_page[0]["data"], "AAEC/w==");
    assert_eq!(json_page[0]["encoding"], "base64");
    assert_eq!(json_page[1]["data"], "hello");
    assert!(json_page[1].get("encoding").is_none());
    // In msgpack, it is `bin` again, with no encoding.
    let packed = app
        .get_accepting("/channels/c/messages?direction=forwards", MSGPACK)
        .await;
    assert_eq!(packed.status(), 200);
    assert_eq!(packed.headers()["content-type"], MSGPACK);
    assert!(packed.headers().contains_key("link"));
    let page = unpack(&packed.bytes().await.unwrap());
    let items = page.as_array().unwrap();
    assert_eq!(field(&items[0], "data"), &Mp::Binary(vec![0, 1, 2, 255]));
    assert!(
        items[0]
            .as_map()
            .unwrap()
            .iter()
            .all(|(k, _)| k.as_str() != Some("encoding"))
    );
    assert_eq!(field(&items[1], "data"), &Mp::from("hello"));
}

#[tokio::test]
async fn base64_data_published_in_json_reads_back_as_bin_in_msgpack() {
    let app = spawn().await;
    app.publish("c", json!({"data": "aGk=", "encoding": "utf-8/base64"}))
        .await;

    let packed = app.get_accepting("/channels/c/messages", MSGPACK).await;

    let page = unpack(&packed.bytes().await.unwrap());
    let item = &page.as_array().unwrap()[0];
    assert_eq!(field(item, "data"), &Mp::Binary(b"hi".to_vec()));
    assert_eq!(field(item, "encoding"), &Mp::from("utf-8"));
}

#[tokio::test]
async fn errors_are_msgpack_with_the_error_headers_when_msgpack_is_preferred() {
    let app = spawn().await;

    let response = within(
        app.client
            .get(app.url("/channels/c/messages"))
            .header("accept", MSGPACK)
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], MSGPACK);
    assert_eq!(response.headers()["x-ably-errorcode"], "40101");
    let body = unpack(&response.bytes().await.unwrap());
    let error = field(&body, "error");
    assert_eq!(field(error, "code"), &Mp::from(40101));
    assert_eq!(field(error, "statusCode"), &Mp::from(401));
    assert_eq!(
        field(error, "href"),
        &Mp::from("https://help.ably.io/error/40101")
    );
}

#[tokio::test]
async fn format_msgpack_in_the_query_answers_msgpack_whatever_accept_says() {
    let app = spawn().await;

    let packed = app
        .get_accepting("/time?format=msgpack", "application/json")
        .await;
    let json = app.get_accepting("/time?format=json", MSGPACK).await;

    assert_eq!(packed.headers()["content-type"], MSGPACK);
    let time = unpack(&packed.bytes().await.unwrap());
    let ms = time.as_array().unwrap()[0].as_u64().unwrap();
    assert!(ms.abs_diff(app.mock.now_ms()) < 5_000, "{ms}");
    assert_eq!(json.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn a_msgpack_body_that_does_not_read_is_40001() {
    let app = spawn().await;
    let mut trailing = pack(&map(&[("data", "x".into())]));
    trailing.push(0xc0);

    let response = within(
        app.client
            .post(app.url("/channels/c/messages"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .header("content-type", MSGPACK)
            .body(trailing)
            .send(),
    )
    .await
    .unwrap();

    let error = assert_error(response, 400, 40001).await;
    assert_eq!(
        error.message,
        "invalid msgpack body: 1 bytes after the msgpack value"
    );
}

#[tokio::test]
async fn a_msgpack_token_request_is_read() {
    let app = spawn().await;
    let request = token_request(&app.mock, shared::token::TokenParams::default());
    let json = serde_json::to_value(&request).unwrap();
    let Value::Object(fields) = json else {
        unreachable!()
    };
    let body = Mp::Map(
        fields
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(s) => Mp::from(s),
                    Value::Number(n) => Mp::from(n.as_u64().unwrap()),
                    other => panic!("unexpected {other}"),
                };
                (Mp::from(key), value)
            })
            .collect(),
    );

    let response = app
        .post_msgpack(&format!("/keys/{KEY_NAME}/requestToken"), &body, MSGPACK)
        .await;

    assert_eq!(response.status(), 200);
    let details = unpack(&response.bytes().await.unwrap());
    assert_eq!(field(&details, "keyName"), &Mp::from(KEY_NAME));
    assert_eq!(field(&details, "capability"), &Mp::from(r#"{"*":["*"]}"#));
}

#[tokio::test]
async fn a_get_with_the_msgpack_content_type_and_no_body_is_served() {
    let app = spawn().await;

    // What ably-js in Node sends for `channel.status()`.
    let response = within(
        app.client
            .get(app.url("/channels/room"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .header("content-type", MSGPACK)
            .header("accept", MSGPACK)
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 200);
    let details = unpack(&response.bytes().await.unwrap());
    assert_eq!(field(&details, "channelId"), &Mp::from("room"));
}
