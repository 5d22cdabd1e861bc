//! The `encoding` chain (`docs/protocol.md#the-encoding-chain`): undoing it
//! into a [`Payload`], and producing it for publishing
//! (`docs/protocol.md#publishing`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use serde_json::Value;

use crate::error::{Error, Result};

// The step names this module undoes itself.
const BASE64: &str = "base64";
const UTF8: &str = "utf-8";
const JSON: &str = "json";

/// Standard alphabet, padded on output. Decoding also accepts unpadded input,
/// as Node's `Buffer.from(text, "base64")` (ably-js) does; any other deviation
/// (URL-safe alphabet, whitespace, non-zero trailing bits) is corruption.
const BASE64_ENGINE: base64::engine::GeneralPurpose = STANDARD_PAD_INDIFFERENT;

/// A message payload in its decoded form.
///
/// On the wire a payload is usually a string plus an `encoding` chain; this is
/// what is left once the chain has been undone (see [`decode_data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A JSON value: the result of a `json` step, or `data` that arrived
    /// already parsed (an object, array, number or boolean on the wire).
    Json(Value),
    /// A string: `data` sent as a string, or bytes after a `utf-8` step.
    Text(String),
    /// Raw bytes, typically after a `base64` step.
    Binary(Vec<u8>),
}

impl Payload {
    /// Encodes the payload for the wire as a REST publish does
    /// (`docs/protocol.md#publishing`), giving the `data` string and the
    /// `encoding` to send with it.
    ///
    /// - [`Payload::Text`] → the string, no encoding;
    /// - [`Payload::Binary`] → standard padded base64, `"base64"`;
    /// - a JSON object or array → compact JSON text, `"json"`;
    /// - a JSON string → the string, no encoding: a string published over REST
    ///   is a string message, not a JSON-encoded one.
    ///
    /// [`decode_data`] turns the result back into the same payload, except
    /// that a JSON string comes back as [`Payload::Text`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEncoding`] for a JSON number, boolean or `null`: Ably
    /// only carries strings, binary, objects and arrays (ably-js rejects the
    /// others with 40013, the code this error maps to).
    pub fn encode(&self) -> Result<(String, Option<&'static str>)> {
        match self {
            Payload::Text(text) | Payload::Json(Value::String(text)) => Ok((text.clone(), None)),
            Payload::Binary(bytes) => Ok((BASE64_ENGINE.encode(bytes), Some(BASE64))),
            Payload::Json(value) => Ok((json_text(value)?, Some(JSON))),
        }
    }

    /// What the payload is, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Payload::Json(_) => "a JSON value",
            Payload::Text(_) => "a string",
            Payload::Binary(_) => "bytes",
        }
    }
}

/// The compact JSON text of an object or array.
///
/// # Errors
///
/// [`Error::InvalidEncoding`] for any other JSON value.
pub(super) fn json_text(value: &Value) -> Result<String> {
    match value {
        Value::Object(_) | Value::Array(_) => Ok(value.to_string()),
        other => Err(Error::InvalidEncoding(format!(
            "data must be a string, binary, or a JSON object or array, got {}",
            crate::json::type_name(other)
        ))),
    }
}

/// The outcome of [`decode_data`]: the payload and the steps left undone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decoded {
    /// The payload after the last step that could be undone.
    pub payload: Payload,
    /// The steps not undone, left-most first, as they appeared on the wire
    /// (`"utf-8/cipher+aes-128-cbc"`); `None` when the whole chain was undone.
    pub encoding: Option<String>,
}

/// Decodes a message's `data` by undoing its `encoding` chain from right to
/// left (`docs/protocol.md#the-encoding-chain`).
///
/// Same as [`decode_data_with`] with a hook that handles no step.
///
/// # Errors
///
/// [`Error::InvalidEncoding`] when a step cannot be undone: invalid base64,
/// invalid UTF-8, invalid JSON, or a step given the wrong kind of input (such
/// as `json` given bytes). The message names the step.
pub fn decode_data(data: &Value, encoding: Option<&str>) -> Result<Decoded> {
    decode_data_with(data, encoding, |_, _| None)
}

/// Decodes a message's `data` by undoing its `encoding` chain from right to
/// left (`docs/protocol.md#the-encoding-chain`), asking `hook` about steps this
/// module does not know.
///
/// The starting payload is [`Payload::Text`] for a string and
/// [`Payload::Json`] for any other value: `docs/protocol.md#the-message` asks
/// us to accept `data` that arrives already parsed. An absent or empty
/// `encoding` means no steps. The steps are:
///
/// - `base64`: standard base64 (padding optional) → [`Payload::Binary`];
///   needs a string.
/// - `utf-8`: bytes → [`Payload::Text`]; on a string it is a no-op, since the
///   string already is the text.
/// - `json`: a string → [`Payload::Json`]; a value that arrived already parsed
///   passes through. Bytes are refused: Ably always puts `utf-8` between
///   `json` and `base64`.
/// - anything else, including an empty step (`"json/"`), goes to
///   `hook(step, &payload)`. `Some(Ok(next))` continues with `next`;
///   `Some(Err(e))` fails with `e`; `None` stops decoding, and that step and
///   everything left of it stay in [`Decoded::encoding`] (RSL6b). This is where
///   a caller plugs in `vcdiff` (`docs/protocol.md#deltas`) or `cipher+…`.
///
/// A string `data` is borrowed until a step produces something new (`base64`
/// decodes straight from it, `utf-8` takes over the decoded bytes), so it is
/// copied only when it is itself the result. Any other `data` is cloned once.
///
/// # Errors
///
/// [`Error::InvalidEncoding`] when a known step cannot be undone: invalid
/// base64, invalid UTF-8, invalid JSON, or input of the wrong kind (such as
/// `json` given bytes). The message names the step. Errors from `hook` are
/// returned as they are.
///
/// # Example
///
/// A hook that undoes a made-up `reverse` step:
///
/// ```
/// use serde_json::json;
/// use shared::message::{Payload, decode_data_with};
///
/// let reverse = |step: &str, payload: &Payload| match (step, payload) {
///     ("reverse", Payload::Text(text)) => Some(Ok(Payload::Text(text.chars().rev().collect()))),
///     _ => None,
/// };
///
/// let decoded = decode_data_with(&json!("olleh"), Some("reverse"), reverse)?;
///
/// assert_eq!(decoded.payload, Payload::Text("hello".into()));
/// assert_eq!(decoded.encoding, None);
/// # Ok::<(), shared::Error>(())
/// ```
pub fn decode_data_with<F>(data: &Value, encoding: Option<&str>, mut hook: F) -> Result<Decoded>
where
    F: FnMut(&str, &Payload) -> Option<Result<Payload>>,
{
    let mut current = match data {
        Value::String(text) => Current::Wire(text),
        other => Current::Owned(Payload::Json(other.clone())),
    };
    // `rest` is the part of the chain not yet undone; the step to undo next is
    // its right-most segment.
    let mut rest = encoding.filter(|chain| !chain.is_empty());
    while let Some(chain) = rest {
        let (left, step) = match chain.rsplit_once('/') {
            Some((left, step)) => (Some(left), step),
            None => (None, chain),
        };
        current = match step {
            BASE64 => {
                let text = current
                    .text()
                    .ok_or_else(|| current.mismatch(step, "a string to decode"))?;
                Current::Owned(Payload::Binary(decode_base64(text)?))
            }
            UTF8 => match current {
                Current::Owned(Payload::Binary(bytes)) => {
                    let text = String::from_utf8(bytes).map_err(|err| {
                        step_error(
                            step,
                            format_args!(
                                "invalid UTF-8 at byte {}",
                                err.utf8_error().valid_up_to()
                            ),
                        )
                    })?;
                    Current::Owned(Payload::Text(text))
                }
                Current::Owned(Payload::Json(_)) => {
                    return Err(current.mismatch(step, "bytes or a string"));
                }
                text @ (Current::Wire(_) | Current::Owned(Payload::Text(_))) => text,
            },
            JSON => match current.text() {
                Some(text) => {
                    let value = serde_json::from_str(text)
                        .map_err(|err| step_error(step, format_args!("invalid JSON: {err}")))?;
                    Current::Owned(Payload::Json(value))
                }
                None if matches!(current, Current::Owned(Payload::Json(_))) => current,
                None => return Err(current.mismatch(step, "a string to parse")),
            },
            _ => {
                let payload = current.into_payload();
                match hook(step, &payload) {
                    Some(next) => Current::Owned(next?),
                    None => {
                        return Ok(Decoded {
                            payload,
                            encoding: Some(chain.to_owned()),
                        });
                    }
                }
            }
        };
        rest = left;
    }
    Ok(Decoded {
        payload: current.into_payload(),
        encoding: None,
    })
}

/// The payload part-way through decoding.
///
/// `Wire` is the string `data` itself, borrowed: `utf-8` leaves it as it is
/// and `base64`/`json` only read it, so it is copied only if it ends up being
/// the result.
enum Current<'a> {
    Wire(&'a str),
    Owned(Payload),
}

impl Current<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Current::Wire(text) => Some(text),
            Current::Owned(Payload::Text(text)) => Some(text),
            Current::Owned(_) => None,
        }
    }

    fn into_payload(self) -> Payload {
        match self {
            Current::Wire(text) => Payload::Text(text.to_owned()),
            Current::Owned(payload) => payload,
        }
    }

    /// The error for a step handed the wrong kind of input.
    fn mismatch(&self, step: &str, expected: &str) -> Error {
        let got = match self {
            Current::Wire(_) => "a string",
            Current::Owned(payload) => payload.kind(),
        };
        step_error(step, format_args!("expected {expected}, got {got}"))
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    use base64::DecodeError;

    BASE64_ENGINE.decode(text).map_err(|err| {
        let problem = match err {
            DecodeError::InvalidByte(offset, byte) => {
                format!("invalid base64: byte {byte:#04x} at offset {offset}")
            }
            DecodeError::InvalidLength(symbols) => {
                format!("invalid base64: {symbols} symbols is not a valid length")
            }
            DecodeError::InvalidLastSymbol { offset, .. } => {
                format!("invalid base64: last symbol at offset {offset} has trailing bits set")
            }
            DecodeError::InvalidPadding => "invalid base64: bad padding".to_owned(),
        };
        step_error(BASE64, problem)
    })
}

fn step_error(step: &str, problem: impl fmt::Display) -> Error {
    Error::InvalidEncoding(format!("step {step}: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(data: &Value, encoding: &str) -> Result<Decoded> {
        decode_data(data, Some(encoding))
    }

    fn decoded(payload: Payload, encoding: Option<&str>) -> Decoded {
        Decoded {
            payload,
            encoding: encoding.map(str::to_owned),
        }
    }

    fn error_text(result: Result<Decoded>) -> String {
        match result {
            Err(Error::InvalidEncoding(message)) => message,
            other => panic!("expected InvalidEncoding, got {other:?}"),
        }
    }

    // --- `docs/protocol.md#the-encoding-chain` "common values" and ably-common
    // messages-encoding.json shapes.

    #[test]
    fn json_step_parses_an_object() {
        let result = decode(&json!(r#"{"foo":42}"#), "json").unwrap();

        assert_eq!(result, decoded(Payload::Json(json!({"foo": 42})), None));
    }

    #[test]
    fn json_step_parses_an_array() {
        let result = decode(&json!(r#"[{"foo":42},"qux"]"#), "json").unwrap();

        assert_eq!(
            result,
            decoded(Payload::Json(json!([{"foo": 42}, "qux"])), None)
        );
    }

    #[test]
    fn base64_step_gives_bytes() {
        let result = decode(&json!("3q2+7w=="), "base64").unwrap();

        assert_eq!(
            result,
            decoded(Payload::Binary(vec![0xde, 0xad, 0xbe, 0xef]), None)
        );
    }

    #[test]
    fn utf8_after_base64_gives_text() {
        // "héllo" as UTF-8, base64-encoded.
        let result = decode(&json!("aMOpbGxv"), "utf-8/base64").unwrap();

        assert_eq!(result, decoded(Payload::Text("héllo".into()), None));
    }

    #[test]
    fn json_after_utf8_after_base64_gives_json() {
        // `{"expectedType":"jsonObject"}`, base64-encoded.
        let data = json!("eyJleHBlY3RlZFR5cGUiOiJqc29uT2JqZWN0In0=");

        let result = decode(&data, "json/utf-8/base64").unwrap();

        assert_eq!(
            result,
            decoded(Payload::Json(json!({"expectedType": "jsonObject"})), None)
        );
    }

    #[test]
    fn string_without_encoding_is_text_even_if_it_looks_like_json() {
        for data in ["foo", r#"{"foo":42}"#] {
            let result = decode_data(&json!(data), None).unwrap();

            assert_eq!(result, decoded(Payload::Text(data.into()), None));
        }
    }

    #[test]
    fn empty_encoding_means_no_steps() {
        let result = decode(&json!("3q2+7w=="), "").unwrap();

        assert_eq!(result, decoded(Payload::Text("3q2+7w==".into()), None));
    }

    #[test]
    fn non_string_data_without_encoding_is_json() {
        for data in [json!({"a": [1, 2]}), json!([1, "x"]), json!(7), json!(true)] {
            let result = decode_data(&data, None).unwrap();

            assert_eq!(result, decoded(Payload::Json(data), None));
        }
    }

    #[test]
    fn already_parsed_data_with_json_encoding_passes_through() {
        // The `[meta]stats:minute` docs example
        // (`docs/protocol.md#the-message`).
        let data =
            json!({"entries": {"messages.all.all.count": 1}, "intervalId": "2024-01-01:00:00"});

        let result = decode(&data, "json").unwrap();

        assert_eq!(result, decoded(Payload::Json(data), None));
    }

    #[test]
    fn utf8_on_a_string_is_a_no_op() {
        let result = decode(&json!("plain"), "utf-8").unwrap();

        assert_eq!(result, decoded(Payload::Text("plain".into()), None));
    }

    #[test]
    fn base64_accepts_missing_padding() {
        let result = decode(&json!("3q2+7w"), "base64").unwrap();

        assert_eq!(
            result,
            decoded(Payload::Binary(vec![0xde, 0xad, 0xbe, 0xef]), None)
        );
    }

    // --- Unknown steps stop decoding and stay in `encoding` (RSL6b).

    #[test]
    fn cipher_step_stops_after_base64_with_bytes() {
        let result = decode(&json!("3q2+7w=="), "cipher+aes-128-cbc/base64").unwrap();

        assert_eq!(
            result,
            decoded(
                Payload::Binary(vec![0xde, 0xad, 0xbe, 0xef]),
                Some("cipher+aes-128-cbc")
            )
        );
    }

    #[test]
    fn encrypted_string_keeps_the_steps_left_of_the_cipher() {
        let result = decode(&json!("3q2+7w=="), "utf-8/cipher+aes-128-cbc/base64").unwrap();

        assert_eq!(
            result,
            decoded(
                Payload::Binary(vec![0xde, 0xad, 0xbe, 0xef]),
                Some("utf-8/cipher+aes-128-cbc")
            )
        );
    }

    #[test]
    fn encrypted_json_keeps_the_steps_left_of_the_cipher() {
        let result = decode(&json!("3q2+7w=="), "json/utf-8/cipher+aes-256-cbc/base64").unwrap();

        assert_eq!(
            result.encoding.as_deref(),
            Some("json/utf-8/cipher+aes-256-cbc")
        );
    }

    #[test]
    fn vcdiff_without_a_hook_leaves_the_delta_bytes() {
        // A vcdiff delta starts with the magic `D6 C3 C4 00` ("1sPE" in base64).
        for (encoding, remaining) in [
            ("utf-8/vcdiff/base64", "utf-8/vcdiff"),
            ("json/utf-8/vcdiff/base64", "json/utf-8/vcdiff"),
            ("vcdiff/base64", "vcdiff"),
        ] {
            let result = decode(&json!("1sPEAA=="), encoding).unwrap();

            assert_eq!(
                result,
                decoded(
                    Payload::Binary(vec![0xd6, 0xc3, 0xc4, 0x00]),
                    Some(remaining)
                ),
                "{encoding}"
            );
        }
    }

    #[test]
    fn unknown_first_step_returns_the_data_untouched() {
        let result = decode(&json!("3q2+7w=="), "base64/foo").unwrap();

        assert_eq!(
            result,
            decoded(Payload::Text("3q2+7w==".into()), Some("base64/foo"))
        );
    }

    #[test]
    fn step_names_are_case_sensitive() {
        let result = decode(&json!("{}"), "JSON").unwrap();

        assert_eq!(result, decoded(Payload::Text("{}".into()), Some("JSON")));
    }

    #[test]
    fn an_empty_step_is_unknown() {
        // Trailing slash: the right-most step is empty, so nothing is undone.
        let trailing = decode(&json!("{}"), "json/").unwrap();
        // Leading slash: `json` is undone, then the empty step stops decoding.
        let leading = decode(&json!("{}"), "/json").unwrap();

        assert_eq!(trailing, decoded(Payload::Text("{}".into()), Some("json/")));
        assert_eq!(leading, decoded(Payload::Json(json!({})), Some("")));
    }

    // --- The hook.

    #[test]
    fn hook_handles_a_step_and_decoding_continues() {
        // A fake "delta" step standing in for vcdiff: appends a fixed suffix.
        let mut seen = Vec::new();

        let result = decode_data_with(
            &json!("eyJhIjox"), // `{"a":1` in base64
            Some("json/utf-8/fake/base64"),
            |step, payload| {
                seen.push(step.to_owned());
                match (step, payload) {
                    ("fake", Payload::Binary(bytes)) => {
                        Some(Ok(Payload::Binary([bytes.as_slice(), b"}"].concat())))
                    }
                    _ => None,
                }
            },
        )
        .unwrap();

        assert_eq!(result, decoded(Payload::Json(json!({"a": 1})), None));
        assert_eq!(seen, ["fake"]);
    }

    #[test]
    fn hook_declining_a_step_stops_decoding() {
        let result =
            decode_data_with(&json!("3q2+7w=="), Some("utf-8/fake/base64"), |_, _| None).unwrap();

        assert_eq!(
            result,
            decoded(
                Payload::Binary(vec![0xde, 0xad, 0xbe, 0xef]),
                Some("utf-8/fake")
            )
        );
    }

    #[test]
    fn hook_errors_are_returned_as_they_are() {
        let result = decode_data_with(&json!("1sPEAA=="), Some("vcdiff/base64"), |_, _| {
            Some(Err(Error::Vcdiff("base id mismatch".into())))
        });

        assert!(
            matches!(result, Err(Error::Vcdiff(ref message)) if message == "base id mismatch"),
            "{result:?}"
        );
    }

    #[test]
    fn hook_is_not_asked_about_known_steps() {
        let result = decode_data_with(&json!("aGk="), Some("utf-8/base64"), |step, _| {
            panic!("hook called for {step}")
        })
        .unwrap();

        assert_eq!(result, decoded(Payload::Text("hi".into()), None));
    }

    // --- Errors name the step and the problem.

    #[test]
    fn invalid_base64_names_the_offending_byte() {
        let message = error_text(decode(&json!("3q2!7w=="), "base64"));

        assert_eq!(
            message,
            "step base64: invalid base64: byte 0x21 at offset 3"
        );
    }

    #[test]
    fn truncated_base64_is_an_error() {
        let message = error_text(decode(&json!("3q2+7"), "base64"));

        assert_eq!(
            message,
            "step base64: invalid base64: 5 symbols is not a valid length"
        );
    }

    #[test]
    fn url_safe_base64_is_an_error() {
        let message = error_text(decode(&json!("3q2-7w=="), "base64"));

        assert_eq!(
            message,
            "step base64: invalid base64: byte 0x2d at offset 3"
        );
    }

    #[test]
    fn invalid_utf8_names_the_byte_offset() {
        // `h`, then a lone continuation byte.
        let message = error_text(decode(&json!("aIA="), "utf-8/base64"));

        assert_eq!(message, "step utf-8: invalid UTF-8 at byte 1");
    }

    #[test]
    fn invalid_json_carries_the_parser_message() {
        let message = error_text(decode(&json!(r#"{"foo":"#), "json"));

        assert_eq!(
            message,
            "step json: invalid JSON: EOF while parsing a value at line 1 column 7"
        );
    }

    #[test]
    fn json_refuses_bytes() {
        let message = error_text(decode(&json!("e30="), "json/base64"));

        assert_eq!(message, "step json: expected a string to parse, got bytes");
    }

    #[test]
    fn base64_refuses_a_json_value() {
        let message = error_text(decode(&json!({"a": 1}), "base64"));

        assert_eq!(
            message,
            "step base64: expected a string to decode, got a JSON value"
        );
    }

    #[test]
    fn base64_refuses_bytes() {
        let message = error_text(decode(&json!("3q2+7w=="), "base64/base64"));

        assert_eq!(
            message,
            "step base64: expected a string to decode, got bytes"
        );
    }

    #[test]
    fn utf8_refuses_a_json_value() {
        let message = error_text(decode(&json!([1]), "utf-8"));

        assert_eq!(
            message,
            "step utf-8: expected bytes or a string, got a JSON value"
        );
    }

    #[test]
    fn errors_map_to_ably_code_40013() {
        let err = decode(&json!("!"), "base64").unwrap_err();

        assert_eq!(err.error_info().code, crate::codes::INVALID_MESSAGE_DATA);
        assert_eq!(
            err.to_string(),
            "invalid message encoding: step base64: invalid base64: byte 0x21 at offset 0"
        );
    }

    // --- Encoding for publishing, and back.

    #[test]
    fn encode_follows_the_rest_publish_rules() {
        let cases = [
            (Payload::Text("hi".into()), ("hi", None)),
            (Payload::Json(json!("hi")), ("hi", None)),
            (
                Payload::Binary(vec![0xde, 0xad, 0xbe, 0xef]),
                ("3q2+7w==", Some("base64")),
            ),
            (
                Payload::Json(json!({"foo": 42})),
                (r#"{"foo":42}"#, Some("json")),
            ),
            (
                Payload::Json(json!([{"foo": 42}, "qux"])),
                (r#"[{"foo":42},"qux"]"#, Some("json")),
            ),
        ];

        for (payload, (data, encoding)) in cases {
            let encoded = payload.encode().unwrap();

            assert_eq!(encoded, (data.to_owned(), encoding), "{payload:?}");
        }
    }

    #[test]
    fn encode_refuses_json_scalars() {
        for (value, kind) in [
            (json!(42), "a number"),
            (json!(false), "a boolean"),
            (Value::Null, "null"),
        ] {
            let err = Payload::Json(value).encode().unwrap_err();

            assert_eq!(
                err.to_string(),
                format!(
                    "invalid message encoding: data must be a string, binary, or a JSON object or array, got {kind}"
                )
            );
        }
    }

    #[test]
    fn decode_undoes_encode() {
        for payload in [
            Payload::Text(String::new()),
            Payload::Text("héllo".into()),
            Payload::Binary(Vec::new()),
            Payload::Binary((0..=255).collect()),
            Payload::Json(json!({"nested": {"list": [1, 2.5, null, "x"]}})),
            Payload::Json(json!([])),
        ] {
            let (data, encoding) = payload.encode().unwrap();

            let back = decode_data(&Value::String(data), encoding).unwrap();

            assert_eq!(back, decoded(payload, None));
        }
    }

    #[test]
    fn a_float_in_a_json_payload_decodes_to_the_value_published() {
        // The fuzz target's minimal input: parsed without
        // `float_roundtrip`, the text comes back one unit in the last place
        // off (6.139652183959029e+180).
        let value = 6.13965218395903e180_f64;
        let payload = Payload::Json(json!({"": value}));

        let (data, encoding) = payload.encode().unwrap();
        let back = decode_data(&Value::String(data), encoding).unwrap();

        assert_eq!(back.payload, payload);
        assert_eq!(
            back.payload,
            Payload::Json(json!({"": 6.13965218395903e180}))
        );
    }
}
