//! No secret, app JWT or issued credential ever reaches the logs, even at
//! TRACE level for every crate; and the audit line of each issued
//! credential is there when asked for, not by default.

use std::io;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;

use crate::helpers::*;

/// Log output captured in memory (for a thread-local subscriber).
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Captures every event, TRACE level and up, on this thread until the
    /// guard is dropped.
    pub(crate) fn trace(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

// A current-thread runtime: the server, the client and every task they
// spawn run on this thread, so a thread-local subscriber sees all of them.
#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_secrets_app_tokens_or_issued_credentials() {
    let capture = Capture::default();
    let _guard = capture.trace();
    let app = spawn_app(config()).await;
    let app_token = user_token("alice", &json!({}));
    let forged = {
        let (head, _) = app_token.rsplit_once('.').unwrap();
        format!("{head}.AAAA")
    };

    let jwt = within(app.get("/api/ably-jwt", Some(&app_token)).await.text())
        .await
        .unwrap();
    let token_request: Value = within(
        app.post_form("/api/ably-token-request", &app_token, &[("ttl", "60000")])
            .await
            .json(),
    )
    .await
    .unwrap();
    let refused = app.get("/api/ably-jwt", Some(&forged)).await;
    assert_eq!(refused.status(), 401);
    drop(app);

    let logs = capture.text();
    assert!(logs.contains("issued"), "the capture works:\n{logs}");
    assert!(logs.contains("alice"));
    let signature = |token: &str| token.rsplit_once('.').unwrap().1.to_owned();
    for (what, secret) in [
        ("app token", app_token.clone()),
        ("app token signature", signature(&app_token)),
        ("forged token", forged),
        ("issued JWT", jwt.clone()),
        ("issued JWT signature", signature(&jwt)),
        (
            "TokenRequest mac",
            token_request["mac"].as_str().unwrap().to_owned(),
        ),
        ("Ably key secret", "ably-key-secret-value".to_owned()),
        ("app JWT secret", APP_SECRET.to_owned()),
    ] {
        assert!(
            !logs.contains(&secret),
            "{what} leaked into the logs:\n{logs}"
        );
    }
}

/// The log lines written while `/api/ably-jwt` issues one JWT for alice
/// under the filter `directives`.
async fn logs_of_one_issue(directives: &str) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn_app(config()).await;

    let response = app
        .get("/api/ably-jwt", Some(&user_token("alice", &json!({}))))
        .await;
    assert_eq!(response.status(), 200);
    drop(app);

    capture.text()
}

#[tokio::test(flavor = "current_thread")]
async fn the_audit_line_is_off_at_the_default_level_and_on_when_asked_for() {
    let default = logs_of_one_issue("info").await;
    let audit = logs_of_one_issue("info,auth_server::audit=debug").await;

    assert!(!default.contains("issued"), "{default}");
    let lines: Vec<&str> = audit.lines().filter(|l| l.contains("issued")).collect();
    assert_eq!(lines.len(), 1, "{audit}");
    assert!(
        lines[0].ends_with(
            r#"DEBUG auth_server::audit: issued kind="jwt" client_id=alice capability={"*":["history","presence","publish","subscribe"]} ttl_ms=3600000"#
        ),
        "{}",
        lines[0]
    );
}
