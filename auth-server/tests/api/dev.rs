//! Dev mode (feature `dev`): the embedded mock Ably, `/dev/*`, the demo page
//! and the `--dev` binary, over real sockets on port 0.

use std::process::Stdio;

use auth_server::dev::{DEMO_CHANNEL, Dev};
use auth_server::{Config, CorsOrigins};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::oneshot;
use url::Url;

use crate::helpers::*;
use crate::logs::Capture;

/// A dev-mode server on port 0 (mock on port 0 too); dropping it stops both.
struct DevApp {
    app: TestApp,
    mock_url: String,
}

async fn spawn_dev() -> DevApp {
    spawn_dev_with(config()).await
}

/// [`spawn_dev`] with `config`.
async fn spawn_dev_with(config: Config) -> DevApp {
    let mock_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dev = Dev::start(config, mock_listener).await.unwrap();
    let mock_url = dev.mock_url().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(dev.serve(listener, async {
        stopped.await.ok();
    }));
    DevApp {
        app: TestApp {
            addr,
            client: reqwest::Client::new(),
            _shutdown: shutdown,
        },
        mock_url,
    }
}

impl DevApp {
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        within(self.app.client.post(self.app.url(path)).json(body).send())
            .await
            .unwrap()
    }

    /// `POST /dev/login` for `user`: the app token.
    async fn login(&self, user: &str, roles: &[&str]) -> String {
        let response = self
            .post("/dev/login", &json!({"user": user, "roles": roles}))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = within(response.json()).await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// An Ably JWT for `user` from `/api/ably-jwt`.
    async fn ably_jwt(&self, user: &str) -> String {
        let app_token = self.login(user, &[]).await;
        let response = self.app.get("/api/ably-jwt", Some(&app_token)).await;
        assert_eq!(response.status(), 200);
        within(response.text()).await.unwrap()
    }

    /// Opens the mock's `/sse` on the demo channel as a browser would.
    async fn open_demo_stream(&self, jwt: &str) -> SseReader {
        let url = Url::parse_with_params(
            &format!("{}/sse", self.mock_url),
            [
                ("v", "1.2"),
                ("channels", DEMO_CHANNEL),
                ("accessToken", jwt),
            ],
        )
        .unwrap();
        let response = within(
            self.app
                .client
                .get(url)
                .header("Origin", format!("http://{}", self.app.addr))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        SseReader {
            response,
            buffer: String::new(),
        }
    }
}

/// Reads SSE events (`event` and `data` lines) off a response body.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// The next event as `(event type, data)`, failing after the tests' patience.
    async fn next_event(&mut self) -> (String, String) {
        within(async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut event = "message".to_owned();
                    let mut data = Vec::new();
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("event: ") {
                            value.clone_into(&mut event);
                        } else if let Some(value) = line.strip_prefix("data: ") {
                            data.push(value);
                        }
                    }
                    if !data.is_empty() {
                        return (event, data.join("\n"));
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
    }
}

#[tokio::test]
async fn a_dev_login_token_gets_an_ably_jwt_that_streams_the_demo_channel() {
    let dev = spawn_dev().await;

    let jwt = dev.ably_jwt("alice").await;
    let mut stream = dev.open_demo_stream(&jwt).await;
    let (event, data) = stream.next_event().await;

    assert_eq!(event, "message");
    let message: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(message["channel"], DEMO_CHANNEL);
    assert_eq!(message["name"], "tick");
    let tick: Value = serde_json::from_str(message["data"].as_str().unwrap()).unwrap();
    assert!(tick["n"].as_u64().unwrap() >= 1, "{tick}");
    assert!(tick["at"].as_u64().is_some(), "{tick}");
}

#[tokio::test]
async fn the_mock_stream_allows_the_demo_page_origin() {
    let dev = spawn_dev().await;
    let jwt = dev.ably_jwt("alice").await;

    let stream = dev.open_demo_stream(&jwt).await;

    // An EventSource on another origin needs this
    // (`docs/real-clients.md#chromium-eventsource`).
    let headers = stream.response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        format!("http://{}", dev.app.addr).as_str()
    );
    assert_eq!(headers["content-type"], "text/event-stream");
}

#[tokio::test]
async fn dev_login_tokens_carry_the_user_and_roles() {
    let dev = spawn_dev().await;

    let app_token = dev.login("bob", &["admin", "ops"]).await;

    let payload = app_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["roles"], json!(["admin", "ops"]));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 3600);
    let response = dev.app.get("/api/ably-jwt", Some(&app_token)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn dev_login_refuses_bad_input_with_the_ably_envelope() {
    let dev = spawn_dev().await;
    let long = "x".repeat(200);

    for (body, message) in [
        (json!({"user": ""}), "user must not be empty"),
        (json!({"user": long}), "user must be at most 128 bytes"),
        (json!({"user": "*"}), "wildcard"),
        (
            json!({"user": "a", "roles": [""]}),
            "each role must not be empty",
        ),
        (json!({"name": "a"}), "bad JSON body"),
        (json!({"user": 7}), "bad JSON body"),
    ] {
        let response = dev.post("/dev/login", &body).await;

        assert_ably_error(response, 400, 40003, message).await;
    }
    let not_json = within(
        dev.app
            .client
            .post(dev.app.url("/dev/login"))
            .body("user=alice")
            .send(),
    )
    .await
    .unwrap();
    assert_ably_error(not_json, 400, 40003, "Content-Type").await;
    let get = dev.app.get("/dev/login", None).await;
    assert_ably_error(get, 405, 40500, "method not allowed").await;
}

#[tokio::test]
async fn dev_publish_reaches_an_open_stream() {
    let dev = spawn_dev().await;
    let mut stream = dev.open_demo_stream(&dev.ably_jwt("alice").await).await;

    let response = dev
        .post(
            "/dev/publish",
            &json!({"name": "hello", "data": {"from": "test"}}),
        )
        .await;

    assert_eq!(response.status(), 201);
    let id = within(response.json::<Value>()).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let (_, data) = stream.next_event().await;
        let message: Value = serde_json::from_str(&data).unwrap();
        if message["name"] == "hello" {
            assert_eq!(message["id"], id.as_str());
            assert_eq!(message["data"], r#"{"from":"test"}"#);
            break;
        }
    }
}

#[tokio::test]
async fn dev_publish_refuses_data_ably_refuses() {
    let dev = spawn_dev().await;

    let response = dev.post("/dev/publish", &json!({"data": 42})).await;

    assert_ably_error(response, 400, 40013, "").await;
}

#[tokio::test]
async fn forcing_expiry_ends_open_streams_with_40142_and_a_new_jwt_works() {
    let dev = spawn_dev().await;
    let mut stream = dev.open_demo_stream(&dev.ably_jwt("alice").await).await;

    let response = dev.post("/dev/expire-credentials", &json!({})).await;

    assert_eq!(response.status(), 204);
    loop {
        let (event, data) = stream.next_event().await;
        if event == "error" {
            let error: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(error["code"], 40142);
            break;
        }
    }
    let mut renewed = dev.open_demo_stream(&dev.ably_jwt("alice").await).await;
    assert_eq!(renewed.next_event().await.0, "message");
}

// Current-thread: the server, the mock and their tasks all run on this
// thread, so the thread-local subscriber sees them (as in `logs`).
#[tokio::test(flavor = "current_thread")]
async fn dev_mode_logs_never_contain_its_tokens_or_secrets() {
    let capture = Capture::default();
    let _guard = capture.trace();
    let dev = spawn_dev().await;

    let app_token = dev.login("alice", &["admin"]).await;
    let response = dev.app.get("/api/ably-jwt", Some(&app_token)).await;
    let jwt = within(response.text()).await.unwrap();
    let mut stream = dev.open_demo_stream(&jwt).await;
    stream.next_event().await;
    dev.post("/dev/expire-credentials", &json!({})).await;
    drop(stream);
    drop(dev);

    let logs = capture.text();
    assert!(logs.contains("dev login"), "the capture works:\n{logs}");
    let signature = |token: &str| token.rsplit_once('.').unwrap().1.to_owned();
    for (what, secret) in [
        ("app token signature", signature(&app_token)),
        ("Ably JWT signature", signature(&jwt)),
        (
            "dev app secret",
            auth_server::dev::DEV_APP_SECRET.to_owned(),
        ),
        ("mock key secret", "mock-ably-dev-secret".to_owned()),
    ] {
        assert!(
            !logs.contains(&secret),
            "{what} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn the_demo_page_is_served_on_root_with_its_stable_ids() {
    let dev = spawn_dev().await;

    let response = dev.app.get("/", None).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = within(response.text()).await.unwrap();
    for id in [
        "user",
        "roles",
        "login",
        "client-id",
        "capability",
        "state",
        "messages",
        "log",
        "publish",
        "expire",
        "spaces-status",
        "avatars",
        "cursor-board",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    // Self-contained but for the Spaces panel's two SDK scripts from Ably's
    // CDN (the machine running it may have no internet; the SSE demo needs
    // neither).
    let external: Vec<&str> = html
        .match_indices("https://")
        .map(|(at, _)| {
            let rest = &html[at..];
            &rest[..rest.find('"').unwrap_or(rest.len())]
        })
        .collect();
    assert_eq!(
        external,
        [
            "https://cdn.ably.com/lib/ably.min-2.js",
            "https://cdn.ably.com/spaces/0.5.2/iife/index.bundle.js",
        ]
    );
    assert!(html.contains("<script defer src=\"https://cdn.ably.com/lib/ably.min-2.js\">"));
}

#[tokio::test]
async fn dev_config_tells_the_page_where_the_mock_is() {
    let dev = spawn_dev().await;

    let response = dev.app.get("/dev/config", None).await;

    let body: Value = within(response.json()).await.unwrap();
    assert_eq!(
        body,
        json!({"mockUrl": dev.mock_url, "channel": "demo", "space": "demo-space"})
    );
}

#[tokio::test]
async fn dev_routes_do_not_exist_in_production() {
    let app = spawn_app(config()).await;

    for path in ["/", "/dev/config"] {
        assert_ably_error(app.get(path, None).await, 404, 40400, "not found").await;
    }
    for path in ["/dev/login", "/dev/publish", "/dev/expire-credentials"] {
        let response = app.post_json(path, "unused", &json!({"user": "a"})).await;
        assert_ably_error(response, 404, 40400, "not found").await;
    }
}

#[tokio::test]
async fn dev_mode_refuses_a_non_loopback_auth_bind() {
    let mock_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();

    let err = Dev::start(
        Config {
            bind: "0.0.0.0:8080".parse().unwrap(),
            ..config()
        },
        mock_listener,
    )
    .await
    .unwrap_err();

    assert_eq!(err.name, "AUTH_BIND");
}

fn dev_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    command
        .env_clear()
        // No `.env` is picked up from a temporary directory.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn the_binary_in_dev_mode_prints_both_addresses_and_a_banner_and_serves() {
    let mut child = dev_command()
        .args(["--dev", "--mock-bind", "127.0.0.1:0"])
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

    let first = within(stdout.next_line()).await.unwrap().unwrap();
    let second = within(stdout.next_line()).await.unwrap().unwrap();

    let addr = first
        .strip_prefix("auth-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let mock_url = second
        .strip_prefix("mock-ably listening on ")
        .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
    let health = within(reqwest::get(format!("http://{addr}/healthz")))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let time = within(reqwest::get(format!("{mock_url}/time")))
        .await
        .unwrap();
    assert_eq!(time.status(), 200);
    let command = loop {
        let line = within(stdout.next_line()).await.unwrap().expect("banner");
        if line.contains("sse-client -- subscribe") {
            break line;
        }
    };
    assert!(
        command.contains(&format!(
            "--endpoint {mock_url} --auth-url http://{addr}/api/ably-jwt"
        )),
        "{command}"
    );
    let app_token = command
        .split("Authorization: Bearer ")
        .nth(1)
        .unwrap()
        .trim_end_matches('"');
    let jwt = within(
        reqwest::Client::new()
            .get(format!("http://{addr}/api/ably-jwt"))
            .bearer_auth(app_token)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(jwt.status(), 200, "the banner's token is accepted");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_binary_in_dev_mode_refuses_a_non_loopback_mock_bind() {
    let output = within(
        dev_command()
            .args(["--dev", "--mock-bind", "0.0.0.0:0"])
            .env("AUTH_BIND", "127.0.0.1:0")
            .output(),
    )
    .await
    .unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(
            "auth-server: configuration: --mock-bind: dev mode listens on loopback addresses only"
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn mock_bind_without_dev_is_a_usage_error() {
    let output = within(dev_command().args(["--mock-bind", "127.0.0.1:0"]).output())
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--dev"), "{stderr}");
}

#[tokio::test]
async fn a_web_page_on_another_origin_cannot_get_an_admin_token_from_dev_login() {
    // Dev mode's own default: AUTH_CORS_ORIGINS=*.
    let dev = spawn_dev_with(Config {
        cors_origins: CorsOrigins::Any,
        ..config()
    })
    .await;
    let client = &dev.app.client;
    let post = |origin: &'static str, path: &'static str| {
        let request = client
            .post(dev.app.url(path))
            .header("origin", origin)
            .json(&json!({"user": "mallory", "roles": ["admin"]}));
        async move { within(request.send()).await.unwrap() }
    };
    let preflight = |origin: &'static str, path: &'static str| {
        let request = client
            .request(reqwest::Method::OPTIONS, dev.app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type");
        async move { within(request.send()).await.unwrap() }
    };

    let evil_login = post("https://evil.example", "/dev/login").await;
    let evil_preflight = preflight("https://evil.example", "/dev/login").await;
    let evil_expire = within(
        client
            .post(dev.app.url("/dev/expire-credentials"))
            .header("origin", "http://localhost.evil.example")
            .send(),
    )
    .await
    .unwrap();
    let local_preflight = preflight("http://localhost:5173", "/dev/login").await;
    let local_login = post("http://127.0.0.1:5173", "/dev/login").await;
    let api_preflight = preflight("https://evil.example", "/api/ably-jwt").await;

    for response in [&evil_login, &evil_preflight, &evil_expire] {
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "no CORS grant: {response:?}"
        );
    }
    assert_ably_error(evil_login, 403, 40300, "loopback origins").await;
    assert_ably_error(evil_preflight, 403, 40300, "loopback origins").await;
    assert_ably_error(evil_expire, 403, 40300, "loopback origins").await;
    // Loopback pages and requests without Origin (curl, tests) still work.
    assert_eq!(local_preflight.status(), 200);
    assert_eq!(
        local_preflight.headers()["access-control-allow-origin"],
        "*"
    );
    assert_eq!(local_login.status(), 200);
    assert_eq!(local_login.headers()["access-control-allow-origin"], "*");
    assert!(!dev.login("alice", &["admin"]).await.is_empty());
    // The production routes keep AUTH_CORS_ORIGINS: their tokens need an
    // app token, which such a page cannot get.
    assert_eq!(api_preflight.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn slowloris_in_dev_mode_the_embedded_mock_has_the_header_read_timeout_too() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let header_read_timeout = std::time::Duration::from_millis(200);
    let dev = spawn_dev_with(Config {
        header_read_timeout,
        idle_timeout: std::time::Duration::from_secs(600),
        ..config()
    })
    .await;
    let mock = Url::parse(&dev.mock_url).unwrap();
    let mut stream = tokio::net::TcpStream::connect(mock.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    let opened = std::time::Instant::now();

    stream
        .write_all(b"GET /time HTTP/1.1\r\nHost: mock\r\n")
        .await
        .unwrap();
    let mut buf = [0_u8; 64];
    let read = within(stream.read(&mut buf)).await;

    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );
    assert!(opened.elapsed() >= header_read_timeout - std::time::Duration::from_millis(20));
}

#[tokio::test]
async fn dns_rebinding_a_page_on_a_rebound_name_cannot_read_dev_mode() {
    let dev = spawn_dev_with(config()).await;
    let port = dev.app.addr.port();
    let get = |host: String, path: &'static str| {
        let request = dev.app.client.get(dev.app.url(path)).header("host", host);
        async move { within(request.send()).await.unwrap() }
    };

    let rebound_page = get(format!("rebound.evil.example:{port}"), "/").await;
    let rebound_config = get(format!("rebound.evil.example:{port}"), "/dev/config").await;
    let lookalike = get(format!("localhost.evil.example:{port}"), "/dev/config").await;
    let by_name = get(format!("localhost:{port}"), "/dev/config").await;
    let by_v4 = get(format!("127.0.0.1:{port}"), "/").await;
    let by_v6 = get(format!("[::1]:{port}"), "/dev/config").await;

    assert_ably_error(rebound_page, 403, 40300, "loopback host").await;
    assert_ably_error(rebound_config, 403, 40300, "loopback host").await;
    assert_ably_error(lookalike, 403, 40300, "loopback host").await;
    for allowed in [by_name, by_v4, by_v6] {
        assert_eq!(allowed.status(), 200, "{allowed:?}");
    }
}
