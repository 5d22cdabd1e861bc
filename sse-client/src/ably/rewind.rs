//! How much backlog a fresh subscription asks for: Ably's `rewind`
//! parameter (`docs/protocol.md#channel-qualifiers`), typed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Backlog on a fresh start: the last `n` messages, or the messages of the
/// last so long.
///
/// Sent as Ably's `rewind` parameter: a count as itself (`10`), a duration
/// in whole seconds in the largest unit that divides it (`30s`, `2m`, `1h`),
/// a fraction of a second rounded up. [`FromStr`] reads a bare number as a
/// count and anything else as a duration in the grammar every crate here
/// shares ([`shared::duration::parse`]: `500ms`, `30s`, `2m`, `1h`, `1d`).
///
/// ```
/// use std::time::Duration;
/// use sse_client::ably::Rewind;
///
/// assert_eq!("10".parse::<Rewind>()?, Rewind::Messages(10));
/// assert_eq!("2m".parse::<Rewind>()?, Rewind::Duration(Duration::from_secs(120)));
/// assert_eq!("1d".parse::<Rewind>()?.to_string(), "24h");
/// assert_eq!(Rewind::Duration(Duration::from_secs(90)).to_string(), "90s");
/// assert_eq!(Rewind::from(Duration::from_secs(3600)).to_string(), "1h");
/// assert!("ten".parse::<Rewind>().is_err());
/// # Ok::<(), sse_client::ably::ParseRewindError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rewind {
    /// The last `n` messages on each channel.
    Messages(u32),
    /// The messages of the last so long, in whole seconds (rounded up).
    Duration(Duration),
}

impl From<u32> for Rewind {
    fn from(messages: u32) -> Self {
        Rewind::Messages(messages)
    }
}

impl From<Duration> for Rewind {
    fn from(duration: Duration) -> Self {
        Rewind::Duration(duration)
    }
}

/// The wire form of Ably's `rewind` parameter.
impl fmt::Display for Rewind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rewind::Messages(n) => write!(f, "{n}"),
            Rewind::Duration(duration) => {
                let secs = duration
                    .as_secs()
                    .saturating_add(u64::from(duration.subsec_nanos() > 0));
                if secs > 0 && secs % 3600 == 0 {
                    write!(f, "{}h", secs / 3600)
                } else if secs > 0 && secs % 60 == 0 {
                    write!(f, "{}m", secs / 60)
                } else {
                    write!(f, "{secs}s")
                }
            }
        }
    }
}

/// Text that is not a rewind: neither a count (`10`) nor a duration
/// (`500ms`, `30s`, `2m`, `1h`, `1d`), or too large.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a count (10) or a duration (30s, 2m, 1h), got {text:?}")]
pub struct ParseRewindError {
    text: String,
}

impl FromStr for Rewind {
    type Err = ParseRewindError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseRewindError {
            text: text.to_owned(),
        };
        // A bare number is a count. (`u32::from_str` takes a leading `+`;
        // Ably's grammar does not.)
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Rewind::Messages).map_err(|_| error());
        }
        shared::duration::parse(text)
            .map(Rewind::Duration)
            .map_err(|_| error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_forms_parse_and_print_back() {
        for (text, rewind) in [
            ("10", Rewind::Messages(10)),
            ("0", Rewind::Messages(0)),
            ("30s", Rewind::Duration(Duration::from_secs(30))),
            ("2m", Rewind::Duration(Duration::from_secs(120))),
            ("1h", Rewind::Duration(Duration::from_secs(3600))),
        ] {
            assert_eq!(text.parse::<Rewind>(), Ok(rewind), "{text}");
            assert_eq!(rewind.to_string(), text);
        }
    }

    #[test]
    fn milliseconds_and_days_read_as_in_every_other_crate() {
        assert_eq!(
            "1500ms".parse::<Rewind>(),
            Ok(Rewind::Duration(Duration::from_millis(1500)))
        );
        assert_eq!(
            "2d".parse::<Rewind>(),
            Ok(Rewind::Duration(Duration::from_secs(2 * 86_400)))
        );
        assert_eq!(
            "1500ms".parse::<Rewind>().map(|r| r.to_string()),
            Ok("2s".to_owned())
        );
        assert_eq!(
            "2d".parse::<Rewind>().map(|r| r.to_string()),
            Ok("48h".to_owned())
        );
    }

    #[test]
    fn a_duration_is_sent_in_the_largest_unit_that_divides_it() {
        assert_eq!(
            "120s".parse::<Rewind>().map(|r| r.to_string()),
            Ok("2m".to_owned())
        );
        assert_eq!(
            "90m".parse::<Rewind>().map(|r| r.to_string()),
            Ok("90m".to_owned())
        );
        assert_eq!(
            "60m".parse::<Rewind>().map(|r| r.to_string()),
            Ok("1h".to_owned())
        );
        assert_eq!(Rewind::Duration(Duration::ZERO).to_string(), "0s");
        assert_eq!(
            Rewind::Duration(Duration::from_millis(1500)).to_string(),
            "2s"
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_grammar_and_the_text() {
        for text in [
            "",
            "ten",
            "s",
            "10x",
            "10sm",
            "1.5m",
            "+10",
            "-1",
            " 10",
            "10 ",
            "4294967296",
            "99999999999999999999h",
        ] {
            let err = text.parse::<Rewind>().expect_err(text);
            assert_eq!(
                err.to_string(),
                format!("expected a count (10) or a duration (30s, 2m, 1h), got {text:?}")
            );
        }
    }
}
