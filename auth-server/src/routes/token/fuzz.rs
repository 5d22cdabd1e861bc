//! Property-based fuzz targets for the token endpoints' request parsing:
//! the parameters in a query string, a form body and a JSON body, and the
//! `Authorization` header (see `shared::fuzzing` for the inputs and the
//! budget).

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use shared::fuzzing::{config, json_value_with, mutated, text_over};

use super::{RequestedParams, bearer};

fn form_examples() -> Vec<Vec<u8>> {
    [
        "capability=%7B%22chat%3A*%22%3A%5B%22subscribe%22%5D%7D&ttl=3600000&clientId=alice",
        "rnd=0.123&capability={\"*\":[\"*\"]}&ttl=1&clientId=b%20o+b",
        "ttl=60000&ttl=70000&a=%zz&=&&capability=",
    ]
    .map(|text| text.as_bytes().to_vec())
    .to_vec()
}

fn json_examples() -> Vec<Vec<u8>> {
    [
        r#"{"capability":{"chat:*":["subscribe","publish"]},"ttl":3600000,"clientId":"alice"}"#,
        r#"{"capability":"{\"*\":[\"*\"]}","ttl":"60000","clientId":null,"rnd":1.5}"#,
    ]
    .map(|text| text.as_bytes().to_vec())
    .to_vec()
}

/// What a parse kept, to check a second parse of the same input agrees.
fn kept(params: &RequestedParams) -> (Option<String>, Option<u64>, Option<String>) {
    (
        params.capability.as_ref().map(|c| c.to_canonical_string()),
        params.ttl_ms,
        params.client_id.clone(),
    )
}

proptest! {
    #![proptest_config(config(1024))]

    /// Query strings and form bodies: whatever they hold, the parameters
    /// parse or are refused; a `ttl` kept is positive, a clientId kept is
    /// not empty, a capability kept lists at most the accepted number of
    /// resources.
    #[test]
    fn fuzz_token_params_form(
        form in prop_oneof![
            mutated(form_examples()),
            text_over("capability=ttl&clientId%7B%22*:[]{}\"+,0123456789", 96)
                .prop_map(String::into_bytes),
        ],
    ) {
        let mut params = RequestedParams::default();
        if params.read_form(&form).is_ok() {
            let (capability, ttl, client_id) = kept(&params);
            prop_assert!(ttl.is_none_or(|ttl| ttl > 0));
            prop_assert!(client_id.is_none_or(|id| !id.is_empty()));
            prop_assert!(params.capability.is_none_or(|c| c.len() <= super::MAX_REQUESTED_RESOURCES), "{:?}", capability);
        }
    }

    /// JSON bodies: mutated examples and any JSON value.
    #[test]
    fn fuzz_token_params_json(
        body in prop_oneof![
            mutated(json_examples()),
            json_value_with(text_over("capabilityttlclientId*:[]{}\"0123456789", 12).boxed())
                .prop_map(|value| value.to_string().into_bytes()),
        ],
    ) {
        let mut params = RequestedParams::default();
        if params.read_json(&body).is_ok() {
            let mut again = RequestedParams::default();
            prop_assert!(again.read_json(&body).is_ok());
            prop_assert_eq!(kept(&params), kept(&again));
            prop_assert!(params.ttl_ms.is_none_or(|ttl| ttl > 0));
        }
    }

    /// The `Authorization` header, any bytes a header value may hold.
    #[test]
    fn fuzz_bearer_header(value in mutated(vec![b"Bearer eyJ.eyJ.sig".to_vec(), b"bearer  x ".to_vec()])) {
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        if let Ok(Some(token)) = bearer(&headers) {
            prop_assert!(!token.is_empty() && token.trim() == token);
        }
    }
}
