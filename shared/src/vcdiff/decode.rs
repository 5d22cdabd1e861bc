//! The decoder: RFC 3284 §4 (delta file layout) and RFC 3284 §5 (instructions
//! and addresses), strict about every byte it reads.

use super::code_table::{
    AddressCache, DEFAULT_CODE_TABLE, FIRST_NEAR_MODE, FIRST_SAME_MODE, Kind, MODE_COUNT,
    MODE_HERE, MODE_SELF,
};
use super::{
    MAGIC, MAX_INTEGER_LEN, VCD_ADLER32, VCD_APPHEADER, VCD_CODETABLE, VCD_DECOMPRESS, VCD_SOURCE,
    VCD_TARGET,
};
use crate::{Error, Result};

/// Applies `delta` to `base`, refusing to build a target longer than
/// `max_target_len` bytes.
///
/// There is no default: each caller passes the largest payload it would
/// accept whole (a subscriber, its message size cap), so a few bytes of
/// delta can never expand into more than a message could have carried. The
/// limit is checked against each window's declared size before any memory is
/// reserved, so a hostile delta costs at most `max_target_len` bytes of
/// output buffer, however large a target it declares.
///
/// # Errors
///
/// [`Error::Vcdiff`] if the delta is malformed, uses a feature outside the
/// subset described in the [module docs](super), does not fit `base`, fails
/// its checksum, or declares a target over `max_target_len`.
pub fn decode(base: &[u8], delta: &[u8], max_target_len: usize) -> Result<Vec<u8>> {
    let mut reader = Reader::new(delta);
    read_header(&mut reader)?;
    let mut target = Vec::new();
    // RFC 3284 §4.2: windows follow the header back to back until the delta
    // ends; bytes that do not form a whole window are an error, not ignored.
    while !reader.is_empty() {
        decode_window(&mut reader, base, &mut target, max_target_len)?;
    }
    Ok(target)
}

/// Reads the file header (RFC 3284 §4.1) and skips an application header.
fn read_header(reader: &mut Reader<'_>) -> Result<()> {
    let magic = reader.take(3, "magic")?;
    if magic != &MAGIC[..3] {
        return Err(Error::Vcdiff(format!(
            "missing vcdiff magic: starts with {magic:02x?}"
        )));
    }
    let version = reader.byte("version")?;
    if version != MAGIC[3] {
        // 0x53 ('S') is open-vcdiff's extended format (interleaved sections,
        // checksums in another place).
        return Err(Error::Vcdiff(format!("unsupported version {version:#04x}")));
    }
    let indicator = reader.byte("header indicator")?;
    if indicator & VCD_DECOMPRESS != 0 {
        return Err(Error::Vcdiff(
            "secondary compression (VCD_DECOMPRESS) is not supported".into(),
        ));
    }
    if indicator & VCD_CODETABLE != 0 {
        return Err(Error::Vcdiff(
            "custom code tables (VCD_CODETABLE) are not supported".into(),
        ));
    }
    if indicator & !VCD_APPHEADER != 0 {
        return Err(Error::Vcdiff(format!(
            "unknown header indicator bits {indicator:#04x}"
        )));
    }
    if indicator & VCD_APPHEADER != 0 {
        // xdelta3 stores file names here; nothing in it affects decoding.
        let len = reader.integer("application header length")?;
        reader.take(len, "application header")?;
    }
    Ok(())
}

/// Where a window's COPY addresses below the source length point
/// (RFC 3284 §4.2).
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// A segment of the base (`VCD_SOURCE`), or an empty slice for a window
    /// without a source.
    Base(&'a [u8]),
    /// A segment of the target decoded by earlier windows (`VCD_TARGET`).
    Target { start: usize, len: usize },
}

impl Source<'_> {
    fn len(self) -> usize {
        match self {
            Source::Base(segment) => segment.len(),
            Source::Target { len, .. } => len,
        }
    }
}

/// Decodes one window (RFC 3284 §4.2–4.3), appending exactly its declared
/// number of bytes to `target`.
fn decode_window(
    reader: &mut Reader<'_>,
    base: &[u8],
    target: &mut Vec<u8>,
    max_target_len: usize,
) -> Result<()> {
    let window_offset = reader.offset();
    let indicator = reader.byte("window indicator")?;
    if indicator & !(VCD_SOURCE | VCD_TARGET | VCD_ADLER32) != 0 {
        return Err(Error::Vcdiff(format!(
            "unknown window indicator bits {indicator:#04x} at offset {window_offset}"
        )));
    }
    let source = match indicator & (VCD_SOURCE | VCD_TARGET) {
        0 => Source::Base(&[]),
        VCD_SOURCE => {
            let (start, len) = read_segment(reader, base.len(), "base")?;
            Source::Base(&base[start..start + len])
        }
        VCD_TARGET => {
            let (start, len) = read_segment(reader, target.len(), "decoded target")?;
            Source::Target { start, len }
        }
        _ => {
            return Err(Error::Vcdiff(format!(
                "window at offset {window_offset} sets both VCD_SOURCE and VCD_TARGET"
            )));
        }
    };

    let encoding_len = reader.integer("delta encoding length")?;
    if encoding_len > reader.remaining() {
        return Err(Error::Vcdiff(format!(
            "delta encoding length {encoding_len} at offset {window_offset} exceeds the {} bytes left",
            reader.remaining()
        )));
    }
    let mut encoding = reader.section(encoding_len, "delta encoding")?;

    let target_len = encoding.integer("target window size")?;
    let room = max_target_len.saturating_sub(target.len());
    if target_len > room {
        return Err(Error::Vcdiff(format!(
            "window target size {target_len} at offset {window_offset} exceeds limit \
             ({room} of {max_target_len} bytes left)"
        )));
    }
    let delta_indicator = encoding.byte("delta indicator")?;
    if delta_indicator != 0 {
        return Err(Error::Vcdiff(format!(
            "secondary compression (delta indicator {delta_indicator:#04x}) is not supported"
        )));
    }
    let data_len = encoding.integer("data section length")?;
    let instructions_len = encoding.integer("instructions section length")?;
    let addresses_len = encoding.integer("addresses section length")?;
    let checksum = if indicator & VCD_ADLER32 != 0 {
        let bytes = encoding.take(4, "adler-32 checksum")?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    } else {
        None
    };
    // The three sections must fill the rest of the delta encoding exactly;
    // anything else means one of the lengths is wrong.
    let sections_len = data_len
        .checked_add(instructions_len)
        .and_then(|len| len.checked_add(addresses_len));
    if sections_len != Some(encoding.remaining()) {
        return Err(Error::Vcdiff(format!(
            "section lengths (data {data_len}, instructions {instructions_len}, addresses \
             {addresses_len}) do not fill the {} bytes left of the window at offset {window_offset}",
            encoding.remaining()
        )));
    }
    let mut sections = Sections {
        data: encoding.section(data_len, "data section")?,
        instructions: encoding.section(instructions_len, "instructions section")?,
        addresses: encoding.section(addresses_len, "addresses section")?,
    };

    // Reserve what the window declares (bounded by the limit above) so the
    // instructions never reallocate. `try_reserve` turns an allocation
    // failure under a caller's generous limit into an error, not an abort.
    target.try_reserve(target_len).map_err(|_| {
        Error::Vcdiff(format!(
            "cannot allocate {target_len} bytes for the window at offset {window_offset}"
        ))
    })?;
    let window_start = target.len();
    run_instructions(&mut sections, source, target, target_len)?;

    let produced = target.len() - window_start;
    if produced != target_len {
        return Err(Error::Vcdiff(format!(
            "window at offset {window_offset} produced {produced} bytes but declared {target_len}"
        )));
    }
    for (section, name) in [(&sections.data, "data"), (&sections.addresses, "addresses")] {
        if !section.is_empty() {
            return Err(Error::Vcdiff(format!(
                "{} unused bytes in the {name} section at offset {}",
                section.remaining(),
                section.offset()
            )));
        }
    }
    if let Some(expected) = checksum {
        let actual = adler32(&target[window_start..]);
        if actual != expected {
            return Err(Error::Vcdiff(format!(
                "adler-32 {actual:08x} of the window at offset {window_offset} does not match \
                 its checksum {expected:08x}"
            )));
        }
    }
    Ok(())
}

/// Reads a source segment's size and position and checks that it lies
/// within the first `available` bytes of what it refers to.
fn read_segment(reader: &mut Reader<'_>, available: usize, what: &str) -> Result<(usize, usize)> {
    let offset = reader.offset();
    let len = reader.integer("source segment size")?;
    let start = reader.integer("source segment position")?;
    if start.checked_add(len).is_none_or(|end| end > available) {
        return Err(Error::Vcdiff(format!(
            "source segment of {len} bytes at position {start} (offset {offset}) is outside the \
             {available}-byte {what}"
        )));
    }
    Ok((start, len))
}

/// The three sections of a window's delta encoding (RFC 3284 §4.3).
#[derive(Debug)]
struct Sections<'a> {
    data: Reader<'a>,
    instructions: Reader<'a>,
    addresses: Reader<'a>,
}

/// Executes a window's instructions (RFC 3284 §5.4), appending at most
/// `target_len` bytes to `target`.
fn run_instructions(
    sections: &mut Sections<'_>,
    source: Source<'_>,
    target: &mut Vec<u8>,
    target_len: usize,
) -> Result<()> {
    let window_start = target.len();
    let window_end = window_start + target_len;
    let mut cache = AddressCache::new();
    while !sections.instructions.is_empty() {
        let offset = sections.instructions.offset();
        let opcode = sections.instructions.byte("opcode")?;
        for half in &DEFAULT_CODE_TABLE[usize::from(opcode)] {
            if half.kind == Kind::Noop {
                continue;
            }
            let size = match half.size {
                0 => sections.instructions.integer("instruction size")?,
                size => usize::from(size),
            };
            // Checked before writing, so no instruction can grow the target
            // past what the window declared (and the limit allowed).
            let room = window_end - target.len();
            if size > room {
                return Err(Error::Vcdiff(format!(
                    "instruction at offset {offset} writes {size} bytes but the window has \
                     {room} left"
                )));
            }
            match half.kind {
                Kind::Add => target.extend_from_slice(sections.data.take(size, "ADD data")?),
                Kind::Run => {
                    let byte = sections.data.byte("RUN byte")?;
                    target.resize(target.len() + size, byte);
                }
                Kind::Copy => {
                    let here = source.len() + (target.len() - window_start);
                    let addr = read_address(&mut sections.addresses, &mut cache, half.mode, here)?;
                    copy(target, source, window_start, addr, size);
                }
                Kind::Noop => {}
            }
        }
    }
    Ok(())
}

/// Decodes a COPY address in `mode` (RFC 3284 §5.3) and checks it is before
/// `here`, the position in the source-plus-target address space being written.
fn read_address(
    addresses: &mut Reader<'_>,
    cache: &mut AddressCache,
    mode: u8,
    here: usize,
) -> Result<usize> {
    let offset = addresses.offset();
    let addr = match mode {
        MODE_SELF => addresses.integer("COPY address")?,
        MODE_HERE => {
            let distance = addresses.integer("COPY address")?;
            here.checked_sub(distance).ok_or_else(|| {
                Error::Vcdiff(format!(
                    "COPY address at offset {offset} points {distance} bytes back from \
                     position {here}"
                ))
            })?
        }
        FIRST_NEAR_MODE..FIRST_SAME_MODE => {
            let near = cache.near(usize::from(mode - FIRST_NEAR_MODE));
            near.checked_add(addresses.integer("COPY address")?)
                .ok_or_else(|| {
                    Error::Vcdiff(format!("COPY address at offset {offset} overflows"))
                })?
        }
        FIRST_SAME_MODE..MODE_COUNT => {
            let byte = addresses.byte("COPY address")?;
            cache.same(usize::from(mode - FIRST_SAME_MODE), byte)
        }
        // The default code table holds no other modes.
        _ => {
            return Err(Error::Vcdiff(format!("invalid address mode {mode}")));
        }
    };
    // RFC 3284 §5.3: "the address ... must be less than 'here'".
    if addr >= here {
        return Err(Error::Vcdiff(format!(
            "COPY address {addr} at offset {offset} is not before the current position {here}"
        )));
    }
    cache.update(addr);
    Ok(addr)
}

/// Appends `size` bytes copied from `addr` in the source-plus-target
/// address space (RFC 3284 §3).
///
/// The caller has checked that `addr < here` and that `size` bytes fit the
/// window. A copy may start in the source segment and run on into the
/// target, and a copy from the target may overlap the bytes it writes; both
/// behave as if copied one byte at a time.
fn copy(target: &mut Vec<u8>, source: Source<'_>, window_start: usize, addr: usize, size: usize) {
    let from_source = source.len().saturating_sub(addr).min(size);
    if from_source > 0 {
        match source {
            Source::Base(segment) => {
                target.extend_from_slice(&segment[addr..addr + from_source]);
            }
            Source::Target { start, .. } => {
                target.extend_from_within(start + addr..start + addr + from_source);
            }
        }
    }
    let mut remaining = size - from_source;
    if remaining == 0 {
        return;
    }
    // The rest comes from the target window. `addr < here` makes `from`
    // lie before the end of `target`, so each round copies at least one
    // byte.
    let from = window_start + (addr + from_source - source.len());
    // Bytes from `from` onwards repeat with period `target.len() - from`.
    // Copying the whole available stretch each round keeps that phase and
    // doubles the stretch, so a long overlapping copy (a run) takes
    // O(log size) `memcpy`s instead of one per byte.
    while remaining > 0 {
        let n = remaining.min(target.len() - from);
        target.extend_from_within(from..from + n);
        remaining -= n;
    }
}

/// Adler-32 (RFC 1950 §8.2), as xdelta3's `VCD_ADLER32` stores it.
pub(super) fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    // The largest n such that 255 n (n + 1) / 2 + (n + 1) (MOD - 1) fits a
    // u32: sums may run this long before they must be reduced.
    const NMAX: usize = 5552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(NMAX) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// A cursor over part of the delta that knows its absolute offset, so
/// errors can say where the problem is.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the whole delta.
    origin: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            origin: 0,
        }
    }

    /// Offset of the next byte in the whole delta.
    pub(super) fn offset(&self) -> usize {
        self.origin + self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub(super) fn byte(&mut self, what: &str) -> Result<u8> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.truncated(what))?;
        self.pos += 1;
        Ok(byte)
    }

    pub(super) fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        let bytes = self
            .pos
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| self.truncated(what))?;
        self.pos += len;
        Ok(bytes)
    }

    /// The next `len` bytes as a reader of their own.
    pub(super) fn section(&mut self, len: usize, what: &str) -> Result<Reader<'a>> {
        let origin = self.offset();
        let bytes = self.take(len, what)?;
        Ok(Reader {
            bytes,
            pos: 0,
            origin,
        })
    }

    /// Reads a VCDIFF integer (RFC 3284 §2): base 128, most significant digit
    /// first, the top bit of each byte set on all but the last.
    #[inline]
    pub(super) fn integer(&mut self, what: &str) -> Result<usize> {
        let start = self.offset();
        let mut value: usize = 0;
        for _ in 0..MAX_INTEGER_LEN {
            let byte = self.byte(what)?;
            if value > usize::MAX >> 7 {
                return Err(Error::Vcdiff(format!(
                    "{what} at offset {start} does not fit in {} bits",
                    usize::BITS
                )));
            }
            value = (value << 7) | usize::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Vcdiff(format!(
            "{what} at offset {start} is longer than {MAX_INTEGER_LEN} bytes"
        )))
    }

    fn truncated(&self, what: &str) -> Error {
        Error::Vcdiff(format!("truncated {what} at offset {}", self.offset()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::vcdiff::encode::write_integer;

    /// A limit none of these deltas comes near.
    const LIMIT: usize = 1 << 20;

    /// A delta made of `windows` after a plain header.
    fn delta(windows: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(0);
        for window in windows {
            out.extend_from_slice(window);
        }
        out
    }

    /// A window: `head` (indicator and source segment) as given, lengths
    /// computed from the sections.
    fn window(head: &[u8], target_len: usize, data: &[u8], inst: &[u8], addr: &[u8]) -> Vec<u8> {
        let mut encoding = Vec::new();
        write_integer(&mut encoding, target_len);
        encoding.push(0);
        for section in [data, inst, addr] {
            write_integer(&mut encoding, section.len());
        }
        for section in [data, inst, addr] {
            encoding.extend_from_slice(section);
        }
        let mut out = head.to_vec();
        write_integer(&mut out, encoding.len());
        out.extend_from_slice(&encoding);
        out
    }

    fn error(result: Result<Vec<u8>>) -> String {
        match result {
            Ok(bytes) => panic!("expected an error, decoded {bytes:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn integers_decode_big_endian_base_128() {
        let mut reader = Reader::new(&[0x00, 0x7f, 0x81, 0x00, 0xba, 0xef, 0x9a, 0x15]);

        let values: Vec<usize> = (0..4).map(|_| reader.integer("n").unwrap()).collect();

        // 0xba 0xef 0x9a 0x15 is RFC 3284 §2's example, 123456789.
        assert_eq!(values, [0, 127, 128, 123_456_789]);
        assert!(reader.is_empty());
    }

    #[test]
    fn integers_that_overflow_or_run_on_are_rejected() {
        let mut max = vec![0x81];
        max.extend([0xff; 8]);
        max.push(0x7f);
        assert_eq!(Reader::new(&max).integer("n").unwrap(), usize::MAX);

        let mut over = vec![0x82];
        over.extend([0x80; 8]);
        over.push(0x00);
        let err = Reader::new(&over).integer("n").unwrap_err().to_string();
        assert!(err.contains("does not fit in 64 bits"), "{err}");

        let long = [0x80; 11];
        let err = Reader::new(&long).integer("n").unwrap_err().to_string();
        assert!(err.contains("longer than 10 bytes"), "{err}");

        let err = Reader::new(&[0x80, 0x80])
            .integer("n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid vcdiff delta: truncated n at offset 2");
    }

    #[test]
    fn adler32_matches_the_reference_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Long enough to need the periodic reduction.
        assert_eq!(adler32(&[0xff; 100_000]), 0x149A_302C);
    }

    #[test]
    fn overlapping_copy_repeats_the_pattern() {
        // No source; ADD "ab", then COPY 9 from address 0 (mode SELF): the
        // copy reads the bytes it writes.
        let window = window(&[0x00], 11, b"ab", &[0x03, 0x13, 0x09], &[0x00]);

        let target = decode(b"", &delta(&[&window]), LIMIT).unwrap();

        assert_eq!(target, b"abababababa");
    }

    #[test]
    fn copy_may_run_from_the_source_into_the_target() {
        // Source "xyz" (3 bytes at 0); COPY 6 from address 1 reads "yz",
        // then carries on at the window's own first byte.
        let window = window(&[0x01, 0x03, 0x00], 6, b"", &[0x13, 0x06], &[0x01]);

        let target = decode(b"xyz", &delta(&[&window]), LIMIT).unwrap();

        assert_eq!(target, b"yzyzyz");
    }

    #[test]
    fn target_window_copies_from_earlier_windows() {
        let first = window(&[0x00], 4, b"wxyz", &[0x05], &[]);
        // VCD_TARGET, a segment of 2 bytes at position 1 ("xy"); COPY 4
        // from address 0 overlaps into the window itself.
        let second = window(&[0x02, 0x02, 0x01], 4, b"", &[0x14], &[0x00]);

        let target = decode(b"", &delta(&[&first, &second]), LIMIT).unwrap();

        assert_eq!(target, b"wxyzxyxy");
    }

    #[test]
    fn target_segment_beyond_the_decoded_output_is_rejected() {
        let window = window(&[0x02, 0x02, 0x00], 4, b"", &[0x14], &[0x00]);

        let err = error(decode(b"", &delta(&[&window]), LIMIT));

        assert!(err.contains("outside the 0-byte decoded target"), "{err}");
    }

    #[test]
    fn window_over_the_limit_is_rejected_before_decoding() {
        // RUN of 1000 bytes.
        let window = window(&[0x00], 1000, b"q", &[0x00, 0x87, 0x68], &[]);
        let delta = delta(&[&window]);

        assert_eq!(decode(b"", &delta, 1000).unwrap(), [b'q'; 1000]);
        let err = error(decode(b"", &delta, 999));
        assert!(
            err.contains("window target size 1000 at offset 5 exceeds limit"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_header_features_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (&[0xd6, 0xc3, 0xc4, 0x53, 0x00], "unsupported version 0x53"),
            (&[0xd6, 0xc3, 0xc4, 0x00, 0x01, 0x02], "VCD_DECOMPRESS"),
            (&[0xd6, 0xc3, 0xc4, 0x00, 0x02, 0x00], "VCD_CODETABLE"),
            (
                &[0xd6, 0xc3, 0xc4, 0x00, 0x08],
                "unknown header indicator bits 0x08",
            ),
            (b"{\"a\":1}", "missing vcdiff magic"),
        ];
        for (delta, expected) in cases {
            let err = error(decode(b"", delta, LIMIT));
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn unused_section_bytes_are_rejected() {
        // ADD 1 with two data bytes.
        let window = window(&[0x00], 1, b"ab", &[0x02], &[]);

        let err = error(decode(b"", &delta(&[&window]), LIMIT));

        assert!(err.contains("1 unused bytes in the data section"), "{err}");
    }
}
