//! TokenRequest and TokenDetails
//! (`docs/protocol.md#tokenrequests-and-tokendetails`).
//!
//! A [`TokenRequest`] is a set of token parameters signed with an API key
//! secret. Whoever holds it can exchange it, without the secret, at
//! `POST /keys/{keyName}/requestToken` for a [`TokenDetails`]
//! (`docs/protocol.md#exchanging-a-tokenrequest`).
//!
//! The signature is the MAC of `docs/protocol.md#the-tokenrequest-mac`:
//!
//! > Take the fields in this fixed order: `keyName`, `ttl`, `capability`,
//! > `clientId`, `timestamp`, `nonce`. Append each field's canonical text
//! > followed by `\n` [...] absent fields [...] contribute an empty string.
//! > Compute HMAC-SHA256 over the UTF-8 bytes of that text. The key is the
//! > UTF-8 key secret. Encode the digest with standard base64, with `=` padding.
//!
//! Capabilities are carried as text. Callers pass the canonical text produced
//! by [`crate::capability`] (`docs/protocol.md#canonical-capability-text`); the
//! MAC covers the text exactly as given, and verification uses the text exactly
//! as received (`docs/protocol.md#capability-text-under-the-mac`).
//!
//! # No field can hold the separator
//!
//! The signed text joins the fields with `\n`, so a field holding a `\n`
//! could shift the ones after it: a clientId `"*\n1700000000000"` signs the
//! same text as the clientId `"*"` with that timestamp and a nonce starting
//! with the real timestamp, and the MAC would carry over to that forged
//! request. So the string fields of a [`TokenRequest`] are types that cannot
//! hold one: [`ClientId`] (no control character at all, and not empty) and
//! [`SignField`] (`keyName`, `capability`, `nonce`: no `\n`). A request that
//! holds one cannot be built, signed, parsed or verified; [`TokenParams`]
//! stays plain text and is checked when it is signed.
//!
//! A receiver (the mock) should check in this order:
//! [`TokenRequest::from_json`] (40001 for a missing or mistyped field, 40003
//! for a `ttl` that is negative or not a number, then 40003 for a field that
//! holds a line feed and 40012 for an empty clientId),
//! [`TokenRequest::validate`] (field ranges and the ±2 minute timestamp
//! window), key lookup, [`TokenRequest::verify_mac`] (40101), and finally the
//! nonce-replay check (40105), which needs state and so is the caller's job.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::capability::Capability;
use crate::error::{Error, Result};
use crate::error_info::{ErrorInfo, codes};
use crate::key::ApiKey;

/// The TTL Ably applies when a request has none: one hour, in ms
/// (`docs/protocol.md#token-requests`).
pub const DEFAULT_TTL_MS: u64 = 3_600_000;

/// The largest TTL Ably accepts: 24 hours, in ms
/// (`docs/protocol.md#ttl-limits`). Keys with revocable tokens are capped at
/// one hour; enforcing that is up to whoever knows the key's settings.
pub const MAX_TTL_MS: u64 = 86_400_000;

/// How far a request's `timestamp` may be from the server's clock, either
/// way: two minutes, in ms (`docs/protocol.md#exchanging-a-tokenrequest`).
pub const TIMESTAMP_TOLERANCE_MS: u64 = 120_000;

/// The shortest nonce Ably accepts, in characters
/// (`docs/protocol.md#token-requests`).
pub const MIN_NONCE_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// A clientId that can be signed into a [`TokenRequest`]: not empty and free
/// of control characters (U+0000–U+001F and U+007F).
///
/// `"*"`, the wildcard (`docs/protocol.md#clientid-rules`), is a valid
/// `ClientId`; refusing it to users is up to whoever decides who a user is.
/// Build one with [`ClientId::new`] or `parse`; read it as a `&str`
/// ([`ClientId::as_str`], or through `Deref`).
///
/// ```
/// use shared::token::ClientId;
///
/// let id: ClientId = "user-1".parse()?;
/// assert_eq!(id, "user-1");
/// assert!("".parse::<ClientId>().is_err());
/// assert!("alice\n1700000000000".parse::<ClientId>().is_err());
/// # Ok::<(), shared::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    /// Checks `id`.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with 40012 (400) for an empty `id`, and with
    /// 40003 (400) naming the first control character it holds.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(rejected(
                codes::INVALID_CLIENT_ID,
                "clientId can't be an empty string",
            ));
        }
        if let Some(control) = id.chars().find(char::is_ascii_control) {
            return Err(Error::Rejected(ErrorInfo::from_code(
                codes::INVALID_PARAMETER_VALUE,
                format!(
                    "clientId holds the control character U+{:04X}; a clientId may hold none",
                    u32::from(control)
                ),
            )));
        }
        Ok(Self(id))
    }
}

/// The text of one of a [`TokenRequest`]'s other signed fields (`keyName`,
/// `capability`, `nonce`): any text without a line feed, the separator of
/// the signed text (see the [module docs](self)).
///
/// ```
/// use shared::token::SignField;
///
/// let nonce: SignField = "0123456789abcdef".parse()?;
/// assert_eq!(nonce.len(), 16);
/// assert!("0123456789abcdef\n1700000000000".parse::<SignField>().is_err());
/// # Ok::<(), shared::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignField(String);

impl SignField {
    /// Checks `text`.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with 40003 (400) if `text` holds a `\n`.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        Self::named("text", text.into())
    }

    /// [`SignField::new`], with the field's name in the error.
    fn named(field: &str, text: String) -> Result<Self> {
        if text.contains('\n') {
            return Err(line_feed_in(field));
        }
        Ok(Self(text))
    }
}

/// The canonical text of a capability
/// (`docs/protocol.md#canonical-capability-text`). It never holds a line feed:
/// it is compact JSON, whose strings escape control characters.
impl From<&Capability> for SignField {
    fn from(capability: &Capability) -> Self {
        let text = capability.to_canonical_string();
        debug_assert!(!text.contains('\n'), "{text}");
        Self(text)
    }
}

fn line_feed_in(field: &str) -> Error {
    Error::Rejected(ErrorInfo::from_code(
        codes::INVALID_PARAMETER_VALUE,
        format!(
            "{field} holds a line feed, the separator of a TokenRequest's signed text; it may hold none"
        ),
    ))
}

/// What [`ClientId`] and [`SignField`] share: a checked `String` that reads
/// as a `&str`, compares with strings, and is text on the wire.
macro_rules! checked_text {
    ($type:ident) => {
        impl $type {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, as an owned `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $type {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $type {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $type {
            type Err = Error;

            /// Same as `new`.
            fn from_str(text: &str) -> Result<Self> {
                Self::new(text)
            }
        }

        impl TryFrom<String> for $type {
            type Error = Error;

            /// Same as `new`.
            fn try_from(text: String) -> Result<Self> {
                Self::new(text)
            }
        }

        impl From<$type> for String {
            fn from(text: $type) -> String {
                text.0
            }
        }

        impl PartialEq<str> for $type {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $type {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $type {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$type> for String {
            fn eq(&self, other: &$type) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$type> for &str {
            fn eq(&self, other: &$type) -> bool {
                *self == other.0
            }
        }

        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_text!(ClientId);
checked_text!(SignField);

/// The parameters a token is requested with: the unsigned part of a
/// [`TokenRequest`].
///
/// Every field is optional, as in ably-js; absent ones are left out of the
/// JSON. Deserializing accepts `ttl` as a number or a numeric string, so the
/// same type reads a JSON body and an `authUrl` query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenParams {
    /// Requested lifetime in ms; Ably uses [`DEFAULT_TTL_MS`] when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_u64::optional"
    )]
    pub ttl: Option<u64>,
    /// Canonical capability text (from [`crate::capability`]); absent means
    /// the key's whole capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The client id to bind the token to; `"*"` is the wildcard
    /// (`docs/protocol.md#clientid-rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A signed (or, without `mac`, unsigned) token request
/// (`docs/protocol.md#token-requests`, TE1–TE6).
///
/// Serializes to the camelCase JSON ably-js sends, leaving out absent
/// optional fields. Deserializing accepts `ttl` and `timestamp` as numbers or
/// numeric strings, because Ably's own docs send `"ttl":"3600000"`, and
/// refuses a string field holding a line feed (a clientId holding any
/// control character), which could shift the signed text (see the
/// [module docs](self)).
///
/// ```
/// use shared::key::ApiKey;
/// use shared::token::{TokenParams, TokenRequest};
///
/// let key: ApiKey = "xVLyHw.mDYnFA:s3cr3t".parse()?;
/// let params = TokenParams { client_id: Some("user-1".into()), ..TokenParams::default() };
///
/// let request = TokenRequest::new_signed(&key, params, 1_700_000_000_000)?;
///
/// assert!(request.verify_mac(key.secret()).is_ok());
///
/// // A clientId that would shift the signed text cannot be signed.
/// let forged = TokenParams { client_id: Some("*\n1700000000000".into()), ..TokenParams::default() };
/// assert!(TokenRequest::new_signed(&key, forged, 1_700_000_000_000).is_err());
/// # Ok::<(), shared::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "WireTokenRequest")]
pub struct TokenRequest {
    /// The signing key's name, `appId.keyId`.
    pub key_name: SignField,
    /// Requested lifetime in ms; see [`TokenRequest::effective_ttl_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Capability text, signed exactly as it appears here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<SignField>,
    /// The client id the token will carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// When the request was signed, in ms since the Unix epoch.
    pub timestamp: u64,
    /// A random string of at least [`MIN_NONCE_LEN`] characters that makes the
    /// request single-use.
    pub nonce: SignField,
    /// The base64 HMAC-SHA256 of [`TokenRequest::sign_text`]; `None` for an
    /// unsigned request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A [`TokenRequest`] as JSON carries it, before its text fields are
/// checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTokenRequest {
    key_name: String,
    #[serde(default, deserialize_with = "lenient_u64::optional")]
    ttl: Option<u64>,
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(deserialize_with = "lenient_u64::required")]
    timestamp: u64,
    nonce: String,
    #[serde(default)]
    mac: Option<String>,
}

impl TryFrom<WireTokenRequest> for TokenRequest {
    type Error = Error;

    fn try_from(wire: WireTokenRequest) -> Result<Self> {
        Ok(Self {
            key_name: SignField::named("keyName", wire.key_name)?,
            ttl: wire.ttl,
            capability: wire
                .capability
                .map(|text| SignField::named("capability", text))
                .transpose()?,
            client_id: wire.client_id.map(ClientId::new).transpose()?,
            timestamp: wire.timestamp,
            nonce: SignField::named("nonce", wire.nonce)?,
            mac: wire.mac,
        })
    }
}

impl TokenRequest {
    /// Signs `params` with `key` at `timestamp_ms` (ms since the Unix epoch),
    /// with a fresh nonce from [`generate_nonce`].
    ///
    /// # Errors
    ///
    /// [`Error::Random`] if the operating system's random number generator
    /// fails, and the errors of [`TokenRequest::sign_with_nonce`].
    pub fn new_signed(key: &ApiKey, params: TokenParams, timestamp_ms: u64) -> Result<Self> {
        Self::sign_with_nonce(key, params, timestamp_ms, generate_nonce()?)
    }

    /// Signs `params` with `key` at `timestamp_ms` using the given nonce.
    ///
    /// Meant for tests and known-answer vectors; real requests need a random
    /// nonce, so use [`TokenRequest::new_signed`].
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with the code Ably would answer if the request
    /// breaks a rule [`TokenRequest::validate`] checks (apart from the
    /// timestamp window): a nonce shorter than [`MIN_NONCE_LEN`] (40001), an
    /// empty client id (40012), a TTL of zero or over [`MAX_TTL_MS`] (40003);
    /// and with 40003 a client id holding a control character or a capability
    /// or nonce holding a line feed, which no [`TokenRequest`] can hold.
    /// Signing a request Ably is bound to reject helps nobody.
    pub fn sign_with_nonce(
        key: &ApiKey,
        params: TokenParams,
        timestamp_ms: u64,
        nonce: String,
    ) -> Result<Self> {
        let TokenParams {
            ttl,
            capability,
            client_id,
        } = params;
        let mut request = Self {
            // `ApiKey::parse` allows only `[A-Za-z0-9_-.]` in a key name.
            key_name: SignField(key.key_name().to_owned()),
            ttl,
            capability: capability
                .map(|text| SignField::named("capability", text))
                .transpose()?,
            client_id: client_id.map(ClientId::new).transpose()?,
            timestamp: timestamp_ms,
            nonce: SignField::named("nonce", nonce)?,
            mac: None,
        };
        request.check_fields()?;
        request.mac = Some(compute_mac(key.secret(), &request));
        Ok(request)
    }

    /// Parses a request body (JSON, whatever its `Content-Type` said).
    ///
    /// `ttl` may be a number or a string of decimal digits (the docs' unsigned
    /// example sends `"ttl":"3600000"`, `docs/protocol.md#token-requests`);
    /// `null` counts as absent.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidTokenRequest`] (→ 40001, 400) if the body is not a
    ///   JSON object, misses `keyName`, `timestamp` or `nonce`, or has a field
    ///   other than `ttl` of the wrong type;
    /// - then [`Error::Rejected`] with 40003 (400) "Invalid value for TTL" if
    ///   `ttl` is negative or not a number
    ///   (`docs/protocol.md#exchanging-a-tokenrequest`: "ttl negative or not a
    ///   number → 40003"), including a fraction, a string that is not all
    ///   digits and a value past `u64`;
    /// - then [`Error::Rejected`] with 40003 (400) if `keyName`, `capability`
    ///   or `nonce` holds a line feed or `clientId` a control character, and
    ///   40012 (400) for `clientId: ""` (see [`ClientId`] and [`SignField`]).
    pub fn from_json(body: impl AsRef<[u8]>) -> Result<Self> {
        let invalid = |err: serde_json::Error| Error::InvalidTokenRequest(err.to_string());
        let mut value: serde_json::Value =
            serde_json::from_slice(body.as_ref()).map_err(invalid)?;
        // `ttl` is set aside so that a bad one gets its own code, after the
        // structural checks (a body missing `nonce` is 40001 whatever its ttl).
        let ttl = value
            .as_object_mut()
            .and_then(|object| object.remove("ttl"))
            .filter(|ttl| !ttl.is_null());
        let mut wire: WireTokenRequest = serde_json::from_value(value).map_err(invalid)?;
        wire.ttl = ttl
            .map(|ttl| {
                lenient_u64::required(&ttl)
                    .map_err(|_| rejected(codes::INVALID_PARAMETER_VALUE, "Invalid value for TTL"))
            })
            .transpose()?;
        Self::try_from(wire)
    }

    /// The text the MAC covers (`docs/protocol.md#the-tokenrequest-mac`):
    /// `keyName\nttl\ncapability\nclientId\ntimestamp\nnonce\n`, absent fields
    /// as empty strings.
    ///
    /// No field can hold a `\n` (their types refuse it), so the text reads
    /// back into exactly these fields and no others.
    pub fn sign_text(&self) -> String {
        let ttl = self.ttl.map(|ttl| ttl.to_string()).unwrap_or_default();
        format!(
            "{}\n{ttl}\n{}\n{}\n{}\n{}\n",
            self.key_name,
            self.capability.as_deref().unwrap_or_default(),
            self.client_id.as_deref().unwrap_or_default(),
            self.timestamp,
            self.nonce,
        )
    }

    /// Checks `mac` against the MAC of this request under `secret`, in
    /// constant time.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with 40101 (401) "Request mac does not match" if
    /// the MAC is wrong or is not valid base64, and 40101 "Request mac is
    /// missing" if there is none.
    pub fn verify_mac(&self, secret: &SecretString) -> Result<()> {
        let mismatch = || rejected(codes::INVALID_CREDENTIALS, "Request mac does not match");
        let mac = self
            .mac
            .as_deref()
            .ok_or_else(|| rejected(codes::INVALID_CREDENTIALS, "Request mac is missing"))?;
        let tag = BASE64.decode(mac).map_err(|_| mismatch())?;
        // `verify_slice` compares in constant time (digest's `CtOutput`).
        hmac_over(secret, &self.sign_text())
            .verify_slice(&tag)
            .map_err(|_| mismatch())
    }

    /// Checks the request against Ably's rules at server time `now_ms` (ms
    /// since the Unix epoch). The MAC and nonce reuse are checked elsewhere
    /// ([`TokenRequest::verify_mac`]; replay needs state).
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with, in order of checking:
    ///
    /// - 40001 (400) for an empty `keyName` or a nonce shorter than
    ///   [`MIN_NONCE_LEN`] characters;
    /// - 40003 (400) "Excessive value for TTL" above [`MAX_TTL_MS`], and
    ///   40003 for a TTL of zero;
    /// - 40104 (401) "Timestamp not current" when `timestamp` is more than
    ///   [`TIMESTAMP_TOLERANCE_MS`] away from `now_ms`, either way.
    pub fn validate(&self, now_ms: u64) -> Result<()> {
        self.check_fields()?;
        if self.timestamp.abs_diff(now_ms) > TIMESTAMP_TOLERANCE_MS {
            return Err(rejected(
                codes::TIMESTAMP_NOT_CURRENT,
                "Timestamp not current",
            ));
        }
        Ok(())
    }

    /// The lifetime the token will get: `ttl`, or [`DEFAULT_TTL_MS`].
    pub fn effective_ttl_ms(&self) -> u64 {
        self.ttl.unwrap_or(DEFAULT_TTL_MS)
    }

    /// The time-independent part of [`TokenRequest::validate`].
    fn check_fields(&self) -> Result<()> {
        if self.key_name.is_empty() {
            return Err(rejected(
                codes::INVALID_REQUEST_BODY,
                "Invalid token request; keyName must not be empty",
            ));
        }
        // Ably documents the 16-character minimum
        // (`docs/protocol.md#token-requests`) but not the code it answers with;
        // 40001 (invalid request body) is our inference.
        if self.nonce.chars().count() < MIN_NONCE_LEN {
            return Err(rejected(
                codes::INVALID_REQUEST_BODY,
                "Invalid token request; nonce must be at least 16 characters",
            ));
        }
        match self.ttl {
            Some(ttl) if ttl > MAX_TTL_MS => Err(rejected(
                codes::INVALID_PARAMETER_VALUE,
                "Excessive value for TTL",
            )),
            // A token that expires as it is issued is useless; Ably's answer
            // is undocumented, so this follows the "invalid ttl" row
            // (`docs/protocol.md#exchanging-a-tokenrequest`).
            Some(0) => Err(rejected(
                codes::INVALID_PARAMETER_VALUE,
                "Invalid value for TTL",
            )),
            _ => Ok(()),
        }
    }
}

/// The MAC of `docs/protocol.md#the-tokenrequest-mac`: HMAC-SHA256 of
/// `request`'s [`TokenRequest::sign_text`] keyed with the UTF-8 bytes of
/// `secret`, as standard base64 with `=` padding. (`request.mac` is not read.)
pub fn compute_mac(secret: &SecretString, request: &TokenRequest) -> String {
    BASE64.encode(
        hmac_over(secret, &request.sign_text())
            .finalize()
            .into_bytes(),
    )
}

fn hmac_over(secret: &SecretString, text: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(text.as_bytes());
    mac
}

/// A fresh nonce: 16 bytes from the operating system's CSPRNG, as 32
/// lowercase hex characters.
///
/// That is 128 bits of entropy, twice the minimum length Ably asks for and
/// with no modulo bias (each byte maps to exactly two hex digits). ably-js uses
/// 16 random decimal digits; Ably only requires at least 16 characters.
///
/// # Errors
///
/// [`Error::Random`] if the random number generator fails.
pub fn generate_nonce() -> Result<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect())
}

/// An issued Ably token (`docs/protocol.md#exchanging-a-tokenrequest`,
/// TD1–TD7), as `requestToken` returns it.
///
/// `issued` and `expires` are ms since the Unix epoch. Absent optional fields
/// are left out of the JSON; unknown fields are ignored when reading. `Debug`
/// redacts the token, which is a bearer credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDetails {
    /// The token string, `appId.<opaque>` (`docs/protocol.md#token-strings`).
    /// Treat it as opaque.
    pub token: String,
    /// The name of the key the token was issued from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// When the token was issued, in ms since the Unix epoch.
    pub issued: u64,
    /// When the token expires, in ms since the Unix epoch.
    pub expires: u64,
    /// Canonical text of the capability the token grants (after
    /// intersection with the key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// The client id bound to the token, if the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Shows every field but the token, which reads `[REDACTED]`.
impl fmt::Debug for TokenDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenDetails")
            .field("token", &"[REDACTED]")
            .field("key_name", &self.key_name)
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .field("capability", &self.capability)
            .field("client_id", &self.client_id)
            .finish()
    }
}

fn rejected(code: u32, message: &str) -> Error {
    Error::Rejected(ErrorInfo::from_code(code, message))
}

/// Deserializes a `u64` from a JSON number or a string of decimal digits.
mod lenient_u64 {
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

    struct U64Visitor;

    impl Visitor<'_> for U64Visitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer, as a number or a string of digits")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            // `u64::from_str` would also take a leading `+`.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::invalid_value(Unexpected::Str(v), &self));
            }
            v.parse()
                .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }
    }

    struct Lenient(u64);

    impl<'de> Deserialize<'de> for Lenient {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(U64Visitor).map(Lenient)
        }
    }

    pub(super) fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(U64Visitor)
    }

    pub(super) fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        Ok(Option::<Lenient>::deserialize(deserializer)?.map(|Lenient(v)| v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    /// Changes one thing about a request.
    type Edit = fn(&mut TokenRequest);

    const NOW: u64 = 1_700_000_000_000;
    const NONCE: &str = "0123456789abcdef";

    fn key() -> ApiKey {
        ApiKey::parse("xVLyHw.mDYnFA:s3cr3t").unwrap()
    }

    fn full_params() -> TokenParams {
        TokenParams {
            ttl: Some(3_600_000),
            capability: Some(r#"{"*":["subscribe"]}"#.to_owned()),
            client_id: Some("user-1".to_owned()),
        }
    }

    fn signed(params: TokenParams) -> TokenRequest {
        TokenRequest::sign_with_nonce(&key(), params, NOW, NONCE.to_owned()).unwrap()
    }

    fn field(text: &str) -> SignField {
        text.parse().unwrap()
    }

    fn code_of(result: Result<()>) -> (u32, u16) {
        match result {
            Err(Error::Rejected(info)) => (info.code, info.status_code),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn mac_matches_the_worked_example_with_all_fields() {
        let request = signed(full_params());

        assert_eq!(
            request.sign_text(),
            "xVLyHw.mDYnFA\n3600000\n{\"*\":[\"subscribe\"]}\nuser-1\n1700000000000\n0123456789abcdef\n"
        );
        assert_eq!(
            request.mac.as_deref(),
            Some("Owfcylx5b+3ucKFmMl+hvjbnTsE9QiU1UH7kF+gooaU=")
        );
    }

    #[test]
    fn mac_matches_the_worked_example_without_optional_fields() {
        let request = signed(TokenParams::default());

        assert_eq!(
            request.sign_text(),
            "xVLyHw.mDYnFA\n\n\n\n1700000000000\n0123456789abcdef\n"
        );
        assert_eq!(
            request.mac.as_deref(),
            Some("F+bhmlt9V/OW5HC+xRJSwqKJ/wXwtU7TYNxaWBLK7uc=")
        );
    }

    #[test]
    fn signed_request_serializes_like_ably_js() {
        let full = serde_json::to_value(signed(full_params())).unwrap();
        let bare = serde_json::to_value(signed(TokenParams::default())).unwrap();

        assert_eq!(
            full,
            json!({
                "keyName": "xVLyHw.mDYnFA",
                "ttl": 3_600_000,
                "capability": "{\"*\":[\"subscribe\"]}",
                "clientId": "user-1",
                "timestamp": NOW,
                "nonce": NONCE,
                "mac": "Owfcylx5b+3ucKFmMl+hvjbnTsE9QiU1UH7kF+gooaU="
            })
        );
        assert_eq!(
            bare,
            json!({
                "keyName": "xVLyHw.mDYnFA",
                "timestamp": NOW,
                "nonce": NONCE,
                "mac": "F+bhmlt9V/OW5HC+xRJSwqKJ/wXwtU7TYNxaWBLK7uc="
            })
        );
    }

    #[test]
    fn json_round_trips() {
        let request = signed(full_params());

        let text = serde_json::to_string(&request).unwrap();

        assert_eq!(TokenRequest::from_json(text).unwrap(), request);
    }

    #[test]
    fn verify_accepts_its_own_signature() {
        let key = key();

        let request = TokenRequest::new_signed(&key, full_params(), NOW).unwrap();

        assert!(request.verify_mac(key.secret()).is_ok());
        assert!(request.validate(NOW).is_ok());
    }

    #[test]
    fn verify_rejects_every_tampered_field_with_40101() {
        let original = signed(full_params());
        let tampered: [(&str, Edit); 10] = [
            ("keyName", |r| r.key_name = field("xVLyHw.other")),
            ("ttl", |r| r.ttl = Some(7_200_000)),
            ("ttl removed", |r| r.ttl = None),
            ("capability", |r| {
                r.capability = Some(field(r#"{"*":["*"]}"#))
            }),
            ("capability removed", |r| r.capability = None),
            ("clientId", |r| r.client_id = Some("admin".parse().unwrap())),
            ("clientId removed", |r| r.client_id = None),
            ("timestamp", |r| r.timestamp += 1),
            ("nonce", |r| r.nonce = field("fedcba9876543210")),
            ("mac", |r| {
                r.mac = Some("F+bhmlt9V/OW5HC+xRJSwqKJ/wXwtU7TYNxaWBLK7uc=".into());
            }),
        ];

        for (field, tamper) in tampered {
            let mut request = original.clone();
            tamper(&mut request);

            let result = request.verify_mac(key().secret());

            assert_eq!(code_of(result), (40101, 401), "{field}");
        }
    }

    #[test]
    fn verify_rejects_a_wrong_secret_and_a_malformed_or_missing_mac() {
        let request = signed(full_params());
        let mut malformed = request.clone();
        malformed.mac = Some("not base64!".into());
        let mut truncated = request.clone();
        truncated.mac = Some(BASE64.encode([0_u8; 16]));
        let mut missing = request.clone();
        missing.mac = None;
        let other = SecretString::from("other");

        assert_eq!(code_of(request.verify_mac(&other)), (40101, 401));
        assert_eq!(code_of(malformed.verify_mac(key().secret())), (40101, 401));
        assert_eq!(code_of(truncated.verify_mac(key().secret())), (40101, 401));
        assert_eq!(code_of(missing.verify_mac(key().secret())), (40101, 401));
    }

    #[test]
    fn deserializes_ttl_and_timestamp_from_numeric_strings() {
        let body = r#"{"keyName":"a.b","ttl":"3600000","timestamp":"1700000000000","nonce":"0123456789abcdef"}"#;

        let request = TokenRequest::from_json(body).unwrap();

        assert_eq!(request.ttl, Some(3_600_000));
        assert_eq!(request.timestamp, NOW);
        assert_eq!(request.mac, None);
    }

    #[test]
    fn missing_or_mistyped_fields_are_40001() {
        let bodies = [
            r#"{"timestamp":1,"nonce":"0123456789abcdef"}"#,
            r#"{"keyName":"a.b","nonce":"0123456789abcdef"}"#,
            r#"{"keyName":"a.b","timestamp":1}"#,
            r#"{"keyName":"a.b","timestamp":-1,"nonce":"0123456789abcdef"}"#,
            r#"{"keyName":"a.b","timestamp":1,"nonce":7}"#,
            // Structure is checked before ttl.
            r#"{"keyName":"a.b","timestamp":1,"ttl":-5}"#,
            "[]",
            "not json",
        ];

        for body in bodies {
            let err = TokenRequest::from_json(body).unwrap_err();

            assert!(matches!(err, Error::InvalidTokenRequest(_)), "{body}");
            assert_eq!(err.error_info().code, 40001, "{body}");
        }
    }

    #[test]
    fn a_negative_or_non_numeric_ttl_is_40003() {
        let ttls = [
            "-5",
            "-1",
            "1.5",
            "3600000.0",
            "1e3",
            "18446744073709551616",
            r#""+5""#,
            r#""-1""#,
            r#""1h""#,
            r#""""#,
            r#""18446744073709551616""#,
            "true",
            "[3600000]",
            r#"{"ms":1}"#,
        ];

        for ttl in ttls {
            let body = format!(
                r#"{{"keyName":"a.b","timestamp":1,"nonce":"0123456789abcdef","ttl":{ttl}}}"#
            );

            let err = TokenRequest::from_json(&body).unwrap_err();

            let info = err.error_info();
            assert_eq!((info.code, info.status_code), (40003, 400), "{ttl}");
            assert_eq!(info.message, "Invalid value for TTL", "{ttl}");
        }
    }

    #[test]
    fn a_ttl_as_a_number_a_digit_string_or_null_is_accepted() {
        let cases = [
            ("3600000", Some(3_600_000)),
            (r#""3600000""#, Some(3_600_000)),
            ("0", Some(0)),
            ("null", None),
        ];

        for (ttl, expected) in cases {
            let body = format!(
                r#"{{"keyName":"a.b","timestamp":1,"nonce":"0123456789abcdef","ttl":{ttl}}}"#
            );

            let request = TokenRequest::from_json(&body).unwrap();

            assert_eq!(request.ttl, expected, "{ttl}");
        }
    }

    #[test]
    fn validate_applies_ablys_field_rules() {
        // (An empty clientId cannot be a `ClientId`: see
        // `text_fields_that_would_shift_the_signed_text_are_refused`.)
        let cases: [(&str, Edit, (u32, u16)); 5] = [
            ("empty keyName", |r| r.key_name = field(""), (40001, 400)),
            (
                "short nonce",
                |r| r.nonce = field("123456789012345"),
                (40001, 400),
            ),
            (
                "ttl over 24 h",
                |r| r.ttl = Some(MAX_TTL_MS + 1),
                (40003, 400),
            ),
            ("zero ttl", |r| r.ttl = Some(0), (40003, 400)),
            (
                "timestamp 30 min old",
                |r| r.timestamp -= 30 * 60_000,
                (40104, 401),
            ),
        ];

        for (name, breakage, expected) in cases {
            let mut request = signed(full_params());
            breakage(&mut request);

            assert_eq!(code_of(request.validate(NOW)), expected, "{name}");
        }
    }

    /// The forgery of a wildcard TokenRequest: a clientId `"*\n<T>"` signs
    /// the same text as clientId `"*"`, timestamp `T` and a nonce
    /// `"<timestamp>\n<nonce>"`, so the MAC would carry over.
    #[test]
    fn a_newline_in_the_client_id_cannot_forge_a_wildcard_token_request() {
        let forged_timestamp = NOW + 60_000;
        let params = TokenParams {
            client_id: Some(format!("*\n{forged_timestamp}")),
            ..TokenParams::default()
        };

        let signing = TokenRequest::sign_with_nonce(&key(), params, NOW, NONCE.to_owned());
        // The re-sent request, with the MAC an unfixed signer would give: the
        // one over the very same text.
        let text = format!("xVLyHw.mDYnFA\n\n\n*\n{forged_timestamp}\n{NOW}\n{NONCE}\n");
        let mac = BASE64.encode(hmac_over(key().secret(), &text).finalize().into_bytes());
        let resent = json!({
            "keyName": "xVLyHw.mDYnFA",
            "clientId": "*",
            "timestamp": forged_timestamp,
            "nonce": format!("{NOW}\n{NONCE}"),
            "mac": mac,
        });
        let parsed = TokenRequest::from_json(resent.to_string());

        assert_eq!(code_of(signing.map(drop)), (40003, 400));
        let info = parsed.unwrap_err().error_info();
        assert_eq!((info.code, info.status_code), (40003, 400));
        assert_eq!(
            info.message,
            "nonce holds a line feed, the separator of a TokenRequest's signed text; it may hold none"
        );
    }

    #[test]
    fn text_fields_that_would_shift_the_signed_text_are_refused() {
        let client_ids = [
            ("alice\n1700000000000", "U+000A"),
            ("tab\there", "U+0009"),
            ("nul\u{0}", "U+0000"),
            ("del\u{7f}", "U+007F"),
            ("cr\r", "U+000D"),
        ];
        let bodies = [
            (
                json!({"keyName": "a.b\nx", "timestamp": 1, "nonce": NONCE}),
                "keyName",
            ),
            (
                json!({"keyName": "a.b", "capability": "{\n}", "timestamp": 1, "nonce": NONCE}),
                "capability",
            ),
            (
                json!({"keyName": "a.b", "timestamp": 1, "nonce": "0123456789abcdef\n"}),
                "nonce",
            ),
            (
                json!({"keyName": "a.b", "clientId": "a\nb", "timestamp": 1, "nonce": NONCE}),
                "clientId",
            ),
        ];

        for (id, named) in client_ids {
            let info = ClientId::new(id).unwrap_err().error_info();
            assert_eq!((info.code, info.status_code), (40003, 400), "{id:?}");
            assert!(info.message.contains(named), "{id:?}: {}", info.message);
        }
        let empty = ClientId::new("").unwrap_err().error_info();
        assert_eq!((empty.code, empty.status_code), (40012, 400));
        assert!(SignField::new("a\nb").is_err());
        assert_eq!(SignField::new("tab\tand\rcr").unwrap(), "tab\tand\rcr");
        for (body, named) in bodies {
            let info = TokenRequest::from_json(body.to_string())
                .unwrap_err()
                .error_info();
            assert_eq!((info.code, info.status_code), (40003, 400), "{body}");
            assert!(info.message.starts_with(named), "{body}: {}", info.message);
            assert!(serde_json::from_value::<TokenRequest>(body).is_err());
        }
        for (capability, nonce) in [(Some("{\n}"), NONCE), (None, "0123456789abcdef\n")] {
            let params = TokenParams {
                capability: capability.map(str::to_owned),
                ..TokenParams::default()
            };
            let signing = TokenRequest::sign_with_nonce(&key(), params, NOW, nonce.to_owned());
            assert_eq!(
                code_of(signing.map(drop)),
                (40003, 400),
                "{capability:?} {nonce:?}"
            );
        }
    }

    #[test]
    fn a_capabilitys_canonical_text_is_a_sign_field() {
        let capability = Capability::parse(r#"{"a\nb":["subscribe"]}"#).unwrap();

        let text = SignField::from(&capability);

        assert_eq!(text, r#"{"a\nb":["subscribe"]}"#);
        assert!(!text.contains('\n'));
    }

    #[test]
    fn timestamp_window_is_two_minutes_either_way_inclusive() {
        let request = signed(TokenParams::default());

        let edges = [
            (NOW - TIMESTAMP_TOLERANCE_MS, true),
            (NOW + TIMESTAMP_TOLERANCE_MS, true),
            (NOW - TIMESTAMP_TOLERANCE_MS - 1, false),
            (NOW + TIMESTAMP_TOLERANCE_MS + 1, false),
        ];

        for (now, ok) in edges {
            assert_eq!(request.validate(now).is_ok(), ok, "now = {now}");
        }
    }

    #[test]
    fn max_ttl_is_accepted_and_default_ttl_applies_when_absent() {
        let max = signed(TokenParams {
            ttl: Some(MAX_TTL_MS),
            ..TokenParams::default()
        });
        let bare = signed(TokenParams::default());

        assert!(max.validate(NOW).is_ok());
        assert_eq!(bare.effective_ttl_ms(), DEFAULT_TTL_MS);
    }

    #[test]
    fn signing_refuses_requests_ably_would_reject() {
        let empty_client = TokenParams {
            client_id: Some(String::new()),
            ..TokenParams::default()
        };

        let short_nonce =
            TokenRequest::sign_with_nonce(&key(), TokenParams::default(), NOW, "short".into());
        let bad_client = TokenRequest::new_signed(&key(), empty_client, NOW);

        assert_eq!(code_of(short_nonce.map(drop)), (40001, 400));
        assert_eq!(code_of(bad_client.map(drop)), (40012, 400));
    }

    #[test]
    fn nonces_are_32_hex_chars_and_differ() {
        let nonces: HashSet<String> = (0..2).map(|_| generate_nonce().unwrap()).collect();

        assert_eq!(nonces.len(), 2);
        for nonce in &nonces {
            assert_eq!(nonce.len(), 32);
            assert!(nonce.len() >= MIN_NONCE_LEN);
            assert!(
                nonce
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
        }
    }

    #[test]
    fn token_details_parse_the_docs_example_exactly() {
        let text = r#"{"token":"appId.XXXX...","keyName":"appId.keyId","issued":1449745478956,"expires":1449749078956,"capability":"{\"*\":[\"subscribe\"],\"private\":[\"presence\",\"publish\",\"subscribe\"]}","clientId":"user-1"}"#;

        let details: TokenDetails = serde_json::from_str(text).unwrap();

        assert_eq!(
            details,
            TokenDetails {
                token: "appId.XXXX...".into(),
                key_name: Some("appId.keyId".into()),
                issued: 1_449_745_478_956,
                expires: 1_449_749_078_956,
                capability: Some(
                    r#"{"*":["subscribe"],"private":["presence","publish","subscribe"]}"#.into()
                ),
                client_id: Some("user-1".into()),
            }
        );
        assert_eq!(serde_json::to_string(&details).unwrap(), text);
    }

    #[test]
    fn token_details_omit_absent_fields_and_ignore_unknown_ones() {
        let text = r#"{"token":"t","issued":1,"expires":2,"somethingNew":true}"#;

        let details: TokenDetails = serde_json::from_str(text).unwrap();

        assert_eq!(details.key_name, None);
        assert_eq!(
            serde_json::to_string(&details).unwrap(),
            r#"{"token":"t","issued":1,"expires":2}"#
        );
    }

    #[test]
    fn token_details_debug_redacts_the_token() {
        let details = TokenDetails {
            token: "appId.very-secret-token".into(),
            key_name: None,
            issued: 1,
            expires: 2,
            capability: None,
            client_id: Some("user-1".into()),
        };

        let debug = format!("{details:?}");

        assert!(!debug.contains("very-secret-token"), "{debug}");
        assert!(
            debug.contains("[REDACTED]") && debug.contains("user-1"),
            "{debug}"
        );
    }

    #[test]
    fn token_params_read_a_query_string_shape() {
        let value = json!({"ttl": "60000", "clientId": "user-1"});

        let params: TokenParams = serde_json::from_value(value).unwrap();

        assert_eq!(
            params,
            TokenParams {
                ttl: Some(60_000),
                capability: None,
                client_id: Some("user-1".into()),
            }
        );
    }
}
