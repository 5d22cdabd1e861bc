//! Property tests for the parser: thousands of random inputs built from the
//! bytes SSE cares about (field names, `:`, spaces, CR, LF, BOM bytes,
//! invalid UTF-8, multibyte characters), each parsed whole, split at every
//! point and in random chunks, must give the same frames and last event ID,
//! and the same as a line-by-line reference reading of the WHATWG algorithm.
//! Every fixture in `tests/fixtures` is also split at every point.
//!
//! The seeded tests use no property-testing crate: a seeded xorshift
//! generator keeps every run the same, and a failure prints the input that
//! broke. The `fuzz_` targets at the end use proptest instead: mutated
//! fixtures and generated streams, with a failure shrunk to a minimal input
//! (see `shared::fuzzing`).

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use shared::fuzzing::{config, mutated};
use sse_client::Error;
use sse_client::sse::{Event, Frame, Limits, Parser};

use crate::parser::replace_lf;

/// The pieces random inputs are made of, common ones repeated so that they
/// come up more often.
const ALPHABET: &[&[u8]] = &[
    b"data",
    b"data:",
    b"data: ",
    b"data:",
    b"id",
    b"id:",
    b"event",
    b"event:",
    b"retry:",
    b"message",
    b":",
    b":",
    b" ",
    b" ",
    b"\r",
    b"\n",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\n\n",
    b"\xEF\xBB\xBF",
    b"\xEF",
    b"\xBB",
    b"\xBF",
    b"\xFF",
    b"\xC3",
    b"\xE2\x82",
    "€".as_bytes(),
    "豆".as_bytes(),
    "🧹".as_bytes(),
    b"\0",
    b"\t",
    b"1",
    b"07",
    b"x",
    b"hello",
];

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What a parse produced: every frame in order, and the last event ID once
/// the body has ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    last_event_id: String,
}

fn parse(chunks: &[&[u8]]) -> Outcome {
    let mut parser = Parser::default();
    let mut frames = Vec::new();
    for chunk in chunks {
        parser.feed(chunk).expect("within the default limits");
        frames.extend(std::iter::from_fn(|| parser.next_frame()));
    }
    // The body ends: the unfinished line and event are discarded.
    parser.reset();
    Outcome {
        frames,
        last_event_id: parser.last_event_id().to_owned(),
    }
}

/// The WHATWG algorithm read literally (HTML §9.2.6), on the whole body at
/// once: strip one leading BOM, decode lossily, split into lines on CRLF,
/// CR or LF (an unterminated last line is not a line), interpret each.
fn reference(input: &[u8]) -> Outcome {
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = String::from_utf8_lossy(body);
    let mut frames = Vec::new();
    let (mut data, mut event_type, mut id_buffer) = (String::new(), String::new(), String::new());
    let mut last_event_id = String::new();
    let mut rest: &str = &text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let next = if rest[end..].starts_with("\r\n") {
            end + 2
        } else {
            end + 1
        };
        rest = &rest[next..];
        if line.is_empty() {
            // Dispatch.
            last_event_id.clone_from(&id_buffer);
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            data.pop();
            frames.push(Frame::Event(Event::new(
                std::mem::take(&mut event_type),
                std::mem::take(&mut data),
                last_event_id.clone(),
            )));
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            frames.push(Frame::Comment(comment.to_owned()));
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "event" => value.clone_into(&mut event_type),
            "id" if !value.contains('\0') => value.clone_into(&mut id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    frames.push(Frame::Retry(Duration::from_millis(ms)));
                }
            }
            _ => {}
        }
    }
    Outcome {
        frames,
        last_event_id,
    }
}

/// A random input of up to `max_lines` lines, starting with a BOM one time
/// in four. Each line is a field name (one of the four, or something else),
/// maybe a colon and a space, then random pieces, then a line end of any
/// kind; a quarter of the lines are blank, and the last may be left
/// unterminated. The pieces include line ends too, so lines also break in
/// unplanned places.
fn random_input(rng: &mut Rng, max_lines: usize) -> Vec<u8> {
    const NAMES: &[&[u8]] = &[
        b"data", b"data", b"data", b"id", b"event", b"retry", b"", b"x",
    ];
    const ENDS: &[&[u8]] = &[b"\n", b"\n", b"\r", b"\r\n"];
    let mut input = Vec::new();
    if rng.below(4) == 0 {
        input.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for _ in 0..rng.below(max_lines + 1) {
        if rng.below(4) != 0 {
            input.extend_from_slice(NAMES[rng.below(NAMES.len())]);
            match rng.below(4) {
                0 => {}
                1 => input.push(b':'),
                _ => input.extend_from_slice(b": "),
            }
            for _ in 0..rng.below(4) {
                input.extend_from_slice(ALPHABET[rng.below(ALPHABET.len())]);
            }
        }
        input.extend_from_slice(ENDS[rng.below(ENDS.len())]);
    }
    if rng.below(4) == 0 {
        input.truncate(input.len().saturating_sub(1 + rng.below(3)));
    }
    input
}

/// `input` cut into random pieces of 1 to `max` bytes.
fn random_chunks<'a>(rng: &mut Rng, input: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (head, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// Whole, at every split point, one byte at a time and in `random` random
/// chunkings: always `expected`.
fn check_every_chunking(
    what: &str,
    input: &[u8],
    expected: &Outcome,
    rng: &mut Rng,
    random: usize,
) {
    let shown = input.escape_ascii();
    assert_eq!(&parse(&[input]), expected, "{what}, whole: {shown}");
    for at in 0..=input.len() {
        let (head, tail) = input.split_at(at);
        assert_eq!(
            &parse(&[head, tail]),
            expected,
            "{what}, split at {at}: {shown}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(&parse(&bytes), expected, "{what}, byte by byte: {shown}");
    for round in 0..random {
        let chunks = random_chunks(rng, input, 9);
        assert_eq!(
            &parse(&chunks),
            expected,
            "{what}, random chunking {round} {chunks:?}: {shown}"
        );
    }
}

#[test]
fn random_inputs_parse_the_same_under_any_chunking_and_match_the_reference() {
    let mut rng = Rng::new(0x55E);
    for case in 0..2_000 {
        let input = random_input(&mut rng, 16);

        let expected = reference(&input);

        check_every_chunking(&format!("case {case}"), &input, &expected, &mut rng, 8);
    }
}

#[test]
fn random_inputs_produce_events_often_enough_to_mean_something() {
    // A guard on the generator itself: most inputs must dispatch something,
    // or the property above would be checking empty outcomes.
    let mut rng = Rng::new(0x55E);
    let with_events = (0..2_000)
        .filter(|_| {
            let outcome = reference(&random_input(&mut rng, 16));
            outcome
                .frames
                .iter()
                .any(|frame| matches!(frame, Frame::Event(_)))
        })
        .count();

    assert!(with_events > 1_000, "{with_events} of 2000");
}

/// Every fixture file, by name.
const FIXTURES: &[(&str, &[u8])] = &[
    (
        "ably-messages.sse",
        include_bytes!("../fixtures/ably-messages.sse"),
    ),
    (
        "ld-linefeeds-crlf.sse",
        include_bytes!("../fixtures/ld-linefeeds-crlf.sse"),
    ),
    (
        "wpt-event-data.sse",
        include_bytes!("../fixtures/wpt-event-data.sse"),
    ),
    (
        "wpt-format-comments.sse",
        include_bytes!("../fixtures/wpt-format-comments.sse"),
    ),
    (
        "wpt-format-field-parsing.sse",
        include_bytes!("../fixtures/wpt-format-field-parsing.sse"),
    ),
];

#[test]
fn the_fixture_list_names_every_fixture_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".sse"))
        .collect();
    on_disk.sort();

    let listed: Vec<&str> = FIXTURES.iter().map(|(name, _)| *name).collect();

    assert_eq!(on_disk, listed);
}

#[test]
fn every_fixture_parses_the_same_split_at_every_point_in_every_line_ending() {
    let mut rng = Rng::new(0xF1C5);
    for (name, bytes) in FIXTURES {
        let mut forms = vec![("as stored", bytes.to_vec())];
        if !bytes.contains(&b'\r') {
            forms.push(("CR", replace_lf(bytes, b"\r")));
            forms.push(("CRLF", replace_lf(bytes, b"\r\n")));
        }
        let stored = reference(bytes);
        assert!(!stored.frames.is_empty(), "{name} parses to something");
        for (form, input) in forms {
            let expected = reference(&input);
            // Line endings never change what a stream means.
            assert_eq!(expected, stored, "{name}, {form}: the reference");

            check_every_chunking(&format!("{name}, {form}"), &input, &expected, &mut rng, 4);
        }
    }
}

/// A stream for the fuzz targets: a fixture with a few mutations, or
/// pieces of the alphabet; at most a few KiB.
fn fuzzed_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        mutated(FIXTURES.iter().map(|(_, bytes)| bytes.to_vec()).collect()),
        vec(proptest::sample::select(ALPHABET), 0..96).prop_map(|pieces| pieces.concat()),
    ]
}

/// `input` cut at `cuts` (positions reduced modulo its length).
fn cut<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([input.len()]) {
        chunks.push(&input[start..end]);
        start = end;
    }
    chunks
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any stream, cut anywhere, parses to what the WHATWG algorithm read
    /// literally gives for the whole stream.
    #[test]
    fn fuzz_sse_parser_matches_the_reference_under_any_chunking(
        input in fuzzed_stream(),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(parse(&cut(&input, &cuts)), reference(&input));
    }

    /// With small caps the parser either gives exactly the uncapped frames
    /// or stops with the cap that was passed, whatever the chunking.
    #[test]
    fn fuzz_sse_parser_caps_hold_under_any_chunking(
        input in fuzzed_stream(),
        cuts in vec(any::<usize>(), 0..12),
        max_line in 0..64usize,
        max_event in 0..64usize,
    ) {
        let mut parser = Parser::new(Limits::new(max_line, max_event));
        let mut frames = Vec::new();
        let mut stopped = None;
        for chunk in cut(&input, &cuts) {
            if let Err(err) = parser.feed(chunk) {
                stopped = Some(err);
                break;
            }
            frames.extend(std::iter::from_fn(|| parser.next_frame()));
        }
        match stopped {
            None => {
                parser.reset();
                prop_assert_eq!(&frames, &reference(&input).frames);
            }
            Some(Error::LineTooLong { limit }) => prop_assert_eq!(limit, max_line),
            Some(Error::EventTooLarge { limit }) => prop_assert_eq!(limit, max_event),
            Some(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
        for frame in &frames {
            if let Frame::Event(event) = frame {
                prop_assert!(event.data().len() <= max_event, "{event:?}");
            }
        }
    }
}
