//! A client for Ably's SSE streams that renews tokens and resumes without
//! losing or repeating a message.
//!
//! Placeholder until the sse-client issue lands.
