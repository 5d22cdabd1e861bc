//! Ably API keys (`docs/protocol.md#api-keys`).
//!
//! > An API key string has the form `<appId>.<keyId>:<keySecret>`. The **key
//! > name** is `<appId>.<keyId>`. It is public and identifies the key. The
//! > secret is the part after the first colon.
//!
//! [`ApiKey`] keeps the secret in a [`SecretString`]: it is zeroized on drop and
//! never appears in `Debug`, `Display` or a parse error. Code that needs the
//! bytes (an HMAC, a Basic auth header) asks for them with
//! [`ExposeSecret::expose_secret`](secrecy::ExposeSecret::expose_secret), which
//! makes every use of the secret easy to find.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;

use crate::error::{Error, Result};

/// An Ably API key: a public key name `appId.keyId` and a secret.
///
/// Parse one from the `appId.keyId:secret` text Ably's dashboard shows:
///
/// ```
/// use secrecy::ExposeSecret;
/// use shared::key::ApiKey;
///
/// let key: ApiKey = "xVLyHw.mDYnFA:s3cr3t".parse()?;
///
/// assert_eq!(key.key_name(), "xVLyHw.mDYnFA");
/// assert_eq!(key.app_id(), "xVLyHw");
/// assert_eq!(key.key_id(), "mDYnFA");
/// assert_eq!(key.secret().expose_secret(), "s3cr3t");
/// assert_eq!(format!("{key:?}"), r#"ApiKey { name: "xVLyHw.mDYnFA", secret: "[REDACTED]" }"#);
/// # Ok::<(), shared::Error>(())
/// ```
#[derive(Clone)]
pub struct ApiKey {
    /// `appId.keyId`, stored whole so that [`ApiKey::key_name`] can lend it.
    name: String,
    /// Byte offset of the `.` in `name`.
    dot: usize,
    secret: SecretString,
}

impl ApiKey {
    /// Parses `appId.keyId:secret`.
    ///
    /// The rules are strict so that a mangled key (a stray newline from an
    /// env file, a key name pasted without its secret) fails here rather than
    /// as a confusing 401 later:
    ///
    /// - the key name is everything before the first `:`, the secret everything
    ///   after it (so the secret may itself contain `:`);
    /// - the key name has exactly one `.`, and the app id and key id on either
    ///   side are non-empty and made of ASCII letters, digits, `-` and `_`
    ///   (the alphabet Ably's ids use);
    /// - the secret is non-empty and has no whitespace or control characters.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] naming the rule that failed. The message is a
    /// fixed string, so it can never echo the secret.
    pub fn parse(text: &str) -> Result<Self> {
        let (name, secret) = text
            .split_once(':')
            .ok_or(Error::InvalidKey("expected appId.keyId:secret"))?;
        let (app_id, key_id) = name
            .split_once('.')
            .ok_or(Error::InvalidKey("key name must be appId.keyId"))?;
        if app_id.is_empty() {
            return Err(Error::InvalidKey("app id is empty"));
        }
        if key_id.is_empty() {
            return Err(Error::InvalidKey("key id is empty"));
        }
        if !is_id(app_id) {
            return Err(Error::InvalidKey(
                "app id may only contain ASCII letters, digits, '-' and '_'",
            ));
        }
        if !is_id(key_id) {
            // Also catches a second `.`, as in `app.key.extra:secret`.
            return Err(Error::InvalidKey(
                "key id may only contain ASCII letters, digits, '-' and '_'",
            ));
        }
        if secret.is_empty() {
            return Err(Error::InvalidKey("secret is empty"));
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::InvalidKey(
                "secret contains whitespace or control characters",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            dot: app_id.len(),
            secret: SecretString::from(secret),
        })
    }

    /// The public key name, `appId.keyId`: the JWT `kid` and the TokenRequest
    /// `keyName`.
    pub fn key_name(&self) -> &str {
        &self.name
    }

    /// The app id, the part of the key name before the `.`.
    pub fn app_id(&self) -> &str {
        &self.name[..self.dot]
    }

    /// The key id, the part of the key name after the `.`.
    pub fn key_id(&self) -> &str {
        &self.name[self.dot + 1..]
    }

    /// The secret. Read it with
    /// [`ExposeSecret::expose_secret`](secrecy::ExposeSecret::expose_secret);
    /// its UTF-8 bytes are the HMAC key for JWTs and TokenRequest MACs.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }
}

/// An Ably app id or key id: non-empty ASCII alphanumerics, `-` and `_`.
fn is_id(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FromStr for ApiKey {
    type Err = Error;

    /// Same as [`ApiKey::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Shows the key name and `[REDACTED]` in place of the secret.
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Shows the key name only (`appId.keyId`), so a key can go into a log line
/// as it is. This is not the text [`ApiKey::parse`] reads back.
impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const SECRET: &str = "Sup3r-S3cret/Value+=";

    #[test]
    fn parses_name_ids_and_secret() {
        let key = ApiKey::parse(&format!("xVLyHw.mDYnFA:{SECRET}")).unwrap();

        assert_eq!(key.key_name(), "xVLyHw.mDYnFA");
        assert_eq!(key.app_id(), "xVLyHw");
        assert_eq!(key.key_id(), "mDYnFA");
        assert_eq!(key.secret().expose_secret(), SECRET);
    }

    #[test]
    fn secret_is_everything_after_the_first_colon() {
        let key = ApiKey::parse("app.key:a:b:c").unwrap();

        assert_eq!(key.key_name(), "app.key");
        assert_eq!(key.secret().expose_secret(), "a:b:c");
    }

    #[test]
    fn from_str_matches_parse_and_clone_keeps_the_secret() {
        let key: ApiKey = "app_1.key-2:s".parse().unwrap();

        let copy = key.clone();

        assert_eq!(copy.key_name(), key.key_name());
        assert_eq!(copy.key_name(), "app_1.key-2");
        assert_eq!(copy.secret().expose_secret(), "s");
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let key = ApiKey::parse(&format!("app.key:{SECRET}")).unwrap();

        let debug = format!("{key:?}");
        let display = key.to_string();

        assert_eq!(debug, r#"ApiKey { name: "app.key", secret: "[REDACTED]" }"#);
        assert_eq!(display, "app.key");
        assert!(!debug.contains(SECRET) && !display.contains(SECRET));
    }

    #[test]
    fn malformed_keys_fail_with_messages_that_never_contain_the_secret() {
        let cases = [
            (String::new(), "expected appId.keyId:secret"),
            (format!("app.key{SECRET}"), "expected appId.keyId:secret"),
            (format!("appkey:{SECRET}"), "key name must be appId.keyId"),
            (format!(".key:{SECRET}"), "app id is empty"),
            (format!("app.:{SECRET}"), "key id is empty"),
            (format!("app.key.extra:{SECRET}"), "key id may only contain"),
            (format!("ap p.key:{SECRET}"), "app id may only contain"),
            (format!(" app.key:{SECRET}"), "app id may only contain"),
            (format!("app.k/ey:{SECRET}"), "key id may only contain"),
            ("app.key:".to_owned(), "secret is empty"),
            (format!("app.key:{SECRET}\n"), "secret contains whitespace"),
            (format!("app.key:{SECRET} x"), "secret contains whitespace"),
        ];

        for (input, expected) in cases {
            let err = ApiKey::parse(&input).unwrap_err();

            let message = err.to_string();
            assert!(matches!(err, Error::InvalidKey(_)), "{input:?}");
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(!message.contains(SECRET), "{input:?}: {message}");
            assert!(!format!("{err:?}").contains(SECRET), "{input:?}");
        }
    }

    #[test]
    fn invalid_key_maps_to_40005() {
        let err = ApiKey::parse("nonsense").unwrap_err();

        assert_eq!(
            err.error_info().code,
            crate::codes::INVALID_CREDENTIAL_FORMAT
        );
    }
}
