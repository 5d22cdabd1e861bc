//! Ably capabilities (`docs/protocol.md#capabilities-and-clientid`): what a
//! token may do on which channels.
//!
//! A capability is a JSON object mapping resource names to arrays of
//! operations; inside a token or JWT it travels as a string
//! (`docs/protocol.md#capability-format`).
//!
//! ```json
//! {"chat:*":["publish","subscribe"],"[meta]*":["subscribe"]}
//! ```
//!
//! - [`Capability`] parses that object (or the string holding it), rejects
//!   unknown operations, and writes the canonical text of
//!   `docs/protocol.md#canonical-capability-text`.
//! - [`resource_matches`] applies the wildcard rules of
//!   `docs/protocol.md#resource-wildcards` and the tagged channel rule of
//!   `docs/protocol.md#tagged-channels`; [`resource_covers`] compares two
//!   resources.
//! - [`Capability::intersect`] computes what a token really gets
//!   (`docs/protocol.md#capability-intersection`): the intersection of the
//!   requested capability and the key's; an empty intersection is an error.
//! - [`Capability::allows`] answers "may this token do X on channel Y".
//!
//! # Example
//!
//! ```
//! use shared::capability::{Capability, Operation};
//!
//! let key = Capability::parse(r#"{"chat:*":["publish","subscribe"]}"#)?;
//! let requested = Capability::parse(r#"{"chat:lobby":["*"]}"#)?;
//!
//! let granted = requested.intersect(&key)?;
//!
//! assert_eq!(granted.to_string(), r#"{"chat:lobby":["publish","subscribe"]}"#);
//! assert!(granted.allows(Operation::Subscribe, "chat:lobby"));
//! assert!(!granted.allows(Operation::Subscribe, "chat:other"));
//! # Ok::<(), shared::Error>(())
//! ```

mod operation;
mod resource;

/// Every operation, for the crate's tests.
#[cfg(test)]
pub(crate) use operation::OPERATIONS;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

pub use operation::Operation;
pub use resource::{resource_covers, resource_matches, space_channels};

/// A capability: resource names (channel names or wildcard patterns) mapped
/// to the operations granted on them (`docs/protocol.md#capability-format`).
///
/// # Wire forms
///
/// - **Deserialize** accepts the JSON object itself *or* a JSON string
///   holding the object's text: ably-js and TokenRequests send the string,
///   hand-written auth-server bodies may send the object.
/// - **Serialize** always writes the canonical text as a JSON *string*
///   (`"{\"*\":[\"subscribe\"]}"`), because that is how a capability travels
///   in TokenRequest, TokenDetails and the JWT `x-ably-capability` claim.
/// - [`Display`](fmt::Display) and [`Capability::to_canonical_string`] give the
///   canonical text itself.
///
/// # Normal form
///
/// Operation lists are sets: duplicates collapse and order is canonical.
/// `*` stands alone: Ably refuses a list holding `*` beside other operations
/// (`["*","publish"]`, 400), so [`Capability::parse`] and
/// [`Capability::from_json`] do too, and [`Capability::insert`] and
/// intersection, which build lists, write `["*"]` alone
/// (`docs/protocol.md#capability-format`).
///
/// An empty capability `{}` parses
/// (`docs/protocol.md#exchanging-a-tokenrequest` needs to answer "requested
/// `{}`" with 40160); it allows nothing and [`Capability::intersect`] rejects
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capability {
    resources: BTreeMap<String, BTreeSet<Operation>>,
}

impl Capability {
    /// An empty capability, `{}`; grant resources with [`Capability::insert`].
    pub fn new() -> Self {
        Capability::default()
    }

    /// Everything: `{"[*]*":["*"]}`.
    ///
    /// Requesting no capability means requesting this
    /// (`docs/protocol.md#capability-intersection`), so intersecting it with a
    /// key's capability yields the key's.
    pub fn all() -> Self {
        let resources = BTreeMap::from([("[*]*".to_owned(), BTreeSet::from([Operation::All]))]);
        Capability { resources }
    }

    /// Parses capability JSON text: an object of resource → operations.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCapability`] if `text` is not JSON, not an object, or
    /// breaks a rule of [`Capability::from_json`].
    pub fn parse(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| Error::InvalidCapability(format!("not valid JSON: {err}")))?;
        match &value {
            Value::Object(_) => Capability::from_json(&value),
            other => Err(not_an_object(other)),
        }
    }

    /// Reads a capability from parsed JSON: the object itself, or a string
    /// holding its JSON text (the two forms seen on the wire).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCapability`], naming the problem, if:
    /// - the value is not an object (or a string holding one);
    /// - a resource name is empty;
    /// - a resource's operations are not a non-empty array;
    /// - an operation is not a string, or not one of
    ///   `docs/protocol.md#operations` (`unknown operation "publsh" for
    ///   resource "chat:*"`);
    /// - `*` is listed beside other operations (`["*","publish"]`), which
    ///   Ably refuses with a 400.
    pub fn from_json(value: &Value) -> Result<Self> {
        let entries = match value {
            Value::Object(entries) => entries,
            Value::String(text) => return Capability::parse(text),
            other => return Err(not_an_object(other)),
        };
        let mut resources = BTreeMap::new();
        for (resource, operations) in entries {
            if resource.is_empty() {
                return Err(invalid("resource name is empty".to_owned()));
            }
            let Value::Array(operations) = operations else {
                return Err(invalid(format!(
                    "operations for resource {resource:?} are not an array"
                )));
            };
            if operations.is_empty() {
                return Err(invalid(format!("resource {resource:?} has no operations")));
            }
            let operations = operations
                .iter()
                .map(|operation| {
                    let Value::String(name) = operation else {
                        return Err(invalid(format!(
                            "operation {operation} for resource {resource:?} is not a string"
                        )));
                    };
                    Operation::from_wire(name).ok_or_else(|| {
                        invalid(format!(
                            "unknown operation {name:?} for resource {resource:?}"
                        ))
                    })
                })
                .collect::<Result<BTreeSet<_>>>()?;
            if operations.len() > 1 && operations.contains(&Operation::All) {
                return Err(invalid(format!(
                    "operations for resource {resource:?} list \"*\" beside other operations; \
                     \"*\" already means all of them"
                )));
            }
            resources.insert(resource.clone(), operations);
        }
        Ok(Capability { resources })
    }

    /// Grants `operations` on `resource`, in addition to anything already
    /// granted on it. A list that ends up holding `*` is `*` alone (see
    /// "Normal form" above).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCapability`] if `resource` is empty or `operations`
    /// is; the capability is then unchanged.
    pub fn insert(
        &mut self,
        resource: impl Into<String>,
        operations: impl IntoIterator<Item = Operation>,
    ) -> Result<()> {
        let resource = resource.into();
        let operations: BTreeSet<Operation> = operations.into_iter().collect();
        if resource.is_empty() {
            return Err(invalid("resource name is empty".to_owned()));
        }
        if operations.is_empty() {
            return Err(invalid(format!("resource {resource:?} has no operations")));
        }
        let granted = self.resources.entry(resource).or_default();
        granted.extend(operations);
        if granted.contains(&Operation::All) {
            *granted = BTreeSet::from([Operation::All]);
        }
        Ok(())
    }

    /// The operations granted on exactly the resource `resource` (no
    /// wildcard matching; see [`Capability::allows`] for that).
    pub fn get(&self, resource: &str) -> Option<&BTreeSet<Operation>> {
        self.resources.get(resource)
    }

    /// The resources and their operations, by resource name in byte order
    /// (which can differ from the canonical text's order; see
    /// [`Capability::to_canonical_string`]).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<Operation>)> {
        self.resources
            .iter()
            .map(|(resource, operations)| (resource.as_str(), operations))
    }

    /// How many resources are listed.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether no resource is listed (`{}`): such a capability allows nothing.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Whether this capability lets a client perform `operation` on
    /// `channel`: some resource matching the channel ([`resource_matches`])
    /// lists the operation or `*`.
    ///
    /// `channel` may carry a `[?params]` qualifier; it is ignored. Passing
    /// [`Operation::All`] asks whether *every* operation is granted, i.e.
    /// whether a matching resource lists `*`.
    pub fn allows(&self, operation: Operation, channel: &str) -> bool {
        self.resources.iter().any(|(resource, operations)| {
            (operations.contains(&operation) || operations.contains(&Operation::All))
                && resource_matches(resource, channel)
        })
    }

    /// The capability a token gets when `self` is requested from a key whose
    /// capability is `key` (`docs/protocol.md#capability-intersection`).
    ///
    /// For every requested resource and key resource where one covers the
    /// other ([`resource_covers`]), the result lists the **narrower**
    /// resource with the operations both grant; `*` on one side stands for
    /// the other side's list, and `*` on both sides stays `*`. Pairs with no
    /// common operation are dropped; pairs landing on the same resource merge.
    /// Where each covers the other (the same resource), the requested name is
    /// kept. \[I\]: `docs/protocol.md#capability-intersection` gives only a
    /// worked example; this reproduces it.
    ///
    /// The result never allows what either side forbids. It can allow less
    /// than the exact intersection: a requested `foo:*` against a key's
    /// `*:bar` (neither covers the other) yields nothing, not `foo:bar`.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyCapability`] if nothing is left, including when either
    /// side is `{}` (`docs/protocol.md#exchanging-a-tokenrequest`: answered
    /// with 40160).
    pub fn intersect(&self, key: &Capability) -> Result<Capability> {
        let mut resources: BTreeMap<String, BTreeSet<Operation>> = BTreeMap::new();
        for (requested, requested_operations) in &self.resources {
            for (granted, granted_operations) in &key.resources {
                let narrower = if resource_covers(granted, requested) {
                    requested
                } else if resource_covers(requested, granted) {
                    granted
                } else {
                    continue;
                };
                let common = intersect_operations(requested_operations, granted_operations);
                if common.is_empty() {
                    continue;
                }
                let operations = resources.entry(narrower.clone()).or_default();
                operations.extend(common);
                if operations.contains(&Operation::All) {
                    *operations = BTreeSet::from([Operation::All]);
                }
            }
        }
        if resources.is_empty() {
            return Err(Error::EmptyCapability);
        }
        Ok(Capability { resources })
    }

    /// The canonical text (`docs/protocol.md#canonical-capability-text`):
    /// compact JSON, resource keys sorted, each operation list sorted, strings
    /// escaped as standard JSON.
    ///
    /// This is byte for byte what ably-js's `c14n` produces, since that text
    /// is what TokenRequest MACs are computed over. ably-js sorts keys by
    /// UTF-16 code units and then calls `JSON.stringify`, which emits
    /// integer-like keys (`"0"`, `"42"`) first in numeric order: so
    /// `{"*":[…],"42":[…]}` canonicalises to `{"42":[…],"*":[…]}`. \[I\] We
    /// copy that quirk rather than a plain lexical order, because
    /// TokenRequests built by ably-js are known to be accepted by Ably
    /// (`docs/protocol.md#canonical-capability-text`).
    ///
    /// (ably-js keeps duplicate operations; a [`Capability`] has none, so a
    /// list given with duplicates canonicalises shorter here.)
    pub fn to_canonical_string(&self) -> String {
        let mut entries: Vec<_> = self.resources.iter().collect();
        entries.sort_by(|(a, _), (b, _)| js_property_order(a, b));
        serde_json::to_string(&CanonicalEntries(&entries))
            .expect("string keys and string arrays always serialise to JSON")
    }
}

/// `Capability::parse`'s and `from_json`'s error for a non-object value.
fn not_an_object(value: &Value) -> Error {
    invalid(format!(
        "expected a JSON object, found {}",
        crate::json::type_name(value)
    ))
}

fn invalid(message: String) -> Error {
    Error::InvalidCapability(message)
}

/// The operations both lists grant, where `*` stands for the other list
/// (`docs/protocol.md#capability-intersection`).
fn intersect_operations(
    requested: &BTreeSet<Operation>,
    granted: &BTreeSet<Operation>,
) -> BTreeSet<Operation> {
    match (
        requested.contains(&Operation::All),
        granted.contains(&Operation::All),
    ) {
        (true, true) => BTreeSet::from([Operation::All]),
        (true, false) => granted.clone(),
        (false, true) => requested.clone(),
        (false, false) => requested.intersection(granted).copied().collect(),
    }
}

/// The order in which `JSON.stringify` writes the keys of an object built by
/// inserting them in JavaScript `sort()` order: array-index keys first,
/// numerically, then the rest by UTF-16 code units.
fn js_property_order(a: &str, b: &str) -> Ordering {
    match (js_array_index(a), js_array_index(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.encode_utf16().cmp(b.encode_utf16()),
    }
}

/// The value of `key` if JavaScript treats it as an array index: the
/// canonical decimal form (no sign, no leading zero) of a number below
/// 2³² − 1.
fn js_array_index(key: &str) -> Option<u32> {
    let canonical = !key.is_empty()
        && key.bytes().all(|byte| byte.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if !canonical {
        return None;
    }
    key.parse::<u32>().ok().filter(|&index| index != u32::MAX)
}

/// Serialises resources in the order given, which `serde_json`'s own map
/// would not keep.
struct CanonicalEntries<'a>(&'a [(&'a String, &'a BTreeSet<Operation>)]);

impl Serialize for CanonicalEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (resource, operations) in self.0 {
            map.serialize_entry(resource, operations)?;
        }
        map.end()
    }
}

impl fmt::Display for Capability {
    /// Writes the canonical text ([`Capability::to_canonical_string`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl FromStr for Capability {
    type Err = Error;

    /// Same as [`Capability::parse`].
    fn from_str(text: &str) -> Result<Self> {
        Capability::parse(text)
    }
}

impl Serialize for Capability {
    /// Writes the canonical text as a JSON string, the form capabilities
    /// take inside TokenRequests, TokenDetails and JWTs.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_canonical_string())
    }
}

impl<'de> Deserialize<'de> for Capability {
    /// Reads either the JSON object or a string holding its text.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Capability::from_json(&value).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::operation::OPERATIONS;
    use super::*;

    fn cap(text: &str) -> Capability {
        Capability::parse(text).unwrap()
    }

    fn parse_error(text: &str) -> String {
        Capability::parse(text).unwrap_err().to_string()
    }

    // Parsing and validation.

    #[test]
    fn parses_an_object_of_resources_to_operations() {
        let capability = cap(r#"{"chat:*":["subscribe","publish"],"[meta]*":["subscribe"]}"#);

        assert_eq!(capability.len(), 2);
        assert_eq!(
            capability.get("chat:*"),
            Some(&BTreeSet::from([Operation::Publish, Operation::Subscribe]))
        );
        assert_eq!(
            capability.get("[meta]*"),
            Some(&BTreeSet::from([Operation::Subscribe]))
        );
        assert_eq!(capability.get("chat:lobby"), None);
    }

    #[test]
    fn an_unknown_operation_is_rejected_naming_it_and_its_resource() {
        assert_eq!(
            parse_error(r#"{"chat:*":["subscribe","publsh"]}"#),
            r#"invalid capability: unknown operation "publsh" for resource "chat:*""#
        );
    }

    #[test]
    fn malformed_capabilities_are_rejected_with_the_reason() {
        let cases = [
            (
                "not json",
                "invalid capability: not valid JSON: expected ident at line 1 column 2",
            ),
            (
                r#"["subscribe"]"#,
                "invalid capability: expected a JSON object, found an array",
            ),
            (
                r#""{}""#,
                "invalid capability: expected a JSON object, found a string",
            ),
            (
                "null",
                "invalid capability: expected a JSON object, found null",
            ),
            (
                r#"{"":["subscribe"]}"#,
                "invalid capability: resource name is empty",
            ),
            (
                r#"{"x":[]}"#,
                r#"invalid capability: resource "x" has no operations"#,
            ),
            (
                r#"{"x":"subscribe"}"#,
                r#"invalid capability: operations for resource "x" are not an array"#,
            ),
            (
                r#"{"x":[42]}"#,
                r#"invalid capability: operation 42 for resource "x" is not a string"#,
            ),
            (
                r#"{"x":["Subscribe"]}"#,
                r#"invalid capability: unknown operation "Subscribe" for resource "x""#,
            ),
        ];

        for (text, expected) in cases {
            assert_eq!(parse_error(text), expected, "parsing {text}");
        }
    }

    #[test]
    fn an_empty_object_parses_to_an_empty_capability_that_allows_nothing() {
        let capability = cap("{}");

        assert!(capability.is_empty());
        assert_eq!(capability.to_string(), "{}");
        assert!(!capability.allows(Operation::Subscribe, "foo"));
    }

    #[test]
    fn insert_merges_operations_and_rejects_empty_input() {
        let mut capability = Capability::new();

        capability.insert("chat", [Operation::Subscribe]).unwrap();
        capability.insert("chat", [Operation::Publish]).unwrap();
        let empty_ops = capability.insert("other", []).unwrap_err();
        let empty_name = capability.insert("", [Operation::Publish]).unwrap_err();

        assert_eq!(
            capability.to_string(),
            r#"{"chat":["publish","subscribe"]}"#
        );
        assert_eq!(
            empty_ops.to_string(),
            r#"invalid capability: resource "other" has no operations"#
        );
        assert_eq!(
            empty_name.to_string(),
            "invalid capability: resource name is empty"
        );
    }

    // Canonical text.

    #[test]
    fn canonical_text_sorts_resources_and_operations_as_in_the_docs() {
        let capability = cap(r#"{"private":["subscribe","publish","presence"],"*":["subscribe"]}"#);

        assert_eq!(
            capability.to_canonical_string(),
            r#"{"*":["subscribe"],"private":["presence","publish","subscribe"]}"#
        );
    }

    #[test]
    fn canonical_text_is_compact_whatever_the_input_spacing() {
        let capability = cap("{ \"b\" : [ \"history\" ] ,\n \"a\" : [ \"*\" ] }");

        assert_eq!(capability.to_string(), r#"{"a":["*"],"b":["history"]}"#);
    }

    #[test]
    fn star_beside_other_operations_is_refused_as_ably_does() {
        for text in [
            r#"{"channel0":["*","publish"]}"#,
            r#"{"ok":["*"],"channel0":["publish","*","publish"]}"#,
        ] {
            let err = Capability::parse(text).unwrap_err();

            assert_eq!(
                err.to_string(),
                r#"invalid capability: operations for resource "channel0" list "*" beside other operations; "*" already means all of them"#
            );
            assert_eq!(err.error_info().code, crate::codes::BAD_REQUEST);
            assert_eq!(err.error_info().status_code, 400);
        }
        assert_eq!(cap(r#"{"a":["*","*"]}"#).to_string(), r#"{"a":["*"]}"#);
    }

    #[test]
    fn inserting_star_beside_other_operations_keeps_star_alone() {
        let mut capability = Capability::new();

        capability
            .insert("a", [Operation::Publish, Operation::All])
            .unwrap();
        capability.insert("b", [Operation::All]).unwrap();
        capability.insert("b", [Operation::History]).unwrap();

        assert_eq!(capability.to_string(), r#"{"a":["*"],"b":["*"]}"#);
        assert_eq!(
            Capability::parse(&capability.to_string()).unwrap(),
            capability
        );
    }

    #[test]
    fn canonical_text_escapes_resource_names_as_json() {
        let capability = cap(r#"{"quote\"back\\slash\u0001tab\t":["subscribe"]}"#);

        assert_eq!(
            capability.to_string(),
            r#"{"quote\"back\\slash\u0001tab\t":["subscribe"]}"#
        );
    }

    #[test]
    fn canonical_text_puts_integer_like_keys_first_as_json_stringify_does() {
        let capability = cap(
            r#"{"*":["subscribe"],"9":["subscribe"],"10":["subscribe"],"010":["subscribe"],"4294967295":["subscribe"]}"#,
        );

        assert_eq!(
            capability.to_string(),
            r#"{"9":["subscribe"],"10":["subscribe"],"*":["subscribe"],"010":["subscribe"],"4294967295":["subscribe"]}"#
        );
    }

    #[test]
    fn canonical_text_orders_non_ascii_names_by_utf16_code_units() {
        // U+FF21 (one UTF-16 unit 0xFF21) sorts after U+1F600 (surrogates
        // 0xD83D…) in JavaScript but before it in Rust's byte order.
        let capability = cap(r#"{"Ａ":["subscribe"],"😀":["subscribe"]}"#);

        assert_eq!(
            capability.to_string(),
            r#"{"😀":["subscribe"],"Ａ":["subscribe"]}"#
        );
    }

    // Serde.

    #[test]
    fn deserializes_from_an_object_or_a_string_holding_one() {
        let from_object: Capability =
            serde_json::from_str(r#"{"private":["publish"],"*":["subscribe"]}"#).unwrap();
        let from_string: Capability =
            serde_json::from_str(r#""{\"private\":[\"publish\"],\"*\":[\"subscribe\"]}""#).unwrap();

        assert_eq!(from_object, from_string);
        assert_eq!(
            from_object.to_string(),
            r#"{"*":["subscribe"],"private":["publish"]}"#
        );
    }

    #[test]
    fn serializes_as_a_string_holding_the_canonical_text() {
        let capability = cap(r#"{"private":["publish","subscribe"],"*":["subscribe"]}"#);

        assert_eq!(
            serde_json::to_string(&capability).unwrap(),
            r#""{\"*\":[\"subscribe\"],\"private\":[\"publish\",\"subscribe\"]}""#
        );
    }

    #[test]
    fn serialized_form_deserializes_back_to_the_same_capability() {
        let capability = cap(r#"{"a:*":["*"],"[meta]*":["subscribe"],"b":["history"]}"#);

        let json = serde_json::to_string(&capability).unwrap();

        assert_eq!(
            serde_json::from_str::<Capability>(&json).unwrap(),
            capability
        );
    }

    #[test]
    fn deserializing_reports_the_capability_problem() {
        let err = serde_json::from_str::<Capability>(r#"{"x":["publsh"]}"#).unwrap_err();

        assert_eq!(
            err.to_string(),
            r#"invalid capability: unknown operation "publsh" for resource "x""#
        );
    }

    #[test]
    fn from_str_is_parse() {
        let capability: Capability = r#"{"a":["subscribe"]}"#.parse().unwrap();

        assert_eq!(capability, cap(r#"{"a":["subscribe"]}"#));
    }

    // Allows.

    #[test]
    fn allows_an_operation_only_where_a_matching_resource_lists_it() {
        let capability = cap(
            r#"{"chat:*":["publish","subscribe"],"news":["subscribe"],"ops":["*"],"[meta]*":["subscribe"],"room":["presence"]}"#,
        );
        let cases = [
            (Operation::Subscribe, "chat:lobby", true),
            (Operation::Publish, "chat:lobby:42", true),
            (Operation::Presence, "chat:lobby", false),
            (Operation::Subscribe, "chat", false),
            (Operation::Subscribe, "news", true),
            (Operation::Subscribe, "[?rewind=1]news", true),
            (Operation::Publish, "news", false),
            (Operation::Subscribe, "news:sport", false),
            (Operation::History, "ops", true),
            (Operation::PushAdmin, "ops", true),
            (Operation::All, "ops", true),
            (Operation::All, "chat:lobby", false),
            (Operation::Subscribe, "[meta]log", true),
            (Operation::Publish, "[meta]log", false),
            (Operation::Presence, "room::$chat", true),
            (Operation::Subscribe, "room::$chat", false),
            (Operation::Subscribe, "elsewhere", false),
        ];

        for (operation, channel, expected) in cases {
            assert_eq!(
                capability.allows(operation, channel),
                expected,
                "{operation} on {channel:?}"
            );
        }
    }

    #[test]
    fn all_allows_every_operation_on_every_channel() {
        let all = Capability::all();

        assert_eq!(all.to_string(), r#"{"[*]*":["*"]}"#);
        for channel in ["foo", "ns:a:b", "[meta]log", "[queue]q", "S::$cursors"] {
            for operation in OPERATIONS {
                assert!(all.allows(operation, channel), "{operation} on {channel}");
            }
        }
    }

    // Intersection.

    #[test]
    fn intersection_reproduces_the_docs_worked_example() {
        let key = cap(
            r#"{"your-namespace:*":["publish","subscribe","presence"],"notifications":["subscribe","history"],"alerts":["subscribe"]}"#,
        );
        let requested = cap(
            r#"{"your-namespace:user-123":["subscribe"],"notifications":["*"],"private":["publish","subscribe"]}"#,
        );

        let granted = requested.intersect(&key).unwrap();

        assert_eq!(
            granted.to_canonical_string(),
            r#"{"notifications":["history","subscribe"],"your-namespace:user-123":["subscribe"]}"#
        );
    }

    fn intersect(requested: &str, key: &str) -> String {
        match cap(requested).intersect(&cap(key)) {
            Ok(granted) => granted.to_string(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn intersection_keeps_the_narrower_resource_from_either_side() {
        assert_eq!(
            intersect(r#"{"chat:*":["subscribe"]}"#, r#"{"*":["subscribe"]}"#),
            r#"{"chat:*":["subscribe"]}"#
        );
        assert_eq!(
            intersect(r#"{"*":["subscribe"]}"#, r#"{"chat:*":["subscribe"]}"#),
            r#"{"chat:*":["subscribe"]}"#
        );
        assert_eq!(
            intersect(r#"{"room::$chat":["publish"]}"#, r#"{"room":["*"]}"#),
            r#"{"room::$chat":["publish"]}"#
        );
    }

    #[test]
    fn star_operations_stand_for_the_other_sides_list() {
        assert_eq!(
            intersect(r#"{"a":["*"]}"#, r#"{"a":["history","publish"]}"#),
            r#"{"a":["history","publish"]}"#
        );
        assert_eq!(
            intersect(r#"{"a":["history","publish"]}"#, r#"{"a":["*"]}"#),
            r#"{"a":["history","publish"]}"#
        );
        assert_eq!(
            intersect(r#"{"a":["*"]}"#, r#"{"a":["*"]}"#),
            r#"{"a":["*"]}"#
        );
        assert_eq!(
            intersect(
                r#"{"a":["publish","subscribe"]}"#,
                r#"{"a":["presence","subscribe"]}"#
            ),
            r#"{"a":["subscribe"]}"#
        );
    }

    #[test]
    fn pairs_landing_on_the_same_resource_merge_their_operations() {
        assert_eq!(
            intersect(
                r#"{"chat:lobby":["*"]}"#,
                r#"{"chat:*":["subscribe"],"*":["publish"]}"#
            ),
            r#"{"chat:lobby":["publish","subscribe"]}"#
        );
    }

    #[test]
    fn an_empty_request_or_key_gives_an_empty_capability_error() {
        let empty = cap("{}");
        let some = cap(r#"{"a":["subscribe"]}"#);

        assert!(matches!(
            empty.intersect(&some),
            Err(Error::EmptyCapability)
        ));
        assert!(matches!(
            some.intersect(&empty),
            Err(Error::EmptyCapability)
        ));
    }

    #[test]
    fn disjoint_resources_or_operations_give_an_empty_capability_error() {
        assert_eq!(
            intersect(r#"{"a":["subscribe"]}"#, r#"{"b":["subscribe"]}"#),
            "capability intersection is empty"
        );
        assert_eq!(
            intersect(r#"{"a":["publish"]}"#, r#"{"*":["subscribe"]}"#),
            "capability intersection is empty"
        );
        assert_eq!(
            intersect(r#"{"[meta]*":["subscribe"]}"#, r#"{"*":["*"]}"#),
            "capability intersection is empty"
        );
        assert_eq!(
            intersect(r#"{"foo:*":["subscribe"]}"#, r#"{"*:bar":["subscribe"]}"#),
            "capability intersection is empty"
        );
    }

    #[test]
    fn a_key_with_every_capability_grants_the_request_unchanged() {
        let requested = cap(
            r#"{"chat:*":["publish","subscribe"],"[meta]log":["subscribe"],"S::$space":["presence"],"x":["*"]}"#,
        );

        assert_eq!(requested.intersect(&Capability::all()).unwrap(), requested);
    }

    #[test]
    fn requesting_no_capability_grants_the_keys() {
        let key = cap(r#"{"chat:*":["publish","subscribe"],"[queue]*":["*"],"news":["history"]}"#);

        assert_eq!(Capability::all().intersect(&key).unwrap(), key);
    }

    #[test]
    fn intersection_never_allows_what_either_side_forbids() {
        let capabilities = [
            r#"{"[*]*":["*"]}"#,
            r#"{"*":["*"]}"#,
            r#"{"*":["subscribe"]}"#,
            r#"{"chat:*":["publish","subscribe"]}"#,
            r#"{"chat:lobby":["*"]}"#,
            r#"{"chat:*:admin":["publish"]}"#,
            r#"{"*:admin":["history","publish"]}"#,
            r#"{"[meta]*":["subscribe"],"news":["history","subscribe"]}"#,
            r#"{"room":["presence","subscribe"]}"#,
            r#"{"room::$chat":["*"],"S::$space":["presence"]}"#,
            r#"{"S":["*"],"chat:lobby":["presence"]}"#,
            r#"{"[*]room":["subscribe"],"[queue]*":["*"]}"#,
            r#"{"foo*":["*"],"news":["*"]}"#,
            r#"{"ns:*":["subscribe"],"ns:a:*":["publish"]}"#,
        ];
        let channels = [
            "chat",
            "chat:lobby",
            "chat:lobby:admin",
            "chat:x:admin",
            "chat:admin",
            "x:admin",
            "news",
            "[?rewind=1]news",
            "[meta]log",
            "[queue]q",
            "[meta]room",
            "room",
            "room::$chat",
            "room::$reactions",
            "S",
            "S::$space",
            "S::$cursors",
            "foo*",
            "foo",
            "ns:a",
            "ns:a:b",
        ];
        let capabilities = capabilities.map(cap);
        let mut checked = 0;

        for requested in &capabilities {
            for key in &capabilities {
                let Ok(granted) = requested.intersect(key) else {
                    continue;
                };
                for channel in channels {
                    for operation in OPERATIONS {
                        if granted.allows(operation, channel) {
                            checked += 1;
                            assert!(
                                requested.allows(operation, channel)
                                    && key.allows(operation, channel),
                                "{requested} ∩ {key} = {granted} allows {operation} on {channel:?}"
                            );
                        }
                    }
                }
            }
        }

        assert!(checked > 1000, "only {checked} cases exercised");
    }
}
