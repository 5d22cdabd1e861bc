//! The `sse-client` binary end to end: spawned against local servers, its
//! stdout, stderr and exit code checked exactly.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, get};
use base64::Engine as _;
use serde_json::{Value, json};
use shared::ErrorInfo;
use test_support::patience;

use crate::support::{Recorded, Script, ScriptServer};

/// Runs the binary with `args` and extra environment, killing it if it
/// outlives the test's patience. The parent's `ABLY_*` variables are
/// removed so the host cannot leak into a test.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-client"));
    command
        .args(args)
        .env_remove("ABLY_ENDPOINT")
        .env_remove("ABLY_AUTH_URL")
        .env_remove("ABLY_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary runs");
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > patience() {
                child.kill().unwrap();
                panic!("sse-client did not exit: {:?}", child.wait_with_output());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test]
async fn raw_prints_events_with_browser_ids_and_stops_at_the_limit() {
    let server = ScriptServer::start(
        vec![Script::sse(&[
            b"retry: 1\nid: 1\ndata: a\n\nevent: tick\ndata: b\n\n",
        ])],
        Script::sse(&[b"data: c\n\n"]),
    )
    .await;

    let output = run(&["raw", &server.url("/events"), "--limit", "3"], &[]).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout_lines(&output),
        [
            json!({"type": "message", "data": "a", "id": "1"}),
            json!({"type": "tick", "data": "b", "id": "1"}),
            json!({"type": "message", "data": "c", "id": "1"}),
        ]
    );
    assert!(stderr(&output).contains("connected"), "{}", stderr(&output));
}

#[tokio::test]
async fn raw_sends_headers_and_the_last_event_id() {
    let mut server = ScriptServer::start(vec![], Script::sse(&[b"data: x\n\n"])).await;

    let output = run(
        &[
            "raw",
            &server.url("/"),
            "--header",
            "X-Test: yes",
            "--last-event-id",
            "42",
            "--limit",
            "1",
        ],
        &[],
    )
    .await;

    assert_eq!(output.status.code(), Some(0));
    let request = server.request().await;
    assert_eq!(request.header("x-test"), Some("yes"));
    assert_eq!(request.header("last-event-id"), Some("42"));
}

#[tokio::test]
async fn raw_exits_1_on_a_status_other_than_200() {
    for status in [204, 404] {
        let server = ScriptServer::start(vec![], Script::status(status)).await;

        let output = run(&["raw", &server.url("/")], &[]).await;

        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            stderr(&output).lines().last(),
            Some(format!("error: {status} unexpected HTTP status {status}").as_str())
        );
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn raw_exits_1_on_a_wrong_content_type() {
    let server = ScriptServer::start(
        vec![],
        Script::sse(&[b"data: x\n\n"]).header("content-type", "text/plain"),
    )
    .await;

    let output = run(&["raw", &server.url("/")], &[]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("error: 0 unexpected content type"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn bad_usage_exits_2() {
    for args in [
        &["raw"][..],
        &["raw", "http://127.0.0.1:1/", "--header", "no colon"],
        &["subscribe"],
        &["subscribe", "--channel", "c", "--rewind", "ten"],
        &["subscribe", "--channel", "c", "--auth-param", "noequals"],
        &["subscribe", "--channel", "c", "--key", "not-a-key"],
        &["subscribe", "--channel", "c", "--auth-url", "ftp://x/"],
        &["raw", "not a url"],
        &["frobnicate"],
        &[
            "subscribe",
            "--channel",
            "a",
            "--channel",
            "b",
            "--delta",
            "--unenveloped",
            "--token",
            "t",
        ],
    ] {
        let output = run(args, &[]).await;

        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn bad_headers_keys_and_params_are_usage_errors_that_never_echo_the_value() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["raw", "http://127.0.0.1:1/", "--header", "bad name: v"],
            "error: --header <NAME: VALUE>: invalid header name \"bad name\"",
        ),
        (
            &[
                "raw",
                "http://127.0.0.1:1/",
                "--header",
                "X-Secret: hunter2\u{1}",
            ],
            "error: --header <NAME: VALUE>: invalid value for header X-Secret",
        ),
        (
            &[
                "subscribe",
                "--channel",
                "c",
                "--auth-url",
                "http://127.0.0.1:1/",
                "--auth-header",
                "Authorization: Bearer hunter2\nx",
            ],
            "error: --auth-header <NAME: VALUE>: invalid value for header Authorization",
        ),
        (
            &[
                "subscribe",
                "--channel",
                "c",
                "--auth-url",
                "http://127.0.0.1:1/",
                "--auth-header",
                "hunter2-without-a-name",
            ],
            "error: --auth-header <NAME: VALUE>: expected \"Name: value\"",
        ),
        (
            &["subscribe", "--channel", "c", "--key", "appkey:hunter2"],
            "error: --key <KEY>: invalid API key: key name must be appId.keyId",
        ),
        (
            &[
                "subscribe",
                "--channel",
                "c",
                "--auth-url",
                "http://127.0.0.1:1/",
                "--auth-param",
                "hunter2",
            ],
            "error: --auth-param <K=V>: expected k=v",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args, &[]).await;

        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {log}");
        assert_eq!(log.lines().next(), Some(expected), "{args:?}");
        assert!(!log.contains("hunter2"), "{log}");
    }
}

/// An auth URL at `/auth`, any method, that hands out `T1`, `T2`… as
/// `application/jwt` and records each request; `/sse` scripted.
async fn recording_auth_server(scripts: Vec<Script>) -> (ScriptServer, Arc<Mutex<Vec<Recorded>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let routes: Router = Router::new().route(
        "/auth",
        any(move |request: axum::extract::Request| {
            let record = Arc::clone(&record);
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let mut seen = record.lock().unwrap();
                seen.push(Recorded {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                });
                (
                    [("content-type", "application/jwt")],
                    format!("T{}", seen.len()),
                )
            }
        }),
    );
    let server = ScriptServer::start_with(scripts, Script::sse(&[b""]).hang(), routes).await;
    (server, seen)
}

fn one_message() -> Script {
    Script::sse(&[frame("e1", &json!({"id": "m1", "channel": "ch", "data": "hi"})).as_bytes()])
}

#[tokio::test]
async fn subscribe_sends_auth_headers_and_params_by_get_and_post() {
    for method in ["get", "post"] {
        let (mut server, seen) = recording_auth_server(vec![one_message()]).await;

        let output = run(
            &[
                "subscribe",
                "--channel",
                "ch",
                "--endpoint",
                &server.url(""),
                "--auth-url",
                &server.url("/auth?fromUrl=1"),
                "--auth-method",
                method,
                "--auth-header",
                "Authorization: Bearer user-session",
                "--auth-header",
                "X-Room:  lobby ",
                "--auth-param",
                "room=r1",
                "--auth-param",
                "empty=",
                "--limit",
                "1",
            ],
            &[],
        )
        .await;

        assert_eq!(
            output.status.code(),
            Some(0),
            "{method}: {}",
            stderr(&output)
        );
        assert_eq!(
            stdout_lines(&output),
            [json!({"channel": "ch", "id": "m1", "data": "hi", "eventId": "e1"})]
        );
        let auth = seen.lock().unwrap().remove(0);
        assert_eq!(auth.method, method.to_uppercase());
        assert_eq!(auth.header("authorization"), Some("Bearer user-session"));
        assert_eq!(auth.header("x-room"), Some("lobby"));
        if method == "get" {
            assert_eq!(auth.uri, "/auth?fromUrl=1&room=r1&empty=");
            assert!(auth.body.is_empty());
        } else {
            assert_eq!(auth.uri, "/auth?fromUrl=1");
            assert_eq!(auth.body.as_ref(), b"room=r1&empty=");
            assert_eq!(
                auth.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
        }
        assert_eq!(
            server.request().await.query("accessToken").as_deref(),
            Some("T1")
        );
    }
}

#[tokio::test]
async fn subscribe_with_a_key_flag_or_a_token_flag() {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("app.key:secret")
    );
    for (flag, value) in [("--key", "app.key:secret"), ("--token", "fixed-token")] {
        let (mut server, seen) = recording_auth_server(vec![one_message()]).await;

        let output = run(
            &[
                "subscribe",
                "--channel",
                "ch",
                "--endpoint",
                &server.url(""),
                flag,
                value,
                "--limit",
                "1",
            ],
            &[],
        )
        .await;

        assert_eq!(output.status.code(), Some(0), "{flag}: {}", stderr(&output));
        assert_eq!(
            stdout_lines(&output),
            [json!({"channel": "ch", "id": "m1", "data": "hi", "eventId": "e1"})]
        );
        assert!(!stderr(&output).contains(value), "{}", stderr(&output));
        let request = server.request().await;
        if flag == "--key" {
            assert_eq!(request.header("authorization"), Some(basic.as_str()));
            assert_eq!(request.query("accessToken"), None);
        } else {
            assert_eq!(request.header("authorization"), None);
            assert_eq!(request.query("accessToken").as_deref(), Some("fixed-token"));
        }
        assert!(seen.lock().unwrap().is_empty(), "no auth URL call");
    }
}

#[tokio::test]
async fn subscribe_pretty_prints_over_several_lines() {
    let (server, _) = recording_auth_server(vec![one_message()]).await;

    let output = run(
        &[
            "subscribe",
            "--channel",
            "ch",
            "--endpoint",
            &server.url(""),
            "--token",
            "t",
            "--limit",
            "1",
            "--pretty",
        ],
        &[],
    )
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "{\n  \"channel\": \"ch\",\n  \"id\": \"m1\",\n  \"data\": \"hi\",\n  \"eventId\": \"e1\"\n}\n"
    );
}

/// A server with `/auth` handing out `T1`, `T2`… and `/sse` scripted.
async fn ably_server(scripts: Vec<Script>) -> ScriptServer {
    let calls = Arc::new(AtomicUsize::new(0));
    let routes: Router = Router::new().route(
        "/auth",
        get(move || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move { ([("content-type", "application/jwt")], format!("T{n}")) }
        }),
    );
    ScriptServer::start_with(scripts, Script::sse(&[b""]).hang(), routes).await
}

fn frame(event_id: &str, message: &Value) -> String {
    format!("id: {event_id}\nevent: message\ndata: {message}\n\n")
}

#[tokio::test]
async fn subscribe_prints_one_json_object_per_message() {
    let frames = [
        frame(
            "e1",
            &json!({"id": "m1", "channel": "ch", "name": "greeting", "data": "{\"foo\":1}", "encoding": "json", "timestamp": 1700000000000_u64, "clientId": "alice", "extras": {"headers": {"k": "v"}}}),
        ),
        frame("e2", &json!({"id": "m2", "channel": "ch", "data": "AQID", "encoding": "base64"})),
        frame("e3", &json!({"id": "m3", "channel": "ch", "data": "plain"})),
        "event: error\ndata: {\"code\":40142,\"statusCode\":401,\"message\":\"expired\"}\n\n".to_owned(),
    ]
    .concat();
    let mut server = ably_server(vec![
        Script::sse(&[frames.as_bytes()]),
        Script::sse(&[frame("e4", &json!({"id": "m4", "channel": "ch"})).as_bytes()]),
    ])
    .await;

    let output = run(
        &[
            "subscribe",
            "--channel",
            "ch",
            "--auth-url",
            &server.url("/auth"),
            "--endpoint",
            &server.url(""),
            "--limit",
            "4",
        ],
        &[],
    )
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout_lines(&output),
        [
            json!({"channel": "ch", "id": "m1", "name": "greeting", "data": {"foo": 1}, "timestamp": 1700000000000_u64, "clientId": "alice", "extras": {"headers": {"k": "v"}}, "eventId": "e1"}),
            json!({"channel": "ch", "id": "m2", "data": "AQID", "encoding": "base64", "eventId": "e2"}),
            json!({"channel": "ch", "id": "m3", "data": "plain", "eventId": "e3"}),
            json!({"channel": "ch", "id": "m4", "eventId": "e4"}),
        ]
    );
    let log = stderr(&output);
    assert!(log.contains("connected"), "{log}");
    assert!(
        log.contains("disconnected: 40142 expired; reconnecting in 0 ms"),
        "{log}"
    );
    assert!(
        log.contains("token renewed after the server rejected it"),
        "{log}"
    );
    server.request().await; // /sse (the /auth route is not recorded)
    let resumed = server.request().await;
    assert_eq!(resumed.query("accessToken").as_deref(), Some("T2"));
    assert_eq!(resumed.query("lastEvent").as_deref(), Some("e3"));
}

#[tokio::test]
async fn subscribe_reads_the_endpoint_and_auth_url_from_the_environment() {
    let mut server = ably_server(vec![Script::sse(&[frame(
        "e1",
        &json!({"id": "m1", "data": "x"}),
    )
    .as_bytes()])])
    .await;

    let output = run(
        &[
            "subscribe",
            "--channel",
            "a",
            "--channel",
            "b",
            "--rewind",
            "2m",
            "--delta",
            "--limit",
            "1",
        ],
        &[
            ("ABLY_ENDPOINT", &server.url("")),
            ("ABLY_AUTH_URL", &server.url("/auth")),
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = server.request().await;
    assert_eq!(request.query("channels").as_deref(), Some("a,b"));
    assert_eq!(request.query("rewind").as_deref(), Some("2m"));
    assert_eq!(request.query("delta").as_deref(), Some("vcdiff"));
    assert_eq!(request.query("accessToken").as_deref(), Some("T1"));
}

#[tokio::test]
async fn subscribe_uses_a_key_from_the_environment_and_passes_flags_through() {
    let mut server = ably_server(vec![Script::sse(&[
        b"id: e1\nevent: message\ndata: bare\n\n",
    ])])
    .await;

    let output = run(
        &[
            "subscribe",
            "--channel",
            "c",
            "--unenveloped",
            "--last-event",
            "e0",
            "--endpoint",
            &server.url(""),
            "--limit",
            "1",
        ],
        &[("ABLY_API_KEY", "app.key:secret")],
    )
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout_lines(&output),
        [json!({"channel": "c", "data": "bare", "eventId": "e1"})]
    );
    let request = server.request().await;
    assert!(
        request
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(request.query("enveloped").as_deref(), Some("false"));
    assert_eq!(request.query("lastEvent").as_deref(), Some("e0"));
}

#[tokio::test]
async fn subscribe_prints_a_fatal_ably_error_and_exits_1() {
    let info = ErrorInfo::from_code(40160, "not permitted");
    let server = ably_server(vec![
        Script::status(401)
            .header("content-type", "application/json")
            .body(&serde_json::to_string(&info.into_response()).unwrap()),
    ])
    .await;

    let output = run(
        &[
            "subscribe",
            "--channel",
            "c",
            "--token",
            "fixed",
            "--endpoint",
            &server.url(""),
        ],
        &[],
    )
    .await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).lines().last(),
        Some("error: 40160 not permitted")
    );
}

#[tokio::test]
async fn subscribe_without_credentials_exits_2_and_says_why() {
    let output = run(&["subscribe", "--channel", "c"], &[]).await;

    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no credentials"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn pretty_prints_over_several_lines() {
    let server = ScriptServer::start(vec![], Script::sse(&[b"data: a\n\n"])).await;

    let output = run(&["raw", &server.url("/"), "--limit", "1", "--pretty"], &[]).await;

    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        text,
        "{\n  \"type\": \"message\",\n  \"data\": \"a\",\n  \"id\": \"\"\n}\n"
    );
}
