//! Every parsing case of `docs/sse-conformance.md#conformance-cases` (WPT
//! `eventsource/`, LaunchDarkly's sse-contract-tests, eventsource-parser's
//! suite), each run as given, whole, and re-chunked into 1, 2, 3 and 7 byte
//! pieces and at random; inputs written with LF only are also run with CR and
//! CRLF.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use sse_client::Error;
use sse_client::sse::{Event, Frame, Limits, Parser};

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

// --- c.2 WPT `eventsource/` ---------------------------------------------

#[test]
fn wpt_event_data() {
    check(
        "event-data",
        &[include_bytes!("../fixtures/wpt-event-data.sse")],
        &[msg("msg\nmsg"), msg(""), msg("end")],
    );
}

#[test]
fn wpt_format_bom() {
    check(
        "format-bom",
        &[b"\xEF\xBB\xBFdata:1\n\n\xEF\xBB\xBFdata:2\n\ndata:3\n\n"],
        &[msg("1"), msg("3")],
    );
}

#[test]
fn wpt_format_bom_2() {
    check(
        "format-bom-2",
        &[b"\xEF\xBB\xBF\xEF\xBB\xBFdata:1\n\ndata:2\n\ndata:3\n\n"],
        &[msg("2"), msg("3")],
    );
}

#[test]
fn wpt_format_comments() {
    let x = "x".repeat(2048);
    let mut frames = vec![comment("\0"), comment("")];
    frames.push(comment(&x));
    frames.push(comment("data:fail"));
    frames.push(comment(&x));
    frames.push(event(msg("1\n2\n3\n4")));
    check_frames(
        "format-comments",
        &[include_bytes!("../fixtures/wpt-format-comments.sse")],
        frames,
        "",
    );
}

#[test]
fn wpt_format_data_before_final_empty_line() {
    // The unfinished event's id never becomes the last event ID, so the
    // reconnection carries no Last-Event-ID.
    check_frames(
        "format-data-before-final-empty-line",
        &[b"retry:1000\ndata:test1\n\nid:test\ndata:test2\n"],
        vec![retry(1000), event(msg("test1"))],
        "",
    );
}

#[test]
fn wpt_format_field_data() {
    check(
        "format-field-data",
        &[b"data:\n\ndata\ndata\n\ndata:test\n\n"],
        &[msg(""), msg("\n"), msg("test")],
    );
}

#[test]
fn wpt_format_field_event() {
    check(
        "format-field-event",
        &[b"event:test\ndata:x\n\ndata:x\n\n"],
        &[ev("test", "x", ""), msg("x")],
    );
}

#[test]
fn wpt_format_field_event_empty() {
    let outcome = run(&[b"event: \ndata:data\n\n"]);

    let Frame::Event(event) = &outcome.frames[0] else {
        panic!("{outcome:?}")
    };
    assert_eq!(event.event_type(), "message");
    check(
        "format-field-event-empty",
        &[b"event: \ndata:data\n\n"],
        &[msg("data")],
    );
}

#[test]
fn wpt_format_field_id() {
    check_frames(
        "format-field-id",
        &["id: …\nretry: 200\ndata: hello\n\n".as_bytes()],
        vec![retry(200), event(ev("", "hello", "…"))],
        "…",
    );
}

#[test]
fn wpt_format_field_id_3() {
    check(
        "persists",
        &[b"id: 1\ndata: 1\n\ndata:2\n\n"],
        &[ev("", "1", "1"), ev("", "2", "1")],
    );
    check(
        "changes and persists",
        &[b"id: 1\ndata: 1\n\nid: 2\ndata:2\n\ndata:3\n\n"],
        &[ev("", "1", "1"), ev("", "2", "2"), ev("", "3", "2")],
    );
    check(
        "resets",
        &[b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n"],
        &[ev("", "1", "1"), msg("2"), msg("3")],
    );
}

#[test]
fn wpt_format_field_id_null() {
    check_frames(
        "format-field-id-null",
        &[b"id: \0\0\nretry: 200\ndata: hello\n\n"],
        vec![retry(200), event(msg("hello"))],
        "",
    );
}

#[test]
fn wpt_format_field_parsing() {
    check(
        "format-field-parsing",
        &[include_bytes!("../fixtures/wpt-format-field-parsing.sse")],
        &[msg("\0\n 2\n1\n3\n\n4")],
    );
}

#[test]
fn wpt_format_field_retry() {
    check_frames(
        "format-field-retry",
        &[b"retry:02000\ndata:x\n\n"],
        vec![retry(2000), event(msg("x"))],
        "",
    );
}

#[test]
fn wpt_format_field_retry_bogus() {
    check_frames(
        "format-field-retry-bogus",
        &[b"retry:2000\nretry:1000x\ndata:x\n\n"],
        vec![retry(2000), event(msg("x"))],
        "",
    );
}

#[test]
fn wpt_format_field_retry_empty() {
    check(
        "format-field-retry-empty",
        &[b"retry\ndata:test\n\n"],
        &[msg("test")],
    );
}

#[test]
fn wpt_format_field_unknown() {
    check(
        "format-field-unknown",
        &[b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n"],
        &[msg("test\n\ntest")],
    );
}

#[test]
fn wpt_format_leading_space() {
    check(
        "format-leading-space",
        &[b"data:\ttest\rdata: \ndata:test\n\n"],
        &[msg("\ttest\n\ntest")],
    );
}

#[test]
fn wpt_format_newlines() {
    check(
        "format-newlines",
        &[b"data:test\r\ndata\ndata:test\r\n\r\n"],
        &[msg("test\n\ntest")],
    );
}

#[test]
fn wpt_format_null_character() {
    check("format-null-character", &[b"data:\0\n\n"], &[msg("\0")]);
}

#[test]
fn wpt_format_utf_8() {
    // The body is UTF-8 whatever the Content-Type's charset says.
    check("format-utf-8", &[b"data:ok\xE2\x80\xA6\n\n"], &[msg("ok…")]);
}

#[test]
fn wpt_eventsource_reconnect_first_stream() {
    check_frames(
        "eventsource-reconnect L1",
        &[b"retry: 2\ndata: ok\n\n"],
        vec![retry(2), event(msg("ok"))],
        "",
    );
}

// --- c.3 LaunchDarkly contract tests: basic parsing --------------------------

#[test]
fn ld_basic_parsing() {
    let cases: &[Case<'_>] = &[
        ("1", &[b"data: Hello\n\n"], &[msg("Hello")]),
        (
            "2",
            &[b"data: test", b"test\n\ndata:", b"test\n\n"],
            &[msg("testtest"), msg("test")],
        ),
        ("5", &[b"data: Hel", b"lo\n\n"], &[msg("Hello")]),
        (
            "6",
            &[b"data: Hello\n\ndata: World\n\n"],
            &[msg("Hello"), msg("World")],
        ),
        (
            "7",
            &[b"data: Hello\ndata:World\n\n"],
            &[msg("Hello\nWorld")],
        ),
        ("8", &[b"data:\n\n"], &[msg("")]),
        (
            "9",
            &[b"event: greeting\ndata: Hello\n\n"],
            &[ev("greeting", "Hello", "")],
        ),
        ("10", &[b"data: Hello\n\n"], &[ev("message", "Hello", "")]),
        (
            "11",
            &[b"id: abc\ndata: Hello\n\n"],
            &[ev("message", "Hello", "abc")],
        ),
        (
            "12",
            &[b"event: greeting\nid: abc\ndata: Hello\n\n"],
            &[ev("greeting", "Hello", "abc")],
        ),
        ("13", &[b"id: a\0bc\ndata: Hello\n\n"], &[msg("Hello")]),
        (
            "14",
            &[b"id: abc\ndata: first\n\n", b"data: second\n\n"],
            &[ev("", "first", "abc"), ev("", "second", "abc")],
        ),
        (
            "15",
            &[b"id: abc\ndata: first\n\n", b"id: \ndata: second\n\n"],
            &[ev("", "first", "abc"), msg("second")],
        ),
        (
            "16",
            &[b"data: Hello\nid: abc\nevent: greeting\n\n"],
            &[ev("greeting", "Hello", "abc")],
        ),
        (
            "17",
            &[b"event: greeting\ncolor: blue\ndata: Hello\n\n"],
            &[ev("greeting", "Hello", "")],
        ),
        (
            "18",
            &[b"event:greeting\ndata:Hello\n\n"],
            &[ev("greeting", "Hello", "")],
        ),
        (
            "19",
            &[b"event:  greeting\ndata:  Hello\n\n"],
            &[ev(" greeting", " Hello", "")],
        ),
        ("20", &[b"data\n\ndata\ndata\n\n"], &[msg(""), msg("\n")]),
        ("21", &["data: €豆腐\n\n".as_bytes()], &[msg("€豆腐")]),
    ];
    for (case, chunks, events) in cases {
        check(&format!("basic parsing {case}"), chunks, events);
    }
}

#[test]
fn ld_basic_parsing_large_events() {
    // 3: 5 MiB of base64 in one line.
    let b64: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64])
        .collect();
    let input = [b"data: ".as_slice(), &b64, b"\n\n"].concat();
    let expected = String::from_utf8(b64).unwrap();
    check("basic parsing 3", &[&input], &[msg(&expected)]);

    // 4: two 5 MiB halves in two chunks.
    let a = vec![b'A'; 5 * 1024 * 1024];
    let b = vec![b'B'; 5 * 1024 * 1024];
    let first = [b"data: ".as_slice(), &a].concat();
    let second = [b.as_slice(), b"\n\n"].concat();
    let joined = String::from_utf8([a, b].concat()).unwrap();
    assert_eq!(
        run(&[&first, &second]).frames,
        [event(msg(&joined))],
        "basic parsing 4"
    );
}

#[test]
fn ld_basic_parsing_hundred_events_in_one_chunk() {
    let input: String = (0..100).map(|i| format!("data: message {i}\n\n")).collect();
    let events: Vec<Event> = (0..100).map(|i| msg(&format!("message {i}"))).collect();

    check("basic parsing 22", &[input.as_bytes()], &events);
}

#[test]
fn ld_basic_parsing_one_byte_per_chunk() {
    let input = "data: €豆腐\n\n".as_bytes();
    let chunks: Vec<&[u8]> = input.chunks(1).collect();

    check("basic parsing 23", &chunks, &[msg("€豆腐")]);
}

// --- c.3 LaunchDarkly contract tests: BOM ------------------------------------

#[test]
fn ld_bom() {
    let cases: &[Case<'_>] = &[
        ("1", &[b"\xEF\xBB\xBFdata: Hello\n\n"], &[msg("Hello")]),
        (
            "2",
            &[b"\xEF\xBB\xBFevent: greeting\nid: abc\ndata: Hello\n\n"],
            &[ev("greeting", "Hello", "abc")],
        ),
        (
            "3",
            &[b"\xEF\xBB\xBFdata: First\n\ndata: Second\n\n"],
            &[msg("First"), msg("Second")],
        ),
        (
            "4",
            &[b"data: First\n\n", b"data: \xEF\xBB\xBFSecond\n\n"],
            &[msg("First"), msg("\u{FEFF}Second")],
        ),
        ("5", &[b"\xEF\xBB", b"\xBFdata: Hello\n\n"], &[msg("Hello")]),
        (
            "6",
            &[b"\xEF", b"\xBB", b"\xBF", b"data: Hello\n\n"],
            &[msg("Hello")],
        ),
        (
            "7",
            &[b"\xEF\xBB\xBFdata: \xEF\xBB\xBFHello\n\n"],
            &[msg("\u{FEFF}Hello")],
        ),
        ("8", &[b"data: Hello\n\n"], &[msg("Hello")]),
        (
            "9",
            &[b"\xEF\xBB\xBFdata: Line1\ndata: Line2\n\n"],
            &[msg("Line1\nLine2")],
        ),
        ("11", &[b"\xEF\xBB\xBFdata:\n\n"], &[msg("")]),
    ];
    for (case, chunks, events) in cases {
        check(&format!("bom {case}"), chunks, events);
    }
    check_frames(
        "bom 10",
        &[b"\xEF\xBB\xBF:comment\ndata: Hello\n\n"],
        vec![comment("comment"), event(msg("Hello"))],
        "",
    );
}

// --- c.3 LaunchDarkly contract tests: comments ---------------------------------

#[test]
fn ld_comments_are_reported_as_soon_as_their_line_ends() {
    let mut parser = Parser::default();

    parser.feed(b":Hello\n").unwrap();
    assert_eq!(parser.next_frame(), Some(comment("Hello")));
    parser.feed(b":World\n").unwrap();
    assert_eq!(parser.next_frame(), Some(comment("World")));

    check_frames(
        "comments 3",
        &[b":Hello\n", b"data: Hello\n\n"],
        vec![comment("Hello"), event(msg("Hello"))],
        "",
    );
    check_frames(
        "comments 4",
        &[b"data: Hello\n\n", b":Hello\n"],
        vec![event(msg("Hello")), comment("Hello")],
        "",
    );
}

// --- c.3 LaunchDarkly contract tests: linefeeds -------------------------------

#[test]
fn ld_linefeeds_in_every_terminator_and_chunking() {
    // `check` runs each in LF, CR and CRLF, whole and in 1, 2, 3 and 7-byte
    // chunks (a superset of the harness's 54 cases).
    check("linefeeds 1", &[b"data: event 1\n\n"], &[msg("event 1")]);
    check(
        "linefeeds 2",
        &[b"data: event 1\n\ndata: event 2 line 1\ndata: event 2 line 2\n\n"],
        &[msg("event 1"), msg("event 2 line 1\nevent 2 line 2")],
    );
    check(
        "linefeeds 3",
        &[b"data:\ndata: line2\ndata: line3\n\n"],
        &[msg("\nline2\nline3")],
    );
    check(
        "linefeeds 4",
        &[b"data: line1\ndata:\ndata: line3\n\n"],
        &[msg("line1\n\nline3")],
    );
    check(
        "linefeeds 5",
        &[b"data: event 1\n\n\ndata: event 2\n\n"],
        &[msg("event 1"), msg("event 2")],
    );
    check(
        "linefeeds 6",
        &[b"data: event 1\n\n\n\ndata: event 2\n\n"],
        &[msg("event 1"), msg("event 2")],
    );
    check(
        "linefeeds crlf fixture",
        &[include_bytes!("../fixtures/ld-linefeeds-crlf.sse")],
        &[msg("event 1"), msg("event 2 line 1\nevent 2 line 2")],
    );
}

#[test]
fn ld_linefeeds_cr_and_lf_split_across_chunks() {
    check(
        "linefeeds split",
        &[
            b"data: Hello\r",
            b"\ndata: World\r",
            b"\n\r\ndata: OK\r",
            b"\n",
            b"\r",
            b"\n",
        ],
        &[msg("Hello\nWorld"), msg("OK")],
    );
}

// --- c.3 LaunchDarkly contract tests: reconnection (parser side) ---------------

#[test]
fn ld_reconnection_keeps_the_dispatched_id_not_the_unfinished_one() {
    let mut parser = Parser::default();
    parser
        .feed(b"id: abc\ndata: Hello\n\nid: def\ndata: Goodbye")
        .unwrap();
    assert_eq!(parser.next_frame(), Some(event(ev("", "Hello", "abc"))));

    parser.reset();
    parser.feed(b"data: We meet again\n\n").unwrap();

    assert_eq!(
        parser.next_frame(),
        Some(event(ev("", "We meet again", "abc")))
    );
}

#[test]
fn ld_reconnection_an_empty_id_clears_the_last_event_id() {
    let outcome = run(&[b"id: abc\ndata: Hello\n\n", b"id: \ndata: World\n\n"]);

    assert_eq!(outcome.last_event_id, "");
}

// --- c.4 eventsource-parser's suite -------------------------------------------

#[test]
fn extra_crlf_split_across_chunks_makes_one_event() {
    check(
        "c.4 1",
        &[b"data: A\r\n", b"data: B\r", b"\n", b"data: C\r\n", b"\n"],
        &[msg("A\nB\nC")],
    );
}

#[test]
fn extra_an_ignored_nul_id_keeps_the_buffered_id() {
    check(
        "c.4 2",
        &[b"id: 123\nid: bad\0id\ndata: hello\n\n"],
        &[ev("", "hello", "123")],
    );
}

#[test]
fn extra_a_bogus_retry_keeps_the_earlier_one() {
    check_frames(
        "c.4 3",
        &[b"retry:1000\nretry:2000x\ndata:x\n\n"],
        vec![retry(1000), event(msg("x"))],
        "",
    );
}

#[test]
fn extra_an_empty_retry_is_ignored() {
    check(
        "c.4 4",
        &[b"id:2\nretry:\ndata:\xF0\x9F\xA7\xB9\n\n"],
        &[ev("", "🧹", "2")],
    );
}

#[test]
fn extra_leading_blank_lines_are_a_no_op() {
    check(
        "c.4 5",
        &[b"\n\n\n\nid: 1\ndata: \xE6\x88\x91\n\n"],
        &[ev("", "我", "1")],
    );
}

#[test]
fn extra_an_event_without_data_is_not_dispatched() {
    check(
        "c.4 6",
        &[b"event:\ndata: Hello 1\n\nevent:\n\n"],
        &[msg("Hello 1")],
    );
}

#[test]
fn extra_an_id_without_data_still_sets_the_last_event_id() {
    let mut parser = Parser::default();

    parser.feed(b"id: 42\n").unwrap();
    parser.feed(b"\n").unwrap();
    assert_eq!(parser.next_frame(), None);
    assert_eq!(parser.last_event_id(), "42");

    parser.feed(b"id:\n\n").unwrap();
    assert_eq!(parser.last_event_id(), "");
    check_with_id("c.4 7", &[b"id: 42\n", b"\n"], &[], "42");
}

#[test]
fn extra_comments_and_crs_with_a_truncated_last_event() {
    let x = "x".repeat(2049);
    let first = [b"data:1\r\r:\0\n:\r\ndata:2\n\n:".as_slice(), x.as_bytes()].concat();
    let second = [b"\rdata:3\n\n:data:fail\r:".as_slice(), x.as_bytes()].concat();
    let frames = vec![
        event(msg("1")),
        comment("\0"),
        comment(""),
        event(msg("2")),
        comment(&x),
        event(msg("3")),
        comment("data:fail"),
        comment(&x),
        event(msg("4")),
    ];

    check_frames(
        "c.4 8",
        &[&first, &second, b"\ndata:4\n\n", b"data:5"],
        frames,
        "",
    );
}

#[test]
fn extra_a_blank_cr_line_at_a_chunk_end_dispatches_once() {
    check("c.4 9", &[b"data: x\r", b"\r", b"\n"], &[msg("x")]);
}

#[test]
fn extra_megabytes_of_multibyte_data_in_many_chunks_match_their_hash() {
    let text: String = "€豆腐🧹ü".repeat(4_800_000 / 14);
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let hash = hasher.finish();
    let input = format!("data: {text}\n\nevent: hash\ndata: {hash}\n\n");

    // Chunk boundaries fall inside code points almost everywhere.
    let chunks: Vec<&[u8]> = input.as_bytes().chunks(997).collect();
    let outcome = run(&chunks);

    let [Frame::Event(data), Frame::Event(sum)] = outcome.frames.as_slice() else {
        panic!("expected two events");
    };
    let mut hasher = DefaultHasher::new();
    data.data().hash(&mut hasher);
    assert_eq!(sum.event_type(), "hash");
    assert_eq!(sum.data(), hasher.finish().to_string());
    assert_eq!(data.data(), text);
}

// --- decoding and limits -----------------------------------------------------

#[test]
fn invalid_utf8_becomes_replacement_characters_and_the_stream_goes_on() {
    check(
        "invalid UTF-8",
        &[b"data: a\xFFb\xE2\x82\n\ndata: \xF0\x9F\n\ndata: ok\n\n"],
        &[msg("a\u{FFFD}b\u{FFFD}"), msg("\u{FFFD}"), msg("ok")],
    );
}

#[test]
fn a_code_point_split_across_chunks_decodes_whole() {
    check(
        "split code point",
        &[b"data: \xE2\x82", b"\xAC\n\n"],
        &[msg("€")],
    );
}

#[test]
fn the_ably_fixture_parses_to_a_comment_a_message_and_an_error() {
    let outcome = run(&[include_bytes!("../fixtures/ably-messages.sse")]);

    let id = "cbfKayrzgAXDWM:1556806691343-0";
    assert_eq!(outcome.frames.len(), 3);
    assert_eq!(outcome.frames[0], comment("keepalive"));
    let Frame::Event(message) = &outcome.frames[1] else {
        panic!()
    };
    assert_eq!((message.event_type(), message.id()), ("message", id));
    assert!(message.data().starts_with(r#"{"id":"m1""#));
    let Frame::Event(error) = &outcome.frames[2] else {
        panic!()
    };
    // The id persists onto the error event, as in a browser.
    assert_eq!((error.event_type(), error.id()), ("error", id));
}

#[test]
fn caps_end_the_stream_with_a_typed_error_under_any_chunking() {
    let input = [b"data: ok\n\ndata: ".as_slice(), &[b'x'; 100], b"\n\n"].concat();
    for size in [1, 7, 64, input.len()] {
        let mut parser = Parser::new(Limits::new(50, 1000));
        let err = input
            .chunks(size)
            .find_map(|chunk| parser.feed(chunk).err())
            .expect("the long line is refused");

        assert!(matches!(err, Error::LineTooLong { limit: 50 }), "{err:?}");
        assert_eq!(parser.next_frame(), Some(event(msg("ok"))));
    }
}
