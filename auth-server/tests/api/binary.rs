//! The `auth-server` binary: the ready line, configuration errors, a
//! graceful stop on SIGTERM, and a policy reload on SIGHUP.

use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::*;

pub(crate) fn command() -> Command {
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
async fn prints_the_ready_line_serves_and_stops_on_sigterm() {
    let mut child = command()
        .env("ABLY_API_KEY", ABLY_KEY)
        .env("AUTH_APP_JWT_SECRET", APP_SECRET)
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

    let line = within(stdout.next_line()).await.unwrap().unwrap();

    let addr = line
        .strip_prefix("auth-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let health = within(reqwest::get(format!("http://{addr}/healthz")))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let pid = child.id().unwrap().to_string();
    let killed = within(Command::new("kill").args(["-TERM", &pid]).status())
        .await
        .unwrap();
    assert!(killed.success());
    let status = within(child.wait()).await.unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
}

#[tokio::test]
async fn a_missing_variable_stops_start_up_with_one_line_naming_it() {
    let output = within(command().env("AUTH_APP_JWT_SECRET", APP_SECRET).output())
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "auth-server: configuration: ABLY_API_KEY: required but not set\n"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn a_bad_policy_file_stops_start_up_pointing_at_the_line() {
    let path = std::env::temp_dir().join(format!("auth-server-policy-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[default]\n\"chat:*\" = [\"subscribe\", \"publsh\"]\n",
    )
    .unwrap();

    let output = within(
        command()
            .env("ABLY_API_KEY", ABLY_KEY)
            .env("AUTH_APP_JWT_SECRET", APP_SECRET)
            .env("AUTH_POLICY_FILE", &path)
            .output(),
    )
    .await
    .unwrap();
    std::fs::remove_file(&path).ok();

    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "auth-server: configuration: AUTH_POLICY_FILE: {}: line 2, column 26: unknown operation \"publsh\"",
            path.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line_to_stderr() {
    let mut child = command()
        .env("ABLY_API_KEY", ABLY_KEY)
        .env("AUTH_APP_JWT_SECRET", APP_SECRET)
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    within(stdout.next_line()).await.unwrap().unwrap();

    let line = within(stderr.next_line()).await.unwrap().unwrap();

    let event: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["message"], "listening");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn empty_log_format_and_rust_log_mean_unset() {
    let mut child = command()
        .env("ABLY_API_KEY", ABLY_KEY)
        .env("AUTH_APP_JWT_SECRET", APP_SECRET)
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("LOG_FORMAT", "")
        .env("RUST_LOG", "")
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();

    let ready = within(stdout.next_line()).await.unwrap().unwrap();
    let log = within(stderr.next_line()).await.unwrap().unwrap();

    assert!(
        ready.starts_with("auth-server listening on http://"),
        "{ready}"
    );
    // The default: pretty (not JSON) at info.
    assert!(log.contains(" INFO auth_server: listening addr="), "{log}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_unknown_log_format_stops_start_up() {
    let output = within(
        command()
            .env("ABLY_API_KEY", ABLY_KEY)
            .env("AUTH_APP_JWT_SECRET", APP_SECRET)
            .env("LOG_FORMAT", "xml")
            .output(),
    )
    .await
    .unwrap();

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "auth-server: LOG_FORMAT: expected json or pretty, got \"xml\"\n"
    );
}

/// Only in `cargo test -p auth-server --no-default-features`.
#[cfg(not(feature = "dev"))]
#[tokio::test]
async fn dev_mode_says_when_the_binary_was_built_without_it() {
    let output = within(command().arg("--dev").output()).await.unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(
            "auth-server: --dev: this auth-server was built without the `dev` feature"
        ),
        "{stderr}"
    );
}

/// A real `SIGHUP` to the process: the edited policy file is in force for the
/// next credential, the reload is counted, and the server keeps serving.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_policy_file() {
    let path = std::env::temp_dir().join(format!(
        "auth-server-sighup-policy-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, "[default]\n\"chat:*\" = [\"subscribe\"]\n").unwrap();
    let mut child = command()
        .env("ABLY_API_KEY", ABLY_KEY)
        .env("AUTH_APP_JWT_SECRET", APP_SECRET)
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("AUTH_POLICY_FILE", &path)
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within(stdout.next_line()).await.unwrap().unwrap();
    let addr = line
        .strip_prefix("auth-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let client = reqwest::Client::new();
    let alice = user_token("alice", &json!({}));
    let capability = || async {
        let response = within(
            client
                .get(format!("http://{addr}/api/ably-jwt"))
                .bearer_auth(&alice)
                .send(),
        )
        .await
        .unwrap();
        verified_jwt(&within(response.text()).await.unwrap()).capability
    };
    let reloaded = || async {
        let metrics = within(
            within(client.get(format!("http://{addr}/metrics")).send())
                .await
                .unwrap()
                .text(),
        )
        .await
        .unwrap();
        metrics.contains("auth_policy_reloads_total{result=\"ok\"} 1\n")
    };
    assert_eq!(capability().await, r#"{"chat:*":["subscribe"]}"#);
    std::fs::write(&path, "[default]\n\"news:*\" = [\"history\"]\n").unwrap();

    let pid = child.id().unwrap().to_string();
    let sent = within(Command::new("kill").args(["-HUP", &pid]).status())
        .await
        .unwrap();

    assert!(sent.success());
    eventually_async("the policy reload", reloaded).await;
    assert_eq!(capability().await, r#"{"news:*":["history"]}"#);
    std::fs::remove_file(&path).unwrap();
    assert!(child.try_wait().unwrap().is_none(), "still running");
}
