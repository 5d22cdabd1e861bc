//! Credentials everywhere (`docs/protocol.md#credentials-on-the-stream`,
//! `docs/protocol.md#jwt-rejections`), the error envelope
//! (`docs/protocol.md#the-error-envelope`), CORS
//! (`docs/real-clients.md#cors-for-ably-js-in-a-browser`), `/time`.

use std::time::Duration;

use mock_ably::MockAbly;
use serde_json::{Value, json};
use shared::ApiKey;
use shared::jwt::{AblyJwtClaims, encode_jwt};
use shared::token::TokenParams;

use crate::helpers::*;

#[tokio::test]
async fn time_needs_no_credentials_and_is_one_number_in_ms() {
    let app = spawn().await;

    let response = app.get("/time").await;

    assert_eq!(response.status(), 200);
    let body: Vec<u64> = response.json().await.unwrap();
    assert_eq!(body.len(), 1);
    assert!(body[0].abs_diff(app.mock.now_ms()) < 5_000);
}

#[tokio::test]
async fn a_request_without_credentials_gets_40101_in_the_exact_envelope() {
    let app = spawn().await;

    let response = app.get("/channels/chat/messages").await;

    let error = assert_error(response, 401, 40101).await;
    assert!(error.message.contains("credentials"));
}

#[tokio::test]
async fn basic_auth_works_as_a_header_and_as_the_key_param() {
    let app = spawn().await;

    let header = within(
        app.client
            .get(app.url("/channels/chat/messages"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .send(),
    )
    .await
    .unwrap();
    let param = app
        .get(&format!("/channels/chat/messages?key={}", enc(KEY)))
        .await;

    assert_eq!(header.status(), 200);
    assert_eq!(param.status(), 200);
}

#[tokio::test]
async fn a_wrong_secret_is_40101_and_an_unknown_key_is_40400() {
    let app = spawn().await;
    let get = |key: &str| app.get_owned(format!("/channels/chat/messages?key={}", enc(key)));

    assert_error(get("testApp.testKey:wrong").await, 401, 40101).await;
    // Unknown key in a known app: 401; unknown app: 404
    // (`docs/protocol.md#jwt-rejections`).
    assert_error(get("testApp.otherKey:x").await, 401, 40400).await;
    assert_error(get("otherApp.testKey:x").await, 404, 40400).await;
}

#[tokio::test]
async fn a_malformed_basic_credential_is_40005() {
    let app = spawn().await;

    let no_colon = app.get("/channels/chat/messages?key=testApp.testKey").await;
    let not_base64 = within(
        app.client
            .get(app.url("/channels/chat/messages"))
            .header("authorization", "Basic %%%")
            .send(),
    )
    .await
    .unwrap();

    assert_error(no_colon, 400, 40005).await;
    assert_error(not_base64, 400, 40005).await;
}

impl TestMock {
    /// GET with an owned path (for closures).
    pub(crate) async fn get_owned(&self, path: String) -> reqwest::Response {
        self.get(&path).await
    }

    /// GET `path` with `Authorization: Bearer {value}`.
    pub(crate) async fn get_bearer(&self, path: &str, value: &str) -> reqwest::Response {
        within(self.client.get(self.url(path)).bearer_auth(value).send())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn bearer_tokens_are_accepted_raw_and_base64_encoded() {
    let app = spawn().await;
    let token = app.mock.issue_token(TokenParams::default()).token;
    let jwt = jwt(&app.mock, r#"{"*":["*"]}"#, None, 600);

    for value in [token.clone(), b64(&token), jwt.clone(), b64(&jwt)] {
        let response = app.get_bearer("/channels/chat/messages", &value).await;

        assert_eq!(response.status(), 200, "{value}");
    }
}

#[tokio::test]
async fn access_token_params_carry_tokens_and_jwts() {
    let app = spawn().await;
    let token = app.mock.issue_token(TokenParams::default()).token;
    let jwt = jwt(&app.mock, r#"{"*":["*"]}"#, None, 600);

    for query in [
        format!("accessToken={}", enc(&token)),
        format!("accessToken={}", enc(&jwt)),
        format!("access_token={}", enc(&jwt)),
    ] {
        let response = app.get(&format!("/channels/chat/messages?{query}")).await;

        assert_eq!(response.status(), 200, "{query}");
    }
}

#[tokio::test]
async fn a_garbage_token_is_40005_and_an_unknown_one_is_40143() {
    let app = spawn().await;

    let garbage = app
        .get_bearer("/channels/chat/messages", "nodotshere")
        .await;
    let unknown = app
        .get("/channels/chat/messages?accessToken=testApp.notIssued")
        .await;

    assert_error(garbage, 400, 40005).await;
    assert_error(unknown, 401, 40143).await;
}

#[tokio::test]
async fn an_opaque_token_expires_on_the_mock_clock() {
    let app = spawn().await;
    let token = app
        .mock
        .issue_token(TokenParams {
            ttl: Some(60_000),
            ..TokenParams::default()
        })
        .token;
    let path = format!("/channels/chat/messages?accessToken={}", enc(&token));
    assert_eq!(app.get(&path).await.status(), 200);

    app.mock.advance_clock(Duration::from_secs(61));

    assert_error(app.get(&path).await, 401, 40142).await;
}

fn jwt_with(key: &str, claims: &AblyJwtClaims) -> String {
    encode_jwt(&ApiKey::parse(key).unwrap(), claims).unwrap()
}

#[tokio::test]
async fn jwts_are_rejected_with_the_codes_of_section_2_2() {
    let app = spawn().await;
    let now = app.mock.now_ms() / 1000;
    let any = r#"{"*":["*"]}"#;
    let path = |jwt: &str| format!("/channels/chat/messages?accessToken={}", enc(jwt));

    let forged = jwt_with(
        "testApp.testKey:not-the-secret",
        &AblyJwtClaims::new(now, now + 60, any),
    );
    let expired = jwt_with(KEY, &AblyJwtClaims::new(now - 60, now - 1, any));
    // No leeway: a JWT is expired from the second its exp names.
    let expiring_now = jwt_with(KEY, &AblyJwtClaims::new(now - 60, now, any));
    let future = jwt_with(KEY, &AblyJwtClaims::new(now + 120, now + 600, any));
    let unknown_key = jwt_with(
        "testApp.otherKey:s",
        &AblyJwtClaims::new(now, now + 60, any),
    );
    let unknown_app = jwt_with(
        "otherApp.testKey:s",
        &AblyJwtClaims::new(now, now + 60, any),
    );
    let empty_capability = jwt_with(KEY, &AblyJwtClaims::new(now, now + 60, "{}"));
    let alg_none = format!(
        "{}.{}.",
        b64url(r#"{"alg":"none","kid":"testApp.testKey"}"#),
        b64url(&format!(
            r#"{{"iat":{now},"exp":{},"x-ably-capability":"{{}}"}}"#,
            now + 60
        ))
    );

    assert_error(app.get(&path(&forged)).await, 401, 40144).await;
    assert_error(app.get(&path(&expired)).await, 401, 40142).await;
    assert_error(app.get(&path(&expiring_now)).await, 401, 40142).await;
    assert_error(app.get(&path(&future)).await, 400, 40001).await;
    assert_error(app.get(&path(&unknown_key)).await, 401, 40400).await;
    assert_error(app.get(&path(&unknown_app)).await, 404, 40400).await;
    assert_error(app.get(&path(&empty_capability)).await, 401, 40160).await;
    assert_error(app.get(&path(&alg_none)).await, 401, 40144).await;
    assert_error(app.get(&path("a.b.c")).await, 401, 40144).await;
}

/// An HS256 JWT signed with [`KEY`]'s secret, with `kid` (or none) and any
/// payload: what `encode_jwt` refuses to make.
fn hand_signed(kid: Option<&str>, payload: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let secret = EncodingKey::from_secret(b"test-secret").unwrap();
    jsonwebtoken::encode(&header, payload, &secret).unwrap()
}

#[tokio::test]
async fn jwts_missing_kid_iat_or_exp_or_with_an_empty_capability_are_40144() {
    let app = spawn().await;
    let now = app.mock.now_ms() / 1000;
    let any = r#"{"*":["*"]}"#;
    let complete = json!({"iat": now, "exp": now + 60, "x-ably-capability": any});
    let without = |claim: &str| {
        let mut payload = complete.clone();
        payload.as_object_mut().unwrap().remove(claim);
        hand_signed(Some(KEY_NAME), &payload)
    };
    let empty_capability = json!({"iat": now, "exp": now + 60, "x-ably-capability": ""});
    let cases = [
        (
            hand_signed(None, &complete),
            "Invalid JWT; no kid in the header",
        ),
        (without("iat"), "Invalid token; iat must be specified"),
        (without("exp"), "Invalid token; exp must be specified"),
        (
            hand_signed(Some(KEY_NAME), &empty_capability),
            "Invalid token; x-ably-capability must not be empty",
        ),
    ];
    // The same signing with every claim is accepted: each refusal is down to
    // the one thing missing.
    let valid = hand_signed(Some(KEY_NAME), &complete);
    let history =
        |jwt: &str| app.get_owned(format!("/channels/chat/messages?accessToken={}", enc(jwt)));
    assert_eq!(history(&valid).await.status(), 200);

    for (jwt, message) in cases {
        let rest = history(&jwt).await;
        let bearer = app.get_bearer("/channels/chat/messages", &b64(&jwt)).await;
        let stream = app
            .sse_response(&format!("channels=chat&accessToken={}", enc(&jwt)))
            .await;

        for response in [rest, bearer, stream] {
            let error = assert_error(response, 401, 40144).await;
            assert_eq!(error.message, message);
        }
    }
}

fn b64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn a_jwt_gets_at_most_its_key_capability() {
    let app =
        with(MockAbly::builder().key_with_capability(KEY, r#"{"chat:*":["subscribe","history"]}"#))
            .await;
    let wide = jwt(&app.mock, r#"{"*":["*"]}"#, None, 600);
    let disjoint = jwt(&app.mock, r#"{"other":["subscribe"]}"#, None, 600);
    let history = |channel: &str, jwt: &str| {
        app.get_owned(format!(
            "/channels/{channel}/messages?accessToken={}",
            enc(jwt)
        ))
    };

    assert_eq!(history("chat:lobby", &wide).await.status(), 200);
    assert_error(history("news", &wide).await, 401, 40160).await;
    assert_error(history("chat:lobby", &disjoint).await, 401, 40160).await;
    let publish = within(
        app.client
            .post(app.url("/channels/chat:lobby/messages"))
            .bearer_auth(b64(&wide))
            .json(&json!({"data": "x"}))
            .send(),
    )
    .await
    .unwrap();
    assert_error(publish, 401, 40160).await;
}

#[tokio::test]
async fn any_number_of_keys_are_accepted() {
    let app = with(MockAbly::builder().key(KEY).key("app2.k2:s2")).await;

    let first = app
        .get(&format!("/channels/c/messages?key={}", enc(KEY)))
        .await;
    let second = app.get("/channels/c/messages?key=app2.k2%3As2").await;

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
}

#[tokio::test]
async fn a_mock_without_keys_accepts_the_dev_key() {
    let app = with(MockAbly::builder()).await;

    let response = app
        .get(&format!(
            "/channels/c/messages?key={}",
            enc(mock_ably::DEV_KEY)
        ))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.mock.key().key_name(), "mockApp.devKey");
}

#[tokio::test]
async fn cors_preflight_echoes_the_origin_and_the_requested_headers() {
    let app = spawn().await;

    let response = within(
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/channels/chat/messages"))
            .header("origin", "http://127.0.0.1:9999")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "ably-agent,authorization,content-type,x-ably-version",
            )
            .send(),
    )
    .await
    .unwrap();

    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://127.0.0.1:9999"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(
        headers["access-control-allow-methods"],
        "GET,POST,PUT,DELETE,PATCH,OPTIONS"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "ably-agent,authorization,content-type,x-ably-version"
    );
    assert_eq!(
        headers["access-control-expose-headers"],
        "Link, X-Ably-Errorcode, X-Ably-Errormessage"
    );
    assert_eq!(headers["vary"], "Origin");
}

#[tokio::test]
async fn cors_headers_are_on_successes_errors_and_streams() {
    let app = spawn().await;
    let send = |path: String| {
        let request = app
            .client
            .get(app.url(&path))
            .header("origin", "http://page.test");
        async move { within(request.send()).await.unwrap() }
    };

    let time = send("/time".into()).await;
    let error = send("/channels/chat/messages".into()).await;
    let stream = send(format!("/sse?v=1.2&channels=c&key={}", enc(KEY))).await;

    for response in [&time, &error, &stream] {
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "http://page.test"
        );
        assert_eq!(
            response.headers()["access-control-allow-credentials"],
            "true"
        );
        assert!(
            response.headers()["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("X-Ably-Errorcode")
        );
    }
    assert_eq!(error.status(), 401);
}

#[tokio::test]
async fn an_options_request_that_is_not_a_preflight_is_routed_and_gets_no_cors_headers() {
    let app = spawn().await;
    let send = |request: reqwest::RequestBuilder| async { within(request.send()).await.unwrap() };

    let bare_options = send(
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/time")),
    )
    .await;
    let options_with_origin = send(
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/time"))
            .header("origin", "http://page.test"),
    )
    .await;
    let time_without_origin = send(app.client.get(app.url("/time"))).await;

    let cors_headers = |response: &reqwest::Response| {
        response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-") || *name == "vary")
            .map(|name| name.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(cors_headers(&bare_options), Vec::<String>::new());
    assert_eq!(cors_headers(&time_without_origin), Vec::<String>::new());
    assert_eq!(time_without_origin.status(), 200);
    assert_eq!(
        options_with_origin.headers()["access-control-allow-origin"],
        "http://page.test"
    );
    assert_error(bare_options, 404, 40400).await;
    assert_error(options_with_origin, 404, 40400).await;
}

#[tokio::test]
async fn version_headers_and_params_are_ignored() {
    let app = spawn().await;

    let response = within(
        app.client
            .get(app.url(&format!("/channels/c/messages?v=99&key={}", enc(KEY))))
            .header("x-ably-version", "6")
            .send(),
    )
    .await
    .unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_envelope() {
    let app = spawn().await;

    let missing = app.get("/nope").await;
    let wrong_method = within(app.client.delete(app.url("/time")).send())
        .await
        .unwrap();

    assert_error(missing, 404, 40400).await;
    let error = assert_error(wrong_method, 404, 40400).await;
    assert_eq!(
        error.message,
        "Not found: mock-ably does not serve DELETE /time"
    );
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_404_40400_as_ably_answers() {
    let app = spawn().await;
    let send = |request: reqwest::RequestBuilder| async { within(request.send()).await.unwrap() };

    let put_messages = send(
        app.client
            .put(app.url("/channels/c/messages"))
            .basic_auth(KEY_NAME, Some("test-secret")),
    )
    .await;
    let get_request_token = send(
        app.client
            .get(app.url(&format!("/keys/{KEY_NAME}/requestToken"))),
    )
    .await;
    let post_time = send(app.client.post(app.url("/time"))).await;

    assert_error(put_messages, 404, 40400).await;
    assert_error(get_request_token, 404, 40400).await;
    assert_error(post_time, 404, 40400).await;
}

#[tokio::test]
async fn a_path_segment_that_does_not_decode_gets_the_envelope_with_40003() {
    let app = spawn().await;
    let history = app
        .get(&format!("/channels/%FF/messages?key={}", enc(KEY)))
        .await;
    let publish = within(
        app.client
            .post(app.url("/channels/caf%C3/messages"))
            .basic_auth(KEY_NAME, Some("test-secret"))
            .json(&json!({"data": "x"}))
            .send(),
    )
    .await
    .unwrap();
    let token = app.request_token("%FE.key", &json!({})).await;

    for response in [history, publish, token] {
        let error = assert_error(response, 400, 40003).await;
        assert!(
            error.message.starts_with("Invalid path: "),
            "{}",
            error.message
        );
    }
    assert_eq!(app.mock.stats().published, 0);
}

#[tokio::test]
async fn unsupported_authorization_schemes_are_40101() {
    let app = spawn().await;

    let response = within(
        app.client
            .get(app.url("/channels/c/messages"))
            .header("authorization", "Digest abc")
            .send(),
    )
    .await
    .unwrap();

    let body: Value = assert_error(response, 401, 40101).await.message.into();
    assert!(body.as_str().unwrap().contains("Digest"));
}
