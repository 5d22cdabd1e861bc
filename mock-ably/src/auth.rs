//! Credentials: where they are found, how they are verified, and the tokens
//! and nonces the mock remembers (`docs/protocol.md#credentials-on-the-stream`,
//! `docs/protocol.md#jwt-rejections`,
//! `docs/protocol.md#exchanging-a-tokenrequest`,
//! `docs/protocol.md#clientid-rules`).
//!
//! Mock policy, where Ably's behaviour is unknown or does not fit a local
//! server:
//!
//! - Basic auth is accepted over plain HTTP
//!   (`docs/protocol.md#credentials-on-the-stream` allows a loopback mock this;
//!   40103 is never sent).
//! - A Bearer value is tried raw, then base64-decoded
//!   (`docs/protocol.md#credentials-on-the-stream`): ably-js base64-encodes
//!   every token, JWTs included.
//! - `accessToken`, and ably-js's realtime name `access_token`, are both
//!   accepted as query parameters (`docs/protocol.md#stream-parameters`,
//!   \[U\]).
//! - JWTs are verified with no clock leeway: a JWT is rejected from the
//!   second its `exp` names.
//! - There is no token revocation (the 40141 row of
//!   `docs/protocol.md#jwt-rejections`): a JWT's `x-ably-revocation-key` is checked for shape (a non-empty
//!   string) and otherwise ignored, no endpoint revokes tokens, and 40141 is
//!   never sent. To end credentials early, tests use `expire_credentials`,
//!   which answers 40142 as expiry does.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use shared::capability::Operation;
use shared::jwt::verify_jwt;
use shared::token::TokenDetails;
use shared::{Capability, ErrorInfo, codes};
use subtle::ConstantTimeEq as _;

use crate::error::{ApiError, ApiResult};
use crate::params::Query;
use crate::revocation::Status;
use crate::state::{Inner, KeyEntry, lock, random_id};

/// Above this many remembered tokens, expired ones are forgotten.
const PRUNE_AT: usize = 100_000;

/// A credential as presented, before verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// An API key: `Authorization: Basic` or the `key` parameter.
    Basic {
        /// `appId.keyId`.
        key_name: String,
        /// The secret.
        secret: String,
    },
    /// An Ably token or JWT, raw or base64: `Authorization: Bearer`,
    /// `accessToken` or `access_token`.
    Token(String),
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialKind {
    /// An API key.
    Key,
    /// An opaque token from `requestToken`.
    Token,
    /// An Ably JWT.
    Jwt,
}

/// Who a verified request acts as, and what it may do.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) kind: CredentialKind,
    /// The key that signed or issued the credential.
    pub(crate) key_name: String,
    /// What the credential allows: a token's or JWT's capability intersected
    /// with its key's.
    pub(crate) capability: Capability,
    /// The credential's clientId: `None` anonymous (or a key), `"*"` wildcard.
    pub(crate) client_id: Option<String>,
    /// When a token or JWT expires, in ms; `None` for a key.
    pub(crate) expires_ms: Option<u64>,
    /// What revocation matches on, for a token or JWT of a key with
    /// revocable tokens; `None` otherwise.
    pub(crate) revocable: Option<Issue>,
}

/// When a token or JWT was issued, and its revocation key: what
/// `revokeTokens` matches besides the clientId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    /// When it was issued (ms): a JWT's `iat` is whole seconds.
    pub(crate) issued_ms: u64,
    /// A JWT's `x-ably-revocation-key`.
    pub(crate) revocation_key: Option<String>,
}

impl Principal {
    /// Fails with 40160 unless the capability grants `operation` on `channel`.
    pub(crate) fn require(&self, operation: Operation, channel: &str) -> ApiResult<()> {
        if self.capability.allows(operation, channel) {
            Ok(())
        } else {
            Err(ApiError::new(
                codes::OPERATION_NOT_PERMITTED,
                format!(
                    "Channel denied access based on given capability; channel = {channel}, operation = {operation}"
                ),
            ))
        }
    }

    /// The clientId a request acts as, given the one it declared
    /// (`X-Ably-ClientId` on REST, `clientId` on a stream)
    /// (`docs/protocol.md#clientid-rules`).
    ///
    /// # Errors
    ///
    /// 40012 for an empty clientId; 40102 when the declared clientId is not
    /// the credential's (an anonymous token declares none).
    pub(crate) fn identify(&self, declared: Option<&str>) -> ApiResult<Option<String>> {
        match declared {
            Some("") => Err(empty_client_id()),
            None => Ok(self.client_id.clone().filter(|id| id != "*")),
            Some(declared) => match (self.kind, self.client_id.as_deref()) {
                (CredentialKind::Key, _) | (_, Some("*")) => Ok(Some(declared.to_owned())),
                (_, Some(own)) if own == declared => Ok(Some(declared.to_owned())),
                (_, own) => Err(incompatible(declared, own)),
            },
        }
    }

    /// The clientId a published message is stored with: the one it claims,
    /// or the request's identity. A message may only claim another clientId
    /// when the request has no identity and authenticated with a key or a
    /// wildcard token.
    ///
    /// # Errors
    ///
    /// 40012 for an empty clientId, 40102 for one the credential does not
    /// allow.
    pub(crate) fn message_client_id(
        &self,
        identity: Option<&str>,
        claimed: Option<String>,
    ) -> ApiResult<Option<String>> {
        match (claimed, identity) {
            (Some(claimed), _) if claimed.is_empty() => Err(empty_client_id()),
            (None, identity) => Ok(identity.map(str::to_owned)),
            (Some(claimed), Some(identity)) if claimed == identity => Ok(Some(claimed)),
            (Some(claimed), None)
                if self.kind == CredentialKind::Key || self.client_id.as_deref() == Some("*") =>
            {
                Ok(Some(claimed))
            }
            (Some(claimed), identity) => Err(incompatible(&claimed, identity)),
        }
    }
}

fn empty_client_id() -> ApiError {
    ApiError::new(
        codes::INVALID_CLIENT_ID,
        "clientId can't be an empty string",
    )
}

fn incompatible(claimed: &str, own: Option<&str>) -> ApiError {
    let own = own.map_or_else(|| "none (anonymous)".to_owned(), |own| format!("{own:?}"));
    ApiError::new(
        codes::INCOMPATIBLE_CREDENTIALS,
        format!("Mismatched clientId {claimed:?}; the credentials' clientId is {own}"),
    )
}

/// Finds the credential in a request: the `Authorization` header first, then
/// the `key`, `accessToken` and `access_token` parameters. `None` if there is
/// none.
///
/// # Errors
///
/// 40005 for a Basic value that is not base64 of `name:secret` or a `key`
/// parameter without a `:`; 40101 for another scheme.
pub(crate) fn find_credential(headers: &HeaderMap, query: &Query) -> ApiResult<Option<Credential>> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            ApiError::new(
                codes::INVALID_CREDENTIAL_FORMAT,
                "Invalid Authorization header",
            )
        })?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        return if scheme.eq_ignore_ascii_case("basic") {
            let decoded = decode_base64(rest)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    invalid_key("Authorization header is not base64 of keyName:secret")
                })?;
            basic(&decoded).map(Some)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Some(Credential::Token(rest.to_owned())))
        } else {
            Err(ApiError::new(
                codes::INVALID_CREDENTIALS,
                format!("Unsupported authorization scheme {scheme:?}"),
            ))
        };
    }
    if let Some(key) = query.get("key") {
        return basic(key).map(Some);
    }
    Ok(query
        .get("accessToken")
        .or_else(|| query.get("access_token"))
        .map(|token| Credential::Token(token.to_owned())))
}

fn basic(text: &str) -> ApiResult<Credential> {
    let (key_name, secret) = text
        .split_once(':')
        .ok_or_else(|| invalid_key("expected keyName:secret"))?;
    Ok(Credential::Basic {
        key_name: key_name.to_owned(),
        secret: secret.to_owned(),
    })
}

fn invalid_key(why: &str) -> ApiError {
    ApiError::new(
        codes::INVALID_CREDENTIAL_FORMAT,
        format!("Invalid key in request: {why}"),
    )
}

/// Base64 in any of the four common forms (padded or not, standard or URL
/// alphabet).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// 40101 for a request with no credential at all.
pub(crate) fn no_credentials() -> ApiError {
    ApiError::new(
        codes::INVALID_CREDENTIALS,
        "Unable to find any credentials: send Authorization, key or accessToken",
    )
}

/// Looks up the key named `key_name` (`docs/protocol.md#jwt-rejections`: 40400,
/// with 404 when even the app is unknown and 401 when only the key is).
pub(crate) fn find_key<'a>(keys: &'a [KeyEntry], key_name: &str) -> ApiResult<&'a KeyEntry> {
    if let Some(entry) = keys.iter().find(|e| e.key.key_name() == key_name) {
        return Ok(entry);
    }
    let app_id = key_name.split_once('.').map_or(key_name, |(app, _)| app);
    let status = if keys.iter().any(|e| e.key.app_id() == app_id) {
        401
    } else {
        404
    };
    Err(ApiError(ErrorInfo::new(
        codes::NOT_FOUND,
        status,
        format!("Key {key_name} not found"),
    )))
}

/// An opaque token the mock issued.
#[derive(Debug, Clone)]
struct IssuedToken {
    key_name: String,
    capability: Capability,
    client_id: Option<String>,
    issued_ms: u64,
    expires_ms: u64,
    /// Whether its key has revocable tokens.
    revocable: bool,
}

/// Tokens issued, JWTs seen, nonces used.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    tokens: HashMap<String, IssuedToken>,
    /// `(keyName, nonce)` → when the entry may be forgotten (ms).
    nonces: HashMap<(String, String), u64>,
    /// JWTs accepted so far → their `exp` in ms.
    seen_jwts: HashMap<String, u64>,
    /// JWTs expired by `expire_credentials` → their `exp` in ms.
    expired_jwts: HashMap<String, u64>,
}

impl AuthState {
    /// Expires every issued token and every JWT accepted so far.
    pub(crate) fn expire_all(&mut self, now_ms: u64) {
        for token in self.tokens.values_mut() {
            token.expires_ms = token.expires_ms.min(now_ms);
        }
        self.expired_jwts.extend(self.seen_jwts.drain());
    }

    /// Records a TokenRequest nonce; 40105 if `key_name` used it before.
    pub(crate) fn use_nonce(
        &mut self,
        key_name: &str,
        nonce: &str,
        forget_at_ms: u64,
        now_ms: u64,
    ) -> ApiResult<()> {
        if self.nonces.len() >= PRUNE_AT {
            self.nonces.retain(|_, forget_at| *forget_at > now_ms);
        }
        let entry = (key_name.to_owned(), nonce.to_owned());
        if self.nonces.contains_key(&entry) {
            return Err(ApiError::new(codes::NONCE_REPLAYED, "Nonce value replayed"));
        }
        self.nonces.insert(entry, forget_at_ms);
        Ok(())
    }

    fn remember_token(&mut self, token: String, issued: IssuedToken, now_ms: u64) {
        if self.tokens.len() >= PRUNE_AT {
            self.tokens.retain(|_, t| t.expires_ms > now_ms);
        }
        self.tokens.insert(token, issued);
    }

    fn remember_jwt(&mut self, jwt: &str, exp_ms: u64, now_ms: u64) {
        if self.seen_jwts.len() >= PRUNE_AT {
            self.seen_jwts.retain(|_, exp| *exp > now_ms);
            self.expired_jwts.retain(|_, exp| *exp > now_ms);
        }
        self.seen_jwts.insert(jwt.to_owned(), exp_ms);
    }
}

/// Issues an opaque token `<appId>.<random>` for the key `key_name`,
/// remembered with its capability, clientId and expiry.
pub(crate) fn issue_token(
    inner: &Inner,
    key: &KeyEntry,
    capability: Capability,
    client_id: Option<String>,
    ttl_ms: u64,
) -> TokenDetails {
    let now = inner.clock.now_ms();
    let token = format!("{}.{}", key.key.app_id(), random_id(24));
    let expires_ms = now.saturating_add(ttl_ms);
    let capability_text = capability.to_canonical_string();
    lock(&inner.auth).remember_token(
        token.clone(),
        IssuedToken {
            key_name: key.key.key_name().to_owned(),
            capability,
            client_id: client_id.clone(),
            issued_ms: now,
            expires_ms,
            revocable: key.revocable,
        },
        now,
    );
    TokenDetails {
        token,
        key_name: Some(key.key.key_name().to_owned()),
        issued: now,
        expires: expires_ms,
        capability: Some(capability_text),
        client_id,
    }
}

/// Whether a presented key secret is the key's, in time that does not
/// depend on where they differ: `!=` stops at the first differing byte, so
/// how long a refusal took would tell an attacker how much of a guess was
/// right. (Only the length can show, and key secrets are all of one length.)
fn secrets_equal(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Verifies `credential` now.
///
/// # Errors
///
/// The Ably error of the first failed check: for a key, 40400 (unknown key)
/// or 40101 (wrong secret); for a token, 40005 (not a token at all), 40142
/// (expired, or expired by `expire_credentials`), 40143 (unknown token), or
/// any JWT rejection of `docs/protocol.md#jwt-rejections`; 40160 when a JWT's
/// capability shares nothing with its key's.
pub(crate) fn verify(inner: &Inner, credential: &Credential) -> ApiResult<Principal> {
    let keys = &inner.settings.keys;
    match credential {
        Credential::Basic { key_name, secret } => {
            let entry = find_key(keys, key_name)?;
            if !secrets_equal(
                secrecy::ExposeSecret::expose_secret(entry.key.secret()),
                secret,
            ) {
                return Err(ApiError::new(
                    codes::INVALID_CREDENTIALS,
                    "Invalid credentials",
                ));
            }
            Ok(Principal {
                kind: CredentialKind::Key,
                key_name: key_name.clone(),
                capability: entry.capability.clone(),
                client_id: None,
                expires_ms: None,
                revocable: None,
            })
        }
        Credential::Token(raw) => {
            // `docs/protocol.md#credentials-on-the-stream`: try the raw value,
            // then its base64 decoding. Both an Ably token and a JWT contain
            // `.`, which base64 never does.
            if raw.contains('.') {
                verify_token(inner, raw)
            } else if let Some(decoded) = decode_base64(raw)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|text| text.contains('.'))
            {
                verify_token(inner, &decoded)
            } else {
                Err(ApiError::new(
                    codes::INVALID_CREDENTIAL_FORMAT,
                    "Invalid accessToken in request: not an Ably token or JWT",
                ))
            }
        }
    }
}

fn token_expired() -> ApiError {
    ApiError::new(codes::TOKEN_EXPIRED, "Token expired")
}

fn verify_token(inner: &Inner, token: &str) -> ApiResult<Principal> {
    let now = inner.clock.now_ms();
    if token.split('.').count() == 3 {
        if lock(&inner.auth).expired_jwts.contains_key(token) {
            return Err(token_expired());
        }
        return verify_ably_jwt(inner, token, now);
    }
    let issued = lock(&inner.auth)
        .tokens
        .get(token)
        .cloned()
        .ok_or_else(|| ApiError::new(codes::TOKEN_UNRECOGNISED, "Token unrecognised"))?;
    if now >= issued.expires_ms {
        return Err(token_expired());
    }
    let principal = Principal {
        kind: CredentialKind::Token,
        key_name: issued.key_name,
        capability: issued.capability,
        client_id: issued.client_id,
        expires_ms: Some(issued.expires_ms),
        revocable: issued.revocable.then_some(Issue {
            issued_ms: issued.issued_ms,
            revocation_key: None,
        }),
    };
    check_revocation(inner, principal, now)
}

/// Refuses `principal` with 40141 when a revocation applies to it now.
fn check_revocation(inner: &Inner, principal: Principal, now_ms: u64) -> ApiResult<Principal> {
    match lock(&inner.revocations).status(&principal, now_ms) {
        Status::Revoked => Err(ApiError::new(codes::TOKEN_REVOKED, "Token revoked")),
        Status::Valid | Status::Pending => Ok(principal),
    }
}

fn verify_ably_jwt(inner: &Inner, token: &str, now_ms: u64) -> ApiResult<Principal> {
    let keys = &inner.settings.keys;
    let verified = verify_jwt(token, keys.iter().map(|e| &e.key), now_ms / 1000, 0)?;
    let entry = find_key(keys, verified.key.key_name())?;
    let claims = verified.claims;
    let requested = Capability::parse(&claims.capability).map_err(|err| {
        ApiError::new(
            codes::INVALID_JWT,
            format!("Invalid token; x-ably-capability: {err}"),
        )
    })?;
    let capability = requested.intersect(&entry.capability)?;
    let exp_ms = claims.exp.saturating_mul(1000);
    lock(&inner.auth).remember_jwt(token, exp_ms, now_ms);
    let principal = Principal {
        kind: CredentialKind::Jwt,
        key_name: entry.key.key_name().to_owned(),
        capability,
        client_id: claims.client_id,
        expires_ms: Some(exp_ms),
        revocable: entry.revocable.then_some(Issue {
            issued_ms: claims.iat.saturating_mul(1000),
            revocation_key: claims.revocation_key,
        }),
    };
    check_revocation(inner, principal, now_ms)
}

/// Finds and verifies the request's credential.
///
/// # Errors
///
/// 40101 when there is none, otherwise those of [`find_credential`] and
/// [`verify`].
pub(crate) fn authenticate(
    inner: &Inner,
    headers: &HeaderMap,
    query: &Query,
) -> ApiResult<Principal> {
    let credential = find_credential(headers, query)?.ok_or_else(no_credentials)?;
    verify(inner, &credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(kind: CredentialKind, client_id: Option<&str>) -> Principal {
        Principal {
            kind,
            key_name: "app.key".into(),
            capability: Capability::all(),
            client_id: client_id.map(str::to_owned),
            expires_ms: None,
            revocable: None,
        }
    }

    #[test]
    fn identify_follows_the_client_id_rules() {
        let key = principal(CredentialKind::Key, None);
        let anonymous = principal(CredentialKind::Token, None);
        let wildcard = principal(CredentialKind::Jwt, Some("*"));
        let alice = principal(CredentialKind::Jwt, Some("alice"));

        assert_eq!(key.identify(Some("bob")).unwrap().as_deref(), Some("bob"));
        assert_eq!(wildcard.identify(None).unwrap(), None);
        assert_eq!(
            wildcard.identify(Some("bob")).unwrap().as_deref(),
            Some("bob")
        );
        assert_eq!(alice.identify(None).unwrap().as_deref(), Some("alice"));
        assert_eq!(
            alice.identify(Some("alice")).unwrap().as_deref(),
            Some("alice")
        );
        assert_eq!(alice.identify(Some("bob")).unwrap_err().0.code, 40102);
        assert_eq!(anonymous.identify(Some("bob")).unwrap_err().0.code, 40102);
        assert_eq!(key.identify(Some("")).unwrap_err().0.code, 40012);
    }

    #[test]
    fn messages_may_claim_a_client_id_only_when_allowed() {
        let key = principal(CredentialKind::Key, None);
        let anonymous = principal(CredentialKind::Token, None);
        let alice = principal(CredentialKind::Jwt, Some("alice"));

        assert_eq!(
            key.message_client_id(None, Some("x".into()))
                .unwrap()
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            alice
                .message_client_id(Some("alice"), None)
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        assert_eq!(
            alice
                .message_client_id(Some("alice"), Some("x".into()))
                .unwrap_err()
                .0
                .code,
            40102
        );
        assert_eq!(
            anonymous
                .message_client_id(None, Some("x".into()))
                .unwrap_err()
                .0
                .code,
            40102
        );
        assert_eq!(
            key.message_client_id(None, Some(String::new()))
                .unwrap_err()
                .0
                .code,
            40012
        );
    }

    #[test]
    fn a_key_secret_cannot_be_guessed_byte_by_byte_from_the_comparison_time() {
        // A long secret makes an early exit measurable: a guess wrong in its
        // first byte against one wrong only in its last.
        let secret = "s".repeat(1 << 20);
        let wrong_first = format!("x{}", &secret[1..]);
        let wrong_last = format!("{}x", &secret[..secret.len() - 1]);
        let time = |guess: &str| {
            let started = std::time::Instant::now();
            assert!(!secrets_equal(&secret, std::hint::black_box(guess)));
            started.elapsed()
        };
        let (mut first, mut last) = (std::time::Duration::MAX, std::time::Duration::MAX);
        for _ in 0..7 {
            first = first.min(time(&wrong_first));
            last = last.min(time(&wrong_last));
        }

        assert!(secrets_equal(&secret, &secret.clone()));
        assert!(!secrets_equal(&secret, "s"));
        // An early-exit comparison is thousands of times faster on the
        // first; a constant-time one takes about as long for both.
        assert!(
            first * 2 >= last,
            "wrong first byte {first:?}, wrong last byte {last:?}"
        );
    }

    #[test]
    fn basic_header_and_key_param_are_found() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Basic YXBwLmtleTpzZWNyZXQ=".parse().unwrap(),
        );

        let from_header = find_credential(&headers, &Query::default()).unwrap();
        let from_param = find_credential(
            &HeaderMap::new(),
            &Query::parse(Some("key=app.key%3Asecret")),
        )
        .unwrap();

        let expected = Credential::Basic {
            key_name: "app.key".into(),
            secret: "secret".into(),
        };
        assert_eq!(from_header.as_ref(), Some(&expected));
        assert_eq!(from_param.as_ref(), Some(&expected));
    }
}
