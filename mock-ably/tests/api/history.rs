//! `GET /channels/{channel}/messages` (`docs/protocol.md#history`): limit,
//! direction, start/end, relative `Link` paging, capability, retention.

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::{Value, json};
use shared::token::TokenParams;

use crate::helpers::*;

async fn publish_numbers(app: &TestMock, channel: &str, count: usize) {
    let batch: Vec<Value> = (0..count).map(|i| json!({"data": i.to_string()})).collect();
    assert_eq!(
        app.publish(channel, Value::Array(batch)).await.status(),
        201
    );
}

fn data(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect()
}

/// `rel` → URL from a `Link` header.
fn links(response: &reqwest::Response) -> Vec<(String, String)> {
    let header = response.headers()["link"].to_str().unwrap().to_owned();
    header
        .split(", ")
        .map(|entry| {
            let (url, rel) = entry.split_once(">; rel=\"").unwrap();
            (
                rel.trim_end_matches('"').to_owned(),
                url.trim_start_matches('<').to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn history_is_newest_first_by_default_and_forwards_on_request() {
    let app = spawn().await;
    publish_numbers(&app, "c", 3).await;

    let backwards: Vec<Value> = app
        .get(&format!("/channels/c/messages?key={}", enc(KEY)))
        .await
        .json()
        .await
        .unwrap();
    let forwards: Vec<Value> = app
        .get(&format!(
            "/channels/c/messages?direction=forwards&key={}",
            enc(KEY)
        ))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(data(&backwards), ["2", "1", "0"]);
    assert_eq!(data(&forwards), ["0", "1", "2"]);
    assert!(backwards[0].get("channel").is_none());
}

#[tokio::test]
async fn link_paging_visits_every_message_once_in_order() {
    let app = spawn().await;
    publish_numbers(&app, "c", 7).await;

    for (direction, expected) in [
        ("backwards", ["6", "5", "4", "3", "2", "1", "0"]),
        ("forwards", ["0", "1", "2", "3", "4", "5", "6"]),
    ] {
        let mut seen = Vec::new();
        let mut path = format!(
            "/channels/c/messages?limit=3&direction={direction}&key={}",
            enc(KEY)
        );
        let mut pages = 0;
        loop {
            let response = app.get(&path).await;
            let links = links(&response);
            assert!(links.iter().any(|(rel, _)| rel == "first"));
            assert!(links.iter().any(|(rel, _)| rel == "current"));
            let page: Vec<Value> = response.json().await.unwrap();
            seen.extend(data(&page).into_iter().map(str::to_owned));
            pages += 1;
            let Some((_, next)) = links.into_iter().find(|(rel, _)| rel == "next") else {
                break;
            };
            // Link URLs are relative to the channel's messages path (ably-js).
            let relative = next.strip_prefix("./messages?").expect("a relative link");
            assert!(!relative.contains(','), "ably-js splits Link on commas");
            path = format!("/channels/c/messages?{relative}&key={}", enc(KEY));
        }

        assert_eq!(seen, expected);
        assert_eq!(pages, 3);
    }
}

#[tokio::test]
async fn start_and_end_bound_the_timestamps_inclusively() {
    let app = spawn().await;
    let batch: Vec<Value> = (1..=5)
        .map(|i| json!({"data": i.to_string(), "timestamp": 1_000 * i}))
        .collect();
    app.publish("c", Value::Array(batch)).await;

    let page: Vec<Value> = app
        .get(&format!(
            "/channels/c/messages?start=2000&end=4000&direction=forwards&key={}",
            enc(KEY)
        ))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(data(&page), ["2", "3", "4"]);
}

#[tokio::test]
async fn invalid_history_params_are_40003() {
    let app = spawn().await;

    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "direction=sideways",
        "start=x",
        "start=5&end=4",
    ] {
        let response = app
            .get(&format!("/channels/c/messages?{query}&key={}", enc(KEY)))
            .await;

        assert_error(response, 400, 40003).await;
    }
}

#[tokio::test]
async fn history_needs_the_history_capability() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            capability: Some(r#"{"c":["subscribe","publish"]}"#.into()),
            ..TokenParams::default()
        })
        .token;

    let response = app
        .get(&format!("/channels/c/messages?accessToken={}", enc(&token)))
        .await;

    assert_error(response, 401, 40160).await;
}

#[tokio::test]
async fn retention_drops_messages_by_age_and_by_count() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .retention(Duration::from_secs(120))
            .retention_count(3),
    )
    .await;
    publish_numbers(&app, "c", 5).await;

    let capped = app.history_forwards("c").await;
    app.mock.advance_clock(Duration::from_secs(121));
    let aged = app.history_forwards("c").await;

    assert_eq!(data(&capped), ["2", "3", "4"]);
    assert!(aged.is_empty());
}

#[tokio::test]
async fn history_items_carry_their_publish_serial_and_action_create() {
    let app = spawn().await;
    let published: Value = app
        .publish("c", json!([{"data": "a"}, {"data": "b"}]))
        .await
        .json()
        .await
        .unwrap();

    let history = app.history_forwards("c").await;

    let serials: Vec<&str> = history
        .iter()
        .map(|m| m["serial"].as_str().unwrap())
        .collect();
    assert_eq!(
        published["serials"],
        json!(serials),
        "history serials are the publish's"
    );
    assert!(serials[0] < serials[1], "serials order the channel");
    assert!(history.iter().all(|m| m["action"] == 0));
}

#[tokio::test]
async fn from_serial_lists_only_what_was_published_up_to_an_attach() {
    use shared::protocol::{Action, Format};
    let app = spawn().await;
    publish_numbers(&app, "c", 2).await;
    let (mut client, _) = crate::ws::Client::connected(&app.mock, "", Format::Json).await;
    let attached = client.attach("c").await;
    let serial = attached.channel_serial.unwrap();
    publish_numbers(&app, "c", 3).await;
    client.expect(Action::MESSAGE).await;

    let until = format!(
        "/channels/c/messages?from_serial={}&key={}",
        enc(&serial),
        enc(KEY)
    );
    let first = app.get(&format!("{until}&limit=1")).await;
    let next = links(&first)
        .into_iter()
        .find(|(rel, _)| rel == "next")
        .unwrap()
        .1;
    let first: Vec<Value> = first.json().await.unwrap();
    assert_eq!(data(&first), ["1"]);
    assert!(next.contains("from_serial="), "{next}");
    let rest: Vec<Value> = app
        .get(&format!(
            "/channels/c/{}&key={}",
            next.trim_start_matches("./"),
            enc(KEY)
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(data(&rest), ["0"]);

    let foreign = app
        .get(&format!(
            "/channels/c/messages?from_serial=other:1&key={}",
            enc(KEY)
        ))
        .await;
    assert_error(foreign, 400, 40003).await;
}
