//! WPT `eventsource/` parsing cases (`docs/sse-conformance.md#conformance-cases`).

use sse_client::sse::Frame;

use super::{check, check_frames, comment, ev, event, msg, retry, run};

// --- c.2 WPT `eventsource/` ---------------------------------------------

#[test]
fn wpt_event_data() {
    check(
        "event-data",
        &[include_bytes!("../../fixtures/wpt-event-data.sse")],
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
        &[include_bytes!("../../fixtures/wpt-format-comments.sse")],
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
        &[include_bytes!(
            "../../fixtures/wpt-format-field-parsing.sse"
        )],
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
