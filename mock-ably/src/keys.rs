//! The API keys the mock accepts, as `--key` and
//! [`MockAblyBuilder::key`](crate::MockAblyBuilder::key) take them:
//! `appId.keyId:secret`, optionally followed by `=` and the key's capability
//! as JSON, e.g. `app.key:secret={"chat:*":["subscribe"]}`.
//!
//! A key given without a capability gets the one Ably gives a key created
//! without one, [`DEFAULT_KEY_CAPABILITY`] (`{"*":["*"]}`): every operation
//! on every ordinary channel, but not on `[meta]…` or any other
//! `[qualifier]…` channel, which Ably's `*` resource does not match
//! (`docs/protocol.md#resource-wildcards`). A key that should reach those
//! too says so: `app.key:secret={"[*]*":["*"]}`.

use shared::{ApiKey, Capability};

/// The capability of a key given without one: `{"*":["*"]}`, Ably's default
/// for a key created without a capability.
pub const DEFAULT_KEY_CAPABILITY: &str = r#"{"*":["*"]}"#;

/// An API key and the capability it grants, parsed from
/// `appId.keyId:secret` or `appId.keyId:secret=<capability JSON>`.
///
/// The capability starts at the first `=` after the key name that is
/// followed by `{` (whitespace allowed between): Ably's secrets never hold
/// `{`, so a secret that ends in base64 padding (`…=`) still parses as a
/// secret.
///
/// ```
/// use mock_ably::KeySpec;
///
/// let spec = KeySpec::parse(r#"app.key:s3cr3t={"chat:*":["subscribe"]}"#)?;
/// assert_eq!(spec.key().key_name(), "app.key");
/// assert_eq!(spec.capability().to_string(), r#"{"chat:*":["subscribe"]}"#);
///
/// let plain = KeySpec::parse("app.key:s3cr3t")?;
/// assert_eq!(plain.capability().to_string(), r#"{"*":["*"]}"#);
/// # Ok::<(), mock_ably::KeySpecError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeySpec {
    key: ApiKey,
    capability: Capability,
}

/// Why a key given to the mock cannot be used. The message names the key by
/// its name (`appId.keyId`) and never contains its secret.
#[derive(Debug, thiserror::Error)]
pub enum KeySpecError {
    /// The key part is not `appId.keyId:secret`.
    #[error(transparent)]
    Key(Box<shared::Error>),
    /// The capability after `=` is not a valid capability.
    #[error("key {key_name}: {source}")]
    Capability {
        /// The key's name, `appId.keyId`.
        key_name: String,
        /// What is wrong with the capability.
        source: Box<shared::Error>,
    },
}

impl KeySpec {
    /// Parses `appId.keyId:secret`, optionally followed by
    /// `=<capability JSON>`.
    ///
    /// # Errors
    ///
    /// [`KeySpecError::Key`] for a malformed key, [`KeySpecError::Capability`]
    /// (naming the key) for a capability that is not valid JSON or breaks a
    /// capability rule.
    pub fn parse(text: &str) -> Result<Self, KeySpecError> {
        let (key, capability) = split(text);
        let key = ApiKey::parse(key).map_err(|err| KeySpecError::Key(Box::new(err)))?;
        let capability = capability.unwrap_or(DEFAULT_KEY_CAPABILITY);
        Self::with_capability(key, capability)
    }

    /// `key` with the capability `capability` (JSON text).
    ///
    /// # Errors
    ///
    /// [`KeySpecError::Capability`], naming the key, for an invalid
    /// capability.
    pub fn with_capability(key: ApiKey, capability: &str) -> Result<Self, KeySpecError> {
        let capability =
            Capability::parse(capability).map_err(|source| KeySpecError::Capability {
                key_name: key.key_name().to_owned(),
                source: Box::new(source),
            })?;
        Ok(Self { key, capability })
    }

    /// The key.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// What the key may do; tokens and JWTs it signs get at most this.
    pub fn capability(&self) -> &Capability {
        &self.capability
    }

    /// The key and its capability, taken apart.
    pub(crate) fn into_parts(self) -> (ApiKey, Capability) {
        (self.key, self.capability)
    }
}

/// Splits `text` at the first `=` after the first `:` that is followed by
/// `{` (whitespace allowed between): the key, and the capability if any.
fn split(text: &str) -> (&str, Option<&str>) {
    let Some(colon) = text.find(':') else {
        return (text, None);
    };
    let start = text[colon..]
        .match_indices('=')
        .map(|(at, _)| colon + at)
        .find(|&at| text[at + 1..].trim_start().starts_with('{'));
    match start {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn the_capability_starts_at_the_first_equals_sign_followed_by_a_brace() {
        assert_eq!(split("a.b:s"), ("a.b:s", None));
        assert_eq!(split("a.b:s={}"), ("a.b:s", Some("{}")));
        assert_eq!(split("a.b:s== {}"), ("a.b:s=", Some(" {}")));
        assert_eq!(split("a.b:s=x={}"), ("a.b:s=x", Some("{}")));
        assert_eq!(split("a.b:pad=="), ("a.b:pad==", None));
        assert_eq!(split("a=b.c:s"), ("a=b.c:s", None));
        assert_eq!(split("a.b={}"), ("a.b={}", None));
    }

    #[test]
    fn a_secret_ending_in_padding_keeps_it() {
        let spec = KeySpec::parse(r#"app.key:abc=={"x":["publish"]}"#).unwrap();

        assert_eq!(spec.key().secret().expose_secret(), "abc=");
        assert_eq!(spec.capability().to_string(), r#"{"x":["publish"]}"#);
    }

    #[test]
    fn a_bad_capability_names_the_key_and_never_its_secret() {
        for text in [
            r#"app.key:TopSecret={"x":["publsh"]}"#,
            r#"app.key:TopSecret={"x":"#,
            r#"app.key:TopSecret={"x":[]}"#,
        ] {
            let err = KeySpec::parse(text).unwrap_err();

            let message = err.to_string();
            assert!(
                message.starts_with("key app.key: invalid capability: "),
                "{message}"
            );
            assert!(!message.contains("TopSecret"), "{message}");
            assert!(!format!("{err:?}").contains("TopSecret"));
        }
    }
}
