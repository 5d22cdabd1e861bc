//! VCDIFF (RFC 3284) deltas as Ably uses them for `delta=vcdiff`
//! (`docs/protocol.md#deltas`).
//!
//! A subscriber that asks for deltas receives, instead of a message's full
//! `data`, a VCDIFF delta against the previous message's payload
//! (`docs/protocol.md#delta-messages`). [`decode`] applies such a delta to the
//! stored base; [`encode`] produces one, for the mock server.
//!
//! # What the decoder reads
//!
//! A strict decoder for the subset of RFC 3284 that delta encoders actually
//! emit:
//!
//! - the header of RFC 3284 §4.1 with version 0 (`D6 C3 C4 00`, [`MAGIC`]); an
//!   application header (`VCD_APPHEADER`, an xdelta3 extension) is skipped;
//! - any number of windows (RFC 3284 §4.2), zero included: a header-only delta
//!   decodes to an empty target;
//! - windows whose source segment is in the base (`VCD_SOURCE`), in the
//!   target decoded so far (`VCD_TARGET`), or absent;
//! - the default code table (RFC 3284 §5.6) and address cache
//!   (RFC 3284 §5.1–5.3), with COPYs that overlap their own output
//!   (RFC 3284 §3, "the COPY instruction ... can also copy data from the target
//!   window itself");
//! - xdelta3's per-window Adler-32 checksum (`VCD_ADLER32`), which is
//!   verified.
//!
//! It rejects, with [`Error::Vcdiff`](crate::Error::Vcdiff), everything it
//! cannot read exactly: secondary compression (`VCD_DECOMPRESS`, a non-zero
//! `Delta_Indicator`), custom code tables (`VCD_CODETABLE`), other versions
//! (open-vcdiff's `S` format), unknown indicator bits, integers that do not
//! fit a `usize`, section lengths that disagree with the window length,
//! addresses at or beyond "here", source segments outside the base, and
//! trailing bytes that do not form a window. It never writes past a
//! window's declared size, never reserves more than the declared target size,
//! refuses a declared size over the caller's limit before reserving anything,
//! and never panics.
//!
//! # What the encoder writes
//!
//! Only what Ably's own decoder accepts (the `decode` rows of the test
//! vectors): version 0, `Hdr_Indicator` 0, one window with the whole base as
//! its `VCD_SOURCE` segment (or no source when nothing is copied from the
//! base), `Delta_Indicator` 0, the default code table, and no checksum,
//! since Ably's JavaScript decoder returns wrong bytes for checksummed
//! windows. Matches are found anywhere in the base and in the target
//! already written, through a hash-chained index of 8-byte keys.
//!
//! # Example
//!
//! ```
//! use shared::vcdiff;
//!
//! let base = br#"{"player":"ada","score":17,"level":3}"#;
//! let target = br#"{"player":"ada","score":18,"level":3}"#;
//!
//! let delta = vcdiff::encode(base, target);
//! assert!(vcdiff::is_delta(&delta));
//! // The limit: the largest payload this caller accepts.
//! assert_eq!(vcdiff::decode(base, &delta, 64 * 1024)?, target);
//! # Ok::<(), shared::Error>(())
//! ```

mod code_table;
mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::decode;
pub use encode::encode;

/// The four bytes every delta starts with: `'V' | 0x80`, `'C' | 0x80`,
/// `'D' | 0x80` and version 0 (RFC 3284 §4.1).
pub const MAGIC: [u8; 4] = [0xD6, 0xC3, 0xC4, 0x00];

/// `Hdr_Indicator` bit: secondary compressor ID follows (RFC 3284 §4.1).
const VCD_DECOMPRESS: u8 = 0x01;
/// `Hdr_Indicator` bit: a custom code table follows (RFC 3284 §4.1).
const VCD_CODETABLE: u8 = 0x02;
/// `Hdr_Indicator` bit: an application header follows (xdelta3 extension).
const VCD_APPHEADER: u8 = 0x04;

/// `Win_Indicator` bit: the source segment is in the base (RFC 3284 §4.2).
const VCD_SOURCE: u8 = 0x01;
/// `Win_Indicator` bit: the source segment is earlier target data
/// (RFC 3284 §4.2).
const VCD_TARGET: u8 = 0x02;
/// `Win_Indicator` bit: an Adler-32 of the window's target follows the
/// section lengths (xdelta3 extension).
const VCD_ADLER32: u8 = 0x04;

/// The most bytes a VCDIFF integer (RFC 3284 §2) can take and still fit a
/// `usize`.
const MAX_INTEGER_LEN: usize = usize::BITS.div_ceil(7) as usize;

/// Whether `bytes` starts with the VCDIFF magic and version 0.
///
/// This is how an unenveloped SSE client tells a delta from a full payload
/// (`docs/protocol.md#deltas-without-an-envelope`). No valid UTF-8, hence no
/// string or JSON payload, starts with these bytes: `D6` must be followed by a
/// continuation byte, and `C3` is not one.
pub fn is_delta(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Whether `data` is the base64 encoding of a VCDIFF delta: whether it
/// decodes to bytes that start with [`MAGIC`], as Ably's
/// `VcdiffDecoder.isBase64Delta` checks
/// (`docs/protocol.md#deltas-without-an-envelope`).
///
/// Every such string starts with `1sPE`, the encoding of `D6 C3 C4`; the
/// version byte falls in the second base64 quantum, so this decodes the
/// first two quanta rather than comparing text.
pub fn is_base64_delta(data: &str) -> bool {
    use base64::Engine as _;

    // Two quanta of four characters hold the four magic bytes.
    let Some(prefix) = data.as_bytes().get(..8) else {
        return false;
    };
    let mut bytes = [0; 6];
    base64::engine::general_purpose::STANDARD
        .decode_slice(prefix, &mut bytes)
        .is_ok_and(|len| bytes.get(..len).is_some_and(is_delta))
}
