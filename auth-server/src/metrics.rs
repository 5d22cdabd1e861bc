//! Prometheus metrics, written out by hand in the text exposition format
//! (version 0.0.4): three families do not justify a metrics framework.
//!
//! - `auth_tokens_issued_total{kind}`: `jwt`, `token_request`, `token`;
//! - `auth_refusals_total{reason}`: see `ApiError::reason`;
//! - `auth_request_duration_seconds{route}`: a latency histogram;
//! - `auth_policy_reloads_total{result}`: `ok` or `error`;
//! - with a JWKS, `auth_jwks_fetches_total{result}` and `auth_jwks_keys`
//!   (rendered by the JWKS cache).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An Ably JWT (`/api/ably-jwt`).
    Jwt,
    /// A signed TokenRequest (`/api/ably-token-request`).
    TokenRequest,
    /// TokenDetails from Ably (`/api/ably-token`).
    Token,
}

impl TokenKind {
    const ALL: [TokenKind; 3] = [TokenKind::Jwt, TokenKind::TokenRequest, TokenKind::Token];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenKind::Jwt => "jwt",
            TokenKind::TokenRequest => "token_request",
            TokenKind::Token => "token",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Routes with their own histogram; everything else is `other`.
const ROUTES: [&str; 4] = [
    "/api/ably-jwt",
    "/api/ably-token-request",
    "/api/ably-token",
    "other",
];

/// Which latency histogram a request goes to: one of [`ROUTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route(usize);

impl Route {
    /// The histogram for requests to `path`.
    pub(crate) fn of(path: &str) -> Self {
        Self(
            ROUTES[..3]
                .iter()
                .position(|r| *r == path)
                .unwrap_or(ROUTES.len() - 1),
        )
    }
}

#[derive(Debug, Default)]
struct Histogram {
    /// Cumulative counts are computed at render time; these are per bucket,
    /// with one extra for `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    issued: [AtomicU64; 3],
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    latency: [Histogram; ROUTES.len()],
    /// Policy reloads: `[ok, error]`.
    policy_reloads: [AtomicU64; 2],
}

impl Metrics {
    /// Counts one issued credential.
    pub(crate) fn issued(&self, kind: TokenKind) {
        self.issued[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused request.
    pub(crate) fn refused(&self, reason: &'static str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *refusals.entry(reason).or_default() += 1;
    }

    /// Counts one policy reload, put in force (`ok`) or not.
    pub(crate) fn policy_reloaded(&self, ok: bool) {
        self.policy_reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long a request to `route` took.
    pub(crate) fn observe(&self, route: Route, elapsed: Duration) {
        let histogram = &self.latency[route.0];
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        histogram.sum_micros.fetch_add(micros, Ordering::Relaxed);
        histogram.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // `write!` to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP auth_tokens_issued_total Ably credentials issued, by kind.\n# TYPE auth_tokens_issued_total counter"
        );
        for kind in TokenKind::ALL {
            let _ = writeln!(
                out,
                "auth_tokens_issued_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                self.issued[kind as usize].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP auth_refusals_total Requests refused, by reason.\n# TYPE auth_refusals_total counter"
        );
        for (reason, count) in self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "auth_refusals_total{{reason=\"{reason}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP auth_policy_reloads_total Reloads of AUTH_POLICY_FILE, by result.\n# TYPE auth_policy_reloads_total counter\nauth_policy_reloads_total{{result=\"ok\"}} {}\nauth_policy_reloads_total{{result=\"error\"}} {}",
            self.policy_reloads[0].load(Ordering::Relaxed),
            self.policy_reloads[1].load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP auth_request_duration_seconds Request latency, by route.\n# TYPE auth_request_duration_seconds histogram"
        );
        for (route, histogram) in ROUTES.iter().zip(&self.latency) {
            let mut cumulative = 0;
            for (i, le) in BUCKETS
                .iter()
                .map(ToString::to_string)
                .chain(["+Inf".to_owned()])
                .enumerate()
            {
                cumulative += histogram.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "auth_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            #[allow(clippy::cast_precision_loss)] // micros fit an f64 exactly for centuries
            let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "auth_request_duration_seconds_sum{{route=\"{route}\"}} {sum}\nauth_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.issued(TokenKind::Jwt);
        metrics.issued(TokenKind::Jwt);
        metrics.refused("rate_limited");
        metrics.observe(Route::of("/api/ably-jwt"), Duration::from_micros(700));
        metrics.observe(Route::of("/api/ably-jwt"), Duration::from_secs(9));
        metrics.observe(Route::of("/healthz"), Duration::from_micros(1));
        metrics.policy_reloaded(true);
        metrics.policy_reloaded(false);
        metrics.policy_reloaded(false);

        let text = metrics.render();

        assert!(
            text.contains("auth_tokens_issued_total{kind=\"jwt\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("auth_tokens_issued_total{kind=\"token\"} 0\n"));
        assert!(text.contains("auth_refusals_total{reason=\"rate_limited\"} 1\n"));
        assert!(text.contains(
            "auth_request_duration_seconds_bucket{route=\"/api/ably-jwt\",le=\"0.0005\"} 0\n"
        ));
        assert!(text.contains(
            "auth_request_duration_seconds_bucket{route=\"/api/ably-jwt\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "auth_request_duration_seconds_bucket{route=\"/api/ably-jwt\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("auth_request_duration_seconds_count{route=\"/api/ably-jwt\"} 2\n"));
        assert!(
            text.contains("auth_request_duration_seconds_sum{route=\"/api/ably-jwt\"} 9.0007\n")
        );
        assert!(text.contains("auth_request_duration_seconds_count{route=\"other\"} 1\n"));
        assert!(text.contains(
            "# TYPE auth_policy_reloads_total counter\nauth_policy_reloads_total{result=\"ok\"} 1\nauth_policy_reloads_total{result=\"error\"} 2\n"
        ));
    }
}
