//! `mock-ably`: a local Ably for development and tests.
//!
//! Placeholder until the mock-ably issue lands. Run with `cargo run -p mock-ably`.

fn main() {
    eprintln!("mock-ably is not built yet; see the README for what runs today");
    std::process::exit(2);
}
