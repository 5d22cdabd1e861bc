//! The smallest Ably subscriber: prints each message of one channel, with
//! tokens from an auth URL (renewed before they expire) and resumes that
//! neither lose nor repeat a message.
//!
//! ```sh
//! cargo run -p sse-client --example subscribe -- ENDPOINT AUTH_URL CHANNEL
//! ```
//!
//! When `APP_TOKEN` is set, the auth URL is called with
//! `Authorization: Bearer $APP_TOKEN`. For example, against the dev-mode
//! auth-server and its mock Ably (the root README's five-minute tour shows how
//! to get `APP_TOKEN` from `POST /dev/login`):
//!
//! ```sh
//! APP_TOKEN=eyJ... cargo run -p sse-client --example subscribe -- \
//!     http://127.0.0.1:8090 http://127.0.0.1:8080/api/ably-jwt demo
//! ```

use std::process::ExitCode;

use sse_client::{Auth, AuthUrl, Client, StateChange, SubscribeOptions, Update};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, auth_url, channel] = args.as_slice() else {
        eprintln!("usage: subscribe ENDPOINT AUTH_URL CHANNEL");
        return ExitCode::from(2);
    };
    match subscribe(endpoint, auth_url, channel).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn subscribe(endpoint: &str, auth_url: &str, channel: &str) -> sse_client::Result<()> {
    let mut auth_url = AuthUrl::new(auth_url)?;
    if let Ok(token) = std::env::var("APP_TOKEN") {
        auth_url = auth_url.header("Authorization", &format!("Bearer {token}"))?;
    }
    let client = Client::builder()
        .endpoint(endpoint)
        .auth(Auth::auth_url(auth_url))
        .build()?;
    let mut subscription = client.subscribe(SubscribeOptions::new([channel]));
    while let Some(update) = subscription.next().await {
        match update? {
            Update::Message(message) => println!("{:?}", message.payload),
            Update::State(StateChange::ContinuityLost) => {
                eprintln!("some messages may be missing");
            }
            Update::State(state) => eprintln!("{state:?}"),
            _ => {}
        }
    }
    Ok(())
}
