//! `auth-server`: verifies the app's users and mints Ably credentials for them.
//!
//! Run with `cargo run --release -p auth-server` after setting `ABLY_API_KEY`
//! and `AUTH_APP_JWT_SECRET` or `AUTH_JWKS_URL` (see `.env.example`).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use auth_server::{AppState, Config};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A missing `.env` is fine: the environment may be set another way.
    dotenvy::dotenv().ok();
    if let Err(err) = init_tracing() {
        eprintln!("auth-server: {err:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("auth-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, naming what to fix (`{:#}` joins the context chain).
            eprintln!("auth-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::from_env().context("configuration")?;
    let bind = config.bind;
    let state = AppState::new(config).context("configuration")?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (AUTH_BIND)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Scripts wait for this exact line, whatever the log level.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "auth-server listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);
    tracing::info!(%addr, "listening");
    auth_server::serve(listener, state, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("shut down");
    Ok(())
}

/// `LOG_FORMAT=json|pretty` (default pretty), filtered by `RUST_LOG`
/// (default `info`). Logs go to stderr; stdout carries only the ready line.
fn init_tracing() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("pretty") | Err(_) => builder.init(),
        Ok(other) => anyhow::bail!("LOG_FORMAT: expected json or pretty, got {other:?}"),
    }
    Ok(())
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
