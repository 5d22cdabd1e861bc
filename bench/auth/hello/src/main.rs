//! A bare axum "hello" route on the same path as the auth server's JWT
//! endpoint: the HTTP ceiling of this machine for `bench/auth/run.sh`.
//!
//! Run with `cargo run --release --manifest-path bench/auth/hello/Cargo.toml`;
//! listens on `HELLO_BIND` (default `127.0.0.1:0`) and prints the address.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let bind = std::env::var("HELLO_BIND").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    println!(
        "hello listening on http://{}",
        listener.local_addr().expect("address")
    );
    let app = Router::new().route("/api/ably-jwt", get(|| async { "hello" }));
    axum::serve(listener, app).await.expect("serve");
}
