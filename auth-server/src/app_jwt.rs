//! Verifying the app's own login token (the "app JWT") and reading the user
//! from it.
//!
//! The algorithm is pinned by configuration, never taken from the token: a
//! token whose header names an algorithm outside `AUTH_JWT_ALGORITHMS` is
//! refused before any key is looked at, `alg: none` cannot even be decoded,
//! and a shared secret is only ever used for HMAC algorithms while JWKS keys
//! are only ever used for public-key ones (checked at start-up, see
//! [`crate::config`]), so an HS256 token "signed" with a public key never
//! verifies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use shared::token::ClientId;

use crate::config::{AppJwtRules, ConfigError};
use crate::error::ApiError;
use crate::jwks::{JwkKey, JwksCache};
use crate::policy::Allowed;

/// Who the caller is, as their app JWT says.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The Ably clientId: the claim named by `AUTH_CLIENT_ID_CLAIM`, free of
    /// control characters ([`ClientId`]).
    pub(crate) client_id: ClientId,
    /// The roles: the claim named by `AUTH_ROLES_CLAIM`.
    pub(crate) roles: Vec<String>,
    /// The app token's `exp`, in seconds since the Unix epoch: no credential
    /// minted for this identity outlives it (`AUTH_TTL_WITHIN_APP_TOKEN`).
    pub(crate) exp: u64,
    /// The clientId as a JSON string literal, for the JWT claim.
    pub(crate) client_id_json: String,
    /// The claim named by `AUTH_REVOCATION_KEY_CLAIM`, if configured and
    /// present: minted Ably JWTs carry it as `x-ably-revocation-key`.
    pub(crate) revocation_key: Option<RevocationKey>,
    /// What the policy and the key allow this user, worked out on first
    /// use ([`Allowed::for_user`]) under the policy generation it carries.
    /// The key does not change while the server runs; the policy may be
    /// reloaded, and a grant from an older generation is not used
    /// ([`crate::live_policy`]).
    pub(crate) allowed: OnceLock<GrantFor>,
}

/// A user's grant under one policy generation.
#[derive(Debug)]
pub(crate) struct GrantFor {
    /// The generation of the policy it was worked out under.
    pub(crate) generation: u64,
    /// What that policy and the key allow; `None` is nothing.
    pub(crate) allowed: Option<Allowed>,
}

impl Identity {
    pub(crate) fn new(client_id: ClientId, roles: Vec<String>, exp: u64) -> Self {
        Self {
            client_id_json: Value::from(client_id.as_str()).to_string(),
            client_id,
            roles,
            exp,
            revocation_key: None,
            allowed: OnceLock::new(),
        }
    }

    /// The same identity with `key` as its revocation key.
    #[must_use]
    pub(crate) fn with_revocation_key(mut self, key: Option<RevocationKey>) -> Self {
        self.revocation_key = key;
        self
    }
}

/// A revocation key (`x-ably-revocation-key`): 1 to [`MAX_REVOCATION_KEY_BYTES`]
/// bytes without control characters, as Ably's `revokeTokens` takes a target's
/// value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RevocationKey {
    /// The key itself.
    pub(crate) value: String,
    /// The key as a JSON string literal, for the JWT claim.
    pub(crate) json: String,
}

/// Never shows the key: it may be a session id.
impl std::fmt::Debug for RevocationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevocationKey([REDACTED])")
    }
}

/// The longest revocation key (and `/api/revoke` target) accepted: 1024
/// bytes, what mock-ably takes as a `revokeTokens` target value.
pub(crate) const MAX_REVOCATION_KEY_BYTES: usize = 1024;

/// Why `text` cannot be a revocation key or revocation target, if it cannot.
pub(crate) fn target_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("is empty")
    } else if text.len() > MAX_REVOCATION_KEY_BYTES {
        Some("is longer than 1024 bytes")
    } else if text.chars().any(char::is_control) {
        Some("holds a control character")
    } else {
        None
    }
}

impl RevocationKey {
    /// `value` as a revocation key.
    ///
    /// # Errors
    ///
    /// What is wrong with it ([`target_problem`]).
    pub(crate) fn new(value: String) -> Result<Self, &'static str> {
        if let Some(problem) = target_problem(&value) {
            return Err(problem);
        }
        Ok(Self {
            json: Value::from(value.as_str()).to_string(),
            value,
        })
    }
}

/// Checks app JWTs against the configured secret or JWKS.
///
/// A client presents the same app token at every renewal, and checking one
/// costs more than remembering it: an RS256 signature takes ~20 µs with
/// aws-lc-rs (and ~130 µs with RustCrypto, the other backend jsonwebtoken
/// offers), and even with a secret, decoding the header and
/// claims (base64, JSON, the claim checks) cost about as many instructions
/// as the HMAC itself. So tokens that passed are remembered
/// ([`VerifiedTokens`]) in both modes.
#[derive(Debug)]
pub(crate) struct AppJwtVerifier {
    rules: AppJwtRules,
    /// One prepared `Validation` per accepted algorithm.
    validations: Vec<(Algorithm, Validation)>,
    keys: KeySource,
    verified: VerifiedTokens,
}

#[derive(Debug)]
enum KeySource {
    Secret(Box<DecodingKey>),
    Jwks(Arc<JwksCache>),
}

/// Verified app tokens by SHA-256 digest (the tokens themselves are not
/// kept; a digest match is the very token that passed). An entry is used
/// only before the token's `exp` and, with a JWKS, while its `kid` still
/// maps to the very key that verified it, so it never outlives the token or
/// the signing key (a secret cannot change while the server runs). Entries
/// are checked under the rules in force, which do not change either.
///
/// At most [`VerifiedTokens::MAX`] entries: past that, the oldest is
/// forgotten, one per new token. In a login storm (every client presenting
/// a token never seen before) that costs each request one removal, where
/// emptying the whole map at once would stall every request behind the
/// lock for as long as 10,000 entries take to free.
#[derive(Debug, Default)]
struct VerifiedTokens {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Each entry with its insertion number, which tells its place in
    /// `order` from a stale one of the same digest.
    entries: HashMap<[u8; 32], (u64, Verified)>,
    /// Every entry's digest and insertion number, oldest first. A pair
    /// whose entry has since been replaced (the same token verified again)
    /// is stale and skipped when it comes up.
    order: VecDeque<([u8; 32], u64)>,
    next_seq: u64,
}

impl Remembered {
    /// Whether `digest`'s entry is the one inserted as number `seq`.
    fn is_current(&self, digest: &[u8; 32], seq: u64) -> bool {
        self.entries
            .get(digest)
            .is_some_and(|(current, _)| *current == seq)
    }
}

#[derive(Debug)]
struct Verified {
    identity: Arc<Identity>,
    exp: u64,
    /// With a JWKS: the `kid` and the key that verified the token.
    key: Option<(String, Arc<JwkKey>)>,
}

impl VerifiedTokens {
    const MAX: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(
        &self,
        digest: &[u8; 32],
        now: u64,
        key_is_current: impl FnOnce(&str, &Arc<JwkKey>) -> bool,
    ) -> Option<Arc<Identity>> {
        let remembered = self.lock();
        let (_, entry) = remembered.entries.get(digest)?;
        let key_is_current = entry
            .key
            .as_ref()
            .is_none_or(|(kid, key)| key_is_current(kid, key));
        (now < entry.exp && key_is_current).then(|| Arc::clone(&entry.identity))
    }

    fn insert(&self, digest: [u8; 32], entry: Verified) {
        // What is forgotten is dropped after the lock is released.
        let mut forgotten = Vec::new();
        {
            let mut remembered = self.lock();
            let seq = remembered.next_seq;
            remembered.next_seq += 1;
            forgotten.extend(remembered.entries.insert(digest, (seq, entry)));
            remembered.order.push_back((digest, seq));
            while remembered.entries.len() > Self::MAX {
                let Some((oldest, seq)) = remembered.order.pop_front() else {
                    break;
                };
                if remembered.is_current(&oldest, seq) {
                    forgotten.extend(remembered.entries.remove(&oldest));
                }
            }
            // Stale pairs pile up only when tokens are verified again while
            // remembered (a key rotation); keep `order` bounded all the same.
            if remembered.order.len() > 2 * Self::MAX {
                let mut order = std::mem::take(&mut remembered.order);
                order.retain(|(digest, seq)| remembered.is_current(digest, *seq));
                remembered.order = order;
            }
        }
        drop(forgotten);
    }

    /// Forgets every remembered token (and with them their grants).
    fn clear(&self) {
        let forgotten = std::mem::take(&mut *self.lock());
        drop(forgotten);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let remembered = self.lock();
        assert!(remembered.order.len() >= remembered.entries.len());
        remembered.entries.len()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl AppJwtVerifier {
    /// A verifier for tokens signed with a shared `secret`.
    pub(crate) fn with_secret(
        secret: &SecretString,
        rules: AppJwtRules,
    ) -> Result<Self, ConfigError> {
        shared::jwt::ensure_crypto_provider();
        let key = DecodingKey::from_secret(secret.expose_secret().as_bytes())
            .map_err(|err| ConfigError::new("AUTH_APP_JWT_SECRET", err.to_string()))?;
        if secret.expose_secret().is_empty() {
            return Err(ConfigError::new("AUTH_APP_JWT_SECRET", "must not be empty"));
        }
        Ok(Self {
            validations: validations(&rules),
            rules,
            keys: KeySource::Secret(Box::new(key)),
            verified: VerifiedTokens::default(),
        })
    }

    /// A verifier for tokens signed with the keys of a JWKS.
    pub(crate) fn with_jwks(jwks: Arc<JwksCache>, rules: AppJwtRules) -> Self {
        shared::jwt::ensure_crypto_provider();
        Self {
            validations: validations(&rules),
            rules,
            keys: KeySource::Jwks(jwks),
            verified: VerifiedTokens::default(),
        }
    }

    /// Forgets every remembered app token and the grant worked out for it,
    /// after a policy reload: the next presentation is verified afresh.
    pub(crate) fn forget_remembered(&self) {
        self.verified.clear();
    }

    /// Verifies `token` and returns the user it names.
    ///
    /// # Errors
    ///
    /// [`ApiError::InvalidCredentials`] naming the failed check;
    /// [`ApiError::Unavailable`] if the JWKS has never been fetched.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<Identity>, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self
            .verified
            .get(&digest, now_secs(), |kid, key| match &self.keys {
                KeySource::Jwks(jwks) => jwks.is_current(kid, key),
                KeySource::Secret(_) => false,
            });
        if let Some(identity) = remembered {
            return Ok(identity);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("not a signed JWT (alg none or malformed)"))?;
        if !self.rules.algorithms.contains(&header.alg) {
            return Err(invalid(&format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let (claims, key) = match &self.keys {
            KeySource::Secret(key) => (self.decode(token, key, header.alg)?, None),
            KeySource::Jwks(jwks) => {
                let kid = header.kid.ok_or_else(|| invalid("no kid in the header"))?;
                let key = jwks.key(&kid).await?;
                if key.alg.is_some_and(|alg| alg != header.alg) {
                    return Err(invalid("algorithm does not match its key"));
                }
                (self.decode(token, &key.key, header.alg)?, Some((kid, key)))
            }
        };
        let identity = Arc::new(self.identity(&claims)?);
        let entry = Verified {
            identity: Arc::clone(&identity),
            exp: identity.exp,
            key,
        };
        self.verified.insert(digest, entry);
        Ok(identity)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, ApiError> {
        let validation = self
            .validations
            .iter()
            .find_map(|(accepted, validation)| (*accepted == alg).then_some(validation))
            .ok_or_else(|| invalid(&format!("algorithm {alg:?} is not accepted")))?;
        jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|err| {
                invalid(match err.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::ImmatureSignature => "not yet valid (nbf is in the future)",
                    ErrorKind::InvalidIssuer => "issuer is not accepted",
                    ErrorKind::InvalidAudience => "audience is not accepted",
                    ErrorKind::InvalidSignature => "signature does not verify",
                    ErrorKind::MissingRequiredClaim(claim) => {
                        return ApiError::InvalidCredentials(format!("no {claim} claim"));
                    }
                    ErrorKind::InvalidAlgorithm => "algorithm does not match its key",
                    _ => "malformed claims",
                })
            })
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, ApiError> {
        let name = &self.rules.client_id_claim;
        let client_id = match claim(claims, name) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::String(_)) => return Err(invalid(&format!("{name} claim is empty"))),
            Some(_) => return Err(invalid(&format!("{name} claim is not a string"))),
            None => {
                return Err(invalid(&format!(
                    "no {name} claim to take the clientId from"
                )));
            }
        };
        if client_id == "*" {
            // `*` in a token is Ably's wildcard clientId
            // (`docs/protocol.md#clientid-rules`): it would let the holder act
            // as anyone.
            return Err(invalid(&format!(
                "{name} claim is \"*\", Ably's wildcard clientId"
            )));
        }
        // A line feed would shift the fields of a signed TokenRequest (the
        // MAC covers them joined by `\n`): `"*\n<T>"` would sign like the
        // wildcard. Any control character is refused, the empty id was above.
        let client_id = ClientId::new(client_id).map_err(|_| {
            invalid(&format!(
                "{name} claim holds a control character (U+0000 to U+001F or U+007F), which no clientId may hold"
            ))
        })?;
        let exp = exp_claim(claims).ok_or_else(|| invalid("no exp claim"))?;
        let roles = match claim(claims, &self.rules.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(role)) => vec![role.clone()],
            _ => Vec::new(),
        };
        let revocation_key = match &self.rules.revocation_key_claim {
            None => None,
            Some(name) => match claim(claims, name) {
                None => None,
                Some(Value::String(value)) => {
                    Some(RevocationKey::new(value.clone()).map_err(|problem| {
                        invalid(&format!(
                            "{name} claim (AUTH_REVOCATION_KEY_CLAIM) {problem}"
                        ))
                    })?)
                }
                Some(_) => {
                    return Err(invalid(&format!(
                        "{name} claim (AUTH_REVOCATION_KEY_CLAIM) is not a string"
                    )));
                }
            },
        };
        Ok(Identity::new(client_id, roles, exp).with_revocation_key(revocation_key))
    }
}

/// `exp` in whole seconds, read as jsonwebtoken reads it (which has checked
/// it): a whole number, or a non-negative finite number, here rounded down so
/// that nothing outlives the token.
fn exp_claim(claims: &Map<String, Value>) -> Option<u64> {
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|exp| exp.is_finite() && *exp >= 0.0 && *exp < u64::MAX as f64)
            // In range, checked just above.
            .map(|exp| exp.floor() as u64)
    })
}

/// The checks for each accepted algorithm: `exp` required, `nbf` checked,
/// `iss` and `aud` required and checked when configured (jsonwebtoken checks
/// them only when present unless they are listed as required).
fn validations(rules: &AppJwtRules) -> Vec<(Algorithm, Validation)> {
    rules
        .algorithms
        .iter()
        .map(|&alg| {
            let mut validation = Validation::new(alg);
            validation.leeway = rules.leeway.as_secs();
            let mut required = HashSet::from(["exp".to_owned()]);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.reject_tokens_expiring_in_less_than = 0;
            if let Some(issuer) = &rules.issuer {
                validation.set_issuer(&[issuer]);
                required.insert("iss".to_owned());
            }
            if rules.audience.is_empty() {
                validation.validate_aud = false;
            } else {
                validation.set_audience(&rules.audience);
                required.insert("aud".to_owned());
            }
            validation.required_spec_claims = required;
            (alg, validation)
        })
        .collect()
}

/// The claim `name`: a top-level claim of that exact name (Auth0 style
/// `https://app.example/roles`), or else the value at a dotted path
/// (Keycloak style `realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn invalid(problem: &str) -> ApiError {
    ApiError::InvalidCredentials(problem.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn verifier() -> AppJwtVerifier {
        let rules = AppJwtRules {
            leeway: std::time::Duration::ZERO,
            ..AppJwtRules::defaults_for(&crate::AppAuth::Secret(SecretString::from("s")))
        };
        AppJwtVerifier::with_secret(&SecretString::from("app-secret"), rules).unwrap()
    }

    fn hs256(claims: &Value, secret: &str) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
    }

    #[tokio::test]
    async fn a_verified_secret_token_is_remembered_and_a_refused_one_is_not() {
        let verifier = verifier();
        let exp = now_secs() + 300;
        let good = hs256(&json!({"sub": "alice", "exp": exp}), "app-secret");
        let forged = hs256(&json!({"sub": "alice", "exp": exp}), "other");

        let first = verifier.verify(&good).await.unwrap();
        let again = verifier.verify(&good).await.unwrap();
        let refused = verifier.verify(&forged).await;

        assert!(Arc::ptr_eq(&first, &again), "served from memory");
        assert_eq!(first.client_id, "alice");
        assert!(matches!(refused, Err(ApiError::InvalidCredentials(_))));
        assert!(matches!(
            verifier.verify(&forged).await,
            Err(ApiError::InvalidCredentials(_))
        ));
        assert_eq!(verifier.verified.len(), 1);
    }

    #[test]
    fn a_remembered_token_is_used_only_before_its_exp_and_while_its_key_is_current() {
        let tokens = VerifiedTokens::default();
        let identity = Arc::new(Identity::new("alice".parse().unwrap(), Vec::new(), 100));
        let entry = |key| Verified {
            identity: Arc::clone(&identity),
            exp: 100,
            key,
        };
        tokens.insert([1; 32], entry(None));
        let jwk = Arc::new(JwkKey {
            key: DecodingKey::from_secret(b"not used").unwrap(),
            alg: None,
        });
        tokens.insert([2; 32], entry(Some(("k1".to_owned(), jwk))));

        assert!(tokens.get(&[1; 32], 99, |_, _| false).is_some());
        assert!(
            tokens.get(&[1; 32], 100, |_, _| true).is_none(),
            "exp reached"
        );
        assert!(tokens.get(&[2; 32], 99, |kid, _| kid == "k1").is_some());
        assert!(
            tokens.get(&[2; 32], 99, |_, _| false).is_none(),
            "key rotated"
        );
        assert!(tokens.get(&[3; 32], 99, |_, _| true).is_none());
    }

    #[test]
    fn past_the_bound_the_oldest_token_is_forgotten_one_at_a_time() {
        let tokens = VerifiedTokens::default();
        let identity = Arc::new(Identity::new("alice".parse().unwrap(), Vec::new(), 100));
        let entry = || Verified {
            identity: Arc::clone(&identity),
            exp: 100,
            key: None,
        };
        let digest = |n: usize| {
            let mut digest = [0; 32];
            digest[..8].copy_from_slice(&(n as u64).to_le_bytes());
            digest
        };
        for n in 0..VerifiedTokens::MAX {
            tokens.insert(digest(n), entry());
        }
        // Token 0 verified again: its entry is renewed, its old place stale.
        tokens.insert(digest(0), entry());
        assert_eq!(tokens.len(), VerifiedTokens::MAX);

        tokens.insert(digest(VerifiedTokens::MAX), entry());
        assert_eq!(tokens.len(), VerifiedTokens::MAX);
        assert!(tokens.get(&digest(0), 50, |_, _| true).is_some(), "renewed");
        assert!(tokens.get(&digest(1), 50, |_, _| true).is_none(), "oldest");
        assert!(tokens.get(&digest(2), 50, |_, _| true).is_some());

        // A storm of new tokens: the bound holds, and so does `order`'s.
        for n in 0..5 * VerifiedTokens::MAX {
            tokens.insert(digest(VerifiedTokens::MAX + 1 + n), entry());
            if n % 5_000 == 0 {
                tokens.insert(digest(VerifiedTokens::MAX + 1 + n), entry());
            }
        }
        assert_eq!(tokens.len(), VerifiedTokens::MAX);
        assert!(tokens.lock().order.len() <= 2 * VerifiedTokens::MAX);
        tokens.clear();
        assert_eq!(tokens.len(), 0);
    }

    #[test]
    fn claims_are_found_by_exact_name_then_by_dotted_path() {
        let claims = claims(json!({
            "https://app.example/roles": ["a"],
            "realm_access": {"roles": ["b"]},
        }));

        assert_eq!(
            claim(&claims, "https://app.example/roles"),
            Some(&json!(["a"]))
        );
        assert_eq!(claim(&claims, "realm_access.roles"), Some(&json!(["b"])));
        assert_eq!(claim(&claims, "realm_access.missing"), None);
        assert_eq!(claim(&claims, "nothing"), None);
    }
}
