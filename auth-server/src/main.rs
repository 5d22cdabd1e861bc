//! `auth-server`: mints Ably JWTs and TokenRequests for the app's users.
//!
//! Placeholder until the auth-server issue lands. Run with `cargo run -p auth-server`.

fn main() {
    eprintln!("auth-server is not built yet; see the README for what runs today");
    std::process::exit(2);
}
