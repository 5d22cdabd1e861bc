//! `/api/ably-token` against a small Ably stand-in on port 0: TokenDetails
//! on success, Ably's refusals mapped for the caller, outages as 5xx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_server::Config;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use shared::TokenRequest;
use tokio::sync::{oneshot, watch};
use url::Url;

use crate::helpers::*;

#[derive(Clone, Copy)]
enum Behaviour {
    Issue,
    /// Issue, but only once [`Stub::release`] is called.
    IssueWhenReleased,
    /// Ably's error envelope with this status, code and message.
    Refuse(StatusCode, u32, &'static str),
    Fail,
    Hang,
}

#[derive(Clone)]
struct Stub {
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<(String, TokenRequest)>>>,
    /// How many requests have arrived.
    arrived: Arc<watch::Sender<usize>>,
    released: Arc<watch::Sender<bool>>,
}

impl Stub {
    /// Waits until `count` requests have arrived.
    async fn wait_for_requests(&self, count: usize) {
        let mut arrived = self.arrived.subscribe();
        within(arrived.wait_for(|n| *n >= count)).await.unwrap();
    }

    fn release(&self) {
        self.released.send_replace(true);
    }
}

async fn request_token(
    State(stub): State<Stub>,
    Path(key_name): Path<String>,
    body: Bytes,
) -> Response {
    let request = TokenRequest::from_json(&body).expect("the auth server sends a TokenRequest");
    stub.received
        .lock()
        .unwrap()
        .push((key_name, request.clone()));
    stub.arrived.send_modify(|n| *n += 1);
    match stub.behaviour {
        Behaviour::Issue | Behaviour::IssueWhenReleased => {
            let mut released = stub.released.subscribe();
            let _ = released.wait_for(|released| *released).await;
            request
                .verify_mac(ably_key().secret())
                .expect("a valid MAC");
            assert_signed_token_request(&serde_json::from_slice(&body).unwrap());
            let issued = request.timestamp;
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "token": "appA.issued-token",
                    "keyName": request.key_name,
                    "issued": issued,
                    "expires": issued + request.effective_ttl_ms(),
                    "capability": request.capability,
                    "clientId": request.client_id,
                })),
            )
                .into_response()
        }
        Behaviour::Refuse(status, code, message) => (
            status,
            axum::Json(json!({"error": {
                "code": code,
                "statusCode": status.as_u16(),
                "message": message,
                "href": format!("https://help.ably.io/error/{code}"),
            }})),
        )
            .into_response(),
        Behaviour::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Starts the stub; returns its base URL and what it received.
async fn ably_stub(behaviour: Behaviour) -> (Url, Arc<Mutex<Vec<(String, TokenRequest)>>>) {
    let (url, stub) = start_stub(behaviour).await;
    (url, stub.received)
}

/// Starts the stub; returns its base URL and a handle on it.
async fn start_stub(behaviour: Behaviour) -> (Url, Stub) {
    let stub = Stub {
        behaviour,
        received: Arc::default(),
        arrived: Arc::new(watch::Sender::new(0)),
        released: Arc::new(watch::Sender::new(!matches!(
            behaviour,
            Behaviour::IssueWhenReleased
        ))),
    };
    let app = Router::new()
        .route("/keys/{key_name}/requestToken", post(request_token))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, stub)
}

#[tokio::test]
async fn token_endpoint_returns_ablys_token_details_for_the_grant() {
    let (ably, received) = ably_stub(Behaviour::Issue).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;

    let response = app
        .get_accepting(
            "/api/ably-token?ttl=60000",
            &user_token("alice", &json!({})),
            AUTH_URL_ACCEPT,
        )
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["vary"], "accept");
    let details: Value = within(response.json()).await.unwrap();
    assert_eq!(details["token"], "appA.issued-token");
    assert_eq!(details["clientId"], "alice");
    assert_eq!(
        details["capability"],
        r#"{"*":["history","presence","publish","subscribe"]}"#
    );
    assert_eq!(
        details["expires"].as_u64().unwrap() - details["issued"].as_u64().unwrap(),
        60_000
    );
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, "appA.keyA");
}

#[tokio::test]
async fn token_endpoint_takes_token_params_in_a_post_form_and_a_post_json_body() {
    let (ably, received) = ably_stub(Behaviour::Issue).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));

    // As ably-js's authUrl with authMethod POST sends them.
    let post = || {
        app.client
            .post(app.url("/api/ably-token"))
            .bearer_auth(&token)
            .header(reqwest::header::ACCEPT, AUTH_URL_ACCEPT)
    };

    let form = within(
        post()
            .form(&[
                ("ttl", "60000"),
                ("capability", r#"{"chat:x":["subscribe"]}"#),
                ("clientId", "alice"),
            ])
            .send(),
    )
    .await
    .unwrap();
    let json_body = within(
        post()
            .json(&json!({"ttl": 120_000, "capability": {"chat:y": ["publish"]}}))
            .send(),
    )
    .await
    .unwrap();

    for (response, ttl, capability) in [
        (form, 60_000, r#"{"chat:x":["subscribe"]}"#),
        (json_body, 120_000, r#"{"chat:y":["publish"]}"#),
    ] {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let details: Value = within(response.json()).await.unwrap();
        assert_eq!(details["token"], "appA.issued-token");
        assert_eq!(details["clientId"], "alice");
        assert_eq!(details["capability"], capability);
        assert_eq!(
            details["expires"].as_u64().unwrap() - details["issued"].as_u64().unwrap(),
            ttl
        );
    }
    let received = received.lock().unwrap();
    let asked: Vec<_> = received
        .iter()
        .map(|(_, request)| {
            (
                request.ttl,
                request.capability.as_deref(),
                request.client_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [
            (
                Some(60_000),
                Some(r#"{"chat:x":["subscribe"]}"#),
                Some("alice")
            ),
            (
                Some(120_000),
                Some(r#"{"chat:y":["publish"]}"#),
                Some("alice")
            ),
        ]
    );
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight_before_serve_returns() {
    let (ably, stub) = start_stub(Behaviour::IssueWhenReleased).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = auth_server::AppState::new(Config {
        ably_rest_url: ably,
        ..config()
    })
    .unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(auth_server::serve(listener, state, async {
        stopped.await.ok();
    }));
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .get(format!("http://{addr}/api/ably-token"))
            .bearer_auth(user_token("alice", &json!({})))
            .header(reqwest::header::ACCEPT, AUTH_URL_ACCEPT)
            .send(),
    );
    stub.wait_for_requests(1).await;

    // The request waits on Ably; shut down and see the listener close.
    shutdown.send(()).unwrap();
    eventually_async("the server to stop listening", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !server.is_finished(),
        "serve waits for the request in flight"
    );
    stub.release();

    let response = within(in_flight).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let details: Value = within(response.json()).await.unwrap();
    assert_eq!(details["clientId"], "alice");
    within(server).await.unwrap().unwrap();
}

/// `/api/ably-token` for alice against a stub that refuses with `refusal`.
async fn refused_with(refusal: Behaviour) -> reqwest::Response {
    let (ably, _) = ably_stub(refusal).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;
    app.get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await
}

#[tokio::test]
async fn ably_refusing_the_servers_own_key_is_a_500_not_the_users_401() {
    let response = refused_with(Behaviour::Refuse(
        StatusCode::UNAUTHORIZED,
        40101,
        "Request mac does not match",
    ))
    .await;

    let error = assert_ably_error(response, 500, 50000, "").await;
    assert_eq!(
        error["message"],
        "Ably refused the auth server's credentials (check its ABLY_API_KEY and clock): \
         Request mac does not match (Ably code 40101)"
    );
}

#[tokio::test]
async fn ably_refusing_the_servers_token_request_is_a_500() {
    let response = refused_with(Behaviour::Refuse(
        StatusCode::BAD_REQUEST,
        40003,
        "Excessive value for TTL",
    ))
    .await;

    let error = assert_ably_error(response, 500, 50000, "").await;
    assert_eq!(
        error["message"],
        "Ably refused the auth server's token request: Excessive value for TTL (Ably code 40003)"
    );
}

#[tokio::test]
async fn ablys_rate_limit_is_passed_on_as_429() {
    let response = refused_with(Behaviour::Refuse(
        StatusCode::TOO_MANY_REQUESTS,
        42910,
        "Rate limit exceeded",
    ))
    .await;

    assert_ably_error(response, 429, 42910, "Rate limit exceeded").await;
}

#[tokio::test]
async fn ably_refusing_the_capability_is_403_so_sdks_stop() {
    let response = refused_with(Behaviour::Refuse(
        StatusCode::UNAUTHORIZED,
        40160,
        "Unable to perform channel operation",
    ))
    .await;

    assert_ably_error(
        response,
        403,
        40160,
        "the auth server's Ably key does not allow the granted capability (Unable to perform channel operation)",
    )
    .await;
}

#[tokio::test]
async fn an_ably_server_error_is_502() {
    let (ably, _) = ably_stub(Behaviour::Fail).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;

    let response = app
        .get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await;

    assert_ably_error(response, 502, 50000, "Ably failed to issue a token").await;
}

#[tokio::test]
async fn an_unreachable_ably_is_503() {
    // A port that was free a moment ago: nothing listens there now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let app = spawn_app(Config {
        ably_rest_url: url,
        ..config()
    })
    .await;

    let response = app
        .get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await;

    assert_ably_error(response, 503, 50000, "cannot reach Ably").await;
}

#[tokio::test]
async fn a_slow_ably_hits_the_request_timeout() {
    let (ably, _) = ably_stub(Behaviour::Hang).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        request_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;

    let response = app
        .get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await;

    assert_ably_error(response, 503, 50003, "timed out").await;
}

#[tokio::test]
async fn refusals_happen_before_ably_is_asked() {
    let (ably, received) = ably_stub(Behaviour::Issue).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;

    let response = app
        .get(
            "/api/ably-token?clientId=bob",
            Some(&user_token("alice", &json!({}))),
        )
        .await;

    assert_eq!(response.status(), 403);
    assert!(received.lock().unwrap().is_empty());
}

/// What `fetch('/api/ably-token')` gets, as Ably's `authCallback` recipe
/// calls it: `fetch()` sends `Accept: */*`, and the recipe hands
/// `await response.text()` to ably-js as the token itself, so the body is the
/// bare token string; without any `Accept` the same.
#[tokio::test]
async fn fetchs_default_accept_and_no_accept_get_the_bare_token_as_text() {
    let (ably, received) = ably_stub(Behaviour::Issue).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));

    let star = app.get_accepting("/api/ably-token", &token, "*/*").await;
    let none = raw_get(app.addr, "/api/ably-token", &token).await;

    assert_eq!(star.status(), 200);
    assert_eq!(star.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(star.headers()["cache-control"], "no-store");
    assert_eq!(star.headers()["vary"], "accept");
    assert_eq!(within(star.text()).await.unwrap(), "appA.issued-token");
    assert!(none.starts_with("HTTP/1.1 200 OK\r\n"), "{none}");
    assert!(
        none.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"),
        "{none}"
    );
    assert!(none.ends_with("\r\n\r\nappA.issued-token"), "{none}");
    assert_eq!(received.lock().unwrap().len(), 2);
}

/// The shape follows the q-values: JSON only when `application/json` is
/// preferred (ably-js's `authUrl` sends `application/json, text/plain`).
#[tokio::test]
async fn the_token_endpoint_answers_json_only_to_an_accept_that_prefers_it() {
    let (ably, received) = ably_stub(Behaviour::Issue).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;
    let token = user_token("alice", &json!({}));
    let cases = [
        ("application/json, text/plain", true),
        ("text/plain;q=0.5, application/json", true),
        ("application/json", true),
        ("text/plain, application/json;q=0.5", false),
        ("text/plain", false),
        ("application/json;q=0, */*", false),
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            false,
        ),
    ];

    for (accept, json) in cases {
        let response = app.get_accepting("/api/ably-token", &token, accept).await;

        assert_eq!(response.status(), 200, "{accept}");
        let content_type = response.headers()["content-type"].clone();
        let body = within(response.text()).await.unwrap();
        if json {
            assert_eq!(content_type, "application/json", "{accept}");
            let request = received.lock().unwrap().last().unwrap().1.clone();
            let issued = request.timestamp;
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({
                    "token": "appA.issued-token",
                    "keyName": "appA.keyA",
                    "issued": issued,
                    "expires": issued + 3_600_000,
                    "capability": r#"{"*":["history","presence","publish","subscribe"]}"#,
                    "clientId": "alice",
                }),
                "{accept}"
            );
        } else {
            assert_eq!(content_type, "text/plain; charset=utf-8", "{accept}");
            assert_eq!(body, "appA.issued-token", "{accept}");
        }
    }
    assert_eq!(received.lock().unwrap().len(), cases.len());
}

/// Errors stay Ably's JSON envelope whatever the `Accept`: ably-js reads
/// the code from it.
#[tokio::test]
async fn a_refusal_is_the_json_envelope_even_to_a_text_accept() {
    let (ably, _) = ably_stub(Behaviour::Issue).await;
    let app = spawn_app(Config {
        ably_rest_url: ably,
        ..config()
    })
    .await;

    let response = app
        .get_accepting(
            "/api/ably-token?clientId=bob",
            &user_token("alice", &json!({})),
            "text/plain",
        )
        .await;

    assert_ably_error(response, 403, 40102, "clientId").await;
}

/// A GET with no `Accept` at all (reqwest always adds one), over a plain
/// socket; the whole response as text.
async fn raw_get(addr: std::net::SocketAddr, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut socket = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    within(socket.write_all(request.as_bytes())).await.unwrap();
    let mut response = String::new();
    within(socket.read_to_string(&mut response)).await.unwrap();
    response
}
