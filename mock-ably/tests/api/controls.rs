//! The `/_mock/` switchboard and the handle's fault controls, stats, slow
//! streams, and the binary.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
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
        within(request.send()).await.unwrap()
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

    let stats = within(app.client.get(app.url("/_mock/stats")).send())
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
async fn advancing_the_clock_by_u64_max_then_2_over_http_cannot_wrap_it_backwards() {
    let app = spawn().await;
    let time = || async {
        let time: Vec<u64> = app.get("/time").await.json().await.unwrap();
        time[0]
    };
    let before = time().await;

    let absurd = app
        .control("advance-clock", Some(json!({"ms": u64::MAX})))
        .await;
    let two = app.control("advance-clock", Some(json!({"ms": 2}))).await;
    let after_two = time().await;
    let max = u64::try_from(mock_ably::MAX_CLOCK_OFFSET.as_millis()).unwrap();
    let to_the_bound = app
        .control("advance-clock", Some(json!({"ms": max - 2})))
        .await;
    let one_more = app.control("advance-clock", Some(json!({"ms": 1}))).await;
    let at_the_bound = time().await;

    let error = assert_error(absurd, 400, 40003).await;
    assert_eq!(
        error.message,
        "ms: the mock's clock moves at most 3153600000000 ms (100 years) ahead of real time \
         in all, and is 0 ms ahead already"
    );
    assert_eq!(two.status(), 204);
    assert!(
        after_two >= before + 2 && after_two < before + 60_000,
        "{after_two}"
    );
    assert_eq!(to_the_bound.status(), 204);
    assert_error(one_more, 400, 40003).await;
    assert!(at_the_bound >= before + max, "{at_the_bound}");
    // The Rust handle saturates at the bound instead: still never backwards.
    app.mock.advance_clock(std::time::Duration::MAX);
    assert!(app.mock.now_ms() >= at_the_bound);
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
        assert!(started.elapsed() < patience(), "still serving");
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

/// The `mock-ably` binary, running, with its ready line read.
struct Binary {
    child: Child,
    /// From the ready line.
    url: String,
    /// Whatever follows the ready line on stdout.
    stdout: BufReader<ChildStdout>,
}

/// How a [`Binary`] ended.
#[derive(Debug)]
struct Stopped {
    status: ExitStatus,
    /// stdout after the ready line.
    stdout: String,
    stderr: String,
}

impl Binary {
    /// Starts the binary with `args` and `env` (and none of the
    /// `MOCK_ABLY_*` variables of the test's own environment), and reads the
    /// ready line.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mock-ably"));
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in [
            "MOCK_ABLY_BIND",
            "MOCK_ABLY_KEYS",
            "MOCK_ABLY_RETENTION",
            "MOCK_ABLY_KEEPALIVE",
        ] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .strip_suffix('\n')
            .and_then(|line| line.strip_prefix("mock-ably listening on "))
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .to_owned();
        Self { child, url, stdout }
    }

    /// Stops the binary as `kill` or `docker stop` would (SIGTERM), waits
    /// for it to exit, and reads the rest of its output to the end.
    fn stop(&mut self) -> Stopped {
        #[cfg(unix)]
        {
            let sent = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success(), "kill -TERM failed");
        }
        #[cfg(not(unix))]
        self.child.kill().unwrap();
        let mut stdout = String::new();
        self.stdout.read_to_string(&mut stdout).unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = self.child.wait().unwrap();
        Stopped {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Binary {
    /// A failed test still leaves no process behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `future` on a runtime of its own, for the synchronous binary tests.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn status_of(url: &str) -> u16 {
    block_on(async { within(reqwest::get(url)).await.unwrap().status().as_u16() })
}

/// Opens `/sse` on channel `c` of the binary at `url` with `key`, and waits
/// for `count` keepalives (and nothing else), returning the time before
/// each: the first from the response, the others from the one before.
async fn keepalive_gaps(url: &str, key: &str, count: usize) -> Vec<Duration> {
    let response = within(reqwest::get(format!(
        "{url}/sse?v=1.2&channels=c&key={}",
        enc(key)
    )))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut frames = Frames::new(response);
    let mut last = std::time::Instant::now();
    let mut gaps = Vec::new();
    for _ in 0..count {
        let frame = frames.frame().await;
        assert_eq!(frame.raw, ":keepalive");
        gaps.push(last.elapsed());
        last = std::time::Instant::now();
    }
    gaps
}

#[test]
fn the_binary_prints_exactly_one_ready_line_serves_and_stops_on_sigterm() {
    let mut binary = Binary::start(&["--bind", "127.0.0.1:0", "--key", KEY], &[]);
    let url = binary.url.clone();

    let status = status_of(&format!("{url}/channels/c/messages?key={}", enc(KEY)));
    let stopped = binary.stop();

    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(status, 200);
    assert_eq!(stopped.stdout, "", "stdout after the ready line");
    assert!(stopped.status.success(), "{stopped:?}");
}

#[test]
fn the_binary_keepalive_flag_sets_the_keepalive_interval() {
    let mut binary = Binary::start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--key",
            KEY,
            "--keepalive",
            "200ms",
        ],
        &[],
    );

    // With the default of 15 s, none would come within the test's patience.
    let gaps = block_on(keepalive_gaps(&binary.url, KEY, 3));
    binary.stop();

    for gap in &gaps[1..] {
        assert!(
            *gap >= Duration::from_millis(150) && *gap < Duration::from_secs(1),
            "{gaps:?}"
        );
    }
}

#[test]
fn the_binary_retention_flag_lets_an_old_last_event_start_fresh() {
    let mut binary = Binary::start(
        &["--bind", "127.0.0.1:0", "--key", KEY, "--retention", "1s"],
        &[],
    );
    let url = binary.url.clone();

    let first = block_on(async {
        let client = reqwest::Client::new();
        let publish = |data: &'static str| {
            within(
                client
                    .post(format!("{url}/channels/c/messages"))
                    .basic_auth(KEY_NAME, Some("test-secret"))
                    .json(&json!({"data": data}))
                    .send(),
            )
        };
        let sse = |query: String| {
            within(
                client
                    .get(format!(
                        "{url}/sse?v=1.2&channels=c&key={}{query}",
                        enc(KEY)
                    ))
                    .send(),
            )
        };
        let mut stream = Frames::new(sse(String::new()).await.unwrap());
        publish("seen").await.unwrap();
        let seen = stream.event().await.id.unwrap();
        publish("missed").await.unwrap();
        drop(stream);
        // Past the 1 s retention, well inside the default 2 minutes.
        let advanced = within(
            client
                .post(format!("{url}/_mock/advance-clock"))
                .json(&json!({"ms": 2_000}))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(advanced.status(), 204);
        let mut resumed = Frames::new(sse(format!("&lastEvent={}", enc(&seen))).await.unwrap());
        publish("live").await.unwrap();
        resumed.message().await["data"].as_str().unwrap().to_owned()
    });
    binary.stop();

    assert_eq!(first, "live", "\"missed\" is past retention");
}

#[test]
fn the_binary_reads_bind_keys_and_keepalive_from_the_environment() {
    let mut binary = Binary::start(
        &[],
        &[
            ("MOCK_ABLY_BIND", "127.0.0.1:0"),
            ("MOCK_ABLY_KEYS", "envApp.one:s1,envApp.two:s2"),
            ("MOCK_ABLY_KEEPALIVE", "200ms"),
        ],
    );
    let url = binary.url.clone();

    let first = status_of(&format!("{url}/channels/c/messages?key=envApp.one%3As1"));
    let second = status_of(&format!("{url}/channels/c/messages?key=envApp.two%3As2"));
    let dev = status_of(&format!(
        "{url}/channels/c/messages?key={}",
        enc(mock_ably::DEV_KEY)
    ));
    let gaps = block_on(keepalive_gaps(&url, "envApp.one:s1", 2));
    binary.stop();

    // The default bind would be 127.0.0.1:8090.
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_ne!(url, "http://127.0.0.1:8090");
    assert_eq!((first, second), (200, 200));
    assert_eq!(dev, 404);
    assert!(gaps[1] < Duration::from_secs(1), "{gaps:?}");
}

#[test]
fn the_binary_without_keys_accepts_and_prints_the_dev_key() {
    let mut binary = Binary::start(&["--bind", "127.0.0.1:0"], &[]);

    let dev = status_of(&format!(
        "{}/channels/c/messages?key={}",
        binary.url,
        enc(mock_ably::DEV_KEY)
    ));
    let stopped = binary.stop();

    assert_eq!(dev, 200);
    assert!(stopped.stderr.contains(mock_ably::DEV_KEY), "{stopped:?}");
    assert_eq!(stopped.stdout, "");
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

#[test]
fn the_binary_takes_a_key_capability_after_an_equals_sign() {
    let history = |url: &str, channel: &str, key: &str| {
        status_of(&format!(
            "{url}/channels/{}/messages?key={}",
            enc(channel),
            enc(key)
        ))
    };
    let mut flag = Binary::start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--key",
            r#"app.one:s1={"chat:*":["history","subscribe"]}"#,
        ],
        &[],
    );
    // In the variable, commas inside the JSON do not separate keys.
    let mut variable = Binary::start(
        &["--bind", "127.0.0.1:0"],
        &[(
            "MOCK_ABLY_KEYS",
            r#"app.two:s2={"news":["history"],"[meta]*":["history"]},app.three:s3"#,
        )],
    );
    let (one, two) = (flag.url.clone(), variable.url.clone());

    let statuses = [
        history(&one, "chat:a", "app.one:s1"),
        history(&one, "news", "app.one:s1"),
        history(&two, "news", "app.two:s2"),
        history(&two, "[meta]log", "app.two:s2"),
        history(&two, "chat:a", "app.two:s2"),
        history(&two, "chat:a", "app.three:s3"),
        history(&two, "[meta]log", "app.three:s3"),
    ];
    flag.stop();
    variable.stop();

    assert_eq!(statuses, [200, 401, 200, 200, 401, 200, 401]);
}

#[test]
fn the_binary_refuses_a_bad_key_capability_naming_the_key_not_the_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_mock-ably"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--key",
            r#"app.key:TopSecret={"chat:*":["subscribe","publsh"]}"#,
        ])
        .env_remove("MOCK_ABLY_KEYS")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains(
            r#"--key: key app.key: invalid capability: unknown operation "publsh" for resource "chat:*""#
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("TopSecret"), "{stderr}");
}

#[tokio::test]
async fn a_web_page_on_another_origin_cannot_drive_the_mock_controls() {
    let app = spawn().await;
    let mut stream = app.sse("channels=c").await;
    let from = |origin: &'static str, path: &'static str| {
        let request = app
            .client
            .post(app.url(path))
            .header("origin", origin)
            // A form post: "simple", so a browser sends it without a preflight.
            .header("content-type", "text/plain")
            .body(r#"{"ms": 86400000}"#);
        async move { within(request.send()).await.unwrap() }
    };
    let preflight = |origin: &'static str| {
        let request = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/_mock/fail-next"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type");
        async move { within(request.send()).await.unwrap() }
    };
    let before = app.mock.now_ms();

    let drop = from("https://evil.example", "/_mock/drop-streams").await;
    let clock = from("http://localhost.evil.example", "/_mock/advance-clock").await;
    let stats = within(
        app.client
            .get(app.url("/_mock/stats"))
            .header("origin", "null")
            .send(),
    )
    .await
    .unwrap();
    let evil_preflight = preflight("https://evil.example").await;

    for response in [&drop, &clock, &stats, &evil_preflight] {
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "no CORS grant: {response:?}"
        );
    }
    let error = assert_error(drop, 403, 40300).await;
    assert!(
        error.message.contains("loopback origins"),
        "{}",
        error.message
    );
    assert_error(clock, 403, 40300).await;
    assert_error(stats, 403, 40300).await;
    assert_error(evil_preflight, 403, 40300).await;
    assert!(
        app.mock.now_ms() < before + 86_400_000,
        "the clock did not move"
    );
    assert_eq!(
        app.mock.stats().open_streams,
        1,
        "the stream was not dropped"
    );

    // Loopback pages (the interop suite's, a dev server's) and requests with
    // no Origin at all (curl, tests) are served as before.
    let local_preflight = preflight("http://localhost:5173").await;
    assert_eq!(local_preflight.status(), 204);
    assert_eq!(
        local_preflight.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let local = from("http://127.0.0.1:8080", "/_mock/advance-clock").await;
    assert_eq!(local.status(), 204);
    assert_eq!(
        local.headers()["access-control-allow-origin"],
        "http://127.0.0.1:8080"
    );
    assert_eq!(app.control("drop-streams", None).await.status(), 204);
    let (_, ending) = stream.rest().await;
    assert!(matches!(ending, Next::Cut), "{ending:?}");
}
