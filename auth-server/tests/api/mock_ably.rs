//! Credentials from the auth server used against mock-ably, which checks
//! them as Ably does: the token from `/api/ably-token`, the JWT from
//! `/api/ably-jwt` and the TokenRequest from `/api/ably-token-request` each
//! open an SSE stream on an allowed channel and are refused on others.

use std::time::{SystemTime, UNIX_EPOCH};

use auth_server::{Config, Policy};
use mock_ably::MockAbly;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::*;

const POLICY: &str = "[default]\n\"chat:*\" = [\"subscribe\"]\n";

async fn with_mock() -> (MockAbly, TestApp) {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(Config {
        ably_rest_url: Url::parse(mock.base_url()).unwrap(),
        policy: Policy::from_toml(POLICY).unwrap(),
        ..config()
    })
    .await;
    (mock, app)
}

/// The status of opening an SSE stream on `channel` with `token`; the
/// stream itself is dropped at once.
async fn sse_status(mock: &MockAbly, token: &str, channel: &str) -> u16 {
    let url = Url::parse_with_params(
        &format!("{}/sse", mock.base_url()),
        [("v", "1.2"), ("channels", channel), ("accessToken", token)],
    )
    .unwrap();
    within(reqwest::get(url)).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_token_from_ably_token_opens_only_the_granted_channels() {
    let (mock, app) = with_mock().await;

    let response = app
        .get_accepting(
            "/api/ably-token",
            &user_token("alice", &json!({})),
            AUTH_URL_ACCEPT,
        )
        .await;

    assert_eq!(response.status(), 200);
    let details: Value = within(response.json()).await.unwrap();
    assert_eq!(details["clientId"], "alice");
    assert_eq!(details["capability"], r#"{"chat:*":["subscribe"]}"#);
    let token = details["token"].as_str().unwrap();
    assert_eq!(sse_status(&mock, token, "chat:lobby").await, 200);
    assert_eq!(sse_status(&mock, token, "secret").await, 401);
}

#[tokio::test]
async fn the_jwt_from_ably_jwt_is_accepted_by_the_mock() {
    let (mock, app) = with_mock().await;

    let response = app
        .get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
        .await;

    let jwt = within(response.text()).await.unwrap();
    assert_eq!(sse_status(&mock, &jwt, "chat:lobby").await, 200);
    assert_eq!(sse_status(&mock, &jwt, "secret").await, 401);
}

#[tokio::test]
async fn the_token_request_is_exchanged_by_the_mock() {
    let (mock, app) = with_mock().await;
    let token_request: Value = within(
        app.get(
            "/api/ably-token-request",
            Some(&user_token("alice", &json!({}))),
        )
        .await
        .json(),
    )
    .await
    .unwrap();

    let exchanged = within(
        app.client
            .post(format!(
                "{}/keys/{}/requestToken",
                mock.base_url(),
                token_request["keyName"].as_str().unwrap()
            ))
            .json(&token_request)
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(exchanged.status(), 200);
    let details: Value = within(exchanged.json()).await.unwrap();
    assert_eq!(details["clientId"], "alice");
    let token = details["token"].as_str().unwrap();
    assert_eq!(sse_status(&mock, token, "chat:lobby").await, 200);
}

#[tokio::test]
async fn a_server_key_ably_refuses_is_a_500_naming_the_servers_key_not_the_users() {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    // The right key name with a wrong secret: Ably says the MAC does not match.
    let app = spawn_app(Config {
        api_key: "appA.keyA:not-the-real-secret".parse().unwrap(),
        ably_rest_url: Url::parse(mock.base_url()).unwrap(),
        ..config()
    })
    .await;

    let response = app
        .get("/api/ably-token", Some(&user_token("alice", &json!({}))))
        .await;

    let error = assert_ably_error(response, 500, 50000, "check its ABLY_API_KEY").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("(Ably code 40101)"), "{message}");
    assert!(!message.contains("not-the-real-secret"), "{message}");
}

/// History of `channel` on the mock, read with `credential` (a token or
/// JWT): the status and the message `data` fields.
async fn history(mock: &MockAbly, credential: &str, channel: &str) -> (u16, Vec<Value>) {
    let mut url = Url::parse(mock.base_url()).unwrap();
    url.path_segments_mut()
        .unwrap()
        .extend(["channels", channel, "messages"]);
    url.query_pairs_mut().append_pair("accessToken", credential);
    let response = within(reqwest::get(url)).await.unwrap();
    let status = response.status().as_u16();
    let body: Value = within(response.json()).await.unwrap();
    let data = match body {
        Value::Array(messages) => messages.iter().map(|m| m["data"].clone()).collect(),
        _ => Vec::new(),
    };
    (status, data)
}

/// An app token whose clientId claim holds a newline and the timestamp an
/// attacker wants to forge: so the TokenRequest signed for it
/// would carry a MAC that also fits clientId `"*"` (or `alice`). The auth
/// server refuses the clientId on every endpoint, before anything is signed.
#[tokio::test]
async fn a_newline_in_the_client_id_cannot_forge_a_wildcard_token_request() {
    let (mock, app) = with_mock().await;
    let forged_timestamp = mock.now_ms() + 30_000;

    for sub in [
        format!("*\n{forged_timestamp}"),
        format!("alice\n{forged_timestamp}"),
    ] {
        let token = user_token(&sub, &json!({}));
        for path in [
            "/api/ably-token-request",
            "/api/ably-jwt",
            "/api/ably-token",
        ] {
            let response = app.get(path, Some(&token)).await;

            assert_ably_error(
                response,
                401,
                40101,
                "sub claim holds a control character (U+0000 to U+001F or U+007F), which no clientId may hold",
            )
            .await;
        }
    }
    assert_eq!(mock.stats().published, 0);
}

/// The same forgery at Ably's end: a TokenRequest signed for clientId
/// `"*\n<T>"` (as an unfixed auth server signed it, with the server's key),
/// re-sent with clientId `"*"`, timestamp `T` and nonce `"<ts>\n<nonce>"`.
/// The MAC fits the forged fields; the mock refuses the request (40003)
/// rather than issue a wildcard token.
#[tokio::test]
async fn a_token_request_re_sent_with_the_newline_moved_into_the_nonce_is_refused() {
    let (mock, _app) = with_mock().await;
    let signed_at = mock.now_ms();
    let forged_timestamp = signed_at + 30_000;
    let nonce = "0123456789abcdef0123456789abcdef";
    for (client_id, forged_client_id) in [("*", "*"), ("alice", "alice")] {
        let mut original = json!({
            "keyName": ABLY_KEY_NAME, "ttl": 3_600_000, "capability": r#"{"*":["*"]}"#,
            "clientId": format!("{client_id}\n{forged_timestamp}"),
            "timestamp": signed_at, "nonce": nonce,
        });
        original["mac"] = mac_by_hand(ABLY_KEY_SECRET, &original).into();
        let mut forged = json!({
            "keyName": ABLY_KEY_NAME, "ttl": 3_600_000, "capability": r#"{"*":["*"]}"#,
            "clientId": forged_client_id, "timestamp": forged_timestamp,
            "nonce": format!("{signed_at}\n{nonce}"),
        });
        assert_eq!(
            mac_by_hand(ABLY_KEY_SECRET, &forged),
            original["mac"],
            "the forged fields sign the same text"
        );
        forged["mac"] = original["mac"].clone();

        let refusals = [
            (
                &forged,
                "nonce holds a line feed, the separator of a TokenRequest's signed text; it may hold none",
            ),
            (
                &original,
                "clientId holds the control character U+000A; a clientId may hold none",
            ),
        ];
        for (request, message) in refusals {
            let response = within(
                reqwest::Client::new()
                    .post(format!(
                        "{}/keys/{ABLY_KEY_NAME}/requestToken",
                        mock.base_url()
                    ))
                    .json(request)
                    .send(),
            )
            .await
            .unwrap();

            let error = assert_ably_error(response, 400, 40003, message).await;
            assert_eq!(error["message"], message);
        }
    }
}

/// With `"user:{clientId}" = ["*"]`, the user `alice::$chat`
/// was granted `user:alice::$chat`, alice's tagged channel, and the user
/// `alice:inbox` got `user:alice:inbox`, inside alice's namespace. Neither
/// can read alice's messages now; the rest of their grant stands.
#[tokio::test]
async fn a_client_id_with_a_colon_cannot_read_another_users_channel() {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(Config {
        ably_rest_url: Url::parse(mock.base_url()).unwrap(),
        policy: Policy::from_toml(
            "[default]\n\"chat:*\" = [\"subscribe\", \"history\"]\n\"user:{clientId}\" = [\"*\"]\n",
        )
        .unwrap(),
        ..config()
    })
    .await;
    mock.publish_data("user:alice::$chat", "", "for alice only");
    mock.publish_data("user:alice:inbox", "", "alice's inbox");
    mock.publish_data("chat:lobby", "", "hello all");

    for (attacker, alices_channel) in [
        ("alice::$chat", "user:alice::$chat"),
        ("alice:inbox", "user:alice:inbox"),
    ] {
        let jwt = within(
            app.get("/api/ably-jwt", Some(&user_token(attacker, &json!({}))))
                .await
                .text(),
        )
        .await
        .unwrap();

        assert_eq!(
            history(&mock, &jwt, alices_channel).await,
            (401, Vec::new()),
            "{attacker}"
        );
        assert_eq!(sse_status(&mock, &jwt, alices_channel).await, 401);
        assert_eq!(
            verified_jwt(&jwt).capability,
            r#"{"chat:*":["history","subscribe"]}"#,
            "{attacker}"
        );
        assert_eq!(
            history(&mock, &jwt, "chat:lobby").await,
            (200, vec![json!("hello all")])
        );
    }
    let alice = within(
        app.get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
            .await
            .text(),
    )
    .await
    .unwrap();
    assert_eq!(
        history(&mock, &alice, "user:alice").await,
        (200, Vec::new()),
        "alice keeps her own channel"
    );
}

/// `/api/ably-token` asked for 24 h with an app token that has 100 s left:
/// the TTL sent to Ably ends with the app token, so the token Ably issues ends then too, give or take the time the
/// round trip took (Ably counts the TTL from when it issues the token).
#[tokio::test]
async fn the_token_from_ably_token_ends_with_the_app_token() {
    let (_mock, app) = with_mock().await;
    let exp = now_secs() + 100;
    let token = user_token("alice", &json!({"exp": exp}));
    let now_ms = || {
        u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };

    let before = now_ms();
    let response = app
        .get_accepting("/api/ably-token?ttl=86400000", &token, AUTH_URL_ACCEPT)
        .await;
    let took = now_ms() - before;

    assert_eq!(response.status(), 200);
    let details: Value = within(response.json()).await.unwrap();
    let expires = details["expires"].as_u64().unwrap();
    assert!(
        expires <= exp * 1000 + took && expires + 1000 >= exp * 1000,
        "expires {expires}, app token exp {exp}, took {took} ms"
    );
}
