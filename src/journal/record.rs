//! The dirty-stripe journal on disk: checkpoints and deltas, chained in two alternating areas.
//!
//! The journal holds two record areas (the superblock's two slots, `slot_bytes` each). An area
//! holds one *chain*: a **checkpoint** at its start, listing every dirty stripe as of its
//! generation, followed by **deltas**, one per later generation, each listing only what changed
//! since the record before it (stripes added, stripes removed). A generation therefore writes
//! bytes in proportion to its changes, not to the listed set.
//!
//! When the next delta no longer fits behind the chain, that generation is written as a
//! checkpoint at the start of the *other* area, and the chain continues there. The old area is
//! not written again until the new checkpoint is durable (one record write is in flight at a
//! time), so a torn checkpoint leaves the previous chain whole; a torn delta ends its chain at the
//! generation before it, which is a state that was durable. After a restart the first record is
//! always a checkpoint in the area that does not hold the chain recovery read.
//!
//! Each area can hold a chain of at most `slot_bytes`; the listed set is bounded so that a
//! checkpoint takes at most half an area ([`max_entries`] of `slot_bytes / 2`). Over time a
//! checkpoint costs at most as many bytes as the deltas written behind the one before it, so the
//! bytes per generation stay proportional to its changes.
//!
//! # Layout of a record (checkpoint or delta)
//!
//! All integers are little-endian. A record is a 64-byte header followed by `adds + removes`
//! 12-byte entries, zero-padded up to a multiple of the block size ([`record_bytes`]). A record
//! starts on a block boundary; the next one starts where its padding ends.
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! |      0 |    8 | magic `b"JRAIDREC"`                                            |
//! |      8 |    4 | version ([`RECORD_VERSION`])                                   |
//! |     12 |    4 | kind: 1 checkpoint, 2 delta                                    |
//! |     16 |   16 | journal uuid                                                   |
//! |     32 |    8 | generation                                                     |
//! |     40 |    4 | adds: entries listed (checkpoint) or added (delta)             |
//! |     44 |    4 | removes: entries removed (delta; zero in a checkpoint)         |
//! |     48 |    4 | crc32c of header (this field zeroed) and entries               |
//! |     52 |    4 | area the record was written to (0 or 1)                        |
//! |     56 |    8 | base: generation of the chain's checkpoint (own, in one)       |
//! |     64 | 12·n | entries: volume `u32`, stripe `u64`; the adds, then the removes |
//!
//! The checksum covers the header and the entries, the record's *meaningful bytes*; the padding
//! after them is written as zeros but not checked, so a decoder can be handed a whole area.
//!
//! # Reading an area
//!
//! [`read_area`]: the record at the area's start must be a valid checkpoint for this area; then
//! each following record is applied while it is a valid delta of the same area and base whose
//! generation is one above the last one applied. The first record that is not ends the chain
//! (never written, torn, or left over from an older chain: its generation or base differ). The
//! state of an area is the checkpoint's set with the deltas applied in order, each one's removes
//! first, then its adds (so a stripe that left and was listed again within one generation stays).
//! [`newest`] takes the area whose chain reaches the highest generation.

use std::collections::HashSet;
use std::fmt;

/// Magic at the start of every record.
pub const RECORD_MAGIC: [u8; 8] = *b"JRAIDREC";
/// The record format version this code writes and accepts. Version 1 (a full snapshot per
/// record, one per slot) is refused: [`newest`] returns [`RecordError::BadVersion`].
pub const RECORD_VERSION: u32 = 2;
/// Size of the record header in bytes.
pub const HEADER_BYTES: usize = 64;
/// Size of one encoded [`Entry`] in bytes: volume `u32`, stripe `u64`.
pub const ENTRY_BYTES: usize = 12;

const MAGIC_OFF: usize = 0;
const VERSION_OFF: usize = 8;
const KIND_OFF: usize = 12;
const UUID_OFF: usize = 16;
const GENERATION_OFF: usize = 32;
const ADDS_OFF: usize = 40;
const REMOVES_OFF: usize = 44;
const CRC_OFF: usize = 48;
const AREA_OFF: usize = 52;
const BASE_OFF: usize = 56;

const _: () = assert!(MAGIC_OFF + RECORD_MAGIC.len() == VERSION_OFF);
const _: () = assert!(VERSION_OFF + 4 == KIND_OFF);
const _: () = assert!(KIND_OFF + 4 == UUID_OFF);
const _: () = assert!(UUID_OFF + 16 == GENERATION_OFF);
const _: () = assert!(GENERATION_OFF + 8 == ADDS_OFF);
const _: () = assert!(ADDS_OFF + 4 == REMOVES_OFF);
const _: () = assert!(REMOVES_OFF + 4 == CRC_OFF);
const _: () = assert!(CRC_OFF + 4 == AREA_OFF);
const _: () = assert!(AREA_OFF + 4 == BASE_OFF);
const _: () = assert!(BASE_OFF + 8 == HEADER_BYTES);
const _: () = assert!(ENTRY_BYTES == 4 + 8);

/// One dirty stripe: stripe `stripe` of volume `volume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// Volume number (as in the journal superblock's volume table).
    pub volume: u32,
    /// Stripe number within the volume.
    pub stripe: u64,
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every listed stripe, at the start of an area.
    Checkpoint,
    /// The changes since the record before it in the chain.
    Delta,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Checkpoint => 1,
            Kind::Delta => 2,
        }
    }

    fn of(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Checkpoint),
            2 => Some(Kind::Delta),
            _ => None,
        }
    }
}

/// Identity of a record: what it is, and where in which chain it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Checkpoint or delta.
    pub kind: Kind,
    /// Generation of the record.
    pub generation: u64,
    /// Generation of the chain's checkpoint (a checkpoint's own).
    pub base: u64,
    /// Area the record is written to (0 or 1).
    pub area: usize,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Its identity.
    pub header: Header,
    /// Entries listed (checkpoint) or added (delta), in encoded order.
    pub adds: Vec<Entry>,
    /// Entries removed (delta only), in encoded order.
    pub removes: Vec<Entry>,
}

impl Decoded {
    /// Meaningful bytes: header and entries.
    pub fn meaningful_bytes(&self) -> usize {
        HEADER_BYTES + (self.adds.len() + self.removes.len()) * ENTRY_BYTES
    }
}

/// The journal's state as recovered from an area: the newest durable dirty set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Generation of the last record of the chain; the next record is above it.
    pub generation: u64,
    /// The dirty stripes, sorted.
    pub entries: Vec<Entry>,
    /// Area holding the chain; the next checkpoint goes to the other one.
    pub area: usize,
    /// Generation of the chain's checkpoint.
    pub base: u64,
    /// Records in the chain (checkpoint included).
    pub records: u64,
    /// Bytes of the area the chain occupies.
    pub bytes: u64,
}

/// Why a buffer does not hold a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The buffer is shorter than a record header.
    TooShort,
    /// The magic is not [`RECORD_MAGIC`] (e.g. a never-written area).
    BadMagic,
    /// Unsupported format version.
    BadVersion(u32),
    /// The record belongs to another journal.
    ForeignJournal,
    /// Unknown record kind, or a checkpoint with removals or a base of its own.
    BadKind(u32),
    /// The record names another area than the one it was read from.
    WrongArea {
        /// Area found in the header.
        found: u32,
        /// Area the buffer was read from.
        area: usize,
    },
    /// The header claims more entries than the buffer can hold.
    TooManyEntries {
        /// Entries counted in the header (adds + removes).
        count: u64,
        /// Entries that fit in the buffer.
        fits: usize,
    },
    /// The crc32c does not match the header and entries (torn or corrupted write).
    BadChecksum,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooShort => write!(f, "buffer too short for a journal record header"),
            RecordError::BadMagic => write!(f, "no journal record magic"),
            RecordError::BadVersion(v) => write!(
                f,
                "journal records of format version {v}; this jraid reads version \
                 {RECORD_VERSION} only (checkpoints and deltas): give the volume a new journal \
                 (bdev_jraid_set_journal / jraid set-journal) or re-create it"
            ),
            RecordError::ForeignJournal => write!(f, "journal record belongs to another journal"),
            RecordError::BadKind(k) => write!(f, "journal record of unknown or malformed kind {k}"),
            RecordError::WrongArea { found, area } => write!(
                f,
                "journal record names area {found} but was read from area {area}"
            ),
            RecordError::TooManyEntries { count, fits } => write!(
                f,
                "journal record claims {count} entries but only {fits} fit"
            ),
            RecordError::BadChecksum => write!(f, "journal record checksum mismatch"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Bytes a record with `entries` entries (adds + removes) occupies: header plus entries, rounded
/// up to a multiple of `block_size`.
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

/// Most entries one record of at most `bytes` bytes can hold (zero if not even the header fits).
pub fn max_entries(bytes: usize) -> usize {
    bytes.saturating_sub(HEADER_BYTES) / ENTRY_BYTES
}

/// Most stripes a journal with areas of `slot_bytes` lists at once: a checkpoint of them takes
/// at most half an area, so at least half an area of deltas follows every checkpoint.
pub fn max_listed(slot_bytes: usize) -> usize {
    max_entries(slot_bytes / 2)
}

/// Encodes record `header` of journal `uuid` into `out`: `adds` then `removes` (at most
/// `u32::MAX` each; a checkpoint has no removes).
///
/// `out` is cleared first and its capacity reused, so steady-state encoding into the same buffer
/// allocates nothing. The result is exactly [`record_bytes`]`(adds + removes, block_size)`
/// bytes, zero-padded after the entries.
///
/// # Panics
///
/// Panics if `block_size` is zero, a count exceeds `u32::MAX`, the area is not 0 or 1, or a
/// checkpoint is given removes or a base other than its generation.
pub fn encode<A, R>(
    uuid: &[u8; 16],
    header: &Header,
    adds: A,
    removes: R,
    block_size: usize,
    out: &mut Vec<u8>,
) where
    A: IntoIterator<Item = Entry>,
    A::IntoIter: ExactSizeIterator,
    R: IntoIterator<Item = Entry>,
    R::IntoIter: ExactSizeIterator,
{
    let (adds, removes) = (adds.into_iter(), removes.into_iter());
    let (na, nr) = (adds.len(), removes.len());
    assert!(header.area < 2, "a journal has two areas");
    if header.kind == Kind::Checkpoint {
        assert!(
            nr == 0 && header.base == header.generation,
            "malformed checkpoint"
        );
    }
    let count_a = u32::try_from(na).expect("more than u32::MAX journal entries");
    let count_r = u32::try_from(nr).expect("more than u32::MAX journal entries");
    let total = record_bytes(na + nr, block_size);
    // Written in order, not zeroed first and then overwritten: a checkpoint is megabytes.
    out.clear();
    out.reserve(total);
    out.resize(HEADER_BYTES, 0);
    out[MAGIC_OFF..MAGIC_OFF + 8].copy_from_slice(&RECORD_MAGIC);
    out[VERSION_OFF..VERSION_OFF + 4].copy_from_slice(&RECORD_VERSION.to_le_bytes());
    out[KIND_OFF..KIND_OFF + 4].copy_from_slice(&header.kind.code().to_le_bytes());
    out[UUID_OFF..UUID_OFF + 16].copy_from_slice(uuid);
    out[GENERATION_OFF..GENERATION_OFF + 8].copy_from_slice(&header.generation.to_le_bytes());
    out[ADDS_OFF..ADDS_OFF + 4].copy_from_slice(&count_a.to_le_bytes());
    out[REMOVES_OFF..REMOVES_OFF + 4].copy_from_slice(&count_r.to_le_bytes());
    out[AREA_OFF..AREA_OFF + 4].copy_from_slice(&(header.area as u32).to_le_bytes());
    out[BASE_OFF..BASE_OFF + 8].copy_from_slice(&header.base.to_le_bytes());
    let end = HEADER_BYTES + (na + nr) * ENTRY_BYTES;
    for e in adds.chain(removes).take(na + nr) {
        let mut entry = [0u8; ENTRY_BYTES];
        entry[..4].copy_from_slice(&e.volume.to_le_bytes());
        entry[4..].copy_from_slice(&e.stripe.to_le_bytes());
        out.extend_from_slice(&entry);
    }
    assert_eq!(out.len(), end, "entry iterators shorter than their length");
    // The crc field is still zero here, which is what the checksum is defined over.
    let crc = crc32c::crc32c(&out[..end]);
    out[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(total, 0);
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

/// The format version of a record of journal `uuid` at the start of `buf`, if one seems to be
/// there (magic and uuid match; nothing else is checked).
pub fn version_at(buf: &[u8], uuid: &[u8; 16]) -> Option<u32> {
    (buf.len() >= HEADER_BYTES
        && buf[MAGIC_OFF..MAGIC_OFF + 8] == RECORD_MAGIC
        && buf[UUID_OFF..UUID_OFF + 16] == uuid[..])
        .then(|| u32_at(buf, VERSION_OFF))
}

/// Decodes the record at the start of `buf`, read from area `area` (0 or 1) of journal `uuid`.
///
/// `buf` may be longer than the record (typically the rest of the area); bytes after the
/// entries are ignored. Checks, in order: length, magic, version, journal uuid, kind, area, that
/// the entry counts fit in `buf`, and the crc32c. Never panics.
pub fn decode(buf: &[u8], area: usize, uuid: &[u8; 16]) -> Result<Decoded, RecordError> {
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
    let code = u32_at(buf, KIND_OFF);
    let Some(kind) = Kind::of(code) else {
        return Err(RecordError::BadKind(code));
    };
    let found = u32_at(buf, AREA_OFF);
    if u64::from(found) != area as u64 {
        return Err(RecordError::WrongArea { found, area });
    }
    let generation = u64_at(buf, GENERATION_OFF);
    let base = u64_at(buf, BASE_OFF);
    let (na, nr) = (u32_at(buf, ADDS_OFF), u32_at(buf, REMOVES_OFF));
    if kind == Kind::Checkpoint && (nr != 0 || base != generation) {
        return Err(RecordError::BadKind(code));
    }
    let count = u64::from(na) + u64::from(nr);
    let fits = max_entries(buf.len());
    // u64 -> usize is lossless on 64-bit targets; a count that does not fit a usize cannot fit
    // the buffer either.
    let n = match usize::try_from(count) {
        Ok(n) if n <= fits => n,
        _ => return Err(RecordError::TooManyEntries { count, fits }),
    };
    let end = HEADER_BYTES + n * ENTRY_BYTES;
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&buf[..HEADER_BYTES]);
    header[CRC_OFF..CRC_OFF + 4].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header), &buf[HEADER_BYTES..end]);
    if crc != u32_at(buf, CRC_OFF) {
        return Err(RecordError::BadChecksum);
    }
    let mut entries = buf[HEADER_BYTES..end]
        .chunks_exact(ENTRY_BYTES)
        .map(|c| Entry {
            volume: u32_at(c, 0),
            stripe: u64_at(c, 4),
        });
    let adds = entries.by_ref().take(na as usize).collect();
    let removes = entries.collect();
    Ok(Decoded {
        header: Header {
            kind,
            generation,
            base,
            area,
        },
        adds,
        removes,
    })
}

/// Reads the chain in area `area` of journal `uuid` (`buf`: the whole area, or a prefix of it;
/// records are padded to `block_size`). `None` when the area does not start with a valid
/// checkpoint. Never panics; work is bounded by `buf`'s length.
pub fn read_area(buf: &[u8], area: usize, uuid: &[u8; 16], block_size: usize) -> Option<Record> {
    if block_size == 0 {
        return None;
    }
    let cp = decode(buf, area, uuid).ok()?;
    if cp.header.kind != Kind::Checkpoint {
        return None;
    }
    let base = cp.header.generation;
    let mut set: HashSet<Entry> = cp.adds.iter().copied().collect();
    let mut off = record_bytes(cp.adds.len(), block_size);
    let mut generation = base;
    let mut records = 1;
    while off < buf.len() {
        let Ok(d) = decode(&buf[off..], area, uuid) else {
            break;
        };
        let h = d.header;
        if h.kind != Kind::Delta
            || h.base != base
            || Some(h.generation) != generation.checked_add(1)
        {
            break;
        }
        for e in &d.removes {
            set.remove(e);
        }
        for e in &d.adds {
            set.insert(*e);
        }
        generation = h.generation;
        records += 1;
        off += record_bytes(d.adds.len() + d.removes.len(), block_size);
    }
    let mut entries: Vec<Entry> = set.into_iter().collect();
    entries.sort_unstable();
    Some(Record {
        generation,
        entries,
        area,
        base,
        records,
        bytes: off.min(buf.len()) as u64,
    })
}

/// Reads both areas and returns the newest durable state: the chain reaching the highest
/// generation (`Ok(None)`: no record written yet). An area holding an older record format of
/// this journal is refused ([`RecordError::BadVersion`]): its dirty stripes cannot be read, and
/// treating it as empty would skip their resync.
pub fn newest(
    area0: &[u8],
    area1: &[u8],
    uuid: &[u8; 16],
    block_size: usize,
) -> Result<Option<Record>, RecordError> {
    for a in [area0, area1] {
        match version_at(a, uuid) {
            Some(v) if v != RECORD_VERSION => return Err(RecordError::BadVersion(v)),
            _ => {}
        }
    }
    let a = read_area(area0, 0, uuid, block_size);
    let b = read_area(area1, 1, uuid, block_size);
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(if a.generation > b.generation { a } else { b }),
        (a, b) => a.or(b),
    })
}

/// What recovery reads from the devices of a journal ([`newest_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// The chain reaching the highest generation over every device read.
    pub record: Option<Record>,
    /// Every journal device was there to read. With two devices each holds a prefix of the
    /// same chain, and in [`crate::journal::JournalMode::Alternate`] the newest generation
    /// lives on one of them only; when one is missing the newest state may be lost with it,
    /// and the caller resyncs every stripe. In mirror mode the device read may itself have
    /// been dropped while running, and then be behind: whether a volume may trust it is
    /// [`crate::control::recovery::journal_complete`]'s to say.
    pub complete: bool,
    /// The devices missing (bit k: device k).
    pub missing: u8,
}

/// [`newest`] over the devices of a journal: per device its two areas, `None` for a device
/// that is missing. The newest chain over all of them is the newest durable state: every
/// record goes to at least one live device, and a device dropped while running only ever
/// holds an older prefix of the chain.
pub fn newest_of(
    devices: &[Option<(&[u8], &[u8])>],
    uuid: &[u8; 16],
    block_size: usize,
) -> Result<Newest, RecordError> {
    let mut best: Option<Record> = None;
    let mut missing = 0u8;
    for (k, d) in devices.iter().enumerate() {
        let Some((a, b)) = d else {
            missing |= 1 << k;
            continue;
        };
        if let Some(r) = newest(a, b, uuid, block_size)? {
            if best.as_ref().is_none_or(|b| r.generation > b.generation) {
                best = Some(r);
            }
        }
    }
    Ok(Newest {
        record: best,
        complete: missing == 0,
        missing,
    })
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

    fn cp(generation: u64, area: usize) -> Header {
        Header {
            kind: Kind::Checkpoint,
            generation,
            base: generation,
            area,
        }
    }

    fn delta(generation: u64, base: u64, area: usize) -> Header {
        Header {
            kind: Kind::Delta,
            generation,
            base,
            area,
        }
    }

    fn enc(h: &Header, adds: &[Entry], removes: &[Entry], bs: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &UUID,
            h,
            adds.iter().copied(),
            removes.iter().copied(),
            bs,
            &mut out,
        );
        out
    }

    fn meaningful(n: usize) -> usize {
        HEADER_BYTES + n * ENTRY_BYTES
    }

    fn e(volume: u32, stripe: u64) -> Entry {
        Entry { volume, stripe }
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
        assert_eq!(max_entries(64), 0);
        assert_eq!(max_entries(76), 1);
        assert_eq!(max_entries(4096), 336);
        assert_eq!(max_listed(8192), 336);
        for n in 0..1000 {
            for bs in [512, 4096] {
                let b = record_bytes(n, bs);
                assert!(max_entries(b) >= n);
                assert_eq!(b % bs, 0);
                assert!(b - meaningful(n) < bs);
            }
        }
        // A checkpoint of the most stripes listed fits in half an area, padding included.
        for slot in [4096usize, 8192, 1 << 20, 16 << 20] {
            for bs in [512, 4096] {
                if slot % bs == 0 && slot >= 2 * bs {
                    assert!(record_bytes(max_listed(slot), bs) <= slot.div_ceil(2 * bs) * bs);
                }
            }
        }
    }

    #[test]
    fn encoding_layout() {
        let a = [e(0x0403_0201, 0x0c0b_0a09_0807_0605)];
        let r = [e(0x1111_1111, 0x2222)];
        let buf = enc(&delta(0x1122_3344_5566_7788, 0x99, 1), &a, &r, 512);
        assert_eq!(buf.len(), 512);
        assert_eq!(&buf[0..8], b"JRAIDREC");
        assert_eq!(&buf[8..12], &[2, 0, 0, 0]);
        assert_eq!(&buf[12..16], &[2, 0, 0, 0]);
        assert_eq!(&buf[16..32], &UUID);
        assert_eq!(
            &buf[32..40],
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(&buf[40..44], &[1, 0, 0, 0]);
        assert_eq!(&buf[44..48], &[1, 0, 0, 0]);
        assert_eq!(&buf[52..56], &[1, 0, 0, 0]);
        assert_eq!(&buf[56..64], &[0x99, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&buf[64..76], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(&buf[76..80], &[0x11; 4]);
        assert!(buf[88..].iter().all(|&b| b == 0));
        let mut zeroed = buf[..88].to_vec();
        zeroed[48..52].fill(0);
        assert_eq!(&buf[48..52], &crc32c::crc32c(&zeroed).to_le_bytes());
        let c = enc(&cp(5, 0), &a, &[], 512);
        assert_eq!(&c[12..16], &[1, 0, 0, 0]);
        assert_eq!(&c[56..64], &[5, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn encode_reuses_capacity() {
        let entries: Vec<Entry> = (0..500).map(|i| e(i, u64::from(i) * 7)).collect();
        let mut out = Vec::new();
        let h = cp(0, 0);
        encode(&UUID, &h, entries.iter().copied(), [], 4096, &mut out);
        let cap = out.capacity();
        let ptr = out.as_ptr();
        for g in 1..20u64 {
            let n = (g as usize * 37) % 500;
            let h = delta(g, 0, 1);
            let (a, r) = entries[..n].split_at(n / 2);
            encode(
                &UUID,
                &h,
                a.iter().copied(),
                r.iter().copied(),
                4096,
                &mut out,
            );
            assert_eq!(out.capacity(), cap);
            assert_eq!(out.as_ptr(), ptr);
            let d = decode(&out, 1, &UUID).unwrap();
            assert_eq!((d.adds.as_slice(), d.removes.as_slice()), (a, r));
        }
    }

    #[test]
    fn rejects_blank_and_short() {
        assert_eq!(decode(&[], 0, &UUID), Err(RecordError::TooShort));
        assert_eq!(decode(&[0; 63], 0, &UUID), Err(RecordError::TooShort));
        assert_eq!(decode(&[0; 4096], 0, &UUID), Err(RecordError::BadMagic));
        assert_eq!(newest(&[0; 4096], &[0; 4096], &UUID, 512), Ok(None));
        assert_eq!(newest(&[], &[], &UUID, 512), Ok(None));
        assert_eq!(read_area(&[0; 4096], 0, &UUID, 0), None);
    }

    #[test]
    fn specific_errors() {
        let a = [e(1, 2)];
        let good = enc(&delta(4, 3, 0), &a, &[], 512);
        let mut b = good.clone();
        b[8] = 3;
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::BadVersion(3)));
        assert_eq!(
            decode(&good, 1, &UUID),
            Err(RecordError::WrongArea { found: 0, area: 1 })
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
        b[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&b, 0, &UUID),
            Err(RecordError::TooManyEntries {
                count: 2 * u64::from(u32::MAX),
                fits: 37
            })
        );
        let mut b = good.clone();
        b[70] ^= 1;
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::BadChecksum));
        let mut b = good.clone();
        b[12] = 9;
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::BadKind(9)));
        // A checkpoint with removes (checksum recomputed to match) is malformed.
        let mut b = enc(&cp(4, 0), &a, &[], 512);
        b[40..44].copy_from_slice(&0u32.to_le_bytes());
        b[44..48].copy_from_slice(&1u32.to_le_bytes());
        b[48..52].fill(0);
        let crc = crc32c::crc32c(&b[..76]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b, 0, &UUID), Err(RecordError::BadKind(1)));
        // Padding after the entries is not checked.
        let mut b = good.clone();
        b[100] = 0xff;
        assert!(decode(&b, 0, &UUID).is_ok());
        assert!(RecordError::BadChecksum.to_string().contains("checksum"));
    }

    /// A journal written by the format before this one is refused, not read as empty.
    #[test]
    fn older_format_refused_with_a_clear_message() {
        let mut v1 = vec![0u8; 4096];
        v1[..8].copy_from_slice(&RECORD_MAGIC);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1[16..32].copy_from_slice(&UUID);
        let err = newest(&[0; 4096], &v1, &UUID, 512).unwrap_err();
        assert_eq!(err, RecordError::BadVersion(1));
        assert!(err.to_string().contains("version 1"), "{err}");
        assert!(err.to_string().contains("new journal"), "{err}");
        // Another journal's old records (a reused device) are not this journal's: ignored.
        assert_eq!(newest(&v1, &v1, b"fedcba9876543210", 512), Ok(None));
    }

    /// Every single-bit flip within a small record's meaningful bytes is rejected (exhaustive).
    #[test]
    fn every_bit_flip_rejected_small() {
        for n in [0usize, 1, 3, 37, 38] {
            let entries: Vec<Entry> = (0..n as u32)
                .map(|i| e(i * 3 + 1, u64::from(i) << 33 | 5))
                .collect();
            for bs in [512, 4096] {
                for (h, area) in [(cp(6, 0), 0), (delta(7, 6, 1), 1)] {
                    let (a, r) = if h.kind == Kind::Checkpoint {
                        (&entries[..], &[][..])
                    } else {
                        entries.split_at(n / 2)
                    };
                    let good = enc(&h, a, r, bs);
                    assert!(decode(&good, area, &UUID).is_ok());
                    for bit in 0..meaningful(n) * 8 {
                        let mut b = good.clone();
                        b[bit / 8] ^= 1 << (bit % 8);
                        assert!(
                            decode(&b, area, &UUID).is_err(),
                            "flip of bit {bit} accepted (n={n} bs={bs})"
                        );
                    }
                }
            }
        }
    }

    /// A chain: checkpoint {1,2,3}, delta +4 -2, delta -1, then a delta of a foreign base, a
    /// delta skipping a generation, and an older chain's leftovers — all ignored.
    #[test]
    fn chain_applies_consecutive_deltas_of_its_base_only() {
        let bs = 512;
        let mut area = Vec::new();
        area.extend(enc(&cp(10, 1), &[e(0, 1), e(0, 2), e(0, 3)], &[], bs));
        area.extend(enc(&delta(11, 10, 1), &[e(0, 4)], &[e(0, 2)], bs));
        area.extend(enc(&delta(12, 10, 1), &[], &[e(0, 1)], bs));
        let good = area.clone();
        area.extend(enc(&delta(13, 9, 1), &[e(0, 9)], &[], bs));
        let want = Record {
            generation: 12,
            entries: vec![e(0, 3), e(0, 4)],
            area: 1,
            base: 10,
            records: 3,
            bytes: 3 * 512,
        };
        assert_eq!(read_area(&area, 1, &UUID, bs), Some(want.clone()));
        let mut skip = good.clone();
        skip.extend(enc(&delta(14, 10, 1), &[e(0, 9)], &[], bs));
        assert_eq!(read_area(&skip, 1, &UUID, bs), Some(want.clone()));
        // Read from the wrong area, nothing is valid.
        assert_eq!(read_area(&good, 0, &UUID, bs), None);
        // A delta at the start is not a chain.
        assert_eq!(read_area(&good[512..], 1, &UUID, bs), None);
        // newest: the other area's older chain loses.
        let older = enc(&cp(8, 0), &[e(0, 7)], &[], bs);
        assert_eq!(newest(&older, &good, &UUID, bs), Ok(Some(want)));
        let newer = enc(&cp(13, 0), &[e(0, 7)], &[], bs);
        assert_eq!(
            newest(&newer, &good, &UUID, bs).unwrap().unwrap().entries,
            vec![e(0, 7)]
        );
    }

    /// Over two devices: the newest chain of either wins; a missing device makes the read
    /// incomplete (whatever the other holds), an empty one does not.
    #[test]
    fn newest_of_devices_takes_the_newest_and_says_when_one_was_missing() {
        let bs = 512;
        let empty = vec![0u8; 2048];
        let old = enc(&cp(4, 0), &[e(1, 1)], &[], bs);
        let new = enc(&cp(5, 1), &[e(1, 2)], &[], bs);
        let both = newest_of(&[Some((&old, &empty)), Some((&empty, &new))], &UUID, bs).unwrap();
        assert!(both.complete);
        assert_eq!(
            both.record.map(|r| (r.generation, r.entries)),
            Some((5, vec![e(1, 2)]))
        );
        let one = newest_of(&[Some((&old, &empty)), None], &UUID, bs).unwrap();
        assert!(!one.complete);
        assert_eq!(one.missing, 0b10);
        assert_eq!(one.record.map(|r| r.generation), Some(4));
        let blank = newest_of(&[Some((&empty, &empty)), Some((&empty, &empty))], &UUID, bs);
        assert_eq!(
            blank,
            Ok(Newest {
                record: None,
                complete: true,
                missing: 0
            })
        );
    }

    /// A model of the writer: generations of random changes placed as the journal places them
    /// (delta behind the chain if it fits, else a checkpoint in the other area).
    struct Writer {
        areas: [Vec<u8>; 2],
        area: usize,
        used: usize,
        base: u64,
        fresh: bool,
        bs: usize,
    }

    impl Writer {
        fn new(area_bytes: usize, bs: usize) -> Writer {
            Writer {
                areas: [vec![0; area_bytes], vec![0; area_bytes]],
                area: 1,
                used: 0,
                base: 0,
                fresh: true,
                bs,
            }
        }

        /// Encode generation `g`; returns (area, offset, bytes) without writing them.
        fn next(
            &mut self,
            g: u64,
            set: &std::collections::BTreeSet<Entry>,
            adds: &[Entry],
            removes: &[Entry],
        ) -> (usize, usize, Vec<u8>) {
            let d = record_bytes(adds.len() + removes.len(), self.bs);
            if self.fresh || self.used + d > self.areas[0].len() {
                self.area = 1 - self.area;
                self.fresh = false;
                self.base = g;
                let out = enc(
                    &cp(g, self.area),
                    &set.iter().copied().collect::<Vec<_>>(),
                    &[],
                    self.bs,
                );
                self.used = out.len();
                (self.area, 0, out)
            } else {
                let out = enc(&delta(g, self.base, self.area), adds, removes, self.bs);
                let off = self.used;
                self.used += out.len();
                (self.area, off, out)
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(
            uuid in any::<[u8; 16]>(),
            generation in any::<u64>(),
            base in any::<u64>(),
            adds in entries_strategy(1000),
            removes in entries_strategy(1000),
            is_cp in any::<bool>(),
            area in 0usize..2,
            bs in block_size(),
        ) {
            let (h, removes) = if is_cp {
                (cp(generation, area), Vec::new())
            } else {
                (delta(generation, base, area), removes)
            };
            let mut buf = Vec::new();
            encode(&uuid, &h, adds.iter().copied(), removes.iter().copied(), bs, &mut buf);
            let n = adds.len() + removes.len();
            prop_assert_eq!(buf.len(), record_bytes(n, bs));
            prop_assert!(buf[meaningful(n)..].iter().all(|&b| b == 0));
            let want = Decoded { header: h, adds, removes };
            prop_assert_eq!(decode(&buf, area, &uuid), Ok(want.clone()));
            prop_assert_eq!(decode(&buf[..meaningful(n)], area, &uuid), Ok(want.clone()));
            let mut longer = buf.clone();
            longer.resize(buf.len() + 3 * bs, 0xa5);
            prop_assert_eq!(decode(&longer, area, &uuid), Ok(want));
        }

        /// Sampled single-bit flips within large records' meaningful bytes are rejected.
        #[test]
        fn bit_flips_rejected_sampled(
            generation in any::<u64>(),
            adds in entries_strategy(1000),
            removes in entries_strategy(1000),
            bs in block_size(),
            bits in prop::collection::vec(any::<prop::sample::Index>(), 64),
        ) {
            let good = enc(&delta(generation, 3, 0), &adds, &removes, bs);
            let m = meaningful(adds.len() + removes.len());
            for ix in bits {
                let bit = ix.index(m * 8);
                let mut b = good.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(decode(&b, 0, &UUID).is_err(), "bit {} accepted", bit);
            }
        }

        #[test]
        fn truncation_rejected(
            generation in any::<u64>(),
            adds in entries_strategy(300),
            bs in block_size(),
            cut in any::<prop::sample::Index>(),
        ) {
            let good = enc(&cp(generation, 1), &adds, &[], bs);
            let len = cut.index(meaningful(adds.len()));
            prop_assert!(decode(&good[..len], 1, &UUID).is_err());
        }

        #[test]
        fn foreign_uuid_and_wrong_area_rejected(
            uuid in any::<[u8; 16]>(),
            other in any::<[u8; 16]>(),
            generation in any::<u64>(),
            adds in entries_strategy(100),
            area in 0usize..2,
            bs in block_size(),
        ) {
            prop_assume!(uuid != other);
            let mut good = Vec::new();
            encode(&uuid, &cp(generation, area), adds.iter().copied(), [], bs, &mut good);
            prop_assert_eq!(decode(&good, area, &other), Err(RecordError::ForeignJournal));
            prop_assert_eq!(
                decode(&good, 1 - area, &uuid),
                Err(RecordError::WrongArea { found: area as u32, area: 1 - area })
            );
        }

        /// Many generations of random changes written as the journal writes them: reading the
        /// areas back after every generation gives exactly the set as of that generation; and a
        /// torn write of the next record (any subset of its blocks, in order or not) reads back
        /// as the set before it — or, only when every meaningful block landed, the set after.
        #[test]
        fn chains_replay_and_torn_writes_fall_back(
            steps in prop::collection::vec(
                (prop::collection::vec(0u64..64, 0..12), prop::collection::vec(any::<prop::sample::Index>(), 0..12)),
                1..60,
            ),
            area_blocks in 3usize..12,
            bs in block_size(),
            landed in prop::collection::vec(any::<bool>(), 64),
            prefix in any::<bool>(),
            cut in any::<prop::sample::Index>(),
        ) {
            use std::collections::BTreeSet;
            let mut w = Writer::new(area_blocks * bs, bs);
            let mut set: BTreeSet<Entry> = BTreeSet::new();
            // Bounded as the journal bounds its listed set.
            let cap = max_listed(area_blocks * bs).min(64);
            for (g, (add, rm)) in steps.iter().enumerate() {
                let g = g as u64 + 1;
                let mut next = set.clone();
                let mut removes = Vec::new();
                for ix in rm {
                    if next.is_empty() { break; }
                    let x = *next.iter().nth(ix.index(next.len())).unwrap();
                    if next.remove(&x) {
                        removes.push(x);
                    }
                }
                // Additions may list again what was just removed: it must stay.
                let mut adds = Vec::new();
                for &s in add {
                    let x = e((s % 3) as u32, s);
                    if next.len() < cap && next.insert(x) {
                        adds.push(x);
                    }
                }
                let (area, off, bytes) = w.next(g, &next, &adds, &removes);
                // Tear this write.
                let mut torn = w.areas.clone();
                let blocks = bytes.len() / bs;
                let mask: Vec<bool> = if prefix {
                    let k = cut.index(blocks);
                    (0..blocks).map(|i| i < k).collect()
                } else {
                    (0..blocks).map(|i| landed[i % 64]).collect()
                };
                for (i, &l) in mask.iter().enumerate() {
                    if l {
                        torn[area][off + i * bs..off + (i + 1) * bs]
                            .copy_from_slice(&bytes[i * bs..(i + 1) * bs]);
                    }
                }
                let got = newest(&torn[0], &torn[1], &UUID, bs).unwrap().map(|r| r.entries);
                let before: Vec<Entry> = set.iter().copied().collect();
                let after: Vec<Entry> = next.iter().copied().collect();
                let m = decode(&bytes, area, &UUID).unwrap().meaningful_bytes();
                let full = torn[area][off..off + m] == bytes[..m];
                if g == 1 && !full {
                    prop_assert_eq!(got, None);
                } else if full {
                    prop_assert_eq!(got, Some(after.clone()));
                } else {
                    prop_assert_eq!(got, Some(before));
                }
                // The write lands whole.
                w.areas[area][off..off + bytes.len()].copy_from_slice(&bytes);
                let r = newest(&w.areas[0], &w.areas[1], &UUID, bs).unwrap().unwrap();
                prop_assert_eq!(r.generation, g);
                prop_assert_eq!(r.entries, after);
                set = next;
            }
        }

        #[test]
        fn garbage_never_panics(
            buf in prop::collection::vec(any::<u8>(), 0..1024),
            area in 0usize..3,
        ) {
            let _ = decode(&buf, area, &UUID);
            let (a, b) = buf.split_at(buf.len() / 2);
            let _ = newest(a, b, &UUID, 512);
            let _ = read_area(&buf, area, &UUID, 512);
        }

        /// Headers that pass magic, version and uuid checks but carry garbage elsewhere never
        /// panic and never decode unless the checksum matches.
        #[test]
        fn garbage_with_valid_prefix_never_panics(
            mut buf in prop::collection::vec(any::<u8>(), 64..2048),
            area in 0usize..2,
        ) {
            buf[..8].copy_from_slice(&RECORD_MAGIC);
            buf[8..12].copy_from_slice(&RECORD_VERSION.to_le_bytes());
            buf[16..32].copy_from_slice(&UUID);
            if let Ok(d) = decode(&buf, area, &UUID) {
                let re = enc(&d.header, &d.adds, &d.removes, 512);
                let m = d.meaningful_bytes();
                prop_assert_eq!(&re[..m], &buf[..m]);
            }
            let _ = read_area(&buf, area, &UUID, 512);
        }
    }
}
