//! Property-based fuzz targets for every parser in `shared` that reads
//! network input (see [`crate::fuzzing`] for the inputs and the budget).
//!
//! Each target checks that the parser never panics on generated and mutated
//! input, and, where a writer exists, that what it writes reads back the
//! same. Run them alone with `cargo test -p ably-sse-wire --lib fuzz_`.

use std::path::Path;

use jsonwebtoken::{EncodingKey, Header};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::capability::{Capability, Operation};
use crate::fuzzing::{self, config, json_value, json_value_with, mutated, mutated_text, text_over};
use crate::jwt::{self, AblyJwtClaims};
use crate::message::{self as encoding, Message, Payload};
use crate::protocol::{Format, ProtocolMessage};
use crate::token::{TokenDetails, TokenParams, TokenRequest};
use crate::{ApiKey, vcdiff};
use crate::{ErrorInfo, ErrorResponse};

const NOW: u64 = 1_700_000_000;

fn key() -> ApiKey {
    ApiKey::parse("appA.keyA:s3cr3t-s3cr3t").expect("a valid key")
}

/// The characters capability resources and channel names are made of, with
/// the ones that mean something: `*`, `:`, `[`, `]`, `?`.
const RESOURCE_CHARS: &str = "ab*:[]?$-";

fn resource() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("[*]*".to_owned()),
        "[a-b*:\\[\\]?$-]{1,8}",
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    proptest::sample::select(crate::capability::OPERATIONS.to_vec())
}

fn capability() -> impl Strategy<Value = Capability> {
    vec((resource(), btree_set(operation(), 1..4)), 1..5).prop_map(|entries| {
        let mut capability = Capability::new();
        for (resource, operations) in entries {
            capability
                .insert(resource, operations)
                .expect("non-empty resource and operations");
        }
        capability
    })
}

fn capability_examples() -> Vec<String> {
    [
        r#"{"*":["*"]}"#,
        r#"{"chat:*":["subscribe","publish"],"private":["*"]}"#,
        r#"{"[*]*":["history"],"user:alice":["presence","publish"]}"#,
        r#"{"[meta]channel.lifecycle":["subscribe"],"a::$x":["object-publish"]}"#,
    ]
    .map(str::to_owned)
    .to_vec()
}

proptest! {
    #![proptest_config(config(256))]

    /// A valid Ably JWT with a few bytes changed either still verifies to
    /// exactly the same claims (only a change that does not alter what was
    /// signed can) or is refused with an error; it never panics.
    #[test]
    fn fuzz_ably_jwt_verify_mutated(token in mutated_text(jwt_examples())) {
        let key = key();
        let original = jwt_claims();
        if let Ok(verified) = jwt::verify_jwt(&token, [&key], NOW, 0) {
            prop_assert!(
                original.contains(&verified.claims),
                "a mutated token verified with claims {:?}",
                verified.claims
            );
        }
        let _ = jwt::decode_unverified_exp(&token);
    }

    /// Correctly signed JWTs whose header and payload are any JSON: the
    /// claim rules, not the signature check, get the input.
    #[test]
    fn fuzz_ably_jwt_claims_of_any_shape(
        payload in json_value_with(text_over("x-ably-capabilityclientIdjtiexp.*:", 16).boxed()),
        claims in proptest::collection::btree_map(
            proptest::sample::select(vec![
                "iat", "exp", "x-ably-capability", "x-ably-clientId", "x-ably-revocation-key",
                "x-ably-clientType", "jti", "ably.channel.chat:*", "nbf",
            ]),
            json_value(),
            0..8,
        ),
    ) {
        let key = key();
        let secret = EncodingKey::from_secret(key.secret().expose_secret().as_bytes())
            .expect("a non-empty secret");
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.key_name().to_owned());
        for body in [payload, Value::Object(claims.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())] {
            if let Ok(token) = jsonwebtoken::encode(&header, &body, &secret) {
                let _ = jwt::verify_jwt(&token, [&key], NOW, 5);
                let _ = jwt::decode_unverified_exp(&token);
            }
        }
    }

    /// JWT-shaped text: three dot-separated parts of base64url characters.
    #[test]
    fn fuzz_ably_jwt_generated(token in text_over("eyJhbGciOiJIUzI1NiJ9._-=+/.", 200)) {
        let key = key();
        let _ = jwt::verify_jwt(&token, [&key], NOW, 0);
        let _ = jwt::decode_unverified_exp(&token);
    }

    /// Capability text: mutated valid capabilities and generated text.
    /// Whatever parses has a canonical text that parses back to the same
    /// capability and is its own canonical text.
    #[test]
    fn fuzz_capability_parse(
        text in prop_oneof![
            mutated_text(capability_examples()),
            text_over("{}[]\",:*ab-publishsubscribe", 64),
        ],
    ) {
        if let Ok(capability) = Capability::parse(&text) {
            let canonical = capability.to_canonical_string();
            let again = Capability::parse(&canonical);
            prop_assert_eq!(again.as_ref().ok(), Some(&capability), "{}", canonical);
            prop_assert_eq!(again.map(|c| c.to_canonical_string()).ok(), Some(canonical));
        }
    }

    /// Capabilities given as any JSON value (the shape a JSON request body
    /// or a JWT claim can carry).
    #[test]
    fn fuzz_capability_from_json(value in json_value_with(text_over(RESOURCE_CHARS, 8).boxed())) {
        if let Ok(capability) = Capability::from_json(&value) {
            let canonical = capability.to_canonical_string();
            prop_assert_eq!(Capability::parse(&canonical).ok(), Some(capability));
        }
    }

    /// Generated capabilities: the canonical text round-trips, and an
    /// intersection grants nothing that either side does not.
    #[test]
    fn fuzz_capability_canonical_round_trip_and_intersection(
        requested in capability(),
        key in capability(),
        channels in vec("[a-b:\\[\\]*?$-]{1,8}", 1..6),
    ) {
        let canonical = requested.to_canonical_string();
        let parsed = Capability::parse(&canonical).ok();
        prop_assert_eq!(parsed.as_ref(), Some(&requested), "{}", canonical);
        if let Ok(granted) = requested.intersect(&key) {
            for channel in &channels {
                for operation in crate::capability::OPERATIONS {
                    if granted.allows(operation, channel) {
                        prop_assert!(
                            requested.allows(operation, channel) && key.allows(operation, channel),
                            "{} ∩ {} = {} allows {} on {:?}",
                            requested, key, granted, operation, channel
                        );
                    }
                }
            }
        }
    }

    /// TokenRequest bodies: mutated signed requests and any JSON value.
    /// Whatever parses serialises to JSON that parses back the same, and
    /// checking its MAC and fields never panics.
    #[test]
    fn fuzz_token_request_from_json(
        body in prop_oneof![
            mutated(token_request_examples()),
            json_value_with(text_over("keyNamettltimestampnonceclientIdcapabilitymac0123456789", 16).boxed())
                .prop_map(|value| value.to_string().into_bytes()),
        ],
    ) {
        if let Ok(request) = TokenRequest::from_json(&body) {
            let json = serde_json::to_vec(&request).expect("a TokenRequest serialises");
            prop_assert_eq!(TokenRequest::from_json(&json).ok(), Some(request.clone()));
            let _ = request.verify_mac(key().secret());
            let _ = request.validate(NOW * 1000);
            let _ = request.effective_ttl_ms();
        }
        let _ = serde_json::from_slice::<TokenParams>(&body);
    }

    /// Signed TokenRequests from any parameters the signer accepts: their
    /// JSON reads back to the same request, whose MAC still verifies.
    #[test]
    fn fuzz_token_request_json_round_trip(
        ttl in proptest::option::of(any::<u64>()),
        capability in proptest::option::of(capability()),
        client_id in proptest::option::of(".{0,12}"),
        nonce in ".{0,24}",
        timestamp in any::<u64>(),
    ) {
        let key = key();
        let params = TokenParams {
            ttl,
            capability: capability.map(|c| c.to_canonical_string()),
            client_id,
        };
        if let Ok(request) = TokenRequest::sign_with_nonce(&key, params, timestamp, nonce) {
            let json = serde_json::to_string(&request).expect("a TokenRequest serialises");
            let parsed = TokenRequest::from_json(json.as_bytes());
            prop_assert_eq!(parsed.as_ref().ok(), Some(&request), "{}", json);
            prop_assert!(request.verify_mac(key.secret()).is_ok());
        }
    }

    /// What servers answer with: TokenDetails, and errors bare or in their
    /// envelope. Whatever parses serialises to JSON that parses back the
    /// same.
    #[test]
    fn fuzz_token_details_and_error_json(
        body in prop_oneof![
            mutated(reply_examples()),
            json_value_with(text_over("tokenissuedexpireserrorcodestatusCodemessagehref0123", 12).boxed())
                .prop_map(|value| value.to_string().into_bytes()),
        ],
    ) {
        if let Ok(details) = serde_json::from_slice::<TokenDetails>(&body) {
            let json = serde_json::to_vec(&details).expect("TokenDetails serialise");
            prop_assert_eq!(serde_json::from_slice::<TokenDetails>(&json).ok(), Some(details));
        }
        if let Ok(info) = serde_json::from_slice::<ErrorInfo>(&body) {
            let json = serde_json::to_vec(&info).expect("an ErrorInfo serialises");
            prop_assert_eq!(serde_json::from_slice::<ErrorInfo>(&json).ok(), Some(info));
        }
        if let Ok(response) = serde_json::from_slice::<ErrorResponse>(&body) {
            let json = serde_json::to_vec(&response).expect("an ErrorResponse serialises");
            prop_assert_eq!(serde_json::from_slice::<ErrorResponse>(&json).ok(), Some(response));
        }
    }

    /// VCDIFF deltas from the test vectors, mutated, against their bases:
    /// never a panic, never a target over the limit.
    #[test]
    fn fuzz_vcdiff_decode_mutated(
        which in any::<usize>(),
        mutations in fuzzing::mutations(),
        limit in prop_oneof![Just(64 * 1024), 0..4096usize],
    ) {
        let vectors = vcdiff_vectors();
        let (base, delta) = &vectors[which % vectors.len()];
        let deltas: Vec<Vec<u8>> = vectors.iter().map(|(_, delta)| delta.clone()).collect();
        let limit: usize = limit;
        let mut delta = delta.clone();
        fuzzing::apply(&mut delta, &mutations, &deltas);
        if let Ok(target) = vcdiff::decode(base, &delta, limit) {
            prop_assert!(target.len() <= limit, "{} > {}", target.len(), limit);
        }
    }

    /// Generated deltas: the magic, then bytes biased towards small
    /// integers and the default code table's opcodes.
    #[test]
    fn fuzz_vcdiff_decode_generated(
        body in vec(prop_oneof![0..8u8, any::<u8>()], 0..256),
        base in vec(any::<u8>(), 0..64),
        limit in 0..4096usize,
    ) {
        let mut delta = vcdiff::MAGIC.to_vec();
        delta.extend(body);
        if let Ok(target) = vcdiff::decode(&base, &delta, limit) {
            prop_assert!(target.len() <= limit);
        }
    }

    /// Any base and a target made from it by edits: the encoder's delta
    /// decodes to exactly the target.
    #[test]
    fn fuzz_vcdiff_round_trip(
        base in vec(prop_oneof![b'a'..=b'd', any::<u8>()], 0..2048),
        mutations in fuzzing::mutations(),
    ) {
        let mut target = base.clone();
        fuzzing::apply(&mut target, &mutations, std::slice::from_ref(&base));
        let delta = vcdiff::encode(&base, &target);
        prop_assert_eq!(vcdiff::decode(&base, &delta, target.len()).ok(), Some(target));
    }

    /// The encoding chain on any `data` and any chain of known and unknown
    /// steps: never a panic.
    #[test]
    fn fuzz_message_decode_data(
        data in prop_oneof![
            json_value(),
            mutated_text(vec![
                "eyJmb28iOjF9".to_owned(),
                r#"{"foo":[1,"two"]}"#.to_owned(),
                "aGVsbG8=".to_owned(),
            ]).prop_map(Value::String),
        ],
        steps in vec(
            prop_oneof![
                proptest::sample::select(vec![
                    "json", "utf-8", "base64", "vcdiff", "cipher+aes-128-cbc", "", "utf8",
                ]).prop_map(str::to_owned),
                text_over("jsonutf-8base64/", 8),
            ],
            0..5,
        ),
    ) {
        let chain = steps.join("/");
        for encoding in [None, Some(chain.as_str())] {
            let _ = encoding::decode_data(&data, encoding);
        }
    }

    /// Realtime frames in either format, mutated: reading never panics, and
    /// a frame that reads writes back to the same frame in both formats.
    #[test]
    fn fuzz_protocol_message_both_formats(
        bytes in mutated(protocol_examples()),
        msgpack in any::<bool>(),
    ) {
        let format = if msgpack { Format::Msgpack } else { Format::Json };
        if let Ok(frame) = format.decode(&bytes) {
            for other in [Format::Json, Format::Msgpack] {
                let written = other.encode(&frame).expect("a frame that read writes");
                prop_assert_eq!(other.decode(&written).ok(), Some(frame.clone()));
            }
        }
    }

    /// Message JSON as it arrives on a stream, mutated: parsing and
    /// decoding its data never panic.
    #[test]
    fn fuzz_message_json(body in mutated(message_examples())) {
        if let Ok(message) = serde_json::from_slice::<Message>(&body) {
            let _ = message.decode_data();
            let _ = message.delta();
            let json = serde_json::to_vec(&message).expect("a Message serialises");
            prop_assert_eq!(serde_json::from_slice::<Message>(&json).ok(), Some(message));
        }
    }

    /// Payloads encoded for the wire decode back to the same payload (a
    /// JSON string comes back as text, as documented).
    #[test]
    fn fuzz_message_encode_decode_round_trip(
        payload in prop_oneof![
            ".{0,32}".prop_map(Payload::Text),
            vec(any::<u8>(), 0..64).prop_map(Payload::Binary),
            json_value().prop_map(Payload::Json),
        ],
    ) {
        if let Ok((data, encoding)) = payload.encode() {
            let decoded = encoding::decode_data(&Value::String(data), encoding)
                .expect("what encode writes decodes");
            let expected = match payload {
                Payload::Json(Value::String(text)) => Payload::Text(text),
                other => other,
            };
            prop_assert_eq!(decoded.payload, expected);
            prop_assert_eq!(decoded.encoding, None);
        }
    }

    /// Durations (every crate's settings, flags and `rewind`): whatever
    /// parses is exactly what its digits and unit say, anything else is
    /// refused, and nothing panics or wraps around.
    #[test]
    fn fuzz_duration_parse(text in prop_oneof![
        mutated_text(["10s", "250ms", "2m", "1h", "1d"].map(str::to_owned).to_vec()),
        "[0-9]{0,25}(ms|s|m|h|d|x|)",
        text_over("0123456789msdh+-. ", 12),
    ]) {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        let unit_ms: Option<u128> = match &text[digits.len()..] {
            "ms" => Some(1),
            "s" => Some(1000),
            "m" => Some(60_000),
            "h" => Some(3_600_000),
            "d" => Some(86_400_000),
            _ => None,
        };
        let expected = unit_ms
            .filter(|_| !digits.is_empty())
            .and_then(|unit_ms| digits.parse::<u128>().ok().map(|number| number * unit_ms))
            .filter(|&ms| ms <= u128::from(u64::MAX));
        prop_assert_eq!(crate::duration::parse(&text).ok().map(|d| d.as_millis()), expected);
    }
}

/// The claims of [`jwt_examples`], in order.
fn jwt_claims() -> Vec<AblyJwtClaims> {
    let mut plain = AblyJwtClaims::new(NOW - 10, NOW + 3600, r#"{"*":["*"]}"#);
    plain.client_id = Some("alice".to_owned());
    let mut full = AblyJwtClaims::new(NOW - 10, NOW + 60, r#"{"chat:*":["subscribe"]}"#);
    full.client_id = Some("*".to_owned());
    full.jti = Some("j-1".to_owned());
    full.revocation_key = Some("rk".to_owned());
    full.channel_claims
        .insert("chat:*".to_owned(), "member".to_owned());
    vec![plain, full]
}

fn jwt_examples() -> Vec<String> {
    let key = key();
    jwt_claims()
        .iter()
        .map(|claims| jwt::encode_jwt(&key, claims).expect("the examples sign"))
        .collect()
}

fn token_request_examples() -> Vec<Vec<u8>> {
    let key = key();
    let signed = TokenRequest::sign_with_nonce(
        &key,
        TokenParams {
            ttl: Some(3_600_000),
            capability: Some(r#"{"chat:*":["publish","subscribe"]}"#.to_owned()),
            client_id: Some("alice".to_owned()),
        },
        NOW * 1000,
        "0123456789abcdef".to_owned(),
    )
    .expect("the example signs");
    vec![
        serde_json::to_vec(&signed).expect("serialises"),
        json!({"keyName": "appA.keyA", "ttl": "3600000", "timestamp": NOW * 1000,
               "nonce": "0123456789abcdef"})
        .to_string()
        .into_bytes(),
    ]
}

fn reply_examples() -> Vec<Vec<u8>> {
    [
        r#"{"token":"appA.tok","keyName":"appA.keyA","issued":1,"expires":3600001,"capability":"{\"*\":[\"*\"]}","clientId":"a"}"#,
        r#"{"error":{"code":40142,"statusCode":401,"message":"Token expired","href":"https://help.ably.io/error/40142"}}"#,
        r#"{"code":40160,"message":"no","statusCode":null}"#,
    ]
    .map(|text| text.as_bytes().to_vec())
    .to_vec()
}

fn message_examples() -> Vec<Vec<u8>> {
    [
        r#"{"id":"a:0:0","name":"n","data":"eyJmb28iOjF9","encoding":"json/utf-8/base64","timestamp":1}"#,
        r#"{"id":"a:1:0","channel":"c","data":"1sPEAAABAAMAAAEB","encoding":"vcdiff/base64","extras":{"delta":{"from":"a:0:0","format":"vcdiff"}}}"#,
        r#"{"data":{"x":[1,2,{"y":null}]},"clientId":"bob","action":0,"serial":"s"}"#,
    ]
    .map(|text| text.as_bytes().to_vec())
    .to_vec()
}

/// Every (base, delta) pair of the test vectors with a delta under 2 KiB
/// and a base under 64 KiB, read once.
fn vcdiff_vectors() -> &'static [(Vec<u8>, Vec<u8>)] {
    static VECTORS: std::sync::OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::OnceLock::new();
    VECTORS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vcdiff");
        let mut pairs = Vec::new();
        let payloads = std::fs::read_dir(root.join("deltas")).expect("the vcdiff vectors");
        for payload in payloads.map(|entry| entry.expect("a directory entry").path()) {
            let name = payload.file_name().expect("a name").to_owned();
            let Ok(base) = std::fs::read(root.join("payloads").join(&name).join("base")) else {
                continue;
            };
            for delta in std::fs::read_dir(&payload).expect("a vector directory") {
                let delta = std::fs::read(delta.expect("an entry").path()).expect("a delta");
                if delta.len() < 2048 && base.len() < 64 * 1024 {
                    pairs.push((base.clone(), delta));
                }
            }
        }
        pairs.sort();
        assert!(pairs.len() > 10, "only {} vectors found", pairs.len());
        pairs
    })
}

/// Frames as ably-js sends and receives them, in JSON and in msgpack.
fn protocol_examples() -> Vec<Vec<u8>> {
    let json = [
        r#"{"action":0,"id":"12394404419098426"}"#,
        r#"{"action":4,"connectionId":"c","connectionDetails":{"clientId":"a","connectionKey":"c!k","maxIdleInterval":15000}}"#,
        r#"{"action":10,"channel":"y","params":{"agent":"spaces/0.5.2"},"flags":589824}"#,
        r#"{"action":15,"channel":"x","messages":[{"name":"a","data":"AQID","encoding":"utf-8/base64","action":0,"size":4}],"msgSerial":3}"#,
        r#"{"action":14,"channel":"x","presence":[{"data":"{}","action":2,"encoding":"json"}],"msgSerial":0}"#,
        r#"{"action":2,"msgSerial":0,"count":1,"error":{"code":40160,"statusCode":401,"message":"x"}}"#,
        r#"{"action":17,"auth":{"accessToken":"tok-2"}}"#,
    ];
    let mut examples: Vec<Vec<u8>> = json.iter().map(|t| t.as_bytes().to_vec()).collect();
    for text in json {
        let frame: ProtocolMessage = serde_json::from_str(text).expect("a valid example");
        examples.push(Format::Msgpack.encode(&frame).expect("an example writes"));
    }
    examples
}
