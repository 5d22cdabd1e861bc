//! The one duration grammar of every crate here: a whole number followed by
//! a unit, `ms`, `s`, `m`, `h` or `d` (`500ms`, `30s`, `15m`, `1h`, `1d`).
//!
//! auth-server's settings, mock-ably's `rewind=` parameter and flags, and
//! sse-client's `Rewind` (where a bare number is a message count instead)
//! all read durations with [`parse`], so a duration written for one is
//! understood by the others. Ably's own `rewind` takes the same form
//! (`docs/protocol.md#stream-parameters`).
//!
//! ```
//! use std::time::Duration;
//!
//! assert_eq!(shared::duration::parse("2m")?, Duration::from_secs(120));
//! assert_eq!(shared::duration::parse("250ms")?, Duration::from_millis(250));
//! assert_eq!(shared::duration::parse("1d")?, Duration::from_secs(86_400));
//! assert_eq!(
//!     shared::duration::parse("2").unwrap_err().to_string(),
//!     r#""2" has no unit; write e.g. 30s, 15m or 1h"#
//! );
//! # Ok::<(), shared::duration::ParseDurationError>(())
//! ```

use std::time::Duration;

/// The units, each with its length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Text that is not a duration; the message quotes the text and says what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// No unit after the number (`30`, or nothing at all).
    #[error("{0:?} has no unit; write e.g. 30s, 15m or 1h")]
    NoUnit(String),
    /// Something other than ASCII digits before the unit (`s`, `-1s`,
    /// `1.5h`, ` 1s`).
    #[error("{0:?} does not start with a whole number")]
    NotAWholeNumber(String),
    /// A unit that is not `ms`, `s`, `m`, `h` or `d`.
    #[error("unknown unit {unit:?} in {text:?}; use ms, s, m, h or d")]
    UnknownUnit {
        /// The text after the number.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// More milliseconds than a `u64` holds (about 584 million years).
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Reads a duration: ASCII digits, then one of the units `ms`, `s`, `m`, `h`
/// or `d`, with nothing before, between or after (no sign, no fraction, no
/// spaces).
///
/// # Errors
///
/// [`ParseDurationError`] for any other text, and for a duration of more
/// than `u64::MAX` milliseconds, so that every duration read here converts
/// to whole milliseconds and can be added to an `Instant` without overflow.
pub fn parse(text: &str) -> Result<Duration, ParseDurationError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| ParseDurationError::NoUnit(text.to_owned()))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(ParseDurationError::NotAWholeNumber(text.to_owned()));
    }
    let unit_ms = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|&(_, ms)| ms)
        .ok_or_else(|| ParseDurationError::UnknownUnit {
            unit: unit.to_owned(),
            text: text.to_owned(),
        })?;
    // Only digits: the one way `u64::from_str` can fail here is overflow.
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit_ms))
        .map(Duration::from_millis)
        .ok_or_else(|| ParseDurationError::TooLong(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_reads_as_its_length() {
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("0ms", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            ("007s", Duration::from_secs(7)),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn the_largest_duration_is_u64_max_milliseconds() {
        assert_eq!(
            parse("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
        for text in [
            "18446744073709551616ms",
            "18446744073709552s",
            "99999999999999999999h",
            "213503982334602d",
        ] {
            assert_eq!(
                parse(text),
                Err(ParseDurationError::TooLong(text.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn each_kind_of_bad_text_gets_its_own_message() {
        for (text, message) in [
            ("30", r#""30" has no unit; write e.g. 30s, 15m or 1h"#),
            ("", r#""" has no unit; write e.g. 30s, 15m or 1h"#),
            ("s", r#""s" does not start with a whole number"#),
            ("-1s", r#""-1s" does not start with a whole number"#),
            ("+1s", r#""+1s" does not start with a whole number"#),
            (" 1s", r#"" 1s" does not start with a whole number"#),
            (
                "1.5h",
                r#"unknown unit ".5h" in "1.5h"; use ms, s, m, h or d"#,
            ),
            ("10x", r#"unknown unit "x" in "10x"; use ms, s, m, h or d"#),
            ("10S", r#"unknown unit "S" in "10S"; use ms, s, m, h or d"#),
            (
                "10s ",
                r#"unknown unit "s " in "10s "; use ms, s, m, h or d"#,
            ),
            (
                "10sm",
                r#"unknown unit "sm" in "10sm"; use ms, s, m, h or d"#,
            ),
        ] {
            assert_eq!(
                parse(text).map_err(|err| err.to_string()),
                Err(message.to_owned()),
                "{text:?}"
            );
        }
    }
}
