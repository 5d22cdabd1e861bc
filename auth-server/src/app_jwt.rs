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

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::{AppJwtRules, ConfigError};
use crate::error::ApiError;
use crate::jwks::JwksCache;

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
    keys: KeySource,
}

#[derive(Debug)]
enum KeySource {
    Secret(Box<DecodingKey>),
    Jwks(Arc<JwksCache>),
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
            rules,
            keys: KeySource::Secret(Box::new(key)),
        })
    }

    /// A verifier for tokens signed with the keys of a JWKS.
    pub(crate) fn with_jwks(cache: Arc<JwksCache>, rules: AppJwtRules) -> Self {
        Self {
            rules,
            keys: KeySource::Jwks(cache),
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
        let claims = match &self.keys {
            KeySource::Secret(key) => self.decode(token, key, header.alg)?,
            KeySource::Jwks(cache) => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("no kid in the header"))?;
                let key = cache.key(kid).await?;
                if key.alg.is_some_and(|alg| alg != header.alg) {
                    return Err(invalid("algorithm does not match its key"));
                }
                self.decode(token, &key.key, header.alg)?
            }
        };
        self.identity(&claims)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.rules.leeway.as_secs();
        // jsonwebtoken checks `iss` and `aud` only when the token has them:
        // when configured, they must also be present.
        let mut required = HashSet::from(["exp".to_owned()]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.reject_tokens_expiring_in_less_than = 0;
        if let Some(issuer) = &self.rules.issuer {
            validation.set_issuer(&[issuer]);
            required.insert("iss".to_owned());
        }
        if self.rules.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.rules.audience);
            required.insert("aud".to_owned());
        }
        validation.required_spec_claims = required;
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
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
