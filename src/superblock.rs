//! On-disk superblocks: one per member device, one for the journal device.
//!
//! The member superblock lives at member LBA 0 and occupies [`SUPERBLOCK_BYTES`]; members
//! reserve 1 MiB for it ([`crate::layout::RESERVED_BYTES`]). The journal superblock lives at
//! journal byte 0 and also occupies [`SUPERBLOCK_BYTES`]; journal record slot `k` starts at byte
//! [`JOURNAL_SLOTS_OFFSET`]` + k * slot_bytes`.
//!
//! Both formats are little-endian with explicit byte offsets, carry a magic, a version and a
//! crc32c over all [`SUPERBLOCK_BYTES`] bytes (with the crc field zeroed), and require every
//! reserved or unused byte to be zero.
//!
//! # Member superblock layout
//!
//! | offset | size   | field                                              |
//! |-------:|-------:|----------------------------------------------------|
//! |      0 |      8 | magic `b"JRAIDMSB"`                                |
//! |      8 |      4 | version ([`SB_VERSION`])                           |
//! |     12 |      4 | reserved, zero                                     |
//! |     16 |      4 | crc32c                                             |
//! |     20 |      4 | reserved, zero                                     |
//! |     24 |     16 | volume uuid                                        |
//! |     40 |     16 | journal uuid                                       |
//! |     56 |      4 | volume number                                      |
//! |     60 |      4 | members                                            |
//! |     64 |      4 | member index                                       |
//! |     68 |      4 | block size                                         |
//! |     72 |      8 | strip blocks                                       |
//! |     80 |      8 | stripes                                            |
//! |     88 |      8 | seq                                                |
//! |     96 |      4 | name length (≤ 63)                                 |
//! |    100 |      4 | reserved, zero                                     |
//! |    104 |     64 | name, UTF-8, zero-padded                           |
//! |    168 |     32 | member states, one byte each, zero past `members`  |
//! |    200 |    512 | member uuids, 16 bytes each, zero past `members`   |
//! |    712 |      4 | journal devices recorded dropped (bit k: device k) |
//! |    716 |      8 | journal area: byte offset of the journal on members |
//! |        |        | 0 and 1 (0: the journal is a device of its own)    |
//! |    724 |      8 | stripes initialised: parity matches data in every  |
//! |        |        | stripe below (the initial pass's watermark)        |
//! |    732 |   3364 | reserved, zero                                     |
//!
//! # Journal superblock layout
//!
//! | offset | size    | field                                     |
//! |-------:|--------:|-------------------------------------------|
//! |      0 |       8 | magic `b"JRAIDJSB"`                       |
//! |      8 |       4 | version ([`SB_VERSION`])                  |
//! |     12 |       4 | reserved, zero                            |
//! |     16 |       4 | crc32c                                    |
//! |     20 |       4 | reserved, zero                            |
//! |     24 |      16 | journal uuid                              |
//! |     40 |       4 | block size                                |
//! |     44 |       4 | volume count (≤ 64)                       |
//! |     48 |       8 | slot bytes                                |
//! |     56 |       8 | seq                                       |
//! |     64 | 64 × 60 | volume table, zero past the volume count  |
//! |   3904 |     192 | reserved, zero                            |
//!
//! Each 60-byte volume entry: volume number `u32` at 0, volume uuid at 4, name length `u8` at 20,
//! name (UTF-8, zero-padded, at most [`JOURNAL_NAME_MAX`] bytes) at 21.

use std::fmt;

/// Size of either superblock on disk.
pub const SUPERBLOCK_BYTES: usize = 4096;
/// Magic at the start of a member superblock.
pub const MEMBER_MAGIC: [u8; 8] = *b"JRAIDMSB";
/// Magic at the start of a journal superblock.
pub const JOURNAL_MAGIC: [u8; 8] = *b"JRAIDJSB";
/// The superblock format version this code writes and accepts (both kinds).
pub const SB_VERSION: u32 = 1;
/// Byte offset on the journal device of record slot 0; slot `k` is at
/// `JOURNAL_SLOTS_OFFSET + k * slot_bytes`.
pub const JOURNAL_SLOTS_OFFSET: u64 = 64 * 1024;
/// Most members a volume can have.
pub const MAX_MEMBERS: usize = 32;
/// Fewest members a volume can have.
pub const MIN_MEMBERS: usize = 3;
/// Most volumes one journal can serve.
pub const MAX_VOLUMES: usize = 64;
/// Longest volume name, in bytes, a member superblock holds.
pub const MEMBER_NAME_MAX: usize = 63;
/// Longest volume name, in bytes, the journal superblock's volume table holds (64 fixed-size
/// entries must fit in one superblock, so this is shorter than [`MEMBER_NAME_MAX`]).
pub const JOURNAL_NAME_MAX: usize = 39;

// Common header.
const MAGIC_OFF: usize = 0;
const VERSION_OFF: usize = 8;
const RESERVED0_OFF: usize = 12;
const CRC_OFF: usize = 16;
const RESERVED1_OFF: usize = 20;
const COMMON_END: usize = 24;
const _: () = assert!(MAGIC_OFF + 8 == VERSION_OFF);
const _: () = assert!(VERSION_OFF + 4 == RESERVED0_OFF);
const _: () = assert!(RESERVED0_OFF + 4 == CRC_OFF);
const _: () = assert!(CRC_OFF + 4 == RESERVED1_OFF);
const _: () = assert!(RESERVED1_OFF + 4 == COMMON_END);

// Member superblock.
const M_VOLUME_UUID: usize = COMMON_END;
const M_JOURNAL_UUID: usize = 40;
const M_VOLUME_NUMBER: usize = 56;
const M_MEMBERS: usize = 60;
const M_MEMBER_INDEX: usize = 64;
const M_BLOCK_SIZE: usize = 68;
const M_STRIP_BLOCKS: usize = 72;
const M_STRIPES: usize = 80;
const M_SEQ: usize = 88;
const M_NAME_LEN: usize = 96;
const M_RESERVED2: usize = 100;
const M_NAME: usize = 104;
const M_NAME_FIELD: usize = 64;
const M_STATES: usize = 168;
const M_UUIDS: usize = 200;
const M_JOURNAL_DROPPED: usize = 712;
const M_JOURNAL_AREA: usize = 716;
const M_INIT_STRIPES: usize = 724;
const M_END: usize = 732;
const _: () = assert!(M_JOURNAL_DROPPED + 4 == M_JOURNAL_AREA);
const _: () = assert!(M_JOURNAL_AREA + 8 == M_INIT_STRIPES);
const _: () = assert!(M_INIT_STRIPES + 8 == M_END);
const _: () = assert!(M_VOLUME_UUID + 16 == M_JOURNAL_UUID);
const _: () = assert!(M_JOURNAL_UUID + 16 == M_VOLUME_NUMBER);
const _: () = assert!(M_VOLUME_NUMBER + 4 == M_MEMBERS);
const _: () = assert!(M_MEMBERS + 4 == M_MEMBER_INDEX);
const _: () = assert!(M_MEMBER_INDEX + 4 == M_BLOCK_SIZE);
const _: () = assert!(M_BLOCK_SIZE + 4 == M_STRIP_BLOCKS);
const _: () = assert!(M_STRIP_BLOCKS + 8 == M_STRIPES);
const _: () = assert!(M_STRIPES + 8 == M_SEQ);
const _: () = assert!(M_SEQ + 8 == M_NAME_LEN);
const _: () = assert!(M_NAME_LEN + 4 == M_RESERVED2);
const _: () = assert!(M_RESERVED2 + 4 == M_NAME);
const _: () = assert!(MEMBER_NAME_MAX < M_NAME_FIELD);
const _: () = assert!(M_NAME + M_NAME_FIELD == M_STATES);
const _: () = assert!(M_STATES + MAX_MEMBERS == M_UUIDS);
const _: () = assert!(M_UUIDS + MAX_MEMBERS * 16 == M_JOURNAL_DROPPED);
const _: () = assert!(M_END <= SUPERBLOCK_BYTES);

// Journal superblock.
const J_JOURNAL_UUID: usize = COMMON_END;
const J_BLOCK_SIZE: usize = 40;
const J_VOLUME_COUNT: usize = 44;
const J_SLOT_BYTES: usize = 48;
const J_SEQ: usize = 56;
const J_VOLUMES: usize = 64;
const JV_NUMBER: usize = 0;
const JV_UUID: usize = 4;
const JV_NAME_LEN: usize = 20;
const JV_NAME: usize = 21;
const JV_BYTES: usize = 60;
const J_END: usize = J_VOLUMES + MAX_VOLUMES * JV_BYTES;
/// Journal devices: 0 (one device: older images have a zero here), or 2.
const J_DEVICES: usize = J_END;
/// This device's index among them.
const J_DEVICE_INDEX: usize = J_END + 4;
/// Mode of a pair: 0 alternate, 1 mirror.
const J_MODE: usize = J_END + 8;
const J_PAIR_END: usize = J_END + 12;
const _: () = assert!(J_PAIR_END <= SUPERBLOCK_BYTES);
const _: () = assert!(J_JOURNAL_UUID + 16 == J_BLOCK_SIZE);
const _: () = assert!(J_BLOCK_SIZE + 4 == J_VOLUME_COUNT);
const _: () = assert!(J_VOLUME_COUNT + 4 == J_SLOT_BYTES);
const _: () = assert!(J_SLOT_BYTES + 8 == J_SEQ);
const _: () = assert!(J_SEQ + 8 == J_VOLUMES);
const _: () = assert!(JV_NUMBER + 4 == JV_UUID);
const _: () = assert!(JV_UUID + 16 == JV_NAME_LEN);
const _: () = assert!(JV_NAME_LEN + 1 == JV_NAME);
const _: () = assert!(JV_NAME + JOURNAL_NAME_MAX == JV_BYTES);
const _: () = assert!(J_END <= SUPERBLOCK_BYTES);
const _: () = assert!(JOURNAL_SLOTS_OFFSET as usize >= SUPERBLOCK_BYTES);

/// State of one member as recorded in a member superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MemberState {
    /// In service and in sync.
    Active = 1,
    /// Out of service; its contents are reconstructed from the others.
    Failed = 2,
    /// Being rebuilt onto; not yet in sync.
    Rebuilding = 3,
}

impl MemberState {
    fn from_byte(b: u8) -> Option<MemberState> {
        match b {
            1 => Some(MemberState::Active),
            2 => Some(MemberState::Failed),
            3 => Some(MemberState::Rebuilding),
            _ => None,
        }
    }
}

/// The superblock at LBA 0 of every member of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSuperblock {
    /// Identity of the volume this member belongs to.
    pub volume_uuid: [u8; 16],
    /// Identity of the journal that protects the volume.
    pub journal_uuid: [u8; 16],
    /// The volume's number in the journal (what record entries name).
    pub volume_number: u32,
    /// Volume name, at most [`MEMBER_NAME_MAX`] bytes of UTF-8.
    pub name: String,
    /// Number of members, parity included (3..=32).
    pub members: u32,
    /// This member's position in the volume (`< members`).
    pub member_index: u32,
    /// Blocks per strip (a non-zero power of two).
    pub strip_blocks: u64,
    /// Bytes per block (512 or 4096).
    pub block_size: u32,
    /// Number of stripes in the volume.
    pub stripes: u64,
    /// Bumped on every state change; the highest seq among members wins at assembly.
    pub seq: u64,
    /// State of every member; `len() == members`.
    pub member_states: Vec<MemberState>,
    /// Identity of every member device; `len() == members`.
    pub member_uuids: Vec<[u8; 16]>,
    /// Journal devices of a mirrored pair recorded as dropped while running (bit k: device k;
    /// 0 with one device, or with both in step): a restart that finds only a device recorded
    /// here knows it is behind ([`crate::control::recovery::journal_complete`]).
    pub journal_dropped: u8,
    /// Journal on the members: the byte offset on every member of a reserved area past the
    /// stripes, in which members 0 and 1 hold the two devices of a mirrored journal (each a
    /// journal superblock and two record areas, as a journal device of its own would). 0: the
    /// journal is a device of its own. A multiple of 4096, at or past the end of the stripes.
    pub journal_area: u64,
    /// Stripes initialised: in every stripe below this one, parity was made to match the data
    /// since the volume was created (by the initial parity pass, a rebuild or a full resync),
    /// and writes have kept it so; at or above it, parity may still disagree with whatever the
    /// members held before (`stripes`: all initialised). See [`crate::control::pass`].
    pub init_stripes: u64,
}

/// Byte offset on a member just past its last stripe (None when it does not fit in a u64).
pub fn member_data_end(block_size: u32, strip_blocks: u64, stripes: u64) -> Option<u64> {
    stripes
        .checked_mul(strip_blocks)?
        .checked_mul(u64::from(block_size))?
        .checked_add(crate::layout::RESERVED_BYTES)
}

/// One volume served by a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalVolume {
    /// The number record entries use for this volume (unique within the journal).
    pub volume_number: u32,
    /// Identity of the volume (matches its members' `volume_uuid`).
    pub volume_uuid: [u8; 16],
    /// Volume name, at most [`JOURNAL_NAME_MAX`] bytes of UTF-8.
    pub name: String,
}

/// The superblock at byte 0 of the journal device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSuperblock {
    /// Identity of the journal (records carry it too).
    pub journal_uuid: [u8; 16],
    /// Bytes per journal block (512 or 4096); records are padded to it.
    pub block_size: u32,
    /// Size of each of the two record slots: a non-zero multiple of `block_size`.
    pub slot_bytes: u64,
    /// Bumped on every change to this superblock.
    pub seq: u64,
    /// Volumes this journal serves, at most [`MAX_VOLUMES`], with unique volume numbers.
    pub volumes: Vec<JournalVolume>,
    /// `None`: the journal is this one device. Else it is one of two devices (same journal
    /// uuid, both holding both record slots), records spread over them as the mode says.
    pub pair: Option<JournalPair>,
}

/// The place of a journal device in a journal of two ([`JournalSuperblock::pair`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPair {
    /// This device's index (0 or 1): records of the journal name devices by it.
    pub index: u32,
    /// How records spread over the two.
    pub mode: crate::journal::JournalMode,
}

/// Why a buffer does not hold a valid superblock, or a superblock cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuperblockError {
    /// Wrong magic (not a superblock of the expected kind, or never written).
    BadMagic,
    /// Unsupported format version.
    BadVersion(u32),
    /// The crc32c does not match (corrupted or torn write).
    BadChecksum,
    /// The checksum matches but a field is out of range or inconsistent.
    Invalid(&'static str),
}

impl fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperblockError::BadMagic => write!(f, "no superblock magic"),
            SuperblockError::BadVersion(v) => {
                write!(
                    f,
                    "unsupported superblock version {v} (expected {SB_VERSION})"
                )
            }
            SuperblockError::BadChecksum => write!(f, "superblock checksum mismatch"),
            SuperblockError::Invalid(why) => write!(f, "invalid superblock: {why}"),
        }
    }
}

impl std::error::Error for SuperblockError {}

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

fn uuid_at(buf: &[u8], off: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[off..off + 16]);
    b
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// crc32c of a superblock image with its crc field taken as zero.
fn checksum(buf: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&buf[..CRC_OFF]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &buf[CRC_OFF + 4..SUPERBLOCK_BYTES])
}

/// A zeroed image with magic and version set.
fn new_image(magic: &[u8; 8]) -> Vec<u8> {
    let mut buf = vec![0u8; SUPERBLOCK_BYTES];
    put(&mut buf, MAGIC_OFF, magic);
    put(&mut buf, VERSION_OFF, &SB_VERSION.to_le_bytes());
    buf
}

/// Stamps the checksum into a finished image.
fn seal(buf: &mut [u8]) {
    let crc = checksum(buf);
    put(buf, CRC_OFF, &crc.to_le_bytes());
}

/// Checks length, magic, version, checksum and the common reserved words.
fn open(buf: &[u8], magic: &[u8; 8]) -> Result<(), SuperblockError> {
    if buf.len() < SUPERBLOCK_BYTES {
        return Err(SuperblockError::Invalid("buffer shorter than a superblock"));
    }
    if buf[MAGIC_OFF..MAGIC_OFF + 8] != magic[..] {
        return Err(SuperblockError::BadMagic);
    }
    let version = u32_at(buf, VERSION_OFF);
    if version != SB_VERSION {
        return Err(SuperblockError::BadVersion(version));
    }
    if u32_at(buf, CRC_OFF) != checksum(buf) {
        return Err(SuperblockError::BadChecksum);
    }
    if !all_zero(&buf[RESERVED0_OFF..RESERVED0_OFF + 4])
        || !all_zero(&buf[RESERVED1_OFF..RESERVED1_OFF + 4])
    {
        return Err(SuperblockError::Invalid("non-zero reserved bytes"));
    }
    Ok(())
}

/// Decodes a length-prefixed, zero-padded UTF-8 name field.
fn name_at(field: &[u8], len: usize, max: usize) -> Result<String, SuperblockError> {
    if len > max {
        return Err(SuperblockError::Invalid("name too long"));
    }
    if !all_zero(&field[len..]) {
        return Err(SuperblockError::Invalid("non-zero bytes after name"));
    }
    std::str::from_utf8(&field[..len])
        .map(str::to_owned)
        .map_err(|_| SuperblockError::Invalid("name is not UTF-8"))
}

fn valid_block_size(block_size: u32) -> bool {
    block_size == 512 || block_size == 4096
}

impl MemberSuperblock {
    /// Checks that this superblock can be encoded and would decode back to itself: members in
    /// 3..=32, `member_index < members`, both member vectors of length `members`, name at most
    /// [`MEMBER_NAME_MAX`] bytes, block size 512 or 4096, strip blocks a non-zero power of two.
    pub fn validate(&self) -> Result<(), SuperblockError> {
        let members = self.members as usize;
        if !(MIN_MEMBERS..=MAX_MEMBERS).contains(&members) {
            return Err(SuperblockError::Invalid("member count outside 3..=32"));
        }
        if self.member_index >= self.members {
            return Err(SuperblockError::Invalid("member index out of range"));
        }
        if self.member_states.len() != members {
            return Err(SuperblockError::Invalid(
                "member state count differs from member count",
            ));
        }
        if self.member_uuids.len() != members {
            return Err(SuperblockError::Invalid(
                "member uuid count differs from member count",
            ));
        }
        if self.name.len() > MEMBER_NAME_MAX {
            return Err(SuperblockError::Invalid("name too long"));
        }
        if self.journal_dropped > 3 {
            return Err(SuperblockError::Invalid("unknown journal device dropped"));
        }
        if self.journal_area != 0
            && (!self.journal_area.is_multiple_of(4096)
                || member_data_end(self.block_size, self.strip_blocks, self.stripes)
                    .is_none_or(|end| self.journal_area < end))
        {
            return Err(SuperblockError::Invalid(
                "journal area not 4 KiB aligned past the stripes",
            ));
        }
        if self.init_stripes > self.stripes {
            return Err(SuperblockError::Invalid(
                "more stripes initialised than the volume has",
            ));
        }
        if !valid_block_size(self.block_size) {
            return Err(SuperblockError::Invalid("block size must be 512 or 4096"));
        }
        if !self.strip_blocks.is_power_of_two() {
            return Err(SuperblockError::Invalid(
                "strip blocks must be a non-zero power of two",
            ));
        }
        Ok(())
    }

    /// Encodes into exactly [`SUPERBLOCK_BYTES`] bytes.
    ///
    /// # Panics
    ///
    /// Panics if [`validate`](Self::validate) fails: an invalid superblock is a programming
    /// error, and writing one would make the member unassemblable.
    pub fn encode(&self) -> Vec<u8> {
        if let Err(e) = self.validate() {
            panic!("encoding an invalid member superblock: {e}");
        }
        let mut buf = new_image(&MEMBER_MAGIC);
        put(&mut buf, M_VOLUME_UUID, &self.volume_uuid);
        put(&mut buf, M_JOURNAL_UUID, &self.journal_uuid);
        put(&mut buf, M_VOLUME_NUMBER, &self.volume_number.to_le_bytes());
        put(&mut buf, M_MEMBERS, &self.members.to_le_bytes());
        put(&mut buf, M_MEMBER_INDEX, &self.member_index.to_le_bytes());
        put(&mut buf, M_BLOCK_SIZE, &self.block_size.to_le_bytes());
        put(&mut buf, M_STRIP_BLOCKS, &self.strip_blocks.to_le_bytes());
        put(&mut buf, M_STRIPES, &self.stripes.to_le_bytes());
        put(&mut buf, M_SEQ, &self.seq.to_le_bytes());
        // The name is at most 63 bytes (validated above).
        put(
            &mut buf,
            M_NAME_LEN,
            &(self.name.len() as u32).to_le_bytes(),
        );
        put(&mut buf, M_NAME, self.name.as_bytes());
        for (i, s) in self.member_states.iter().enumerate() {
            buf[M_STATES + i] = *s as u8;
        }
        for (i, u) in self.member_uuids.iter().enumerate() {
            put(&mut buf, M_UUIDS + i * 16, u);
        }
        put(
            &mut buf,
            M_JOURNAL_DROPPED,
            &u32::from(self.journal_dropped).to_le_bytes(),
        );
        put(&mut buf, M_JOURNAL_AREA, &self.journal_area.to_le_bytes());
        put(&mut buf, M_INIT_STRIPES, &self.init_stripes.to_le_bytes());
        seal(&mut buf);
        buf
    }

    /// Decodes a member superblock from the first [`SUPERBLOCK_BYTES`] of `buf`.
    ///
    /// Checks magic, version and checksum, then every field and reserved byte. Never panics.
    pub fn decode(buf: &[u8]) -> Result<Self, SuperblockError> {
        open(buf, &MEMBER_MAGIC)?;
        let buf = &buf[..SUPERBLOCK_BYTES];
        if u32_at(buf, M_RESERVED2) != 0 || !all_zero(&buf[M_END..]) {
            return Err(SuperblockError::Invalid("non-zero reserved bytes"));
        }
        let members = u32_at(buf, M_MEMBERS);
        let n = members as usize;
        if !(MIN_MEMBERS..=MAX_MEMBERS).contains(&n) {
            return Err(SuperblockError::Invalid("member count outside 3..=32"));
        }
        let member_index = u32_at(buf, M_MEMBER_INDEX);
        if member_index >= members {
            return Err(SuperblockError::Invalid("member index out of range"));
        }
        let name_len = u32_at(buf, M_NAME_LEN) as usize;
        let name = name_at(
            &buf[M_NAME..M_NAME + M_NAME_FIELD],
            name_len,
            MEMBER_NAME_MAX,
        )?;
        let member_states = buf[M_STATES..M_STATES + n]
            .iter()
            .map(|&b| MemberState::from_byte(b))
            .collect::<Option<Vec<_>>>()
            .ok_or(SuperblockError::Invalid("unknown member state"))?;
        if !all_zero(&buf[M_STATES + n..M_UUIDS]) {
            return Err(SuperblockError::Invalid("member state past member count"));
        }
        let member_uuids = (0..n).map(|i| uuid_at(buf, M_UUIDS + i * 16)).collect();
        if !all_zero(&buf[M_UUIDS + n * 16..M_JOURNAL_DROPPED]) {
            return Err(SuperblockError::Invalid("member uuid past member count"));
        }
        let journal_dropped = u32_at(buf, M_JOURNAL_DROPPED);
        if journal_dropped > 3 {
            return Err(SuperblockError::Invalid("unknown journal device dropped"));
        }
        let sb = MemberSuperblock {
            volume_uuid: uuid_at(buf, M_VOLUME_UUID),
            journal_uuid: uuid_at(buf, M_JOURNAL_UUID),
            volume_number: u32_at(buf, M_VOLUME_NUMBER),
            name,
            members,
            member_index,
            strip_blocks: u64_at(buf, M_STRIP_BLOCKS),
            block_size: u32_at(buf, M_BLOCK_SIZE),
            stripes: u64_at(buf, M_STRIPES),
            seq: u64_at(buf, M_SEQ),
            member_states,
            member_uuids,
            journal_dropped: journal_dropped as u8,
            journal_area: u64_at(buf, M_JOURNAL_AREA),
            init_stripes: u64_at(buf, M_INIT_STRIPES),
        };
        sb.validate()?;
        Ok(sb)
    }
}

impl JournalSuperblock {
    /// Checks that this superblock can be encoded and would decode back to itself: block size
    /// 512 or 4096, `slot_bytes` a non-zero multiple of it, at most [`MAX_VOLUMES`] volumes with
    /// unique volume numbers and names of at most [`JOURNAL_NAME_MAX`] bytes.
    pub fn validate(&self) -> Result<(), SuperblockError> {
        if !valid_block_size(self.block_size) {
            return Err(SuperblockError::Invalid("block size must be 512 or 4096"));
        }
        if self.slot_bytes == 0 || !self.slot_bytes.is_multiple_of(u64::from(self.block_size)) {
            return Err(SuperblockError::Invalid(
                "slot bytes must be a non-zero multiple of the block size",
            ));
        }
        if self.slot_bytes > (u64::MAX - JOURNAL_SLOTS_OFFSET) / 2 {
            return Err(SuperblockError::Invalid("slot bytes too large"));
        }
        if self.volumes.len() > MAX_VOLUMES {
            return Err(SuperblockError::Invalid("more than 64 volumes"));
        }
        if self.pair.is_some_and(|p| p.index > 1) {
            return Err(SuperblockError::Invalid("bad journal device pair"));
        }
        for (i, v) in self.volumes.iter().enumerate() {
            if v.name.len() > JOURNAL_NAME_MAX {
                return Err(SuperblockError::Invalid("volume name too long"));
            }
            if self.volumes[..i]
                .iter()
                .any(|w| w.volume_number == v.volume_number)
            {
                return Err(SuperblockError::Invalid("duplicate volume number"));
            }
        }
        Ok(())
    }

    /// Encodes into exactly [`SUPERBLOCK_BYTES`] bytes.
    ///
    /// # Panics
    ///
    /// Panics if [`validate`](Self::validate) fails.
    pub fn encode(&self) -> Vec<u8> {
        if let Err(e) = self.validate() {
            panic!("encoding an invalid journal superblock: {e}");
        }
        let mut buf = new_image(&JOURNAL_MAGIC);
        put(&mut buf, J_JOURNAL_UUID, &self.journal_uuid);
        put(&mut buf, J_BLOCK_SIZE, &self.block_size.to_le_bytes());
        // At most 64 volumes (validated above).
        put(
            &mut buf,
            J_VOLUME_COUNT,
            &(self.volumes.len() as u32).to_le_bytes(),
        );
        put(&mut buf, J_SLOT_BYTES, &self.slot_bytes.to_le_bytes());
        put(&mut buf, J_SEQ, &self.seq.to_le_bytes());
        for (i, v) in self.volumes.iter().enumerate() {
            let e = J_VOLUMES + i * JV_BYTES;
            put(&mut buf, e + JV_NUMBER, &v.volume_number.to_le_bytes());
            put(&mut buf, e + JV_UUID, &v.volume_uuid);
            // At most 39 bytes (validated above).
            buf[e + JV_NAME_LEN] = v.name.len() as u8;
            put(&mut buf, e + JV_NAME, v.name.as_bytes());
        }
        if let Some(p) = self.pair {
            put(&mut buf, J_DEVICES, &2u32.to_le_bytes());
            put(&mut buf, J_DEVICE_INDEX, &p.index.to_le_bytes());
            let mode: u32 = match p.mode {
                crate::journal::JournalMode::Alternate => 0,
                crate::journal::JournalMode::Mirror => 1,
            };
            put(&mut buf, J_MODE, &mode.to_le_bytes());
        }
        seal(&mut buf);
        buf
    }

    /// Decodes a journal superblock from the first [`SUPERBLOCK_BYTES`] of `buf`.
    ///
    /// Checks magic, version and checksum, then every field and reserved byte. Never panics.
    pub fn decode(buf: &[u8]) -> Result<Self, SuperblockError> {
        open(buf, &JOURNAL_MAGIC)?;
        let buf = &buf[..SUPERBLOCK_BYTES];
        let count = u32_at(buf, J_VOLUME_COUNT) as usize;
        if count > MAX_VOLUMES {
            return Err(SuperblockError::Invalid("more than 64 volumes"));
        }
        let table_end = J_VOLUMES + count * JV_BYTES;
        if !all_zero(&buf[table_end..J_END]) || !all_zero(&buf[J_PAIR_END..]) {
            return Err(SuperblockError::Invalid(
                "non-zero bytes past the volume table",
            ));
        }
        let pair = match (
            u32_at(buf, J_DEVICES),
            u32_at(buf, J_DEVICE_INDEX),
            u32_at(buf, J_MODE),
        ) {
            (0, 0, 0) => None,
            (2, index @ 0..=1, mode @ 0..=1) => Some(JournalPair {
                index,
                mode: if mode == 0 {
                    crate::journal::JournalMode::Alternate
                } else {
                    crate::journal::JournalMode::Mirror
                },
            }),
            _ => return Err(SuperblockError::Invalid("bad journal device pair")),
        };
        let volumes = buf[J_VOLUMES..table_end]
            .chunks_exact(JV_BYTES)
            .map(|e| {
                Ok(JournalVolume {
                    volume_number: u32_at(e, JV_NUMBER),
                    volume_uuid: uuid_at(e, JV_UUID),
                    name: name_at(
                        &e[JV_NAME..JV_BYTES],
                        usize::from(e[JV_NAME_LEN]),
                        JOURNAL_NAME_MAX,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, SuperblockError>>()?;
        let sb = JournalSuperblock {
            journal_uuid: uuid_at(buf, J_JOURNAL_UUID),
            block_size: u32_at(buf, J_BLOCK_SIZE),
            slot_bytes: u64_at(buf, J_SLOT_BYTES),
            seq: u64_at(buf, J_SEQ),
            volumes,
            pair,
        };
        sb.validate()?;
        Ok(sb)
    }

    /// Smallest journal device, in bytes, for slots of `slot_bytes`:
    /// `JOURNAL_SLOTS_OFFSET + 2 * slot_bytes` (saturating).
    pub fn min_journal_bytes(slot_bytes: u64) -> u64 {
        JOURNAL_SLOTS_OFFSET.saturating_add(slot_bytes.saturating_mul(2))
    }

    /// Byte offset on the journal device of record slot `slot` (0 or 1).
    pub fn slot_offset(&self, slot: usize) -> u64 {
        JOURNAL_SLOTS_OFFSET + slot as u64 * self.slot_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member_state() -> impl Strategy<Value = MemberState> {
        prop_oneof![
            Just(MemberState::Active),
            Just(MemberState::Failed),
            Just(MemberState::Rebuilding),
        ]
    }

    /// Strings of at most `max` UTF-8 bytes, multi-byte characters and NULs included.
    fn name(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..=max).prop_map(move |cs| {
            let mut s = String::new();
            for c in cs {
                if s.len() + c.len_utf8() > max {
                    break;
                }
                s.push(c);
            }
            s
        })
    }

    fn member_sb() -> impl Strategy<Value = MemberSuperblock> {
        (3u32..=32)
            .prop_flat_map(|members| {
                (
                    (
                        any::<[u8; 16]>(),
                        any::<[u8; 16]>(),
                        any::<u32>(),
                        name(MEMBER_NAME_MAX),
                        0..members,
                        0u32..64,
                    ),
                    (
                        prop_oneof![Just(512u32), Just(4096u32)],
                        any::<u64>(),
                        any::<u64>(),
                        prop::collection::vec(member_state(), members as usize),
                        prop::collection::vec(any::<[u8; 16]>(), members as usize),
                        Just(members),
                        0u8..4,
                    ),
                )
            })
            .prop_map(
                |(
                    (volume_uuid, journal_uuid, volume_number, name, member_index, strip_shift),
                    (block_size, stripes, seq, member_states, member_uuids, members, dropped),
                )| MemberSuperblock {
                    // Journal on the members for some: an area 4 KiB aligned past the stripes.
                    journal_area: match member_data_end(block_size, 1u64 << strip_shift, stripes)
                        .and_then(|e| e.checked_next_multiple_of(4096))
                        .and_then(|e| e.checked_add((seq & 7) * 4096))
                    {
                        Some(a) if seq % 3 == 0 => a,
                        _ => 0,
                    },
                    journal_dropped: dropped,
                    init_stripes: if seq % 4 == 0 {
                        stripes
                    } else {
                        seq % (stripes.saturating_add(1))
                    },
                    volume_uuid,
                    journal_uuid,
                    volume_number,
                    name,
                    members,
                    member_index,
                    strip_blocks: 1u64 << strip_shift,
                    block_size,
                    stripes,
                    seq,
                    member_states,
                    member_uuids,
                },
            )
    }

    fn journal_sb() -> impl Strategy<Value = JournalSuperblock> {
        (
            any::<[u8; 16]>(),
            prop_oneof![Just(512u32), Just(4096u32)],
            1u64..1 << 30,
            any::<u64>(),
            prop::collection::btree_map(
                any::<u32>(),
                (any::<[u8; 16]>(), name(JOURNAL_NAME_MAX)),
                0..=MAX_VOLUMES,
            ),
        )
            .prop_map(|(journal_uuid, block_size, slot_blocks, seq, vols)| {
                let pair = match seq % 5 {
                    0 | 1 => None,
                    k => Some(JournalPair {
                        index: (seq >> 8) as u32 & 1,
                        mode: if k == 2 {
                            crate::journal::JournalMode::Alternate
                        } else {
                            crate::journal::JournalMode::Mirror
                        },
                    }),
                };
                JournalSuperblock {
                    pair,
                    journal_uuid,
                    block_size,
                    slot_bytes: slot_blocks * u64::from(block_size),
                    seq,
                    volumes: vols
                        .into_iter()
                        .map(|(volume_number, (volume_uuid, name))| JournalVolume {
                            volume_number,
                            volume_uuid,
                            name,
                        })
                        .collect(),
                }
            })
    }

    fn sample_member() -> MemberSuperblock {
        MemberSuperblock {
            journal_dropped: 2,
            journal_area: 1 << 30,
            init_stripes: 600,
            volume_uuid: [1; 16],
            journal_uuid: [2; 16],
            volume_number: 7,
            name: "vol-ü".to_owned(),
            members: 4,
            member_index: 2,
            strip_blocks: 128,
            block_size: 512,
            stripes: 1000,
            seq: 42,
            member_states: vec![
                MemberState::Active,
                MemberState::Failed,
                MemberState::Rebuilding,
                MemberState::Active,
            ],
            member_uuids: vec![[3; 16], [4; 16], [5; 16], [6; 16]],
        }
    }

    fn sample_journal() -> JournalSuperblock {
        JournalSuperblock {
            pair: None,
            journal_uuid: [9; 16],
            block_size: 4096,
            slot_bytes: 1 << 20,
            seq: 3,
            volumes: vec![
                JournalVolume {
                    volume_number: 0,
                    volume_uuid: [1; 16],
                    name: "a".to_owned(),
                },
                JournalVolume {
                    volume_number: 5,
                    volume_uuid: [2; 16],
                    name: "x".repeat(JOURNAL_NAME_MAX),
                },
            ],
        }
    }

    /// Re-seals an image after a deliberate edit, so the structural checks are reached.
    fn reseal(buf: &mut [u8]) {
        seal(buf);
    }

    #[test]
    fn member_layout() {
        let sb = sample_member();
        let buf = sb.encode();
        assert_eq!(buf.len(), SUPERBLOCK_BYTES);
        assert_eq!(&buf[0..8], b"JRAIDMSB");
        assert_eq!(&buf[8..12], &[1, 0, 0, 0]);
        assert_eq!(&buf[24..40], &[1; 16]);
        assert_eq!(&buf[40..56], &[2; 16]);
        assert_eq!(&buf[56..60], &[7, 0, 0, 0]);
        assert_eq!(&buf[60..64], &[4, 0, 0, 0]);
        assert_eq!(&buf[64..68], &[2, 0, 0, 0]);
        assert_eq!(&buf[68..72], &512u32.to_le_bytes());
        assert_eq!(&buf[72..80], &128u64.to_le_bytes());
        assert_eq!(&buf[80..88], &1000u64.to_le_bytes());
        assert_eq!(&buf[88..96], &42u64.to_le_bytes());
        assert_eq!(&buf[96..100], &6u32.to_le_bytes());
        assert_eq!(&buf[104..110], "vol-ü".as_bytes());
        assert_eq!(&buf[168..173], &[1, 2, 3, 1, 0]);
        assert_eq!(&buf[200..216], &[3; 16]);
        assert_eq!(&buf[248..264], &[6; 16]);
        assert!(all_zero(&buf[264..712]));
        assert_eq!(&buf[712..716], &[2, 0, 0, 0]);
        assert_eq!(&buf[716..724], &(1u64 << 30).to_le_bytes());
        assert_eq!(&buf[724..732], &600u64.to_le_bytes());
        assert!(all_zero(&buf[732..]));
        let mut z = buf.clone();
        z[16..20].fill(0);
        assert_eq!(&buf[16..20], &crc32c::crc32c(&z).to_le_bytes());
        assert_eq!(MemberSuperblock::decode(&buf), Ok(sb));
    }

    #[test]
    fn journal_layout() {
        let sb = sample_journal();
        let buf = sb.encode();
        assert_eq!(buf.len(), SUPERBLOCK_BYTES);
        assert_eq!(&buf[0..8], b"JRAIDJSB");
        assert_eq!(&buf[24..40], &[9; 16]);
        assert_eq!(&buf[40..44], &4096u32.to_le_bytes());
        assert_eq!(&buf[44..48], &2u32.to_le_bytes());
        assert_eq!(&buf[48..56], &(1u64 << 20).to_le_bytes());
        assert_eq!(&buf[56..64], &3u64.to_le_bytes());
        assert_eq!(&buf[64..68], &0u32.to_le_bytes());
        assert_eq!(&buf[68..84], &[1; 16]);
        assert_eq!(buf[84], 1);
        assert_eq!(buf[85], b'a');
        assert_eq!(&buf[124..128], &5u32.to_le_bytes());
        assert_eq!(buf[144], JOURNAL_NAME_MAX as u8);
        assert!(all_zero(&buf[184..]));
        let mut z = buf.clone();
        z[16..20].fill(0);
        assert_eq!(&buf[16..20], &crc32c::crc32c(&z).to_le_bytes());
        assert_eq!(JournalSuperblock::decode(&buf), Ok(sb.clone()));
        assert_eq!(
            JournalSuperblock::min_journal_bytes(1 << 20),
            (64 << 10) + (2 << 20)
        );
        assert_eq!(JournalSuperblock::min_journal_bytes(u64::MAX), u64::MAX);
        assert_eq!(sb.slot_offset(0), 64 << 10);
        assert_eq!(sb.slot_offset(1), (64 << 10) + (1 << 20));
    }

    #[test]
    fn kinds_are_not_confused() {
        let m = sample_member().encode();
        let j = sample_journal().encode();
        assert_eq!(
            JournalSuperblock::decode(&m),
            Err(SuperblockError::BadMagic)
        );
        assert_eq!(MemberSuperblock::decode(&j), Err(SuperblockError::BadMagic));
        assert_eq!(
            MemberSuperblock::decode(&[0; SUPERBLOCK_BYTES]),
            Err(SuperblockError::BadMagic)
        );
        assert!(MemberSuperblock::decode(&m[..SUPERBLOCK_BYTES - 1]).is_err());
        assert!(JournalSuperblock::decode(&[]).is_err());
        // A longer buffer (a whole reserved area) is fine.
        let mut long = m.clone();
        long.resize(1 << 20, 0xee);
        assert_eq!(MemberSuperblock::decode(&long), Ok(sample_member()));
    }

    #[test]
    fn member_field_validation() {
        let good = sample_member().encode();
        let cases: Vec<(usize, Vec<u8>, &str)> = vec![
            (M_MEMBERS, 2u32.to_le_bytes().to_vec(), "member count"),
            (M_MEMBERS, 33u32.to_le_bytes().to_vec(), "member count"),
            (M_MEMBER_INDEX, 4u32.to_le_bytes().to_vec(), "member index"),
            (M_NAME_LEN, 64u32.to_le_bytes().to_vec(), "name too long"),
            (M_NAME_LEN, 3u32.to_le_bytes().to_vec(), "after name"),
            (M_NAME, vec![0xff], "UTF-8"),
            (M_STATES + 1, vec![4], "member state"),
            (M_JOURNAL_DROPPED, vec![4], "journal device dropped"),
            (
                M_JOURNAL_AREA,
                ((1u64 << 30) + 512).to_le_bytes().to_vec(),
                "journal area",
            ),
            (
                M_JOURNAL_AREA,
                (1u64 << 20).to_le_bytes().to_vec(),
                "journal area",
            ),
            (
                M_INIT_STRIPES,
                1001u64.to_le_bytes().to_vec(),
                "more stripes initialised",
            ),
            (M_END, vec![1], "reserved"),
            (M_STATES + 1, vec![0], "member state"),
            (M_STATES + 4, vec![1], "past member count"),
            (M_UUIDS + 4 * 16, vec![1], "past member count"),
            (M_BLOCK_SIZE, 1024u32.to_le_bytes().to_vec(), "block size"),
            (M_STRIP_BLOCKS, 0u64.to_le_bytes().to_vec(), "strip blocks"),
            (M_STRIP_BLOCKS, 3u64.to_le_bytes().to_vec(), "strip blocks"),
            (RESERVED0_OFF, vec![1], "reserved"),
            (RESERVED1_OFF, vec![1], "reserved"),
            (M_RESERVED2, vec![1], "reserved"),
            (SUPERBLOCK_BYTES - 1, vec![1], "reserved"),
        ];
        for (off, bytes, want) in cases {
            let mut b = good.clone();
            put(&mut b, off, &bytes);
            assert_eq!(
                MemberSuperblock::decode(&b),
                Err(SuperblockError::BadChecksum)
            );
            reseal(&mut b);
            match MemberSuperblock::decode(&b) {
                Err(SuperblockError::Invalid(why)) => {
                    assert!(why.contains(want), "offset {off}: {why:?} lacks {want:?}")
                }
                other => panic!("offset {off}: {other:?}"),
            }
        }
        let mut b = good.clone();
        put(&mut b, VERSION_OFF, &2u32.to_le_bytes());
        reseal(&mut b);
        assert_eq!(
            MemberSuperblock::decode(&b),
            Err(SuperblockError::BadVersion(2))
        );
    }

    /// A device of a pair: its place and mode round-trip; an index or mode out of range, or a
    /// device count other than 2, is refused.
    #[test]
    fn journal_pair_round_trip_and_validation() {
        let mut sb = sample_journal();
        sb.pair = Some(JournalPair {
            index: 1,
            mode: crate::journal::JournalMode::Mirror,
        });
        let good = sb.encode();
        assert_eq!(JournalSuperblock::decode(&good), Ok(sb));
        for (off, v) in [
            (J_DEVICE_INDEX, 2u32),
            (J_MODE, 2),
            (J_DEVICES, 3),
            (J_DEVICES, 1),
        ] {
            let mut b = good.clone();
            put(&mut b, off, &v.to_le_bytes());
            reseal(&mut b);
            assert_eq!(
                JournalSuperblock::decode(&b),
                Err(SuperblockError::Invalid("bad journal device pair")),
                "offset {off} = {v}"
            );
        }
    }

    #[test]
    fn journal_field_validation() {
        let good = sample_journal().encode();
        let cases: Vec<(usize, Vec<u8>, &str)> = vec![
            (J_VOLUME_COUNT, 65u32.to_le_bytes().to_vec(), "64 volumes"),
            (
                J_VOLUME_COUNT,
                1u32.to_le_bytes().to_vec(),
                "past the volume",
            ),
            (J_VOLUME_COUNT, 3u32.to_le_bytes().to_vec(), "duplicate"),
            (J_BLOCK_SIZE, 2048u32.to_le_bytes().to_vec(), "block size"),
            (J_SLOT_BYTES, 0u64.to_le_bytes().to_vec(), "slot bytes"),
            (J_SLOT_BYTES, 4097u64.to_le_bytes().to_vec(), "slot bytes"),
            (J_SLOT_BYTES, u64::MAX.to_le_bytes().to_vec(), "slot bytes"),
            (J_VOLUMES + JV_NAME_LEN, vec![40], "name too long"),
            (J_VOLUMES + JV_NAME_LEN, vec![0], "after name"),
            (J_VOLUMES + JV_NAME, vec![0xc3], "UTF-8"),
            (
                J_VOLUMES + JV_BYTES,
                0u32.to_le_bytes().to_vec(),
                "duplicate",
            ),
            (J_DEVICES, vec![1], "bad journal device pair"),
            (J_DEVICE_INDEX, vec![1], "bad journal device pair"),
            (J_MODE, vec![1], "bad journal device pair"),
            (J_PAIR_END, vec![1], "past the volume"),
            (RESERVED0_OFF, vec![1], "reserved"),
        ];
        for (off, bytes, want) in cases {
            let mut b = good.clone();
            put(&mut b, off, &bytes);
            assert_eq!(
                JournalSuperblock::decode(&b),
                Err(SuperblockError::BadChecksum)
            );
            reseal(&mut b);
            match JournalSuperblock::decode(&b) {
                Err(SuperblockError::Invalid(why)) => {
                    assert!(why.contains(want), "offset {off}: {why:?} lacks {want:?}")
                }
                other => panic!("offset {off}: {other:?}"),
            }
        }
    }

    #[test]
    #[should_panic(expected = "invalid member superblock")]
    fn encode_rejects_invalid_member() {
        let mut sb = sample_member();
        sb.member_uuids.pop();
        let _ = sb.encode();
    }

    #[test]
    #[should_panic(expected = "invalid journal superblock")]
    fn encode_rejects_invalid_journal() {
        let mut sb = sample_journal();
        sb.volumes[0].name = "y".repeat(JOURNAL_NAME_MAX + 1);
        let _ = sb.encode();
    }

    #[test]
    fn validate_reports() {
        let mut m = sample_member();
        m.name = "n".repeat(MEMBER_NAME_MAX + 1);
        assert!(m.validate().is_err());
        m.name = "n".repeat(MEMBER_NAME_MAX);
        assert!(m.validate().is_ok());
        let mut j = sample_journal();
        j.volumes = (0..=MAX_VOLUMES as u32)
            .map(|i| JournalVolume {
                volume_number: i,
                volume_uuid: [0; 16],
                name: String::new(),
            })
            .collect();
        assert!(j.validate().is_err());
        j.volumes.pop();
        assert_eq!(JournalSuperblock::decode(&j.encode()), Ok(j));
        assert!(SuperblockError::Invalid("x").to_string().contains('x'));
    }

    /// Every single-bit flip anywhere in either superblock is rejected (exhaustive).
    #[test]
    fn every_bit_flip_rejected() {
        let m = sample_member().encode();
        let j = sample_journal().encode();
        for bit in 0..SUPERBLOCK_BYTES * 8 {
            let mut b = m.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(MemberSuperblock::decode(&b).is_err(), "member bit {bit}");
            let mut b = j.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(JournalSuperblock::decode(&b).is_err(), "journal bit {bit}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn member_round_trip(sb in member_sb()) {
            let buf = sb.encode();
            prop_assert_eq!(buf.len(), SUPERBLOCK_BYTES);
            prop_assert_eq!(MemberSuperblock::decode(&buf), Ok(sb));
        }

        #[test]
        fn journal_round_trip(sb in journal_sb()) {
            let buf = sb.encode();
            prop_assert_eq!(buf.len(), SUPERBLOCK_BYTES);
            prop_assert_eq!(JournalSuperblock::decode(&buf), Ok(sb));
        }

        #[test]
        fn member_bit_flips_rejected(
            sb in member_sb(),
            bits in prop::collection::vec(0..SUPERBLOCK_BYTES * 8, 32),
        ) {
            let buf = sb.encode();
            for bit in bits {
                let mut b = buf.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(MemberSuperblock::decode(&b).is_err(), "bit {}", bit);
            }
        }

        #[test]
        fn journal_bit_flips_rejected(
            sb in journal_sb(),
            bits in prop::collection::vec(0..SUPERBLOCK_BYTES * 8, 32),
        ) {
            let buf = sb.encode();
            for bit in bits {
                let mut b = buf.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(JournalSuperblock::decode(&b).is_err(), "bit {}", bit);
            }
        }

        #[test]
        fn garbage_never_panics(buf in prop::collection::vec(any::<u8>(), 0..5000)) {
            let _ = MemberSuperblock::decode(&buf);
            let _ = JournalSuperblock::decode(&buf);
        }

        /// Garbage behind a valid magic, version and checksum exercises the field checks: it
        /// never panics, and whatever decodes re-encodes to the same bytes.
        #[test]
        fn sealed_garbage_never_panics(
            mut buf in prop::collection::vec(any::<u8>(), SUPERBLOCK_BYTES),
            zero_from in 0..SUPERBLOCK_BYTES,
            journal in any::<bool>(),
            small in any::<[u8; 8]>(),
        ) {
            // Mostly-zero tails and small counts make it past more checks.
            buf[zero_from..].fill(0);
            put(&mut buf, VERSION_OFF, &SB_VERSION.to_le_bytes());
            buf[RESERVED0_OFF..COMMON_END].fill(0);
            if journal {
                put(&mut buf, MAGIC_OFF, &JOURNAL_MAGIC);
                put(&mut buf, J_VOLUME_COUNT, &u32::from(small[0] % 70).to_le_bytes());
                put(&mut buf, J_BLOCK_SIZE, &(if small[1] & 1 == 0 { 512u32 } else { 4096 }).to_le_bytes());
                seal(&mut buf);
                if let Ok(sb) = JournalSuperblock::decode(&buf) {
                    prop_assert_eq!(sb.encode(), buf);
                }
            } else {
                put(&mut buf, MAGIC_OFF, &MEMBER_MAGIC);
                put(&mut buf, M_MEMBERS, &u32::from(small[0] % 40).to_le_bytes());
                put(&mut buf, M_MEMBER_INDEX, &u32::from(small[1] % 40).to_le_bytes());
                put(&mut buf, M_NAME_LEN, &u32::from(small[2] % 70).to_le_bytes());
                seal(&mut buf);
                if let Ok(sb) = MemberSuperblock::decode(&buf) {
                    prop_assert_eq!(sb.encode(), buf);
                }
            }
        }
    }
}
