//! The dirty-stripe record: the on-disk list of every stripe whose parity may disagree with its
//! data.
//!
//! The journal holds two record slots. Record generation `g` is always written to slot `g % 2`,
//! so writing generation `g + 1` never touches the slot holding generation `g`: if the new write
//! tears, the previous record is still intact in the other slot and [`newest`] falls back to it.
//!
//! # Layout
//!
//! All integers are little-endian. A record is a 64-byte header followed by `entry_count`
//! 12-byte entries, zero-padded up to a multiple of the block size ([`record_bytes`]).
//!
//! | offset | size | field                                             |
//! |-------:|-----:|---------------------------------------------------|
//! |      0 |    8 | magic `b"JRAIDREC"`                               |
//! |      8 |    4 | version ([`RECORD_VERSION`])                      |
//! |     12 |    4 | reserved, zero                                    |
//! |     16 |   16 | journal uuid                                      |
//! |     32 |    8 | generation                                        |
//! |     40 |    4 | entry count                                       |
//! |     44 |    4 | reserved, zero                                    |
//! |     48 |    4 | crc32c of header (this field zeroed) and entries  |
//! |     52 |   12 | reserved, zero                                    |
//! |     64 | 12·n | entries: volume `u32`, stripe `u64`               |
//!
//! The checksum covers the header and the entries, the record's *meaningful bytes*; the padding
//! after them is written as zeros but not checked, so a decoder can be handed a whole slot.

use std::fmt;

/// Magic at the start of every record.
pub const RECORD_MAGIC: [u8; 8] = *b"JRAIDREC";
/// The record format version this code writes and accepts.
pub const RECORD_VERSION: u32 = 1;
/// Size of the record header in bytes.
pub const HEADER_BYTES: usize = 64;
/// Size of one encoded [`Entry`] in bytes: volume `u32`, stripe `u64`.
pub const ENTRY_BYTES: usize = 12;

const MAGIC_OFF: usize = 0;
const VERSION_OFF: usize = 8;
const RESERVED0_OFF: usize = 12;
const UUID_OFF: usize = 16;
const GENERATION_OFF: usize = 32;
const COUNT_OFF: usize = 40;
const RESERVED1_OFF: usize = 44;
const CRC_OFF: usize = 48;
const RESERVED2_OFF: usize = 52;

const _: () = assert!(MAGIC_OFF + RECORD_MAGIC.len() == VERSION_OFF);
const _: () = assert!(VERSION_OFF + 4 == RESERVED0_OFF);
const _: () = assert!(RESERVED0_OFF + 4 == UUID_OFF);
const _: () = assert!(UUID_OFF + 16 == GENERATION_OFF);
const _: () = assert!(GENERATION_OFF + 8 == COUNT_OFF);
const _: () = assert!(COUNT_OFF + 4 == RESERVED1_OFF);
const _: () = assert!(RESERVED1_OFF + 4 == CRC_OFF);
const _: () = assert!(CRC_OFF + 4 == RESERVED2_OFF);
const _: () = assert!(RESERVED2_OFF <= HEADER_BYTES);
const _: () = assert!(ENTRY_BYTES == 4 + 8);

/// One dirty stripe: stripe `stripe` of volume `volume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// Volume number (as in the journal superblock's volume table).
    pub volume: u32,
    /// Stripe number within the volume.
    pub stripe: u64,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Generation number; the record lives in slot `generation % 2`.
    pub generation: u64,
    /// The dirty stripes, in the order they were encoded.
    pub entries: Vec<Entry>,
}

/// Why a slot does not hold a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The buffer is shorter than a record header.
    TooShort,
    /// The magic is not [`RECORD_MAGIC`] (e.g. a never-written slot).
    BadMagic,
    /// Unsupported format version.
    BadVersion(u32),
    /// The record belongs to another journal.
    ForeignJournal,
    /// The record's generation does not belong in the slot it was read from.
    WrongSlot {
        /// Generation found in the header.
        generation: u64,
        /// Slot the buffer was read from.
        slot: usize,
    },
    /// The header claims more entries than the buffer can hold.
    TooManyEntries {
        /// Entry count found in the header.
        count: u64,
        /// Entries that fit in the buffer.
        fits: usize,
    },
    /// The crc32c does not match the header and entries (torn or corrupted write).
    BadChecksum,
    /// A reserved header byte is not zero.
    NonZeroReserved,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooShort => write!(f, "buffer too short for a journal record header"),
            RecordError::BadMagic => write!(f, "no journal record magic"),
            RecordError::BadVersion(v) => write!(
                f,
                "unsupported journal record version {v} (expected {RECORD_VERSION})"
            ),
            RecordError::ForeignJournal => write!(f, "journal record belongs to another journal"),
            RecordError::WrongSlot { generation, slot } => write!(
                f,
                "journal record generation {generation} does not belong in slot {slot}"
            ),
            RecordError::TooManyEntries { count, fits } => write!(
                f,
                "journal record claims {count} entries but only {fits} fit"
            ),
            RecordError::BadChecksum => write!(f, "journal record checksum mismatch"),
            RecordError::NonZeroReserved => {
                write!(f, "journal record has non-zero reserved header bytes")
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// Bytes a record with `entries` entries occupies: header plus entries, rounded up to a multiple
/// of `block_size`.
///
/// # Panics
///
/// Panics if `block_size` is zero or the size overflows `usize`.
pub fn record_bytes(entries: usize, block_size: usize) -> usize {
    assert!(block_size > 0, "block size must be non-zero");
    let meaningful = entries
        .checked_mul(ENTRY_BYTES)
        .and_then(|b| b.checked_add(HEADER_BYTES))
        .expect("record size overflows usize");
    meaningful
        .div_ceil(block_size)
        .checked_mul(block_size)
        .expect("record size overflows usize")
}

/// Most entries that fit in a slot of `slot_bytes` bytes (zero if not even the header fits).
pub fn max_entries(slot_bytes: usize) -> usize {
    slot_bytes.saturating_sub(HEADER_BYTES) / ENTRY_BYTES
}

/// Encodes record `generation` of journal `uuid` into `out`.
///
/// `out` is cleared first and its capacity reused, so steady-state encoding into the same buffer
/// allocates nothing. The result is exactly [`record_bytes`]`(entries.len(), block_size)` bytes,
/// zero-padded after the entries.
///
/// # Panics
///
/// Panics if `block_size` is zero or there are more than `u32::MAX` entries.
pub fn encode(
    uuid: &[u8; 16],
    generation: u64,
    entries: &[Entry],
    block_size: usize,
    out: &mut Vec<u8>,
) {
    let count = u32::try_from(entries.len()).expect("more than u32::MAX journal entries");
    let total = record_bytes(entries.len(), block_size);
    out.clear();
    out.resize(total, 0);
    out[MAGIC_OFF..MAGIC_OFF + 8].copy_from_slice(&RECORD_MAGIC);
    out[VERSION_OFF..VERSION_OFF + 4].copy_from_slice(&RECORD_VERSION.to_le_bytes());
    out[UUID_OFF..UUID_OFF + 16].copy_from_slice(uuid);
    out[GENERATION_OFF..GENERATION_OFF + 8].copy_from_slice(&generation.to_le_bytes());
    out[COUNT_OFF..COUNT_OFF + 4].copy_from_slice(&count.to_le_bytes());
    let body = &mut out[HEADER_BYTES..HEADER_BYTES + entries.len() * ENTRY_BYTES];
    for (chunk, e) in body.chunks_exact_mut(ENTRY_BYTES).zip(entries) {
        chunk[..4].copy_from_slice(&e.volume.to_le_bytes());
        chunk[4..].copy_from_slice(&e.stripe.to_le_bytes());
    }
    // The crc field is still zero here, which is what the checksum is defined over.
    let crc = crc32c::crc32c(&out[..HEADER_BYTES + entries.len() * ENTRY_BYTES]);
    out[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Decodes the record found in slot `slot` (0 or 1) of journal `uuid`.
///
/// `buf` may be longer than the record (typically the whole slot); bytes after the entries are
/// ignored. Checks, in order: length, magic, version, journal uuid, that the generation belongs
/// in `slot`, that the entry count fits in `buf`, the crc32c, and that reserved header bytes are
/// zero. Never panics.
pub fn decode(buf: &[u8], slot: usize, uuid: &[u8; 16]) -> Result<Record, RecordError> {
    if buf.len() < HEADER_BYTES {
        return Err(RecordError::TooShort);
    }
    if buf[MAGIC_OFF..MAGIC_OFF + 8] != RECORD_MAGIC {
        return Err(RecordError::BadMagic);
    }
    let version = u32_at(buf, VERSION_OFF);
    if version != RECORD_VERSION {
        return Err(RecordError::BadVersion(version));
    }
    if buf[UUID_OFF..UUID_OFF + 16] != uuid[..] {
        return Err(RecordError::ForeignJournal);
    }
    let generation = u64_at(buf, GENERATION_OFF);
    if generation % 2 != slot as u64 {
        return Err(RecordError::WrongSlot { generation, slot });
    }
    let count = u32_at(buf, COUNT_OFF);
    let fits = max_entries(buf.len());
    // u32 -> usize is lossless on the 32- and 64-bit targets this crate supports; a count that
    // does not fit a usize cannot fit the buffer either.
    let n = match usize::try_from(count) {
        Ok(n) if n <= fits => n,
        _ => {
            return Err(RecordError::TooManyEntries {
                count: u64::from(count),
                fits,
            })
        }
    };
    let end = HEADER_BYTES + n * ENTRY_BYTES;
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&buf[..HEADER_BYTES]);
    header[CRC_OFF..CRC_OFF + 4].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header), &buf[HEADER_BYTES..end]);
    if crc != u32_at(buf, CRC_OFF) {
        return Err(RecordError::BadChecksum);
    }
    let reserved_zero = buf[RESERVED0_OFF..RESERVED0_OFF + 4]
        .iter()
        .all(|&b| b == 0)
        && buf[RESERVED1_OFF..RESERVED1_OFF + 4]
            .iter()
            .all(|&b| b == 0)
        && buf[RESERVED2_OFF..HEADER_BYTES].iter().all(|&b| b == 0);
    if !reserved_zero {
        return Err(RecordError::NonZeroReserved);
    }
    let entries = buf[HEADER_BYTES..end]
        .chunks_exact(ENTRY_BYTES)
        .map(|c| Entry {
            volume: u32_at(c, 0),
            stripe: u64_at(c, 4),
        })
        .collect();
    Ok(Record {
        generation,
        entries,
    })
}

/// Decodes both slots and returns the valid record with the highest generation, or `None` if
/// neither slot holds a valid record.
///
/// The returned record's generation is the highest generation of any valid record, so the next
/// record to write is `generation + 1` (or generation 0 when `None`). An invalid slot (never
/// written, torn, corrupted, foreign) is simply ignored.
pub fn newest(slot0: &[u8], slot1: &[u8], uuid: &[u8; 16]) -> Option<Record> {
    let a = decode(slot0, 0, uuid).ok();
    let b = decode(slot1, 1, uuid).ok();
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.generation > b.generation { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UUID: [u8; 16] = *b"0123456789abcdef";

    fn entries_strategy(max: usize) -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec(
            (any::<u32>(), any::<u64>()).prop_map(|(volume, stripe)| Entry { volume, stripe }),
            0..=max,
        )
    }

    fn block_size() -> impl Strategy<Value = usize> {
        prop_oneof![Just(512usize), Just(4096usize)]
    }

    fn enc(uuid: &[u8; 16], generation: u64, entries: &[Entry], bs: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(uuid, generation, entries, bs, &mut out);
        out
    }

    fn meaningful(n: usize) -> usize {
        HEADER_BYTES + n * ENTRY_BYTES
    }

    #[test]
    fn sizes() {
        assert_eq!(record_bytes(0, 512), 512);
        assert_eq!(record_bytes(37, 512), 512);
        assert_eq!(record_bytes(38, 512), 1024);
        assert_eq!(record_bytes(0, 4096), 4096);
        assert_eq!(record_bytes(336, 4096), 4096);
        assert_eq!(record_bytes(337, 4096), 8192);
        assert_eq!(max_entries(0), 0);
        assert_eq!(max_entries(63), 0);
        assert_eq!(max_entries(64), 0);
        assert_eq!(max_entries(76), 1);
        assert_eq!(max_entries(4096), 336);
        for n in 0..1000 {
            for bs in [512, 4096] {
                let b = record_bytes(n, bs);
                assert!(max_entries(b) >= n);
                assert_eq!(b % bs, 0);
                assert!(b - meaningful(n) < bs);
            }
        }
    }

    #[test]
    fn encoding_layout() {
        let e = [Entry {
            volume: 0x0403_0201,
            stripe: 0x0c0b_0a09_0807_0605,
        }];
        let buf = enc(&UUID, 0x1122_3344_5566_7788, &e, 512);
        assert_eq!(buf.len(), 512);
        assert_eq!(&buf[0..8], b"JRAIDREC");
        assert_eq!(&buf[8..12], &[1, 0, 0, 0]);
        assert_eq!(&buf[12..16], &[0; 4]);
        assert_eq!(&buf[16..32], &UUID);
        assert_eq!(
            &buf[32..40],
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(&buf[40..44], &[1, 0, 0, 0]);
        assert_eq!(&buf[44..48], &[0; 4]);
        assert_eq!(&buf[52..64], &[0; 12]);
        assert_eq!(&buf[64..76], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(buf[76..].iter().all(|&b| b == 0));
        let mut zeroed = buf[..76].to_vec();
        zeroed[48..52].fill(0);
        assert_eq!(&buf[48..52], &crc32c::crc32c(&zeroed).to_le_bytes());
    }

    #[test]
    fn encode_reuses_capacity() {
        let entries: Vec<Entry> = (0..500)
            .map(|i| Entry {
                volume: i,
                stripe: u64::from(i) * 7,
            })
            .collect();
        let mut out = Vec::new();
        encode(&UUID, 0, &entries, 4096, &mut out);
        let cap = out.capacity();
        let ptr = out.as_ptr();
        for g in 1..20u64 {
            let n = (g as usize * 37) % 500;
            encode(&UUID, g, &entries[..n], 4096, &mut out);
            assert_eq!(out.capacity(), cap);
            assert_eq!(out.as_ptr(), ptr);
            assert_eq!(
                decode(&out, (g % 2) as usize, &UUID).unwrap().entries,
                &entries[..n]
            );
        }
    }

    #[test]
    fn rejects_blank_and_short() {
        assert_eq!(decode(&[], 0, &UUID), Err(RecordError::TooShort));
        assert_eq!(decode(&[0; 63], 0, &UUID), Err(RecordError::TooShort));
        assert_eq!(decode(&[0; 4096], 0, &UUID), Err(RecordError::BadMagic));
        assert_eq!(newest(&[0; 4096], &[0; 4096], &UUID), None);
        assert_eq!(newest(&[], &[], &UUID), None);
    }

    #[test]
    fn specific_errors() {
        let e = [Entry {
            volume: 1,
            stripe: 2,
        }];
        let good = enc(&UUID, 4, &e, 512);
        let mut b = good.clone();
        b[8] = 2;
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::BadVersion(2)));
        assert_eq!(
            decode(&good, 1, &UUID),
            Err(RecordError::WrongSlot {
                generation: 4,
                slot: 1
            })
        );
        assert_eq!(
            decode(&good, 2, &UUID),
            Err(RecordError::WrongSlot {
                generation: 4,
                slot: 2
            })
        );
        assert_eq!(
            decode(&good, 0, b"fedcba9876543210"),
            Err(RecordError::ForeignJournal)
        );
        assert_eq!(
            decode(&good[..75], 0, &UUID),
            Err(RecordError::TooManyEntries { count: 1, fits: 0 })
        );
        let mut b = good.clone();
        b[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&b, 0, &UUID),
            Err(RecordError::TooManyEntries {
                count: u64::from(u32::MAX),
                fits: 37
            })
        );
        let mut b = good.clone();
        b[70] ^= 1;
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::BadChecksum));
        // A reserved byte set with a checksum recomputed to match.
        let mut b = good.clone();
        b[60] = 7;
        b[48..52].fill(0);
        let crc = crc32c::crc32c(&b[..76]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::NonZeroReserved));
        // Padding after the entries is not checked.
        let mut b = good.clone();
        b[100] = 0xff;
        assert!(decode(&b, 0, &UUID).is_ok());
        // Errors display.
        assert!(RecordError::BadChecksum.to_string().contains("checksum"));
    }

    /// Every single-bit flip within a small record's meaningful bytes is rejected (exhaustive).
    #[test]
    fn every_bit_flip_rejected_small() {
        for n in [0usize, 1, 3, 37, 38] {
            let entries: Vec<Entry> = (0..n as u32)
                .map(|i| Entry {
                    volume: i * 3 + 1,
                    stripe: u64::from(i) << 33 | 5,
                })
                .collect();
            for bs in [512, 4096] {
                for generation in [6u64, 7] {
                    let slot = (generation % 2) as usize;
                    let good = enc(&UUID, generation, &entries, bs);
                    assert!(decode(&good, slot, &UUID).is_ok());
                    for bit in 0..meaningful(n) * 8 {
                        let mut b = good.clone();
                        b[bit / 8] ^= 1 << (bit % 8);
                        assert!(
                            decode(&b, slot, &UUID).is_err(),
                            "flip of bit {bit} accepted (n={n} bs={bs})"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(
            uuid in any::<[u8; 16]>(),
            generation in any::<u64>(),
            entries in entries_strategy(2000),
            bs in block_size(),
        ) {
            let buf = enc(&uuid, generation, &entries, bs);
            prop_assert_eq!(buf.len(), record_bytes(entries.len(), bs));
            prop_assert!(buf[meaningful(entries.len())..].iter().all(|&b| b == 0));
            let slot = (generation % 2) as usize;
            let want = Record { generation, entries: entries.clone() };
            prop_assert_eq!(decode(&buf, slot, &uuid), Ok(want.clone()));
            // Exactly the meaningful bytes suffice; a longer buffer (the whole slot) works too.
            prop_assert_eq!(decode(&buf[..meaningful(entries.len())], slot, &uuid), Ok(want.clone()));
            let mut slot_buf = buf.clone();
            slot_buf.resize(buf.len() + 3 * bs, 0xa5);
            prop_assert_eq!(decode(&slot_buf, slot, &uuid), Ok(want.clone()));
            // newest finds it in its slot whatever the other slot holds.
            let (s0, s1) = if slot == 0 { (&buf[..], &[][..]) } else { (&[][..], &buf[..]) };
            prop_assert_eq!(newest(s0, s1, &uuid), Some(want));
        }

        /// Sampled single-bit flips within large records' meaningful bytes are rejected.
        #[test]
        fn bit_flips_rejected_sampled(
            uuid in any::<[u8; 16]>(),
            generation in any::<u64>(),
            entries in entries_strategy(2000),
            bs in block_size(),
            bits in prop::collection::vec(any::<prop::sample::Index>(), 64),
        ) {
            let good = enc(&uuid, generation, &entries, bs);
            let slot = (generation % 2) as usize;
            let m = meaningful(entries.len());
            for ix in bits {
                let bit = ix.index(m * 8);
                let mut b = good.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(decode(&b, slot, &uuid).is_err(), "bit {} accepted", bit);
            }
        }

        #[test]
        fn truncation_rejected(
            generation in any::<u64>(),
            entries in entries_strategy(300),
            bs in block_size(),
            cut in any::<prop::sample::Index>(),
        ) {
            let good = enc(&UUID, generation, &entries, bs);
            let len = cut.index(meaningful(entries.len()));
            prop_assert!(decode(&good[..len], (generation % 2) as usize, &UUID).is_err());
        }

        #[test]
        fn foreign_uuid_and_wrong_slot_rejected(
            uuid in any::<[u8; 16]>(),
            other in any::<[u8; 16]>(),
            generation in any::<u64>(),
            entries in entries_strategy(100),
            bs in block_size(),
        ) {
            prop_assume!(uuid != other);
            let good = enc(&uuid, generation, &entries, bs);
            let slot = (generation % 2) as usize;
            prop_assert_eq!(decode(&good, slot, &other), Err(RecordError::ForeignJournal));
            prop_assert_eq!(
                decode(&good, 1 - slot, &uuid),
                Err(RecordError::WrongSlot { generation, slot: 1 - slot })
            );
        }

        #[test]
        fn newest_picks_highest_valid(
            ga in 0u64..u64::MAX / 2,
            gb in 0u64..u64::MAX / 2,
            ea in entries_strategy(50),
            eb in entries_strategy(50),
            bs in block_size(),
        ) {
            // One generation of each parity.
            let g0 = ga * 2;
            let g1 = gb * 2 + 1;
            let s0 = enc(&UUID, g0, &ea, bs);
            let s1 = enc(&UUID, g1, &eb, bs);
            let r0 = Record { generation: g0, entries: ea };
            let r1 = Record { generation: g1, entries: eb };
            let want = if g0 > g1 { r0.clone() } else { r1.clone() };
            prop_assert_eq!(newest(&s0, &s1, &UUID), Some(want));
            // Swapped slots: each record is in the wrong slot, so neither is valid.
            prop_assert_eq!(newest(&s1, &s0, &UUID), None);
            // Only one valid.
            prop_assert_eq!(newest(&s0, &[0; 512], &UUID), Some(r0));
            prop_assert_eq!(newest(&[0xff; 64], &s1, &UUID), Some(r1));
            // A foreign journal's records are ignored.
            prop_assert_eq!(newest(&s0, &s1, b"fedcba9876543210"), None);
        }

        /// A torn write of generation g+2 over the slot holding g never decodes to anything but
        /// g, and `newest` then returns g+1 from the other slot.
        #[test]
        fn torn_write_never_yields_new_record(
            g in 0u64..u64::MAX - 2,
            old_entries in entries_strategy(600),
            mid_entries in entries_strategy(600),
            new_entries in entries_strategy(600),
            bs in block_size(),
            // At most 15 blocks: (64 + 600 * 12) / 512 rounded up.
            landed_seed in prop::collection::vec(any::<bool>(), 16),
            prefix in any::<bool>(),
            prefix_len in any::<prop::sample::Index>(),
        ) {
            let slot = (g % 2) as usize;
            let old = enc(&UUID, g, &old_entries, bs);
            let mid = enc(&UUID, g + 1, &mid_entries, bs);
            let new = enc(&UUID, g + 2, &new_entries, bs);
            // The slot as it was (old record), big enough for either record.
            let slot_len = old.len().max(new.len());
            let mut torn = old.clone();
            torn.resize(slot_len, 0);
            let before = torn.clone();
            let new_blocks = new.len() / bs;
            let landed: Vec<bool> = if prefix {
                // Blocks land in order, but the write stopped short.
                let k = prefix_len.index(new_blocks);
                (0..new_blocks).map(|i| i < k).collect()
            } else {
                // Blocks land in any order; a random subset made it.
                landed_seed[..new_blocks].to_vec()
            };
            prop_assume!(landed.iter().any(|&l| !l));
            for (i, &l) in landed.iter().enumerate() {
                if l {
                    torn[i * bs..(i + 1) * bs].copy_from_slice(&new[i * bs..(i + 1) * bs]);
                }
            }
            let m = meaningful(new_entries.len());
            let fully_landed = torn[..m] == new[..m];
            let old_rec = Record { generation: g, entries: old_entries };
            let mid_rec = Record { generation: g + 1, entries: mid_entries };
            match decode(&torn, slot, &UUID) {
                Err(_) => {}
                Ok(r) if r == old_rec => {}
                Ok(r) => {
                    // Only possible if the missing blocks happened to hold the same bytes.
                    prop_assert!(fully_landed, "torn write decoded to {:?}", r.generation);
                    prop_assert_eq!(r.generation, g + 2);
                }
            }
            if !fully_landed {
                let (s0, s1) = if slot == 0 { (&torn, &mid) } else { (&mid, &torn) };
                prop_assert_eq!(newest(s0, s1, &UUID), Some(mid_rec));
            }
            // The untouched state still decodes to g.
            prop_assert_eq!(decode(&before, slot, &UUID), Ok(old_rec));
        }

        #[test]
        fn garbage_never_panics(
            buf in prop::collection::vec(any::<u8>(), 0..1024),
            slot in 0usize..3,
        ) {
            let _ = decode(&buf, slot, &UUID);
            let (a, b) = buf.split_at(buf.len() / 2);
            let _ = newest(a, b, &UUID);
        }

        /// Headers that pass magic, version and uuid checks but carry garbage elsewhere never
        /// panic and never decode unless the checksum matches.
        #[test]
        fn garbage_with_valid_prefix_never_panics(
            mut buf in prop::collection::vec(any::<u8>(), 64..2048),
            slot in 0usize..2,
        ) {
            buf[..8].copy_from_slice(&RECORD_MAGIC);
            buf[8..12].copy_from_slice(&RECORD_VERSION.to_le_bytes());
            buf[16..32].copy_from_slice(&UUID);
            if let Ok(r) = decode(&buf, slot, &UUID) {
                let re = enc(&UUID, r.generation, &r.entries, 512);
                let m = meaningful(r.entries.len());
                prop_assert_eq!(&re[..m], &buf[..m]);
            }
        }
    }
}
