//! The bytes of each stream event (`docs/protocol.md#sse-framing`,
//! `docs/protocol.md#plain-event-streams`).
//!
//! SSE (`/sse`, and `/event-stream` with `Accept: text/event-stream`):
//!
//! ```text
//! id: <cursor>          only on message events
//! event: message
//! data: <one-line JSON>
//!
//! :keepalive            one `--keepalive` interval after the last frame
//!
//! event: heartbeat      instead of :keepalive when heartbeats=true
//! data:
//!
//! event: error          then the response ends
//! data: <bare ErrorInfo>
//! ```
//!
//! Plain `/event-stream`: one JSON object per line,
//! `{"event":"message","data":…,"id":…}`, an empty line as keepalive,
//! `{"event":"heartbeat"}`, `{"event":"error","data":ErrorInfo}`.

use bytes::Bytes;
use shared::ErrorInfo;

/// How a stream frames its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-Sent Events.
    Sse,
    /// One JSON envelope per line.
    Plain,
}

impl Framing {
    /// The keepalive: a comment, or an empty line.
    pub(crate) fn keepalive(self) -> Bytes {
        Bytes::from_static(match self {
            Framing::Sse => b":keepalive\n\n",
            Framing::Plain => b"\n",
        })
    }

    /// A heartbeat event (`heartbeats=true`). Its SSE wire form is not
    /// documented (`docs/protocol.md#heartbeats-and-keepalives`, \[U\]): the
    /// mock sends an empty `data:` line so that an `EventSource` dispatches it.
    pub(crate) fn heartbeat(self) -> Bytes {
        Bytes::from_static(match self {
            Framing::Sse => b"event: heartbeat\ndata:\n\n",
            Framing::Plain => b"{\"event\":\"heartbeat\"}\n",
        })
    }

    /// An `error` event carrying a bare ErrorInfo (no `id`).
    pub(crate) fn error(self, info: &ErrorInfo) -> Bytes {
        let json = serde_json::to_string(info).expect("an ErrorInfo always serialises");
        Bytes::from(match self {
            Framing::Sse => format!("event: error\ndata: {json}\n\n"),
            Framing::Plain => format!("{{\"event\":\"error\",\"data\":{json}}}\n"),
        })
    }

    /// A `message` event whose data is `json`, one line of JSON text.
    pub(crate) fn message_json(self, cursor: &str, json: &str) -> Bytes {
        match self {
            Framing::Sse => sse_message(cursor, json),
            Framing::Plain => plain_message(cursor, json),
        }
    }

    /// A `message` event whose data is the raw `payload` text
    /// (`enveloped=false`, `docs/protocol.md#unenveloped-streams`).
    pub(crate) fn message_raw(self, cursor: &str, payload: &str) -> Bytes {
        match self {
            Framing::Sse => {
                // A payload may span lines; SSE carries each as its own
                // `data:` line, and the client joins them with `\n`.
                let mut out = format!("id: {cursor}\nevent: message\n");
                for line in payload.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push('\n');
                }
                out.push('\n');
                Bytes::from(out)
            }
            Framing::Plain => {
                let payload = serde_json::to_string(payload).expect("a string always serialises");
                plain_message(cursor, &payload)
            }
        }
    }
}

/// `id: <cursor>\nevent: message\ndata: <json>\n\n`.
pub(crate) fn sse_message(cursor: &str, json: &str) -> Bytes {
    Bytes::from(format!("id: {cursor}\nevent: message\ndata: {json}\n\n"))
}

/// `{"event":"message","data":<json>,"id":"<cursor>"}\n`.
pub(crate) fn plain_message(cursor: &str, json: &str) -> Bytes {
    let cursor = serde_json::to_string(cursor).expect("a string always serialises");
    Bytes::from(format!(
        "{{\"event\":\"message\",\"data\":{json},\"id\":{cursor}}}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_match_the_documented_form() {
        let info = ErrorInfo::from_code(40142, "Token expired");

        assert_eq!(
            &Framing::Sse.message_json("abc:1", r#"{"data":"x"}"#)[..],
            b"id: abc:1\nevent: message\ndata: {\"data\":\"x\"}\n\n"
        );
        assert_eq!(
            &Framing::Sse.error(&info)[..],
            b"event: error\ndata: {\"code\":40142,\"statusCode\":401,\"message\":\"Token expired\",\"href\":\"https://help.ably.io/error/40142\"}\n\n".as_slice()
        );
    }

    #[test]
    fn raw_payloads_with_newlines_become_several_data_lines() {
        let frame = Framing::Sse.message_raw("c:2", "a\nb\r\nc");

        assert_eq!(
            &frame[..],
            b"id: c:2\nevent: message\ndata: a\ndata: b\ndata: c\n\n"
        );
    }

    #[test]
    fn plain_lines_are_json_envelopes() {
        let line = Framing::Plain.message_raw("c:3", "hi");

        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event":"message","data":"hi","id":"c:3"})
        );
        assert!(line.ends_with(b"\n"));
    }
}
