//! LaunchDarkly's sse-contract-tests, parser side: basic parsing, BOM,
//! comments, line feeds, and the last event ID across reconnections.

use sse_client::sse::{Event, Parser};

use super::{Case, check, check_frames, comment, ev, event, msg, run};

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
        &[include_bytes!("../../fixtures/ld-linefeeds-crlf.sse")],
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
