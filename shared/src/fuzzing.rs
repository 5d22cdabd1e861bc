//! Strategies for the property-based fuzz targets of every crate in the
//! workspace (test support, not API: built for `shared`'s own tests and,
//! through the `fuzzing` feature, for the other crates' dev-dependencies).
//!
//! A fuzz target is a `proptest!` test whose name starts with `fuzz_`, fed
//! two kinds of input:
//!
//! - *mutated* inputs ([`mutated`], [`mutated_text`]): a valid example (a
//!   signed JWT, a capability, a VCDIFF delta from the test vectors) with a
//!   few byte-level mutations: bit flips, overwritten bytes, inserted and
//!   deleted runs, and chunks spliced in from the same or another example.
//!   They get past the first checks of a parser, where generated noise
//!   rarely does;
//! - *generated* inputs: strings over a parser's own alphabet, and JSON
//!   values of any shape ([`json_value`]).
//!
//! Every input is bounded (a few KiB at most), so a target that takes long
//! to run has found a hang or super-linear work, not a large input. When a
//! property fails, proptest shrinks the input (fewer mutations, shorter
//! runs, smaller values) before reporting it.
//!
//! [`config`] sets the number of cases: each target's own budget, so that
//! `cargo test --workspace` runs them all in about a minute, unless the
//! `PROPTEST_CASES` environment variable asks for more.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// The most mutations applied to one example.
pub const MAX_MUTATIONS: usize = 8;

/// The longest run one mutation inserts, deletes or splices.
pub const MAX_RUN: usize = 64;

/// The proptest configuration of a fuzz target: `cases` cases (its share of
/// the CI budget), or `PROPTEST_CASES` when that is set, for longer runs.
pub fn config(cases: u32) -> Config {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok());
    Config {
        cases: from_env.unwrap_or(cases),
        ..Config::default()
    }
}

/// A position or choice, reduced modulo what it indexes when applied (so it
/// shrinks towards the first byte or example).
pub type Pick = usize;

/// One byte-level change to an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit of the byte at the index.
    Flip(Pick, u8),
    /// Overwrites the byte at the index, often with a byte that means
    /// something to parsers (a delimiter, a high bit, a zero).
    Set(Pick, u8),
    /// Inserts bytes before the index.
    Insert(Pick, Vec<u8>),
    /// Deletes up to this many bytes from the index.
    Delete(Pick, usize),
    /// Copies a run from an example (possibly the same one) over the bytes
    /// at the index, or inserts it there.
    Splice {
        /// Which example to copy from.
        from: Pick,
        /// Where the run starts in that example.
        start: Pick,
        /// The run's length, at most.
        len: usize,
        /// Where it goes.
        at: Pick,
        /// Insert rather than overwrite.
        insert: bool,
    },
}

/// Bytes parsers treat specially: JSON and SSE delimiters, escapes, line
/// ends, NUL, DEL, and bytes that cannot start or continue UTF-8.
const INTERESTING: &[u8] = b"\0\n\r\t \"\\/{}[]:,.=&%+*?#-_01\x7f\x80\xbf\xc0\xff";

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)]
}

/// Up to [`MAX_MUTATIONS`] mutations, for a target that picks and mutates
/// its examples itself (a VCDIFF delta together with its base).
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 0..=MAX_MUTATIONS)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Pick>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<Pick>(), byte()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<Pick>(), vec(byte(), 1..=MAX_RUN))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<Pick>(), 1..=MAX_RUN).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (
            any::<Pick>(),
            any::<Pick>(),
            1..=MAX_RUN,
            any::<Pick>(),
            any::<bool>()
        )
            .prop_map(|(from, start, len, at, insert)| Mutation::Splice {
                from,
                start,
                len,
                at,
                insert
            }),
    ]
}

/// Applies `mutations` to `input` in order; `examples` are what a splice
/// copies from.
pub fn apply(input: &mut Vec<u8>, mutations: &[Mutation], examples: &[Vec<u8>]) {
    // An insertion point may also be the end.
    fn position(at: Pick, len: usize) -> usize {
        at % (len + 1)
    }
    for mutation in mutations {
        match mutation {
            Mutation::Flip(at, bit) if !input.is_empty() => {
                let i = *at % input.len();
                input[i] ^= 1 << bit;
            }
            Mutation::Set(at, byte) if !input.is_empty() => {
                let i = *at % input.len();
                input[i] = *byte;
            }
            Mutation::Insert(at, bytes) => {
                let i = position(*at, input.len());
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(at, len) if !input.is_empty() => {
                let i = *at % input.len();
                let end = input.len().min(i + len);
                input.drain(i..end);
            }
            Mutation::Splice {
                from,
                start,
                len,
                at,
                insert,
            } => {
                let Some(source) =
                    (!examples.is_empty()).then(|| &examples[*from % examples.len()])
                else {
                    continue;
                };
                if source.is_empty() {
                    continue;
                }
                let start = *start % source.len();
                let run = &source[start..source.len().min(start + len)];
                let i = position(*at, input.len());
                let end = if *insert {
                    i
                } else {
                    input.len().min(i + run.len())
                };
                input.splice(i..end, run.iter().copied());
            }
            _ => {}
        }
    }
}

/// One of `examples` with up to [`MAX_MUTATIONS`] mutations: shrinks
/// towards fewer mutations, so a failure is reported as the smallest change
/// to a valid input that breaks the property.
///
/// # Panics
///
/// If `examples` is empty.
pub fn mutated(examples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!examples.is_empty(), "mutated needs at least one example");
    (any::<Pick>(), mutations()).prop_map(move |(which, mutations)| {
        let mut input = examples[which % examples.len()].clone();
        apply(&mut input, &mutations, &examples);
        input
    })
}

/// [`mutated`] for text parsers: the mutated bytes read as UTF-8, invalid
/// sequences replaced with U+FFFD.
pub fn mutated_text(examples: Vec<String>) -> impl Strategy<Value = String> {
    mutated(examples.into_iter().map(String::into_bytes).collect())
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Strings of up to `max_len` characters drawn mostly from `alphabet` (a
/// parser's own delimiters and names), sometimes any character.
pub fn text_over(alphabet: &'static str, max_len: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    vec(
        prop_oneof![
            4 => proptest::sample::select(chars),
            1 => any::<char>(),
        ],
        0..=max_len,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// JSON values of any shape, at most four levels deep and a few dozen
/// nodes: strings and keys from `text`, numbers of every JSON kind.
pub fn json_value_with(text: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((text.clone(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// [`json_value_with`] over short strings of any characters.
pub fn json_value() -> impl Strategy<Value = Value> {
    json_value_with(".{0,12}".boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds_of_empty_and_short_inputs() {
        let examples = vec![Vec::new(), b"ab".to_vec()];
        let everything = [
            Mutation::Flip(usize::MAX, 7),
            Mutation::Set(3, b'x'),
            Mutation::Delete(1, 10),
            Mutation::Insert(usize::MAX, b"yz".to_vec()),
            Mutation::Splice {
                from: 1,
                start: 1,
                len: 5,
                at: 0,
                insert: false,
            },
        ];
        for example in &examples {
            let mut input = example.clone();
            apply(&mut input, &everything, &examples);
            assert!(input.len() <= example.len() + 2 + 1, "{input:?}");
        }
    }

    #[test]
    fn config_takes_the_target_budget_by_default() {
        if std::env::var_os("PROPTEST_CASES").is_none() {
            assert_eq!(config(17).cases, 17);
        }
    }
}
