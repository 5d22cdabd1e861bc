//! Token revocation (RSA17; Ably's "Token revocation" docs): which tokens
//! and JWTs a key's `revokeTokens` calls have cut off, and from when.
//!
//! A revocation names a target (`clientId:…`, or `revocationKey:…` matching
//! a JWT's `x-ably-revocation-key` claim), an `issuedBefore` time and the
//! time it applies from (at once, or 30 s later with `allowReauthMargin`,
//! so clients can fetch a new token first). From then on, a credential of
//! that key matching the target and issued before `issuedBefore` is refused
//! with 40141, wherever it is presented: a REST request, a new stream or
//! connection, and the streams and connections already open with it.
//!
//! Only keys with revocable tokens take part: every key given to the mock
//! with `--key` or the builder, and the dev key.
//!
//! Memory is bounded: at most [`MAX_REVOCATIONS`] are kept; one whose
//! `issuedBefore` is more than 24 h old (Ably's longest token life) can
//! match nothing still valid and is forgotten first.

use std::collections::HashMap;
use std::time::Duration;

use shared::codes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

/// At most this many revocations are kept.
pub(crate) const MAX_REVOCATIONS: usize = 100_000;

/// At most this many targets in one request.
pub(crate) const MAX_TARGETS: usize = 100;

/// How long `allowReauthMargin` delays enforcement (Ably: 30 s).
pub(crate) const REAUTH_MARGIN: Duration = Duration::from_secs(30);

/// The longest a target value may be.
const MAX_TARGET_LEN: usize = 1024;

/// Ably's longest token life: a revocation whose `issuedBefore` is older
/// can match nothing still valid.
const LONGEST_TOKEN_MS: u64 = 24 * 60 * 60 * 1000;

/// What a revocation names (TRT2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// Tokens and JWTs with this clientId.
    ClientId(String),
    /// JWTs whose `x-ably-revocation-key` is this.
    RevocationKey(String),
}

impl Target {
    /// Reads `type:value` (`clientId` or `revocationKey`).
    ///
    /// # Errors
    ///
    /// 40000 for another type, an empty or overlong value, or a control
    /// character.
    pub(crate) fn parse(text: &str) -> ApiResult<Self> {
        let invalid = |why: &str| {
            ApiError::new(
                codes::BAD_REQUEST,
                format!("Invalid revocation target {text:?}: {why}"),
            )
        };
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| invalid("expected type:value"))?;
        if value.is_empty() || value.len() > MAX_TARGET_LEN {
            return Err(invalid("the value must be 1 to 1024 bytes"));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid("the value holds a control character"));
        }
        match kind {
            "clientId" => Ok(Self::ClientId(value.to_owned())),
            "revocationKey" => Ok(Self::RevocationKey(value.to_owned())),
            _ => Err(invalid("the type must be clientId or revocationKey")),
        }
    }
}

/// One revocation of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Revocation {
    /// Credentials issued before this (ms) are revoked.
    pub(crate) issued_before_ms: u64,
    /// From when (ms, mock clock).
    pub(crate) applies_at_ms: u64,
}

/// Where a credential stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not revoked.
    Valid,
    /// Revoked from a later time: the client should renew now.
    Pending,
    /// Revoked: refuse it with 40141.
    Revoked,
}

/// Every revocation made, by key and target.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    by_target: HashMap<(String, Target), Vec<Revocation>>,
    count: usize,
}

impl Revocations {
    /// Records a revocation of `target` for `key_name`.
    ///
    /// # Errors
    ///
    /// 42910 when [`MAX_REVOCATIONS`] are kept and none can be forgotten.
    pub(crate) fn add(
        &mut self,
        key_name: &str,
        target: Target,
        revocation: Revocation,
        now_ms: u64,
    ) -> ApiResult<()> {
        if self.count >= MAX_REVOCATIONS {
            self.prune(now_ms);
        }
        if self.count >= MAX_REVOCATIONS {
            return Err(ApiError::new(
                codes::RATE_LIMIT,
                format!("At most {MAX_REVOCATIONS} token revocations are kept"),
            ));
        }
        self.by_target
            .entry((key_name.to_owned(), target))
            .or_default()
            .push(revocation);
        self.count += 1;
        Ok(())
    }

    /// Where `principal` stands now. A key, or a credential of a key
    /// without revocable tokens, is always valid.
    pub(crate) fn status(&self, principal: &Principal, now_ms: u64) -> Status {
        let Some(issue) = &principal.revocable else {
            return Status::Valid;
        };
        if self.by_target.is_empty() {
            return Status::Valid;
        }
        let targets = [
            principal.client_id.clone().map(Target::ClientId),
            issue.revocation_key.clone().map(Target::RevocationKey),
        ];
        let mut status = Status::Valid;
        for target in targets.into_iter().flatten() {
            let Some(list) = self.by_target.get(&(principal.key_name.clone(), target)) else {
                continue;
            };
            for revocation in list {
                if issue.issued_ms >= revocation.issued_before_ms {
                    continue;
                }
                if now_ms >= revocation.applies_at_ms {
                    return Status::Revoked;
                }
                status = Status::Pending;
            }
        }
        status
    }

    /// Forgets revocations that can match nothing still valid.
    fn prune(&mut self, now_ms: u64) {
        let oldest_valid = now_ms.saturating_sub(LONGEST_TOKEN_MS);
        let mut count = 0;
        self.by_target.retain(|_, list| {
            list.retain(|r| r.issued_before_ms > oldest_valid);
            count += list.len();
            !list.is_empty()
        });
        self.count = count;
    }
}

#[cfg(test)]
mod tests {
    use shared::capability::Capability;

    use super::*;
    use crate::auth::{CredentialKind, Issue};

    fn principal(
        client_id: Option<&str>,
        revocation_key: Option<&str>,
        issued_ms: u64,
    ) -> Principal {
        Principal {
            kind: CredentialKind::Jwt,
            key_name: "app.key".to_owned(),
            capability: Capability::all(),
            client_id: client_id.map(str::to_owned),
            expires_ms: Some(u64::MAX),
            revocable: Some(Issue {
                issued_ms,
                revocation_key: revocation_key.map(str::to_owned),
            }),
        }
    }

    #[test]
    fn targets_read_as_ably_writes_them() {
        assert_eq!(
            Target::parse("clientId:alice").unwrap(),
            Target::ClientId("alice".to_owned())
        );
        assert_eq!(
            Target::parse("revocationKey:tenant:1").unwrap(),
            Target::RevocationKey("tenant:1".to_owned())
        );
        for bad in ["invalidType:abc", "clientId:", "clientId", "clientId:a\nb"] {
            assert_eq!(Target::parse(bad).unwrap_err().0.code, 40000, "{bad:?}");
        }
    }

    #[test]
    fn a_revocation_matches_its_key_target_and_issue_time_from_when_it_applies() {
        let mut revocations = Revocations::default();
        let revocation = Revocation {
            issued_before_ms: 1_000,
            applies_at_ms: 5_000,
        };
        revocations
            .add("app.key", Target::ClientId("alice".into()), revocation, 0)
            .unwrap();
        revocations
            .add("app.key", Target::RevocationKey("s1".into()), revocation, 0)
            .unwrap();

        let alice = principal(Some("alice"), None, 999);
        assert_eq!(revocations.status(&alice, 4_999), Status::Pending);
        assert_eq!(revocations.status(&alice, 5_000), Status::Revoked);
        let later = principal(Some("alice"), None, 1_000);
        assert_eq!(revocations.status(&later, 9_000), Status::Valid);
        let session = principal(Some("bob"), Some("s1"), 10);
        assert_eq!(revocations.status(&session, 9_000), Status::Revoked);
        let bob = principal(Some("bob"), Some("s2"), 10);
        assert_eq!(revocations.status(&bob, 9_000), Status::Valid);
        let mut other_key = principal(Some("alice"), None, 10);
        other_key.key_name = "app.other".to_owned();
        assert_eq!(revocations.status(&other_key, 9_000), Status::Valid);
        let mut not_revocable = principal(Some("alice"), None, 10);
        not_revocable.revocable = None;
        assert_eq!(revocations.status(&not_revocable, 9_000), Status::Valid);
    }

    #[test]
    fn revocations_are_bounded_and_old_ones_forgotten_first() {
        let mut revocations = Revocations::default();
        for i in 0..MAX_REVOCATIONS {
            let revocation = Revocation {
                issued_before_ms: i as u64 + 1,
                applies_at_ms: 0,
            };
            revocations
                .add("k", Target::ClientId(format!("c{i}")), revocation, 0)
                .unwrap();
        }
        let fresh = Revocation {
            issued_before_ms: LONGEST_TOKEN_MS,
            applies_at_ms: 0,
        };
        let full = revocations.add("k", Target::ClientId("x".into()), fresh, 0);
        assert_eq!(full.unwrap_err().0.code, 42910);
        // A day later, every earlier revocation can be forgotten.
        revocations
            .add(
                "k",
                Target::ClientId("x".into()),
                fresh,
                LONGEST_TOKEN_MS + MAX_REVOCATIONS as u64 + 1,
            )
            .unwrap();
        assert_eq!(revocations.count, 1);
    }
}
