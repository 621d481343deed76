//! The jraid bdev: the volume object SPDK sees (fn_table, io_device), the journals volumes
//! share, the registry of both, status JSON and hot-remove of base bdevs.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ffi::{c_void, CString};
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use spdk_sys as sys;

use super::base::BaseBdev;
use super::channel::{self, Routes};
use super::ffi::{self, cstring, errlog, guard, noticelog, warnlog};
use super::json;
use crate::engine::{IoOp, MemberHealth, Volume};
use crate::journal::{Journal, JournalVolume};
use crate::layout::Geometry;
use crate::superblock::JournalSuperblock;

/// One device of a journal: its bdev name and the bdev (`None` once hot-removed, or when it
/// was missing at assembly).
pub(crate) struct JournalDev {
    /// Bdev name (of a device missing at assembly: empty, its name is not known; changed by
    /// an online replacement).
    pub name: Mutex<String>,
    /// The bdev.
    pub base: Mutex<Option<BaseBdev>>,
}

/// A journal (one bdev, or two: claim 13) and the journal state every volume on it shares.
pub(crate) struct SpdkJournal {
    /// Name of the journal: its bdev's, or of a journal of two devices both names joined by
    /// `+` ([`journal_name`]).
    pub name: String,
    /// Its devices, by index in the pair (one for a journal of one device).
    pub devs: Vec<JournalDev>,
    /// Journal state.
    pub journal: Arc<Journal>,
    /// The on-disk superblock as last written (of a pair: each device's copy carries its own
    /// index, see [`SpdkJournal::sb_images`]).
    pub sb: Mutex<JournalSuperblock>,
    /// Where the channels of its volumes live.
    pub routes: Arc<Routes>,
    /// What is updating the superblock now (see [`SpdkJournal::lease`]).
    pub busy: Mutex<Option<String>>,
    /// The devices of its pair missing when it was opened (bit k: device k). A volume
    /// assembled on it then trusts its newest record only as
    /// [`crate::control::recovery::journal_complete`] says ([`SpdkJournal::complete_for`]);
    /// else it resyncs every stripe.
    pub missing: u8,
    /// The journal on the members of one volume: its devices are windows of members 0 and 1
    /// ([`super::base::BaseBdev::window`]); no other volume may share it.
    pub on_members: bool,
}

/// The name of a journal over these device names.
pub(crate) fn journal_name(devs: &[String]) -> String {
    let names: Vec<&str> = devs
        .iter()
        .map(|n| {
            if n.is_empty() {
                "(missing)"
            } else {
                n.as_str()
            }
        })
        .collect();
    names.join("+")
}

impl SpdkJournal {
    /// A running journal over `devs` (by pair index) with state `journal`, superblock `sb`.
    pub fn new(
        devs: Vec<(String, Option<BaseBdev>)>,
        journal: Journal,
        sb: JournalSuperblock,
        missing: u8,
    ) -> Arc<SpdkJournal> {
        let names: Vec<String> = devs.iter().map(|(n, _)| n.clone()).collect();
        let on_members = devs
            .iter()
            .any(|(_, b)| b.as_ref().is_some_and(|b| b.offset_blocks != 0));
        Arc::new(SpdkJournal {
            name: journal_name(&names),
            devs: devs
                .into_iter()
                .map(|(name, b)| JournalDev {
                    name: Mutex::new(name),
                    base: Mutex::new(b),
                })
                .collect(),
            journal: Arc::new(journal),
            sb: Mutex::new(sb),
            routes: Default::default(),
            busy: Mutex::new(None),
            missing,
            on_members,
        })
    }

    /// Whether a volume whose member superblocks record `dropped` may trust the newest record
    /// read when this journal was opened.
    pub fn complete_for(&self, dropped: u8) -> bool {
        crate::control::recovery::journal_complete(self.journal.cfg.mode, self.missing, dropped)
    }

    /// A raw handle on journal device `k` (`None`: gone).
    pub fn raw_of(&self, k: u32) -> Option<super::base::RawDev> {
        self.devs
            .get(k as usize)?
            .base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| b.raw())
    }

    /// The bdev name of device `k` (empty: not known).
    pub fn dev_name(&self, k: u32) -> String {
        self.devs.get(k as usize).map_or_else(String::new, |d| {
            d.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }

    /// Whether device `k` is there (not removed, not missing).
    pub fn has(&self, k: u32) -> bool {
        self.devs
            .get(k as usize)
            .is_some_and(|d| d.base.lock().unwrap_or_else(|e| e.into_inner()).is_some())
    }

    /// Whether some device is still there.
    pub fn present(&self) -> bool {
        (0..self.devs.len() as u32).any(|k| self.has(k))
    }

    /// The index of the device whose bdev is `name`.
    pub fn device_named(&self, name: &str) -> Option<u32> {
        self.devs
            .iter()
            .position(|d| {
                let n = d.name.lock().unwrap_or_else(|e| e.into_inner());
                !n.is_empty() && *n == name
            })
            .map(|k| k as u32)
    }

    /// The journal's name over its devices' names now (after an online replacement, the
    /// replacement's; `name` keeps the one it was opened under).
    pub fn current_name(&self) -> String {
        let names: Vec<String> = (0..self.devs.len() as u32)
            .map(|k| self.dev_name(k))
            .collect();
        journal_name(&names)
    }

    /// Names of the devices present (what `bdev_jraid_create` is given to bring it back).
    pub fn present_names(&self) -> Vec<String> {
        (0..self.devs.len() as u32)
            .filter(|k| self.has(*k))
            .map(|k| self.dev_name(k))
            .collect()
    }

    /// Close device `k` (or every device: `None`).
    pub fn close(&self, k: Option<u32>) {
        for (i, d) in self.devs.iter().enumerate() {
            if k.is_none_or(|k| k as usize == i) {
                drop(d.base.lock().unwrap_or_else(|e| e.into_inner()).take());
            }
        }
    }

    /// The superblock `sb` as written to each present device: (device, bdev name, image), its
    /// pair index set for each.
    pub fn sb_images(&self, sb: &JournalSuperblock) -> Vec<(super::base::RawDev, String, Vec<u8>)> {
        (0..self.devs.len() as u32)
            .filter_map(|k| {
                let raw = self.raw_of(k)?;
                let mut s = sb.clone();
                if let Some(p) = s.pair.as_mut() {
                    p.index = k;
                }
                Some((raw, self.dev_name(k), s.encode()))
            })
            .collect()
    }

    /// Take the right to change this journal's volume list (pick a volume number, write the
    /// superblock) until the lease is dropped: taken synchronously, so two requests sent back
    /// to back can neither pick the same number nor overwrite each other's superblock write.
    pub fn lease(self: &Arc<Self>, what: String) -> Result<SbLease, String> {
        let mut b = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = b.as_ref() {
            return Err(format!(
                "journal {}: {other} is in progress; retry when it is done",
                self.name
            ));
        }
        *b = Some(what);
        Ok(SbLease(self.clone()))
    }
}

/// The right to change a journal's volume list; released when dropped.
pub(crate) struct SbLease(Arc<SpdkJournal>);

impl Drop for SbLease {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A jraid volume registered (or being brought up) as an SPDK bdev.
pub(crate) struct SpdkVolume {
    /// Bdev name.
    pub name: String,
    /// Volume uuid (also the bdev's uuid).
    pub uuid: [u8; 16],
    /// Volume number on its journal.
    pub number: u32,
    /// Shape.
    pub geo: Geometry,
    /// Shared engine state.
    pub vol: Arc<Volume>,
    /// The journal and this volume's state on it (replaced by `bdev_jraid_set_journal`).
    attached: Mutex<Attached>,
    /// Member bdev names, by index (a replacement member changes its slot).
    pub member_names: Mutex<Vec<String>>,
    /// Member identities recorded in the superblocks, by index.
    pub member_uuids: Mutex<Vec<[u8; 16]>>,
    /// Member bdevs (`None`: missing or removed).
    pub members: Mutex<Vec<Option<BaseBdev>>>,
    /// Superblock sequence number last written.
    pub seq: Mutex<u64>,
    /// Journal devices the member superblocks record (or are about to record) as dropped
    /// ([`crate::journal::Journal::drops_to_record`]); every superblock write carries it.
    pub journal_dropped: AtomicU8,
    /// With the journal on the members: the byte offset of the journal area on every member
    /// (members 0 and 1 hold the journal's two devices there); 0 otherwise.
    pub journal_area: u64,
    /// Listed stripes left at risk by a recovery that ran with a member missing.
    pub at_risk: Mutex<Vec<u64>>,
    /// Where this volume's channels live (stripe-lock messages between them).
    pub routes: Arc<super::channel::Routes>,
    /// The bdev SPDK holds a pointer to.
    bdev: Box<UnsafeCell<sys::spdk_bdev>>,
    /// NUL-terminated name for `bdev.name`.
    cname: CString,
}

// SAFETY: the raw `spdk_bdev` is written only before registration (app thread) and afterwards
// only read by SPDK; everything else is Sync already.
unsafe impl Sync for SpdkVolume {}
// SAFETY: as above.
unsafe impl Send for SpdkVolume {}

/// A volume's journal and its state on that journal.
#[derive(Clone)]
pub(crate) struct Attached {
    /// The journal.
    pub journal: Arc<SpdkJournal>,
    /// The journal's per-volume state.
    pub jv: Arc<JournalVolume>,
}

/// Every journal and volume of the module.
#[derive(Default)]
pub(crate) struct Registry {
    /// Volumes, registered or being brought up.
    pub volumes: Vec<Arc<SpdkVolume>>,
    /// Journals in use.
    pub journals: Vec<Arc<SpdkJournal>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    volumes: Vec::new(),
    journals: Vec::new(),
});

/// The registry. Never hold it across a call into SPDK that may call back into the module.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Volume of this name.
pub(crate) fn find_volume(name: &str) -> Option<Arc<SpdkVolume>> {
    registry().volumes.iter().find(|v| v.name == name).cloned()
}

/// What a volume is made of.
pub(crate) struct VolumeSpec {
    /// Bdev name.
    pub name: String,
    /// Volume uuid.
    pub uuid: [u8; 16],
    /// Volume number on the journal.
    pub number: u32,
    /// Shape.
    pub geo: Geometry,
    /// Opened and claimed members (`None`: missing).
    pub members: Vec<Option<BaseBdev>>,
    /// Member bdev names.
    pub member_names: Vec<String>,
    /// Member identities.
    pub member_uuids: Vec<[u8; 16]>,
    /// The journal.
    pub journal: Arc<SpdkJournal>,
    /// Write through the journal (false only for comparison runs; not persisted).
    pub journal_on: bool,
    /// Superblock seq on the members.
    pub seq: u64,
    /// Journal devices the member superblocks record as dropped.
    pub journal_dropped: u8,
    /// The journal area on the members (journal on the members), or 0.
    pub journal_area: u64,
    /// Stripes initialised ([`crate::engine::Volume::set_init_stripes`]).
    pub init_stripes: u64,
}

impl SpdkVolume {
    /// A volume over opened members and a journal (attached to the journal, not registered
    /// anywhere yet).
    pub fn new(spec: VolumeSpec) -> Arc<SpdkVolume> {
        let VolumeSpec {
            name,
            uuid,
            number,
            geo,
            members,
            member_names,
            member_uuids,
            journal,
            journal_on,
            seq,
            journal_dropped,
            journal_area,
            init_stripes,
        } = spec;
        let volatile = members.iter().flatten().any(|m| m.write_cache);
        let vol = Arc::new(Volume::new(
            number,
            geo,
            volatile,
            journal_on.then(|| journal.journal.clone()),
        ));
        // Member failures are recorded in the superblocks by the member watcher
        // (rebuild::watch), and writes are acknowledged only after that.
        vol.set_records_failures(true);
        vol.set_init_stripes(init_stripes);
        for (i, m) in members.iter().enumerate() {
            if m.is_none() {
                vol.fail_member(i as u32);
            }
        }
        let (jv, _carried) = journal.journal.attach_volume(number, geo.stripes, volatile);
        journal.journal.drops_found(number, journal_dropped);
        let cname = cstring(&name);
        // SAFETY: spdk_bdev is a plain C struct for which all-zero is the documented
        // "unset" state of every field.
        let bdev: sys::spdk_bdev = unsafe { std::mem::zeroed() };
        Arc::new(SpdkVolume {
            name,
            uuid,
            number,
            geo,
            vol,
            attached: Mutex::new(Attached { journal, jv }),
            member_names: Mutex::new(member_names),
            member_uuids: Mutex::new(member_uuids),
            members: Mutex::new(members),
            seq: Mutex::new(seq),
            journal_dropped: AtomicU8::new(journal_dropped),
            journal_area,
            at_risk: Mutex::new(Vec::new()),
            routes: Arc::default(),
            bdev: Box::new(UnsafeCell::new(bdev)),
            cname,
        })
    }

    /// The journal the volume writes through.
    pub fn journal(&self) -> Arc<SpdkJournal> {
        self.attached().journal
    }

    /// The journal and the volume's state on it.
    pub fn attached(&self) -> Attached {
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make `a` the volume's journal (`bdev_jraid_set_journal`; channels follow separately).
    pub fn set_attached(&self, a: Attached) {
        *self.attached.lock().unwrap_or_else(|e| e.into_inner()) = a;
    }

    /// The io_device key of this volume.
    pub fn io_device(self: &Arc<Self>) -> *mut c_void {
        Arc::as_ptr(self) as *mut c_void
    }

    /// Register the io_device (before recovery, which needs a channel).
    pub fn register_io_device(self: &Arc<Self>) {
        // SAFETY: the key is this volume's address, alive while the registry holds it (until
        // `io_device_gone`); the callbacks match SPDK's types; the name is copied.
        unsafe {
            sys::spdk_io_device_register(
                self.io_device(),
                Some(channel::channel_create),
                Some(channel::channel_destroy),
                channel::CTX_SIZE,
                self.cname.as_ptr(),
            )
        };
    }

    /// Fill in and register the bdev. Returns SPDK's rc.
    pub fn register_bdev(self: &Arc<Self>) -> i32 {
        let write_cache = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .any(|m| m.write_cache);
        let b = self.bdev.get();
        // SAFETY: the bdev is not registered yet, so nothing else reads it; every pointer
        // stored lives as long as the volume, which outlives the registration.
        unsafe {
            (*b).name = self.cname.as_ptr() as *mut _;
            (*b).product_name = c"jraid RAID-5".as_ptr() as *mut _;
            (*b).blocklen = self.geo.block_size;
            (*b).blockcnt = self.geo.volume_blocks();
            (*b).write_cache = write_cache as i32;
            (*b).optimal_io_boundary = self.geo.stripe_blocks() as u32;
            (*b).uuid.u.raw = self.uuid;
            (*b).ctxt = Arc::as_ptr(self) as *mut c_void;
            (*b).fn_table = &FN_TABLE.0;
            (*b).module = super::module_ptr();
            sys::spdk_bdev_register(b)
        }
    }

    /// Member bdev names, by index.
    pub fn names(&self) -> Vec<String> {
        self.member_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Member identities, by index.
    pub fn uuids(&self) -> Vec<[u8; 16]> {
        self.member_uuids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The raw bdev.
    pub fn bdev_ptr(&self) -> *mut sys::spdk_bdev {
        self.bdev.get()
    }

    /// Status as JSON (bdev_jraid_get_bdevs and dump_info_json).
    pub fn info(&self) -> Value {
        let v = &self.vol;
        let state = match v.failed_count() {
            _ if self.journal().journal.is_failed() => "journal_failed",
            0 if self.journal().journal.degraded() => "journal_degraded",
            0 => "online",
            1 => "degraded",
            _ => "failed",
        };
        let names = self.names();
        let members: Vec<Value> = (0..self.geo.members)
            .map(|m| {
                json!({
                    "name": names[m as usize],
                    "state": match v.health(m) {
                        MemberHealth::Active => "active",
                        MemberHealth::Failed if v.rebuilding() == Some(m) => "rebuilding",
                        MemberHealth::Failed => "failed",
                    },
                })
            })
            .collect();
        let Attached { journal, jv } = self.attached();
        let j = &journal.journal;
        let dropped = self
            .journal_dropped
            .load(std::sync::atomic::Ordering::Acquire);
        let devices: Vec<Value> = (0..journal.devs.len() as u32)
            .map(|k| {
                json!({
                    "name": journal.dev_name(k),
                    "state": if journal.has(k) && j.device_live(k as usize) { "online" } else { "lost" },
                    // This volume's member superblocks record (or are being written to
                    // record) the device as dropped while running: a restart that finds it
                    // alone resyncs every stripe.
                    "recorded_dropped": dropped & (1 << k) != 0,
                })
            })
            .collect();
        let mode = j.cfg.mode.name();
        let listed = jv.listed_entries();
        json!({
            "name": self.name,
            "uuid": json::uuid_string(&self.uuid),
            "state": state,
            "volume": self.number,
            "strip_size_kb": self.geo.strip_blocks * self.geo.block_size as u64 / 1024,
            "block_size": self.geo.block_size,
            "num_blocks": self.geo.volume_blocks(),
            "num_members": self.geo.members,
            "stripes": self.geo.stripes,
            "members": members,
            "journal": {
                "name": journal.current_name(),
                "present": journal.present(),
                "uuid": json::uuid_string(&j.cfg.uuid),
                "slot_bytes": j.cfg.slot_bytes,
                "failed": j.is_failed(),
                "devices": devices,
                "mode": mode,
                // The journal on the members: its devices are the journal areas (at this byte
                // offset) of members 0 and 1.
                "on_members": journal.on_members,
                "area_offset": self.journal_area,
                "degraded": j.degraded(),
                "devices_lost": j.stats.devices_lost.load(std::sync::atomic::Ordering::Relaxed),
                "listed": j.listed_count(),
                "max_listed": j.cfg.max_entries(),
                "records_written": j.stats.record_writes.load(std::sync::atomic::Ordering::Relaxed),
                "checkpoints": j.stats.checkpoints.load(std::sync::atomic::Ordering::Relaxed),
                "listed_ahead": j.stats.listed_ahead.load(std::sync::atomic::Ordering::Relaxed),
                // Listed entries the record writer looked at for removal.
                "removal_checks": j.stats.removal_checks.load(std::sync::atomic::Ordering::Relaxed),
                "bytes_written": j.stats.bytes_written.load(std::sync::atomic::Ordering::Relaxed),
                "user_writes": j.stats.user_writes.load(std::sync::atomic::Ordering::Relaxed),
                "bytes_per_write": j.stats.bytes_per_write(),
                "records_per_write": j.stats.records_per_write(),
            },
            "rebuild": super::rebuild::rebuild_status(self),
            "scrub": super::rebuild::scrub_status(self),
            "set_journal": super::rebuild::set_journal_status(self),
            "recovery": super::status::json(&self.uuid, super::status::Slot::Recovery),
            // The initial parity pass (null when none ran since the start), and the stripes
            // whose parity is known to match their data (all: `stripes`).
            "init": super::status::json(&self.uuid, super::status::Slot::Init),
            "init_stripes": self.vol.init_stripes(),
            "unsynced_stripes": self.vol.unsynced_stripes(),
            "generation": j.durable_generation(),
            "open_generation": j.open_generation(),
            "dirty_stripes": listed,
            "journal_listed": j.listed_count(),
            "record_writes": j.stats.record_writes.load(std::sync::atomic::Ordering::Relaxed),
            "marks": j.stats.marks.load(std::sync::atomic::Ordering::Relaxed),
            "fast_path_hits": j.stats.fast_path.load(std::sync::atomic::Ordering::Relaxed),
            "record_full_waits": j.stats.full.load(std::sync::atomic::Ordering::Relaxed),
            "stripes_at_risk": *self.at_risk.lock().unwrap_or_else(|e| e.into_inner()),
            "writes": {
                "full_stripe": v.stats.full_stripe.load(std::sync::atomic::Ordering::Relaxed),
                "reconstruct_write": v.stats.reconstruct_write.load(std::sync::atomic::Ordering::Relaxed),
                "read_modify_write": v.stats.read_modify_write.load(std::sync::atomic::Ordering::Relaxed),
                "merged": v.stats.merged_writes.load(std::sync::atomic::Ordering::Relaxed),
                "degraded_write": v.stats.degraded_write.load(std::sync::atomic::Ordering::Relaxed),
                "degraded_read": v.stats.degraded_read.load(std::sync::atomic::Ordering::Relaxed),
                "read_repaired": v.stats.read_repaired.load(std::sync::atomic::Ordering::Relaxed),
            },
        })
    }

    /// The `bdev_jraid_create` call that brings this volume back (save_config).
    pub fn config(&self) -> Value {
        let j = self.journal();
        let mut params = json!({
            "name": self.name,
            "strip_size_kb": self.geo.strip_blocks * self.geo.block_size as u64 / 1024,
            "base_bdevs": self.names(),
            "volume": self.number,
            "uuid": json::uuid_string(&self.uuid),
        });
        if j.on_members {
            // Where its area is comes from the members' superblocks.
            params["journal_on_members"] = json!(true);
        } else if j.devs.len() == 1 {
            params["journal_bdev"] = json!(j.name);
        } else {
            // The devices there now: a restart without the other one resyncs every stripe.
            params["journal_bdevs"] = json!(j.present_names());
            params["journal_mode"] = json!(j.journal.cfg.mode.name());
        }
        json!({ "method": "bdev_jraid_create", "params": params })
    }
}

/// A static fn table (SPDK keeps a pointer to it).
struct FnTable(sys::spdk_bdev_fn_table);
// SAFETY: immutable after construction; holds only function pointers.
unsafe impl Sync for FnTable {}

static FN_TABLE: FnTable = FnTable(fn_table());

const fn fn_table() -> sys::spdk_bdev_fn_table {
    // SAFETY: an all-zero fn table is all `None`.
    let mut t: sys::spdk_bdev_fn_table = unsafe { std::mem::MaybeUninit::zeroed().assume_init() };
    t.destruct = Some(destruct);
    t.submit_request = Some(channel::submit_request);
    t.io_type_supported = Some(io_type_supported);
    t.get_io_channel = Some(get_io_channel);
    t.dump_info_json = Some(dump_info_json);
    t.write_config_json = Some(write_config_json);
    t
}

unsafe extern "C" fn io_type_supported(_ctx: *mut c_void, ty: sys::spdk_bdev_io_type) -> bool {
    matches!(
        ty,
        sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_READ
            | sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_WRITE
            | sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_FLUSH
            | sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_RESET
    )
}

unsafe extern "C" fn get_io_channel(ctx: *mut c_void) -> *mut sys::spdk_io_channel {
    guard("get_io_channel", || {
        // SAFETY: `ctx` is the volume's io_device key, registered before the bdev.
        unsafe { sys::spdk_get_io_channel(ctx) }
    })
}

/// The volume behind a bdev ctxt pointer.
///
/// # Safety
/// `ctx` is the `ctxt` of a registered jraid bdev.
unsafe fn volume_of<'a>(ctx: *mut c_void) -> &'a SpdkVolume {
    &*(ctx as *const SpdkVolume)
}

unsafe extern "C" fn dump_info_json(ctx: *mut c_void, w: *mut sys::spdk_json_write_ctx) -> i32 {
    guard("dump_info_json", || {
        // SAFETY: called by SPDK for our registered bdev.
        let v = unsafe { volume_of(ctx) };
        json::write_named(w, "jraid", &v.info());
        0
    })
}

unsafe extern "C" fn write_config_json(
    bdev: *mut sys::spdk_bdev,
    w: *mut sys::spdk_json_write_ctx,
) {
    guard("write_config_json", || {
        // SAFETY: `bdev` is our registered bdev; its ctxt is the volume.
        let v = unsafe { volume_of((*bdev).ctxt) };
        json::write_value(w, &v.config());
    })
}

unsafe extern "C" fn destruct(ctx: *mut c_void) -> i32 {
    guard("destruct", || {
        super::rebuild::volume_stopping(ctx as *const SpdkVolume);
        // SAFETY: `ctx` is the io_device key of this volume; the unregister callback runs once
        // every channel is gone.
        unsafe { sys::spdk_io_device_unregister(ctx, Some(io_device_gone)) };
        1
    })
}

unsafe extern "C" fn io_device_gone(io_device: *mut c_void) {
    guard("io_device unregistered", || {
        // The volume leaves its (shared) journal through control::detach: its members are
        // flushed first (that module's ordering rule), then its entries leave.
        let key = ffi::SendPtr(io_device);
        let found = registry()
            .volumes
            .iter()
            .find(|v| Arc::as_ptr(v) as *mut c_void == io_device)
            .cloned();
        let Some(v) = found else {
            return volume_gone(io_device);
        };
        let sj = v.journal();
        let journal = sj.journal.clone();
        let mut detach = crate::control::detach::Detach::new(v.number, false);
        if detach.poll(&journal) != crate::control::detach::DetachStep::FlushMembers {
            return volume_gone(io_device);
        }
        let members: Vec<(String, super::base::RawDev)> = v
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .filter(|m| m.write_cache)
            .map(|m| (m.name.clone(), m.raw()))
            .collect();
        let name = v.name.clone();
        drop(v);
        let join = super::superblocks::Join::new(members.len(), move |r| {
            let key = key;
            if let Err(e) = &r {
                warnlog!("volume {name}: a member flush before leaving the journal failed: {e}");
            }
            detach.flushed(r.map_err(|_| ()));
            detach_step(key, detach, sj, name);
        });
        for (name, m) in members {
            let join = join.clone();
            super::base::raw_io(m, IoOp::Flush, 0, None, move |ok, _| {
                super::superblocks::Join::one(
                    &join,
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("member {name}"))
                    },
                )
            });
        }
    })
}

/// The volume's detach after its member flush: a record without it made durable (written
/// here, on the app thread, as a channel writes one; retried while another record write is
/// in flight), then the rest of `io_device_gone`.
fn detach_step(
    key: ffi::SendPtr<c_void>,
    mut d: crate::control::detach::Detach,
    sj: Arc<SpdkJournal>,
    name: String,
) {
    use crate::control::detach::DetachStep;
    match d.poll(&sj.journal) {
        DetachStep::WriteRecord => {}
        _ => return volume_gone(key.0),
    }
    if !sj.present() {
        // Every journal device is gone: the journal fails its records anyway.
        return volume_gone(key.0);
    }
    let mut rec = Vec::new();
    let Some(job) = sj.journal.begin_flush(ffi::now_us(), &mut rec) else {
        return super::life::later(1000, Box::new(move || detach_step(key, d, sj, name)));
    };
    let writes: Vec<crate::journal::JournalWrite> = job.writes().to_vec();
    let (generation, flush_after) = (job.generation, job.flush_after);
    detach_write(key, d, sj, name, rec, writes, 0, generation, flush_after);
}

/// Write `writes[i]` of a detach's record (one per journal device it goes to), tell the
/// journal how it went ([`crate::journal::Journal::write_done`], which decides when the record
/// is durable), then the next one; after the last, back to [`detach_step`].
#[allow(clippy::too_many_arguments)]
fn detach_write(
    key: ffi::SendPtr<c_void>,
    d: crate::control::detach::Detach,
    sj: Arc<SpdkJournal>,
    name: String,
    rec: Vec<u8>,
    writes: Vec<crate::journal::JournalWrite>,
    i: usize,
    generation: u64,
    flush_after: bool,
) {
    let Some(&w) = writes.get(i) else {
        return detach_step(key, d, sj, name);
    };
    let raw = sj.raw_of(w.dev);
    let mut buf = crate::engine::Buf::new(w.end - w.start);
    buf.as_mut_slice().copy_from_slice(&rec[w.start..w.end]);
    let finish = move |ok: bool| {
        let mut notify = Vec::new();
        if !ok {
            warnlog!(
                "volume {name}: the record written as it left journal {} failed on device {}",
                sj.name,
                w.dev
            );
        }
        sj.journal.write_done(generation, w.dev, ok, &mut notify);
        for a in notify {
            sj.routes
                .send(a, crate::engine::Msg::Durable { generation });
        }
        detach_write(
            key,
            d,
            sj,
            name,
            rec,
            writes,
            i + 1,
            generation,
            flush_after,
        );
    };
    let Some(raw) = raw else {
        return finish(false);
    };
    let raw2 = raw.clone();
    super::base::raw_io(raw, IoOp::Write, w.lba, Some(buf), move |ok, _| {
        if ok && flush_after {
            super::base::raw_io(raw2, IoOp::Flush, 0, None, move |ok, _| finish(ok));
        } else {
            finish(ok);
        }
    });
}

/// The rest of `io_device_gone`, once the members are flushed.
fn volume_gone(io_device: *mut c_void) {
    {
        let Some(v) = forget_volume(io_device as *const SpdkVolume) else {
            errlog!("unregistered io_device of an unknown volume");
            return;
        };
        noticelog!("jraid volume {} stopped", v.name);
        // SAFETY: our bdev; destruct returned 1 and this completes it.
        unsafe { sys::spdk_bdev_destruct_done(v.bdev_ptr(), 0) };
        // The bdev struct must outlive SPDK's use of it after destruct_done: drop the volume
        // (and with it the bdev and the base descriptors) from a later message.
        let v = ffi::SendPtr(Arc::into_raw(v) as *mut SpdkVolume);
        ffi::send_to(ffi::current_thread(), move || {
            let v = v;
            // SAFETY: the pointer came from Arc::into_raw just above and is consumed once.
            drop(unsafe { Arc::from_raw(v.0 as *const SpdkVolume) });
        });
    }
}

/// Take a volume out of the registry, detach it from its journal, close its members, and
/// drop the journal if no volume uses it any more. Returns the volume.
pub(crate) fn forget_volume(ptr: *const SpdkVolume) -> Option<Arc<SpdkVolume>> {
    let (v, journal_gone) = {
        let mut r = registry();
        let i = r.volumes.iter().position(|v| Arc::as_ptr(v) == ptr)?;
        let v = r.volumes.remove(i);
        let vj = v.journal();
        let still_used = r.volumes.iter().any(|o| Arc::ptr_eq(&o.journal(), &vj));
        let gone = if still_used {
            None
        } else {
            let j = r.journals.iter().position(|j| Arc::ptr_eq(j, &vj));
            j.map(|j| r.journals.remove(j))
        };
        (v, gone)
    };
    // A volume that served (io_device_gone) has left through control::detach already (this
    // call then changes nothing); one whose creation failed never served a write, and what
    // its recovery wrote was flushed before the record (control::recovery).
    v.journal().journal.detach_volume(v.number);
    v.members
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter_mut()
        .for_each(|m| drop(m.take()));
    if let Some(j) = journal_gone {
        j.close(None);
    }
    Some(v)
}

/// A base bdev is being hot-removed: fail it in its volume, or drop it from its journal (a
/// journal of two goes on with the other device; the last device gone fails the journal),
/// and close it once every channel has let go.
pub(crate) fn base_removed(name: &str) {
    let (vols, journal) = {
        let r = registry();
        let journal = r
            .journals
            .iter()
            .find_map(|j| j.device_named(name).map(|k| (j.clone(), k)));
        let vols: Vec<(Arc<SpdkVolume>, Option<u32>)> = r
            .volumes
            .iter()
            .filter_map(|v| {
                let m = v.names().iter().position(|n| n == name);
                let j = journal
                    .as_ref()
                    .is_some_and(|(j, _)| Arc::ptr_eq(j, &v.journal()));
                (m.is_some() || j).then(|| (v.clone(), m.map(|m| m as u32)))
            })
            .collect();
        (vols, journal)
    };
    if let Some((j, k)) = &journal {
        let others_live = (0..j.devs.len() as u32)
            .any(|o| o != *k && j.has(o) && j.journal.device_live(o as usize));
        j.journal.device_gone(*k);
        if others_live {
            warnlog!(
                "journal {}: device {k} ({name}) removed: records go on to the other device (journal degraded; no write fails)",
                j.name
            );
        } else {
            j.journal.fail();
            warnlog!(
                "journal bdev {name} removed: writes to its volumes fail until a new journal is set"
            );
        }
    }
    // The device closes when the last volume's channels have let go of it.
    let closer = journal.map(|(j, k)| Arc::new(JournalCloser(j, k)));
    for (v, member) in vols {
        // With the journal on the members, one bdev is both a member and a journal device.
        let on_journal = closer
            .as_ref()
            .filter(|c| Arc::ptr_eq(&c.0, &v.journal()))
            .cloned();
        if let Some(m) = member {
            warnlog!("volume {}: member {m} ({name}) removed", v.name);
            v.vol.fail_member(m);
            super::superblocks::record_member_states(&v);
            drop_channels(v.clone(), Target::Member(m), None);
        }
        if let Some(c) = on_journal {
            let k = c.1;
            drop_channels(v, Target::Journal(k), Some(c));
        }
    }
}

/// Closes a removed journal device when dropped (after every volume let go of it).
pub(crate) struct JournalCloser(Arc<SpdkJournal>, u32);

impl Drop for JournalCloser {
    fn drop(&mut self) {
        self.0.close(Some(self.1));
    }
}

/// The device whose channels [`drop_channels`] retires.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// Member `i`.
    Member(u32),
    /// Journal device `k`.
    Journal(u32),
}

/// Retire every reactor's channel to `target` of `v` (each put after its last I/O), then let
/// go of a member (a journal closer in `journal` lets go of the journal device when its last
/// holder goes); descriptors close when their last holder lets go.
pub(crate) fn drop_channels(
    v: Arc<SpdkVolume>,
    target: Target,
    journal: Option<Arc<JournalCloser>>,
) {
    let step = move |ctx: &mut super::channel::ChanCtx| -> bool {
        let be = ctx.channel.backend_mut();
        let slot = match target {
            Target::Member(m) => be.members.get_mut(m as usize).and_then(|s| s.take()),
            Target::Journal(k) => be.journal.get_mut(k as usize).and_then(|s| s.take()),
        };
        if let Some(dc) = slot {
            // I/O in flight on it completes through the bdev layer (with errors).
            be.retire(dc);
        }
        true
    };
    let io_device = v.io_device();
    super::life::each_channel_until(io_device, 0, Box::new(step), move || {
        if let Target::Member(m) = target {
            let b = v.members.lock().unwrap_or_else(|e| e.into_inner())[m as usize].take();
            drop(b);
        }
        drop(journal);
    });
}
