//! The event-stream parser: bytes in, events out, no I/O (WHATWG HTML,
//! "Server-sent events", HTML §9.2.6 "Interpreting an event stream").
//!
//! [`Parser::feed`] takes the body in chunks of any size, split anywhere, and
//! queues what they complete; [`Parser::next_frame`] hands the queue out in
//! order. The work is linear in the input whatever the chunking:
//!
//! - line ends are found with `memchr2`, and only bytes not yet scanned are
//!   scanned: a line that spans chunks is copied once into a carry-over buffer
//!   and the search resumes in the next chunk, never from the line's start;
//! - a CR that ends a chunk ends the line at once, and an LF that starts the
//!   next chunk is then swallowed (the CRLF split across chunks);
//! - each line is decoded from UTF-8 once, lossily: invalid sequences become
//!   U+FFFD and never stop the stream. Line ends are ASCII, so decoding line by
//!   line gives exactly what decoding the whole body would;
//! - memory is bounded by [`Limits`]: a line or an event larger than its cap
//!   ends the stream with [`Error::LineTooLong`] or [`Error::EventTooLarge`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The default cap on one line, and on one event's data: 16 MiB.
///
/// LaunchDarkly's contract tests send about 14 MB in one event.
pub const DEFAULT_MAX_SIZE: usize = 16 * 1024 * 1024;

/// Caps that keep the parser's memory bounded whatever the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The longest line, in bytes, without its terminator. Default
    /// [`DEFAULT_MAX_SIZE`].
    pub max_line: usize,
    /// The largest event: its data, type and id together, in bytes as
    /// decoded (an invalid UTF-8 byte counts as the three bytes of the
    /// U+FFFD that replaces it). Default [`DEFAULT_MAX_SIZE`].
    pub max_event: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_SIZE,
            max_event: DEFAULT_MAX_SIZE,
        }
    }
}

impl Limits {
    /// Caps lines at `max_line` bytes and events at `max_event` bytes.
    pub fn new(max_line: usize, max_event: usize) -> Self {
        Self {
            max_line,
            max_event,
        }
    }
}

/// A `data:` line at least this long that starts an event is moved, not
/// copied, from the carry-over buffer into the event's data.
const MOVE_THRESHOLD: usize = 4096;

/// One dispatched event, as a browser's `MessageEvent` reports it.
///
/// Two events are equal when their type, data and id are: an explicit
/// `event: message` equals an event with no `event:` field.
#[derive(Clone)]
pub struct Event {
    /// `None` means `message`. Shared with the previous event when the type
    /// repeats, so a stream of one type allocates no type strings.
    event_type: Option<Arc<str>>,
    data: String,
    id: String,
}

impl Event {
    /// An event of type `event_type` (empty means `message`) carrying `data`,
    /// with last event ID `id`.
    pub fn new(
        event_type: impl Into<String>,
        data: impl Into<String>,
        id: impl Into<String>,
    ) -> Self {
        let event_type: String = event_type.into();
        Self {
            event_type: (!event_type.is_empty() && event_type != "message")
                .then(|| Arc::from(event_type)),
            data: data.into(),
            id: id.into(),
        }
    }

    /// The event type: the last `event:` field, or `message` when there was
    /// none or it was empty.
    pub fn event_type(&self) -> &str {
        self.event_type.as_deref().unwrap_or("message")
    }

    /// The `data:` lines joined with `\n`.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Takes the data without copying it.
    pub fn into_data(self) -> String {
        self.data
    }

    /// The last event ID when the event was dispatched: the latest `id:` field
    /// so far on this stream (or an earlier connection of it), which may be
    /// empty. Like the browser's `lastEventId`, it persists across events that
    /// carry no `id:` of their own.
    pub fn id(&self) -> &str {
        &self.id
    }
}

// By meaning, not representation: the parser keeps an explicit `message`
// type as it came, `Event::new` folds it into the default.
impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event_type() == other.event_type() && self.data == other.data && self.id == other.id
    }
}

impl Eq for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("type", &self.event_type())
            .field("data", &self.data)
            .field("id", &self.id)
            .finish()
    }
}

/// What the parser produces, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A dispatched event.
    Event(Event),
    /// A comment line, without its leading colon, reported as soon as the
    /// line ends (it does not wait for a blank line).
    Comment(String),
    /// A valid `retry:` field: the server's new reconnection time. Reported
    /// when the line is read, not at dispatch, as the standard says.
    Retry(Duration),
}

/// Progress through a leading byte-order mark, which may arrive split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// This many bytes of a BOM seen at offset 0 so far.
    Matched(usize),
    /// Past the BOM check: every byte is content.
    Done,
}

/// The sans-IO event-stream parser: linear in the input under any chunking,
/// bounded by [`Limits`]. See the [`sse`](crate::sse) module docs for how.
///
/// One `Parser` follows one logical stream across reconnections: call
/// [`Parser::reset`] before feeding a new response body, and the last event ID
/// carries over, as it does in a browser.
///
/// ```
/// use sse_client::sse::{Frame, Parser};
///
/// let mut parser = Parser::default();
/// parser.feed(b"id: 7\ndata: hel")?;
/// parser.feed(b"lo\r")?;
/// parser.feed(b"\n\r\n")?; // the CRLF split across chunks ends one line
///
/// let Some(Frame::Event(event)) = parser.next_frame() else { panic!() };
/// assert_eq!((event.event_type(), event.data(), event.id()), ("message", "hello", "7"));
/// assert_eq!(parser.next_frame(), None);
/// # Ok::<(), sse_client::Error>(())
/// ```
pub struct Parser {
    limits: Limits,
    /// Bytes of a line not yet ended, carried over from earlier chunks. Never
    /// holds a line terminator, so it is never scanned twice.
    carry: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting the next chunk belongs
    /// to that CR and is swallowed.
    skip_lf: bool,
    bom: Bom,
    /// The event type buffer.
    event_type: String,
    /// The type of the last event dispatched with one, to share.
    last_type: Option<Arc<str>>,
    /// The data buffer: each `data:` value followed by `\n`.
    data: String,
    /// The last event ID buffer: set by `id:` fields, never reset.
    id_buffer: String,
    /// The last event ID: `id_buffer` as of the latest dispatch.
    last_event_id: String,
    frames: VecDeque<Frame>,
}

impl fmt::Debug for Parser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parser")
            .field("limits", &self.limits)
            .field("carry_len", &self.carry.len())
            .field("data_len", &self.data.len())
            .field("last_event_id", &self.last_event_id)
            .field("queued", &self.frames.len())
            .finish_non_exhaustive()
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Parser {
    /// A parser with the given caps.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            carry: Vec::new(),
            skip_lf: false,
            bom: Bom::Matched(0),
            event_type: String::new(),
            last_type: None,
            data: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            frames: VecDeque::new(),
        }
    }

    /// The last event ID: what a reconnection sends as `Last-Event-ID`
    /// (when it is not empty).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Sets the last event ID, e.g. to resume from an id saved earlier.
    pub fn set_last_event_id(&mut self, id: impl Into<String>) {
        self.last_event_id = id.into();
        self.id_buffer.clone_from(&self.last_event_id);
    }

    /// Prepares for a new response body: drops the unfinished line and event
    /// (an event not ended by a blank line is never dispatched) and expects a
    /// fresh BOM. The last event ID is kept, and an `id:` of the unfinished
    /// event is forgotten. Frames already queued stay queued.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.skip_lf = false;
        self.bom = Bom::Matched(0);
        self.event_type.clear();
        self.data.clear();
        self.id_buffer.clone_from(&self.last_event_id);
    }

    /// The next complete frame, in stream order.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Parses one chunk of the body, queueing every frame it completes.
    ///
    /// # Errors
    ///
    /// [`Error::LineTooLong`] or [`Error::EventTooLarge`] when the stream
    /// breaks a [`Limits`] cap. The partial line and event are dropped, so the
    /// memory is released; frames completed before the offending line stay
    /// queued. The stream cannot be trusted after this: stop feeding it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        let result = self.feed_inner(chunk);
        if result.is_err() {
            self.carry = Vec::new();
            self.data = String::new();
            self.event_type = String::new();
        }
        result
    }

    fn feed_inner(&mut self, mut chunk: &[u8]) -> Result<()> {
        if let Bom::Matched(mut matched) = self.bom {
            while matched < BOM.len() {
                match chunk.split_first() {
                    Some((&byte, rest)) if byte == BOM[matched] => {
                        matched += 1;
                        chunk = rest;
                    }
                    Some(_) => {
                        // Not a BOM after all: what matched so far is content.
                        self.bom = Bom::Done;
                        self.lines(&BOM[..matched])?;
                        return self.lines(chunk);
                    }
                    None => {
                        self.bom = Bom::Matched(matched);
                        return Ok(());
                    }
                }
            }
            self.bom = Bom::Done;
        }
        self.lines(chunk)
    }

    /// Splits content bytes into lines.
    fn lines(&mut self, chunk: &[u8]) -> Result<()> {
        let mut pos = 0;
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                pos = 1;
            }
        }
        while let Some(offset) = memchr::memchr2(b'\r', b'\n', &chunk[pos..]) {
            let end = pos + offset;
            if self.carry.is_empty() {
                self.line(&chunk[pos..end])?;
            } else {
                self.extend_carry(&chunk[pos..end])?;
                let carry = std::mem::take(&mut self.carry);
                if self.data.is_empty()
                    && carry.len() >= MOVE_THRESHOLD
                    && carry.starts_with(b"data:")
                {
                    self.long_data_line(carry)?;
                } else {
                    let result = self.line(&carry);
                    // Keep the allocation for the next long line.
                    self.carry = carry;
                    self.carry.clear();
                    result?;
                }
            }
            pos = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        self.extend_carry(&chunk[pos..])
    }

    /// The first `data:` line of an event, long and carried over from
    /// earlier chunks: its buffer becomes the data buffer, so the bytes are
    /// not copied a second time.
    fn long_data_line(&mut self, mut line: Vec<u8>) -> Result<()> {
        let start = if line.get(5) == Some(&b' ') { 6 } else { 5 };
        // Measured as decoded (see `line`), before anything is decoded.
        self.check_event_size(lossy_len(&line[start..]) + 1)?;
        line.drain(..start);
        line.push(b'\n');
        self.data = match String::from_utf8(line) {
            Ok(text) => text,
            Err(err) => {
                let mut text = String::with_capacity(err.as_bytes().len());
                push_lossy(&mut text, err.as_bytes());
                text
            }
        };
        Ok(())
    }

    fn extend_carry(&mut self, bytes: &[u8]) -> Result<()> {
        if self.carry.len() + bytes.len() > self.limits.max_line {
            return Err(Error::LineTooLong {
                limit: self.limits.max_line,
            });
        }
        self.carry.extend_from_slice(bytes);
        Ok(())
    }

    /// Interprets one line (HTML §9.2.6).
    fn line(&mut self, line: &[u8]) -> Result<()> {
        if line.len() > self.limits.max_line {
            return Err(Error::LineTooLong {
                limit: self.limits.max_line,
            });
        }
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            let mut text = String::new();
            push_lossy(&mut text, &line[1..]);
            self.frames.push_back(Frame::Comment(text));
            return Ok(());
        }
        // The three common fields are recognised by prefix; anything else
        // is split at its first colon.
        let colon = [&b"data:"[..], b"id:", b"event:"]
            .into_iter()
            .find(|prefix| line.starts_with(prefix))
            .map(|prefix| prefix.len() - 1)
            .or_else(|| memchr::memchr(b':', line));
        let (name, value) = match colon {
            Some(colon) => {
                let value = &line[colon + 1..];
                // Exactly one leading space is removed; tabs never are.
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (&line[..colon], value)
            }
            None => (line, &[][..]),
        };
        match name {
            // Each field is decoded before its size is checked: an invalid
            // byte becomes U+FFFD, three bytes, so the raw length would let
            // an event hold three times its cap.
            b"data" => {
                let value = lossy(value);
                self.check_event_size(value.len() + 1)?;
                if self.data.is_empty() {
                    // One allocation of the right size for the common
                    // one-line event.
                    self.data.reserve_exact(value.len() + 1);
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"event" => {
                // The same type as last time needs no decoding.
                let same = matches!(&self.last_type, Some(last) if last.as_bytes() == value);
                let decoded = (!same).then(|| lossy(value));
                let len = decoded.as_ref().map_or(value.len(), |text| text.len());
                self.check_event_size(len.saturating_sub(self.event_type.len()))?;
                self.event_type.clear();
                match (decoded, &self.last_type) {
                    (Some(text), _) => self.event_type.push_str(&text),
                    (None, Some(last)) => self.event_type.push_str(last),
                    (None, None) => {}
                }
            }
            // An id containing NUL is ignored whole, and does not wipe an id
            // set earlier in the same event.
            b"id" if !value.contains(&0) => {
                let value = lossy(value);
                self.check_event_size(value.len().saturating_sub(self.id_buffer.len()))?;
                self.id_buffer.clear();
                self.id_buffer.push_str(&value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Decimal, so leading zeros are fine; a value too large for
                // u64 milliseconds is ignored like any other bogus value.
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|digits| digits.parse::<u64>().ok())
                {
                    self.frames
                        .push_back(Frame::Retry(Duration::from_millis(ms)));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_event_size(&self, growth: usize) -> Result<()> {
        let size = self.data.len() + self.event_type.len() + self.id_buffer.len();
        if size + growth > self.limits.max_event {
            return Err(Error::EventTooLarge {
                limit: self.limits.max_event,
            });
        }
        Ok(())
    }

    /// A blank line: dispatch the event (HTML §9.2.6 "dispatch the event").
    fn dispatch(&mut self) {
        // 1. The last event ID is updated even when nothing is dispatched.
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        // 2. No data, no event; the type buffer is cleared all the same.
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        // 3. Remove the one trailing LF.
        self.data.pop();
        let event_type = if self.event_type.is_empty() {
            None
        } else {
            let shared = match &self.last_type {
                Some(last) if **last == *self.event_type => Arc::clone(last),
                _ => {
                    let new: Arc<str> = Arc::from(self.event_type.as_str());
                    self.last_type = Some(Arc::clone(&new));
                    new
                }
            };
            self.event_type.clear();
            Some(shared)
        };
        let event = Event {
            event_type,
            data: std::mem::take(&mut self.data),
            id: self.last_event_id.clone(),
        };
        self.frames.push_back(Frame::Event(event));
    }
}

/// Appends `bytes` decoded as UTF-8, invalid sequences as U+FFFD.
///
/// `str::from_utf8` first: it has a fast path for ASCII, while
/// `String::from_utf8_lossy` walks every byte even when all is valid.
/// `bytes` as UTF-8, invalid sequences replaced with U+FFFD; borrowed when
/// they are valid.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The length of [`lossy`]`(bytes)` without decoding: each maximal invalid
/// sequence becomes one U+FFFD, three bytes.
fn lossy_len(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|chunk| chunk.valid().len() + if chunk.invalid().is_empty() { 0 } else { 3 })
        .sum()
}

fn push_lossy(dst: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => dst.push_str(text),
        Err(_) => dst.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> (Vec<Frame>, Parser) {
        let mut parser = Parser::default();
        let mut frames = Vec::new();
        for chunk in chunks {
            parser.feed(chunk).unwrap();
            frames.extend(std::iter::from_fn(|| parser.next_frame()));
        }
        (frames, parser)
    }

    #[test]
    fn a_long_line_of_invalid_utf8_cannot_grow_an_event_past_its_cap() {
        // The long-line path (a carried-over first `data:` line moved into
        // the event) measures the decoded size too.
        let limits = Limits::new(DEFAULT_MAX_SIZE, 2 * MOVE_THRESHOLD);
        let invalid = vec![0xff; MOVE_THRESHOLD];
        let mut parser = Parser::new(limits);

        parser.feed(b"data:").unwrap();
        parser.feed(&invalid).unwrap();
        let result = parser.feed(b"\n\n");

        assert!(
            matches!(result, Err(Error::EventTooLarge { limit }) if limit == 2 * MOVE_THRESHOLD),
            "{result:?}"
        );
        assert_eq!(lossy_len(&invalid), 3 * MOVE_THRESHOLD);
        assert_eq!(lossy_len(b"a\xffb\xe2\x82"), 1 + 3 + 1 + 3);
        assert_eq!(lossy(b"a\xffb\xe2\x82").len(), 8);
    }

    #[test]
    fn invalid_utf8_cannot_grow_an_event_past_its_cap() {
        // Found by fuzz_sse_parser_caps_hold_under_any_chunking: each
        // invalid byte becomes U+FFFD, three bytes, so a cap checked on the
        // raw bytes let an event hold three times its cap.
        let limits = Limits::new(1024, 10);
        for line in [
            &b"data:\xff\xff\xff\xff\xff\xff\xff\xff\n\n"[..],
            b"event:\xff\xff\xff\xff\xff\xff\xff\xff\n\n",
            b"id:\xff\xff\xff\xff\xff\xff\xff\xff\n\n",
        ] {
            let mut parser = Parser::new(limits);

            let result = parser.feed(line);

            assert!(
                matches!(result, Err(Error::EventTooLarge { limit: 10 })),
                "{:?}: {result:?}, {:?}",
                String::from_utf8_lossy(line),
                parser.next_frame()
            );
        }
        // Valid text is measured as before: nine bytes of data and its
        // newline fit a cap of ten.
        let mut parser = Parser::new(limits);
        parser.feed("data:€€€\n\n".as_bytes()).unwrap();
        assert_eq!(
            parser.next_frame(),
            Some(Frame::Event(Event::new("", "€€€", "")))
        );
    }

    #[test]
    fn a_cr_ending_a_chunk_swallows_the_lf_starting_the_next() {
        let (frames, _) = parse(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);

        assert_eq!(frames, [Frame::Event(Event::new("", "a\nb", ""))]);
    }

    #[test]
    fn an_explicit_message_type_equals_the_default_one() {
        let (frames, _) = parse(&[b"event: message\ndata: a\n\n"]);

        assert_eq!(frames, [Frame::Event(Event::new("", "a", ""))]);
        assert_eq!(frames, [Frame::Event(Event::new("message", "a", ""))]);
        assert_ne!(Event::new("other", "a", ""), Event::new("", "a", ""));
    }

    #[test]
    fn a_bom_is_stripped_once_even_when_split() {
        let (frames, _) = parse(&[b"\xEF", b"\xBB", b"\xBF", b"data: \xEF\xBB\xBFx\n\n"]);

        assert_eq!(frames, [Frame::Event(Event::new("", "\u{FEFF}x", ""))]);
    }

    #[test]
    fn a_partial_bom_is_content() {
        let (frames, _) = parse(&[b"\xEF\xBB", b"data: x\n\n"]);

        // `\u{FFFD}data` is an unknown field, so nothing is dispatched.
        assert_eq!(frames, []);
    }

    #[test]
    fn the_carry_buffer_is_capped() {
        let mut parser = Parser::new(Limits::new(8, 100));

        parser.feed(b"data: 12").unwrap();
        let err = parser.feed(b"3").unwrap_err();

        assert!(matches!(err, Error::LineTooLong { limit: 8 }), "{err:?}");
    }

    #[test]
    fn a_long_line_inside_one_chunk_is_capped() {
        let mut parser = Parser::new(Limits::new(8, 100));

        let err = parser.feed(b"data: 123\n").unwrap_err();

        assert!(matches!(err, Error::LineTooLong { limit: 8 }), "{err:?}");
    }

    #[test]
    fn an_event_is_capped_across_lines() {
        let mut parser = Parser::new(Limits::new(100, 10));

        parser.feed(b"data: 1234\n").unwrap();
        let err = parser.feed(b"data: 123456\n").unwrap_err();

        assert!(matches!(err, Error::EventTooLarge { limit: 10 }), "{err:?}");
    }

    #[test]
    fn frames_before_an_error_stay_queued() {
        let mut parser = Parser::new(Limits::new(8, 100));

        let err = parser.feed(b"data: 1\n\n:0123456789\n").unwrap_err();

        assert!(matches!(err, Error::LineTooLong { .. }));
        assert_eq!(
            parser.next_frame(),
            Some(Frame::Event(Event::new("", "1", "")))
        );
    }

    #[test]
    fn reset_forgets_the_unfinished_event_and_keeps_the_last_id() {
        let mut parser = Parser::default();
        parser.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b").unwrap();

        parser.reset();
        parser.feed(b"data: c\n\n").unwrap();

        assert_eq!(
            parser.next_frame(),
            Some(Frame::Event(Event::new("", "a", "1")))
        );
        assert_eq!(
            parser.next_frame(),
            Some(Frame::Event(Event::new("", "c", "1")))
        );
    }

    #[test]
    fn a_long_carried_data_line_is_moved_with_the_same_result() {
        for prefix in [&b"data:"[..], b"data: ", b"data:  "] {
            let mut value = vec![b'a'; MOVE_THRESHOLD];
            value.extend_from_slice(b"\xFF\xE2\x82");
            let input = [prefix, &value, b"\ndata: tail\n\n"].concat();
            let chunks: Vec<&[u8]> = input.chunks(100).collect();

            let (frames, _) = parse(&chunks);

            let lead = if prefix.len() == 7 { " " } else { "" };
            let expected = format!("{lead}{}\u{FFFD}\u{FFFD}\ntail", "a".repeat(MOVE_THRESHOLD));
            assert_eq!(frames, [Frame::Event(Event::new("", expected, ""))]);
        }
    }

    #[test]
    fn a_long_carried_data_line_still_counts_toward_the_event_cap() {
        let mut parser = Parser::new(Limits::new(DEFAULT_MAX_SIZE, MOVE_THRESHOLD));
        let input = [&b"data: "[..], &[b'x'; MOVE_THRESHOLD], b"\n"].concat();

        let err = input
            .chunks(1000)
            .find_map(|c| parser.feed(c).err())
            .unwrap();

        assert!(matches!(err, Error::EventTooLarge { .. }), "{err:?}");
    }

    #[test]
    fn repeated_event_types_share_one_string() {
        let (frames, _) = parse(&[b"event: t\ndata: 1\n\nevent: t\ndata: 2\n\n"]);

        let [Frame::Event(a), Frame::Event(b)] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        assert_eq!((a.event_type(), b.event_type()), ("t", "t"));
        assert!(std::ptr::eq(a.event_type(), b.event_type()));
    }

    #[test]
    fn a_retry_too_large_for_u64_is_ignored() {
        let (frames, _) = parse(&[b"retry: 99999999999999999999999\nretry: 5\n"]);

        assert_eq!(frames, [Frame::Retry(Duration::from_millis(5))]);
    }

    #[test]
    fn event_new_treats_message_as_the_default_type() {
        assert_eq!(Event::new("message", "x", ""), Event::new("", "x", ""));
        assert_eq!(Event::new("", "x", "").event_type(), "message");
    }
}
