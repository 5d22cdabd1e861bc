//! The auth server: verifies the app's own users and mints Ably credentials for
//! them by policy.
//!
//! Placeholder until the auth-server issue lands; the binary only reports that.
