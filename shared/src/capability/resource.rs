//! Capability resources against channel names: Ably's wildcard rules
//! (`docs/protocol.md#resource-wildcards`) and tagged channels
//! (`docs/protocol.md#tagged-channels`).
//!
//! A name is read as an optional `[qualifier]` and a body of `:`-separated
//! segments. Everything here borrows from its arguments: matching runs on
//! every request the mock serves, so it does not allocate.

/// The `[...]` prefix of a channel or resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier<'a> {
    /// No prefix, or one with only parameters (`[?rewind=1]`): an ordinary channel.
    Plain,
    /// `[meta]`, `[queue]`, ...: a special kind of channel.
    Named(&'a str),
    /// `[*]`: in a resource, any qualifier or none.
    Any,
}

/// Splits `name` into its qualifier and body.
///
/// The parameter part of a qualifier is dropped
/// (`docs/protocol.md#resource-wildcards` \[I\]): `[?rewind=1]foo` is the
/// channel `foo` and `[meta?x=y]log` is `[meta]log`. Resources go through the
/// same split so both sides are read alike. A name starting with an
/// unterminated `[` has no qualifier; [`wildcard_accepts`] keeps `*` off it.
fn split_qualifier(name: &str) -> (Qualifier<'_>, &str) {
    let Some((inside, body)) = name.strip_prefix('[').and_then(|rest| rest.split_once(']')) else {
        return (Qualifier::Plain, name);
    };
    let kind = inside
        .split_once('?')
        .map_or(inside, |(kind, _params)| kind);
    let qualifier = match kind {
        "" => Qualifier::Plain,
        "*" => Qualifier::Any,
        kind => Qualifier::Named(kind),
    };
    (qualifier, body)
}

/// Whether a resource's qualifier admits a channel's (for [`resource_covers`],
/// whether one resource's qualifier admits everything another's does).
fn qualifier_matches(resource: Qualifier<'_>, channel: Qualifier<'_>) -> bool {
    resource == Qualifier::Any || resource == channel
}

/// Whether a wildcard may stand for `text`.
///
/// A wildcard never stands for nothing. In an unqualified resource (`*`,
/// `*:x`) it also refuses a first segment starting with `[`:
/// `docs/protocol.md#resource-wildcards` says `*` does not match `[meta]` or
/// `[queue]` names, and after [`split_qualifier`] the only bodies left starting
/// with `[` are malformed or doubly qualified.
fn wildcard_accepts(text: &str, bracket_guard: bool) -> bool {
    let bracketed = bracket_guard && text.starts_with('[');
    !text.is_empty() && !bracketed
}

/// Whether the resource body `pattern` matches the channel body `body`,
/// segment by segment (`docs/protocol.md#resource-wildcards`).
///
/// A final `*` segment matches one or more segments (any non-empty rest), a
/// `*` elsewhere exactly one non-empty segment, anything else itself only.
fn body_matches(pattern: &str, body: &str, guarded: bool) -> bool {
    let mut rest = Some(body);
    let mut segments = pattern.split(':').peekable();
    let mut first = true;
    while let Some(segment) = segments.next() {
        let Some(text) = rest else {
            return false;
        };
        let bracket_guard = guarded && first;
        if segment == "*" && segments.peek().is_none() {
            return wildcard_accepts(text, bracket_guard);
        }
        let (head, tail) = match text.split_once(':') {
            Some((head, tail)) => (head, Some(tail)),
            None => (text, None),
        };
        let ok = if segment == "*" {
            wildcard_accepts(head, bracket_guard)
        } else {
            segment == head
        };
        if !ok {
            return false;
        }
        rest = tail;
        first = false;
    }
    rest.is_none()
}

/// The untagged part of a tagged channel body: `room` for `room::$chat` and
/// for `room::$chat::$reactions` (the text before the first `::$`).
fn tag_base(body: &str) -> Option<&str> {
    body.find("::$")
        .map(|end| &body[..end])
        .filter(|base| !base.is_empty())
}

/// Whether the capability resource `resource` grants access to the channel
/// `channel`, by Ably's wildcard rules.
///
/// `docs/protocol.md#resource-wildcards`:
/// - a wildcard replaces whole `:`-separated segments only;
/// - `*` matches every ordinary channel, but not `[meta]…` or `[queue]…`;
/// - `ns:*` matches `ns:a`, `ns:a:b`, …: a trailing `*` stands for one or
///   more segments;
/// - `foo:*:baz` matches `foo:bar:baz` but not `foo:bar:bam:baz`;
/// - `foo*` matches only the channel literally named `foo*`;
/// - `[meta]*` matches all metachannels, `[queue]*` all queues, `[*]*`
///   everything.
///
/// Choices where Ably says nothing:
/// - \[I\] a channel's `[?params]` qualifier is ignored, and so are the
///   parameters of `[meta?params]`; resources are read the same way.
/// - \[U\] a `*` segment stands for at least one character, so `foo:*:baz`
///   does not match `foo::baz` and `ns:*` does not match `ns:`.
/// - \[U\] `[*]` before any body means "any qualifier or none": `[*]foo`
///   matches `foo` and `[meta]foo`.
/// - \[U\] `docs/protocol.md#tagged-channels`: a tagged channel `X::$tag` is
///   also matched through `X`, the part before the first `::$`, so `room`
///   grants `room::$chat` and `S` grants `S::$space` and `S::$cursors`. Plain
///   prefix rules apply as usual, so `*`, `ns:*` and even `room:*` match
///   `room::$chat`.
///
/// Matching is case-sensitive and does not allocate.
///
/// ```
/// use shared::capability::resource_matches;
///
/// assert!(resource_matches("chat:*", "chat:lobby:42"));
/// assert!(!resource_matches("*", "[meta]log"));
/// assert!(resource_matches("my-room", "my-room::$chat"));
/// ```
pub fn resource_matches(resource: &str, channel: &str) -> bool {
    let (resource_qualifier, pattern) = split_qualifier(resource);
    let (channel_qualifier, body) = split_qualifier(channel);
    if !qualifier_matches(resource_qualifier, channel_qualifier) {
        return false;
    }
    let guarded = resource_qualifier == Qualifier::Plain;
    body_matches(pattern, body, guarded)
        || tag_base(body).is_some_and(|base| body_matches(pattern, base, guarded))
}

/// Whether the resource `broad` matches every channel that `narrow` matches,
/// by [`resource_matches`]: `*` covers `ns:*`, `ns:*` covers `ns:a:*`,
/// `[*]*` covers everything, `*` does not cover `[meta]*`.
///
/// This is what intersection (`docs/protocol.md#capability-intersection`) uses
/// to pick the narrower of two resources. It is sound but not complete: `true`
/// is always right; a few exotic pairs where coverage holds only through the
/// `docs/protocol.md#tagged-channels` tag rule and a wildcard (`[*]room` over
/// `[*]room::$chat`) answer `false`, which can only make an intersection
/// smaller, never wider.
///
/// ```
/// use shared::capability::resource_covers;
///
/// assert!(resource_covers("ns:*", "ns:a:*"));
/// assert!(!resource_covers("ns:a:*", "ns:*"));
/// assert!(!resource_covers("*", "[meta]*"));
/// ```
pub fn resource_covers(broad: &str, narrow: &str) -> bool {
    let (broad_qualifier, broad_body) = split_qualifier(broad);
    let (narrow_qualifier, narrow_body) = split_qualifier(narrow);
    let narrow_is_literal =
        narrow_qualifier != Qualifier::Any && !narrow_body.split(':').any(|s| s == "*");
    if narrow_is_literal {
        // A wildcard-free resource matches the channel of its own name and,
        // if that is untagged, the channels tagged onto it
        // (`docs/protocol.md#tagged-channels`). Whatever matches the name
        // itself matches those too, so this is exact.
        return resource_matches(broad, narrow);
    }
    qualifier_matches(broad_qualifier, narrow_qualifier)
        && body_covers(broad_body, narrow_body, broad_qualifier == Qualifier::Plain)
}

/// Whether every body `narrow` matches is matched by `broad`, segment-wise.
///
/// `guarded` is `broad`'s bracket guard (see [`wildcard_accepts`]). When it is
/// set, `broad` is unqualified, so `narrow` is too and its wildcards are
/// guarded as well.
fn body_covers(broad: &str, narrow: &str, guarded: bool) -> bool {
    let broad: Vec<&str> = broad.split(':').collect();
    let narrow: Vec<&str> = narrow.split(':').collect();
    let is_trailing_wildcard = |segments: &[&str]| segments.last() == Some(&"*");
    let segment_covers = |index: usize, broad: &str, narrow: &str| {
        if broad == "*" {
            narrow == "*" || wildcard_accepts(narrow, guarded && index == 0)
        } else {
            broad == narrow
        }
    };
    let prefix_covers =
        |len: usize| (0..len).all(|index| segment_covers(index, broad[index], narrow[index]));

    if !is_trailing_wildcard(&broad) {
        // Fixed length: `narrow` must have the same length, and cannot end in
        // a wildcard that would let it match longer bodies.
        return !is_trailing_wildcard(&narrow)
            && broad.len() == narrow.len()
            && prefix_covers(broad.len());
    }

    // `broad` is `p1:…:pk:*`: `narrow` must match only bodies that have the
    // k segments `p1…pk` cover followed by a non-empty rest.
    let fixed = broad.len() - 1;
    if narrow.len() <= fixed || !prefix_covers(fixed) {
        return false;
    }
    let rest = &narrow[fixed..];
    // Two or more segments always produce text (they include a `:`); a single
    // one must be a wildcard or non-empty literal text.
    (rest.len() > 1 || !rest[0].is_empty()) && !(guarded && fixed == 0 && rest[0].starts_with('['))
}

/// The two channels the Spaces SDK uses for the space `space`
/// (`docs/protocol.md#spaces-channels`): `space::$space` and `space::$cursors`.
///
/// A policy that grants a space should list both explicitly
/// (`docs/protocol.md#tagged-channels`): that Ably lets `space` cover them is
/// unconfirmed.
pub fn space_channels(space: &str) -> [String; 2] {
    [format!("{space}::$space"), format!("{space}::$cursors")]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (resource, channel, matches?)
    const MATCH_TABLE: &[(&str, &str, bool)] = &[
        // Exact names.
        ("foo", "foo", true),
        ("foo", "foo:bar", false),
        ("foo", "foobar", false),
        ("Foo", "foo", false),
        // `*` alone: every ordinary channel, never a qualified one.
        ("*", "foo", true),
        ("*", "foo:bar", true),
        ("*", "foo:bar:baz", true),
        ("*", "[meta]log", false),
        ("*", "[queue]app-queue", false),
        ("*", "[foo", false),
        ("*:*", "[foo:bar", false),
        ("[foo:*", "[foo:bar", true),
        // Qualifier parameters are not part of the name.
        ("*", "[?rewind=1]foo", true),
        ("foo", "[?rewind=1]foo", true),
        ("foo", "[?rewind=1&delta=vcdiff]foo", true),
        ("foo:*", "[?rewind=1]foo:bar", true),
        ("[meta]*", "[meta?foo=1]log", true),
        // Trailing wildcard: one or more whole segments.
        ("ns:*", "ns:a", true),
        ("ns:*", "ns:a:b", true),
        ("ns:*", "ns", false),
        ("ns:*", "ns:", false),
        ("ns:*", "nsx:a", false),
        ("ns:*", "other:ns:a", false),
        // Inner wildcard: exactly one non-empty segment.
        ("foo:*:baz", "foo:bar:baz", true),
        ("foo:*:baz", "foo:bar:bam:baz", false),
        ("foo:*:baz", "foo::baz", false),
        ("foo:*:baz", "foo:bar:baz:qux", false),
        ("*:b", "a:b", true),
        ("*:b", ":b", false),
        ("*:", "a:", true),
        ("*:*", "a:", false),
        // `*` inside a segment is a literal character.
        ("foo*", "foo*", true),
        ("foo*", "foo", false),
        ("foo*", "foobar", false),
        // Metachannels and queues.
        ("[meta]*", "[meta]log", true),
        ("[meta]*", "[meta]channel.lifecycle", true),
        ("[meta]*", "[meta]", false),
        ("[meta]*", "log", false),
        ("[meta]*", "[queue]q", false),
        ("[queue]*", "[queue]app-queue", true),
        ("[meta]log", "[meta]log", true),
        // `[*]*`: everything.
        ("[*]*", "foo", true),
        ("[*]*", "ns:a:b", true),
        ("[*]*", "[meta]log", true),
        ("[*]*", "[queue]q", true),
        ("[*]*", "[foo", true),
        // Tagged channels (`docs/protocol.md#tagged-channels`): also matched
        // through the part before `::$`.
        ("room", "room::$chat", true),
        ("room", "room::$chat::$reactions", true),
        ("room", "roomy::$chat", false),
        ("room", "room:x::$chat", false),
        ("S", "S::$space", true),
        ("S", "S::$cursors", true),
        ("S::$space", "S::$space", true),
        ("S::$space", "S::$cursors", false),
        ("S::$space", "S", false),
        ("*", "S::$space", true),
        ("ns:*", "ns:S::$space", true),
        ("ns:S", "ns:S::$cursors", true),
        ("room:*", "room::$chat", true),
        ("[meta]*", "room::$chat", false),
    ];

    #[test]
    fn resources_match_channels_by_ablys_wildcard_rules() {
        for &(resource, channel, expected) in MATCH_TABLE {
            assert_eq!(
                resource_matches(resource, channel),
                expected,
                "resource {resource:?} vs channel {channel:?}"
            );
        }
    }

    /// (broad, narrow, covers?)
    const COVER_TABLE: &[(&str, &str, bool)] = &[
        ("foo", "foo", true),
        ("*", "foo", true),
        ("*", "ns:*", true),
        ("ns:*", "ns:a", true),
        ("ns:*", "ns:a:*", true),
        ("ns:a:*", "ns:*", false),
        ("ns:*", "*", false),
        ("ns:*", "ns:", false),
        ("*", "foo:*:baz", true),
        ("foo:*", "foo:*:baz", true),
        ("foo:*:baz", "foo:bar:baz", true),
        ("foo:*:baz", "foo:*:baz", true),
        ("foo:*:baz", "foo:*", false),
        ("foo:bar:baz", "foo:*:baz", false),
        ("*:*", "a:b:*", true),
        ("*:*", "*", false),
        ("*:*", "*:", false),
        ("*:*", "[foo:*", false),
        ("[*]*:*", "[foo:*", true),
        ("*", "foo*", true),
        ("foo*", "foo", false),
        ("[*]*", "*", true),
        ("[*]*", "[meta]*", true),
        ("[*]*", "[*]*", true),
        ("[*]*", "[foo", true),
        ("*", "[*]*", false),
        ("*", "[meta]*", false),
        ("*", "[meta]log", false),
        ("*", "[foo", false),
        ("[meta]*", "[meta]log", true),
        ("[meta]*", "[queue]*", false),
        ("room", "room::$chat", true),
        ("room::$chat", "room", false),
        ("S", "S::$space", true),
        ("ns:*", "ns:S::$cursors", true),
    ];

    #[test]
    fn coverage_follows_the_channels_each_resource_matches() {
        for &(broad, narrow, expected) in COVER_TABLE {
            assert_eq!(
                resource_covers(broad, narrow),
                expected,
                "{broad:?} covers {narrow:?}"
            );
        }
    }

    #[test]
    fn coverage_never_claims_a_channel_the_broad_resource_does_not_match() {
        let resources: Vec<&str> = COVER_TABLE
            .iter()
            .chain(MATCH_TABLE)
            .flat_map(|&(a, b, _)| [a, b])
            .collect();
        let channels: Vec<&str> = MATCH_TABLE.iter().map(|&(_, channel, _)| channel).collect();
        let mut checked = 0;

        for &broad in &resources {
            for &narrow in &resources {
                if !resource_covers(broad, narrow) {
                    continue;
                }
                for &channel in &channels {
                    if resource_matches(narrow, channel) {
                        checked += 1;
                        assert!(
                            resource_matches(broad, channel),
                            "{broad:?} covers {narrow:?}, which matches {channel:?}, but {broad:?} does not"
                        );
                    }
                }
            }
        }

        assert!(checked > 1000, "only {checked} cases exercised");
    }

    #[test]
    fn a_space_uses_its_space_and_cursors_channels() {
        assert_eq!(
            space_channels("board"),
            ["board::$space".to_owned(), "board::$cursors".to_owned()]
        );
    }
}
