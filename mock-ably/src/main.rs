//! `mock-ably`: a local Ably (SSE, REST, fault injection) for development
//! and tests.
//!
//! Run with `cargo run -p mock-ably -- --key appId.keyId:secret`; `--help`
//! lists every flag. When it is ready it prints exactly one line to stdout,
//! `mock-ably listening on http://ADDR`; logs go to stderr (`RUST_LOG`).

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use mock_ably::{DEV_KEY, KeySpec, MockAbly};
use tracing_subscriber::EnvFilter;

/// A local, faithful stand-in for Ably's SSE and REST endpoints.
#[derive(Debug, Parser)]
#[command(name = "mock-ably", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MOCK_ABLY_BIND", default_value = "127.0.0.1:8090")]
    bind: SocketAddr,

    /// API key to accept, `appId.keyId:secret`, optionally with its
    /// capability after `=` (`app.key:secret={"chat:*":["subscribe"]}`;
    /// without one: `{"*":["*"]}`); repeat for more, or separate them with
    /// commas (commas inside the capability JSON do not separate). Without
    /// one, the fixed development key `mockApp.devKey:mock-ably-dev-secret`
    /// is used.
    #[arg(long = "key", env = "MOCK_ABLY_KEYS")]
    keys: Vec<String>,

    /// How long messages are kept for history, resume and rewind (`500ms`,
    /// `30s`, `2m`, `1h`).
    #[arg(long, env = "MOCK_ABLY_RETENTION", default_value = "2m", value_parser = duration)]
    retention: Duration,

    /// Keepalive interval: a stream gets a `:keepalive` comment (a heartbeat
    /// event with `heartbeats=true`) once it has sent nothing for this long,
    /// that is one interval after its last frame.
    #[arg(long, env = "MOCK_ABLY_KEEPALIVE", default_value = "15s", value_parser = duration)]
    keepalive: Duration,

    /// Realtime: the `maxIdleInterval` told to WebSocket clients on
    /// CONNECTED. An idle connection gets a HEARTBEAT after half of it; a
    /// client heard nothing from (not even a pong) for twice it is dropped,
    /// resumable.
    #[arg(long, env = "MOCK_ABLY_MAX_IDLE_INTERVAL", default_value = "15s", value_parser = positive_duration)]
    max_idle_interval: Duration,

    /// Realtime: how long a dropped (not closed) WebSocket connection stays
    /// resumable, told to clients as `connectionStateTtl`.
    #[arg(long, env = "MOCK_ABLY_CONNECTION_STATE_TTL", default_value = "2m", value_parser = duration)]
    connection_state_ttl: Duration,

    /// Realtime: how long the presence members of a connection lost without
    /// CLOSE stay present (unless it resumes first); a client's
    /// `remainPresentFor` parameter overrides it.
    #[arg(long, env = "MOCK_ABLY_REMAIN_PRESENT_FOR", default_value = "15s", value_parser = duration)]
    remain_present_for: Duration,

    /// Realtime: how long before a token or JWT expires its connection is
    /// sent AUTH, asking the client to renew (none when the credential has
    /// less life left than this).
    #[arg(long, env = "MOCK_ABLY_AUTH_LEAD", default_value = "30s", value_parser = duration)]
    auth_lead: Duration,

    /// How long one request may take, its body's arrival included, before it
    /// is answered 503 with code 50003. Streams are not cut.
    #[arg(long, env = "MOCK_ABLY_REQUEST_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    request_timeout: Duration,

    /// How long a connection may take to send a complete request head (from
    /// the accept, or from the first byte of a later request) before it is
    /// closed.
    #[arg(long, env = "MOCK_ABLY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    header_read_timeout: Duration,

    /// How long a keep-alive connection may sit idle between requests before
    /// it is closed. Open streams are never idle, however quiet.
    #[arg(long, env = "MOCK_ABLY_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    idle_timeout: Duration,

    /// Connections served at once (lowered to fit the open-files limit); one
    /// more is answered 503 (code 50000) and closed.
    #[arg(long, env = "MOCK_ABLY_MAX_CONNECTIONS", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// Test apps `POST /apps` may hold at once (each its own server on its
    /// own port); one more is refused with 429 (code 42910). 0 turns
    /// provisioning off.
    #[arg(long, env = "MOCK_ABLY_MAX_APPS", default_value = "100")]
    max_apps: usize,
}

/// The keys in one `--key` value or `MOCK_ABLY_KEYS`: split at commas, but
/// not at those inside a capability's JSON (within `{…}`, `[…]` or a
/// string); trimmed, empty ones dropped.
fn split_keys(text: &str) -> Vec<&str> {
    let mut keys = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0_usize, false, false, 0);
    for (at, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' if depth > 0 => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                keys.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    keys.push(&text[start..]);
    keys.into_iter()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect()
}

fn duration(text: &str) -> Result<Duration, String> {
    shared::duration::parse(text).map_err(|err| err.to_string())
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        Duration::ZERO => Err("must be more than 0".to_owned()),
        positive => Ok(positive),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dotenvy::dotenv().ok();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    serve::raise_open_files_limit();

    let mut builder = MockAbly::builder()
        .retention(args.retention)
        .keepalive(args.keepalive)
        .max_idle_interval(args.max_idle_interval)
        .connection_state_ttl(args.connection_state_ttl)
        .auth_lead(args.auth_lead)
        .remain_present_for(args.remain_present_for)
        .request_timeout(args.request_timeout)
        .header_read_timeout(args.header_read_timeout)
        .idle_timeout(args.idle_timeout)
        .max_connections(usize::try_from(args.max_connections).unwrap_or(usize::MAX))
        .max_apps(args.max_apps);
    let keys: Vec<&str> = args.keys.iter().flat_map(|k| split_keys(k)).collect();
    if keys.is_empty() {
        eprintln!("mock-ably: no --key given; accepting the development key {DEV_KEY}");
    }
    for key in keys {
        match KeySpec::parse(key) {
            Ok(spec) => builder = builder.key_spec(spec),
            Err(err) => bail!("--key: {err}"),
        }
    }
    let listener = std::net::TcpListener::bind(args.bind)
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let mock = builder.listener(listener).start().await;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "mock-ably listening on {}", mock.base_url())
        .context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);

    shutdown_signal().await?;
    tracing::info!("shutting down");
    drop(mock);
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what `docker stop` and `kill` send).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// The default and the variable of `--name`, read from the parser's
    /// definition (parsing would consult the test's own environment).
    fn default_and_env(name: &str) -> (Vec<String>, Option<String>) {
        let command = Args::command();
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(name))
            .unwrap_or_else(|| panic!("no --{name}"));
        let defaults = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let env = arg.get_env().map(|v| v.to_string_lossy().into_owned());
        (defaults, env)
    }

    #[test]
    fn the_parser_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_have_the_documented_defaults_and_variables() {
        assert_eq!(
            default_and_env("bind"),
            (
                vec!["127.0.0.1:8090".to_owned()],
                Some("MOCK_ABLY_BIND".to_owned())
            )
        );
        assert_eq!(
            default_and_env("key"),
            (Vec::new(), Some("MOCK_ABLY_KEYS".to_owned()))
        );
        assert_eq!(
            default_and_env("retention"),
            (
                vec!["2m".to_owned()],
                Some("MOCK_ABLY_RETENTION".to_owned())
            )
        );
        assert_eq!(
            default_and_env("keepalive"),
            (
                vec!["15s".to_owned()],
                Some("MOCK_ABLY_KEEPALIVE".to_owned())
            )
        );
        assert_eq!(
            default_and_env("max-idle-interval"),
            (
                vec!["15s".to_owned()],
                Some("MOCK_ABLY_MAX_IDLE_INTERVAL".to_owned())
            )
        );
        assert_eq!(
            default_and_env("connection-state-ttl"),
            (
                vec!["2m".to_owned()],
                Some("MOCK_ABLY_CONNECTION_STATE_TTL".to_owned())
            )
        );
        assert_eq!(
            default_and_env("auth-lead"),
            (
                vec!["30s".to_owned()],
                Some("MOCK_ABLY_AUTH_LEAD".to_owned())
            )
        );
        assert_eq!(
            default_and_env("request-timeout"),
            (
                vec!["10s".to_owned()],
                Some("MOCK_ABLY_REQUEST_TIMEOUT".to_owned())
            )
        );
        assert_eq!(
            default_and_env("header-read-timeout"),
            (
                vec!["10s".to_owned()],
                Some("MOCK_ABLY_HEADER_READ_TIMEOUT".to_owned())
            )
        );
        assert_eq!(
            default_and_env("idle-timeout"),
            (
                vec!["60s".to_owned()],
                Some("MOCK_ABLY_IDLE_TIMEOUT".to_owned())
            )
        );
        assert_eq!(
            default_and_env("max-connections"),
            (
                vec!["10000".to_owned()],
                Some("MOCK_ABLY_MAX_CONNECTIONS".to_owned())
            )
        );
    }

    #[test]
    fn flags_parse_into_their_values() {
        let args = Args::try_parse_from([
            "mock-ably",
            "--bind",
            "127.0.0.1:9000",
            "--key",
            "a.b:c",
            "--key",
            "d.e:f",
            "--retention",
            "500ms",
            "--keepalive",
            "1s",
            "--max-idle-interval",
            "3s",
            "--connection-state-ttl",
            "1m",
            "--header-read-timeout",
            "2s",
            "--idle-timeout",
            "30s",
            "--max-connections",
            "50",
            "--max-apps",
            "3",
        ])
        .unwrap();

        assert_eq!(args.bind, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(args.keys, ["a.b:c", "d.e:f"]);
        assert_eq!(args.retention, Duration::from_millis(500));
        assert_eq!(args.keepalive, Duration::from_secs(1));
        assert_eq!(args.max_idle_interval, Duration::from_secs(3));
        assert_eq!(args.connection_state_ttl, Duration::from_secs(60));
        assert_eq!(args.header_read_timeout, Duration::from_secs(2));
        assert_eq!(args.idle_timeout, Duration::from_secs(30));
        assert_eq!(args.max_connections, 50);
        assert_eq!(args.max_apps, 3);
    }

    #[test]
    fn key_lists_split_at_commas_outside_a_capability() {
        let keys = split_keys(
            r#" a.b:c , d.e:f={"x,y":["publish","subscribe"],"z":["*"]},g.h:i={"\"],":["history"]},,"#,
        );

        assert_eq!(
            keys,
            [
                "a.b:c",
                r#"d.e:f={"x,y":["publish","subscribe"],"z":["*"]}"#,
                r#"g.h:i={"\"],":["history"]}"#,
            ]
        );
    }

    #[test]
    fn a_connection_cap_of_zero_is_refused() {
        let err = Args::try_parse_from(["mock-ably", "--max-connections", "0"]).unwrap_err();

        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn a_duration_without_a_unit_is_refused() {
        let err = Args::try_parse_from(["mock-ably", "--keepalive", "15"]).unwrap_err();

        assert!(
            err.to_string()
                .contains(r#""15" has no unit; write e.g. 30s, 15m or 1h"#),
            "{err}"
        );
    }

    #[test]
    fn a_duration_in_days_is_read() {
        let args = Args::try_parse_from(["mock-ably", "--retention", "1d"]).unwrap();

        assert_eq!(args.retention, Duration::from_secs(86_400));
    }

    /// One row of the README's Flags table: the flag's long name, its
    /// variable and the default column.
    #[derive(Debug, PartialEq, Eq)]
    struct Row {
        long: String,
        env: String,
        default: String,
    }

    /// The rows of the table under `## Flags` in `readme`.
    fn documented_flags(readme: &str) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut in_section = false;
        for line in readme.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                in_section = heading.trim() == "Flags";
                continue;
            }
            let Some(row) = line.strip_prefix("| `--").filter(|_| in_section) else {
                continue;
            };
            let cells: Vec<&str> = row.split(" | ").collect();
            let long = cells[0]
                .split([' ', '`'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let backticked = |cell: &str| cell.split('`').nth(1).unwrap_or_default().to_owned();
            rows.push(Row {
                long,
                env: cells.get(1).map(|c| backticked(c)).unwrap_or_default(),
                default: cells
                    .get(2)
                    .map(|c| c.trim().trim_end_matches('|').trim().to_owned())
                    .unwrap_or_default(),
            });
        }
        rows
    }

    #[test]
    fn the_readme_flags_table_documents_every_flag_with_its_variable_and_default() {
        let rows = documented_flags(include_str!("../README.md"));
        let command = Args::command();
        let flags: Vec<_> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(|long| (long, arg)))
            .filter(|(long, _)| !matches!(*long, "help" | "version"))
            .collect();
        for (long, arg) in &flags {
            let row = rows
                .iter()
                .find(|row| row.long == *long)
                .unwrap_or_else(|| panic!("--{long} is not in mock-ably/README.md's Flags table"));
            let env = arg.get_env().map(|v| v.to_string_lossy().into_owned());
            assert_eq!(Some(&row.env), env.as_ref(), "--{long}: variable");
            if let Some(default) = arg.get_default_values().first() {
                let documented = format!("`{}`", default.to_string_lossy());
                assert!(
                    row.default.starts_with(&documented),
                    "--{long}: the table says {:?}, the command defaults to {documented}",
                    row.default
                );
            }
        }
        for row in &rows {
            assert!(
                flags.iter().any(|(long, _)| *long == row.long),
                "the Flags table documents --{}, which the command does not take",
                row.long
            );
        }
    }

    #[test]
    fn the_flags_table_parser_reads_only_its_section() {
        let readme = "## Other\n\n| `--no` | `X` | `1` |\n\n## Flags\n\n| flag | env | default |\n\
                      | --- | --- | --- |\n| `--bind ADDR` | `B` | `1:2` |\n\
                      | `--key KEY` (repeatable) | `K` (comma-separated) | the dev key |\n\n## Next\n";
        assert_eq!(
            documented_flags(readme),
            [
                Row {
                    long: "bind".to_owned(),
                    env: "B".to_owned(),
                    default: "`1:2`".to_owned(),
                },
                Row {
                    long: "key".to_owned(),
                    env: "K".to_owned(),
                    default: "the dev key".to_owned(),
                },
            ]
        );
    }
}
