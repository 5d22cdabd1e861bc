//! Ably JWTs (`docs/protocol.md#ably-jwts`): claims, signing, and verification
//! with Ably's error codes.
//!
//! An Ably JWT is signed with HS256, keyed with the UTF-8 bytes of the API
//! key's secret; its JOSE header names the key (`kid`: `<appId>.<keyId>`,
//! required), with `alg` `HS256` and `typ` `JWT`
//! (`docs/protocol.md#jwt-signing`).
//!
//! [`encode_jwt`] mints such a token from [`AblyJwtClaims`]; [`verify_jwt`]
//! checks one the way Ably does and fails with the code and HTTP status of
//! the `docs/protocol.md#jwt-rejections` table, so the mock rejects exactly
//! what Ably rejects. [`decode_unverified_exp`] lets a client read a token's
//! expiry without the secret.
//!
//! Time is passed in (`now_secs`), never read from the system clock, so
//! expiry is testable without sleeping.

use std::collections::BTreeMap;
use std::sync::Once;

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::error_info::{ErrorInfo, codes};
use crate::key::ApiKey;

/// The prefix of channel-scoped user claims, `ably.channel.<pattern>`
/// (`docs/protocol.md#jwt-claims`).
pub const CHANNEL_CLAIM_PREFIX: &str = "ably.channel.";

const IAT: &str = "iat";
const EXP: &str = "exp";
const CAPABILITY: &str = "x-ably-capability";
const CLIENT_ID: &str = "x-ably-clientId";
const REVOCATION_KEY: &str = "x-ably-revocation-key";
const CLIENT_TYPE: &str = "x-ably-clientType";
const JTI: &str = "jti";

/// The claims of an Ably JWT (`docs/protocol.md#jwt-claims`).
///
/// On the wire the fields take Ably's names (`x-ably-capability`,
/// `x-ably-clientId` with a capital `I`, ...); each entry of
/// [`channel_claims`](Self::channel_claims) becomes its own top-level
/// `ably.channel.<pattern>` claim. Absent optional claims are left out.
///
/// Deserializing applies the same content rules as [`verify_jwt`] (required
/// `iat`, `exp` and non-empty `x-ably-capability`; string-valued `x-ably-*`
/// and `ably.channel.*` claims) and ignores every other claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AblyJwtClaims {
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// `x-ably-capability`: canonical capability text (from
    /// [`crate::capability`]), sent as a JSON *string*.
    pub capability: String,
    /// `x-ably-clientId`: the trusted client id; `"*"` is the wildcard.
    pub client_id: Option<String>,
    /// `x-ably-revocation-key`: targets the token for revocation.
    pub revocation_key: Option<String>,
    /// `x-ably-clientType`: `"server"` marks server traffic.
    pub client_type: Option<String>,
    /// `jti`: a unique token id (RFC 7519 §4.1.7).
    pub jti: Option<String>,
    /// `ably.channel.<pattern>` claims, keyed by `<pattern>` (a channel name or
    /// namespace pattern such as `chat:*`).
    pub channel_claims: BTreeMap<String, String>,
}

impl AblyJwtClaims {
    /// Claims with the required fields set and no optional ones.
    pub fn new(iat: u64, exp: u64, capability: impl Into<String>) -> Self {
        Self {
            iat,
            exp,
            capability: capability.into(),
            client_id: None,
            revocation_key: None,
            client_type: None,
            jti: None,
            channel_claims: BTreeMap::new(),
        }
    }

    /// Reads claims from a JWT payload object, with Ably's content rules.
    ///
    /// Every failure is 40144 (401) except an empty `x-ably-clientId`, which
    /// is 40012 (400) as for any empty client id
    /// (`docs/protocol.md#clientid-rules`).
    fn from_payload(mut payload: Map<String, Value>) -> Result<Self, ErrorInfo> {
        let iat = take_seconds(&mut payload, IAT)?;
        let exp = take_seconds(&mut payload, EXP)?;
        // Ably's docs disagree on whether the capability is required
        // (`docs/protocol.md#jwt-claims`, [U]); we require it, and the auth
        // server always sends it.
        let capability = take_string(&mut payload, CAPABILITY)?
            .ok_or_else(|| invalid_jwt("Invalid token; x-ably-capability must be specified"))?;
        if capability.is_empty() {
            return Err(invalid_jwt(
                "Invalid token; x-ably-capability must not be empty",
            ));
        }
        // Only the shape is checked here; resources and operations are
        // `crate::capability`'s business.
        if serde_json::from_str::<Map<String, Value>>(&capability).is_err() {
            return Err(invalid_jwt(
                "Invalid token; x-ably-capability must be a JSON object in a string",
            ));
        }
        let client_id = take_string(&mut payload, CLIENT_ID)?;
        if client_id.as_deref() == Some("") {
            return Err(ErrorInfo::from_code(
                codes::INVALID_CLIENT_ID,
                "Invalid token; x-ably-clientId must not be empty",
            ));
        }
        let revocation_key = take_string(&mut payload, REVOCATION_KEY)?;
        if revocation_key.as_deref() == Some("") {
            return Err(invalid_jwt(
                "Invalid token; x-ably-revocation-key must not be empty",
            ));
        }
        let client_type = take_string(&mut payload, CLIENT_TYPE)?;
        let jti = take_string(&mut payload, JTI)?;
        let channel_claims = payload
            .into_iter()
            .filter_map(|(name, value)| {
                let pattern = name.strip_prefix(CHANNEL_CLAIM_PREFIX)?.to_owned();
                Some(match value {
                    Value::String(claim) => Ok((pattern, claim)),
                    _ => Err(invalid_jwt(format!(
                        "Invalid token; {name} must be a string"
                    ))),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            iat,
            exp,
            capability,
            client_id,
            revocation_key,
            client_type,
            jti,
            channel_claims,
        })
    }
}

/// Removes a required NumericDate claim: a non-negative integer of seconds.
fn take_seconds(payload: &mut Map<String, Value>, name: &str) -> Result<u64, ErrorInfo> {
    match payload.remove(name) {
        None => Err(invalid_jwt(format!(
            "Invalid token; {name} must be specified"
        ))),
        Some(value) => value.as_u64().ok_or_else(|| {
            invalid_jwt(format!(
                "Invalid token; {name} must be a whole number of seconds"
            ))
        }),
    }
}

/// Removes an optional claim that must be a string when present (`null`
/// included: `docs/protocol.md#jwt-rejections` calls a non-string revocation
/// key invalid, and the other `x-ably-*` claims follow the same rule).
fn take_string(payload: &mut Map<String, Value>, name: &str) -> Result<Option<String>, ErrorInfo> {
    match payload.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_jwt(format!(
            "Invalid token; {name} must be a string"
        ))),
    }
}

impl Serialize for AblyJwtClaims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(IAT, &self.iat)?;
        map.serialize_entry(EXP, &self.exp)?;
        map.serialize_entry(CAPABILITY, &self.capability)?;
        let optional = [
            (CLIENT_ID, &self.client_id),
            (REVOCATION_KEY, &self.revocation_key),
            (CLIENT_TYPE, &self.client_type),
            (JTI, &self.jti),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        for (pattern, claim) in &self.channel_claims {
            map.serialize_entry(&format!("{CHANNEL_CLAIM_PREFIX}{pattern}"), claim)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for AblyJwtClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let payload = Map::deserialize(deserializer)?;
        Self::from_payload(payload).map_err(|info| de::Error::custom(info.message))
    }
}

/// Signs `claims` as an Ably JWT: HS256 keyed with the UTF-8 bytes of the
/// key secret, header `{"alg":"HS256","kid":<key name>,"typ":"JWT"}`.
///
/// The claims are signed as given: the caller makes sure
/// `capability` is canonical and non-empty and `exp` is after `iat`.
///
/// ```
/// use shared::jwt::{AblyJwtClaims, encode_jwt, verify_jwt};
/// use shared::key::ApiKey;
///
/// let key: ApiKey = "xVLyHw.mDYnFA:s3cr3t".parse()?;
/// let claims = AblyJwtClaims::new(1_700_000_000, 1_700_003_600, r#"{"*":["subscribe"]}"#);
///
/// let token = encode_jwt(&key, &claims)?;
///
/// let verified = verify_jwt(&token, [&key], 1_700_000_010, 0)?;
/// assert_eq!(verified.claims, claims);
/// # Ok::<(), shared::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::JwtSign`] if `jsonwebtoken` cannot sign (it has no reason to with
/// a parsed [`ApiKey`], whose secret is never empty).
pub fn encode_jwt(key: &ApiKey, claims: &AblyJwtClaims) -> Result<String> {
    ensure_crypto_provider();
    let mut header = Header::new(Algorithm::HS256); // sets `typ: "JWT"`
    header.kid = Some(key.key_name().to_owned());
    let secret = EncodingKey::from_secret(key.secret().expose_secret().as_bytes())
        .map_err(Error::JwtSign)?;
    jsonwebtoken::encode(&header, claims, &secret).map_err(Error::JwtSign)
}

/// Makes sure `jsonwebtoken` has a crypto backend to sign and verify with.
///
/// We build it with its `aws_lc_rs` backend. If something else in the same
/// program turns on its `rust_crypto` backend too, `jsonwebtoken` cannot
/// choose and panics at its first signature unless a provider was installed
/// for the process: in that case this installs the aws-lc-rs one. It does
/// nothing when the program installed a provider of its own or when only one
/// backend is built in. Called by [`encode_jwt`] and [`verify_jwt`]; a program
/// that calls `jsonwebtoken` directly calls it once first.
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if CryptoProvider::try_get_default().is_none() {
            // Losing a race with another installer leaves that one in place,
            // which is as good.
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        }
    });
}

/// A JWT that passed [`verify_jwt`]: the key it was signed with and its claims.
///
/// The key is returned so the caller can intersect the claims' capability
/// with the key's own (`docs/protocol.md#jwt-claims`).
#[derive(Debug, Clone)]
pub struct VerifiedJwt<'k> {
    /// The key named by the token's `kid`, whose secret verified it.
    pub key: &'k ApiKey,
    /// The token's claims.
    pub claims: AblyJwtClaims,
}

/// Verifies an Ably JWT against `keys` at time `now_secs` (seconds since the
/// Unix epoch), as Ably does (`docs/protocol.md#jwt-rejections`).
///
/// `leeway_secs` is the clock skew forgiven on both `exp` and `iat`. The
/// mock passes 0; note that `jsonwebtoken`'s own default of 60 s is not used,
/// because it would accept a token that expired a minute ago.
///
/// Checks, in this order (the first failure wins):
///
/// | Check | Failure |
/// |---|---|
/// | the token is three base64url JSON parts | 40144 (401) |
/// | header `alg` is `HS256` (pinned; `none`, `RS256`, `HS512`... are refused) | 40144 (401) |
/// | header `kid` is present | 40144 (401) |
/// | `kid`'s app is one of `keys`' apps | 40400 (404) |
/// | `kid` is one of `keys` | 40400 (401) |
/// | the HS256 signature verifies with that key's secret | 40144 (401) |
/// | claims: see [`AblyJwtClaims`] | 40144 (401); 40012 (400) for an empty clientId |
/// | not expired: `now_secs < exp + leeway_secs` | 40142 (401) "Token expired" |
/// | not issued in the future: `iat <= now_secs + leeway_secs` | 40001 (400) |
///
/// The signature is checked before any claim, so a forged token gets 40144
/// whatever its claims say; in particular it never gets 40142, which would
/// tell a client to renew. Expiry follows RFC 7519 §4.1.4: a token is not
/// accepted *on or after* `exp`, so with no leeway a token whose `exp` equals
/// `now_secs` is expired.
///
/// # Errors
///
/// [`Error::Rejected`] carrying the Ably error of the first failed check
/// above.
pub fn verify_jwt<'k>(
    token: &str,
    keys: impl IntoIterator<Item = &'k ApiKey>,
    now_secs: u64,
    leeway_secs: u64,
) -> Result<VerifiedJwt<'k>> {
    ensure_crypto_provider();
    let header = jsonwebtoken::decode_header(token).map_err(|err| {
        Error::Rejected(invalid_jwt(format!("Unexpected error decoding JWT: {err}")))
    })?;
    if header.alg != Algorithm::HS256 {
        return Err(Error::Rejected(invalid_jwt(format!(
            "Invalid JWT; unsupported alg {:?}, Ably JWTs use HS256",
            header.alg
        ))));
    }
    let kid = header
        .kid
        .ok_or_else(|| Error::Rejected(invalid_jwt("Invalid JWT; no kid in the header")))?;
    let key = find_key(&kid, keys)?;

    let mut validation = Validation::new(Algorithm::HS256);
    // Time and claim checks are ours: they need `now_secs`, our leeway and
    // Ably's codes. jsonwebtoken only checks the signature.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let secret = DecodingKey::from_secret(key.secret().expose_secret().as_bytes())
        .expect("ApiKey::parse rejects empty secrets");
    let payload = jsonwebtoken::decode::<Map<String, Value>>(token, &secret, &validation)
        .map_err(|err| {
            Error::Rejected(if matches!(err.kind(), ErrorKind::InvalidSignature) {
                invalid_jwt("Invalid JWT; signature verification failed")
            } else {
                invalid_jwt(format!("Unexpected error decoding JWT: {err}"))
            })
        })?
        .claims;
    let claims = AblyJwtClaims::from_payload(payload).map_err(Error::Rejected)?;

    if now_secs >= claims.exp.saturating_add(leeway_secs) {
        return Err(Error::Rejected(ErrorInfo::from_code(
            codes::TOKEN_EXPIRED,
            "Token expired",
        )));
    }
    if claims.iat > now_secs.saturating_add(leeway_secs) {
        // Registry status of 40001 is 400; for this case it is [I]
        // (`docs/protocol.md#jwt-rejections`).
        return Err(Error::Rejected(ErrorInfo::from_code(
            codes::INVALID_REQUEST_BODY,
            "Invalid token; issuedAt time must not be in the future.",
        )));
    }
    Ok(VerifiedJwt { key, claims })
}

/// Finds the key named `kid`, or says whether its app or only its key is
/// unknown (`docs/protocol.md#jwt-rejections`: 404 for an unknown app, 401 for
/// an unknown key in a known app).
fn find_key<'k>(kid: &str, keys: impl IntoIterator<Item = &'k ApiKey>) -> Result<&'k ApiKey> {
    let app_id = kid.split_once('.').map_or(kid, |(app_id, _)| app_id);
    let mut app_known = false;
    for key in keys {
        if key.key_name() == kid {
            return Ok(key);
        }
        app_known |= key.app_id() == app_id;
    }
    Err(Error::Rejected(if app_known {
        ErrorInfo::new(
            codes::NOT_FOUND,
            401,
            format!("Invalid JWT; key {kid} not found"),
        )
    } else {
        ErrorInfo::new(
            codes::NOT_FOUND,
            404,
            format!("Invalid JWT; app {app_id} not found"),
        )
    }))
}

/// Reads a JWT's `exp` (seconds since the Unix epoch) **without verifying
/// anything**.
///
/// For a client that holds a token but not the secret and wants to renew
/// before expiry. The value is untrusted: use it for scheduling only, never
/// to decide whether a token is valid. `None` if the token cannot be decoded
/// or has no integer `exp`.
pub fn decode_unverified_exp(token: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Exp {
        exp: u64,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Exp>(token)
        .ok()
        .map(|claims| claims.exp)
}

fn invalid_jwt(message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::from_code(codes::INVALID_JWT, message)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;
    use sha2::Sha256;

    use super::*;

    const NOW: u64 = 1_700_000_000;
    const CAP: &str = r#"{"*":["subscribe"]}"#;

    fn key() -> ApiKey {
        ApiKey::parse("appA.key1:s3cr3t").unwrap()
    }

    fn keys() -> Vec<ApiKey> {
        vec![ApiKey::parse("appB.other:different").unwrap(), key()]
    }

    fn claims() -> AblyJwtClaims {
        AblyJwtClaims::new(NOW - 10, NOW + 3600, CAP)
    }

    /// A valid payload as raw JSON, to break one claim at a time.
    fn payload() -> Value {
        json!({"iat": NOW - 10, "exp": NOW + 3600, "x-ably-capability": CAP})
    }

    /// Builds a token by hand: any header, any payload, HMAC-SHA256 signed.
    fn hand_made(header: &Value, payload: &Value, secret: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(message.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{message}.{signature}")
    }

    fn hs256_header() -> Value {
        json!({"alg": "HS256", "kid": "appA.key1", "typ": "JWT"})
    }

    fn verify(token: &str, now: u64, leeway: u64) -> Result<AblyJwtClaims> {
        let keys = keys();
        verify_jwt(token, &keys, now, leeway).map(|verified| verified.claims)
    }

    fn rejection(result: Result<AblyJwtClaims>) -> (u32, u16) {
        match result {
            Err(Error::Rejected(info)) => (info.code, info.status_code),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn decode_part(token: &str, index: usize) -> Value {
        let part = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn encode_then_verify_round_trips_every_claim() {
        let mut claims = claims();
        claims.client_id = Some("user-1".into());
        claims.revocation_key = Some("group-7".into());
        claims.client_type = Some("server".into());
        claims.jti = Some("id-1".into());
        claims
            .channel_claims
            .insert("chat:*".into(), r#"{"role":"mod"}"#.into());
        let keys = keys();

        let token = encode_jwt(&key(), &claims).unwrap();
        let verified = verify_jwt(&token, &keys, NOW, 0).unwrap();

        assert_eq!(verified.claims, claims);
        assert_eq!(verified.key.key_name(), "appA.key1");
    }

    #[test]
    fn header_is_exactly_alg_kid_typ() {
        let token = encode_jwt(&key(), &claims()).unwrap();

        assert_eq!(
            decode_part(&token, 0),
            json!({"alg": "HS256", "kid": "appA.key1", "typ": "JWT"})
        );
    }

    #[test]
    fn payload_uses_ably_claim_names_and_a_string_capability() {
        let mut claims = claims();
        claims.client_id = Some("user-1".into());
        claims
            .channel_claims
            .insert("chat:*".into(), r#"{"role":"mod"}"#.into());

        let token = encode_jwt(&key(), &claims).unwrap();

        assert_eq!(
            decode_part(&token, 1),
            json!({
                "iat": NOW - 10,
                "exp": NOW + 3600,
                "x-ably-capability": CAP,
                "x-ably-clientId": "user-1",
                "ably.channel.chat:*": r#"{"role":"mod"}"#
            })
        );
    }

    #[test]
    fn unknown_claims_are_ignored() {
        let mut payload = payload();
        payload["sub"] = json!("someone");
        payload["ably.limits.publish.perAttachment.maxRate.*"] = json!(10);
        let token = hand_made(&hs256_header(), &payload, b"s3cr3t");

        let claims = verify(&token, NOW, 0).unwrap();

        assert_eq!(claims, self::claims());
    }

    #[test]
    fn bad_tokens_are_40144_with_status_401() {
        let other_key = ApiKey::parse("appA.key1:wrong").unwrap();
        let no_kid = json!({"alg": "HS256", "typ": "JWT"});
        let alg_none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "appA.key1"}).to_string()),
            URL_SAFE_NO_PAD.encode(payload().to_string())
        );
        let rs256 = json!({"alg": "RS256", "kid": "appA.key1", "typ": "JWT"});
        let mut hs512 = Header::new(Algorithm::HS512);
        hs512.kid = Some("appA.key1".into());
        let hs512 = jsonwebtoken::encode(
            &hs512,
            &payload(),
            &EncodingKey::from_secret(b"s3cr3t").unwrap(),
        )
        .unwrap();
        let without = |claim: &str| {
            let mut payload = payload();
            payload.as_object_mut().unwrap().remove(claim);
            hand_made(&hs256_header(), &payload, b"s3cr3t")
        };
        let with = |claim: &str, value: Value| {
            let mut payload = payload();
            payload[claim] = value;
            hand_made(&hs256_header(), &payload, b"s3cr3t")
        };

        // Each case names the check that must catch it, so a token rejected
        // for the wrong reason fails the test.
        let cases = [
            (
                "wrong secret",
                encode_jwt(&other_key, &claims()).unwrap(),
                "signature",
            ),
            ("garbage", "not a jwt".to_owned(), "decoding JWT"),
            ("empty", String::new(), "decoding JWT"),
            ("three garbage parts", "a.b.c".to_owned(), "decoding JWT"),
            (
                "missing kid",
                hand_made(&no_kid, &payload(), b"s3cr3t"),
                "no kid",
            ),
            ("alg none", alg_none, "decoding JWT"),
            (
                "RS256",
                hand_made(&rs256, &payload(), b"s3cr3t"),
                "unsupported alg RS256",
            ),
            ("HS512", hs512, "unsupported alg HS512"),
            ("missing iat", without("iat"), "iat must be specified"),
            ("missing exp", without("exp"), "exp must be specified"),
            (
                "string exp",
                with("exp", json!("1700003600")),
                "exp must be a whole",
            ),
            ("float iat", with("iat", json!(1.5)), "iat must be a whole"),
            (
                "missing capability",
                without(CAPABILITY),
                "capability must be specified",
            ),
            (
                "empty capability",
                with(CAPABILITY, json!("")),
                "capability must not be empty",
            ),
            (
                "object capability",
                with(CAPABILITY, json!({"*": ["*"]})),
                "capability must be a string",
            ),
            (
                "non-JSON capability",
                with(CAPABILITY, json!("{oops")),
                "capability must be a JSON object",
            ),
            (
                "empty revocation key",
                with(REVOCATION_KEY, json!("")),
                "revocation-key must not be empty",
            ),
            (
                "number revocation key",
                with(REVOCATION_KEY, json!(7)),
                "revocation-key must be a string",
            ),
            (
                "null revocation key",
                with(REVOCATION_KEY, Value::Null),
                "revocation-key must be a string",
            ),
            (
                "number clientId",
                with(CLIENT_ID, json!(7)),
                "clientId must be a string",
            ),
            (
                "object channel claim",
                with("ably.channel.x", json!({"a": 1})),
                "ably.channel.x must be a string",
            ),
            (
                "array payload",
                hand_made(&hs256_header(), &json!([1]), b"s3cr3t"),
                "decoding JWT",
            ),
        ];

        for (name, token, reason) in cases {
            match verify(&token, NOW, 0) {
                Err(Error::Rejected(info)) => {
                    assert_eq!((info.code, info.status_code), (40144, 401), "{name}");
                    assert!(info.message.contains(reason), "{name}: {}", info.message);
                }
                other => panic!("{name}: expected a rejection, got {other:?}"),
            }
        }
    }

    #[test]
    fn empty_client_id_is_40012() {
        let mut payload = payload();
        payload["x-ably-clientId"] = json!("");
        let token = hand_made(&hs256_header(), &payload, b"s3cr3t");

        assert_eq!(rejection(verify(&token, NOW, 0)), (40012, 400));
    }

    #[test]
    fn expired_by_one_second_is_40142_without_leeway() {
        let claims = AblyJwtClaims::new(NOW - 3600, NOW - 1, CAP);
        let token = encode_jwt(&key(), &claims).unwrap();

        assert_eq!(rejection(verify(&token, NOW, 0)), (40142, 401));
    }

    #[test]
    fn a_token_is_expired_at_exactly_exp() {
        let token = encode_jwt(&key(), &AblyJwtClaims::new(NOW - 60, NOW, CAP)).unwrap();

        assert_eq!(rejection(verify(&token, NOW, 0)), (40142, 401));
        assert!(verify(&token, NOW - 1, 0).is_ok());
    }

    #[test]
    fn leeway_forgives_expiry_and_future_iat_up_to_its_length() {
        let expired = encode_jwt(&key(), &AblyJwtClaims::new(NOW - 600, NOW - 30, CAP)).unwrap();
        let future = encode_jwt(&key(), &AblyJwtClaims::new(NOW + 30, NOW + 600, CAP)).unwrap();

        assert!(verify(&expired, NOW, 31).is_ok());
        assert_eq!(rejection(verify(&expired, NOW, 30)), (40142, 401));
        assert!(verify(&future, NOW, 30).is_ok());
        assert_eq!(rejection(verify(&future, NOW, 29)), (40001, 400));
    }

    #[test]
    fn iat_in_the_future_is_40001_with_status_400() {
        let token = encode_jwt(&key(), &AblyJwtClaims::new(NOW + 1, NOW + 3600, CAP)).unwrap();

        let result = verify(&token, NOW, 0);

        match result {
            Err(Error::Rejected(info)) => {
                assert_eq!((info.code, info.status_code), (40001, 400));
                assert_eq!(
                    info.message,
                    "Invalid token; issuedAt time must not be in the future."
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_forged_expired_token_is_40144_not_40142() {
        let forger = ApiKey::parse("appA.key1:guess").unwrap();
        let token = encode_jwt(&forger, &AblyJwtClaims::new(NOW - 600, NOW - 60, CAP)).unwrap();

        assert_eq!(rejection(verify(&token, NOW, 0)), (40144, 401));
    }

    #[test]
    fn unknown_app_is_40400_with_404_and_unknown_key_in_known_app_with_401() {
        let unknown_app = ApiKey::parse("appZ.key1:s3cr3t").unwrap();
        let unknown_key = ApiKey::parse("appA.key9:s3cr3t").unwrap();
        let bare_kid = json!({"alg": "HS256", "kid": "appA", "typ": "JWT"});

        let app = encode_jwt(&unknown_app, &claims()).unwrap();
        let key = encode_jwt(&unknown_key, &claims()).unwrap();
        let bare = hand_made(&bare_kid, &payload(), b"s3cr3t");

        assert_eq!(rejection(verify(&app, NOW, 0)), (40400, 404));
        assert_eq!(rejection(verify(&key, NOW, 0)), (40400, 401));
        assert_eq!(rejection(verify(&bare, NOW, 0)), (40400, 401));
    }

    #[test]
    fn picks_the_key_named_by_kid() {
        let keys = keys();
        let token = encode_jwt(&keys[0], &claims()).unwrap();

        let verified = verify_jwt(&token, &keys, NOW, 0).unwrap();

        assert_eq!(verified.key.key_name(), "appB.other");
    }

    #[test]
    fn deserialize_applies_the_same_rules() {
        let missing_iat = json!({"exp": NOW, "x-ably-capability": CAP});

        let err = serde_json::from_value::<AblyJwtClaims>(missing_iat).unwrap_err();

        assert_eq!(err.to_string(), "Invalid token; iat must be specified");
    }

    #[test]
    fn unverified_exp_reads_exp_without_the_secret() {
        let token = encode_jwt(&key(), &claims()).unwrap();

        assert_eq!(decode_unverified_exp(&token), Some(NOW + 3600));
        assert_eq!(decode_unverified_exp("not a jwt"), None);
        assert_eq!(
            decode_unverified_exp(&hand_made(&hs256_header(), &json!({}), b"x")),
            None
        );
    }
}
