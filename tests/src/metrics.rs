//! [`AuthMetrics`]: the auth server's counters, read from its `/metrics`.

use std::collections::BTreeMap;

use crate::env::TokenEndpoint;

/// The auth server's counters at one moment: credentials issued by kind and
/// requests refused by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthMetrics {
    issued: BTreeMap<String, u64>,
    refusals: BTreeMap<String, u64>,
}

impl AuthMetrics {
    /// Parses the Prometheus text exposition of `/metrics`.
    ///
    /// # Panics
    ///
    /// If a counter line does not end with a whole number.
    pub fn parse(text: &str) -> Self {
        let mut metrics = Self::default();
        for line in text.lines() {
            let families = [
                ("auth_tokens_issued_total{kind=\"", &mut metrics.issued),
                ("auth_refusals_total{reason=\"", &mut metrics.refusals),
            ];
            for (prefix, map) in families {
                let Some(rest) = line.strip_prefix(prefix) else {
                    continue;
                };
                let (label, value) = rest
                    .split_once("\"} ")
                    .unwrap_or_else(|| panic!("unreadable metrics line {line:?}"));
                let value = value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("unreadable metrics line {line:?}"));
                map.insert(label.to_owned(), value);
            }
        }
        metrics
    }

    /// Credentials issued through `endpoint`.
    pub fn issued(&self, endpoint: TokenEndpoint) -> u64 {
        self.issued
            .get(endpoint.metric_kind())
            .copied()
            .unwrap_or(0)
    }

    /// Credentials issued through every endpoint.
    pub fn issued_total(&self) -> u64 {
        self.issued.values().sum()
    }

    /// Requests refused for `reason` (`invalid_credentials`,
    /// `no_credentials`, `capability_denied`, ...).
    pub fn refusals(&self, reason: &str) -> u64 {
        self.refusals.get(reason).copied().unwrap_or(0)
    }

    /// Requests refused for any reason.
    pub fn refusals_total(&self) -> u64 {
        self.refusals.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_label() {
        let text = "# HELP x\nauth_tokens_issued_total{kind=\"jwt\"} 3\n\
                    auth_tokens_issued_total{kind=\"token\"} 1\n\
                    auth_refusals_total{reason=\"invalid_credentials\"} 2\n\
                    auth_request_duration_seconds_count{route=\"/api/ably-jwt\"} 5\n";

        let metrics = AuthMetrics::parse(text);

        assert_eq!(metrics.issued(TokenEndpoint::Jwt), 3);
        assert_eq!(metrics.issued(TokenEndpoint::TokenRequest), 0);
        assert_eq!(metrics.issued_total(), 4);
        assert_eq!(metrics.refusals("invalid_credentials"), 2);
        assert_eq!(metrics.refusals_total(), 2);
    }
}
