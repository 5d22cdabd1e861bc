//! Test support for the end-to-end suite: `TestEnv` will start mock-ably and
//! auth-server on port 0 once their issues land.
