//! Property-based fuzz targets for the routes' own parsers: a publish body,
//! a history query, and the rewind parameters of a stream (see
//! `shared::fuzzing` for the inputs and the budget).

use proptest::prelude::*;
use shared::fuzzing::{config, json_value, mutated, mutated_text, text_over};

use super::rest::{Page, parse_messages};
use super::stream::rewind;
use crate::channel::StartAt;
use crate::params::{Query, channel_specs};

proptest! {
    #![proptest_config(config(1024))]

    /// Publish bodies: a message, an array of them, mutated or any JSON.
    /// Whatever parses serialises back to the same messages.
    #[test]
    fn fuzz_mock_publish_body(body in prop_oneof![
        mutated(vec![
            br#"{"name":"n","data":"hello"}"#.to_vec(),
            br#"[{"data":{"a":1},"encoding":"utf-8"},{"id":"x:1","extras":{"push":{}}}]"#.to_vec(),
        ]),
        json_value().prop_map(|value| value.to_string().into_bytes()),
    ]) {
        if let Ok(messages) = parse_messages(&body) {
            let json = serde_json::to_vec(&messages).expect("messages serialise");
            prop_assert_eq!(parse_messages(&json).ok(), Some(messages));
        }
    }

    /// History queries: a page that parses writes a `next` link query that
    /// parses back to the same page.
    #[test]
    fn fuzz_mock_history_query(raw in prop_oneof![
        mutated_text(vec![
            "limit=10&direction=forwards&start=5&end=100".to_owned(),
            "direction=backwards&cursor=42&limit=1000".to_owned(),
        ]),
        text_over("limit=direction&forwardsstartendcursor0123456789", 64),
    ]) {
        if let Ok(page) = Page::from_query(&Query::parse(Some(&raw))) {
            let link = page.query(page.after);
            let again = Page::from_query(&Query::parse(Some(&link)));
            prop_assert_eq!(
                again.as_ref().map(|again| format!("{again:?}")).ok(),
                Some(format!("{page:?}")),
                "{}",
                link
            );
        }
    }

    /// `rewind` and `rewindLimit`, from a channel qualifier or the query:
    /// never more than 100 messages, never a start after now.
    #[test]
    fn fuzz_mock_rewind(
        channel in mutated_text(vec!["[?rewind=10s&rewindLimit=3]chat".to_owned(), "[?rewind=5]c".to_owned()]),
        raw in mutated_text(vec!["rewind=2m".to_owned(), "rewind=18446744073709551615h&rewindLimit=7".to_owned()]),
        now_ms in any::<u64>(),
    ) {
        let Ok(specs) = channel_specs(&channel, ",") else {
            return Ok(());
        };
        let query = Query::parse(Some(&raw));
        for spec in &specs {
            match rewind(spec, &query, now_ms) {
                Ok(StartAt::RewindCount(count)) => prop_assert!(count <= 100),
                Ok(StartAt::RewindSince { since_ms, limit }) => {
                    prop_assert!(since_ms <= now_ms && limit <= 100);
                }
                _ => {}
            }
        }
    }
}
