//! Bringing volumes up: `bdev_jraid_create` (validate, claim, format or re-assemble) and
//! assembly from superblocks (examine), both ending in recovery and `spdk_bdev_register`.
//! Every step runs on the app thread; a failure closes (and so unclaims) whatever it opened.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use spdk_sys as sys;

use super::base::{BaseBdev, BaseError};
use super::bdev::{self, journal_name, registry, SbLease, SpdkJournal, SpdkVolume, VolumeSpec};
use super::channel::{self, pump};
use super::ffi::{self, cstring, errlog, guard, noticelog, warnlog};
use super::json::uuid_string;
use super::superblocks::{self, read_bytes, read_sb, write_sb, Join};
use crate::control::{self, PassKind, Stripes};
use crate::engine::Msg;
use crate::journal::{record, Journal, JournalConfig, JournalMode};
use crate::layout::{Geometry, MAX_STRIP_BYTES, MIN_STRIP_BYTES};
use crate::superblock::{
    JournalPair, JournalSuperblock, JournalVolume as JournalEntry, MemberState, MemberSuperblock,
    JOURNAL_NAME_MAX, JOURNAL_SLOTS_OFFSET, MAX_MEMBERS, MAX_VOLUMES, MIN_MEMBERS,
};

/// Largest record slot jraid formats (bounds the memory a journal's listed set may take).
const MAX_SLOT_BYTES: u64 = 16 << 20;
/// Resyncs recovery keeps in flight.
const RESYNC_DEPTH: usize = 32;

/// Limits of the resync after a crash (while the volume serves I/O): stripes in flight and a
/// MiB/s cap (0: none). Set by `bdev_jraid_set_options`; a running recovery follows changes.
static RECOVERY_LIMITS: Mutex<(usize, u64)> = Mutex::new((RESYNC_DEPTH, 0));
/// Whether a volume serves I/O while the stripes listed at a crash are resynced (else it is
/// registered only once they are). Set by `bdev_jraid_set_options recovery_online`.
static RECOVERY_ONLINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether volumes serve I/O while they resync after a crash (see `RECOVERY_ONLINE`).
pub(crate) fn recovery_online() -> bool {
    RECOVERY_ONLINE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set [`recovery_online`].
pub(crate) fn set_recovery_online(on: bool) {
    RECOVERY_ONLINE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The limits of the resync after a crash: (window, MiB/s cap; 0: none).
pub(crate) fn recovery_limits() -> (usize, u64) {
    *RECOVERY_LIMITS.lock().unwrap_or_else(|e| e.into_inner())
}

static INIT_LIMITS: Mutex<(usize, u64)> = Mutex::new((super::rebuild::DEFAULT_WINDOW, 0));

/// The limits of the initial parity pass: (window, MiB/s cap; 0: none).
pub(crate) fn init_limits() -> (usize, u64) {
    *INIT_LIMITS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set the limits of the initial parity pass (see [`init_limits`]); running passes follow.
pub(crate) fn set_init_limits(window: usize, bandwidth_mb: u64) {
    *INIT_LIMITS.lock().unwrap_or_else(|e| e.into_inner()) = (window, bandwidth_mb);
}

/// Set the limits of the resync after a crash (see [`recovery_limits`]).
pub(crate) fn set_recovery_limits(window: usize, bandwidth_mb: u64) {
    *RECOVERY_LIMITS.lock().unwrap_or_else(|e| e.into_inner()) = (window, bandwidth_mb);
}

const EINVAL: i32 = 22;
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EBUSY: i32 = 16;
const EIO: i32 = 5;
const ESHUTDOWN: i32 = 108;
const ENOSPC: i32 = 28;
const ENOMEM: i32 = 12;

/// `bdev_jraid_create` parameters.
#[derive(Debug, Clone)]
pub(crate) struct CreateRequest {
    /// Bdev name of the volume.
    pub name: String,
    /// Strip size in KiB.
    pub strip_size_kb: u64,
    /// Member bdevs, in member order.
    pub base_bdevs: Vec<String>,
    /// Journal bdevs: one, or two (claim 13: records alternate over them, or are mirrored).
    pub journal_bdevs: Vec<String>,
    /// How records spread over two journal bdevs.
    pub journal_mode: JournalMode,
    /// Volume number on the journal (default: the lowest free one).
    pub volume: Option<u32>,
    /// Volume uuid (default: a new one). A uuid the members already carry re-assembles.
    pub uuid: Option<[u8; 16]>,
    /// Whether a new volume writes through its journal (false only for comparison runs).
    pub journal: bool,
    /// Per-stripe state a new volume may allocate, in MiB.
    pub max_stripe_state_mb: u64,
    /// The members are blank (all zeros): a new volume's parity matches without the initial
    /// pass.
    pub assume_clean: bool,
    /// The journal on the members: KiB each member reserves at its end for it (members 0
    /// and 1 hold a mirrored copy there); `None`: journal bdevs.
    pub journal_area_kb: Option<u64>,
}

/// Default size of the journal area on each member (`journal_area_kb`).
pub(crate) const DEFAULT_JOURNAL_AREA_KB: u64 = 4096;

/// Default bound on a new volume's per-stripe state (`max_stripe_state_mb`).
pub(crate) const DEFAULT_MAX_STRIPE_STATE_MB: u64 = 1024;

/// Bytes of memory a volume of `stripes` stripes keeps whatever it lists: the rebuild bitmap
/// (1 bit per stripe) and, at most, the journal's table of state shards (128 bytes each, as
/// many as half the record's room rounded up to a power of two, and no more than 4 MiB, with
/// up to 2 MiB more for its huge-page alignment; see [`crate::journal::state_table_bytes`]).
pub(crate) fn stripe_state_bytes(stripes: u64) -> u64 {
    stripes.div_ceil(64) * 8 + crate::journal::state_table_bytes(stripes, usize::MAX)
}

/// A failed creation, as a JSON-RPC error.
#[derive(Debug, Clone)]
pub(crate) struct CreateError {
    /// Negative errno.
    pub code: i32,
    /// What went wrong, for the operator.
    pub msg: String,
}

fn err(code: i32, msg: impl Into<String>) -> CreateError {
    CreateError {
        code: -code,
        msg: msg.into(),
    }
}

fn base_err(e: BaseError) -> CreateError {
    match e {
        BaseError::NotFound(_) => err(ENODEV, e.to_string()),
        BaseError::Claimed(_) => err(EBUSY, e.to_string()),
        BaseError::Other(_, rc) => CreateError {
            code: rc,
            msg: e.to_string(),
        },
    }
}

/// Where a new volume's journal comes from.
enum JournalChoice {
    /// Journal bdevs to format (nothing on them is in use), or of a journal to open (by
    /// uuid): one, or two of a pair.
    New(Vec<BaseBdev>),
    /// A journal already serving other volumes.
    Shared(Arc<SpdkJournal>),
}

/// A validated request with its bdevs opened and claimed.
struct Prepared {
    req: CreateRequest,
    members: Vec<BaseBdev>,
    journal: JournalChoice,
    geo: Geometry,
    number: u32,
    /// A shared journal's volume list is ours to change until the create is over.
    lease: Option<SbLease>,
    /// The journal on the members: byte offset of the journal area on every member; else 0.
    journal_area: u64,
}

/// Completion of a create or an assembly.
pub(crate) type Done = Box<dyn FnOnce(Result<Arc<SpdkVolume>, CreateError>)>;

/// `bdev_jraid_create`: check everything, then either format the bdevs as a new volume, or,
/// when the request names the uuid the members already carry, re-assemble that volume.
pub(crate) fn create(req: CreateRequest, done: Done) {
    if let Some(v) = bdev::find_volume(&req.name) {
        let j = v.journal();
        if req.uuid == Some(v.uuid)
            && v.names() == req.base_bdevs
            && req
                .journal_bdevs
                .iter()
                .all(|n| j.device_named(n).is_some())
        {
            return done(Ok(v)); // already running (assembled by examine): nothing to do
        }
        return done(Err(err(
            EEXIST,
            format!("bdev {} already exists", req.name),
        )));
    }
    let p = match prepare(req) {
        Ok(p) => {
            let mut names = p.req.base_bdevs.clone();
            names.extend(p.req.journal_bdevs.iter().cloned());
            super::examine::forget_bdevs(&names);
            p
        }
        Err(e) => return done(Err(e)),
    };
    // Re-assembly when the members carry this uuid; formatting otherwise.
    let Some(uuid) = p.req.uuid else {
        return format(p, done);
    };
    let raws: Vec<_> = p.members.iter().map(|m| m.raw()).collect();
    let found = Arc::new(Mutex::new(vec![None; raws.len()]));
    let f2 = found.clone();
    let join = Join::new(raws.len(), move |_| {
        let sbs: Vec<Option<MemberSuperblock>> =
            f2.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ours = sbs
            .iter()
            .flatten()
            .filter(|s| s.volume_uuid == uuid)
            .count();
        if ours == 0 {
            return format(p, done);
        }
        if let Some(s) = sbs
            .iter()
            .flatten()
            .find(|s| s.volume_uuid == uuid && s.block_size != p.geo.block_size)
        {
            return done(Err(err(
                EINVAL,
                format!(
                    "volume {}: its members were written with {}-byte blocks, but the bdevs have {}-byte blocks",
                    s.name, s.block_size, p.geo.block_size
                ),
            )));
        }
        reassemble(p, sbs, done);
    });
    for (i, r) in raws.into_iter().enumerate() {
        let found = found.clone();
        let join = join.clone();
        read_sb(r, move |buf| {
            if let Some(b) = buf {
                found.lock().unwrap_or_else(|e| e.into_inner())[i] =
                    MemberSuperblock::decode(b.as_slice()).ok();
            }
            Join::one(&join, Ok(()));
        });
    }
}

/// Synchronous checks; opens and claims the bdevs.
fn prepare(mut req: CreateRequest) -> Result<Prepared, CreateError> {
    let on_members = req.journal_area_kb.is_some();
    if on_members {
        req.journal_mode = JournalMode::Mirror;
    }
    if req.name.is_empty() || req.name.len() > JOURNAL_NAME_MAX {
        return Err(err(
            EINVAL,
            format!("name must be 1 to {JOURNAL_NAME_MAX} bytes long"),
        ));
    }
    let cname = cstring(&req.name);
    // SAFETY: NUL-terminated name; the lookup only reads SPDK's bdev list.
    if !unsafe { sys::spdk_bdev_get_by_name(cname.as_ptr()) }.is_null() {
        return Err(err(EEXIST, format!("bdev {} already exists", req.name)));
    }
    let strip = req.strip_size_kb.saturating_mul(1024);
    if !strip.is_power_of_two() || !(MIN_STRIP_BYTES..=MAX_STRIP_BYTES).contains(&strip) {
        return Err(err(
            EINVAL,
            format!(
                "strip_size_kb must be a power of two from {} to {}, got {}",
                MIN_STRIP_BYTES / 1024,
                MAX_STRIP_BYTES / 1024,
                req.strip_size_kb
            ),
        ));
    }
    let n = req.base_bdevs.len();
    if !(MIN_MEMBERS..=MAX_MEMBERS).contains(&n) {
        return Err(err(
            EINVAL,
            format!("RAID-5 needs {MIN_MEMBERS} to {MAX_MEMBERS} base bdevs, got {n}"),
        ));
    }
    let jn = &req.journal_bdevs;
    if !on_members && (jn.is_empty() || jn.len() > 2 || jn.iter().any(String::is_empty)) {
        return Err(err(
            EINVAL,
            "a journal is one bdev (journal_bdev) or two (journal_bdevs: [A, B])",
        ));
    }
    if jn.len() == 2 && jn[0] == jn[1] {
        return Err(err(
            EINVAL,
            format!("journal bdev {} is listed twice", jn[0]),
        ));
    }
    for (i, a) in req.base_bdevs.iter().enumerate() {
        if req.base_bdevs[..i].contains(a) {
            return Err(err(EINVAL, format!("base bdev {a} is listed twice")));
        }
        if jn.contains(a) {
            return Err(err(
                EINVAL,
                format!("bdev {a} cannot be both a member and the journal"),
            ));
        }
    }
    if registry()
        .volumes
        .iter()
        .any(|v| v.names().iter().any(|m| req.base_bdevs.contains(m)))
    {
        let m = req
            .base_bdevs
            .iter()
            .find(|m| registry().volumes.iter().any(|v| v.names().contains(m)))
            .cloned()
            .unwrap_or_default();
        return Err(err(EBUSY, format!("bdev {m} is already claimed")));
    }
    // The journal: shared when a running journal has these devices.
    // (A journal on the members of a volume is that volume's alone.)
    let shared = registry()
        .journals
        .iter()
        .find(|j| !j.on_members && jn.iter().any(|n| j.device_named(n).is_some()))
        .cloned();
    if let Some(j) = registry()
        .journals
        .iter()
        .find(|j| j.on_members && jn.iter().any(|n| j.device_named(n).is_some()))
    {
        return Err(err(
            EBUSY,
            format!(
                "journal {} is on the members of a volume, and serves it alone",
                j.name
            ),
        ));
    }
    if let Some(j) = &shared {
        if let Some(n) = jn.iter().find(|n| j.device_named(n).is_none()) {
            return Err(err(
                EBUSY,
                format!(
                    "bdev {n} is not a device of journal {}, which the other bdev named belongs to",
                    j.name
                ),
            ));
        }
    }
    let number;
    let mut lease = None;
    let journal = match shared {
        Some(j) => {
            lease = Some(
                j.lease(format!("bdev_jraid_create {}", req.name))
                    .map_err(|e| err(EBUSY, e))?,
            );
            let mut sb = j.sb.lock().unwrap_or_else(|e| e.into_inner()).clone();
            // The same volume coming back (re-created by its uuid): its entry is its own.
            sb.volumes.retain(|e| {
                !(Some(e.volume_uuid) == req.uuid
                    && e.name == req.name
                    && req.volume.is_none_or(|v| v == e.volume_number))
            });
            let own =
                j.sb.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .volumes
                    .iter()
                    .find(|e| Some(e.volume_uuid) == req.uuid && e.name == req.name)
                    .map(|e| e.volume_number);
            if let Some(e) = sb.volumes.iter().find(|v| v.name == req.name) {
                return Err(err(
                    EEXIST,
                    format!(
                        "name {} already in use on journal {} (volume {})",
                        req.name, j.name, e.volume_number
                    ),
                ));
            }
            if sb.volumes.len() >= MAX_VOLUMES {
                return Err(err(
                    ENOSPC,
                    format!("journal {} already serves {MAX_VOLUMES} volumes", j.name),
                ));
            }
            number = match req.volume.or(own) {
                Some(v) if sb.volumes.iter().any(|e| e.volume_number == v) => {
                    return Err(err(
                        EEXIST,
                        format!("volume number {v} already in use on journal {}", j.name),
                    ))
                }
                Some(v) => v,
                None => (0..)
                    .find(|k| sb.volumes.iter().all(|e| e.volume_number != *k))
                    .expect("a free number"),
            };
            if !j.present() {
                return Err(err(ENODEV, format!("journal bdev {} was removed", j.name)));
            }
            JournalChoice::Shared(j)
        }
        None if on_members => {
            number = req.volume.unwrap_or(0);
            // The members' windows, once they are open (below).
            JournalChoice::New(Vec::new())
        }
        None => {
            let mut bases = Vec::with_capacity(jn.len());
            for n in jn {
                bases.push(open_journal_bdev(n)?);
            }
            if let [a, b] = &bases[..] {
                if a.block_size != b.block_size {
                    return Err(err(
                        EINVAL,
                        format!(
                            "journal bdevs {} and {} have different block sizes ({} and {} bytes)",
                            a.name, b.name, a.block_size, b.block_size
                        ),
                    ));
                }
            }
            number = req.volume.unwrap_or(0);
            JournalChoice::New(bases)
        }
    };
    let mut members = Vec::with_capacity(n);
    for name in &req.base_bdevs {
        let mut b = BaseBdev::open(name).map_err(base_err)?;
        b.claim().map_err(base_err)?;
        members.push(b);
    }
    let bs = members[0].block_size;
    if let Some(m) = members.iter().find(|m| m.block_size != bs) {
        return Err(err(
            EINVAL,
            format!(
                "mixed block sizes: {} has {}-byte blocks, {} has {bs}",
                m.name, m.block_size, members[0].name
            ),
        ));
    }
    let min_blocks = members.iter().map(|m| m.num_blocks).min().unwrap_or(0);
    let (mut journal, mut journal_area, mut data_blocks) = (journal, 0, min_blocks);
    if let Some(kb) = req.journal_area_kb {
        // The journal area at the end of every member, 4 KiB aligned; the stripes end before
        // it. Members 0 and 1 hold the journal's two devices there (windows of the members).
        if bs != 512 && bs != 4096 {
            return Err(err(
                EINVAL,
                format!("the journal on the members needs 512- or 4096-byte blocks, not {bs}"),
            ));
        }
        let need = JournalSuperblock::min_journal_bytes(4096);
        let area = kb.saturating_mul(1024).next_multiple_of(4096);
        if area < need {
            return Err(err(
                ENOSPC,
                format!(
                    "journal_area_kb {kb} too small: at least {} KiB are needed",
                    need.div_ceil(1024)
                ),
            ));
        }
        let member_bytes = min_blocks * bs as u64;
        if member_bytes < area + crate::layout::RESERVED_BYTES {
            return Err(err(
                ENOSPC,
                format!(
                    "journal_area_kb {kb} leaves no room for stripes on members of {} KiB",
                    member_bytes / 1024
                ),
            ));
        }
        journal_area = (member_bytes - area) / 4096 * 4096;
        data_blocks = journal_area / bs as u64;
        let (off, len) = (data_blocks, area / bs as u64);
        journal = JournalChoice::New(vec![
            members[0].window(off, len),
            members[1].window(off, len),
        ]);
    }
    let geo = Geometry::new(n as u32, strip, bs, data_blocks)
        .map_err(|e| err(EINVAL, format!("bad geometry: {e}")))?;
    Ok(Prepared {
        req,
        members,
        journal,
        geo,
        number,
        lease,
        journal_area,
    })
}

/// Open and claim `name` as a journal bdev to format, checking its block size and size.
pub(crate) fn open_journal_bdev(name: &str) -> Result<BaseBdev, CreateError> {
    let mut b = BaseBdev::open(name).map_err(base_err)?;
    b.claim().map_err(base_err)?;
    if b.block_size != 512 && b.block_size != 4096 {
        return Err(err(
            EINVAL,
            format!(
                "journal bdev {} has {}-byte blocks; 512 or 4096 are supported",
                b.name, b.block_size
            ),
        ));
    }
    let bytes = b.num_blocks * b.block_size as u64;
    let need = JournalSuperblock::min_journal_bytes(4096);
    if bytes < need {
        return Err(err(
            ENOSPC,
            format!(
                "journal bdev {} too small: {bytes} bytes, at least {need} are needed",
                b.name
            ),
        ));
    }
    Ok(b)
}

/// The superblock of a new journal on `b` serving `volumes`.
pub(crate) fn new_journal_sb(b: &BaseBdev, volumes: Vec<JournalEntry>) -> JournalSuperblock {
    new_journal_sb_on(std::slice::from_ref(b), JournalMode::Alternate, volumes)
}

/// The superblock of a new journal on `bases` (one bdev, or the two of a pair in `mode`: the
/// copy for device 0; [`SpdkJournal::sb_images`] sets each device's index) serving `volumes`.
/// Both devices of a pair get the slots the smaller one holds.
fn new_journal_sb_on(
    bases: &[BaseBdev],
    mode: JournalMode,
    volumes: Vec<JournalEntry>,
) -> JournalSuperblock {
    let bs = bases[0].block_size as u64;
    let bytes = bases.iter().map(|b| b.num_blocks * bs).min().unwrap_or(0);
    let slot = ((bytes - JOURNAL_SLOTS_OFFSET) / 2 / bs * bs).min(MAX_SLOT_BYTES);
    JournalSuperblock {
        journal_uuid: new_uuid(),
        pair: (bases.len() == 2).then_some(JournalPair { index: 0, mode }),
        block_size: bases[0].block_size,
        slot_bytes: slot,
        seq: 1,
        volumes,
    }
}

/// A running journal (not yet in the registry) over a bdev just formatted with `sb`.
pub(crate) fn new_spdk_journal(b: BaseBdev, sb: JournalSuperblock) -> Arc<SpdkJournal> {
    new_spdk_journal_on(vec![b], sb)
}

/// A running journal (not yet in the registry) over bdevs just formatted with `sb` (by index
/// in the pair).
fn new_spdk_journal_on(bases: Vec<BaseBdev>, sb: JournalSuperblock) -> Arc<SpdkJournal> {
    let cfg = journal_config(&sb, bases.iter().any(|b| b.write_cache));
    let devs = bases
        .into_iter()
        .map(|b| (b.name.clone(), Some(b)))
        .collect();
    SpdkJournal::new(devs, Journal::new(cfg, None), sb, 0)
}

fn new_uuid() -> [u8; 16] {
    // SAFETY: spdk_uuid is plain bytes; spdk_uuid_generate fills it.
    unsafe {
        let mut u: sys::spdk_uuid = std::mem::zeroed();
        sys::spdk_uuid_generate(&mut u);
        u.u.raw
    }
}

/// Journal configuration for a journal superblock on a bdev.
fn journal_config(sb: &JournalSuperblock, write_cache: bool) -> JournalConfig {
    let bs = sb.block_size as u64;
    let mut cfg = JournalConfig::new(
        sb.journal_uuid,
        sb.block_size,
        sb.slot_bytes,
        [(0, sb.slot_offset(0) / bs), (0, sb.slot_offset(1) / bs)],
    );
    cfg.volatile_cache = write_cache;
    if let Some(p) = sb.pair {
        cfg.devices = 2;
        cfg.mode = p.mode;
    }
    cfg.advise_state_memory = Some(super::ffi::advise_huge_pages);
    cfg.prefetch = Some(super::ffi::prefetch);
    cfg
}

/// Write superblocks for a new volume, then start it.
fn format(p: Prepared, done: Done) {
    let need = stripe_state_bytes(p.geo.stripes);
    let limit = p.req.max_stripe_state_mb.saturating_mul(1 << 20);
    if need > limit {
        return done(Err(err(
            ENOMEM,
            format!(
                "volume {}: {} stripes need {} MiB of per-stripe state, above the limit of {} MiB: use larger strips, or raise max_stripe_state_mb",
                p.req.name,
                p.geo.stripes,
                need.div_ceil(1 << 20),
                p.req.max_stripe_state_mb
            ),
        )));
    }
    let Prepared {
        req,
        members,
        journal,
        geo,
        number,
        lease,
        journal_area,
    } = p;
    let uuid = req.uuid.unwrap_or_else(new_uuid);
    let member_uuids: Vec<[u8; 16]> = members.iter().map(|m| m.uuid).collect();
    let entry = JournalEntry {
        volume_number: number,
        volume_uuid: uuid,
        name: req.name.clone(),
    };
    // The journal superblock to write, and the journal object.
    let (jsb, journal_obj, new_base) = match journal {
        JournalChoice::Shared(j) => {
            let mut sb = j.sb.lock().unwrap_or_else(|e| e.into_inner()).clone();
            sb.seq += 1;
            sb.volumes
                .retain(|e| e.volume_number != entry.volume_number);
            sb.volumes.push(entry);
            (sb, Some(j), None)
        }
        JournalChoice::New(bases) => {
            let sb = new_journal_sb_on(&bases, req.journal_mode, vec![entry]);
            (sb, None, Some(bases))
        }
    };
    if let Err(e) = jsb.validate() {
        return done(Err(err(EINVAL, format!("bad journal superblock: {e}"))));
    }
    // The journal superblock as each journal device gets it (its own index in a pair).
    let jwrites: Vec<(super::base::RawDev, String, Vec<u8>)> = match (&journal_obj, &new_base) {
        (Some(j), _) => j.sb_images(&jsb),
        (None, Some(bases)) => bases
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let mut s = jsb.clone();
                if let Some(p) = s.pair.as_mut() {
                    p.index = k as u32;
                }
                (b.raw(), b.name.clone(), s.encode())
            })
            .collect(),
        _ => Vec::new(),
    };
    if jwrites.is_empty() {
        return done(Err(err(ENODEV, "journal bdev was removed")));
    }
    let journal_uuid = jsb.journal_uuid;
    // Members that may hold anything: no stripe's parity is trusted until the initial pass
    // (started once the volume is online) has made it match; `assume_clean` takes the
    // caller's word that they are blank (all zeros: zero parity matches zero data).
    let init_stripes = if req.assume_clean { geo.stripes } else { 0 };
    let msb = |i: u32| MemberSuperblock {
        volume_uuid: uuid,
        journal_uuid,
        volume_number: number,
        name: req.name.clone(),
        members: geo.members,
        member_index: i,
        strip_blocks: geo.strip_blocks,
        block_size: geo.block_size,
        stripes: geo.stripes,
        seq: 1,
        member_states: vec![MemberState::Active; geo.members as usize],
        member_uuids: member_uuids.clone(),
        journal_dropped: 0,
        journal_area,
        init_stripes,
    };
    let images: Vec<_> = (0..geo.members).map(|i| msb(i).encode()).collect();
    let raws: Vec<_> = members.iter().map(|m| (m.raw(), m.name.clone())).collect();
    // Hold everything open (and the journal's volume list leased) until the writes are done.
    let state = Box::new((req, members, journal_obj, new_base, jsb, lease));
    let join = Join::new(raws.len() + jwrites.len(), move |r| {
        let (req, members, journal_obj, new_base, jsb, _lease) = *state;
        if let Err(e) = r {
            return done(Err(err(EIO, e)));
        }
        let journal = match journal_obj {
            Some(j) => {
                *j.sb.lock().unwrap_or_else(|e| e.into_inner()) = jsb;
                j
            }
            None => {
                let j = new_spdk_journal_on(new_base.expect("new journal bdevs"), jsb);
                registry().journals.push(j.clone());
                j
            }
        };
        let spec = VolumeSpec {
            name: req.name.clone(),
            uuid,
            number,
            geo,
            member_names: req.base_bdevs.clone(),
            members: members.into_iter().map(Some).collect(),
            member_uuids,
            journal,
            journal_on: req.journal,
            seq: 1,
            journal_dropped: 0,
            journal_area,
            init_stripes,
        };
        start_volume(spec, Recover::No, done);
    });
    for ((raw, name), image) in raws.into_iter().zip(images) {
        let join = join.clone();
        write_sb(raw, name, image, move |r| Join::one(&join, r));
    }
    for (jraw, jname, jimage) in jwrites {
        let join = join.clone();
        write_sb(jraw, jname, jimage, move |r| Join::one(&join, r));
    }
}

/// Re-assemble the volume whose superblocks the members of `p` carry (create with a known
/// uuid, e.g. from save_config, when examine did not assemble it).
fn reassemble(p: Prepared, sbs: Vec<Option<MemberSuperblock>>, done: Done) {
    let uuid = p.req.uuid.expect("reassembly has a uuid");
    let newest = sbs
        .iter()
        .flatten()
        .filter(|s| s.volume_uuid == uuid)
        .max_by_key(|s| s.seq)
        .cloned()
        .expect("at least one superblock");
    for (i, s) in sbs.iter().enumerate() {
        let ok = s
            .as_ref()
            .is_some_and(|s| s.volume_uuid == uuid && s.member_index == i as u32);
        if !ok && newest.member_states.get(i) == Some(&MemberState::Active) {
            return done(Err(err(
                EINVAL,
                format!(
                    "bdev {} is not member {i} of volume {}",
                    p.req.base_bdevs[i],
                    uuid_string(&uuid)
                ),
            )));
        }
    }
    // The control plane's assembly rule (as examine): a member whose rebuild was cut short is
    // left out, then rebuilt again; a failed or stale one is left out.
    let found: Vec<Option<&MemberSuperblock>> = sbs.iter().map(Option::as_ref).collect();
    let uses = crate::control::assembly::decide(&newest, &found);
    let resume = uses
        .iter()
        .position(|u| *u == crate::control::assembly::MemberUse::Resume)
        .map(|i| (i as u32, p.req.base_bdevs[i].clone()));
    let members: Vec<Option<BaseBdev>> = p
        .members
        .into_iter()
        .enumerate()
        .map(|(i, m)| uses[i].in_service().then_some(m))
        .collect();
    // The journal on the members is where their superblocks say (not where this request
    // would put a new one).
    let journal = match (
        p.journal,
        newest.journal_area != 0,
        p.req.journal_area_kb.is_some(),
    ) {
        (JournalChoice::New(_), true, true) => {
            JournalChoice::New(member_windows(&members, &newest))
        }
        (j, false, false) => j,
        (_, on, _) => {
            return done(Err(err(
                EINVAL,
                format!(
                    "volume {}: its journal is {}",
                    uuid_string(&uuid),
                    if on {
                        "on its members (journal_on_members)"
                    } else {
                        "not on its members"
                    }
                ),
            )))
        }
    };
    if matches!(&journal, JournalChoice::New(w) if w.is_empty()) {
        return done(Err(err(
            ENODEV,
            "members 0 and 1, which hold the journal, are both out of service",
        )));
    }
    let found = Found {
        sb: newest,
        members,
        member_names: p.req.base_bdevs.clone(),
    };
    let done: Done = match resume {
        None => done,
        Some((m, bdev)) => Box::new(move |r: Result<Arc<SpdkVolume>, CreateError>| {
            if let Ok(v) = &r {
                noticelog!(
                    "volume {}: {bdev} (member {m}) was being rebuilt: rebuilding it again",
                    v.name
                );
                super::rebuild::resume(v, m, &bdev);
            }
            done(r)
        }),
    };
    match journal {
        JournalChoice::Shared(j) => {
            if j.journal.cfg.uuid != found.sb.journal_uuid {
                return done(Err(err(
                    EINVAL,
                    format!("journal {} is not this volume's journal", j.name),
                )));
            }
            assemble_with_journal(found, j, done)
        }
        JournalChoice::New(bases) => open_journal(bases, move |r| match r {
            Ok(j) => assemble_with_journal(found, j, done),
            Err(e) => done(Err(e)),
        }),
    }
}

/// The journal on the members: the journal devices of a volume whose newest superblock is `sb`
/// (its `journal_area` non-zero), as windows of members 0 and 1 among `members` (by index,
/// `None`: missing or out of service, and its copy with it). Each window runs from the journal
/// area to the member's end.
pub(crate) fn member_windows(members: &[Option<BaseBdev>], sb: &MemberSuperblock) -> Vec<BaseBdev> {
    let off = sb.journal_area / u64::from(sb.block_size);
    members
        .iter()
        .take(2)
        .flatten()
        .filter(|m| m.num_blocks > off)
        .map(|m| m.window(off, m.num_blocks - off))
        .collect()
}

/// Members found for an assembly.
pub(crate) struct Found {
    /// The newest member superblock.
    pub sb: MemberSuperblock,
    /// Opened and claimed members by index (`None`: missing or failed).
    pub members: Vec<Option<BaseBdev>>,
    /// Member bdev names by index (of missing ones: as last known, or empty).
    pub member_names: Vec<String>,
}

/// Read the superblocks and record slots of a journal's bdevs (one, or the devices of a pair
/// that are here) and make it a running journal (listed in the registry). The bdevs are
/// opened and claimed. A pair with one device here opens with it missing
/// ([`SpdkJournal::missing`]).
pub(crate) fn open_journal(
    bases: Vec<BaseBdev>,
    done: impl FnOnce(Result<Arc<SpdkJournal>, CreateError>) + 'static,
) {
    let n = bases.len();
    let sbs: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::new(Mutex::new(vec![None; n]));
    let s2 = sbs.clone();
    let raws: Vec<_> = bases.iter().map(|b| b.raw()).collect();
    let join = Join::new(n, move |_| {
        let bufs = std::mem::take(&mut *s2.lock().unwrap_or_else(|e| e.into_inner()));
        opened_sbs(bases, bufs, done)
    });
    for (i, r) in raws.into_iter().enumerate() {
        let sbs = sbs.clone();
        let join = join.clone();
        read_sb(r, move |buf| {
            sbs.lock().unwrap_or_else(|e| e.into_inner())[i] = buf.map(|b| b.as_slice().to_vec());
            Join::one(&join, Ok(()));
        });
    }
}

/// [`open_journal`] once the superblocks are read: check that they make one journal, then
/// read every device's areas.
fn opened_sbs(
    bases: Vec<BaseBdev>,
    bufs: Vec<Option<Vec<u8>>>,
    done: impl FnOnce(Result<Arc<SpdkJournal>, CreateError>) + 'static,
) {
    // The journal on the members: a copy that does not read back as one (a member rebuilt
    // before its copy was put back) is a missing device; the other copy serves.
    let (bases, bufs): (Vec<BaseBdev>, Vec<Option<Vec<u8>>>) = if bases.len() == 2
        && bases.iter().all(|b| b.offset_blocks != 0)
    {
        let ok = |b: &BaseBdev, buf: &Option<Vec<u8>>| {
            buf.as_ref()
                .and_then(|x| JournalSuperblock::decode(x).ok())
                .is_some_and(|s| s.block_size == b.block_size)
        };
        if bases.iter().zip(&bufs).any(|(b, x)| ok(b, x)) {
            bases
                .into_iter()
                .zip(bufs)
                .filter(|(b, x)| {
                    let keep = ok(b, x);
                    if !keep {
                        warnlog!(
                            "journal copy on member {}: no journal superblock in its journal area; going on with the other copy",
                            b.name
                        );
                    }
                    keep
                })
                .unzip()
        } else {
            (bases, bufs)
        }
    } else {
        (bases, bufs)
    };
    let mut sbs = Vec::with_capacity(bases.len());
    for (b, buf) in bases.iter().zip(&bufs) {
        let Some(buf) = buf else {
            return done(Err(err(
                EIO,
                format!("journal {}: superblock read failed", b.name),
            )));
        };
        let sb = match JournalSuperblock::decode(buf) {
            Ok(sb) => sb,
            Err(e) => {
                return done(Err(err(
                    EINVAL,
                    format!("journal {}: bad superblock: {e}", b.name),
                )))
            }
        };
        if sb.block_size != b.block_size {
            return done(Err(err(
                EINVAL,
                format!(
                    "journal {} was written with {}-byte blocks, but the bdev has {}-byte blocks",
                    b.name, sb.block_size, b.block_size
                ),
            )));
        }
        sbs.push(sb);
    }
    // The newest superblock speaks for the journal (its volume list); every device must be
    // of the same journal, each at its own place in the pair.
    let Some(sb) = sbs.iter().max_by_key(|s| s.seq).cloned() else {
        return done(Err(err(EINVAL, "no journal bdev")));
    };
    let devices = if sb.pair.is_some() { 2 } else { 1 };
    let mut by_index: Vec<Option<BaseBdev>> = (0..devices).map(|_| None).collect();
    for (b, s) in bases.into_iter().zip(&sbs) {
        let same = s.journal_uuid == sb.journal_uuid
            && s.slot_bytes == sb.slot_bytes
            && s.pair.map(|p| p.mode) == sb.pair.map(|p| p.mode);
        let k = s.pair.map_or(0, |p| p.index) as usize;
        if !same || k >= devices || by_index[k].is_some() {
            return done(Err(err(
                EINVAL,
                format!(
                    "journal {}: not a device of journal {} (or named twice)",
                    b.name,
                    super::json::uuid_string(&sb.journal_uuid)
                ),
            )));
        }
        by_index[k] = Some(b);
    }
    let reads: Vec<Option<super::base::RawDev>> = by_index
        .iter()
        .map(|b| b.as_ref().map(|b| b.raw()))
        .collect();
    let areas: Arc<Mutex<Vec<Option<Areas>>>> = Arc::new(Mutex::new(vec![None; devices]));
    let a2 = areas.clone();
    let present = reads.iter().flatten().count();
    let join = Join::new(present, move |r| {
        if let Err(m) = r {
            return done(Err(err(EIO, m)));
        }
        let areas = std::mem::take(&mut *a2.lock().unwrap_or_else(|e| e.into_inner()));
        opened(by_index, sb, areas, done)
    });
    let slot = sb_slot(&sbs);
    for (k, raw) in reads.into_iter().enumerate() {
        let Some(raw) = raw else { continue };
        let (areas, join) = (areas.clone(), join.clone());
        let (o0, o1) = slot.offsets;
        read_bytes(raw.clone(), o0, slot.bytes, move |s0| {
            read_bytes(raw, o1, slot.bytes, move |s1| {
                let (Some(s0), Some(s1)) = (s0, s1) else {
                    return Join::one(
                        &join,
                        Err(format!("journal device {k}: record slot read failed")),
                    );
                };
                areas.lock().unwrap_or_else(|e| e.into_inner())[k] =
                    Some((s0.as_slice().to_vec(), s1.as_slice().to_vec()));
                Join::one(&join, Ok(()));
            });
        });
    }
}

/// The two record areas of one journal device, as read.
type Areas = (Vec<u8>, Vec<u8>);

/// Where a journal's record slots are (the same on every device of a pair).
#[derive(Clone, Copy)]
struct SlotPlace {
    offsets: (u64, u64),
    bytes: usize,
}

fn sb_slot(sbs: &[JournalSuperblock]) -> SlotPlace {
    let sb = &sbs[0];
    SlotPlace {
        offsets: (sb.slot_offset(0), sb.slot_offset(1)),
        bytes: sb.slot_bytes as usize,
    }
}

/// [`open_journal`] once every device's areas are read: the newest chain over them
/// ([`record::newest_of`]), and the running journal.
fn opened(
    by_index: Vec<Option<BaseBdev>>,
    sb: JournalSuperblock,
    areas: Vec<Option<Areas>>,
    done: impl FnOnce(Result<Arc<SpdkJournal>, CreateError>) + 'static,
) {
    let names: Vec<String> = by_index
        .iter()
        .map(|b| b.as_ref().map_or_else(String::new, |b| b.name.clone()))
        .collect();
    let what = journal_name(&names);
    let views: Vec<Option<(&[u8], &[u8])>> = areas
        .iter()
        .map(|a| a.as_ref().map(|(x, y)| (x.as_slice(), y.as_slice())))
        .collect();
    let newest = match record::newest_of(&views, &sb.journal_uuid, sb.block_size as usize) {
        Ok(n) => n,
        Err(e) => return done(Err(err(EINVAL, format!("journal {what}: {e}")))),
    };
    match &newest.record {
        Some(r) => noticelog!(
            "journal {what}: newest record generation {} ({} records from the checkpoint \
             of generation {} in area {}), {} dirty stripes listed",
            r.generation,
            r.records,
            r.base,
            r.area,
            r.entries.len()
        ),
        None => noticelog!("journal {what}: no record written yet"),
    }
    if !newest.complete {
        match sb.pair.map(|p| p.mode) {
            Some(JournalMode::Mirror) => warnlog!(
                "journal {what}: one of its two devices (mirror mode) is missing: a volume whose member superblocks do not record the device that is here as dropped recovers from it alone; one that does resyncs every stripe before it serves I/O; the journal goes on with the device that is here"
            ),
            _ => warnlog!(
                "journal {what}: one of its two devices (alternate mode) is missing: the newest record may have been on it, so every volume on this journal resyncs every stripe before it serves I/O, then goes on with the device that is here"
            ),
        }
    }
    let cfg = journal_config(&sb, by_index.iter().flatten().any(|b| b.write_cache));
    let journal = Journal::new(cfg, newest.record);
    for (k, b) in by_index.iter().enumerate() {
        if b.is_none() {
            journal.device_gone(k as u32);
        }
    }
    let devs = names.into_iter().zip(by_index).collect();
    let j = SpdkJournal::new(devs, journal, sb, newest.missing);
    registry().journals.push(j.clone());
    done(Ok(j))
}

/// Start an assembled volume on its (running) journal, with recovery.
pub(crate) fn assemble_with_journal(found: Found, journal: Arc<SpdkJournal>, done: Done) {
    assemble(found, journal, Recover::Listed, done)
}

/// Start a volume whose journal was lost on a new journal `journal`: every stripe is
/// resynced, then the member superblocks are rewritten to name the new journal, then the bdev
/// is registered (`bdev_jraid_set_journal` on a volume examine held back).
pub(crate) fn assemble_with_new_journal(found: Found, journal: Arc<SpdkJournal>, done: Done) {
    assemble(found, journal, Recover::Full, done)
}

fn assemble(found: Found, journal: Arc<SpdkJournal>, recover: Recover, done: Done) {
    let sb = found.sb;
    let strip_bytes = sb.strip_blocks * sb.block_size as u64;
    let member_blocks =
        crate::layout::RESERVED_BYTES / sb.block_size as u64 + sb.stripes * sb.strip_blocks;
    let geo = match Geometry::new(sb.members, strip_bytes, sb.block_size, member_blocks) {
        Ok(g) if g.stripes == sb.stripes => g,
        Ok(_) | Err(_) => {
            return done(Err(err(
                EINVAL,
                format!("volume {}: superblock geometry is inconsistent", sb.name),
            )))
        }
    };
    if let Some(m) = found
        .members
        .iter()
        .flatten()
        .find(|m| m.num_blocks < geo.member_blocks_used())
    {
        return done(Err(err(
            EINVAL,
            format!("member {} is smaller than the volume needs", m.name),
        )));
    }
    let missing = found.members.iter().filter(|m| m.is_none()).count();
    if missing > 1 {
        return done(Err(err(
            ENODEV,
            format!("volume {}: {missing} members missing", sb.name),
        )));
    }
    // A journal device missing: unless a mirror's survivor may be trusted, the newest record
    // may have been on it, so every stripe is resynced (control::recovery::journal_complete),
    // which needs every member.
    let complete = journal.complete_for(sb.journal_dropped);
    if journal.missing != 0 && complete && recover == Recover::Listed {
        warnlog!(
            "volume {}: a device of its mirrored journal {} is missing; the member superblocks do not record the device that is here as dropped, so it holds every record: recovering from it alone",
            sb.name,
            journal.name
        );
    }
    let recover = match recover {
        Recover::Listed if !complete && missing > 0 => {
            return done(Err(err(
                ENODEV,
                format!(
                    "volume {}: a device of journal {} is missing and a member is out of service: the newest record may have been on the missing device, and without every member the stripes it listed cannot be resynced; bring the journal device or the member back",
                    sb.name, journal.name
                ),
            )))
        }
        Recover::Listed if !complete => Recover::All,
        r => r,
    };
    let spec = VolumeSpec {
        name: sb.name.clone(),
        uuid: sb.volume_uuid,
        number: sb.volume_number,
        geo,
        members: found.members,
        member_names: found.member_names,
        member_uuids: sb.member_uuids.clone(),
        journal,
        journal_on: true,
        seq: sb.seq,
        journal_dropped: sb.journal_dropped,
        journal_area: sb.journal_area,
        init_stripes: sb.init_stripes,
    };
    start_volume(spec, recover, done);
}

/// What a volume does before it serves I/O.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recover {
    /// Nothing (a new volume).
    No,
    /// Resync the stripes its journal lists.
    Listed,
    /// Resync every stripe (its journal was lost), then name the new journal in the member
    /// superblocks.
    Full,
    /// Resync every stripe before serving (a device of its journal's pair was missing when
    /// the journal was opened: [`crate::control::recovery::stripes_to_resync`]).
    All,
}

/// Attach the volume, register its io_device, recover (when asked) and register the bdev.
fn start_volume(spec: VolumeSpec, recover: Recover, done: Done) {
    let v = SpdkVolume::new(spec);
    registry().volumes.push(v.clone());
    v.register_io_device();
    // From now on member failures and the journal devices to record as dropped reach the
    // superblocks (a recovery's record may wait for the latter).
    super::rebuild::watch(&v);
    let finish = move |v: Arc<SpdkVolume>, r: Result<(), CreateError>, done: Done| {
        let r = r.and_then(|()| match v.register_bdev() {
            0 => Ok(()),
            rc => Err(CreateError {
                code: rc,
                msg: format!("spdk_bdev_register({}) failed", v.name),
            }),
        });
        match r {
            Ok(()) => {
                noticelog!(
                    "jraid volume {} online: {} members, {} KiB strips, {} blocks of {} bytes",
                    v.name,
                    v.geo.members,
                    v.geo.strip_blocks * v.geo.block_size as u64 / 1024,
                    v.geo.volume_blocks(),
                    v.geo.block_size
                );
                super::rebuild::start_init(&v);
                done(Ok(v))
            }
            Err(e) => {
                // SAFETY: registered above; no channel is held any more.
                unsafe { sys::spdk_io_device_unregister(v.io_device(), None) };
                bdev::forget_volume(Arc::as_ptr(&v));
                done(Err(e))
            }
        }
    };
    match recover {
        Recover::No => finish(v.clone(), Ok(()), done),
        Recover::Listed if !recovery_online() => Recovery::start(
            v,
            false,
            true,
            false,
            Box::new(move |v, r| finish(v, r, done)),
        ),
        Recover::All => Recovery::start(
            v,
            false,
            false,
            false,
            Box::new(move |v, r| finish(v, r, done)),
        ),
        Recover::Listed => {
            // Online: the volume serves I/O as soon as the record is read; the listed stripes
            // are resynced in the background (the engine does not trust their parity until
            // then: control::recovery, "Serving I/O while it runs").
            Recovery::start(
                v.clone(),
                false,
                true,
                true,
                Box::new(|v, r| recovered(&v, r)),
            );
            let v2 = v.clone();
            finish(
                v,
                Ok(()),
                Box::new(move |r| {
                    if r.is_err() {
                        // Not registered: the background resync stops with the volume.
                        super::rebuild::volume_stopping(Arc::as_ptr(&v2));
                    }
                    done(r)
                }),
            )
        }
        Recover::Full => Recovery::start(
            v,
            true,
            true,
            false,
            Box::new(move |v, r| {
                if let Err(e) = r {
                    return finish(v, Err(e), done);
                }
                // Only now may a restart trust the new journal's empty record.
                let v2 = v.clone();
                superblocks::record_member_states_then(&v, move |r| {
                    let r = r.map_err(|m| err(EIO, format!("naming the new journal: {m}")));
                    finish(v2, r, done)
                });
            }),
        ),
    }
}

type RecoveryDone = Box<dyn FnOnce(Arc<SpdkVolume>, Result<(), CreateError>)>;

/// The background resync of a volume serving I/O ended (its status says how; this logs it).
fn recovered(v: &Arc<SpdkVolume>, r: Result<(), CreateError>) {
    if let Err(e) = r {
        let left = v.vol.unsynced_list();
        if !left.is_empty() {
            errlog!(
                "volume {}: {} listed stripes are not resynced and stay at risk until they are \
                 (degraded reads of them fail; they stay listed for the next start): {}",
                v.name,
                left.len(),
                e.msg
            );
            *v.at_risk.lock().unwrap_or_else(|e| e.into_inner()) = left;
        }
    }
}

/// Recovery of one volume on the app thread, through a channel of its own: the control
/// plane's recovery ([`control::Recovery`]: resync every stripe the journal lists for it, flush
/// the members, stop carrying the stripes and write a record above every generation seen),
/// driven by a poller.
struct Recovery {
    vol: Arc<SpdkVolume>,
    ch: *mut sys::spdk_io_channel,
    poller: *mut sys::spdk_poller,
    rec: control::Recovery,
    /// The volume serves I/O meanwhile (the resync of the stripes listed at a crash).
    online: bool,
    /// The full resync before a new journal is named (`bdev_jraid_set_journal`; its status
    /// shows under "set_journal"), not one after a restart (under "recovery").
    new_journal: bool,
    /// `stop` was called (the volume is going away).
    stopping: bool,
    seq: u64,
    started_us: u64,
    published_us: u64,
    done: Option<RecoveryDone>,
}

impl Recovery {
    /// Start the recovery of `v`: a `full` resync (a new journal), or of the stripes its
    /// journal lists (every stripe unless the record read is `complete` for it: see
    /// [`Recover::All`]), `online` (the volume serves I/O meanwhile) or not.
    fn start(v: Arc<SpdkVolume>, full: bool, complete: bool, online: bool, done: RecoveryDone) {
        if full {
            noticelog!(
                "volume {}: full resync of {} stripes before it serves I/O on its new journal",
                v.name,
                v.geo.stripes
            );
            let n = v.geo.stripes;
            return Recovery::run(v, Stripes::All(n), Vec::new(), false, true, done);
        }
        let j = &v.journal().journal;
        let stripes = j.carried_stripes(v.number);
        let mut at_risk = Vec::new();
        let resync = if v.vol.failed_count() > 0 && !stripes.is_empty() {
            warnlog!(
                "volume {}: a member is missing; {} listed stripes cannot be resynced and are at risk: {:?}",
                v.name,
                stripes.len(),
                &stripes[..stripes.len().min(16)]
            );
            at_risk = stripes;
            Vec::new()
        } else {
            stripes
        };
        // A device of the journal's pair was missing at its opening and the record read may
        // miss stripes: every stripe (control::recovery's rule; the volume is not online
        // meanwhile: start_volume).
        if !complete {
            warnlog!(
                "volume {}: a journal device was missing and the record read may miss stripes: full resync of {} stripes before it serves I/O",
                v.name,
                v.geo.stripes
            );
            let set = control::recovery::stripes_to_resync(complete, resync, v.geo.stripes);
            *v.at_risk.lock().unwrap_or_else(|e| e.into_inner()) = at_risk.clone();
            return Recovery::run(v, set, at_risk, false, false, done);
        }
        if !resync.is_empty() {
            noticelog!(
                "volume {}: resyncing {} listed stripes{}",
                v.name,
                resync.len(),
                if online {
                    " in the background; serving I/O meanwhile"
                } else {
                    " before it serves I/O"
                }
            );
        } else if at_risk.is_empty() {
            noticelog!(
                "volume {}: clean: nothing listed, nothing to resync (journal at generation {})",
                v.name,
                j.durable_generation()
            );
        }
        *v.at_risk.lock().unwrap_or_else(|e| e.into_inner()) = at_risk.clone();
        Recovery::run(v, Stripes::Listed(resync), at_risk, online, false, done)
    }

    fn run(
        v: Arc<SpdkVolume>,
        stripes: Stripes,
        at_risk: Vec<u64>,
        online: bool,
        new_journal: bool,
        done: RecoveryDone,
    ) {
        // SAFETY: the io_device was registered by start_volume on this thread.
        let ch = unsafe { sys::spdk_get_io_channel(v.io_device()) };
        if ch.is_null() {
            return done(v, Err(err(12, "no channel for recovery")));
        }
        let rec = control::Recovery::new(
            v.number,
            stripes,
            at_risk,
            control::RecoveryOptions {
                window: RESYNC_DEPTH,
                bytes_per_stripe: v.geo.stripe_blocks() * u64::from(v.geo.block_size),
                ..Default::default()
            },
        );
        if online {
            // Before the bdev is registered: no request may trust an unsynced parity.
            rec.guard(&v.vol);
        }
        let r = Box::into_raw(Box::new(Recovery {
            vol: v,
            ch,
            poller: std::ptr::null_mut(),
            rec,
            online,
            new_journal,
            stopping: false,
            seq: 0,
            started_us: ffi::now_us(),
            published_us: 0,
            done: Some(done),
        }));
        // SAFETY: `r` lives until `poll` finishes it; the poller runs on this thread.
        unsafe { (*r).poller = sys::spdk_poller_register(Some(poll), r as *mut c_void, 100) };
    }

    /// One step; `Some` when recovery is over.
    fn step(&mut self) -> Option<Result<(), CreateError>> {
        // SAFETY: `ch` is our channel on this thread; its context is alive while we hold it.
        let ptr = unsafe { channel::ctx_of(self.ch) };
        // Only completions of our own requests: a pass (a rebuild resumed at assembly) may
        // run beside us on this channel.
        let mut done = Vec::new();
        // SAFETY: no other borrow of the context is live in this poller.
        unsafe { &mut (*ptr).internal }.retain(|c| {
            let mine = super::rebuild::code_of(c.tag) == super::rebuild::CODE_RECOVERY;
            if mine {
                done.push(c.result);
            }
            !mine
        });
        for r in done {
            self.rec.complete(r);
        }
        if self.online && !self.stopping && super::rebuild::stopping(&self.vol) {
            self.stopping = true;
            self.rec.stop();
        }
        if self.online {
            let (window, mb) = recovery_limits();
            self.rec.set_limits(window, mb << 20);
        }
        let j = self.vol.journal().journal.clone();
        let out = loop {
            match self.rec.poll(&j, ffi::now_us()) {
                control::Step::Submit(list) => {
                    for s in list {
                        let tag = super::rebuild::tag(super::rebuild::CODE_RECOVERY, self.seq);
                        self.seq += 1;
                        // SAFETY: as above; the borrow ends before pump.
                        let r = unsafe { (*ptr).channel.submit(tag, s.op, s.lba, s.blocks, None) };
                        if let Err(e) = r {
                            self.rec.refused(e.error);
                        }
                        // SAFETY: no borrow of the context is live.
                        unsafe { pump(ptr) };
                    }
                }
                control::Step::Kick => {
                    // SAFETY: no other borrow of the context is live.
                    unsafe {
                        (*ptr).channel.message(Msg::JournalKick);
                        pump(ptr);
                    }
                }
                control::Step::Wait => break None,
                control::Step::Done(r) => break Some(r),
            }
        };
        self.publish(out.as_ref());
        let name = &self.vol.name;
        Some(match out? {
            Ok(o) => {
                noticelog!(
                    "volume {name}: recovered ({} stripes resynced, members flushed) in {:.3} s, journal at generation {}",
                    o.resynced,
                    (ffi::now_us() - self.started_us) as f64 / 1e6,
                    o.generation
                );
                Ok(())
            }
            Err(control::RecoveryError::Stopped) => Err(err(
                ESHUTDOWN,
                format!("volume {name}: resync stopped with the volume"),
            )),
            Err(control::RecoveryError::Journal) => Err(err(
                EIO,
                format!("journal {}: record write failed", self.vol.journal().name),
            )),
            Err(e) => Err(err(EIO, format!("volume {name}: {e}"))),
        })
    }
}

impl Recovery {
    /// Publish progress for `bdev_jraid_get_bdevs` (at most every 100 ms, and at the end): a
    /// full resync under `set_journal`, the resync after a crash under `recovery`.
    fn publish(&mut self, out: Option<&Result<control::Outcome, control::RecoveryError>>) {
        use super::status::{ProcState, ProcStatus, Slot};
        let now = ffi::now_us();
        let (n, completed) = (self.rec.total(), self.rec.completed());
        if now < self.published_us + 100_000 && completed < n && out.is_none() {
            return;
        }
        self.published_us = now;
        let elapsed = (now - self.started_us).max(1) as f64 / 1e6;
        let g = &self.vol.geo;
        let mib =
            completed as f64 * (g.stripe_blocks() * g.block_size as u64) as f64 / (1 << 20) as f64;
        let mut st = ProcStatus::starting(PassKind::Resync, &self.vol.journal().name);
        st.state = match out {
            None if self.stopping => ProcState::Stopping,
            None if completed < n => ProcState::Running,
            None if !self.new_journal => ProcState::Flushing,
            None => ProcState::Attaching,
            Some(Ok(_)) if !self.new_journal => ProcState::Done,
            Some(Ok(_)) => ProcState::Attaching,
            Some(Err(control::RecoveryError::Stopped)) => ProcState::Aborted,
            Some(Err(_)) => ProcState::Failed,
        };
        if let Some(Err(e)) = out {
            st.error = Some(e.to_string());
        }
        st.total = n;
        st.done = completed;
        st.elapsed_s = elapsed;
        st.mib_per_s = (mib / elapsed * 10.0).round() / 10.0;
        (st.window, st.bandwidth_mb) = if self.online {
            recovery_limits()
        } else {
            (RESYNC_DEPTH, 0)
        };
        st.errors = self.rec.failed();
        let slot = if !self.new_journal {
            Slot::Recovery
        } else {
            Slot::SetJournal
        };
        super::status::set(self.vol.uuid, slot, Some(st));
    }
}

unsafe extern "C" fn poll(arg: *mut c_void) -> i32 {
    guard("recovery poller", || {
        let r = arg as *mut Recovery;
        // SAFETY: `arg` is the boxed Recovery registered with this poller, alive until it
        // finishes below.
        let out = unsafe { (*r).step() };
        let Some(result) = out else {
            return sys::spdk_thread_poller_rc_SPDK_POLLER_BUSY as i32;
        };
        // SAFETY: finished: take the box back (the poller is unregistered first, so it never
        // runs again), put the channel got on this thread.
        let mut b = unsafe { Box::from_raw(r) };
        // SAFETY: as above.
        unsafe {
            sys::spdk_poller_unregister(&mut b.poller);
            sys::spdk_put_io_channel(b.ch);
        }
        let done = b.done.take().expect("recovery finishes once");
        let v = b.vol.clone();
        drop(b);
        // Register the bdev only after the channel is really gone (put is asynchronous).
        let v = ffi::SendPtr(Arc::into_raw(v) as *mut SpdkVolume);
        let done = SendDone(done);
        ffi::send_to(ffi::current_thread(), move || {
            let (done, v) = (done, v);
            // SAFETY: from Arc::into_raw just above, consumed once.
            let v = unsafe { Arc::from_raw(v.0 as *const SpdkVolume) };
            (done.0)(v, result);
        });
        sys::spdk_thread_poller_rc_SPDK_POLLER_BUSY as i32
    })
}

struct SendDone(RecoveryDone);
// SAFETY: only sent to the current thread (see `poll`).
unsafe impl Send for SendDone {}

/// Record member states after assembly found a member missing.
pub(crate) fn note_missing(v: &Arc<SpdkVolume>) {
    if v.vol.failed_count() > 0 {
        superblocks::record_member_states(v);
    }
}
