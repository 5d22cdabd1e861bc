//! Query strings and SSE channel specs with `[?…]` qualifiers
//! (`docs/protocol.md#stream-parameters`).

use shared::codes;

use crate::error::{ApiError, ApiResult};

/// A decoded query string: every `name=value` pair, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `raw` (the part after `?`), percent-decoding names and values.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|raw| {
                url::form_urlencoded::parse(raw.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// A query of these pairs, in order (a realtime ATTACH's `params`).
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` parsed as a `bool` (`true`/`false`), or `default` when absent.
    pub(crate) fn flag(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(invalid_param(name, other)),
        }
    }
}

/// 40003 for a parameter whose value the mock cannot use.
pub(crate) fn invalid_param(name: &str, value: &str) -> ApiError {
    ApiError::new(
        codes::INVALID_PARAMETER_VALUE,
        format!("Invalid value {value:?} for parameter {name}"),
    )
}

/// One entry of `channels`: the channel name with any `[?params]` qualifier
/// taken off, and the qualifier's parameters
/// (`docs/protocol.md#channel-qualifiers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelSpec {
    /// The channel messages are published on: `foo` for `[?rewind=1]foo`,
    /// `[meta]log` for `[meta?x=y]log`.
    pub(crate) name: String,
    /// The qualifier's parameters, which override the request's for this
    /// channel.
    pub(crate) params: Query,
}

/// Splits and parses the `channels` parameter (already percent-decoded):
/// split on `separator` (default `,`), then read each qualifier
/// (`docs/protocol.md#channel-lists-and-separators`).
///
/// # Errors
///
/// 40010 (400) for an invalid name (`docs/protocol.md#channel-names`).
pub(crate) fn channel_specs(channels: &str, separator: &str) -> ApiResult<Vec<ChannelSpec>> {
    let separator = if separator.is_empty() { "," } else { separator };
    channels.split(separator).map(channel_spec).collect()
}

fn channel_spec(text: &str) -> ApiResult<ChannelSpec> {
    let (name, params) = match text.strip_prefix('[') {
        Some(rest) => {
            let close = rest
                .find(']')
                .ok_or_else(|| invalid_channel(text, "unclosed qualifier"))?;
            let (qualifier, body) = (&rest[..close], &rest[close + 1..]);
            let (prefix, params) = qualifier.split_once('?').unwrap_or((qualifier, ""));
            let name = if prefix.is_empty() {
                body.to_owned()
            } else {
                format!("[{prefix}]{body}")
            };
            (name, Query::parse(Some(params)))
        }
        None => (text.to_owned(), Query::default()),
    };
    validate_channel_name(&name)?;
    Ok(ChannelSpec { name, params })
}

/// Checks a channel name against `docs/protocol.md#channel-names`: not empty,
/// no newline, not starting with `:`, and a `[` only as the `[meta]` prefix of
/// a metachannel.
///
/// # Errors
///
/// 40010 (400) naming the rule.
pub(crate) fn validate_channel_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(invalid_channel(name, "name is empty"));
    }
    if name.contains(['\n', '\r']) {
        return Err(invalid_channel(name, "name contains a newline"));
    }
    if name.starts_with(':') {
        return Err(invalid_channel(name, "name starts with ':'"));
    }
    if let Some(rest) = name.strip_prefix("[meta]") {
        if rest.is_empty() {
            return Err(invalid_channel(name, "metachannel name is empty"));
        }
    } else if name.starts_with('[') {
        return Err(invalid_channel(name, "name starts with '['"));
    }
    Ok(())
}

fn invalid_channel(name: &str, why: &str) -> ApiError {
    ApiError::new(
        codes::INVALID_CHANNEL_NAME,
        format!("Invalid channel name {name:?}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_splits_names_that_contain_commas() {
        let specs = channel_specs("fo,o|ba,r", "|").unwrap();

        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fo,o", "ba,r"]);
    }

    #[test]
    fn qualifiers_become_params_and_leave_the_name() {
        let specs = channel_specs(
            "[?rewind=1&delta=vcdiff]foo,[meta?x=y]log,[meta]stats:minute",
            ",",
        )
        .unwrap();

        assert_eq!(specs[0].name, "foo");
        assert_eq!(specs[0].params.get("rewind"), Some("1"));
        assert_eq!(specs[0].params.get("delta"), Some("vcdiff"));
        assert_eq!(specs[1].name, "[meta]log");
        assert_eq!(specs[1].params.get("x"), Some("y"));
        assert_eq!(specs[2].name, "[meta]stats:minute");
    }

    #[test]
    fn invalid_names_are_40010() {
        for bad in ["", ":x", "[x", "[foo]bar", "a\nb", "[meta]", "a,,b"] {
            let err = channel_specs(bad, ",").unwrap_err();
            assert_eq!(err.0.code, 40010, "{bad:?}");
        }
    }
}
