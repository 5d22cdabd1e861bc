//! Property-based fuzz targets for what the subscriber reads from an auth
//! URL and from an HTTP error (see `shared::fuzzing` for the inputs and the
//! budget).

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use shared::error_info::{ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER};
use shared::fuzzing::{config, json_value_with, mutated, text_over};

use super::TokenReply;
use super::reply::{error_info_from_parts, token_reply_from_json};

fn reply_examples() -> Vec<Vec<u8>> {
    [
        r#""appA.token-string""#,
        r#"{"token":"appA.t","issued":1,"expires":2,"capability":"{\"*\":[\"*\"]}","clientId":"a"}"#,
        r#"{"keyName":"appA.keyA","timestamp":1,"nonce":"0123456789abcdef","mac":"bWFj","ttl":"60000"}"#,
        r#"{"error":{"code":40142,"statusCode":401,"message":"expired"}}"#,
    ]
    .map(|text| text.as_bytes().to_vec())
    .to_vec()
}

proptest! {
    #![proptest_config(config(1024))]

    /// An auth URL's JSON reply: a token string, TokenDetails or a
    /// TokenRequest, or refused; a token string kept is never empty.
    #[test]
    fn fuzz_auth_url_json_reply(body in prop_oneof![
        mutated(reply_examples()),
        json_value_with(text_over("tokenissuedexpireskeyNamenoncetimestamp{}", 12).boxed())
            .prop_map(|value| value.to_string().into_bytes()),
    ]) {
        let Ok(value) = serde_json::from_slice(&body) else {
            return Ok(());
        };
        if let Ok(TokenReply::Token(token)) = token_reply_from_json(value) {
            prop_assert!(!token.is_empty() && !token.starts_with('{'), "{:?}", token);
        }
    }

    /// An HTTP error: any status, any body, any `X-Ably-ErrorCode` and
    /// `X-Ably-ErrorMessage` bytes. A 5xx that reports nothing readable
    /// stays retryable (its code is the status × 100).
    #[test]
    fn fuzz_http_error_parts(
        status in 100..600u16,
        body in mutated(reply_examples()),
        code in proptest::option::of(mutated(vec![b"40142".to_vec(), b" 50000 ".to_vec()])),
        message in proptest::option::of(mutated(vec![b"Token expired".to_vec()])),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [(ERROR_CODE_HEADER, code), (ERROR_MESSAGE_HEADER, message)] {
            if let Some(value) = value.and_then(|bytes| HeaderValue::from_bytes(&bytes).ok()) {
                headers.insert(name, value);
            }
        }
        let info = error_info_from_parts(status, &headers, &body, 40170);
        let reported = serde_json::from_slice::<shared::ErrorResponse>(&body).is_ok()
            || headers.get(ERROR_CODE_HEADER).and_then(|v| v.to_str().ok())
                .is_some_and(|code| code.trim().parse::<u32>().is_ok());
        if status >= 500 && !reported {
            prop_assert_eq!(info.code, u32::from(status) * 100);
        }
    }
}
