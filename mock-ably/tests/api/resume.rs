//! Continuity (`docs/protocol.md#continuity-and-resume`): `lastEvent` and
//! `Last-Event-ID` resume, rewind, credential expiry on open streams
//! (`docs/protocol.md#token-expiry-on-an-open-stream`).

use std::time::Duration;

use mock_ably::MockAbly;
use shared::token::TokenParams;

use crate::helpers::*;

fn data(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.event.as_deref() == Some("message"))
        .map(|f| f.json()["data"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_resume_after_a_drop_replays_exactly_what_was_missed_then_goes_live() {
    let app = spawn().await;
    let mut frames = app.sse("channels=a,b").await;
    app.mock.publish_data("a", "", "1");
    app.mock.publish_data("b", "", "2");
    assert_eq!(frames.message().await["data"], "1");
    let last = frames.event().await.id.unwrap();

    app.mock.drop_streams();
    let (_, ending) = frames.rest().await;
    for (channel, data) in [("b", "3"), ("a", "4"), ("b", "5")] {
        app.mock.publish_data(channel, "", data);
    }
    let mut resumed = app
        .sse(&format!("channels=a,b&lastEvent={}", enc(&last)))
        .await;
    app.mock.publish_data("a", "", "6");

    assert!(matches!(ending, Next::Cut), "a drop is abrupt: {ending:?}");
    for expected in ["3", "4", "5", "6"] {
        assert_eq!(resumed.message().await["data"], expected);
    }
    assert!(resumed.within(QUIET).await.is_none());
}

#[tokio::test]
async fn the_last_event_id_header_resumes_too() {
    let app = spawn().await;
    app.mock.publish_data("c", "", "seen");
    let mut first = app.sse("channels=c&rewind=1").await;
    let last = first.event().await.id.unwrap();
    drop(first);
    app.mock.publish_data("c", "", "missed");

    let response = within(
        app.client
            .get(app.url(&format!("/sse?v=1.2&channels=c&key={}", enc(KEY))))
            .header("last-event-id", &last)
            .send(),
    )
    .await
    .unwrap();
    let mut frames = Frames::new(response);

    assert_eq!(frames.message().await["data"], "missed");
}

#[tokio::test]
async fn the_header_wins_over_a_stale_last_event_param() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "1");
    let old = frames.event().await.id.unwrap();
    app.mock.publish_data("c", "", "2");
    let newer = frames.event().await.id.unwrap();
    drop(frames);
    app.mock.publish_data("c", "", "3");

    let response = within(
        app.client
            .get(app.url(&format!(
                "/sse?v=1.2&channels=c&lastEvent={}&key={}",
                enc(&old),
                enc(KEY)
            )))
            .header("last-event-id", &newer)
            .send(),
    )
    .await
    .unwrap();
    let mut frames = Frames::new(response);

    assert_eq!(frames.message().await["data"], "3");
}

#[tokio::test]
async fn an_unknown_last_event_starts_fresh_without_an_error() {
    let app = spawn().await;
    app.mock.publish_data("c", "", "old");

    for cursor in ["garbage", "otherInstance:1", "x:999999"] {
        let mut frames = app
            .sse(&format!("channels=c&lastEvent={}", enc(cursor)))
            .await;
        app.mock.publish_data("c", "", cursor);

        let frame = frames.event().await;
        assert_eq!(frame.event.as_deref(), Some("message"), "{cursor}");
        assert_eq!(frame.json()["data"], cursor);
    }
}

#[tokio::test]
async fn a_last_event_that_retention_no_longer_covers_starts_fresh() {
    let app = with(MockAbly::builder().key(KEY).retention_count(3)).await;
    let mut frames = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "seen");
    let last = frames.event().await.id.unwrap();
    drop(frames);
    for i in 0..5 {
        app.mock.publish_data("c", "", format!("missed{i}"));
    }

    let mut resumed = app
        .sse(&format!("channels=c&lastEvent={}", enc(&last)))
        .await;
    app.mock.publish_data("c", "", "live");

    assert_eq!(resumed.message().await["data"], "live");
}

#[tokio::test]
async fn a_last_event_older_than_the_retention_time_starts_fresh() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "seen");
    let last = frames.event().await.id.unwrap();
    drop(frames);
    app.mock.publish_data("c", "", "missed");

    app.mock.advance_clock(Duration::from_secs(121));
    let mut resumed = app
        .sse(&format!("channels=c&lastEvent={}", enc(&last)))
        .await;
    app.mock.publish_data("c", "", "live");

    assert_eq!(resumed.message().await["data"], "live");
}

#[tokio::test]
async fn a_resume_covers_only_the_channels_of_the_new_request() {
    let app = spawn().await;
    let mut frames = app.sse("channels=a,b").await;
    app.mock.publish_data("a", "", "0");
    let last = frames.event().await.id.unwrap();
    drop(frames);
    app.mock.publish_data("a", "", "a1");
    app.mock.publish_data("b", "", "b1");
    app.mock.publish_data("c", "", "c1");

    let mut resumed = app
        .sse(&format!("channels=b,c&lastEvent={}", enc(&last)))
        .await;

    assert_eq!(resumed.message().await["data"], "b1");
    assert_eq!(resumed.message().await["data"], "c1");
}

/// `count` messages whose data is their index, "0", "1", ...
fn numbered(count: usize) -> Vec<shared::Message> {
    (0..count)
        .map(|i| {
            let mut m = shared::Message::default();
            m.data = Some(i.to_string().into());
            m
        })
        .collect()
}

#[tokio::test]
async fn rewind_counts_are_capped_at_100() {
    let app = spawn().await;
    app.mock.try_publish("c", numbered(120)).unwrap();

    let mut three = app.sse("channels=c&rewind=3").await;
    let mut all = app.sse("channels=c&rewind=500").await;

    for expected in ["117", "118", "119"] {
        assert_eq!(three.message().await["data"], expected);
    }
    assert!(three.within(QUIET).await.is_none());
    for expected in 20..120 {
        assert_eq!(all.message().await["data"], expected.to_string());
    }
    assert!(all.within(QUIET).await.is_none());
}

#[tokio::test]
async fn rewind_by_time_is_capped_at_100_messages_too() {
    let app = spawn().await;
    app.mock.try_publish("c", numbered(120)).unwrap();
    let queries = [
        "channels=c&rewind=2m".to_owned(),
        "channels=c&rewind=2m&rewindLimit=500".to_owned(),
        format!("channels={}", enc("[?rewind=2m]c")),
    ];

    for query in queries {
        let mut frames = app.sse(&query).await;

        let mut got = Vec::new();
        for _ in 0..100 {
            got.push(frames.message().await["data"].as_str().unwrap().to_owned());
        }
        let expected: Vec<String> = (20..120).map(|i| i.to_string()).collect();
        assert_eq!(got, expected, "{query}");
        assert!(frames.within(QUIET).await.is_none(), "{query}");
    }
}

#[tokio::test]
async fn rewind_by_time_takes_what_arrived_in_that_window_up_to_rewind_limit() {
    let app = spawn().await;
    app.mock.publish_data("c", "", "old");
    app.mock.advance_clock(Duration::from_secs(30));
    for i in 0..4 {
        app.mock.publish_data("c", "", format!("new{i}"));
    }

    let mut window = app.sse("channels=c&rewind=10s").await;
    let mut limited = app.sse("channels=c&rewind=1m&rewindLimit=2").await;

    for i in 0..4 {
        assert_eq!(window.message().await["data"], format!("new{i}"));
    }
    assert_eq!(limited.message().await["data"], "new2");
    assert_eq!(limited.message().await["data"], "new3");
    assert!(limited.within(QUIET).await.is_none());
}

#[tokio::test]
async fn rewind_is_ignored_when_resuming() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "1");
    app.mock.publish_data("c", "", "2");
    frames.event().await;
    let last = frames.event().await.id.unwrap();
    drop(frames);

    let mut resumed = app
        .sse(&format!("channels=c&rewind=5&lastEvent={}", enc(&last)))
        .await;
    app.mock.publish_data("c", "", "3");

    assert_eq!(resumed.message().await["data"], "3");
}

#[tokio::test]
async fn a_token_stream_gets_40142_at_expiry_and_then_ends() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            ttl: Some(300),
            ..TokenParams::default()
        })
        .token;
    let response = app
        .sse_response(&format!("channels=c&accessToken={}", enc(&token)))
        .await;
    let mut frames = Frames::new(response);

    let (events, ending) = frames.rest().await;

    assert!(matches!(ending, Next::End), "{ending:?}");
    let error = events.last().unwrap();
    assert_eq!(error.event.as_deref(), Some("error"));
    assert_eq!(error.id, None);
    let info = error.json();
    assert_eq!(info["code"], 40142);
    assert_eq!(info["statusCode"], 401);
    assert!(info.get("error").is_none(), "a bare ErrorInfo");
}

#[tokio::test]
async fn a_jwt_stream_ends_when_the_mock_clock_passes_its_exp() {
    let app = spawn().await;
    let jwt = jwt(&app.mock, r#"{"*":["*"]}"#, None, 3600);
    let response = app
        .sse_response(&format!("channels=c&accessToken={}", enc(&jwt)))
        .await;
    let mut frames = Frames::new(response);
    app.mock.publish_data("c", "", "before");
    assert_eq!(frames.message().await["data"], "before");

    app.mock.advance_clock(Duration::from_secs(3601));

    let error = frames.event().await;
    assert_eq!(error.event.as_deref(), Some("error"));
    assert_eq!(error.json()["code"], 40142);
    assert!(matches!(frames.next().await, Next::End));
}

#[tokio::test]
async fn expire_credentials_ends_token_streams_but_not_key_streams() {
    let app = spawn().await;
    let old_jwt = jwt(&app.mock, r#"{"*":["*"]}"#, None, 3600);
    let token = app.mock.issue_token(TokenParams::default()).token;
    let mut jwt_stream = Frames::new(
        app.sse_response(&format!("channels=c&accessToken={}", enc(&old_jwt)))
            .await,
    );
    let mut token_stream = Frames::new(
        app.sse_response(&format!("channels=c&accessToken={}", enc(&token)))
            .await,
    );
    let mut key_stream = app.sse("channels=c").await;

    app.mock.expire_credentials();
    app.mock.publish_data("c", "", "after");

    assert_eq!(jwt_stream.event().await.json()["code"], 40142);
    assert_eq!(token_stream.event().await.json()["code"], 40142);
    assert_eq!(key_stream.message().await["data"], "after");
    // Credentials already seen stay expired; new ones are honoured.
    let reuse = app
        .sse_response(&format!("channels=c&accessToken={}", enc(&old_jwt)))
        .await;
    assert_error(reuse, 401, 40142).await;
    let reuse_token = app
        .sse_response(&format!("channels=c&accessToken={}", enc(&token)))
        .await;
    assert_error(reuse_token, 401, 40142).await;
    let fresh = jwt(&app.mock, r#"{"*":["*"]}"#, Some("x"), 3600);
    let fresh = app
        .sse_response(&format!("channels=c&accessToken={}", enc(&fresh)))
        .await;
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
async fn the_renewal_recipe_loses_nothing() {
    let app = spawn().await;
    let token = app.mock.issue_token(TokenParams::default()).token;
    let mut frames = Frames::new(
        app.sse_response(&format!("channels=c&accessToken={}", enc(&token)))
            .await,
    );
    app.mock.publish_data("c", "", "1");
    let last = frames.event().await.id.unwrap();

    app.mock.expire_credentials();
    let (events, _) = frames.rest().await;
    app.mock.publish_data("c", "", "2");
    let renewed = app.mock.issue_token(TokenParams::default()).token;
    let mut resumed = Frames::new(
        app.sse_response(&format!(
            "channels=c&accessToken={}&lastEvent={}",
            enc(&renewed),
            enc(&last)
        ))
        .await,
    );
    app.mock.publish_data("c", "", "3");

    assert_eq!(data(&events), Vec::<String>::new());
    assert_eq!(events.last().unwrap().json()["code"], 40142);
    assert_eq!(resumed.message().await["data"], "2");
    assert_eq!(resumed.message().await["data"], "3");
}

#[tokio::test]
async fn replay_then_live_keeps_order_under_concurrent_publishing() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "0");
    let last = frames.event().await.id.unwrap();
    drop(frames);
    for i in 1..50 {
        app.mock.publish_data("c", "", i.to_string());
    }

    let query = format!("channels=c&lastEvent={}", enc(&last));
    let (mut resumed, ()) = tokio::join!(app.sse(&query), async {
        for i in 50..100 {
            app.mock.publish_data("c", "", i.to_string());
            tokio::task::yield_now().await;
        }
    });

    let mut got = Vec::new();
    for _ in 1..100 {
        got.push(resumed.message().await["data"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (1..100).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_plain_stream_ends_with_an_error_line_at_expiry() {
    let app = spawn().await;
    let token = app.mock.issue_token(TokenParams::default()).token;
    let response = app
        .get(&format!(
            "/event-stream?channels=c&accessToken={}",
            enc(&token)
        ))
        .await;
    let mut lines = Frames::lines(response);

    app.mock.expire_credentials();

    let line = lines.event().await;
    let envelope: serde_json::Value = serde_json::from_str(&line.raw).unwrap();
    assert_eq!(envelope["event"], "error");
    assert_eq!(envelope["data"]["code"], 40142);
    assert!(envelope.get("id").is_none());
    assert!(matches!(lines.next().await, Next::End));
}

#[tokio::test]
async fn a_long_backlog_does_not_delay_expiry() {
    let app = spawn().await;
    let token = app.mock.issue_token(TokenParams::default()).token;
    let mut first = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "seen");
    let last = first.event().await.id.unwrap();
    drop(first);
    // More than socket buffers hold, so the backlog is still draining when
    // the token expires.
    let big = "y".repeat(30_000);
    for _ in 0..2000 {
        app.mock.publish_data("c", "", big.as_str());
    }
    let mut resumed = Frames::new(
        app.sse_response(&format!(
            "channels=c&accessToken={}&lastEvent={}",
            enc(&token),
            enc(&last)
        ))
        .await,
    );
    resumed.message().await;

    app.mock.advance_clock(Duration::from_secs(7200));
    let (events, ending) = resumed.rest().await;

    assert!(matches!(ending, Next::End), "{ending:?}");
    assert_eq!(events.last().unwrap().json()["code"], 40142);
    assert!(
        data(&events).len() < 1999,
        "{} messages",
        data(&events).len()
    );
}
