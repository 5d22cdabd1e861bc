//! The encoder: a greedy matcher over a hash-chained index of the base and
//! the target written so far, emitting only the subset Ably's decoder reads.

use super::code_table::{
    ADD_EXPLICIT_OPCODE, AddressCache, FIRST_NEAR_MODE, FIRST_SAME_MODE, MODE_HERE, MODE_SELF,
    NEAR_SLOTS, RUN_OPCODE, add_copy_opcode, add_opcode, copy_opcode, copy4_add1_opcode,
};
use super::{MAGIC, MAX_INTEGER_LEN, VCD_SOURCE};

/// Bytes hashed to find match candidates. Eight bytes (one `u64` read) are
/// selective enough that JSON's repeated keys rarely crowd the right
/// candidate out of a chain; shorter matches save little once a COPY's
/// opcode and address are paid for.
const KEY_LEN: usize = 8;
/// Candidates examined per position: bounds the work on repetitive input.
const MAX_CHAIN: usize = 64;
/// Shortest COPY worth emitting; the candidate search only finds matches of
/// [`KEY_LEN`], but the continuation guess and backward extension can be
/// shorter.
const MIN_COPY: usize = 4;
/// Shortest run of one byte emitted as RUN (opcode, size and one data byte)
/// rather than as ADD data.
const MIN_RUN: usize = 6;

/// Encodes `target` as a delta against `base`, using only the subset that
/// Ably's decoders read (see the [module docs](super)).
///
/// The result always decodes, with [`decode`](super::decode), back to
/// `target`. Matches are found anywhere in `base` and in the part of
/// `target` already encoded, so a small edit costs a few bytes wherever it
/// is. Time and memory are linear in `base.len() + target.len()`: the
/// index takes about 4 bytes per input byte, and each target position
/// examines at most 64 candidate matches.
pub fn encode(base: &[u8], target: &[u8]) -> Vec<u8> {
    let mut window = WindowWriter::new(base.len());
    Matcher::new(base, target).encode_into(&mut window);
    if !base.is_empty() && !window.copied_from_source {
        // Nothing refers to the base: a window without a source segment is
        // a few bytes shorter and its addresses are smaller. The second
        // pass costs time only for payloads unrelated to their base.
        window = WindowWriter::new(0);
        Matcher::new(&[], target).encode_into(&mut window);
    }
    let source_len = window.source_len;
    let sections = window.finish();

    let mut out = Vec::with_capacity(MAGIC.len() + 1 + 6 * MAX_INTEGER_LEN + sections.len());
    out.extend_from_slice(&MAGIC);
    // Hdr_Indicator 0: no secondary compressor, code table or app header.
    out.push(0);
    // One window, whose source segment (if any) is the whole base.
    if source_len == 0 {
        out.push(0);
    } else {
        out.push(VCD_SOURCE);
        write_integer(&mut out, source_len);
        write_integer(&mut out, 0);
    }
    let mut header = Vec::with_capacity(4 * MAX_INTEGER_LEN + 1);
    write_integer(&mut header, target.len());
    // Delta_Indicator 0: no section is compressed.
    header.push(0);
    write_integer(&mut header, sections.data.len());
    write_integer(&mut header, sections.instructions.len());
    write_integer(&mut header, sections.addresses.len());
    write_integer(&mut out, header.len() + sections.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sections.data);
    out.extend_from_slice(&sections.instructions);
    out.extend_from_slice(&sections.addresses);
    out
}

/// Appends `value` as a VCDIFF integer (RFC 3284 §2).
pub(super) fn write_integer(out: &mut Vec<u8>, mut value: usize) {
    let mut digits = [0u8; MAX_INTEGER_LEN];
    let mut start = digits.len();
    loop {
        start -= 1;
        // The mask keeps seven bits, so the cast cannot truncate.
        digits[start] = (value & 0x7f) as u8 | if start + 1 == digits.len() { 0 } else { 0x80 };
        value >>= 7;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Bytes [`write_integer`] takes for `value`.
fn integer_len(value: usize) -> usize {
    let bits = (usize::BITS - value.leading_zeros()).max(1);
    bits.div_ceil(7) as usize
}

/// The three sections of the window's delta encoding (RFC 3284 §4.3).
#[derive(Debug, Default)]
struct Sections {
    data: Vec<u8>,
    instructions: Vec<u8>,
    addresses: Vec<u8>,
}

impl Sections {
    fn len(&self) -> usize {
        self.data.len() + self.instructions.len() + self.addresses.len()
    }
}

/// An instruction held back because the next one may share its opcode
/// (the default table's ADD+COPY and COPY+ADD pairs, RFC 3284 §5.6).
#[derive(Debug, Clone, Copy)]
enum Pending {
    None,
    /// An ADD of 1..=4 bytes whose data is already in the data section.
    Add(usize),
    /// A COPY of 4 bytes whose address is already in the addresses section.
    Copy4(u8),
}

/// How a COPY address is written in the addresses section.
#[derive(Debug, Clone, Copy)]
enum EncodedAddress {
    Integer(usize),
    Byte(u8),
}

impl EncodedAddress {
    fn len(self) -> usize {
        match self {
            EncodedAddress::Integer(value) => integer_len(value),
            EncodedAddress::Byte(_) => 1,
        }
    }
}

/// Turns ADD, COPY and RUN into the window's sections, choosing opcodes
/// from the default code table and address modes from the address cache
/// exactly as the decoder will replay them.
#[derive(Debug)]
struct WindowWriter {
    source_len: usize,
    /// Bytes of target described so far; `source_len + written` is "here".
    written: usize,
    sections: Sections,
    cache: AddressCache,
    pending: Pending,
    /// Whether any COPY reads from the source segment.
    copied_from_source: bool,
}

impl WindowWriter {
    fn new(source_len: usize) -> Self {
        Self {
            source_len,
            written: 0,
            sections: Sections::default(),
            cache: AddressCache::new(),
            pending: Pending::None,
            copied_from_source: false,
        }
    }

    fn here(&self) -> usize {
        self.source_len + self.written
    }

    fn add(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.sections.data.extend_from_slice(bytes);
        self.written += bytes.len();
        if let (Pending::Copy4(mode), 1) = (self.pending, bytes.len()) {
            self.sections.instructions.push(copy4_add1_opcode(mode));
            self.pending = Pending::None;
            return;
        }
        self.flush();
        if bytes.len() <= 4 {
            self.pending = Pending::Add(bytes.len());
        } else {
            self.push_opcode(add_opcode(bytes.len()), ADD_EXPLICIT_OPCODE, bytes.len());
        }
    }

    fn run(&mut self, byte: u8, len: usize) {
        self.flush();
        self.sections.data.push(byte);
        self.sections.instructions.push(RUN_OPCODE);
        write_integer(&mut self.sections.instructions, len);
        self.written += len;
    }

    /// A COPY of `len` bytes from `addr`, an address in source-plus-target
    /// space below [`here`](Self::here).
    fn copy(&mut self, addr: usize, len: usize) {
        let (mode, encoded) = self.choose_address(addr);
        match encoded {
            EncodedAddress::Integer(value) => write_integer(&mut self.sections.addresses, value),
            EncodedAddress::Byte(byte) => self.sections.addresses.push(byte),
        }
        // The decoder updates its cache after every COPY; so must we.
        self.cache.update(addr);
        self.copied_from_source |= addr < self.source_len;
        self.written += len;

        if let Pending::Add(add) = self.pending
            && let Some(opcode) = add_copy_opcode(add, len, mode)
        {
            self.sections.instructions.push(opcode);
            self.pending = Pending::None;
            return;
        }
        self.flush();
        if len == 4 {
            self.pending = Pending::Copy4(mode);
        } else {
            let (opcode, explicit) = copy_opcode(len, mode);
            self.sections.instructions.push(opcode);
            if explicit {
                write_integer(&mut self.sections.instructions, len);
            }
        }
    }

    /// Bytes the address of a COPY from `addr` would take now.
    fn address_cost(&self, addr: usize) -> usize {
        self.choose_address(addr).1.len()
    }

    /// The cheapest of the RFC 3284 §5.3 modes for `addr` given the cache.
    fn choose_address(&self, addr: usize) -> (u8, EncodedAddress) {
        let (block, byte) = AddressCache::same_slot(addr);
        if self.cache.same(block, byte) == addr {
            // One byte: nothing is cheaper.
            return (FIRST_SAME_MODE + block as u8, EncodedAddress::Byte(byte));
        }
        let mut best = (MODE_SELF, addr);
        let mut consider = |mode: u8, value: usize| {
            if integer_len(value) < integer_len(best.1) {
                best = (mode, value);
            }
        };
        consider(MODE_HERE, self.here() - addr);
        for slot in 0..NEAR_SLOTS {
            if let Some(offset) = addr.checked_sub(self.cache.near(slot)) {
                consider(FIRST_NEAR_MODE + slot as u8, offset);
            }
        }
        (best.0, EncodedAddress::Integer(best.1))
    }

    fn flush(&mut self) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::Add(len) => self.push_opcode(add_opcode(len), ADD_EXPLICIT_OPCODE, len),
            Pending::Copy4(mode) => self.sections.instructions.push(copy_opcode(4, mode).0),
        }
    }

    /// Pushes `implied` if the size fits an opcode, else `explicit` and the
    /// size.
    fn push_opcode(&mut self, implied: Option<u8>, explicit: u8, size: usize) {
        match implied {
            Some(opcode) => self.sections.instructions.push(opcode),
            None => {
                self.sections.instructions.push(explicit);
                write_integer(&mut self.sections.instructions, size);
            }
        }
    }

    fn finish(mut self) -> Sections {
        self.flush();
        self.sections
    }
}

/// Marks an empty chain link in [`Index`].
const NONE: u32 = u32::MAX;

/// A hash-chained index of positions in the address space `base ++ target`
/// (zlib's `head`/`prev` scheme), keyed by the [`KEY_LEN`] bytes at each
/// position.
///
/// Positions are stored as `u32` to halve the memory; positions past 4 GiB
/// are simply not indexed, which only costs compression.
#[derive(Debug)]
struct Index {
    head: Vec<u32>,
    prev: Vec<u32>,
    shift: u32,
}

impl Index {
    fn new(positions: usize) -> Self {
        // About one bucket per position (log2, rounded up), within sane
        // bounds: 256 buckets to 64 MiB of them.
        let bits = (usize::BITS - positions.saturating_sub(1).leading_zeros()).clamp(8, 24);
        Self {
            head: vec![NONE; 1 << bits],
            prev: vec![NONE; positions.min(NONE as usize)],
            shift: u64::BITS - bits,
        }
    }

    fn bucket(&self, key: u64) -> usize {
        // Fibonacci hashing: the top bits of the product mix all key bytes.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn insert(&mut self, pos: usize, key: u64) {
        if pos >= self.prev.len() {
            return;
        }
        let bucket = self.bucket(key);
        self.prev[pos] = self.head[bucket];
        // `pos < prev.len() <= NONE`, so it fits and is not the marker.
        self.head[bucket] = pos as u32;
    }

    /// Positions inserted with `key` (and colliding keys), newest first.
    fn candidates(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let first = self.head[self.bucket(key)];
        std::iter::successors((first != NONE).then_some(first), |&pos| {
            let next = self.prev[pos as usize];
            (next != NONE).then_some(next)
        })
        .map(|pos| pos as usize)
        .take(MAX_CHAIN)
    }
}

/// The [`KEY_LEN`] bytes at `pos`, if there are that many.
fn key_at(bytes: &[u8], pos: usize) -> Option<u64> {
    let key = bytes.get(pos..)?.first_chunk::<KEY_LEN>()?;
    Some(u64::from_le_bytes(*key))
}

/// Length of the common prefix of `a` and `b`, eight bytes at a time.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let (a_words, _) = a.as_chunks::<8>();
    let (b_words, _) = b.as_chunks::<8>();
    let mut len = 0;
    for (x, y) in a_words.iter().zip(b_words) {
        let diff = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if diff != 0 {
            // Little-endian: the lowest set bit is in the first differing byte.
            return len + (diff.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    len + a[len..]
        .iter()
        .zip(&b[len..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// A match found at some target position: copy `len` bytes from `addr`
/// (source-plus-target space) to target position `start`.
#[derive(Debug, Clone, Copy)]
struct Match {
    start: usize,
    addr: usize,
    len: usize,
}

/// Greedy parse of the target into literals, COPYs and RUNs.
#[derive(Debug)]
struct Matcher<'a> {
    base: &'a [u8],
    target: &'a [u8],
    index: Index,
}

impl<'a> Matcher<'a> {
    fn new(base: &'a [u8], target: &'a [u8]) -> Self {
        let mut index = Index::new(base.len().saturating_add(target.len()));
        for pos in 0..base.len().saturating_sub(KEY_LEN - 1) {
            if let Some(key) = key_at(base, pos) {
                index.insert(pos, key);
            }
        }
        Self {
            base,
            target,
            index,
        }
    }

    fn encode_into(mut self, window: &mut WindowWriter) {
        let target = self.target;
        // Start of the bytes not yet described (the pending literal).
        let mut literal = 0;
        // Where the last COPY ended in the target, and the address that
        // would continue it.
        let mut continuation: Option<(usize, usize)> = None;
        let mut pos = 0;
        while pos < target.len() {
            let guess = continuation.map(|(end, addr)| addr + (pos - end));
            let copy = self.best_copy(pos, literal, guess, window);
            let end = match (copy, self.run_at(pos, literal)) {
                (_, Some((start, len))) if copy.is_none_or(|m| len >= m.len) => {
                    window.add(&target[literal..start]);
                    window.run(target[pos], len);
                    continuation = None;
                    start + len
                }
                (Some(m), _) => {
                    window.add(&target[literal..m.start]);
                    window.copy(m.addr, m.len);
                    continuation = Some((m.start + m.len, m.addr + m.len));
                    m.start + m.len
                }
                _ => {
                    // Searched at `pos`; only now may later positions
                    // find it (an address must be below "here"). Every
                    // position below `pos` is already indexed.
                    self.index_target(pos, pos + 1);
                    pos += 1;
                    continue;
                }
            };
            // Index what the instruction covered so later COPYs can reach
            // it, then carry on after it.
            self.index_target(pos, end);
            literal = end;
            pos = end;
        }
        window.add(&target[literal..]);
    }

    /// Adds target positions `from..to` to the index.
    fn index_target(&mut self, from: usize, to: usize) {
        let base_len = self.base.len();
        for pos in from..to {
            if let Some(key) = key_at(self.target, pos) {
                self.index.insert(base_len + pos, key);
            }
        }
    }

    /// The longest worthwhile COPY covering target position `pos`, extended
    /// backwards into the pending literal that starts at `literal`.
    fn best_copy(
        &self,
        pos: usize,
        literal: usize,
        guess: Option<usize>,
        window: &WindowWriter,
    ) -> Option<Match> {
        let here = self.base.len() + pos;
        // After a COPY ends at a changed byte, the next unchanged bytes
        // usually continue at the same alignment (a substitution): try that
        // first, then the indexed positions that share this one's key.
        let candidates = guess.filter(|&addr| addr < here).into_iter().chain(
            key_at(self.target, pos)
                .into_iter()
                .flat_map(|key| self.index.candidates(key)),
        );
        let mut best: Option<Match> = None;
        for addr in candidates {
            if let Some(m) = self.extend(addr, pos, literal)
                && best.is_none_or(|b| m.len > b.len)
            {
                best = Some(m);
                if m.start + m.len == self.target.len() {
                    break; // Nothing can beat the rest of the target.
                }
            }
        }
        // A COPY pays an opcode and its address; it must save more than
        // that over leaving the bytes as ADD data.
        best.filter(|m| m.len >= MIN_COPY && m.len > 1 + window.address_cost(m.addr))
    }

    /// The match from candidate `addr` at `pos`, extended forwards as far
    /// as the bytes agree and backwards down to `literal`.
    fn extend(&self, addr: usize, pos: usize, literal: usize) -> Option<Match> {
        let base_len = self.base.len();
        // The candidate's region: the base, or the target before `pos`. A
        // match does not cross from one into the other.
        let (region, offset) = if addr < base_len {
            (self.base, addr)
        } else {
            (self.target, addr - base_len)
        };
        let forward = common_prefix_len(&region[offset..], &self.target[pos..]);
        if forward == 0 {
            return None;
        }
        let backward = region[..offset]
            .iter()
            .rev()
            .zip(self.target[literal..pos].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        Some(Match {
            start: pos - backward,
            addr: addr - backward,
            len: backward + forward,
        })
    }

    /// A run of one byte through `pos`, extended back down to `literal`,
    /// as (start, length), if it is at least [`MIN_RUN`] long.
    fn run_at(&self, pos: usize, literal: usize) -> Option<(usize, usize)> {
        let target = self.target;
        let byte = target[pos];
        // Cheap rejection first: most positions do not start a run.
        if target.get(pos + 1) != Some(&byte) {
            return None;
        }
        let forward = target[pos..].iter().take_while(|&&b| b == byte).count();
        let backward = target[literal..pos]
            .iter()
            .rev()
            .take_while(|&&b| b == byte)
            .count();
        let len = forward + backward;
        (len >= MIN_RUN).then_some((pos - backward, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcdiff::decode;

    /// A limit above every target these tests build.
    const LIMIT: usize = 16 << 20;

    #[test]
    fn integers_round_trip_through_the_decoder() {
        for value in [0, 1, 127, 128, 16_383, 16_384, 123_456_789, usize::MAX] {
            let mut bytes = Vec::new();
            write_integer(&mut bytes, value);

            let mut reader = crate::vcdiff::decode::Reader::new(&bytes);

            assert_eq!(bytes.len(), integer_len(value), "{value}");
            assert_eq!(reader.integer("n").unwrap(), value);
            assert!(reader.is_empty());
        }
        let mut bytes = Vec::new();
        write_integer(&mut bytes, 123_456_789);
        assert_eq!(bytes, [0xba, 0xef, 0x9a, 0x15]);
    }

    #[test]
    fn common_prefix_len_finds_the_first_difference() {
        let a = b"0123456789abcdefghij";
        for i in 0..a.len() {
            let mut b = *a;
            b[i] = b'!';
            assert_eq!(common_prefix_len(a, &b), i);
        }
        assert_eq!(common_prefix_len(a, a), a.len());
        assert_eq!(common_prefix_len(a, &a[..5]), 5);
    }

    #[test]
    fn combined_opcodes_and_cached_addresses_decode_back() {
        // Short literals between 4-byte copies from the same few places
        // exercise ADD+COPY, COPY+ADD, and the near and same modes.
        let base: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let mut target = Vec::new();
        for i in 0..200usize {
            target.extend_from_slice(&base[(i * 37) % 2000..][..4 + i % 3]);
            target.extend_from_slice(&[b'x', b'y', b'z', b'w'][..1 + i % 4]);
        }

        let delta = encode(&base, &target);

        assert_eq!(decode(&base, &delta, LIMIT).unwrap(), target);
    }

    #[test]
    fn runs_become_run_instructions() {
        let target = [b"head".as_slice(), &[0u8; 5000], b"tail"].concat();

        let delta = encode(b"", &target);

        assert!(delta.len() < 30, "{} bytes", delta.len());
        assert_eq!(decode(b"", &delta, LIMIT).unwrap(), target);
    }
}
