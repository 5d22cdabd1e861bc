//! Fault injection: `fail_next` rules (`POST /_mock/fail-next`).
//!
//! Stream drops and credential expiry are broadcast to open streams through
//! [`crate::state::Control`]; this module holds the request-failure rules.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use shared::ErrorInfo;
use shared::error_info::status_for_code;

/// Which requests a [`FailNext`] rule fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailTarget {
    /// `GET /sse` and `GET /event-stream`.
    Stream,
    /// Every other Ably endpoint: `/time`, `/keys/…/requestToken`,
    /// `/channels/…/messages`.
    Rest,
    /// Realtime WebSocket upgrades at `/`: the error is sent in-band after
    /// the upgrade (DISCONNECTED for 40142, ERROR otherwise), then the
    /// socket closes, as a refused credential is.
    Realtime,
    /// All three (the default).
    #[default]
    Any,
}

impl FailTarget {
    fn covers(self, kind: RequestKind) -> bool {
        match self {
            FailTarget::Any => true,
            FailTarget::Stream => kind == RequestKind::Stream,
            FailTarget::Rest => kind == RequestKind::Rest,
            FailTarget::Realtime => kind == RequestKind::Realtime,
        }
    }
}

/// What kind of request arrived, for matching [`FailTarget`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// An SSE or plain event stream.
    Stream,
    /// Any other Ably endpoint.
    Rest,
    /// A realtime WebSocket upgrade.
    Realtime,
}

/// A rule that makes the next `count` requests of `target` fail with `error`,
/// answered as Ably's error envelope before any other processing (no
/// authentication, nothing stored).
///
/// Over HTTP it is the body of `POST /_mock/fail-next`:
/// `{"count":2,"statusCode":503,"code":50003,"message":"…","target":"stream"}`
/// (`target`: `stream`, `rest`, `realtime` or `any`).
/// Every field is optional: `count` defaults to 1, `target` to `any`, `code`
/// to `statusCode × 100` (or 50000), `statusCode` to the registry status of
/// `code`, `message` to a fixed text.
///
/// ```
/// use mock_ably::{FailNext, FailTarget};
/// use shared::ErrorInfo;
///
/// let rule = FailNext::new(ErrorInfo::from_code(50003, "timeout"))
///     .count(2)
///     .target(FailTarget::Stream);
/// assert_eq!(rule.error.status_code, 503);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailNext {
    /// How many requests fail.
    pub count: u32,
    /// Which requests fail.
    pub target: FailTarget,
    /// What they get.
    pub error: ErrorInfo,
}

impl FailNext {
    /// Fails the next request of any kind with `error`.
    pub fn new(error: ErrorInfo) -> Self {
        Self {
            count: 1,
            target: FailTarget::Any,
            error,
        }
    }

    /// Fails the next `count` requests instead of one.
    #[must_use]
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Fails only requests of `target`.
    #[must_use]
    pub fn target(mut self, target: FailTarget) -> Self {
        self.target = target;
        self
    }
}

/// The JSON body of `POST /_mock/fail-next`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FailNextBody {
    count: Option<u32>,
    status_code: Option<u16>,
    code: Option<u32>,
    message: Option<String>,
    target: Option<FailTarget>,
}

impl From<FailNextBody> for FailNext {
    fn from(body: FailNextBody) -> Self {
        let code = body
            .code
            .or_else(|| body.status_code.map(|status| u32::from(status) * 100))
            .unwrap_or(50000);
        let status = body.status_code.unwrap_or_else(|| status_for_code(code));
        let message = body
            .message
            .unwrap_or_else(|| "Failure injected by mock-ably".to_owned());
        FailNext {
            count: body.count.unwrap_or(1),
            target: body.target.unwrap_or_default(),
            error: ErrorInfo::new(code, status, message),
        }
    }
}

/// The pending rules, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: VecDeque<FailNext>,
}

impl Faults {
    /// Queues `rule` behind any earlier ones.
    pub(crate) fn push(&mut self, rule: FailNext) {
        if rule.count > 0 {
            self.rules.push_back(rule);
        }
    }

    /// The error for a request of `kind`, if a rule claims it; uses up one
    /// of that rule's count.
    pub(crate) fn take(&mut self, kind: RequestKind) -> Option<ErrorInfo> {
        let index = self.rules.iter().position(|r| r.target.covers(kind))?;
        let rule = &mut self.rules[index];
        let error = rule.error.clone();
        rule.count -= 1;
        if rule.count == 0 {
            self.rules.remove(index);
        }
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_defaults_fill_code_status_and_target() {
        let body: FailNextBody = serde_json::from_str(r#"{"statusCode":503}"#).unwrap();

        let rule = FailNext::from(body);

        assert_eq!(rule.count, 1);
        assert_eq!(rule.target, FailTarget::Any);
        assert_eq!((rule.error.code, rule.error.status_code), (50300, 503));
    }

    #[test]
    fn rules_are_used_up_in_order_and_by_target() {
        let mut faults = Faults::default();
        faults.push(FailNext::new(ErrorInfo::from_code(50003, "s")).target(FailTarget::Stream));
        faults.push(FailNext::new(ErrorInfo::from_code(50000, "a")).count(2));

        let rest = faults.take(RequestKind::Rest).unwrap();
        let stream = faults.take(RequestKind::Stream).unwrap();
        let stream_again = faults.take(RequestKind::Stream).unwrap();

        assert_eq!(rest.code, 50000);
        assert_eq!(stream.code, 50003);
        assert_eq!(stream_again.code, 50000);
        assert!(faults.take(RequestKind::Rest).is_none());
    }
}
