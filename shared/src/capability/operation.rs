//! The operations a capability can grant (`docs/protocol.md#operations`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// One operation a capability grants on a resource
/// (`docs/protocol.md#operations`), or `*` for all of them.
///
/// On the wire an operation is its string ([`Operation::as_str`]); serde
/// reads and writes that string. The derived `Ord` is the order of those
/// strings (`"*"` first), so a sorted set of operations is already in the
/// canonical order of `docs/protocol.md#canonical-capability-text`.
///
/// The list is Ably's documented one; Ably may add operations, hence
/// `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Operation {
    // Variants are declared in the byte order of their wire strings so that
    // the derived `Ord` is the canonical sort; a test checks this.
    /// `*`: every operation.
    All,
    /// `annotation-publish`: publish message annotations.
    AnnotationPublish,
    /// `annotation-subscribe`: receive message annotations.
    AnnotationSubscribe,
    /// `channel-metadata`: channel status and occupancy; on `*`, also list channels.
    ChannelMetadata,
    /// `history`: read message and presence history.
    History,
    /// `message-delete-any`: delete any client's messages.
    MessageDeleteAny,
    /// `message-delete-own`: delete one's own messages.
    MessageDeleteOwn,
    /// `message-update-any`: update any client's messages.
    MessageUpdateAny,
    /// `message-update-own`: update one's own messages.
    MessageUpdateOwn,
    /// `object-publish`: modify LiveObjects.
    ObjectPublish,
    /// `object-subscribe`: read LiveObjects.
    ObjectSubscribe,
    /// `presence`: enter, update and leave presence.
    Presence,
    /// `privileged-headers`: set privileged message headers.
    PrivilegedHeaders,
    /// `publish`: publish messages.
    Publish,
    /// `push-admin`: manage push registrations and publish push notifications.
    PushAdmin,
    /// `push-subscribe`: subscribe a device to push notifications.
    PushSubscribe,
    /// `stats`: read app statistics; only effective on `*` or `[*]*`.
    Stats,
    /// `subscribe`: receive messages and presence events.
    Subscribe,
}

/// Every operation, in canonical order. The single list that parsing and the
/// tests walk, so a new variant needs adding in one place besides `as_str`.
pub(crate) const OPERATIONS: [Operation; 18] = [
    Operation::All,
    Operation::AnnotationPublish,
    Operation::AnnotationSubscribe,
    Operation::ChannelMetadata,
    Operation::History,
    Operation::MessageDeleteAny,
    Operation::MessageDeleteOwn,
    Operation::MessageUpdateAny,
    Operation::MessageUpdateOwn,
    Operation::ObjectPublish,
    Operation::ObjectSubscribe,
    Operation::Presence,
    Operation::PrivilegedHeaders,
    Operation::Publish,
    Operation::PushAdmin,
    Operation::PushSubscribe,
    Operation::Stats,
    Operation::Subscribe,
];

impl Operation {
    /// The operation's wire name, e.g. `"subscribe"`, or `"*"` for [`Operation::All`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::All => "*",
            Operation::AnnotationPublish => "annotation-publish",
            Operation::AnnotationSubscribe => "annotation-subscribe",
            Operation::ChannelMetadata => "channel-metadata",
            Operation::History => "history",
            Operation::MessageDeleteAny => "message-delete-any",
            Operation::MessageDeleteOwn => "message-delete-own",
            Operation::MessageUpdateAny => "message-update-any",
            Operation::MessageUpdateOwn => "message-update-own",
            Operation::ObjectPublish => "object-publish",
            Operation::ObjectSubscribe => "object-subscribe",
            Operation::Presence => "presence",
            Operation::PrivilegedHeaders => "privileged-headers",
            Operation::Publish => "publish",
            Operation::PushAdmin => "push-admin",
            Operation::PushSubscribe => "push-subscribe",
            Operation::Stats => "stats",
            Operation::Subscribe => "subscribe",
        }
    }

    /// The operation named `name` exactly (case-sensitive, as Ably is), if any.
    pub(super) fn from_wire(name: &str) -> Option<Operation> {
        OPERATIONS.into_iter().find(|op| op.as_str() == name)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = Error;

    /// Parses a wire name such as `"publish"` or `"*"`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCapability`] naming the string if it is not one of
    /// the operations of `docs/protocol.md#operations`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Operation::from_wire(name)
            .ok_or_else(|| Error::InvalidCapability(format!("unknown operation {name:?}")))
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OperationVisitor;

        impl Visitor<'_> for OperationVisitor {
            type Value = Operation;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an Ably capability operation such as \"subscribe\" or \"*\"")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Operation, E> {
                Operation::from_wire(name)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(name), &self))
            }
        }

        deserializer.deserialize_str(OperationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ord_is_the_byte_order_of_the_wire_names() {
        for a in OPERATIONS {
            for b in OPERATIONS {
                assert_eq!(a.cmp(&b), a.as_str().cmp(b.as_str()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn every_wire_name_parses_back_to_its_operation() {
        for op in OPERATIONS {
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
        }
    }

    #[test]
    fn an_unknown_operation_is_rejected_with_its_name() {
        let err = "publsh".parse::<Operation>().unwrap_err();

        assert_eq!(
            err.to_string(),
            r#"invalid capability: unknown operation "publsh""#
        );
    }

    #[test]
    fn operation_names_are_case_sensitive() {
        assert!("Publish".parse::<Operation>().is_err());
    }

    #[test]
    fn serde_uses_the_wire_name() {
        assert_eq!(
            serde_json::to_string(&Operation::MessageDeleteOwn).unwrap(),
            r#""message-delete-own""#
        );
        assert_eq!(
            serde_json::from_str::<Operation>(r#""*""#).unwrap(),
            Operation::All
        );
    }

    #[test]
    fn deserializing_an_unknown_operation_names_it() {
        let err = serde_json::from_str::<Operation>(r#""publsh""#).unwrap_err();

        assert_eq!(
            err.to_string(),
            r#"invalid value: string "publsh", expected an Ably capability operation such as "subscribe" or "*" at line 1 column 8"#
        );
    }
}
