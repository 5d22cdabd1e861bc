//! `GET /sse` and `GET /event-stream`: frames (`docs/protocol.md#sse-framing`),
//! parameters (`docs/protocol.md#stream-parameters`), refusals before the
//! stream starts.

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::json;
use shared::token::TokenParams;

use crate::helpers::*;

#[tokio::test]
async fn message_events_are_id_event_data_with_a_cursor_id_and_one_line_of_json() {
    let app = spawn().await;
    let mut frames = app.sse("channels=chat").await;

    app.publish("chat", json!({"name": "greeting", "data": "hello\nworld"}))
        .await;

    let frame = frames.frame().await;
    let id = frame.id.clone().unwrap();
    let data = frame.data.clone().unwrap();
    assert_eq!(frame.raw, format!("id: {id}\nevent: message\ndata: {data}"));
    let message = frame.json();
    assert_eq!(message["name"], "greeting");
    assert_eq!(message["data"], "hello\nworld");
    assert_eq!(message["channel"], "chat");
    assert!(message["timestamp"].as_u64().is_some());
    // The id is a resume cursor, not the message id
    // (`docs/protocol.md#sse-framing`).
    assert_ne!(Some(id.as_str()), message["id"].as_str());
}

#[tokio::test]
async fn a_200_means_attached_so_nothing_published_after_it_is_missed() {
    let app = spawn().await;

    for round in 0..20 {
        let mut frames = app.sse("channels=race").await;
        app.mock.publish_data("race", "", format!("m{round}"));

        assert_eq!(frames.message().await["data"], format!("m{round}"));
    }
}

#[tokio::test]
async fn envelopes_keep_the_stored_encoding() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;

    app.publish(
        "c",
        json!([{"data": {"a": 1}}, {"data": "AQID", "encoding": "base64"}]),
    )
    .await;

    let json_message = frames.message().await;
    let binary = frames.message().await;
    assert_eq!(
        (
            json_message["data"].as_str(),
            json_message["encoding"].as_str()
        ),
        (Some(r#"{"a":1}"#), Some("json"))
    );
    assert_eq!(
        (binary["data"].as_str(), binary["encoding"].as_str()),
        (Some("AQID"), Some("base64"))
    );
}

#[tokio::test]
async fn event_stream_is_json_lines_unless_the_client_accepts_sse() {
    let app = spawn().await;
    let path = format!("/event-stream?v=1.2&channels=c&key={}", enc(KEY));

    let plain = app.get(&path).await;
    let sse = within(
        app.client
            .get(app.url(&path))
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let (mut plain, mut sse) = (Frames::lines(plain), Frames::new(sse));
    app.mock.publish_data("c", "n", "x");

    let line = plain.event().await;
    let envelope: serde_json::Value = serde_json::from_str(&line.raw).unwrap();
    assert_eq!(envelope["event"], "message");
    assert_eq!(envelope["data"]["data"], "x");
    assert_eq!(envelope["data"]["channel"], "c");
    assert!(envelope["id"].is_string());
    assert_eq!(sse.message().await["data"], "x");
}

#[tokio::test]
async fn sse_responses_are_event_streams_that_are_not_cached() {
    let app = spawn().await;

    let response = app
        .sse_response(&format!("channels=c&key={}", enc(KEY)))
        .await;

    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
}

#[tokio::test]
async fn channel_is_an_alias_and_separator_allows_commas_in_names() {
    let app = spawn().await;
    let mut alias = app.sse("channel=solo").await;
    let mut separated = app
        .sse(&format!("separator=%7C&channels={}", enc("fo,o|ba,r")))
        .await;

    app.mock.publish_data("solo", "", "1");
    app.mock.publish_data("fo,o", "", "2");
    app.mock.publish_data("ba,r", "", "3");

    assert_eq!(alias.message().await["data"], "1");
    let first = separated.message().await;
    let second = separated.message().await;
    assert_eq!(
        (first["channel"].as_str(), first["data"].as_str()),
        (Some("fo,o"), Some("2"))
    );
    assert_eq!(
        (second["channel"].as_str(), second["data"].as_str()),
        (Some("ba,r"), Some("3"))
    );
}

#[tokio::test]
async fn one_stream_gets_several_channels_in_publish_order() {
    let app = spawn().await;
    let mut frames = app.sse("channels=a,b,c").await;

    for i in 0..30 {
        let channel = ["a", "b", "c"][i % 3];
        app.mock.publish_data(channel, "", i.to_string());
    }

    for i in 0..30 {
        let message = frames.message().await;
        assert_eq!(message["data"], i.to_string());
        assert_eq!(message["channel"], ["a", "b", "c"][i % 3]);
    }
}

#[tokio::test]
async fn keepalives_are_comments_sent_after_silence() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .keepalive(Duration::from_millis(100)),
    )
    .await;
    let mut frames = app.sse("channels=c").await;

    let first = frames.frame().await;
    let second = frames.frame().await;

    assert_eq!(first.raw, ":keepalive");
    assert!(first.comment && second.comment);
}

#[tokio::test]
async fn an_idle_stream_gets_a_keepalive_one_interval_after_its_last_message() {
    const INTERVAL: Duration = Duration::from_millis(600);
    let app = with(MockAbly::builder().key(KEY).keepalive(INTERVAL)).await;
    let mut frames = app.sse("channels=c").await;
    // Right after a keepalive a new interval starts; a message early in it
    // is the case a fixed once-per-interval tick would make wait two.
    assert_eq!(frames.frame().await.raw, ":keepalive");

    app.mock.publish_data("c", "", "m");
    let message = frames.frame().await;
    let received = std::time::Instant::now();
    let keepalive = frames.frame().await;
    let silence = received.elapsed();

    assert_eq!(message.json()["data"], "m");
    assert_eq!(keepalive.raw, ":keepalive");
    // One interval after the message, give or take scheduling: never two.
    assert!(
        silence >= INTERVAL - Duration::from_millis(100) && silence < INTERVAL * 3 / 2,
        "keepalive {silence:?} after the message, interval {INTERVAL:?}"
    );
}

#[tokio::test]
async fn plain_keepalives_are_empty_lines() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .keepalive(Duration::from_millis(100)),
    )
    .await;
    let response = app
        .get(&format!("/event-stream?channels=c&key={}", enc(KEY)))
        .await;
    let mut lines = Frames::lines(response);

    let line = lines.frame().await;

    assert_eq!(line.raw, "");
}

#[tokio::test]
async fn heartbeats_true_sends_heartbeat_events_instead_of_keepalives() {
    let app = with(
        MockAbly::builder()
            .key(KEY)
            .keepalive(Duration::from_millis(100)),
    )
    .await;
    let mut frames = app.sse("channels=c&heartbeats=true").await;
    let plain = app
        .get(&format!(
            "/event-stream?channels=c&heartbeats=true&key={}",
            enc(KEY)
        ))
        .await;
    let mut lines = Frames::lines(plain);

    let frame = frames.frame().await;
    let line = lines.frame().await;

    assert_eq!(frame.raw, "event: heartbeat\ndata:");
    assert_eq!(frame.id, None);
    assert_eq!(line.raw, r#"{"event":"heartbeat"}"#);
}

#[tokio::test]
async fn enveloped_false_sends_the_bare_payload() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c&enveloped=false").await;
    let plain = app
        .get(&format!(
            "/event-stream?channels=c&enveloped=false&key={}",
            enc(KEY)
        ))
        .await;
    let mut lines = Frames::lines(plain);

    app.publish(
        "c",
        json!([{"data": {"a": 1}}, {"data": "two\nlines"}, {"data": "AQID", "encoding": "base64"}]),
    )
    .await;

    let object = frames.event().await;
    assert_eq!(object.data.as_deref(), Some(r#"{"a":1}"#));
    assert!(object.id.is_some());
    let text = frames.event().await;
    assert_eq!(
        text.raw.lines().filter(|l| l.starts_with("data: ")).count(),
        2
    );
    assert_eq!(text.data.as_deref(), Some("two\nlines"));
    assert_eq!(frames.event().await.data.as_deref(), Some("AQID"));
    assert_eq!(lines.event().await.data.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(lines.event().await.data.as_deref(), Some("two\nlines"));
}

#[tokio::test]
async fn qualifiers_apply_options_to_one_channel_and_leave_the_bare_name() {
    let app = spawn().await;
    app.mock.publish_data("a", "", "a-old");
    app.mock.publish_data("b", "", "b-old");

    let mut frames = app
        .sse(&format!("channels={}", enc("[?rewind=1]a,b")))
        .await;
    app.mock.publish_data("b", "", "b-new");

    let first = frames.message().await;
    let second = frames.message().await;
    assert_eq!(
        (first["channel"].as_str(), first["data"].as_str()),
        (Some("a"), Some("a-old"))
    );
    assert_eq!(
        (second["channel"].as_str(), second["data"].as_str()),
        (Some("b"), Some("b-new"))
    );
}

#[tokio::test]
async fn a_qualifier_overrides_the_request_parameter() {
    let app = spawn().await;
    for i in 0..3 {
        app.mock.publish_data("a", "", format!("a{i}"));
    }
    app.mock.publish_data("b", "", "b0");

    let mut frames = app
        .sse(&format!("rewind=1&channels={}", enc("[?rewind=2]a,b")))
        .await;

    let data: Vec<_> = [
        frames.message().await,
        frames.message().await,
        frames.message().await,
    ]
    .iter()
    .map(|m| m["data"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(data, ["a1", "a2", "b0"]);
}

#[tokio::test]
async fn metachannels_can_be_subscribed_with_their_prefix() {
    // Ably's `*` resource does not cover `[meta]` channels: the key needs
    // `[*]*` (or `[meta]*`).
    let app = with(MockAbly::builder().key(&format!(r#"{KEY}={{"[*]*":["*"]}}"#))).await;
    let mut frames = app
        .sse(&format!(
            "channels={}",
            enc("[meta?x=y]log,[meta]stats:minute")
        ))
        .await;

    app.mock.publish_data("[meta]log", "", "entry");

    let message = frames.message().await;
    assert_eq!(message["channel"], "[meta]log");
}

#[tokio::test]
async fn subscribe_is_checked_for_every_channel_before_the_stream_starts() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            capability: Some(r#"{"allowed":["subscribe"],"pub-only":["publish"]}"#.into()),
            ..TokenParams::default()
        })
        .token;

    let allowed = app
        .sse_response(&format!("channels=allowed&accessToken={}", enc(&token)))
        .await;
    let mixed = app
        .sse_response(&format!(
            "channels=allowed,pub-only&accessToken={}",
            enc(&token)
        ))
        .await;
    let meta = app
        .sse_response(&format!(
            "channels={}&accessToken={}",
            enc("[meta]log"),
            enc(&token)
        ))
        .await;

    assert_eq!(allowed.status(), 200);
    let error = assert_error(mixed, 401, 40160).await;
    assert!(error.message.contains("pub-only"));
    assert_error(meta, 401, 40160).await;
    assert_eq!(app.mock.stats().open_streams, 1);
}

#[tokio::test]
async fn a_capability_on_a_name_covers_its_tagged_channels() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            capability: Some(r#"{"room":["subscribe"]}"#.into()),
            ..TokenParams::default()
        })
        .token;

    let tagged = app
        .sse_response(&format!(
            "channels={}&accessToken={}",
            enc("room::$chat"),
            enc(&token)
        ))
        .await;

    assert_eq!(tagged.status(), 200);
}

#[tokio::test]
async fn stream_requests_with_bad_parameters_are_refused_before_streaming() {
    let app = spawn().await;
    let key = format!("key={}", enc(KEY));

    assert_error(app.sse_response(&key).await, 400, 40000).await;
    assert_error(
        app.sse_response(&format!("{key}&channels={}", enc("[x]y")))
            .await,
        400,
        40010,
    )
    .await;
    assert_error(
        app.sse_response(&format!("{key}&channels=a,,b")).await,
        400,
        40010,
    )
    .await;
    assert_error(
        app.sse_response(&format!("{key}&channels=c&rewind=soon"))
            .await,
        400,
        40003,
    )
    .await;
    assert_error(
        app.sse_response(&format!("{key}&channels=c&rewind=10s&rewindLimit=x"))
            .await,
        400,
        40003,
    )
    .await;
    assert_error(
        app.sse_response(&format!("{key}&channels=c&delta=bsdiff"))
            .await,
        400,
        40003,
    )
    .await;
    assert_error(
        app.sse_response(&format!("{key}&channels=c&enveloped=maybe"))
            .await,
        400,
        40003,
    )
    .await;
    assert_error(
        app.sse_response(&format!("{key}&channels=c&heartbeats=1"))
            .await,
        400,
        40003,
    )
    .await;
    assert_error(app.sse_response("channels=c").await, 401, 40101).await;
    assert_error(
        app.sse_response("channels=c&accessToken=testApp.unknown")
            .await,
        401,
        40143,
    )
    .await;
    assert_eq!(app.mock.stats().open_streams, 0);
}

#[tokio::test]
async fn a_declared_client_id_must_match_the_token() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            client_id: Some("alice".into()),
            ..TokenParams::default()
        })
        .token;
    let open = |client_id: &str| {
        app.sse_response_owned(format!(
            "channels=c&clientId={client_id}&accessToken={}",
            enc(&token)
        ))
    };

    assert_eq!(open("alice").await.status(), 200);
    assert_error(open("bob").await, 401, 40102).await;
}

impl TestMock {
    /// [`TestMock::sse_response`] with an owned query.
    pub(crate) async fn sse_response_owned(&self, query: String) -> reqwest::Response {
        self.sse_response(&query).await
    }
}

#[tokio::test]
async fn streams_accept_every_credential_form() {
    let app = spawn().await;
    let jwt = jwt(&app.mock, r#"{"*":["subscribe"]}"#, None, 600);
    let path = "/sse?v=1.2&channels=c";

    let basic = within(
        app.client
            .get(app.url(path))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .send(),
    )
    .await
    .unwrap();
    let bearer_raw = app.get_bearer(path, &jwt).await;
    let bearer_b64 = app.get_bearer(path, &b64(&jwt)).await;
    let param = app.get(&format!("{path}&accessToken={}", enc(&jwt))).await;
    let no_version = app.get(&format!("/sse?channels=c&key={}", enc(KEY))).await;

    for response in [basic, bearer_raw, bearer_b64, param, no_version] {
        assert_eq!(response.status(), 200);
    }
}
