//! Every parsing case of `docs/sse-conformance.md#conformance-cases` (WPT
//! `eventsource/`, LaunchDarkly's sse-contract-tests, eventsource-parser's
//! suite), each run as given, whole, and re-chunked into 1, 2, 3 and 7 byte
//! pieces and at random; inputs written with LF only are also run with CR and
//! CRLF. A module per suite; the helpers they share are here.

use std::time::Duration;

use sse_client::sse::{Event, Frame, Parser};

mod extra;
mod launchdarkly;
mod wpt;

/// What one run produced: frames in order, and the last event ID once the
/// stream has ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    last_event_id: String,
}

fn run(chunks: &[&[u8]]) -> Outcome {
    run_filtered(chunks, |_| true)
}

fn run_filtered(chunks: &[&[u8]], keep: fn(&Frame) -> bool) -> Outcome {
    let mut parser = Parser::default();
    let mut frames = Vec::new();
    for chunk in chunks {
        parser.feed(chunk).expect("within the default limits");
        frames.extend(std::iter::from_fn(|| parser.next_frame()).filter(keep));
    }
    // EOF: the unfinished event is discarded.
    parser.reset();
    Outcome {
        frames,
        last_event_id: parser.last_event_id().to_owned(),
    }
}

/// A tiny deterministic generator for random chunk sizes (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The chunkings every case runs under: fixed sizes, then random ones.
fn chunkings(input: &[u8]) -> Vec<(String, Vec<&[u8]>)> {
    let mut out = Vec::new();
    let sizes: &[usize] = if input.len() > 64 * 1024 {
        &[4096, 65_536]
    } else {
        &[1, 2, 3, 7]
    };
    for &size in sizes {
        out.push((format!("{size}-byte chunks"), input.chunks(size).collect()));
    }
    out.push(("whole".to_owned(), vec![input]));
    for seed in 1..=4_u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let max = if input.len() > 64 * 1024 { 70_000 } else { 16 };
        let mut rest = input;
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let (head, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
            chunks.push(head);
            rest = tail;
        }
        out.push((format!("random chunks, seed {seed}"), chunks));
    }
    out
}

/// Runs `chunks` as given and under every re-chunking, expecting `expected`
/// each time. Inputs without a CR are also run with LF replaced by CR and by
/// CRLF.
fn check_outcome(case: &str, chunks: &[&[u8]], expected: &Outcome, keep: fn(&Frame) -> bool) {
    assert_eq!(&run_filtered(chunks, keep), expected, "{case}: as given");
    let input = chunks.concat();
    let mut forms = vec![("LF", input.clone())];
    if !input.contains(&b'\r') {
        forms.push(("CR", replace_lf(&input, b"\r")));
        forms.push(("CRLF", replace_lf(&input, b"\r\n")));
    }
    for (form, bytes) in &forms {
        for (how, pieces) in chunkings(bytes) {
            assert_eq!(
                &run_filtered(&pieces, keep),
                expected,
                "{case}: {form}, {how}"
            );
        }
    }
}

/// `input` with every LF replaced by `with` (the CR and CRLF forms of a fixture).
pub(crate) fn replace_lf(input: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    for &byte in input {
        if byte == b'\n' {
            out.extend_from_slice(with);
        } else {
            out.push(byte);
        }
    }
    out
}

/// Events only (comments and `retry:` are not compared); the last event ID is whatever the last event carried.
fn check(case: &str, chunks: &[&[u8]], events: &[Event]) {
    let last_event_id = events.last().map(|e| e.id().to_owned()).unwrap_or_default();
    check_with_id(case, chunks, events, &last_event_id);
}

fn check_with_id(case: &str, chunks: &[&[u8]], events: &[Event], last_event_id: &str) {
    let expected = Outcome {
        frames: events.iter().cloned().map(Frame::Event).collect(),
        last_event_id: last_event_id.to_owned(),
    };
    check_outcome(case, chunks, &expected, |frame| {
        matches!(frame, Frame::Event(_))
    });
}

fn check_frames(case: &str, chunks: &[&[u8]], frames: Vec<Frame>, last_event_id: &str) {
    let expected = Outcome {
        frames,
        last_event_id: last_event_id.to_owned(),
    };
    check_outcome(case, chunks, &expected, |_| true);
}

/// A table row: the case's name, its chunks, the events expected.
type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [Event]);

/// `["data"]`: a `message` event with no id.
fn msg(data: &str) -> Event {
    Event::new("", data, "")
}

fn ev(event_type: &str, data: &str, id: &str) -> Event {
    Event::new(event_type, data, id)
}

fn event(e: Event) -> Frame {
    Frame::Event(e)
}

fn comment(text: &str) -> Frame {
    Frame::Comment(text.to_owned())
}

fn retry(ms: u64) -> Frame {
    Frame::Retry(Duration::from_millis(ms))
}
