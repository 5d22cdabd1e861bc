//! eventsource-parser's suite, then decoding (invalid UTF-8, split code
//! points), the Ably fixture and the size caps.

use std::hash::{DefaultHasher, Hash, Hasher};

use sse_client::Error;
use sse_client::sse::{Frame, Limits, Parser};

use super::{check, check_frames, check_with_id, comment, ev, event, msg, retry, run};

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
    let outcome = run(&[include_bytes!("../../fixtures/ably-messages.sse")]);

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
