//! Every way of getting a token: an API key, auth URL replies read by
//! `Content-Type` as ably-js reads them, GET and POST parameters, auth URL
//! error envelopes, callbacks, and timeouts on each credential step.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;
use shared::{ApiKey, ErrorInfo, TokenDetails, TokenParams, TokenRequest};
use sse_client::Error;
use sse_client::ably::{
    Auth, AuthMethod, AuthUrl, Client, StateChange, SubscribeOptions, TokenReply, Update,
};

use super::{Fixture, fast, next_update, reason, sse_request};
use crate::support::{Script, ScriptServer, within};

#[tokio::test]
async fn an_api_key_is_sent_as_basic_auth() {
    let mut f = Fixture::start(vec![]).await;
    let client = Client::builder()
        .endpoint(f.server.url(""))
        .auth(Auth::key(ApiKey::parse("app.key:secret").unwrap()))
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

    next_update(&mut sub).await;

    let request = sse_request(&mut f.server).await;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("app.key:secret")
    );
    assert_eq!(request.header("authorization"), Some(expected.as_str()));
    assert_eq!(request.query("accessToken"), None);
}

/// An auth server that answers with `content_type` and `body`, plus a
/// requestToken endpoint that issues `EXCHANGED`.
async fn auth_reply_server(
    content_type: Option<&'static str>,
    body: String,
) -> (
    ScriptServer,
    Arc<std::sync::Mutex<Vec<(HeaderMap, String)>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let routes = Router::new()
        .route(
            "/auth",
            get({
                let body = body.clone();
                let record = Arc::clone(&record);
                move |headers: HeaderMap, uri: axum::http::Uri| {
                    record.lock().unwrap().push((headers, uri.to_string()));
                    let body = body.clone();
                    async move {
                        let mut response =
                            axum::response::Response::new(axum::body::Body::from(body));
                        if let Some(content_type) = content_type {
                            response
                                .headers_mut()
                                .insert("content-type", content_type.parse().unwrap());
                        }
                        response
                    }
                }
            })
            .post(move |headers: HeaderMap, form: String| {
                record.lock().unwrap().push((headers, form));
                async move { ([("content-type", "application/jwt")], "posted-token") }
            }),
        )
        .route(
            "/keys/{key}/requestToken",
            post(|Path(key): Path<String>, body: String| async move {
                let request: TokenRequest = serde_json::from_str(&body).unwrap();
                assert_eq!(request.key_name, key);
                let details = TokenDetails {
                    token: "EXCHANGED".into(),
                    key_name: Some(key),
                    issued: 1,
                    expires: 0,
                    capability: None,
                    client_id: None,
                };
                (
                    axum::http::StatusCode::CREATED,
                    [("content-type", "application/json")],
                    serde_json::to_string(&details).unwrap(),
                )
            }),
        );
    let server = ScriptServer::start_with(vec![], Script::sse(&[b""]).hang(), routes).await;
    (server, seen)
}

async fn token_used(server: &mut ScriptServer, auth: Auth) -> Result<String, Error> {
    let client = Client::builder()
        .endpoint(server.url(""))
        .auth(auth)
        .build()
        .unwrap();
    let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));
    match within(sub.next()).await {
        Some(Ok(Update::State(StateChange::Connected))) => {}
        Some(Err(err)) => return Err(err),
        other => panic!("{other:?}"),
    }
    Ok(sse_request(server).await.query("accessToken").unwrap())
}

#[tokio::test]
async fn auth_url_replies_are_read_by_content_type_like_ably_js() {
    let key = ApiKey::parse("app.key:secret").unwrap();
    let token_request =
        TokenRequest::new_signed(&key, TokenParams::default(), 1_700_000_000_000).unwrap();
    let cases = [
        (
            Some("application/jwt"),
            "a.jwt.token".to_owned(),
            "a.jwt.token",
        ),
        (
            Some("text/plain; charset=utf-8"),
            "plain-token\n".to_owned(),
            "plain-token",
        ),
        (
            Some("application/json"),
            json!({"token": "DETAILS", "issued": 1, "expires": 0}).to_string(),
            "DETAILS",
        ),
        (
            Some("application/json; charset=utf-8"),
            serde_json::to_string(&token_request).unwrap(),
            "EXCHANGED",
        ),
        // A JSON string is the token itself, as ably-js's JSON.parse makes it.
        (
            Some("application/json"),
            json!("json.string.token").to_string(),
            "json.string.token",
        ),
    ];
    for (content_type, body, expected) in cases {
        let (mut server, _) = auth_reply_server(content_type, body).await;
        let auth = Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap());

        let token = token_used(&mut server, auth).await.unwrap();

        assert_eq!(token, expected, "{content_type:?}");
    }
}

#[tokio::test]
async fn unusable_auth_url_replies_fail_with_40170() {
    let token_request =
        json!({"keyName": "a.b", "timestamp": 1, "nonce": "0123456789abcdef", "mac": "m"});
    for (content_type, body) in [
        (None, "token".to_owned()),
        (Some("text/plain"), token_request.to_string()),
        (Some("text/html"), "<html>".to_owned()),
        (Some("text/plain"), String::new()),
        // A TokenRequest encoded twice: a JSON string holding JSON.
        (
            Some("application/json"),
            json!(token_request.to_string()).to_string(),
        ),
        (Some("application/json"), json!("null").to_string()),
        (Some("application/json"), "42".to_owned()),
    ] {
        let (mut server, _) = auth_reply_server(content_type, body).await;
        let auth = Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap());

        let err = token_used(&mut server, auth).await.unwrap_err();

        assert_eq!(
            err.error_info().map(|i| i.code),
            Some(40170),
            "{content_type:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn auth_url_get_and_post_carry_headers_and_params() {
    let (mut server, seen) = auth_reply_server(Some("text/plain"), "t".to_owned()).await;
    let get_auth = AuthUrl::new(&server.url("/auth?fromUrl=1"))
        .unwrap()
        .header("Authorization", "Bearer user-jwt")
        .unwrap()
        .param("room", "r1");
    let post_auth = get_auth.clone().method(AuthMethod::Post);

    token_used(&mut server, Auth::auth_url(get_auth))
        .await
        .unwrap();
    let posted = token_used(&mut server, Auth::auth_url(post_auth))
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    let (get_headers, get_uri) = &seen[0];
    assert_eq!(get_uri, "/auth?fromUrl=1&room=r1");
    assert_eq!(get_headers["authorization"], "Bearer user-jwt");
    assert_eq!(get_headers["accept"], "application/json, text/plain");
    let (post_headers, form) = &seen[1];
    assert_eq!(form, "room=r1");
    assert_eq!(
        post_headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(post_headers["authorization"], "Bearer user-jwt");
    assert_eq!(posted, "posted-token");
}

#[tokio::test]
async fn auth_params_replace_same_named_parameters_and_the_last_one_wins() {
    let (mut server, seen) = auth_reply_server(Some("text/plain"), "t".to_owned()).await;
    let get_auth = AuthUrl::new(&server.url("/auth?room=old&fromUrl=1&room=older"))
        .unwrap()
        .param("room", "r1")
        .param("extra", "a")
        .param("extra", "b");
    let post_auth = get_auth.clone().method(AuthMethod::Post);

    token_used(&mut server, Auth::auth_url(get_auth))
        .await
        .unwrap();
    token_used(&mut server, Auth::auth_url(post_auth))
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].1, "/auth?room=r1&fromUrl=1&extra=b");
    assert_eq!(seen[1].1, "room=r1&extra=b");
}

#[tokio::test]
async fn an_auth_url_error_envelope_is_read_only_from_exactly_application_json() {
    let envelope =
        serde_json::to_string(&ErrorInfo::from_code(40400, "no such user").into_response())
            .unwrap();
    let cases = [
        ("application/json", None, (40400, 404, "no such user")),
        // ably-js (Node) reads the body only for exactly application/json.
        (
            "application/json; charset=utf-8",
            None,
            (40170, 404, "authUrl responded with HTTP 404"),
        ),
        (
            "text/html",
            None,
            (40170, 404, "authUrl responded with HTTP 404"),
        ),
        // The header is read whatever the type.
        ("text/html", Some("40160"), (40160, 404, "HTTP 404")),
    ];
    for (content_type, code_header, expected) in cases {
        let envelope = envelope.clone();
        let routes = Router::new().route(
            "/auth",
            get(move || async move {
                let mut response = (axum::http::StatusCode::NOT_FOUND, envelope).into_response();
                let headers = response.headers_mut();
                headers.insert("content-type", content_type.parse().unwrap());
                if let Some(code) = code_header {
                    headers.insert("x-ably-errorcode", code.parse().unwrap());
                }
                response
            }),
        );
        let mut server = ScriptServer::start_with(vec![], Script::status(500), routes).await;
        let auth = Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap());

        let err = token_used(&mut server, auth).await.unwrap_err();

        let info = err.error_info().expect("an Ably error");
        assert_eq!(
            (info.code, info.status_code, info.message.as_str()),
            expected,
            "{content_type} {code_header:?}"
        );
    }
}

#[tokio::test]
async fn a_callback_may_return_a_token_details_or_a_request() {
    let (mut server, _) = auth_reply_server(Some("text/plain"), String::new()).await;
    let key = ApiKey::parse("app.key:secret").unwrap();
    let callbacks = [
        Auth::callback(|_| async { Ok(TokenReply::Token("CB".into())) }),
        Auth::callback(|_| async {
            let details: TokenDetails =
                serde_json::from_value(json!({"token": "CBD", "issued": 1, "expires": 0})).unwrap();
            Ok(TokenReply::Details(details))
        }),
        Auth::callback(move |params| {
            let request = TokenRequest::new_signed(&key, params, 1_700_000_000_000).unwrap();
            async move { Ok(TokenReply::Request(request)) }
        }),
    ];

    let mut tokens = Vec::new();
    for auth in callbacks {
        tokens.push(token_used(&mut server, auth).await.unwrap());
    }

    assert_eq!(tokens, ["CB", "CBD", "EXCHANGED"]);
}

#[tokio::test]
async fn a_callback_string_holding_json_is_refused_as_double_encoded() {
    let (mut server, _) = auth_reply_server(Some("text/plain"), String::new()).await;
    let details = json!({"token": "CBD", "issued": 1, "expires": 0}).to_string();
    let auth = Auth::callback(move |_| {
        let details = details.clone();
        async move { Ok(TokenReply::Token(details)) }
    });

    let err = token_used(&mut server, auth).await.unwrap_err();

    let info = err.error_info().expect("an Ably error");
    assert_eq!((info.code, info.status_code), (40170, 401));
    assert!(info.message.contains("double-encoded"), "{info:?}");
    assert!(server.pending_requests().is_empty(), "no stream was opened");
}

/// A server whose `/auth` (text/plain `T1`, `T2`…) and `requestToken`
/// (`EXCHANGED`) stall on their first call and answer every later one.
async fn first_auth_call_stalls() -> ScriptServer {
    let auth_calls = Arc::new(AtomicUsize::new(0));
    let exchanges = Arc::new(AtomicUsize::new(0));
    let routes = Router::new()
        .route(
            "/auth",
            get(move || {
                let n = auth_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == 1 {
                        std::future::pending::<()>().await;
                    }
                    ([("content-type", "text/plain")], format!("T{n}"))
                }
            }),
        )
        .route(
            "/keys/{key}/requestToken",
            post(move || {
                let n = exchanges.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == 1 {
                        std::future::pending::<()>().await;
                    }
                    let details = json!({"token": "EXCHANGED", "issued": 1, "expires": 0});
                    ([("content-type", "application/json")], details.to_string())
                }
            }),
        );
    ScriptServer::start_with(vec![], Script::sse(&[b""]).hang(), routes).await
}

#[tokio::test(start_paused = true)]
async fn auth_url_request_token_and_callback_steps_time_out_and_are_retried() {
    let key = ApiKey::parse("app.key:secret").unwrap();
    let callback_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&callback_calls);
    let stalling_callback = Auth::callback(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok(TokenReply::Token(format!("CB{n}")))
        }
    });
    let request_callback = Auth::callback(move |params| {
        let request = TokenRequest::new_signed(&key, params, 1_700_000_000_000).unwrap();
        async move { Ok(TokenReply::Request(request)) }
    });

    for (case, expected) in [
        ("auth URL", "T2"),
        ("callback", "CB2"),
        ("requestToken", "EXCHANGED"),
    ] {
        let mut server = first_auth_call_stalls().await;
        let auth = match case {
            "auth URL" => Auth::auth_url(AuthUrl::new(&server.url("/auth")).unwrap()),
            "callback" => stalling_callback.clone(),
            _ => request_callback.clone(),
        };
        let client = Client::builder()
            .endpoint(server.url(""))
            .auth(auth)
            .reconnect(fast())
            .auth_timeout(Some(Duration::from_millis(100)))
            .build()
            .unwrap();
        let mut sub = client.subscribe(SubscribeOptions::new(["ch"]));

        let first = next_update(&mut sub).await;
        let second = next_update(&mut sub).await;

        let Update::State(first) = first else {
            panic!("{case}: {first:?}")
        };
        let reason = reason(&first);
        assert!(
            matches!(reason, Error::AuthTimeout(limit) if *limit == Duration::from_millis(100)),
            "{case}: {reason:?}"
        );
        assert!(
            matches!(second, Update::State(StateChange::Connected)),
            "{case}: {second:?}"
        );
        let request = sse_request(&mut server).await;
        assert_eq!(
            request.query("accessToken").as_deref(),
            Some(expected),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_jwt_whose_exp_no_clock_can_hold_is_used_with_no_known_expiry() {
    // `exp` is read unverified to schedule renewal; a value past any clock
    // (here u64::MAX seconds) must not panic the subscription.
    let key = ApiKey::parse("app.key:secret").unwrap();
    let claims = shared::AblyJwtClaims::new(1_700_000_000, u64::MAX, r#"{"*":["*"]}"#);
    let jwt = shared::jwt::encode_jwt(&key, &claims).unwrap();
    let (mut server, _) = auth_reply_server(Some("text/plain"), String::new()).await;
    let reply = jwt.clone();
    let auth = Auth::callback(move |_| {
        let reply = reply.clone();
        async move { Ok(TokenReply::Token(reply)) }
    });

    let token = token_used(&mut server, auth).await.unwrap();

    assert_eq!(token, jwt);
}
