//! The capability policy: which Ably capability each user is granted.
//!
//! A policy is a TOML file (`AUTH_POLICY_FILE`) with a `[default]` table that
//! applies to everyone and a `[roles.NAME]` table per role. Each maps a
//! resource (a channel name or pattern, `docs/protocol.md#resource-wildcards`)
//! to its operations (`docs/protocol.md#operations`), with `{clientId}`
//! replaced by the user's clientId:
//!
//! ```toml
//! [default]
//! "chat:*" = ["subscribe", "publish", "presence", "history"]
//! "private:{clientId}" = ["*"]
//! spaces = ["board-{clientId}"]
//!
//! [roles.admin]
//! "*" = ["*"]
//! ```
//!
//! A user gets the union of `[default]` and the tables of their roles.
//!
//! # Spaces shorthand
//!
//! The key `spaces` lists Spaces by name. Each space `S` expands to the two
//! channels the Spaces SDK uses (`docs/protocol.md#spaces-channels`) with the
//! operations it needs (`docs/protocol.md#spaces-capabilities`): `S::$space` →
//! `presence`, `subscribe`; `S::$cursors` → `publish`, `subscribe`, `presence`,
//! `history`. The channels are listed explicitly because whether Ably lets a
//! capability on `S` cover `S::$space` is unconfirmed
//! (`docs/protocol.md#tagged-channels` \[U\]). `spaces` is therefore reserved
//! as a key; a channel that is literally named `spaces` cannot be granted by
//! name.
//!
//! # Safety of `{clientId}`
//!
//! A `{clientId}` resource must name that user's channel and no other. A
//! clientId holding a character that means something in a resource name
//! would break out of it:
//!
//! - `*` turns it into a wildcard (`private:{clientId}` for the clientId `*`
//!   is `private:*`);
//! - `[` and `]` make a qualified name (`[meta]…`);
//! - `:` adds a segment: `alice:inbox` lands inside a `user:alice:*` grant,
//!   and `alice::$chat` names alice's tagged channel `user:alice::$chat`
//!   (a `::$` suffix is part of the channel it follows);
//! - a control character has no place in a channel name.
//!
//! Such a user gets no resource that uses `{clientId}` (the rest of the
//! grant stands): the grant can only shrink, never widen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use shared::capability::resource_covers;
use shared::{Capability, Operation};
use toml::Spanned;

/// The placeholder replaced by the user's clientId.
const CLIENT_ID: &str = "{clientId}";

/// The reserved key of the Spaces shorthand.
const SPACES_KEY: &str = "spaces";

/// A parsed capability policy.
///
/// [`Policy::default`] is Ably's documented example capability for everyone,
/// `{"*":["publish","subscribe","presence","history"]}`, and no roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Grants,
    roles: BTreeMap<String, Grants>,
}

/// One table of the policy: resource templates and their operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Grants(BTreeMap<String, BTreeSet<Operation>>);

/// Why a policy file was refused: the position of the problem and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct PolicyError {
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Default for Policy {
    fn default() -> Self {
        let operations = [
            Operation::Publish,
            Operation::Subscribe,
            Operation::Presence,
            Operation::History,
        ];
        Self {
            default: Grants(BTreeMap::from([(
                "*".to_owned(),
                BTreeSet::from(operations),
            )])),
            roles: BTreeMap::new(),
        }
    }
}

/// The file as TOML sees it, with positions for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    default: RawTable,
    #[serde(default)]
    roles: BTreeMap<String, RawTable>,
}

type RawTable = BTreeMap<String, Spanned<Vec<Spanned<String>>>>;

impl Policy {
    /// Parses a policy from TOML text.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] pointing at the first problem: TOML syntax, a table
    /// other than `[default]` and `[roles.NAME]`, a value that is not an
    /// array of strings, an empty resource or operation list, an unknown
    /// operation, or a placeholder other than `{clientId}`.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|err| {
            let start = err.span().map_or(0, |span| span.start);
            PolicyError::at(text, start, err.message().trim_end().to_owned())
        })?;
        let default = Grants::from_raw(text, raw.default)?;
        let roles = raw
            .roles
            .into_iter()
            .map(|(role, table)| Ok((role, Grants::from_raw(text, table)?)))
            .collect::<Result<_, PolicyError>>()?;
        Ok(Self { default, roles })
    }

    /// The capability for a user: `[default]` plus the tables of `roles`,
    /// with `{clientId}` replaced by `client_id`. Unknown roles grant nothing.
    /// The result may be empty.
    /// A clientId that could break out of its resource (see "Safety of
    /// `{clientId}`" above) gets none of the `{clientId}` resources.
    pub fn capability_for(&self, client_id: &str, roles: &[String]) -> Capability {
        let safe_to_substitute = is_safe_to_substitute(client_id);
        let mut capability = Capability::new();
        let tables =
            std::iter::once(&self.default).chain(roles.iter().filter_map(|r| self.roles.get(r)));
        for Grants(entries) in tables {
            for (template, operations) in entries {
                let resource = if !template.contains(CLIENT_ID) {
                    template.clone()
                } else if safe_to_substitute {
                    template.replace(CLIENT_ID, client_id)
                } else {
                    continue;
                };
                capability
                    .insert(resource, operations.iter().copied())
                    .expect("resources and operation lists are non-empty by construction");
            }
        }
        capability
    }

    /// The role names the policy defines.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }
}

/// Whether `client_id` can stand for `{clientId}` in a resource name: it
/// holds none of `:` (a segment or `::$` tag separator), `*` (a wildcard),
/// `[` and `]` (a qualifier) and no control character.
fn is_safe_to_substitute(client_id: &str) -> bool {
    !client_id
        .chars()
        .any(|c| matches!(c, ':' | '*' | '[' | ']') || c.is_ascii_control())
}

/// A capability with its canonical text
/// (`docs/protocol.md#canonical-capability-text`), written once for every
/// credential that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanonicalCapability {
    /// The capability.
    pub(crate) capability: Capability,
    /// Its canonical text.
    pub(crate) text: String,
    /// The text as a JSON string literal, for the JWT claim.
    pub(crate) json: String,
}

impl CanonicalCapability {
    pub(crate) fn new(capability: Capability) -> Self {
        let text = capability.to_canonical_string();
        let json = serde_json::Value::from(text.as_str()).to_string();
        Self {
            capability,
            text,
            json,
        }
    }
}

/// What a user may be granted: the policy's capability for them ∩ the
/// key's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allowed {
    /// policy ∩ key, which requests are intersected with.
    pub(crate) capability: Capability,
    /// The same without redundant resources ([`without_redundant`]): what a
    /// request for no particular capability gets.
    pub(crate) granted: Arc<CanonicalCapability>,
}

impl Allowed {
    /// `policy`'s capability for the user ∩ `key`; `None` if that is empty.
    pub(crate) fn for_user(
        policy: &Policy,
        key: &Capability,
        client_id: &str,
        roles: &[String],
    ) -> Option<Self> {
        let capability = policy
            .capability_for(client_id, roles)
            .intersect(key)
            .ok()?;
        let granted = Arc::new(CanonicalCapability::new(without_redundant(&capability)));
        Some(Self {
            capability,
            granted,
        })
    }
}

/// `capability` without the resources another of its resources already
/// grants: one covering it ([`resource_covers`]) with at least its
/// operations. Allows exactly the same; the token just gets shorter (a JWT
/// has to fit in an HTTP header, `docs/protocol.md#jwt-size`).
pub(crate) fn without_redundant(capability: &Capability) -> Capability {
    let entries: Vec<_> = capability.iter().collect();
    let grants_all = |ops: &BTreeSet<Operation>| ops.contains(&Operation::All);
    let mut simplified = Capability::new();
    for (i, (resource, operations)) in entries.iter().enumerate() {
        let redundant = entries.iter().enumerate().any(|(j, (other, other_ops))| {
            // Of two resources that cover each other, keep the first.
            let covers =
                resource_covers(other, resource) && !(resource_covers(resource, other) && j > i);
            i != j
                && covers
                && (grants_all(other_ops)
                    || (!grants_all(operations) && other_ops.is_superset(operations)))
        });
        if !redundant {
            simplified
                .insert(*resource, operations.iter().copied())
                .expect("entries of a valid capability are valid");
        }
    }
    simplified
}

impl Grants {
    fn from_raw(text: &str, table: RawTable) -> Result<Self, PolicyError> {
        let mut grants = BTreeMap::<String, BTreeSet<Operation>>::new();
        for (key, values) in table {
            let span = values.span();
            let values = values.into_inner();
            if values.is_empty() {
                return Err(PolicyError::at(
                    text,
                    span.start,
                    format!("{key:?} lists nothing; remove it or list at least one entry"),
                ));
            }
            if key == SPACES_KEY {
                for space in values {
                    let start = space.span().start;
                    let space = space.into_inner();
                    check_resource(text, start, &space)?;
                    let [space_channel, cursors_channel] =
                        shared::capability::space_channels(&space);
                    // `docs/protocol.md#spaces-capabilities`: what the Spaces
                    // SDK calls on each channel.
                    grants
                        .entry(space_channel)
                        .or_default()
                        .extend([Operation::Presence, Operation::Subscribe]);
                    grants.entry(cursors_channel).or_default().extend([
                        Operation::Publish,
                        Operation::Subscribe,
                        Operation::Presence,
                        Operation::History,
                    ]);
                }
                continue;
            }
            check_resource(text, span.start, &key)?;
            let operations = grants.entry(key.clone()).or_default();
            for operation in values {
                let start = operation.span().start;
                let name = operation.into_inner();
                let parsed = name.parse::<Operation>().map_err(|_| {
                    PolicyError::at(
                        text,
                        start,
                        format!(
                            "unknown operation {name:?} for resource {key:?}; known operations: {}",
                            known_operations()
                        ),
                    )
                })?;
                operations.insert(parsed);
            }
        }
        Ok(Grants(grants))
    }
}

/// Rejects empty resources and placeholders we do not substitute.
fn check_resource(text: &str, start: usize, resource: &str) -> Result<(), PolicyError> {
    if resource.is_empty() {
        return Err(PolicyError::at(
            text,
            start,
            "empty resource name".to_owned(),
        ));
    }
    let without = resource.replace(CLIENT_ID, "");
    if without.contains('{') || without.contains('}') {
        return Err(PolicyError::at(
            text,
            start,
            format!("{resource:?}: the only placeholder is {{clientId}}"),
        ));
    }
    Ok(())
}

fn known_operations() -> String {
    // Parse-checked names: anything `Operation` accepts, in canonical order.
    const NAMES: [&str; 18] = [
        "*",
        "annotation-publish",
        "annotation-subscribe",
        "channel-metadata",
        "history",
        "message-delete-any",
        "message-delete-own",
        "message-update-any",
        "message-update-own",
        "object-publish",
        "object-subscribe",
        "presence",
        "privileged-headers",
        "publish",
        "push-admin",
        "push-subscribe",
        "stats",
        "subscribe",
    ];
    NAMES.join(", ")
}

impl PolicyError {
    /// An error at byte offset `start` of `text`.
    fn at(text: &str, start: usize, message: String) -> Self {
        let before = text.get(..start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, last)| last)
            .chars()
            .count()
            + 1;
        Self {
            line,
            column,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
[default]
"chat:*" = ["subscribe", "publish", "presence", "history"]
"private:{clientId}" = ["*"]

[roles.admin]
"*" = ["*"]
"#;

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn without_a_file_everyone_gets_ablys_documented_capability() {
        let capability = Policy::default().capability_for("alice", &[]);

        assert_eq!(
            capability.to_string(),
            r#"{"*":["history","presence","publish","subscribe"]}"#
        );
    }

    #[test]
    fn default_table_applies_with_client_id_substituted() {
        let policy = Policy::from_toml(ISSUE_EXAMPLE).unwrap();

        let capability = policy.capability_for("alice", &[]);

        assert_eq!(
            capability.to_string(),
            r#"{"chat:*":["history","presence","publish","subscribe"],"private:alice":["*"]}"#
        );
    }

    #[test]
    fn a_role_granting_star_where_another_table_names_operations_grants_star_alone() {
        // Ably refuses `["*","publish"]` (400): the merged list must be `*`.
        let policy = Policy::from_toml(
            r#"
[default]
"chat" = ["publish"]
"news" = ["*", "subscribe"]

[roles.admin]
"chat" = ["*"]
"#,
        )
        .unwrap();

        let admin = policy.capability_for("bob", &roles(&["admin"]));

        assert_eq!(admin.to_string(), r#"{"chat":["*"],"news":["*"]}"#);
        assert_eq!(Capability::parse(&admin.to_string()).unwrap(), admin);
    }

    #[test]
    fn roles_add_their_tables_and_unknown_roles_add_nothing() {
        let policy = Policy::from_toml(ISSUE_EXAMPLE).unwrap();

        let admin = policy.capability_for("bob", &roles(&["admin", "nobody"]));
        let stranger = policy.capability_for("bob", &roles(&["nobody"]));

        assert_eq!(
            admin.to_string(),
            r#"{"*":["*"],"chat:*":["history","presence","publish","subscribe"],"private:bob":["*"]}"#
        );
        assert_eq!(stranger, policy.capability_for("bob", &[]));
        assert_eq!(policy.roles().collect::<Vec<_>>(), ["admin"]);
    }

    #[test]
    fn spaces_shorthand_expands_to_both_channels_with_the_sdks_operations() {
        let policy = Policy::from_toml(
            r#"
[default]
spaces = ["board", "room-{clientId}"]
"#,
        )
        .unwrap();

        let capability = policy.capability_for("carol", &[]);

        assert_eq!(
            capability.to_string(),
            concat!(
                r#"{"board::$cursors":["history","presence","publish","subscribe"],"#,
                r#""board::$space":["presence","subscribe"],"#,
                r#""room-carol::$cursors":["history","presence","publish","subscribe"],"#,
                r#""room-carol::$space":["presence","subscribe"]}"#
            )
        );
    }

    #[test]
    fn a_client_id_that_would_act_as_a_wildcard_gets_no_templated_resource() {
        let policy = Policy::from_toml(ISSUE_EXAMPLE).unwrap();

        for client_id in ["*", "a:*", "[meta]x", "x]"] {
            let capability = policy.capability_for(client_id, &[]);

            assert_eq!(
                capability.to_string(),
                r#"{"chat:*":["history","presence","publish","subscribe"]}"#,
                "{client_id}"
            );
        }
    }

    #[test]
    fn a_client_id_with_a_colon_cannot_reach_another_users_channels() {
        let policy = Policy::from_toml(
            r#"
[default]
"chat:*" = ["subscribe"]
"user:{clientId}" = ["*"]
"user:{clientId}:*" = ["subscribe"]
"#,
        )
        .unwrap();

        for client_id in [
            "alice::$chat",
            "alice:inbox",
            "alice:",
            ":",
            "a\nb",
            "a\u{7f}",
        ] {
            let capability = policy.capability_for(client_id, &[]);

            assert_eq!(
                capability.to_string(),
                r#"{"chat:*":["subscribe"]}"#,
                "{client_id:?}"
            );
        }
        assert_eq!(
            policy
                .capability_for("alice.smith-1@example.com", &[])
                .to_string(),
            r#"{"chat:*":["subscribe"],"user:alice.smith-1@example.com":["*"],"user:alice.smith-1@example.com:*":["subscribe"]}"#
        );
    }

    #[test]
    fn unknown_operation_points_at_its_line_and_column() {
        let err =
            Policy::from_toml("[default]\n\"chat:*\" = [\"subscribe\", \"publsh\"]\n").unwrap_err();

        assert_eq!((err.line, err.column), (2, 26));
        assert!(
            err.to_string()
                .starts_with(r#"line 2, column 26: unknown operation "publsh" for resource "chat:*"; known operations: *, annotation-publish"#),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_point_at_their_line() {
        let err = Policy::from_toml("[default]\n\"chat:*\" = [\"subscribe\"\n").unwrap_err();

        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn unknown_tables_and_wrong_types_are_refused() {
        let typo = Policy::from_toml("[role.admin]\n\"*\" = [\"*\"]\n").unwrap_err();
        let not_a_list = Policy::from_toml("[default]\n\"*\" = \"subscribe\"\n").unwrap_err();
        let empty = Policy::from_toml("[default]\n\"*\" = []\n").unwrap_err();
        let placeholder = Policy::from_toml("[default]\n\"u:{userId}\" = [\"*\"]\n").unwrap_err();

        assert_eq!(typo.line, 1, "{typo}");
        assert!(typo.message.contains("role"), "{typo}");
        assert_eq!(not_a_list.line, 2, "{not_a_list}");
        assert_eq!(empty.line, 2, "{empty}");
        assert!(
            placeholder
                .message
                .contains("only placeholder is {clientId}"),
            "{placeholder}"
        );
    }

    #[test]
    fn redundant_resources_are_dropped_and_nothing_else() {
        let cases = [
            (
                r#"{"*":["*"],"chat:*":["subscribe"],"[meta]log":["subscribe"]}"#,
                r#"{"*":["*"],"[meta]log":["subscribe"]}"#,
            ),
            (
                r#"{"chat:*":["publish","subscribe"],"chat:a":["subscribe"],"chat:b":["history"]}"#,
                r#"{"chat:*":["publish","subscribe"],"chat:b":["history"]}"#,
            ),
            (
                r#"{"chat:*":["subscribe"],"chat:a":["*"]}"#,
                r#"{"chat:*":["subscribe"],"chat:a":["*"]}"#,
            ),
            (
                r#"{"a":["subscribe"],"b":["subscribe"]}"#,
                r#"{"a":["subscribe"],"b":["subscribe"]}"#,
            ),
        ];
        for (input, expected) in cases {
            let capability = Capability::parse(input).unwrap();

            assert_eq!(
                without_redundant(&capability).to_string(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn an_empty_file_grants_nothing() {
        let policy = Policy::from_toml("").unwrap();

        assert!(policy.capability_for("alice", &[]).is_empty());
    }
}
