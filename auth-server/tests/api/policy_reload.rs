//! Live policy changes: `AppState::reload_policy` (what `SIGHUP` calls) and
//! `AUTH_POLICY_RELOAD`'s polling put a new `AUTH_POLICY_FILE` in force for
//! every credential issued after, drop remembered grants, keep the old
//! policy when the file is broken, count each reload in `/metrics`, and
//! never make the server unready.

use std::path::PathBuf;
use std::time::Duration;

use auth_server::{Config, Policy, PolicyReloadError};
use serde_json::json;

use crate::helpers::*;
use crate::logs::Capture;

const CHAT: &str = "[default]\n\"chat:*\" = [\"subscribe\"]\n";
const NEWS: &str = "[default]\n\"news:*\" = [\"subscribe\", \"history\"]\n";
/// An unknown operation on line 2, in the string that starts at column 13.
const BROKEN: &str = "[default]\n\"news:*\" = [\"subscrib\"]\n";

/// A policy file of this test's own, holding `text`; removed on drop.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "auth-server-reload-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    /// A config that loaded this file, as `AUTH_POLICY_FILE` does.
    fn config(&self) -> Config {
        Config {
            policy: Policy::from_toml(&std::fs::read_to_string(&self.0).unwrap()).unwrap(),
            policy_file: Some(self.0.clone()),
            ..config()
        }
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// The capability of a JWT issued for `token` now.
async fn capability(app: &TestApp, token: &str) -> String {
    let response = app.get("/api/ably-jwt", Some(token)).await;
    assert_eq!(response.status(), 200);
    verified_jwt(&within(response.text()).await.unwrap()).capability
}

/// `auth_policy_reloads_total{result="ok"}` and `{result="error"}`.
async fn reloads(app: &TestApp) -> (u64, u64) {
    let text = within(app.get("/metrics", None).await.text())
        .await
        .unwrap();
    let count = |result: &str| {
        let series = format!("auth_policy_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series} in {text}"))
            .parse()
            .unwrap()
    };
    (count("ok"), count("error"))
}

#[tokio::test]
async fn a_reload_puts_the_new_policy_in_force_for_a_remembered_app_token() {
    let file = PolicyFile::new("in-force", CHAT);
    let (app, state) = spawn_app_with_state(file.config()).await;
    let alice = user_token("alice", &json!({}));
    // Twice: the second is the remembered token and its remembered grant.
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );
    assert_eq!(reloads(&app).await, (0, 0));
    file.write(NEWS);

    state.reload_policy().unwrap();

    assert_eq!(
        capability(&app, &alice).await,
        r#"{"news:*":["history","subscribe"]}"#
    );
    assert_eq!(
        capability(&app, &user_token("bob", &json!({}))).await,
        r#"{"news:*":["history","subscribe"]}"#
    );
    assert_eq!(reloads(&app).await, (1, 0));
}

/// A grant taken away entirely: the next request is refused, not served
/// from what was remembered.
#[tokio::test]
async fn a_reload_that_grants_a_user_nothing_refuses_their_next_request() {
    let file = PolicyFile::new("nothing", "[roles.staff]\n\"*\" = [\"*\"]\n");
    let (app, state) = spawn_app_with_state(file.config()).await;
    let staff = user_token("sam", &json!({"roles": ["staff"]}));
    assert_eq!(capability(&app, &staff).await, r#"{"*":["*"]}"#);
    file.write("[roles.admin]\n\"*\" = [\"*\"]\n");

    state.reload_policy().unwrap();
    let response = app.get("/api/ably-jwt", Some(&staff)).await;

    assert_ably_error(response, 403, 40160, "the policy grants this user nothing").await;
}

// A current-thread runtime, so the thread-local log capture sees the server.
#[tokio::test(flavor = "current_thread")]
async fn a_broken_file_keeps_the_old_policy_logs_its_line_and_column_and_stays_ready() {
    let capture = Capture::default();
    let _guard = capture.trace();
    let file = PolicyFile::new("broken", CHAT);
    let (app, state) = spawn_app_with_state(file.config()).await;
    let alice = user_token("alice", &json!({}));
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );
    file.write(BROKEN);

    let err = state.reload_policy().unwrap_err();

    assert!(
        matches!(&err, PolicyReloadError::Parse { source, .. } if source.line == 2 && source.column == 13),
        "{err:?}"
    );
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );
    assert_eq!(reloads(&app).await, (0, 1));
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let logs = capture.text();
    let line = logs
        .lines()
        .find(|line| line.contains("policy reload failed"))
        .unwrap_or_else(|| panic!("no reload error in {logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("line=2 column=13"), "{line}");
    assert!(line.contains("subscrib"), "{line}");
    // Fixed, it loads.
    file.write(NEWS);
    state.reload_policy().unwrap();
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"news:*":["history","subscribe"]}"#
    );
    assert_eq!(reloads(&app).await, (1, 1));
}

#[tokio::test]
async fn a_missing_file_keeps_the_old_policy_and_without_a_file_nothing_is_counted() {
    let file = PolicyFile::new("missing", CHAT);
    let (app, state) = spawn_app_with_state(file.config()).await;
    let (unfiled, unfiled_state) = spawn_app_with_state(config()).await;
    let alice = user_token("alice", &json!({}));
    std::fs::remove_file(&file.0).unwrap();

    let missing = state.reload_policy().unwrap_err();
    let no_file = unfiled_state.reload_policy().unwrap_err();

    assert!(
        matches!(missing, PolicyReloadError::Read { .. }),
        "{missing:?}"
    );
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );
    assert_eq!(reloads(&app).await, (0, 1));
    assert_eq!(
        no_file.to_string(),
        "AUTH_POLICY_FILE is not set: there is no policy file to reload"
    );
    assert_eq!(reloads(&unfiled).await, (0, 0));
}

#[tokio::test]
async fn with_policy_reload_a_changed_file_is_put_in_force_and_a_broken_one_reported_once() {
    let file = PolicyFile::new("polled", CHAT);
    let app = spawn_app(Config {
        policy_reload: Some(Duration::from_millis(20)),
        ..file.config()
    })
    .await;
    let alice = user_token("alice", &json!({}));
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );

    file.write(NEWS);
    eventually_async("one reload", || async { reloads(&app).await == (1, 0) }).await;
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"news:*":["history","subscribe"]}"#
    );

    file.write(BROKEN);
    eventually_async("one failed reload", || async {
        reloads(&app).await == (1, 1)
    })
    .await;
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"news:*":["history","subscribe"]}"#
    );

    // Then the file is fixed: one more good reload, and the broken
    // contents were reported once, however many polls saw them.
    file.write(CHAT);
    eventually_async("a second reload", || async { reloads(&app).await.0 == 2 }).await;
    assert_eq!(reloads(&app).await, (2, 1));
    assert_eq!(
        capability(&app, &alice).await,
        r#"{"chat:*":["subscribe"]}"#
    );
}
