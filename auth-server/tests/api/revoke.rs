//! `POST /api/revoke` against a real mock-ably (whose `--key` keys have
//! revocable tokens): who may call it, what it sends Ably and answers, how
//! Ably's refusals map, `AUTH_REVOCATION_KEY_CLAIM`, and the JWT `iat`
//! second a revocation makes the next mint wait out.

use std::time::Instant;

use auth_server::{AppJwtRules, Config, Policy};
use base64::Engine as _;
use mock_ably::MockAbly;
use reqwest::header::{CONTENT_TYPE, COOKIE};
use serde_json::{Value, json};
use url::Url;

use crate::helpers::*;

/// Held by every test here that revokes. The revocation's log line is one
/// callsite these tests share, and tracing caches a callsite's interest
/// process-wide: run concurrently, the log test's thread-local subscriber
/// sometimes saw none of it (2 runs in 5), presumably when another test's
/// thread registered the callsite while the subscriber was being set up.
/// One revoking test at a time rules that out; each takes milliseconds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLICY: &str = "[default]\n\"chat:*\" = [\"subscribe\", \"history\"]\n";

/// A server whose admins hold the `ops` role, pointed at `mock`.
fn admin_config(mock: &MockAbly) -> Config {
    Config {
        ably_rest_url: Url::parse(mock.base_url()).unwrap(),
        policy: Policy::from_toml(POLICY).unwrap(),
        admin_role: Some("ops".to_owned()),
        ..config()
    }
}

async fn with_mock() -> (MockAbly, TestApp) {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(admin_config(&mock)).await;
    (mock, app)
}

fn admin() -> String {
    user_token("olga", &json!({"roles": ["ops"]}))
}

async fn revoke(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post_json("/api/revoke", token, body).await
}

/// An Ably JWT for `token` from `/api/ably-jwt`.
async fn ably_jwt(app: &TestApp, token: &str) -> String {
    let response = app.get("/api/ably-jwt", Some(token)).await;
    assert_eq!(response.status(), 200);
    within(response.text()).await.unwrap()
}

/// Reads `chat:lobby`'s history at the mock with `credential`: the status
/// and, for a refusal, Ably's error code.
async fn use_at_mock(mock: &MockAbly, credential: &str) -> (u16, Option<u64>) {
    let url = Url::parse_with_params(
        &format!("{}/channels/chat:lobby/messages", mock.base_url()),
        [("accessToken", credential)],
    )
    .unwrap();
    let response = within(reqwest::get(url)).await.unwrap();
    let status = response.status().as_u16();
    let body: Value = within(response.json()).await.unwrap();
    (status, body["error"]["code"].as_u64())
}

/// The claims of a JWT, unverified (the mock verifies it).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn without_auth_admin_role_the_revoke_route_is_not_found_whatever_the_method() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(Config {
        admin_role: None,
        ..admin_config(&mock)
    })
    .await;

    let post = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;
    let get = app.get("/api/revoke", Some(&admin())).await;

    assert_ably_error(post, 404, 40400, "not found").await;
    assert_ably_error(get, 404, 40400, "not found").await;
}

#[tokio::test]
async fn a_valid_app_token_without_the_admin_role_gets_403_40300() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_mock().await;
    let alice_jwt = ably_jwt(&app, &user_token("alice", &json!({}))).await;

    let response = revoke(
        &app,
        &user_token("mallory", &json!({"roles": ["user", "opsx"]})),
        &json!({"clientId": "alice"}),
    )
    .await;

    assert_ably_error(response, 403, 40300, "revoking tokens needs the ops role").await;
    assert_eq!(use_at_mock(&mock, &alice_jwt).await, (200, None));
}

#[tokio::test]
async fn no_or_a_bad_app_token_gets_401() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (_mock, app) = with_mock().await;

    let none = within(
        app.client
            .post(app.url("/api/revoke"))
            .json(&json!({"clientId": "alice"}))
            .send(),
    )
    .await
    .unwrap();
    let forged = revoke(&app, "not.a.jwt", &json!({"clientId": "alice"})).await;

    assert_ably_error(none, 401, 40101, "no app token").await;
    assert_ably_error(forged, 401, 40101, "invalid app token").await;
}

#[tokio::test]
async fn an_admin_revokes_a_client_id_and_gets_ablys_result_and_the_users_credentials_are_refused_with_40141()
 {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_mock().await;
    let alice_jwt = ably_jwt(&app, &user_token("alice", &json!({}))).await;
    let bob_jwt = ably_jwt(&app, &user_token("bob", &json!({}))).await;
    assert_eq!(use_at_mock(&mock, &alice_jwt).await, (200, None));
    let before = mock.now_ms();

    let response = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = within(response.json()).await.unwrap();
    assert_eq!(body["successCount"], 1, "{body}");
    assert_eq!(body["failureCount"], 0, "{body}");
    let result = &body["results"][0];
    assert_eq!(result["target"], "clientId:alice", "{body}");
    let issued_before = result["issuedBefore"].as_u64().unwrap();
    assert!(issued_before >= before && issued_before <= mock.now_ms());
    assert_eq!(result["appliesAt"].as_u64(), Some(issued_before));
    assert_eq!(use_at_mock(&mock, &alice_jwt).await, (401, Some(40141)));
    assert_eq!(use_at_mock(&mock, &bob_jwt).await, (200, None));
}

#[tokio::test]
async fn allow_reauth_margin_reaches_ably_which_enforces_the_revocation_30_s_later() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_mock().await;
    let alice_jwt = ably_jwt(&app, &user_token("alice", &json!({}))).await;

    let response = revoke(
        &app,
        &admin(),
        &json!({"clientId": "alice", "allowReauthMargin": true}),
    )
    .await;

    assert_eq!(response.status(), 200);
    let body: Value = within(response.json()).await.unwrap();
    let result = &body["results"][0];
    assert_eq!(
        result["appliesAt"].as_u64().unwrap(),
        result["issuedBefore"].as_u64().unwrap() + 30_000,
        "{body}"
    );
    assert_eq!(use_at_mock(&mock, &alice_jwt).await, (200, None));
}

#[tokio::test]
async fn the_session_cookie_authorises_a_revocation_as_it_does_a_token() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(Config {
        app_jwt_cookie: Some("session".to_owned()),
        ..admin_config(&mock)
    })
    .await;
    let alice_jwt = ably_jwt(&app, &user_token("alice", &json!({}))).await;

    let response = within(
        app.client
            .post(app.url("/api/revoke"))
            .header(COOKIE, format!("session={}", admin()))
            .json(&json!({"clientId": "alice"}))
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(use_at_mock(&mock, &alice_jwt).await, (401, Some(40141)));
}

#[tokio::test]
async fn malformed_revocations_are_refused_before_they_reach_ably() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_mock().await;
    let alice_jwt = ably_jwt(&app, &user_token("alice", &json!({}))).await;
    let long = "a".repeat(1025);
    let cases = [
        (json!({}), "name a target"),
        (
            json!({"clientId": "alice", "revocationKey": "s1"}),
            "not both",
        ),
        (json!({"clientId": ""}), "clientId is empty"),
        (
            json!({"clientId": "ali\nce"}),
            "clientId holds a control character",
        ),
        (
            json!({"revocationKey": "s\u{7f}1"}),
            "revocationKey holds a control character",
        ),
        (json!({"clientId": long}), "longer than 1024 bytes"),
        (json!({"clientId": 7}), "the body must be"),
        (
            json!({"clientId": "alice", "allowReauthMargin": "yes"}),
            "the body must be",
        ),
        (json!({"clientID": "alice"}), "unknown field"),
        (json!({"clientId": "*"}), "wildcard"),
        (json!(["clientId:alice"]), "the body must be"),
    ];

    for (body, message) in cases {
        let response = revoke(&app, &admin(), &body).await;

        assert_ably_error(response, 400, 40003, message).await;
    }
    let form = within(
        app.client
            .post(app.url("/api/revoke"))
            .bearer_auth(admin())
            .form(&[("clientId", "alice")])
            .send(),
    )
    .await
    .unwrap();
    assert_ably_error(form, 400, 40003, "application/json").await;
    assert_eq!(use_at_mock(&mock, &alice_jwt).await, (200, None));
}

#[tokio::test]
async fn a_server_key_ably_refuses_to_revoke_with_is_a_500_naming_the_servers_key() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let app = spawn_app(Config {
        api_key: "appA.keyA:not-the-real-secret".parse().unwrap(),
        ..admin_config(&mock)
    })
    .await;

    let response = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;

    let error = assert_ably_error(response, 500, 50000, "check its ABLY_API_KEY").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("(Ably code 40101)"), "{message}");
    assert!(!message.contains("not-the-real-secret"), "{message}");
}

#[tokio::test]
async fn an_unreachable_ably_is_a_503() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app(Config {
        ably_rest_url: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        admin_role: Some("ops".to_owned()),
        ..config()
    })
    .await;

    let response = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;

    assert_ably_error(response, 503, 50000, "cannot reach Ably").await;
}

/// Without the wait, the JWT minted right after the revocation has the
/// revocation's second as its `iat` and the mock refuses it with 40141.
#[tokio::test]
async fn a_jwt_minted_right_after_a_revocation_is_issued_after_it_and_accepted() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_mock().await;
    let alice = user_token("alice", &json!({}));

    let response = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;
    let body: Value = within(response.json()).await.unwrap();
    let issued_before = body["results"][0]["issuedBefore"].as_u64().unwrap();
    let started = Instant::now();
    let fresh = ably_jwt(&app, &alice).await;
    let waited = started.elapsed();

    let iat = verified_jwt(&fresh).iat;
    assert!(
        iat * 1000 >= issued_before,
        "iat {iat} issuedBefore {issued_before}"
    );
    assert!(waited.as_millis() <= 1100, "waited {waited:?}");
    assert_eq!(use_at_mock(&mock, &fresh).await, (200, None));
}

/// Tokens from `requestToken` carry Ably's issue time in milliseconds, after
/// the revocation: they need no wait.
#[tokio::test]
async fn a_token_from_ably_token_right_after_a_revocation_is_accepted() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_mock().await;
    let alice = user_token("alice", &json!({}));

    let response = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;
    assert_eq!(response.status(), 200);
    let token = within(app.get("/api/ably-token", Some(&alice)).await.text())
        .await
        .unwrap();

    assert_eq!(use_at_mock(&mock, &token).await, (200, None));
}

/// A server copying the `sid` claim into `x-ably-revocation-key`.
async fn with_session_claim() -> (MockAbly, TestApp) {
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let base = admin_config(&mock);
    let app = spawn_app(Config {
        app_jwt: AppJwtRules {
            revocation_key_claim: Some("sid".to_owned()),
            ..base.app_jwt.clone()
        },
        ..base
    })
    .await;
    (mock, app)
}

#[tokio::test]
async fn the_revocation_key_claim_is_copied_into_minted_jwts_and_absent_without_it() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (_mock, app) = with_session_claim().await;

    let with_claim = ably_jwt(&app, &user_token("alice", &json!({"sid": "s-1"}))).await;
    let without = ably_jwt(&app, &user_token("alice", &json!({}))).await;

    assert_eq!(claims(&with_claim)["x-ably-revocation-key"], "s-1");
    assert_eq!(claims(&with_claim)["x-ably-clientId"], "alice");
    assert!(
        claims(&without).get("x-ably-revocation-key").is_none(),
        "{}",
        claims(&without)
    );
}

#[tokio::test]
async fn a_revocation_key_claim_that_is_not_a_usable_string_is_refused_with_401() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (_mock, app) = with_session_claim().await;

    for (sid, problem) in [
        (
            json!(42),
            "sid claim (AUTH_REVOCATION_KEY_CLAIM) is not a string",
        ),
        (json!(""), "sid claim (AUTH_REVOCATION_KEY_CLAIM) is empty"),
        (
            json!("s\n1"),
            "sid claim (AUTH_REVOCATION_KEY_CLAIM) holds a control character",
        ),
    ] {
        let response = app
            .get(
                "/api/ably-jwt",
                Some(&user_token("alice", &json!({ "sid": sid }))),
            )
            .await;

        assert_ably_error(response, 401, 40101, problem).await;
    }
}

#[tokio::test]
async fn revoking_a_revocation_key_cuts_off_that_session_only_and_its_next_jwt_is_accepted() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (mock, app) = with_session_claim().await;
    let session_1 = user_token("alice", &json!({"sid": "s-1"}));
    let session_2 = user_token("alice", &json!({"sid": "s-2"}));
    let jwt_1 = ably_jwt(&app, &session_1).await;
    let jwt_2 = ably_jwt(&app, &session_2).await;

    let response = revoke(&app, &admin(), &json!({"revocationKey": "s-1"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = within(response.json()).await.unwrap();
    assert_eq!(body["results"][0]["target"], "revocationKey:s-1");
    let renewed = ably_jwt(&app, &session_1).await;

    assert_eq!(use_at_mock(&mock, &jwt_1).await, (401, Some(40141)));
    assert_eq!(use_at_mock(&mock, &jwt_2).await, (200, None));
    assert_eq!(use_at_mock(&mock, &renewed).await, (200, None));
}

// A current-thread runtime: the server, the mock and every task they spawn
// run on this thread, so the thread-local subscriber sees all of them.
#[tokio::test(flavor = "current_thread")]
async fn a_revocation_is_logged_with_who_and_what_kind_never_the_key_tokens_or_revocation_key() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let capture = crate::logs::Capture::default();
    let _guard = capture.trace();
    let (_mock, app) = with_session_claim().await;
    let admin = admin();

    let by_client = revoke(&app, &admin, &json!({"clientId": "alice"})).await;
    let by_key = revoke(&app, &admin, &json!({"revocationKey": "sess-7f3a9c"})).await;
    assert_eq!(by_client.status(), 200);
    assert_eq!(by_key.status(), 200);
    drop(app);

    let logs = capture.text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("tokens revoked"))
        .collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines[0].contains("INFO"), "{}", lines[0]);
    assert!(lines[0].contains("admin=olga"), "{}", lines[0]);
    assert!(
        lines[0].contains("target_kind=\"clientId\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("client_id=\"alice\""), "{}", lines[0]);
    assert!(
        lines[1].contains("target_kind=\"revocationKey\""),
        "{}",
        lines[1]
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(ABLY_KEY);
    for secret in [
        ABLY_KEY_SECRET,
        basic.as_str(),
        admin.as_str(),
        "sess-7f3a9c",
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn after_a_policy_reload_and_a_revocation_the_users_old_jwt_is_refused_and_the_next_has_the_new_rights()
 {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mock = MockAbly::builder().key(ABLY_KEY).start().await;
    let path = std::env::temp_dir().join(format!(
        "auth-server-revoke-{}-reload.toml",
        std::process::id()
    ));
    std::fs::write(&path, POLICY).unwrap();
    let (app, state) = spawn_app_with_state(Config {
        policy_file: Some(path.clone()),
        ..admin_config(&mock)
    })
    .await;
    let alice = user_token("alice", &json!({}));
    let old = ably_jwt(&app, &alice).await;
    assert_eq!(
        verified_jwt(&old).capability,
        r#"{"chat:*":["history","subscribe"]}"#
    );

    std::fs::write(&path, "[default]\n\"chat:*\" = [\"subscribe\"]\n").unwrap();
    state.reload_policy().unwrap();
    let response = revoke(&app, &admin(), &json!({"clientId": "alice"})).await;
    assert_eq!(response.status(), 200);
    let renewed = ably_jwt(&app, &alice).await;
    std::fs::remove_file(&path).ok();

    assert_eq!(use_at_mock(&mock, &old).await, (401, Some(40141)));
    assert_eq!(
        verified_jwt(&renewed).capability,
        r#"{"chat:*":["subscribe"]}"#
    );
    // Reading history needs the `history` the new policy took away.
    assert_eq!(use_at_mock(&mock, &renewed).await, (401, Some(40160)));
}
