//! Reading replies and errors, called directly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::*;

#[test]
fn token_strings_are_checked_like_ably_js() {
    for bad in ["", "null", "undefined"] {
        assert!(check_token_string(bad, false).is_err(), "{bad:?}");
    }
    let err = check_token_string(r#"{"keyName":"a.b"}"#, false).unwrap_err();
    assert_eq!(err.error_info().map(|info| info.code), Some(40170));
    assert!(check_token_string(r#"{"jwt":1}"#, true).is_ok());
    assert!(check_token_string(&"x".repeat(MAX_TOKEN_LEN + 1), false).is_err());
}

#[test]
fn json_replies_are_told_apart_by_issued_and_key_name() {
    let details = serde_json::json!({"token": "t", "issued": 1, "expires": 2});
    let request = serde_json::json!({"keyName": "a.b", "timestamp": 1, "nonce": "0123456789abcdef", "mac": "m"});

    assert!(matches!(
        token_reply_from_json(details),
        Ok(TokenReply::Details(_))
    ));
    assert!(matches!(
        token_reply_from_json(request),
        Ok(TokenReply::Request(_))
    ));
    assert!(token_reply_from_json(serde_json::json!({"other": 1})).is_err());
    assert!(token_reply_from_json(serde_json::json!(42)).is_err());
    assert!(token_reply_from_json(serde_json::json!(null)).is_err());
}

#[test]
fn errors_come_from_the_envelope_then_the_header_then_the_status() {
    let mut headers = HeaderMap::new();
    let envelope = br#"{"error":{"code":40142,"statusCode":401,"message":"expired"}}"#;

    assert_eq!(
        error_info_from_parts(401, &headers, envelope, 1).code,
        40142
    );
    headers.insert("x-ably-errorcode", HeaderValue::from_static("40144"));
    assert_eq!(
        error_info_from_parts(401, &headers, b"not json", 1).code,
        40144
    );
    assert_eq!(
        error_info_from_parts(503, &HeaderMap::new(), b"", 1).code,
        50300
    );
    assert_eq!(
        error_info_from_parts(404, &HeaderMap::new(), b"", 40400).code,
        40400
    );
}

#[test]
fn a_wall_clock_expiry_becomes_a_deadline_on_tokios_clock() {
    let now = Instant::now();
    let wall_now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let since_epoch = |secs: u64| Duration::from_secs(secs);

    assert_eq!(
        deadline(since_epoch(1_700_000_060), wall_now, now),
        Some(now + Duration::from_secs(60))
    );
    assert_eq!(
        deadline(since_epoch(1_600_000_000), wall_now, now),
        Some(now)
    );
    // A JWT `exp` or TokenDetails `expires` too far ahead for any clock:
    // no known expiry, rather than a panic.
    assert_eq!(deadline(Duration::MAX, wall_now, now), None);
    assert_eq!(
        deadline(since_epoch(u64::MAX), SystemTime::now(), now),
        None
    );
}
