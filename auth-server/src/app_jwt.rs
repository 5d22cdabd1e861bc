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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::config::{AppJwtRules, ConfigError};
use crate::error::ApiError;
use crate::jwks::{JwkKey, JwksCache};

/// Who the caller is, as their app JWT says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The Ably clientId: the claim named by `AUTH_CLIENT_ID_CLAIM`.
    pub(crate) client_id: String,
    /// The roles: the claim named by `AUTH_ROLES_CLAIM`.
    pub(crate) roles: Vec<String>,
}

/// Checks app JWTs against the configured secret or JWKS.
#[derive(Debug)]
pub(crate) struct AppJwtVerifier {
    rules: AppJwtRules,
    /// One prepared `Validation` per accepted algorithm.
    validations: Vec<(Algorithm, Validation)>,
    keys: KeySource,
}

#[derive(Debug)]
enum KeySource {
    Secret(Box<DecodingKey>),
    Jwks {
        jwks: Arc<JwksCache>,
        /// Public-key signatures are slow to check (RS256 with the pure-Rust
        /// backend takes ~0.3 ms), and a client presents the same app token
        /// at every renewal, so verified tokens are remembered. HMAC checks
        /// cost about as much as the lookup, so secret mode has no cache.
        verified: VerifiedTokens,
    },
}

/// Verified app tokens by SHA-256 digest (the tokens themselves are not
/// kept). An entry is used only before the token's `exp` and while its `kid`
/// still maps to the very key that verified it, so it never outlives the
/// token or the signing key. At most [`VerifiedTokens::MAX`] entries.
#[derive(Debug, Default)]
struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

#[derive(Debug)]
struct Verified {
    identity: Identity,
    exp: u64,
    key: Arc<JwkKey>,
}

impl VerifiedTokens {
    const MAX: usize = 10_000;

    fn get(
        &self,
        digest: &[u8; 32],
        now: u64,
        key_is_current: impl FnOnce(&Arc<JwkKey>) -> bool,
    ) -> Option<Identity> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(digest)?;
        (now < entry.exp && key_is_current(&entry.key)).then(|| entry.identity.clone())
    }

    fn insert(&self, digest: [u8; 32], identity: Identity, exp: u64, key: Arc<JwkKey>, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX {
            entries.retain(|_, entry| now < entry.exp);
            if entries.len() >= Self::MAX {
                // Still full of live tokens: start over rather than grow.
                entries.clear();
            }
        }
        entries.insert(digest, Verified { identity, exp, key });
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
        let key = DecodingKey::from_secret(secret.expose_secret().as_bytes())
            .map_err(|err| ConfigError::new("AUTH_APP_JWT_SECRET", err.to_string()))?;
        if secret.expose_secret().is_empty() {
            return Err(ConfigError::new("AUTH_APP_JWT_SECRET", "must not be empty"));
        }
        Ok(Self {
            validations: validations(&rules),
            rules,
            keys: KeySource::Secret(Box::new(key)),
        })
    }

    /// A verifier for tokens signed with the keys of a JWKS.
    pub(crate) fn with_jwks(jwks: Arc<JwksCache>, rules: AppJwtRules) -> Self {
        Self {
            validations: validations(&rules),
            rules,
            keys: KeySource::Jwks {
                jwks,
                verified: VerifiedTokens::default(),
            },
        }
    }

    /// Verifies `token` and returns the user it names.
    ///
    /// # Errors
    ///
    /// [`ApiError::InvalidCredentials`] naming the failed check;
    /// [`ApiError::Unavailable`] if the JWKS has never been fetched.
    pub(crate) async fn verify(&self, token: &str) -> Result<Identity, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("not a signed JWT (alg none or malformed)"))?;
        if !self.rules.algorithms.contains(&header.alg) {
            return Err(invalid(&format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        match &self.keys {
            KeySource::Secret(key) => {
                let claims = self.decode(token, key, header.alg)?;
                self.identity(&claims)
            }
            KeySource::Jwks { jwks, verified } => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("no kid in the header"))?;
                let digest = Sha256::digest(token.as_bytes()).into();
                if let Some(identity) =
                    verified.get(&digest, now_secs(), |key| jwks.is_current(kid, key))
                {
                    return Ok(identity);
                }
                let key = jwks.key(kid).await?;
                if key.alg.is_some_and(|alg| alg != header.alg) {
                    return Err(invalid("algorithm does not match its key"));
                }
                let claims = self.decode(token, &key.key, header.alg)?;
                let identity = self.identity(&claims)?;
                if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
                    verified.insert(digest, identity.clone(), exp, key, now_secs());
                }
                Ok(identity)
            }
        }
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
            // `*` in a token is Ably's wildcard clientId (§4.4): it would let
            // the holder act as anyone.
            return Err(invalid(&format!(
                "{name} claim is \"*\", Ably's wildcard clientId"
            )));
        }
        let roles = match claim(claims, &self.rules.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(role)) => vec![role.clone()],
            _ => Vec::new(),
        };
        Ok(Identity { client_id, roles })
    }
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
