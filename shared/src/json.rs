//! Small JSON helpers shared by the modules' error messages.

use serde_json::Value;

/// The kind of a JSON value with its article, for messages such as
/// "expected a JSON object, found an array".
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
