//! The default instruction code table (RFC 3284 §5.6) and the address cache
//! (RFC 3284 §5.1–5.3), shared by the decoder and the encoder so the two cannot
//! disagree about an opcode or a cached address.

/// What one half of a code-table entry does (RFC 3284 §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Noop,
    Add,
    Run,
    Copy,
}

/// One half of a code-table entry: an instruction type, its size (0 means
/// "read the size from the instructions section") and, for COPY, its address
/// mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Instruction {
    pub(super) kind: Kind,
    pub(super) size: u8,
    pub(super) mode: u8,
}

const fn instruction(kind: Kind, size: u8, mode: u8) -> Instruction {
    Instruction { kind, size, mode }
}

const NOOP: Instruction = instruction(Kind::Noop, 0, 0);

/// Number of `near` slots in the default address cache (`s_near`,
/// RFC 3284 §5.1).
pub(super) const NEAR_SLOTS: usize = 4;
/// Number of 256-entry blocks in the `same` cache (`s_same`, RFC 3284 §5.1).
pub(super) const SAME_BLOCKS: usize = 3;
/// Total entries in the `same` cache.
const SAME_SLOTS: usize = SAME_BLOCKS * 256;

/// `VCD_SELF`: the address is encoded as is.
pub(super) const MODE_SELF: u8 = 0;
/// `VCD_HERE`: the address is encoded as a distance back from "here".
pub(super) const MODE_HERE: u8 = 1;
/// First of the `near` modes (2..=5): an offset from a recent address.
pub(super) const FIRST_NEAR_MODE: u8 = 2;
/// First of the `same` modes (6..=8): one byte indexing the `same` cache.
pub(super) const FIRST_SAME_MODE: u8 = FIRST_NEAR_MODE + NEAR_SLOTS as u8;
/// Number of address modes with the default cache sizes.
pub(super) const MODE_COUNT: u8 = FIRST_SAME_MODE + SAME_BLOCKS as u8;

/// The default code table of RFC 3284 §5.6, indexed by opcode.
///
/// A `static` rather than a `const` so the decoder's hot loop indexes one
/// table in memory instead of risking a copy at each use.
pub(super) static DEFAULT_CODE_TABLE: [[Instruction; 2]; 256] = build_default_code_table();

/// Builds the table in the order RFC 3284 §5.6 lists it. The order is the
/// format: every encoder that uses the default table relies on these exact
/// indices.
const fn build_default_code_table() -> [[Instruction; 2]; 256] {
    let mut table = [[NOOP; 2]; 256];
    // 0: RUN, size in the instructions section.
    table[0][0] = instruction(Kind::Run, 0, 0);
    let mut opcode = 1;
    // 1..=18: ADD with size 0 (explicit), then 1..=17.
    let mut size = 0;
    while size <= 17 {
        table[opcode][0] = instruction(Kind::Add, size, 0);
        opcode += 1;
        size += 1;
    }
    // 19..=162: for each mode, COPY with size 0 (explicit), then 4..=18.
    let mut mode = 0;
    while mode < MODE_COUNT {
        table[opcode][0] = instruction(Kind::Copy, 0, mode);
        opcode += 1;
        let mut size = 4;
        while size <= 18 {
            table[opcode][0] = instruction(Kind::Copy, size, mode);
            opcode += 1;
            size += 1;
        }
        mode += 1;
    }
    // 163..=234: ADD [1,4] + COPY [4,6] for modes 0..=5.
    // 235..=246: ADD [1,4] + COPY 4 for the `same` modes 6..=8.
    let mut mode = 0;
    while mode < MODE_COUNT {
        let max_copy = if mode < FIRST_SAME_MODE { 6 } else { 4 };
        let mut add = 1;
        while add <= 4 {
            let mut copy = 4;
            while copy <= max_copy {
                table[opcode] = [
                    instruction(Kind::Add, add, 0),
                    instruction(Kind::Copy, copy, mode),
                ];
                opcode += 1;
                copy += 1;
            }
            add += 1;
        }
        mode += 1;
    }
    // 247..=255: COPY 4 + ADD 1 for every mode.
    let mut mode = 0;
    while mode < MODE_COUNT {
        table[opcode] = [
            instruction(Kind::Copy, 4, mode),
            instruction(Kind::Add, 1, 0),
        ];
        opcode += 1;
        mode += 1;
    }
    // Evaluated at compile time: a miscount fails the build, not a decode.
    assert!(opcode == 256, "the default code table has 256 entries");
    table
}

/// Opcode of RUN with an explicit size.
pub(super) const RUN_OPCODE: u8 = 0;
/// Opcode of ADD with an explicit size.
pub(super) const ADD_EXPLICIT_OPCODE: u8 = 1;

/// Opcode of ADD whose size is implied by the opcode (1..=17).
pub(super) fn add_opcode(size: usize) -> Option<u8> {
    (1..=17).contains(&size).then(|| 1 + size as u8)
}

/// Opcode of a lone COPY, and whether its size must follow explicitly.
pub(super) fn copy_opcode(size: usize, mode: u8) -> (u8, bool) {
    let first = 19 + 16 * mode;
    if (4..=18).contains(&size) {
        (first + size as u8 - 3, false)
    } else {
        (first, true)
    }
}

/// Opcode of ADD `add` immediately followed by COPY `copy` in `mode`, if the
/// default table has one.
pub(super) fn add_copy_opcode(add: usize, copy: usize, mode: u8) -> Option<u8> {
    if !(1..=4).contains(&add) {
        return None;
    }
    let add = add as u8;
    if mode < FIRST_SAME_MODE && (4..=6).contains(&copy) {
        Some(163 + 12 * mode + 3 * (add - 1) + (copy as u8 - 4))
    } else if mode < MODE_COUNT && copy == 4 {
        Some(235 + 4 * (mode - FIRST_SAME_MODE) + (add - 1))
    } else {
        None
    }
}

/// Opcode of COPY 4 in `mode` immediately followed by ADD 1.
pub(super) fn copy4_add1_opcode(mode: u8) -> u8 {
    247 + mode
}

/// The address cache of RFC 3284 §5.1: the last [`NEAR_SLOTS`] addresses in
/// a ring, and a hash table of recent addresses keyed by `addr mod 768`.
///
/// Both sides start every window with a fresh cache and update it after
/// every COPY, so an encoder can name an address by a slot instead of by
/// value.
#[derive(Debug, Clone)]
pub(super) struct AddressCache {
    near: [usize; NEAR_SLOTS],
    next_slot: usize,
    same: [usize; SAME_SLOTS],
}

impl AddressCache {
    /// The cache at the start of a window: every slot holds address 0.
    pub(super) fn new() -> Self {
        Self {
            near: [0; NEAR_SLOTS],
            next_slot: 0,
            same: [0; SAME_SLOTS],
        }
    }

    /// The address in `near` slot `slot` (`slot < NEAR_SLOTS`).
    pub(super) fn near(&self, slot: usize) -> usize {
        self.near[slot]
    }

    /// The address in `same` block `block` (`< SAME_BLOCKS`) at `byte`.
    pub(super) fn same(&self, block: usize, byte: u8) -> usize {
        self.same[block * 256 + usize::from(byte)]
    }

    /// Where `addr` would sit in the `same` cache, as (block, byte).
    pub(super) fn same_slot(addr: usize) -> (usize, u8) {
        let slot = addr % SAME_SLOTS;
        // `slot % 256` always fits in a byte.
        (slot / 256, (slot % 256) as u8)
    }

    /// Records a decoded COPY address (RFC 3284 §5.1 `update`).
    pub(super) fn update(&mut self, addr: usize) {
        self.near[self.next_slot] = addr;
        self.next_slot = (self.next_slot + 1) % NEAR_SLOTS;
        self.same[addr % SAME_SLOTS] = addr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_code_table_matches_the_rfc_listing() {
        let t = &DEFAULT_CODE_TABLE;

        assert_eq!(t[0], [instruction(Kind::Run, 0, 0), NOOP]);
        assert_eq!(t[1], [instruction(Kind::Add, 0, 0), NOOP]);
        assert_eq!(t[18], [instruction(Kind::Add, 17, 0), NOOP]);
        assert_eq!(t[19], [instruction(Kind::Copy, 0, 0), NOOP]);
        assert_eq!(t[34], [instruction(Kind::Copy, 18, 0), NOOP]);
        assert_eq!(t[162], [instruction(Kind::Copy, 18, 8), NOOP]);
        // Rows 12–21 of the RFC 3284 §5.6 listing, first and last index of
        // each.
        let add_copy = |add, copy, mode| {
            [
                instruction(Kind::Add, add, 0),
                instruction(Kind::Copy, copy, mode),
            ]
        };
        assert_eq!(t[163], add_copy(1, 4, 0));
        assert_eq!(t[174], add_copy(4, 6, 0));
        assert_eq!(t[223], add_copy(1, 4, 5));
        assert_eq!(t[234], add_copy(4, 6, 5));
        assert_eq!(t[235], add_copy(1, 4, 6));
        assert_eq!(t[246], add_copy(4, 4, 8));
        assert_eq!(
            t[247],
            [instruction(Kind::Copy, 4, 0), instruction(Kind::Add, 1, 0)]
        );
        assert_eq!(
            t[255],
            [instruction(Kind::Copy, 4, 8), instruction(Kind::Add, 1, 0)]
        );
    }

    #[test]
    fn every_table_mode_is_a_valid_address_mode() {
        for entry in &DEFAULT_CODE_TABLE {
            for half in entry {
                assert!(half.mode < MODE_COUNT);
            }
        }
    }

    #[test]
    fn encoder_opcodes_point_at_the_matching_table_entries() {
        for size in 1..=17 {
            let op = add_opcode(size).unwrap();
            assert_eq!(
                DEFAULT_CODE_TABLE[op as usize],
                [instruction(Kind::Add, size as u8, 0), NOOP]
            );
        }
        assert_eq!(add_opcode(0), None);
        assert_eq!(add_opcode(18), None);
        for mode in 0..MODE_COUNT {
            for size in 0..=30 {
                let (op, explicit) = copy_opcode(size, mode);
                let expected = if explicit { 0 } else { size as u8 };
                assert_eq!(explicit, !(4..=18).contains(&size));
                assert_eq!(
                    DEFAULT_CODE_TABLE[op as usize],
                    [instruction(Kind::Copy, expected, mode), NOOP]
                );
            }
            for add in 0..=5 {
                for copy in 3..=7 {
                    match add_copy_opcode(add, copy, mode) {
                        Some(op) => assert_eq!(
                            DEFAULT_CODE_TABLE[op as usize],
                            [
                                instruction(Kind::Add, add as u8, 0),
                                instruction(Kind::Copy, copy as u8, mode)
                            ]
                        ),
                        None => assert!(
                            !(1..=4).contains(&add)
                                || !(4..=6).contains(&copy)
                                || (mode >= FIRST_SAME_MODE && copy != 4)
                        ),
                    }
                }
            }
            assert_eq!(
                DEFAULT_CODE_TABLE[copy4_add1_opcode(mode) as usize],
                [
                    instruction(Kind::Copy, 4, mode),
                    instruction(Kind::Add, 1, 0)
                ]
            );
        }
    }

    #[test]
    fn address_cache_remembers_recent_addresses() {
        let mut cache = AddressCache::new();

        for addr in [10, 20, 30, 40, 50, 1000] {
            cache.update(addr);
        }

        // The ring wrapped: 50 and 1000 overwrote 10 and 20.
        assert_eq!(
            (0..NEAR_SLOTS).map(|i| cache.near(i)).collect::<Vec<_>>(),
            [50, 1000, 30, 40]
        );
        let (block, byte) = AddressCache::same_slot(1000);
        assert_eq!((block, byte), (0, 232));
        assert_eq!(cache.same(block, byte), 1000);
    }
}
