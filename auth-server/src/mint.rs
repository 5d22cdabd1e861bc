//! Turning a decided grant into Ably credentials: an Ably JWT
//! (`docs/protocol.md#ably-jwts`), a signed TokenRequest
//! (`docs/protocol.md#token-requests`,
//! `docs/protocol.md#the-tokenrequest-mac`), or TokenDetails fetched from Ably
//! (`docs/protocol.md#exchanging-a-tokenrequest`).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use sha2::Sha256;
use shared::{ApiKey, ErrorInfo, ErrorResponse, TokenDetails, TokenParams, TokenRequest, codes};
use url::Url;

use crate::app_jwt::Identity;
use crate::error::ApiError;
use crate::policy::CanonicalCapability;

/// What a user gets: decided by policy, request and key, then minted.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The verified user.
    pub(crate) identity: Arc<Identity>,
    /// The capability: policy ∩ request ∩ key, never empty.
    pub(crate) capability: Arc<CanonicalCapability>,
    /// The token lifetime, already clamped to `AUTH_MAX_TOKEN_TTL`.
    pub(crate) ttl: Duration,
    /// When the grant was decided, in ms since the Unix epoch: the issue
    /// time of a JWT or TokenRequest minted for it.
    pub(crate) now_ms: u64,
    /// The latest a credential may end, in ms since the Unix epoch: the app
    /// token's `exp` (`AUTH_TTL_WITHIN_APP_TOKEN`), or `u64::MAX`.
    pub(crate) ends_by_ms: u64,
}

impl Grant {
    /// The verified clientId.
    pub(crate) fn client_id(&self) -> &str {
        &self.identity.client_id
    }

    /// The lifetime, in ms, of a credential issued at `now_ms`: [`Grant::ttl`]
    /// cut so that it ends by [`Grant::ends_by_ms`].
    ///
    /// # Errors
    ///
    /// The 401 of an expired app token if nothing is left (the grant was
    /// decided with at least a second left, so only a slow mint gets here).
    pub(crate) fn ttl_ms_at(&self, now_ms: u64) -> Result<u64, ApiError> {
        match self.ends_by_ms.saturating_sub(now_ms) {
            0 => Err(app_token_expired()),
            left => Ok(ttl_ms(self.ttl).min(left)),
        }
    }
}

/// The refusal of an app token past its `exp`, as verification words it.
pub(crate) fn app_token_expired() -> ApiError {
    ApiError::InvalidCredentials("expired".to_owned())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Signs Ably JWTs (`docs/protocol.md#ably-jwts`) with one key, prepared once:
/// the encoded header `{"alg":"HS256","kid":<key name>,"typ":"JWT"}` and the
/// HMAC-SHA256 state keyed with the key secret, so a token costs one pass over
/// its claims. (What `shared::jwt::encode_jwt` does per call, less the per-call
/// header encoding and HMAC key setup; tests check the result with
/// jsonwebtoken.)
pub(crate) struct JwtSigner {
    /// `base64url(header) + "."`.
    header: String,
    mac: Hmac<Sha256>,
}

/// Never shows the keyed HMAC state, which signs like the secret.
impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    pub(crate) fn new(key: &ApiKey) -> Self {
        let header = serde_json::json!({"alg": "HS256", "kid": key.key_name(), "typ": "JWT"});
        let mut encoded = URL_SAFE_NO_PAD.encode(header.to_string());
        encoded.push('.');
        let mac = Hmac::<Sha256>::new_from_slice(key.secret().expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        Self {
            header: encoded,
            mac,
        }
    }

    /// An Ably JWT for `grant`, issued at [`Grant::now_ms`]: `iat` is that
    /// second, a random `jti` so two tokens minted in the same second still
    /// differ, and `exp = iat + ttl` (ttl from [`Grant::ttl_ms_at`], rounded
    /// up to whole seconds). Rounding up never passes [`Grant::ends_by_ms`]
    /// when that is whole seconds: with `now = 1000 * iat + r` and
    /// `ttl <= ends_by - now`, `iat + ceil(ttl / 1000) <= ends_by / 1000`.
    pub(crate) fn jwt(&self, grant: &Grant) -> Result<String, ApiError> {
        let now_secs = grant.now_ms / 1000;
        let ttl_secs = grant.ttl_ms_at(grant.now_ms)?.div_ceil(1000).max(1);
        let jti = random_hex().context("generating a jti")?;
        // The claims of `docs/protocol.md#jwt-claims`, written out: the two
        // strings come as JSON string literals already (escaped once per grant
        // and per user).
        let capability = &grant.capability.json;
        let client_id = &grant.identity.client_id_json;
        let revocation_key = grant
            .identity
            .revocation_key
            .as_ref()
            .map_or(0, |key| key.json.len() + 26);
        let mut claims =
            Vec::with_capacity(capability.len() + client_id.len() + revocation_key + 128);
        claims.extend_from_slice(b"{\"iat\":");
        push_decimal(&mut claims, now_secs);
        claims.extend_from_slice(b",\"exp\":");
        push_decimal(&mut claims, now_secs.saturating_add(ttl_secs));
        claims.extend_from_slice(b",\"x-ably-capability\":");
        claims.extend_from_slice(capability.as_bytes());
        claims.extend_from_slice(b",\"x-ably-clientId\":");
        claims.extend_from_slice(client_id.as_bytes());
        if let Some(key) = &grant.identity.revocation_key {
            claims.extend_from_slice(b",\"x-ably-revocation-key\":");
            claims.extend_from_slice(key.json.as_bytes());
        }
        claims.extend_from_slice(b",\"jti\":\"");
        claims.extend_from_slice(jti.as_str().as_bytes());
        claims.extend_from_slice(b"\"}");
        let mut token = Vec::with_capacity(self.header.len() + claims.len() * 4 / 3 + 48);
        token.extend_from_slice(self.header.as_bytes());
        push_base64url(&mut token, &claims);
        let mut mac = self.mac.clone();
        mac.update(&token);
        token.push(b'.');
        push_base64url(&mut token, &mac.finalize().into_bytes());
        Ok(String::from_utf8(token).expect("base64url text is ASCII"))
    }
}

/// Appends `bytes` in unpadded base64url.
fn push_base64url(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = URL_SAFE_NO_PAD
        .encode_slice(bytes, &mut out[start..])
        .expect("room for the padded length was made");
    out.truncate(start + written);
}

/// Appends `n` in decimal, without a formatter.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// How many random bytes one `getrandom` call fetches per thread.
const RANDOM_POOL_BYTES: usize = 1024;

thread_local! {
    /// Bytes from the operating system's CSPRNG, handed out 16 at a time
    /// and each used once: one system call per 64 `jti`s or nonces instead
    /// of one each.
    static RANDOM_POOL: RefCell<([u8; RANDOM_POOL_BYTES], usize)> =
        const { RefCell::new(([0; RANDOM_POOL_BYTES], RANDOM_POOL_BYTES)) };
}

/// 16 fresh bytes from the operating system's CSPRNG as 32 lowercase hex
/// characters: 128 bits, like `shared::token::generate_nonce`, which it
/// replaces on the hot path.
fn random_hex() -> Result<Hex32, getrandom::Error> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0_u8; 16];
    RANDOM_POOL.with_borrow_mut(|(pool, used)| {
        if *used + bytes.len() > pool.len() {
            getrandom::fill(pool)?;
            *used = 0;
        }
        let taken = &mut pool[*used..*used + bytes.len()];
        bytes.copy_from_slice(taken);
        // Handed out once: wipe them from the pool.
        taken.fill(0);
        *used += bytes.len();
        Ok::<_, getrandom::Error>(())
    })?;
    let mut hex = [0_u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    Ok(Hex32(hex))
}

/// 32 lowercase hex digits.
struct Hex32([u8; 32]);

impl Hex32 {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// A TokenRequest for `grant`, signed at `now_ms` with a fresh nonce; the
/// capability is canonical text
/// (`docs/protocol.md#capability-text-under-the-mac`: we always canonicalise).
/// Its `ttl` ends by [`Grant::ends_by_ms`] counted from `now_ms`; Ably counts
/// it from when the request is exchanged, which can be later (up to the
/// two-minute timestamp window).
pub(crate) fn token_request(
    key: &ApiKey,
    grant: &Grant,
    now_ms: u64,
) -> Result<TokenRequest, ApiError> {
    let params = TokenParams {
        ttl: Some(grant.ttl_ms_at(now_ms)?),
        capability: Some(grant.capability.text.clone()),
        client_id: Some(grant.client_id().to_owned()),
    };
    let nonce = random_hex().context("generating a nonce")?;
    Ok(
        TokenRequest::sign_with_nonce(key, params, now_ms, nonce.as_str().to_owned())
            .context("signing the TokenRequest")?,
    )
}

/// Exchanges a TokenRequest for `grant` at Ably's
/// `POST {rest_url}/keys/{keyName}/requestToken`.
///
/// Ably's refusals are mapped by [`refused`]; anything else that goes wrong
/// is ours to report as a 5xx: 502 when Ably answers with a server error or
/// garbage, 503 when it cannot be reached.
pub(crate) async fn request_token(
    client: &reqwest::Client,
    rest_url: &Url,
    key: &ApiKey,
    grant: &Grant,
) -> Result<TokenDetails, ApiError> {
    let request = token_request(key, grant, now_ms())?;
    let operation = AblyCall::RequestToken;
    let body = call_ably(
        operation,
        client
            .post(key_url(rest_url, key, "requestToken"))
            .json(&request),
    )
    .await?;
    serde_json::from_slice::<TokenDetails>(&body).map_err(|err| {
        tracing::warn!(error = %err, "Ably's requestToken answer is not TokenDetails");
        unavailable(
            StatusCode::BAD_GATEWAY,
            codes::INTERNAL_ERROR,
            "Ably's answer was not TokenDetails",
        )
    })
}

/// Asks Ably to revoke the tokens and JWTs the server's key issued to
/// `targets` (`clientId:…` or `revocationKey:…`): `POST
/// {rest_url}/keys/{keyName}/revokeTokens` with the key's Basic auth (RSA17;
/// `docs/protocol.md#token-revocation`). Returns Ably's answer, which must be
/// a JSON object (`{successCount, failureCount, results}`).
///
/// Errors as [`request_token`]'s: Ably's refusals mapped by [`refused`], a
/// server error or garbage 502, no answer 503.
pub(crate) async fn revoke_tokens(
    client: &reqwest::Client,
    rest_url: &Url,
    key: &ApiKey,
    targets: &[String],
    allow_reauth_margin: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let operation = AblyCall::RevokeTokens;
    let body = serde_json::json!({
        "targets": targets,
        "allowReauthMargin": allow_reauth_margin,
    });
    let request = client
        .post(key_url(rest_url, key, "revokeTokens"))
        .basic_auth(key.key_name(), Some(key.secret().expose_secret()))
        .json(&body);
    let answer = call_ably(operation, request).await?;
    match serde_json::from_slice::<serde_json::Value>(&answer) {
        Ok(serde_json::Value::Object(result)) => Ok(result),
        _ => {
            tracing::warn!("Ably's revokeTokens answer is not a JSON object");
            Err(unavailable(
                StatusCode::BAD_GATEWAY,
                codes::INTERNAL_ERROR,
                "Ably's answer to revokeTokens was not a JSON object",
            ))
        }
    }
}

/// `{rest_url}/keys/{keyName}/{operation}`. ably-js puts the key name into
/// the path as it is (`docs/protocol.md#exchanging-a-tokenrequest`); it is
/// made of `[A-Za-z0-9_-.]` only (`ApiKey::parse`), so no escaping is needed.
fn key_url(rest_url: &Url, key: &ApiKey, operation: &str) -> String {
    format!(
        "{}/keys/{}/{operation}",
        rest_url.as_str().trim_end_matches('/'),
        key.key_name()
    )
}

/// Which of Ably's endpoints the server calls with its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AblyCall {
    /// `requestToken` (`/api/ably-token`).
    RequestToken,
    /// `revokeTokens` (`/api/revoke`).
    RevokeTokens,
}

impl AblyCall {
    fn as_str(self) -> &'static str {
        match self {
            AblyCall::RequestToken => "requestToken",
            AblyCall::RevokeTokens => "revokeTokens",
        }
    }
}

/// Sends `request` to Ably and returns the body of a 2xx answer
/// (`docs/protocol.md#exchanging-a-tokenrequest` [U]: 200 or 201; any 2xx
/// is success). A 4xx is mapped by [`refused`]; a 5xx is a 502, no answer a
/// 503, an answer cut short a 502.
async fn call_ably(
    operation: AblyCall,
    request: reqwest::RequestBuilder,
) -> Result<axum::body::Bytes, ApiError> {
    let name = operation.as_str();
    // No timeout of its own: the request timeout middleware bounds the
    // whole request, this round trip included, and answers 503/50003.
    let response = request.send().await.map_err(|err| {
        tracing::warn!(operation = name, error = %err.without_url(), "the call to Ably failed");
        unavailable(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL_ERROR,
            "cannot reach Ably",
        )
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|err| {
        tracing::warn!(operation = name, error = %err.without_url(), "reading Ably's answer failed");
        unavailable(
            StatusCode::BAD_GATEWAY,
            codes::INTERNAL_ERROR,
            "Ably's answer was cut short",
        )
    })?;
    if status.is_success() {
        return Ok(body);
    }
    let info = serde_json::from_slice::<ErrorResponse>(&body)
        .map(|envelope| envelope.error)
        .unwrap_or_else(|_| {
            ErrorInfo::new(
                codes::INTERNAL_ERROR,
                status.as_u16(),
                format!("Ably answered {status}"),
            )
        });
    if status.is_client_error() {
        Err(refused(operation, status, info))
    } else {
        tracing::warn!(operation = name, status = status.as_u16(), code = info.code, message = %info.message, "Ably failed the call");
        let what = match operation {
            AblyCall::RequestToken => "issue a token",
            AblyCall::RevokeTokens => "revoke tokens",
        };
        Err(unavailable(
            StatusCode::BAD_GATEWAY,
            codes::INTERNAL_ERROR,
            &format!(
                "Ably failed to {what}: {} (code {})",
                info.message, info.code
            ),
        ))
    }
}

/// What Ably's 4xx answer to one of the server's own calls means for the
/// caller. The caller never talks to Ably here: the key, the clock, the
/// nonce and the request are all the server's. So a refusal is the
/// server's problem (500), not bad user credentials: a 401/40101 would
/// blame the user and make SDKs retry forever
/// (`docs/protocol.md#auth-failures-and-retries`). Two refusals keep a meaning
/// for the caller:
/// - 429 (Ably's rate limit): passed on, so the caller retries later;
/// - on `requestToken`, 40160 (the key's own capability allows none of the
///   grant): 403, as when the policy grants nothing, so SDKs stop retrying.
fn refused(operation: AblyCall, status: StatusCode, mut info: ErrorInfo) -> ApiError {
    let name = operation.as_str();
    if status == StatusCode::TOO_MANY_REQUESTS {
        tracing::warn!(operation = name, code = info.code, message = %info.message, "Ably rate-limited the call");
        info.status_code = status.as_u16();
        return ApiError::Ably(info);
    }
    if operation == AblyCall::RequestToken && info.code == codes::OPERATION_NOT_PERMITTED {
        tracing::error!(
            code = info.code,
            message = %info.message,
            "Ably refused the grant's capability: is AUTH_KEY_CAPABILITY wider than the key's own?"
        );
        return ApiError::CapabilityDenied(format!(
            "the auth server's Ably key does not allow the granted capability ({})",
            info.message
        ));
    }
    let what = match (operation, status.as_u16()) {
        (_, 401 | 403 | 404) => "credentials (check its ABLY_API_KEY and clock)",
        (AblyCall::RequestToken, _) => "token request",
        (AblyCall::RevokeTokens, _) => {
            "revocation request (does its key have revocable tokens enabled?)"
        }
    };
    tracing::error!(
        operation = name,
        status = status.as_u16(),
        code = info.code,
        message = %info.message,
        "Ably refused the auth server's own call: {what}"
    );
    ApiError::AblyRefusedServer {
        what,
        code: info.code,
        message: info.message,
    }
}

fn unavailable(status: StatusCode, code: u32, message: &str) -> ApiError {
    ApiError::Unavailable {
        status,
        code,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use shared::Capability;
    use shared::jwt::verify_jwt;

    use super::*;

    #[test]
    fn jwts_verify_with_shared_and_carry_the_grant() {
        let key: ApiKey = "appA.keyA:s3cr3t".parse().unwrap();
        let grant = Grant {
            identity: Arc::new(Identity::new(
                "al\"ice\u{2028}".parse().unwrap(),
                Vec::new(),
                u64::MAX,
            )),
            capability: Arc::new(CanonicalCapability::new(
                Capability::parse(r#"{"chat:\"*":["subscribe"]}"#).unwrap(),
            )),
            ttl: Duration::from_millis(1500),
            now_ms: 1_700_000_000_000,
            ends_by_ms: u64::MAX,
        };

        let token = JwtSigner::new(&key).jwt(&grant).unwrap();

        let claims = verify_jwt(&token, [&key], 1_700_000_001, 0).unwrap().claims;
        assert_eq!(claims.iat, 1_700_000_000);
        assert_eq!(claims.exp, 1_700_000_002, "1.5 s rounds up");
        assert_eq!(claims.capability, r#"{"chat:\"*":["subscribe"]}"#);
        assert_eq!(claims.client_id.as_deref(), Some("al\"ice\u{2028}"));
        assert_eq!(claims.jti.map(|jti| jti.len()), Some(32));
        assert_eq!(
            token.split('.').next(),
            Some(
                URL_SAFE_NO_PAD
                    .encode(r#"{"alg":"HS256","kid":"appA.keyA","typ":"JWT"}"#)
                    .as_str()
            )
        );
    }

    #[test]
    fn a_credential_ends_by_the_app_tokens_exp_whatever_the_millisecond() {
        let key: ApiKey = "appA.keyA:s3cr3t".parse().unwrap();
        let signer = JwtSigner::new(&key);
        let exp = 1_700_000_010;
        let grant = |now_ms| Grant {
            identity: Arc::new(Identity::new("alice".parse().unwrap(), Vec::new(), exp)),
            capability: Arc::new(CanonicalCapability::new(Capability::all())),
            ttl: Duration::from_secs(86_400),
            now_ms,
            ends_by_ms: exp * 1000,
        };

        for now_ms in [1_700_000_000_000, 1_700_000_000_001, 1_700_000_008_999] {
            let grant = grant(now_ms);

            let jwt = signer.jwt(&grant).unwrap();
            let request = token_request(&key, &grant, now_ms).unwrap();

            let claims = verify_jwt(&jwt, [&key], now_ms / 1000, 0).unwrap().claims;
            assert_eq!(claims.exp, exp, "{now_ms}");
            assert_eq!(request.timestamp + request.ttl.unwrap(), exp * 1000);
        }
        assert!(matches!(
            grant(1_700_000_009_000).ttl_ms_at(exp * 1000),
            Err(ApiError::InvalidCredentials(message)) if message == "expired"
        ));
    }

    #[test]
    fn decimals_are_written_without_leading_zeros() {
        for n in [0, 7, 10, 1_700_000_000, u64::MAX] {
            let mut out = Vec::new();

            push_decimal(&mut out, n);

            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn random_hex_is_fresh_across_pool_refills() {
        let draws = 3 * RANDOM_POOL_BYTES / 16;

        let seen: HashSet<String> = (0..draws)
            .map(|_| random_hex().unwrap().as_str().to_owned())
            .collect();

        assert_eq!(seen.len(), draws);
        assert!(seen.iter().all(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
    }

    #[test]
    fn debug_never_shows_the_keyed_state() {
        let signer = JwtSigner::new(&"appA.keyA:s3cr3t".parse().unwrap());

        let debug = format!("{signer:?}");

        assert!(debug.starts_with("JwtSigner { header: "), "{debug}");
        assert!(!debug.contains("mac"), "{debug}");
    }
}
