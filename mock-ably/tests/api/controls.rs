//! The `/_mock/` switchboard and the handle's fault controls, stats, slow
//! streams, and the binary.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use mock_ably::{FailNext, FailTarget, MockAbly, Stats};
use serde_json::{Value, json};
use shared::ErrorInfo;
use shared::token::TokenParams;

use crate::helpers::*;

impl TestMock {
    /// POSTs `body` to `/_mock/{path}` with no credentials.
    pub(crate) async fn control(&self, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.client.post(self.url(&format!("/_mock/{path}")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        timeout(request.send()).await.unwrap()
    }
}

#[tokio::test]
async fn drop_streams_over_http_cuts_every_stream_without_an_error_event() {
    let app = spawn().await;
    let mut one = app.sse("channels=a").await;
    let mut two = app.sse("channels=b").await;

    let response = app.control("drop-streams", None).await;

    assert_eq!(response.status(), 204);
    for frames in [&mut one, &mut two] {
        let (events, ending) = frames.rest().await;
        assert!(events.iter().all(|f| f.event.as_deref() != Some("error")));
        assert!(matches!(ending, Next::Cut), "{ending:?}");
    }
    eventually("no stream is open", || app.mock.stats().open_streams == 0).await;
}

#[tokio::test]
async fn expire_credentials_over_http_ends_token_streams_with_40142() {
    let app = spawn().await;
    let token = app.mock.issue_token(TokenParams::default()).token;
    let mut frames = Frames::new(
        app.sse_response(&format!("channels=c&accessToken={}", enc(&token)))
            .await,
    );

    let response = app.control("expire-credentials", None).await;

    assert_eq!(response.status(), 204);
    assert_eq!(frames.event().await.json()["code"], 40142);
    let later = app
        .get(&format!("/channels/c/messages?accessToken={}", enc(&token)))
        .await;
    assert_error(later, 401, 40142).await;
}

#[tokio::test]
async fn fail_next_over_http_fails_the_next_n_requests_of_its_target() {
    let app = spawn().await;

    let response = app
        .control(
            "fail-next",
            Some(json!({"count": 2, "statusCode": 503, "code": 50003, "target": "stream"})),
        )
        .await;
    let time = app.get("/time").await;
    let first = app
        .sse_response(&format!("channels=c&key={}", enc(KEY)))
        .await;
    let second = app
        .get(&format!("/event-stream?channels=c&key={}", enc(KEY)))
        .await;
    let third = app
        .sse_response(&format!("channels=c&key={}", enc(KEY)))
        .await;

    assert_eq!(response.status(), 204);
    assert_eq!(time.status(), 200);
    assert_error(first, 503, 50003).await;
    assert_error(second, 503, 50003).await;
    assert_eq!(third.status(), 200);
}

#[tokio::test]
async fn fail_next_defaults_to_one_request_of_any_kind() {
    let app = spawn().await;

    app.control("fail-next", Some(json!({"statusCode": 500})))
        .await;
    let failed = app.get("/time").await;
    let fine = app.get("/time").await;

    let error = assert_error(failed, 500, 50000).await;
    assert!(error.message.contains("mock-ably"));
    assert_eq!(fine.status(), 200);
}

#[tokio::test]
async fn fail_next_happens_before_authentication_and_spares_the_controls() {
    let app = spawn().await;
    app.mock.fail_next(
        FailNext::new(ErrorInfo::from_code(40142, "Token expired"))
            .target(FailTarget::Rest)
            .count(1),
    );

    let stats = timeout(app.client.get(app.url("/_mock/stats")).send())
        .await
        .unwrap();
    let stream = app
        .sse_response(&format!("channels=c&key={}", enc(KEY)))
        .await;
    let publish = app.publish("c", json!({"data": "x"})).await;

    assert_eq!(stats.status(), 200);
    assert_eq!(stream.status(), 200);
    assert_error(publish, 401, 40142).await;
    assert_eq!(app.mock.stats().published, 0);
}

#[tokio::test]
async fn a_bad_fail_next_body_is_40001() {
    let app = spawn().await;

    let unknown_field = app.control("fail-next", Some(json!({"cuont": 1}))).await;
    let bad_target = app
        .control("fail-next", Some(json!({"target": "everything"})))
        .await;

    assert_error(unknown_field, 400, 40001).await;
    assert_error(bad_target, 400, 40001).await;
}

#[tokio::test]
async fn advance_clock_over_http_moves_time() {
    let app = spawn().await;
    let before = app.mock.now_ms();

    let response = app
        .control("advance-clock", Some(json!({"ms": 3_600_000})))
        .await;
    let time: Vec<u64> = app.get("/time").await.json().await.unwrap();

    assert_eq!(response.status(), 204);
    assert!(time[0] >= before + 3_600_000);
}

#[tokio::test]
async fn stats_count_streams_messages_and_deliveries_per_channel() {
    let app = spawn().await;
    let mut one = app.sse("channels=a,b").await;
    let mut two = app.sse("channels=a").await;
    app.publish("a", json!([{"data": "1"}, {"data": "2"}]))
        .await;
    app.publish("b", json!({"data": "3"})).await;
    for _ in 0..3 {
        one.message().await;
    }
    for _ in 0..2 {
        two.message().await;
    }

    let stats: Stats = app.get("/_mock/stats").await.json().await.unwrap();

    assert_eq!(stats, app.mock.stats());
    assert_eq!(stats.open_streams, 2);
    assert_eq!(stats.published, 3);
    assert_eq!(stats.delivered, 5);
    let a = &stats.channels["a"];
    assert_eq!(
        (a.published, a.delivered, a.retained, a.subscribers),
        (2, 4, 2, 2)
    );
    let b = &stats.channels["b"];
    assert_eq!(
        (b.published, b.delivered, b.retained, b.subscribers),
        (1, 1, 1, 1)
    );
    drop(two);
    eventually("the closed stream is gone", || {
        app.mock.stats().open_streams == 1
    })
    .await;
    assert_eq!(app.mock.stats().channels["a"].subscribers, 1);
}

#[tokio::test]
async fn a_stream_that_falls_too_far_behind_is_cut_and_resumes_with_exactly_what_it_missed() {
    let app = with(MockAbly::builder().key(KEY).lag_limit(4)).await;
    let mut slow = app.sse("channels=c").await;
    app.mock.publish_data("c", "", "first");
    let first = slow.event().await.id.unwrap();

    // Enough data to fill the socket buffers, so the stream falls behind
    // whether or not the runtime gets to run it between publishes.
    let big = "x".repeat(60_000);
    let published: Vec<String> = (0..400).map(|i| format!("{i}:{big}")).collect();
    for data in &published {
        app.mock.publish_data("c", "", data.as_str());
    }
    let (events, ending) = slow.rest().await;
    let seen: Vec<&Frame> = events
        .iter()
        .filter(|f| f.event.as_deref() == Some("message"))
        .collect();
    let last = seen.last().map_or(first, |f| f.id.clone().unwrap());
    let mut resumed = app
        .sse(&format!("channels=c&lastEvent={}", enc(&last)))
        .await;
    let mut replayed = Vec::new();
    for _ in seen.len()..published.len() {
        replayed.push(resumed.message().await["data"].as_str().unwrap().to_owned());
    }
    let nothing_more = resumed.within(QUIET).await;
    app.mock.publish_data("c", "", "live");

    assert!(matches!(ending, Next::Cut), "{ending:?}");
    assert!(seen.len() < published.len(), "{} events", seen.len());
    // What came before the cut was the start of what was published, in order.
    for (frame, data) in seen.iter().zip(&published) {
        assert_eq!(frame.json()["data"], data.as_str());
    }
    // The resume sends exactly the rest, in order, then nothing, then live.
    assert!(replayed == published[seen.len()..], "replay differs");
    assert!(nothing_more.is_none(), "{nothing_more:?}");
    assert_eq!(resumed.message().await["data"], "live");
}

#[tokio::test]
async fn dropping_the_handle_closes_streams_and_stops_serving() {
    let app = spawn().await;
    let mut frames = app.sse("channels=c").await;
    let url = app.url("/time");

    drop(app.mock);

    let (_, ending) = frames.rest().await;
    assert!(matches!(ending, Next::Cut | Next::End));
    let started = std::time::Instant::now();
    while app.client.get(&url).send().await.is_ok() {
        assert!(started.elapsed() < PATIENCE, "still serving");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_given_listener_is_used() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    let mock = MockAbly::builder()
        .key(KEY)
        .listener(listener)
        .start()
        .await;

    assert_eq!(mock.addr(), addr);
    assert_eq!(mock.base_url(), format!("http://{addr}"));
}

/// Starts the binary with `args` and `env`, returning it and its base URL.
fn start_binary(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mock-ably"));
    command
        .args(args)
        .env_remove("MOCK_ABLY_KEYS")
        .env_remove("MOCK_ABLY_BIND")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("mock-ably listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_owned();
    (child, url)
}

fn status_of(url: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { timeout(reqwest::get(url)).await.unwrap().status().as_u16() })
}

#[test]
fn the_binary_prints_one_ready_line_and_serves() {
    let (mut child, url) = start_binary(
        &[
            "--bind",
            "127.0.0.1:0",
            "--key",
            KEY,
            "--retention",
            "30s",
            "--keepalive",
            "1s",
        ],
        &[],
    );

    let status = status_of(&format!("{url}/channels/c/messages?key={}", enc(KEY)));
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(status, 200);
}

#[test]
fn the_binary_reads_bind_and_keys_from_the_environment() {
    let (mut child, url) = start_binary(
        &[],
        &[
            ("MOCK_ABLY_BIND", "127.0.0.1:0"),
            ("MOCK_ABLY_KEYS", "envApp.one:s1,envApp.two:s2"),
        ],
    );

    let second = status_of(&format!("{url}/channels/c/messages?key=envApp.two%3As2"));
    let dev = status_of(&format!(
        "{url}/channels/c/messages?key={}",
        enc(mock_ably::DEV_KEY)
    ));
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(second, 200);
    assert_eq!(dev, 404);
}

#[test]
fn the_binary_without_keys_accepts_and_prints_the_dev_key() {
    let (mut child, url) = start_binary(&["--bind", "127.0.0.1:0"], &[]);

    let dev = status_of(&format!(
        "{url}/channels/c/messages?key={}",
        enc(mock_ably::DEV_KEY)
    ));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();

    assert_eq!(dev, 200);
    assert!(String::from_utf8_lossy(&output.stderr).contains(mock_ably::DEV_KEY));
}

#[test]
fn the_binary_refuses_a_bad_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_mock-ably"))
        .args(["--bind", "127.0.0.1:0", "--key", "not-a-key"])
        .env_remove("MOCK_ABLY_KEYS")
        .output()
        .unwrap();

    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid API key"));
}
