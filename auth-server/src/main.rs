//! `auth-server`: verifies the app's users and mints Ably credentials for them.
//!
//! Run with `cargo run --release -p auth-server` after setting `ABLY_API_KEY`
//! and `AUTH_APP_JWT_SECRET` or `AUTH_JWKS_URL` (every variable is in the
//! Configuration table of `auth-server/README.md`), or
//! with `cargo run --release -p auth-server -- --dev` to try it locally with
//! nothing set (an embedded mock Ably, a demo publisher and a demo page).

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use auth_server::{AppState, Config};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Verifies your app's users and mints Ably credentials for them.
///
/// Configured by environment variables (the Configuration table of
/// `auth-server/README.md`); with `--dev` it needs none.
#[derive(Debug, Parser)]
#[command(name = "auth-server", version, about, long_about = None)]
struct Args {
    /// Dev mode: also run a local mock Ably and a demo publisher, and serve
    /// the demo page on `/`. Loopback addresses only; needs no variables.
    #[arg(long)]
    dev: bool,

    /// Dev mode: where the embedded mock Ably listens.
    #[arg(
        long,
        value_name = "ADDR",
        requires = "dev",
        default_value = "127.0.0.1:8090"
    )]
    mock_bind: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A missing `.env` is fine: the environment may be set another way.
    dotenvy::dotenv().ok();
    if let Err(err) = init_tracing() {
        eprintln!("auth-server: {err:#}");
        return ExitCode::FAILURE;
    }
    // Each connection is a file descriptor: allow as many as the hard limit.
    serve::raise_open_files_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("auth-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, naming what to fix (`{:#}` joins the context chain).
            eprintln!("auth-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.dev {
        return run_dev(args.mock_bind).await;
    }
    let config = Config::from_env().context("configuration")?;
    let bind = config.bind;
    let state = AppState::new(config).context("configuration")?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (AUTH_BIND)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    if !state.is_ready() {
        tracing::info!(
            %addr,
            "serving /healthz; the ready line follows the first JWKS fetch"
        );
    }
    reload_on_hangup(&state);
    let serving = auth_server::serve(listener, state.clone(), shutdown_signal());
    tokio::pin!(serving);
    // Scripts wait for the ready line to send requests, so it comes only
    // once they can be served: with a JWKS, after its first fetch.
    tokio::select! {
        result = &mut serving => {
            // Stopped (a signal) before ever being ready.
            result.context("serving")?;
            tracing::info!("shut down");
            return Ok(());
        }
        () = state.ready() => {}
    }
    // Scripts wait for this exact line, whatever the log level.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "auth-server listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);
    tracing::info!(%addr, "listening");
    serving.await.context("serving")?;
    tracing::info!("shut down");
    Ok(())
}

/// `--dev`: the mock, the auth server on it, the demo publisher and page.
#[cfg(feature = "dev")]
async fn run_dev(mock_bind: SocketAddr) -> anyhow::Result<()> {
    use auth_server::dev::{self, Dev};

    let (config, ignored) = dev::config_from_env().context("configuration")?;
    for name in ignored {
        tracing::warn!(
            "dev mode ignores {name}: it uses the embedded mock Ably and its own app secret"
        );
    }
    // Refused before anything is bound: dev mode has an unauthenticated login.
    dev::check_loopback("AUTH_BIND", config.bind).context("configuration")?;
    dev::check_loopback("--mock-bind", mock_bind).context("configuration")?;
    let mock_listener = std::net::TcpListener::bind(mock_bind)
        .with_context(|| format!("cannot listen on {mock_bind} (--mock-bind)"))?;
    let bind = config.bind;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (AUTH_BIND)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let dev = Dev::start(config, mock_listener)
        .await
        .context("configuration")?;
    let banner = dev.banner(addr).context("minting the banner's app token")?;
    // The production ready line first, whatever follows: scripts wait for it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "auth-server listening on http://{addr}")
        .and_then(|()| writeln!(stdout, "mock-ably listening on {}", dev.mock_url()))
        .and_then(|()| write!(stdout, "{banner}"))
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);
    tracing::info!(%addr, mock = dev.mock_url(), "listening in dev mode");
    reload_on_hangup(dev.state());
    dev.serve(listener, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("shut down");
    Ok(())
}

#[cfg(not(feature = "dev"))]
async fn run_dev(_mock_bind: SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!(
        "--dev: this auth-server was built without the `dev` feature \
         (--no-default-features); build it with default features for dev mode"
    )
}

/// `LOG_FORMAT=json|pretty` (default pretty), filtered by `RUST_LOG`
/// (default `info`). Logs go to stderr; stdout carries only the ready line.
fn init_tracing() -> anyhow::Result<()> {
    let filter = env_var("RUST_LOG")
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match env_var("LOG_FORMAT").as_deref() {
        Some("json") => builder.json().init(),
        Some("pretty") | None => builder.init(),
        Some(other) => anyhow::bail!("LOG_FORMAT: expected json or pretty, got {other:?}"),
    }
    Ok(())
}

/// The variable's value, trimmed; unset or empty (`VAR=` in a `.env`) is
/// `None`, as for every variable `Config::from_env` reads.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// On each SIGHUP, reloads `AUTH_POLICY_FILE`
/// ([`AppState::reload_policy`], which logs and counts the result). Unix only.
fn reload_on_hangup(state: &AppState) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};

        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGHUP: no policy reloads");
                return;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the policy");
                // Logged and counted by `reload_policy`.
                let _ = state.reload_policy();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
