//! `sse-client`: subscribe to Ably channels over SSE from the command line.
//!
//! Placeholder until the sse-client issue lands. Run with `cargo run -p sse-client`.

fn main() {
    eprintln!("sse-client is not built yet; see the README for what runs today");
    std::process::exit(2);
}
