//! Which shape `/api/ably-token` answers in: the bare token as `text/plain`,
//! or TokenDetails as `application/json`, chosen from the request's `Accept`
//! header (RFC 9110 §12.5.1, with q-values).
//!
//! Ably's own recipe for an `authCallback` fetches the endpoint with
//! `fetch()` (which sends `Accept: */*`) and hands `await response.text()` to
//! ably-js, which takes that text as the token itself: TokenDetails JSON there
//! is refused as a double-encoded token (40170). ably-js's `authUrl` sends
//! `Accept: application/json, text/plain` and wants TokenDetails, whose
//! `expires` it renews from. So JSON is answered only to a request that
//! prefers it; anything else, an absent or unparseable header included, gets
//! the text.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// Whether the request's `Accept` prefers `application/json` to
/// `text/plain` ([`prefers_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WantsJson(pub(crate) bool);

impl<S: Send + Sync> FromRequestParts<S> for WantsJson {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut accept = parts.headers.get_all(header::ACCEPT).iter().peekable();
        if accept.peek().is_none() {
            return Ok(Self(false));
        }
        // Several `Accept` fields are one comma-separated list (RFC 9110 §5.3).
        let mut joined = String::new();
        for value in accept {
            let Ok(value) = value.to_str() else {
                return Ok(Self(false));
            };
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(value);
        }
        Ok(Self(prefers_json(&joined)))
    }
}

/// How well one media type is accepted: its q-value in thousandths, and how
/// specific the range that gave it was (`*/*` 0, `type/*` 1, exact 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Acceptance {
    quality: u16,
    specificity: u8,
}

/// Whether `accept` (an `Accept` header's value) prefers `application/json`
/// to `text/plain`: a higher q-value, or the same q-value (above 0) from a
/// range at least as specific that names JSON itself or `application/*`.
///
/// So `application/json, text/plain` (ably-js's `authUrl`) and
/// `text/plain;q=0.5, application/json` are JSON; `*/*` (what `fetch()`
/// sends), `text/plain`, `text/*, application/*;q=0.9` and a browser
/// navigation's `text/html,…,*/*;q=0.8` are text. Elements that do not parse
/// (a bad q-value, a range without `/`) are skipped, as if not sent.
pub(crate) fn prefers_json(accept: &str) -> bool {
    let json = acceptance(accept, "application", "json");
    let text = acceptance(accept, "text", "plain");
    json.quality > 0
        && (json.quality > text.quality
            || (json.quality == text.quality
                && json.specificity > 0
                && json.specificity >= text.specificity))
}

/// How `accept` accepts `kind/subtype`: the most specific matching range
/// decides (RFC 9110 §12.5.1); none matching is q=0.
fn acceptance(accept: &str, kind: &str, subtype: &str) -> Acceptance {
    let mut best: Option<Acceptance> = None;
    for element in accept.split(',') {
        let mut parts = element.split(';');
        let range = parts.next().unwrap_or("").trim();
        let Some((range_kind, range_subtype)) = range.split_once('/') else {
            continue;
        };
        let (range_kind, range_subtype) = (range_kind.trim(), range_subtype.trim());
        let specificity = if range_kind == "*" && range_subtype == "*" {
            0
        } else if range_kind.eq_ignore_ascii_case(kind) && range_subtype == "*" {
            1
        } else if range_kind.eq_ignore_ascii_case(kind)
            && range_subtype.eq_ignore_ascii_case(subtype)
        {
            2
        } else {
            continue;
        };
        let mut quality = Some(1000);
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = parse_quality(value.trim());
            }
        }
        let Some(quality) = quality else {
            continue;
        };
        if best.is_none_or(|best| specificity > best.specificity) {
            best = Some(Acceptance {
                quality,
                specificity,
            });
        }
    }
    best.unwrap_or_default()
}

/// A q-value (`0`, `0.5`, `1.000`: at most three decimals, at most 1) in
/// thousandths; anything else is `None`.
fn parse_quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0_u16, |sum, digit| sum * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ably_js_auth_url_and_explicit_json_preferences_get_json() {
        for accept in [
            "application/json, text/plain",
            "application/json",
            "text/plain;q=0.5, application/json",
            "text/plain; q=0.5, application/json; q=0.6",
            "APPLICATION/JSON, text/plain",
            "application/*, text/plain;q=0.9",
            "application/json;charset=utf-8, text/*",
            "text/plain, application/json",
            "*/*;q=0.1, application/json",
            // The same q-value for both, each named exactly: JSON, as for ably-js.
            "text/plain;q=0.5, application/json;q=0.5, */*",
        ] {
            assert!(prefers_json(accept), "{accept:?}");
        }
    }

    #[test]
    fn fetch_defaults_and_text_preferences_get_text() {
        for accept in [
            "",
            "*/*",
            "text/plain",
            "text/plain, application/json;q=0.5",
            "text/*, application/*;q=0.9",
            "application/*, text/plain",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/json;q=0",
            "application/json;q=0, text/plain;q=0",
            // A q-value that does not parse drops its element.
            "application/json;q=2",
            "application/json;q=0.5000",
            "application/json;q=abc",
            "application/jsonx",
            "json",
        ] {
            assert!(!prefers_json(accept), "{accept:?}");
        }
    }

    #[test]
    fn q_values_parse_to_thousandths() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("0.05"), Some(50));
        assert_eq!(parse_quality("0.001"), Some(1));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("0."), Some(0));
        for bad in ["1.001", "2", "-1", "0.1234", "", ".5", "0.x", "1e0"] {
            assert_eq!(parse_quality(bad), None, "{bad:?}");
        }
    }
}
