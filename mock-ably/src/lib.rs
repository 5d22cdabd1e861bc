//! A local, faithful stand-in for Ably's SSE and REST endpoints.
//!
//! Placeholder until the mock-ably issue lands.
