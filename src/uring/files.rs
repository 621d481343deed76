//! Volume directories: create one, open one with every superblock check, read the journal's
//! record slots, scrub parity.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Error;
use crate::engine::Buf;
use crate::journal::{record, JournalConfig, JournalMode};
use crate::layout::{Geometry, RESERVED_BYTES};
use crate::superblock::{
    JournalSuperblock, JournalVolume as JournalEntry, MemberState, MemberSuperblock,
    SuperblockError, JOURNAL_NAME_MAX, JOURNAL_SLOTS_OFFSET, SUPERBLOCK_BYTES,
};

/// Name of the journal file in a volume directory.
pub const JOURNAL_FILE: &str = "journal";

/// Path of member `i` in `dir`.
pub fn member_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("m{i}"))
}

/// Name of the second journal file of a volume whose journal has two devices.
pub const JOURNAL2_FILE: &str = "journal2";

/// Path of the journal in `dir`.
pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

/// Path of the second journal device in `dir` (a journal of two devices).
pub fn journal2_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL2_FILE)
}

/// One open device (file or block device).
#[derive(Debug)]
pub struct Dev {
    /// Where it was opened from.
    pub path: PathBuf,
    /// The open device.
    pub file: File,
    /// Size in bytes.
    pub len: u64,
    /// Opened with `O_DIRECT`.
    pub direct: bool,
}

static FALLBACK_NOTICE: AtomicBool = AtomicBool::new(false);

fn fallback_notice(path: &Path, why: &io::Error) {
    if !FALLBACK_NOTICE.swap(true, Ordering::Relaxed) {
        eprintln!(
            "jraid: O_DIRECT not available on {} ({why}); using buffered I/O with fdatasync for flushes",
            path.display()
        );
    }
}

fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

fn io_err(path: &Path, e: io::Error) -> Error {
    Error::new(format!("{}: {e}", path.display()))
}

/// Size of a file or block device (seeking to the end works for both).
fn dev_len(file: &mut File) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// Read `len` bytes at `off` into an aligned buffer (fit for O_DIRECT).
pub fn read_at(dev: &Dev, off: u64, len: usize) -> io::Result<Buf> {
    let mut b = Buf::new(len);
    dev.file.read_exact_at(b.as_mut_slice(), off)?;
    Ok(b)
}

fn open_buffered(path: &Path, writable: bool) -> Result<Dev, Error> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let len = dev_len(&mut file).map_err(|e| io_err(path, e))?;
    Ok(Dev {
        path: path.to_owned(),
        file,
        len,
        direct: false,
    })
}

/// Open `path` with O_DIRECT when the filesystem accepts it (an aligned superblock read is the
/// probe), else buffered with a one-line notice.
fn open_dev(path: &Path, writable: bool, missing: &str) -> Result<Dev, Error> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::new(format!("{}: missing {missing}", path.display())))
        }
        Err(e) => return Err(io_err(path, e)),
        Ok(m) if m.is_dir() => {
            return Err(Error::new(format!(
                "{}: is a directory, expected a {missing}",
                path.display()
            )))
        }
        Ok(_) => {}
    }
    let opened = OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if is_einval(&e) => {
            fallback_notice(path, &e);
            return open_buffered(path, writable);
        }
        Err(e) => return Err(io_err(path, e)),
    };
    let len = dev_len(&mut file).map_err(|e| io_err(path, e))?;
    let dev = Dev {
        path: path.to_owned(),
        file,
        len,
        direct: true,
    };
    if len >= SUPERBLOCK_BYTES as u64 {
        if let Err(e) = read_at(&dev, 0, SUPERBLOCK_BYTES) {
            if is_einval(&e) {
                fallback_notice(path, &e);
                return open_buffered(path, writable);
            }
            return Err(io_err(path, e));
        }
    }
    Ok(dev)
}

/// Make sure `dev` can do `bs`-byte direct I/O; reopen it buffered otherwise.
fn check_block_size(dev: Dev, bs: u32, writable: bool) -> Result<Dev, Error> {
    if !dev.direct || dev.len < 2 * bs as u64 {
        return Ok(dev);
    }
    match read_at(&dev, bs as u64, bs as usize) {
        Ok(_) => Ok(dev),
        Err(e) if is_einval(&e) => {
            fallback_notice(&dev.path, &e);
            open_buffered(&dev.path, writable)
        }
        Err(e) => Err(io_err(&dev.path, e)),
    }
}

fn uuid_hex(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

/// Open a journal device and read its superblock, checking its size: a journal file
/// (`base` 0), or the journal area at byte `base` of a member (journal on the members).
fn open_journal(jp: &Path, writable: bool, base: u64) -> Result<(Dev, JournalSuperblock), Error> {
    let what = if base == 0 {
        "journal file"
    } else {
        "member file (journal on the members)"
    };
    let jd = open_dev(jp, writable, what)?;
    if jd.len < base + SUPERBLOCK_BYTES as u64 {
        return Err(Error::new(format!(
            "{}: too short ({} bytes) to hold a journal superblock at byte {base}",
            jp.display(),
            jd.len
        )));
    }
    let jbuf = read_at(&jd, base, SUPERBLOCK_BYTES).map_err(|e| io_err(jp, e))?;
    let jsb = JournalSuperblock::decode(jbuf.as_slice()).map_err(|e| sb_error(jp, "journal", e))?;
    let jneed = base + JournalSuperblock::min_journal_bytes(jsb.slot_bytes);
    if jd.len < jneed {
        return Err(Error::new(format!(
            "{}: too short: {} bytes, its record slots need {jneed}",
            jp.display(),
            jd.len
        )));
    }
    let jd = check_block_size(jd, jsb.block_size, writable)?;
    Ok((jd, jsb))
}

fn sb_error(path: &Path, kind: &str, e: SuperblockError) -> Error {
    match e {
        SuperblockError::BadMagic => Error::new(format!(
            "{}: not a jraid {kind} (no {kind} superblock found)",
            path.display()
        )),
        e => Error::new(format!("{}: bad {kind} superblock: {e}", path.display())),
    }
}

/// An opened volume directory: devices and superblocks, all checked against each other.
#[derive(Debug)]
pub struct VolumeFiles {
    /// The directory.
    pub dir: PathBuf,
    /// Member devices, by index.
    pub members: Vec<Dev>,
    /// The journal device (of a journal of two: the first one found).
    pub journal: Dev,
    /// Its index in a journal of two devices (0 otherwise).
    pub journal_index: u32,
    /// The other device of a journal of two, when it was found and checked.
    pub journal_peer: Option<Dev>,
    /// Why the other device of a journal of two is missing (then a restart resyncs every
    /// stripe: [`crate::control::recovery::stripes_to_resync`]).
    pub journal_peer_missing: Option<String>,
    /// Byte offset of the journal on its devices: 0 for journal files, the members' journal
    /// area with the journal on the members (devices 0 and 1 are then members 0 and 1).
    pub journal_base: u64,
    /// Member superblocks, by index.
    pub member_sbs: Vec<MemberSuperblock>,
    /// The journal superblock.
    pub journal_sb: JournalSuperblock,
    /// Shape of the volume.
    pub geo: Geometry,
}

impl VolumeFiles {
    /// Open the volume in `dir` and check it: every member present, long enough, of this volume
    /// and at its index, with the same geometry; the journal present, long enough, the one the
    /// members name, and listing this volume.
    pub fn open(dir: &Path, writable: bool) -> Result<VolumeFiles, Error> {
        Self::open_inner(dir, writable, None)
    }

    /// Open the volume in `dir` with the journal at `journal` instead of its own (which may be
    /// lost): every member check applies, but the members need not name this journal yet
    /// (a new journal before [`VolumeFiles::name_journal`]).
    pub fn open_with_journal(dir: &Path, journal: &Path) -> Result<VolumeFiles, Error> {
        Self::open_inner(dir, true, Some(journal))
    }

    fn open_inner(
        dir: &Path,
        writable: bool,
        new_journal: Option<&Path>,
    ) -> Result<VolumeFiles, Error> {
        if !dir.is_dir() {
            return Err(Error::new(format!(
                "{}: no such volume directory",
                dir.display()
            )));
        }
        let p0 = member_path(dir, 0);
        let d0 = open_dev(&p0, writable, "member file (no jraid volume here?)")?;
        let sb0 = read_member_sb(&d0)?;
        let bs = sb0.block_size;
        let n = sb0.members;
        let strip_bytes = sb0.strip_blocks * bs as u64;
        let data_blocks = RESERVED_BYTES / bs as u64 + sb0.stripes * sb0.strip_blocks;
        let geo = Geometry::new(n, strip_bytes, bs, data_blocks)
            .map_err(|e| Error::new(format!("{}: bad geometry: {e}", p0.display())))?;
        if geo.stripes != sb0.stripes {
            return Err(Error::new(format!(
                "{}: bad geometry: {} stripes recorded, layout gives {}",
                p0.display(),
                sb0.stripes,
                geo.stripes
            )));
        }
        let need = (geo.member_blocks_used() * bs as u64).max(sb0.journal_area);
        let mut members = vec![d0];
        let mut sbs = vec![sb0.clone()];
        for i in 1..n {
            let path = member_path(dir, i);
            let dev = open_dev(&path, writable, &format!("member file (member {i} of {n})"))?;
            let sb = read_member_sb(&dev)?;
            if sb.volume_uuid != sb0.volume_uuid {
                return Err(Error::new(format!(
                    "{}: belongs to another volume (volume uuid {}, {} has {})",
                    path.display(),
                    uuid_hex(&sb.volume_uuid),
                    p0.display(),
                    uuid_hex(&sb0.volume_uuid)
                )));
            }
            if sb.member_index != i {
                return Err(Error::new(format!(
                    "{}: holds member {} of this volume, not member {i} (files renamed?)",
                    path.display(),
                    sb.member_index
                )));
            }
            // Member identities are checked below, against the newest superblock: a member
            // replaced since has another identity in it.
            if sb.members != n
                || sb.block_size != bs
                || sb.strip_blocks != sb0.strip_blocks
                || sb.stripes != sb0.stripes
                || sb.journal_uuid != sb0.journal_uuid
                || sb.volume_number != sb0.volume_number
                || sb.journal_area != sb0.journal_area
            {
                return Err(Error::new(format!(
                    "{}: superblock disagrees with {} on the volume's geometry or identity",
                    path.display(),
                    p0.display()
                )));
            }
            sbs.push(sb);
            members.push(dev);
        }
        let mut devs = Vec::new();
        for d in members {
            if d.len < need {
                return Err(Error::new(format!(
                    "{}: too short: {} bytes, the volume needs {need} bytes per member",
                    d.path.display(),
                    d.len
                )));
            }
            devs.push(check_block_size(d, bs, writable)?);
        }
        let base = sb0.journal_area;
        // Where the two devices of a journal of two are, and whether each may be used.
        let (jp, jp2, usable2) = if base == 0 {
            let jp = new_journal.map_or_else(|| journal_path(dir), Path::to_owned);
            let jp2 = journal2_path(dir);
            let usable2 = new_journal.is_none() && jp2.exists();
            (jp, jp2, usable2)
        } else {
            // Journal on the members: device k is member k's journal area, a device only while
            // the member is in service (a member out of service takes its copy with it).
            if let Some(j) = new_journal {
                return Err(Error::new(format!(
                    "{}: the journal of this volume is on its members; it takes no other journal",
                    j.display()
                )));
            }
            let newest = crate::control::assembly::newest(&sbs).expect("members");
            let found: Vec<Option<&MemberSuperblock>> = sbs.iter().map(Some).collect();
            let uses = crate::control::assembly::decide(newest, &found);
            let (m0, m1) = (member_path(dir, 0), member_path(dir, 1));
            match (uses[0].in_service(), uses[1].in_service()) {
                (true, u1) => (m0, m1, u1),
                (false, true) => (m1, m0, false),
                (false, false) => {
                    return Err(Error::new(format!(
                        "{}: members 0 and 1, which hold the journal, are both out of service",
                        dir.display()
                    )))
                }
            }
        };
        // A journal of two devices goes on with either: `journal` lost, `journal2` serves.
        let (jp, jd, jsb) = match open_journal(&jp, writable, base) {
            Ok((d, sb)) => (jp, d, sb),
            Err(e) if usable2 => match open_journal(&jp2, writable, base) {
                Ok((d, sb)) if sb.pair.is_some() => {
                    eprintln!(
                        "jraid: {e}; going on with the other journal device {}",
                        jp2.display()
                    );
                    (jp2.clone(), d, sb)
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        if new_journal.is_none() && jsb.journal_uuid != sb0.journal_uuid {
            return Err(Error::new(format!(
                "{}: a foreign journal (journal uuid {}, the members expect {})",
                jp.display(),
                uuid_hex(&jsb.journal_uuid),
                uuid_hex(&sb0.journal_uuid)
            )));
        }
        if !jsb
            .volumes
            .iter()
            .any(|v| v.volume_uuid == sb0.volume_uuid && v.volume_number == sb0.volume_number)
        {
            return Err(Error::new(format!(
                "{}: the journal does not list this volume (number {}, uuid {})",
                jp.display(),
                sb0.volume_number,
                uuid_hex(&sb0.volume_uuid)
            )));
        }
        let journal_index = jsb.pair.map_or(0, |p| p.index);
        if base != 0
            && (jsb.pair.map(|p| p.mode) != Some(JournalMode::Mirror)
                || jp != member_path(dir, journal_index))
        {
            return Err(Error::new(format!(
                "{}: the journal area at byte {base} is not this member's copy of a mirrored journal",
                jp.display()
            )));
        }
        let (mut journal_peer, mut journal_peer_missing) = (None, None);
        if let Some(pair) = jsb.pair {
            let other = match (base, jp == jp2) {
                (0, true) => journal_path(dir),
                (0, false) => jp2.clone(),
                (_, _) => member_path(dir, 1 - journal_index),
            };
            // Of the members' copies, the other is in service when the first one found was
            // member 0's and member 1 serves, or when member 0's copy failed to open.
            let other_in_service = base == 0 || (journal_index == 0 && usable2) || jp == jp2;
            match open_journal(&other, writable, base) {
                _ if !other_in_service => {
                    journal_peer_missing = Some(format!(
                        "member {} is out of service and its journal copy with it",
                        1 - journal_index
                    ))
                }
                Ok((d, sb))
                    if sb.journal_uuid == jsb.journal_uuid
                        && sb.block_size == jsb.block_size
                        && sb.slot_bytes == jsb.slot_bytes
                        && sb
                            .pair
                            .is_some_and(|p| p.index != pair.index && p.mode == pair.mode) =>
                {
                    journal_peer = Some(d)
                }
                Ok(_) => {
                    journal_peer_missing = Some(format!(
                        "{}: not the other device of this journal",
                        other.display()
                    ))
                }
                Err(e) => journal_peer_missing = Some(e.to_string()),
            }
        }
        Ok(VolumeFiles {
            dir: dir.to_owned(),
            members: devs,
            journal: jd,
            journal_index,
            journal_peer,
            journal_peer_missing,
            journal_base: base,
            member_sbs: sbs,
            journal_sb: jsb,
            geo,
        })
    }

    /// Journal device `k` (0 or 1; of a journal of one device, 0 only), when present.
    pub fn journal_dev(&self, k: u32) -> Option<&Dev> {
        if k == self.journal_index {
            Some(&self.journal)
        } else if self.journal_sb.pair.is_some() && k < 2 {
            self.journal_peer.as_ref()
        } else {
            None
        }
    }

    /// Journal devices: 1, or 2 for a journal of two (present or not).
    pub fn journal_devices(&self) -> u32 {
        if self.journal_sb.pair.is_some() {
            2
        } else {
            1
        }
    }

    /// What assembly does with each member ([`crate::control::assembly`], as SPDK's examine):
    /// a member recorded failed, or a file that missed a state change or held a replaced
    /// member, stays out of service.
    pub fn member_uses(&self) -> Vec<crate::control::assembly::MemberUse> {
        use crate::control::assembly;
        let newest = assembly::newest(&self.member_sbs).expect("members");
        let found: Vec<Option<&MemberSuperblock>> = self.member_sbs.iter().map(Some).collect();
        assembly::decide(newest, &found)
    }

    /// The newest member superblock (highest seq): the volume's truth.
    pub fn newest_sb(&self) -> MemberSuperblock {
        crate::control::assembly::newest(&self.member_sbs)
            .cloned()
            .expect("a volume has members")
    }

    /// Member states as the newest member superblock (highest seq) records them: a member
    /// recorded failed (or still being rebuilt) stays out of service.
    pub fn recorded_states(&self) -> Vec<MemberState> {
        self.newest_sb().member_states
    }

    /// Prepare `with` (a file, created or truncated to the member size, or a block device) to
    /// replace member `member`: it gets a superblock saying "rebuilding" under a new identity,
    /// the other members' superblocks say so too, then `<dir>/m<member>` becomes a symlink to
    /// it (the old file, if any, is kept as `m<member>.replaced`). Opening the volume then
    /// serves it degraded until [`super::Engine::rebuild`] has rebuilt the member. Safe to
    /// repeat after a crash.
    pub fn prepare_replacement(&self, member: u32, with: &Path) -> Result<(), Error> {
        let n = self.geo.members;
        if member >= n {
            return Err(Error::new(format!(
                "no member {member} (the volume has members 0..{})",
                n - 1
            )));
        }
        let mut states = self.recorded_states();
        if states[member as usize] == MemberState::Active {
            return Err(Error::new(format!(
                "member {member} is in service: mark it failed first (jraid fail)"
            )));
        }
        if let Some(other) =
            (0..n as usize).find(|&i| i != member as usize && states[i] != MemberState::Active)
        {
            return Err(Error::new(format!(
                "member {other} is out of service too: the volume has nothing to rebuild from"
            )));
        }
        let target = std::fs::canonicalize(with).unwrap_or_else(|_| with.to_owned());
        if self.members.iter().enumerate().any(|(i, d)| {
            i != member as usize && std::fs::canonicalize(&d.path).ok().as_deref() == Some(&target)
        }) {
            return Err(Error::new(format!(
                "{}: already a member of this volume",
                with.display()
            )));
        }
        let need = (self.geo.member_blocks_used() * self.geo.block_size as u64).max(
            self.journal_base + JournalSuperblock::min_journal_bytes(self.journal_sb.slot_bytes),
        );
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(with)
            .map_err(|e| io_err(with, e))?;
        let meta = f.metadata().map_err(|e| io_err(with, e))?;
        if meta.is_file() && meta.len() < need {
            f.set_len(need).map_err(|e| io_err(with, e))?;
        }
        let mut dev = Dev {
            path: with.to_owned(),
            len: 0,
            direct: false,
            file: f,
        };
        dev.len = dev_len(&mut dev.file).map_err(|e| io_err(with, e))?;
        if dev.len < need {
            return Err(Error::new(format!(
                "{}: too short: {} bytes, the volume needs {need} bytes per member",
                with.display(),
                dev.len
            )));
        }
        if self.journal_base != 0 && member < 2 {
            self.format_journal_copy(&dev, member)?;
        }
        let newest = self.newest_sb();
        let mut uuids = newest.member_uuids.clone();
        uuids[member as usize] = random_bytes::<16>()?;
        states[member as usize] = MemberState::Rebuilding;
        let seq = newest.seq + 1;
        let sb_for = |i: u32| MemberSuperblock {
            member_index: i,
            seq,
            member_states: states.clone(),
            member_uuids: uuids.clone(),
            ..newest.clone()
        };
        write_member_sb(&dev.file, with, &sb_for(member))?;
        for (i, d) in self.members.iter().enumerate() {
            if i != member as usize {
                write_member_sb(&d.file, &d.path, &sb_for(i as u32))?;
            }
        }
        let slot = member_path(&self.dir, member);
        if std::fs::canonicalize(&slot).ok().as_deref() != Some(&target) {
            let tmp = self.dir.join(format!("m{member}.new"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).map_err(|e| io_err(&tmp, e))?;
            if slot.exists() {
                let old = self.dir.join(format!("m{member}.replaced"));
                std::fs::rename(&slot, &old).map_err(|e| io_err(&slot, e))?;
            }
            std::fs::rename(&tmp, &slot).map_err(|e| io_err(&slot, e))?;
        }
        Ok(())
    }

    /// With the journal on the members: give a replacement for member `k` (0 or 1) a blank copy
    /// of the journal in its journal area (superblock, both record areas zeroed). It serves as
    /// journal device k once the member is rebuilt and in service; until a checkpoint reaches
    /// it, a restart reads the newest records from the other copy, which holds them all.
    fn format_journal_copy(&self, dev: &Dev, k: u32) -> Result<(), Error> {
        let mut jsb = self.journal_sb.clone();
        jsb.pair = jsb
            .pair
            .map(|p| crate::superblock::JournalPair { index: k, ..p });
        let zeros = Buf::new(1 << 20);
        let (start, end) = (
            self.journal_base + JOURNAL_SLOTS_OFFSET,
            self.journal_base + JournalSuperblock::min_journal_bytes(jsb.slot_bytes),
        );
        let mut off = start;
        while off < end {
            let n = (end - off).min(1 << 20) as usize;
            dev.file
                .write_all_at(&zeros.as_slice()[..n], off)
                .map_err(|e| io_err(&dev.path, e))?;
            off += n as u64;
        }
        let mut b = Buf::new(SUPERBLOCK_BYTES);
        b.as_mut_slice().copy_from_slice(&jsb.encode());
        dev.file
            .write_all_at(b.as_slice(), self.journal_base)
            .and_then(|()| dev.file.sync_data())
            .map_err(|e| io_err(&dev.path, e))
    }

    /// Rewrite every member's superblock to name this journal (after a full resync onto it),
    /// then make `<dir>/journal` a symlink to it (the old file, if any, kept as
    /// `journal.replaced`).
    pub fn name_journal(&self) -> Result<(), Error> {
        let newest = self.newest_sb();
        for (i, d) in self.members.iter().enumerate() {
            let sb = MemberSuperblock {
                member_index: i as u32,
                seq: newest.seq + 1,
                journal_uuid: self.journal_sb.journal_uuid,
                ..newest.clone()
            };
            write_member_sb(&d.file, &d.path, &sb)?;
        }
        let slot = journal_path(&self.dir);
        let target =
            std::fs::canonicalize(&self.journal.path).unwrap_or_else(|_| self.journal.path.clone());
        if std::fs::canonicalize(&slot).ok().as_deref() != Some(&target) {
            let tmp = self.dir.join("journal.new");
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).map_err(|e| io_err(&tmp, e))?;
            if slot.symlink_metadata().is_ok() {
                let old = self.dir.join("journal.replaced");
                std::fs::rename(&slot, &old).map_err(|e| io_err(&slot, e))?;
            }
            std::fs::rename(&tmp, &slot).map_err(|e| io_err(&slot, e))?;
        }
        Ok(())
    }

    /// A recorder of member states into these members' superblocks.
    pub fn state_recorder(&self) -> Result<StateRecorder, Error> {
        let members = self
            .members
            .iter()
            .map(|d| {
                d.file
                    .try_clone()
                    .map(|f| (d.path.clone(), f))
                    .map_err(|e| io_err(&d.path, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(StateRecorder {
            members,
            template: self.newest_sb(),
            seq: self.member_sbs.iter().map(|sb| sb.seq).max().unwrap_or(0),
        })
    }

    /// The superblocks of the members in `dir` (no other check): for tools that work on a
    /// volume whose journal is lost.
    pub fn open_members(dir: &Path) -> Result<Vec<MemberSuperblock>, Error> {
        let mut out = Vec::new();
        for i in 0.. {
            let p = member_path(dir, i);
            if i > 0 && i >= out.first().map_or(0, |sb: &MemberSuperblock| sb.members) {
                break;
            }
            let d = open_dev(&p, false, "member file (no jraid volume here?)")?;
            out.push(read_member_sb(&d)?);
        }
        Ok(out)
    }

    /// The volume's number on its journal.
    pub fn volume_number(&self) -> u32 {
        self.member_sbs[0].volume_number
    }

    /// Whether every device runs with O_DIRECT.
    pub fn direct(&self) -> bool {
        self.members.iter().all(|d| d.direct)
            && self.journal.direct
            && self.journal_peer.as_ref().is_none_or(|d| d.direct)
    }

    /// Journal configuration for these devices (each journal device holding both slots;
    /// every device treated as having a volatile cache).
    pub fn journal_config(&self) -> JournalConfig {
        let j = &self.journal_sb;
        let bs = j.block_size as u64;
        let mut cfg = JournalConfig::new(
            j.journal_uuid,
            j.block_size,
            j.slot_bytes,
            [
                (0, (self.journal_base + j.slot_offset(0)) / bs),
                (0, (self.journal_base + j.slot_offset(1)) / bs),
            ],
        );
        cfg.volatile_cache = true;
        cfg.devices = self.journal_devices();
        if let Some(p) = j.pair {
            cfg.mode = p.mode;
        }
        cfg.advise_state_memory = Some(super::sys::advise_huge_pages);
        cfg.prefetch = Some(super::sys::prefetch);
        cfg
    }

    /// Read both record slots of every journal device present and return the newest valid
    /// record over them (None: no record written yet), and whether every device was there
    /// ([`record::newest_of`]).
    pub fn newest_record(&self) -> Result<record::Newest, Error> {
        let j = &self.journal_sb;
        let read = |d: &Dev, k: usize| {
            read_at(
                d,
                self.journal_base + j.slot_offset(k),
                j.slot_bytes as usize,
            )
            .map_err(|e| io_err(&d.path, e))
        };
        let mut areas = Vec::new();
        for k in 0..self.journal_devices() {
            areas.push(match self.journal_dev(k) {
                Some(d) => Some((read(d, 0)?, read(d, 1)?)),
                None => None,
            });
        }
        let views: Vec<Option<(&[u8], &[u8])>> = areas
            .iter()
            .map(|a| a.as_ref().map(|(x, y)| (x.as_slice(), y.as_slice())))
            .collect();
        record::newest_of(&views, &j.journal_uuid, j.block_size as usize)
            .map_err(|e| Error::new(format!("{}: {e}", self.journal.path.display())))
    }

    /// Check every stripe's parity by reading all members directly (the volume must be
    /// quiescent). `progress` gets the stripes checked so far.
    pub fn scrub(&self, mut progress: impl FnMut(u64)) -> Result<ScrubReport, Error> {
        let geo = self.geo;
        let bs = geo.block_size as u64;
        let strip_bytes = geo.strip_blocks * bs;
        let per = (1u64 << 20).div_ceil(strip_bytes).max(1);
        let mut report = ScrubReport {
            stripes: geo.stripes,
            ..ScrubReport::default()
        };
        let mut acc = Buf::new((per * strip_bytes) as usize);
        let mut tmp = Buf::new((per * strip_bytes) as usize);
        let mut s = 0;
        while s < geo.stripes {
            let k = per.min(geo.stripes - s);
            let len = (k * strip_bytes) as usize;
            acc.set_len(len);
            tmp.set_len(len);
            let off = geo.member_lba(s, 0) * bs;
            for (m, dev) in self.members.iter().enumerate() {
                let dst = if m == 0 {
                    acc.as_mut_slice()
                } else {
                    tmp.as_mut_slice()
                };
                dev.file
                    .read_exact_at(dst, off)
                    .map_err(|e| io_err(&dev.path, e))?;
                if m > 0 {
                    crate::parity::xor_acc(acc.as_mut_slice(), tmp.as_slice());
                }
            }
            for (i, strip) in acc.as_slice().chunks(strip_bytes as usize).enumerate() {
                if strip.iter().any(|&b| b != 0) {
                    report.mismatches += 1;
                    if report.first.len() < 16 {
                        report.first.push(s + i as u64);
                    }
                }
            }
            s += k;
            progress(s);
        }
        Ok(report)
    }
}

/// Writes member states into the members' superblocks (each with the next seq), as SPDK's
/// member watcher does: a failure recorded there keeps the member out after a restart.
pub struct StateRecorder {
    members: Vec<(PathBuf, File)>,
    template: MemberSuperblock,
    seq: u64,
}

impl StateRecorder {
    /// Write `states` (and `journal_dropped`, when given: else what was last written) to every
    /// member it does not mark out of service, then make them durable.
    pub fn record(
        &mut self,
        states: &[MemberState],
        journal_dropped: Option<u8>,
    ) -> Result<(), Error> {
        self.seq += 1;
        if let Some(m) = journal_dropped {
            self.template.journal_dropped = m;
        }
        for (i, (path, file)) in self.members.iter().enumerate() {
            if states[i] != MemberState::Active {
                continue;
            }
            let sb = MemberSuperblock {
                member_index: i as u32,
                seq: self.seq,
                member_states: states.to_vec(),
                ..self.template.clone()
            };
            write_member_sb(file, path, &sb)?;
        }
        Ok(())
    }
}

/// Write `sb` at the start of member device `file` (an aligned, whole superblock area, fit for
/// O_DIRECT) and make it durable.
fn write_member_sb(file: &File, path: &Path, sb: &MemberSuperblock) -> Result<(), Error> {
    let image = sb.encode();
    let mut b = Buf::new(SUPERBLOCK_BYTES);
    b.as_mut_slice()[..image.len()].copy_from_slice(&image);
    file.write_all_at(b.as_slice(), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_err(path, e))
}

fn read_member_sb(d: &Dev) -> Result<MemberSuperblock, Error> {
    if d.len < SUPERBLOCK_BYTES as u64 {
        return Err(Error::new(format!(
            "{}: too short ({} bytes) to hold a member superblock",
            d.path.display(),
            d.len
        )));
    }
    let b = read_at(d, 0, SUPERBLOCK_BYTES).map_err(|e| io_err(&d.path, e))?;
    MemberSuperblock::decode(b.as_slice()).map_err(|e| sb_error(&d.path, "member", e))
}

/// Outcome of [`VolumeFiles::scrub`].
#[derive(Debug, Default, Clone)]
pub struct ScrubReport {
    /// Stripes checked.
    pub stripes: u64,
    /// Stripes whose parity does not match their data.
    pub mismatches: u64,
    /// The first few mismatching stripes.
    pub first: Vec<u64>,
}

/// What [`create`] makes.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Volume directory (created if missing).
    pub dir: PathBuf,
    /// Members, parity included.
    pub members: u32,
    /// Bytes per member file (rounded down to the block size).
    pub member_size: u64,
    /// Strip size in bytes.
    pub strip_bytes: u64,
    /// 512 or 4096.
    pub block_size: u32,
    /// Bytes of the journal file (superblock area plus two record slots).
    pub journal_size: u64,
    /// A journal of two devices (`journal` and `journal2`, each `journal_size` bytes), records
    /// spread over them in this mode; `None`: one journal file.
    pub journal_pair: Option<JournalMode>,
    /// Where the journal files live when not in `dir` (a file on another disk): by device,
    /// `None` for `dir/journal` (`dir/journal2`). A path given is made (it must not exist) and
    /// `dir/journal` (`dir/journal2`) becomes a symbolic link to it.
    pub journal_paths: [Option<PathBuf>; 2],
    /// Journal on the members: no journal file; every member reserves `journal_size` bytes at
    /// its end, and members 0 and 1 hold a mirrored journal there (a member lost takes one
    /// copy; the other serves). Excludes `journal_pair` and `journal_paths`.
    pub journal_on_members: bool,
    /// Volume name (at most 39 bytes).
    pub name: String,
}

/// What [`create`] made.
#[derive(Debug, Clone)]
pub struct Created {
    /// Shape of the new volume.
    pub geo: Geometry,
    /// Bytes per journal record slot.
    pub slot_bytes: u64,
}

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    let f = File::open("/dev/urandom").map_err(|e| Error::new(format!("/dev/urandom: {e}")))?;
    f.read_exact_at(&mut b, 0)
        .map_err(|e| Error::new(format!("/dev/urandom: {e}")))?;
    Ok(b)
}

/// Create a new journal file at `path` (`size` bytes: superblock area and two record slots)
/// for the volume in `dir`, serving it under its current number. The file must not exist.
pub fn create_journal(dir: &Path, path: &Path, size: u64) -> Result<(), Error> {
    let members = VolumeFiles::open_members(dir)?;
    let sb = crate::control::assembly::newest(&members)
        .cloned()
        .expect("a volume has members");
    let bs = sb.block_size as u64;
    let slot_bytes = (size.saturating_sub(JOURNAL_SLOTS_OFFSET) / 2) / bs * bs;
    let min_slot = 4096u64.max(bs);
    if slot_bytes < min_slot {
        return Err(Error::new(format!(
            "journal size {size} too small: at least {} bytes are needed",
            JournalSuperblock::min_journal_bytes(min_slot)
        )));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let len = JournalSuperblock::min_journal_bytes(slot_bytes);
    let r = (|| {
        f.set_len(len).map_err(|e| io_err(path, e))?;
        let jsb = JournalSuperblock {
            journal_uuid: random_bytes()?,
            pair: None,
            block_size: sb.block_size,
            slot_bytes,
            seq: 1,
            volumes: vec![JournalEntry {
                volume_number: sb.volume_number,
                volume_uuid: sb.volume_uuid,
                name: sb.name.chars().take(JOURNAL_NAME_MAX).collect(),
            }],
        };
        jsb.validate()
            .map_err(|e| Error::new(format!("bad journal: {e}")))?;
        f.write_all_at(&jsb.encode(), 0)
            .map_err(|e| io_err(path, e))?;
        f.sync_all().map_err(|e| io_err(path, e))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Create a volume: member files with their superblocks and a journal with its superblock.
/// Refuses to overwrite anything; on any error removes what it made.
pub fn create(o: &CreateOptions) -> Result<Created, Error> {
    let bs = o.block_size;
    if bs != 512 && bs != 4096 {
        return Err(Error::new(format!(
            "bad geometry: block size must be 512 or 4096, got {bs}"
        )));
    }
    let slot_bytes =
        (o.journal_size.saturating_sub(JOURNAL_SLOTS_OFFSET) / 2) / bs as u64 * bs as u64;
    // With the journal on the members, the stripes end before the journal area at the end.
    let journal_area = if o.journal_on_members {
        if o.journal_pair.is_some() || o.journal_paths.iter().any(Option::is_some) {
            return Err(Error::new(
                "the journal on the members takes no journal file and no journal mode",
            ));
        }
        let len = JournalSuperblock::min_journal_bytes(slot_bytes);
        (o.member_size / bs as u64 * bs as u64).saturating_sub(len) / 4096 * 4096
    } else {
        0
    };
    let data_bytes = if o.journal_on_members {
        journal_area
    } else {
        o.member_size
    };
    let geo = Geometry::new(o.members, o.strip_bytes, bs, data_bytes / bs as u64)
        .map_err(|e| Error::new(format!("bad geometry: {e}")))?;
    if o.name.len() > JOURNAL_NAME_MAX {
        return Err(Error::new(format!(
            "volume name longer than {JOURNAL_NAME_MAX} bytes"
        )));
    }
    let min_slot = 4096u64.max(bs as u64);
    if slot_bytes < min_slot {
        return Err(Error::new(format!(
            "journal size {} too small: at least {} bytes are needed",
            o.journal_size,
            JournalSuperblock::min_journal_bytes(min_slot)
        )));
    }
    if o.journal_paths[1].is_some() && o.journal_pair.is_none() {
        return Err(Error::new(
            "a second journal path needs a journal of two devices",
        ));
    }
    let mut paths: Vec<PathBuf> = (0..o.members).map(|i| member_path(&o.dir, i)).collect();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let in_dir = [journal_path(&o.dir), journal2_path(&o.dir)];
    let devices = match (o.journal_on_members, o.journal_pair) {
        (true, _) => 0,
        (false, Some(_)) => 2,
        (false, None) => 1,
    };
    for (link, given) in in_dir.iter().zip(&o.journal_paths).take(devices) {
        match given {
            None => paths.push(link.clone()),
            Some(p) => {
                paths.push(p.clone());
                links.push((link.clone(), p.clone()));
            }
        }
    }
    for p in paths.iter().chain(links.iter().map(|(l, _)| l)) {
        if p.symlink_metadata().is_ok() {
            return Err(Error::new(format!(
                "{}: already exists; refusing to overwrite it",
                p.display()
            )));
        }
    }
    let made_dir = !o.dir.exists();
    if made_dir {
        std::fs::create_dir_all(&o.dir).map_err(|e| io_err(&o.dir, e))?;
    }
    let mut made: Vec<PathBuf> = Vec::new();
    let r = create_files(o, geo, slot_bytes, journal_area, &paths, &mut made).and_then(|()| {
        for (link, target) in &links {
            // An absolute target, so the link works from anywhere.
            let target = std::fs::canonicalize(target).map_err(|e| io_err(target, e))?;
            std::os::unix::fs::symlink(&target, link).map_err(|e| io_err(link, e))?;
            made.push(link.clone());
        }
        Ok(())
    });
    if r.is_err() {
        for p in made.iter().rev() {
            let _ = std::fs::remove_file(p);
        }
        if made_dir {
            let _ = std::fs::remove_dir(&o.dir);
        }
    }
    r.map(|()| Created { geo, slot_bytes })
}

fn create_files(
    o: &CreateOptions,
    geo: Geometry,
    slot_bytes: u64,
    journal_area: u64,
    paths: &[PathBuf],
    made: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    let bs = o.block_size as u64;
    let volume_uuid: [u8; 16] = random_bytes()?;
    let journal_uuid: [u8; 16] = random_bytes()?;
    let member_uuids = (0..o.members)
        .map(|_| random_bytes::<16>())
        .collect::<Result<Vec<_>, _>>()?;
    let member_len = o.member_size / bs * bs;
    let journal_len = JournalSuperblock::min_journal_bytes(slot_bytes);
    let journal_sb = |journal_uuid, pair: Option<(u32, JournalMode)>| JournalSuperblock {
        journal_uuid,
        pair: pair.map(|(index, mode)| crate::superblock::JournalPair { index, mode }),
        block_size: o.block_size,
        slot_bytes,
        seq: 1,
        volumes: vec![JournalEntry {
            volume_number: 0,
            volume_uuid,
            name: o.name.clone(),
        }],
    };
    let new_file = |p: &Path, made: &mut Vec<PathBuf>| -> Result<File, Error> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(|e| io_err(p, e))?;
        made.push(p.to_owned());
        Ok(f)
    };
    for i in 0..o.members {
        let p = &paths[i as usize];
        let f = new_file(p, made)?;
        f.set_len(member_len).map_err(|e| io_err(p, e))?;
        super::sys::preallocate(&f, member_len);
        let sb = MemberSuperblock {
            volume_uuid,
            journal_uuid,
            volume_number: 0,
            name: o.name.clone(),
            members: o.members,
            member_index: i,
            strip_blocks: geo.strip_blocks,
            block_size: o.block_size,
            stripes: geo.stripes,
            seq: 1,
            member_states: vec![MemberState::Active; o.members as usize],
            member_uuids: member_uuids.clone(),
            journal_dropped: 0,
            journal_area,
            // Every member file is new (`create_new`) and sparse: it reads as zeros, and zero
            // parity matches zero data, so every stripe is initialised as created.
            init_stripes: geo.stripes,
        };
        sb.validate()
            .map_err(|e| Error::new(format!("bad geometry: {e}")))?;
        f.write_all_at(&sb.encode(), 0).map_err(|e| io_err(p, e))?;
        if o.journal_on_members && i < 2 {
            let jsb = journal_sb(journal_uuid, Some((i, JournalMode::Mirror)));
            f.write_all_at(&jsb.encode(), journal_area)
                .map_err(|e| io_err(p, e))?;
        }
        f.sync_all().map_err(|e| io_err(p, e))?;
    }
    for (k, p) in paths[o.members as usize..].iter().enumerate() {
        let f = new_file(p, made)?;
        f.set_len(journal_len).map_err(|e| io_err(p, e))?;
        super::sys::preallocate(&f, journal_len);
        let jsb = journal_sb(journal_uuid, o.journal_pair.map(|mode| (k as u32, mode)));
        f.write_all_at(&jsb.encode(), 0).map_err(|e| io_err(p, e))?;
        f.sync_all().map_err(|e| io_err(p, e))?;
    }
    if let Ok(d) = File::open(&o.dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
