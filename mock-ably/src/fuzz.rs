//! Property-based fuzz targets for the mock's parsers of query strings,
//! channel lists, credentials and published messages (see
//! `shared::fuzzing` for the inputs and the budget; the Ably JWT, TokenRequest
//! and duration parsers the mock uses are `shared`'s, fuzzed there, and the
//! routes' own parsers are fuzzed in `routes::fuzz`). Run them alone with
//! `cargo test -p mock-ably --lib fuzz_`.

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use shared::fuzzing::{config, mutated, mutated_text, text_over};
use shared::message::Message;

use crate::auth::{Credential, find_credential};
use crate::params::{Query, channel_specs};
use crate::publish::{self, MAX_MESSAGE_SIZE};

fn query_examples() -> Vec<String> {
    [
        "channels=%5B%3Frewind%3D10s%5Dchat%2Cnews&v=1.2&key=app.key%3Asecret&enveloped=false",
        "channel=a&lastEvent=abc&delta=vcdiff&heartbeats=true&accessToken=eyJ.eyJ.sig",
        "channels=[meta]log|[?rewind=5&delta=vcdiff]c&separator=|&rewindLimit=3",
    ]
    .map(str::to_owned)
    .to_vec()
}

proptest! {
    #![proptest_config(config(1024))]

    /// Query strings: every name is found with its first value, and a flag
    /// reads as a boolean or is refused.
    #[test]
    fn fuzz_mock_query(raw in prop_oneof![
        mutated_text(query_examples()),
        text_over("=&%+?[]channelsrewind,|:.2F", 96),
    ]) {
        let query = Query::parse(Some(&raw));
        // Every name that appears is found, with its first value.
        let mut seen = std::collections::HashSet::new();
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            if seen.insert(name.clone()) {
                prop_assert_eq!(query.get(&name), Some(&*value));
            }
        }
        for name in ["enveloped", "heartbeats", "x"] {
            let _ = query.flag(name, true);
        }
    }

    /// Channel lists with `[?…]` qualifiers and any separator: every spec
    /// that parses has a valid, non-empty name.
    #[test]
    fn fuzz_mock_channel_specs(
        channels in prop_oneof![
            mutated_text(vec![
                "[?rewind=10s]chat,news,[meta]log".to_owned(),
                "[meta?x=y]log|a:b|[?delta=vcdiff&rewind=1]c".to_owned(),
            ]),
            text_over("[]?=&,|:meta*", 48),
        ],
        separator in prop_oneof![Just(String::new()), Just(",".to_owned()), text_over("|,;[", 2)],
    ) {
        if let Ok(specs) = channel_specs(&channels, &separator) {
            for spec in specs {
                prop_assert!(!spec.name.is_empty());
                prop_assert!(!spec.name.contains('\n'));
            }
        }
    }

    /// Credentials from an `Authorization` header of any bytes and a query
    /// string: a Basic credential always splits at its first `:`.
    #[test]
    fn fuzz_mock_credentials(
        authorization in proptest::option::of(mutated(vec![
            b"Basic YXBwLmtleTpzZWNyZXQ=".to_vec(),
            b"Bearer eyJ.eyJ.sig".to_vec(),
            b"basic YXBwLmtleTpzZWNyZXQ".to_vec(),
        ])),
        raw in mutated_text(query_examples()),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization.and_then(|bytes| HeaderValue::from_bytes(&bytes).ok()) {
            headers.insert(header::AUTHORIZATION, value);
        }
        if let Ok(Some(Credential::Basic { key_name, .. })) = find_credential(&headers, &Query::parse(Some(&raw))) {
            prop_assert!(!key_name.contains(':'), "{:?}", key_name);
        }
    }

    /// Published messages as the mock prepares them for storage: whatever
    /// it accepts fits the size limit and carries an id, a timestamp and
    /// `data` that is a string or absent.
    #[test]
    fn fuzz_mock_prepare_published_messages(body in mutated(vec![
        br#"{"name":"n","data":{"a":[1,2]},"clientId":"bob"}"#.to_vec(),
        br#"{"data":"aGVsbG8=","encoding":"base64","id":"x:0","extras":{"headers":{"k":"v"}}}"#.to_vec(),
        br#"{"data":"text","encoding":"utf-8/base64","connectionId":"c","serial":"s","action":1}"#.to_vec(),
    ])) {
        let Ok(message) = serde_json::from_slice::<Message>(&body) else {
            return Ok(());
        };
        if let Ok(prepared) = publish::prepare(vec![message], None, 1_700_000_000_000) {
            let size: usize = prepared.iter().map(|m| serde_json::to_vec(m).map_or(0, |v| v.len())).sum();
            prop_assert!(size < 2 * MAX_MESSAGE_SIZE + 1024);
            for message in prepared {
                prop_assert!(message.id.is_some() && message.timestamp.is_some());
                prop_assert!(message.data.as_ref().is_none_or(|data| data.is_string() || data.is_null()));
                prop_assert!(message.serial.is_none() && message.connection_id.is_none());
            }
        }
    }
}
