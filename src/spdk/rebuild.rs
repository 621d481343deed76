//! Member replacement and background stripe passes: `bdev_jraid_add_base_bdev` (claim a
//! replacement, mark it "rebuilding" in the superblocks, rebuild every stripe onto it in a
//! window, flush, then mark it active), the resumption of a rebuild cut short (from examine),
//! the scrub pass ([`super::scrub`] starts it), the initial parity pass of a volume created
//! over members that may not be blank ([`start_init`]) and the watcher that records member
//! failures found by I/O errors in the superblocks.
//!
//! Everything here runs on the app thread: one poller per running pass, submitting through
//! the volume's channel on that thread; user I/O goes on meanwhile on every reactor.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use spdk_sys as sys;

use super::backend::DevSlot;
use super::base::BaseBdev;
use super::bdev::{registry, SpdkVolume};
use super::channel::{self, pump, INTERNAL_TAG};
use super::ffi::{self, guard, noticelog, warnlog};
use super::superblocks::record_member_states_then;
use crate::control;
use crate::engine::{MemberHealth, UserOp};

/// Stripes a pass keeps in flight unless asked otherwise.
pub(crate) const DEFAULT_WINDOW: usize = 16;
/// Period of a pass's poller.
const PASS_POLL_US: u64 = 0;
/// Period of the member-state watcher (writes wait for it after a member fails).
const WATCH_US: u64 = 10_000;
/// After a failed attempt to record member states, the next one waits this long.
const RECORD_RETRY_US: u64 = 1_000_000;

// Internal request codes (tag bits 1..4; bit 0 is INTERNAL_TAG, the stripe sits above).
const CODE_REBUILD: u64 = 1;
const CODE_REBUILD_FLUSH: u64 = 2;
const CODE_SCRUB: u64 = 3;
const CODE_REPAIR: u64 = 4;
const CODE_RESYNC: u64 = 5;
/// The crash recovery's requests (`create::Recovery`; it may run beside a pass on the same
/// channel, so each takes only completions of its own codes).
pub(crate) const CODE_RECOVERY: u64 = 6;
const CODE_INIT: u64 = 7;
const CODE_INIT_FLUSH: u64 = 8;

pub(crate) fn tag(code: u64, stripe: u64) -> u64 {
    (stripe << 5) | (code << 1) | INTERNAL_TAG
}

pub(crate) fn code_of(tag: u64) -> u64 {
    (tag >> 1) & 0xf
}

fn stripe_of(tag: u64) -> u64 {
    tag >> 5
}

pub(crate) use super::status::Slot;
use super::status::{ProcState, ProcStatus};

/// Volumes (by address) being destroyed: their passes stop.
static STOPPING: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
/// Member states last seen by the watcher, by volume address.
static SEEN: Mutex<Option<HashMap<usize, Vec<u8>>>> = Mutex::new(None);
/// Volumes (by address) whose member states are being recorded, or when the next attempt may
/// start after a failed one (µs).
static RECORDING: Mutex<Option<HashMap<usize, Option<u64>>>> = Mutex::new(None);

/// The rebuild of `v` as JSON for `bdev_jraid_get_bdevs` (null when none ran).
pub(crate) fn rebuild_status(v: &SpdkVolume) -> Value {
    super::status::json(&v.uuid, Slot::Rebuild)
}

/// The scrub of `v` as JSON (null when none ran).
pub(crate) fn scrub_status(v: &SpdkVolume) -> Value {
    super::status::json(&v.uuid, Slot::Scrub)
}

/// The journal replacement of `v` as JSON (null when none ran).
pub(crate) fn set_journal_status(v: &SpdkVolume) -> Value {
    super::status::json(&v.uuid, Slot::SetJournal)
}

pub(crate) use super::status::running;

/// The volume at `ptr` is being destroyed: its passes stop (called from `destruct`).
pub(crate) fn volume_stopping(ptr: *const SpdkVolume) {
    STOPPING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(ptr as usize);
}

pub(crate) fn stopping(v: &Arc<SpdkVolume>) -> bool {
    STOPPING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(&(Arc::as_ptr(v) as usize)))
}

// ---- member-state watcher --------------------------------------------------------------------

fn states(v: &SpdkVolume) -> Vec<u8> {
    (0..v.geo.members)
        .map(|m| match v.vol.health(m) {
            MemberHealth::Active => 0,
            MemberHealth::Failed if v.vol.rebuilding() == Some(m) => 2,
            MemberHealth::Failed => 1,
        })
        .collect()
}

/// Watch volume `v` (from its start, before its recovery): a member the engine fails on an
/// I/O error is recorded as failed in the superblocks of the others, and then the engine is
/// told ([`crate::engine::Volume::failures_recorded`]): writes completed meanwhile are held
/// until then (the engine's rule "a member failure is durable before a write that depends on
/// it is acknowledged"). Likewise the journal devices its mirrored journal wants recorded as
/// dropped ([`crate::journal::Journal::drops_to_record`]): records wait for that. Called on
/// the app thread.
pub(crate) fn watch(v: &Arc<SpdkVolume>) {
    let key = Arc::as_ptr(v) as usize;
    if let Some(s) = STOPPING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.remove(&key);
    }
    SEEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, states(v));
    if WATCHER.load(Ordering::Acquire).is_null() {
        // SAFETY: a poller on the app thread (this one), unregistered by `stop_watch` at module
        // fini (also on the app thread).
        let p =
            unsafe { sys::spdk_poller_register(Some(watch_poll), std::ptr::null_mut(), WATCH_US) };
        WATCHER.store(p, Ordering::Release);
    }
}

/// The member watcher's poller (null until the first volume comes online). Touched only on
/// the app thread.
static WATCHER: AtomicPtr<sys::spdk_poller> = AtomicPtr::new(std::ptr::null_mut());

/// Unregister the member watcher (module fini, app thread): SPDK's threads must exit with no
/// poller registered, or the app waits for a timeout at exit.
pub(crate) fn stop_watch() {
    let mut p = WATCHER.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` was registered by `watch` on this (app) thread and not unregistered since
        // (swapped out above, so exactly once).
        unsafe { sys::spdk_poller_unregister(&mut p) };
    }
}

unsafe extern "C" fn watch_poll(_arg: *mut c_void) -> i32 {
    guard("member watcher", || {
        let vols = registry().volumes.clone();
        let mut changed = Vec::new();
        let mut online = Vec::new();
        {
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            let seen = seen.get_or_insert_with(HashMap::new);
            let live: HashSet<usize> = vols.iter().map(|v| Arc::as_ptr(v) as usize).collect();
            seen.retain(|k, _| live.contains(k));
            for v in &vols {
                let key = Arc::as_ptr(v) as usize;
                let Some(old) = seen.get_mut(&key) else {
                    continue; // not online yet
                };
                online.push(v.clone());
                let now = states(v);
                if *old != now {
                    let newly_failed: Vec<usize> = (0..now.len())
                        .filter(|&i| now[i] == 1 && old[i] != 1)
                        .collect();
                    *old = now;
                    changed.push((v.clone(), newly_failed));
                }
            }
        }
        for (v, failed) in &changed {
            if stopping(v) {
                continue;
            }
            let names = v.names();
            for &m in failed {
                warnlog!(
                    "volume {}: member {m} ({}) failed; serving degraded",
                    v.name,
                    names[m]
                );
            }
        }
        let now = ffi::now_us();
        if let Some(rec) = RECORDING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            rec.retain(|k, _| vols.iter().any(|v| Arc::as_ptr(v) as usize == *k));
        }
        for v in online {
            let key = Arc::as_ptr(&v) as usize;
            let unrecorded = v.vol.unrecorded_failures();
            let state_changed = changed.iter().any(|(c, _)| Arc::ptr_eq(c, &v));
            let journal = v.journal().journal.clone();
            // The journal on the members: a failure about to be recorded takes its member's
            // copy first (as in the io_uring runtime).
            if v.journal_area != 0 && unrecorded.is_some() {
                for k in v.vol.journal_copies_out() {
                    journal.device_gone(k);
                }
            }
            let dropped = journal.drops_to_record(v.number);
            if unrecorded.is_none() && !state_changed && dropped.is_none() {
                continue;
            }
            {
                let mut rec = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
                let rec = rec.get_or_insert_with(HashMap::new);
                match rec.get(&key) {
                    Some(None) => continue, // being recorded; the next poll looks again
                    Some(Some(next)) if now < *next => continue,
                    _ => {}
                }
                rec.insert(key, None);
            }
            // Read before the states are captured (synchronously, in the call below): every
            // failure up to `upto` is in what gets written, and the drops in `dropped`.
            let upto = unrecorded;
            if let Some(m) = dropped {
                if m & !(v.journal_dropped.load(Ordering::Acquire)) != 0 {
                    warnlog!(
                        "volume {}: recording journal device(s) {} dropped in the member superblocks; records wait for it",
                        v.name,
                        (0..2).filter(|k| m & (1 << k) != 0).map(|k| k.to_string()).collect::<Vec<_>>().join(",")
                    );
                }
                v.journal_dropped.store(m, Ordering::Release);
            }
            let v2 = v.clone();
            record_member_states_then(&v, move |r| {
                let mut rec = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
                let rec = rec.get_or_insert_with(HashMap::new);
                match r {
                    Ok(()) => {
                        if let Some(upto) = upto {
                            v2.vol.failures_recorded(upto);
                        }
                        if let Some(m) = dropped {
                            journal.drops_recorded(v2.number, m);
                        }
                        rec.remove(&key);
                    }
                    Err(e) => {
                        warnlog!(
                            "volume {}: member states not recorded ({e}); writes wait, retrying",
                            v2.name
                        );
                        rec.insert(key, Some(ffi::now_us() + RECORD_RETRY_US));
                    }
                }
            });
        }
        sys::spdk_thread_poller_rc_SPDK_POLLER_IDLE as i32
    })
}

// ---- passes ----------------------------------------------------------------------------------

/// What a pass does (the control plane's pass kinds).
type Kind = control::PassKind;

fn slot(kind: Kind) -> Slot {
    match kind {
        Kind::Rebuild { .. } => Slot::Rebuild,
        Kind::Scrub { .. } => Slot::Scrub,
        Kind::Resync => Slot::SetJournal,
        Kind::Init => Slot::Init,
    }
}

fn code_of_op(kind: Kind, op: UserOp) -> u64 {
    match (kind, op) {
        (Kind::Init, UserOp::Resync) => return CODE_INIT,
        (Kind::Init, _) => return CODE_INIT_FLUSH,
        _ => {}
    }
    match op {
        UserOp::Rebuild => CODE_REBUILD,
        UserOp::Scrub => CODE_SCRUB,
        UserOp::Repair => CODE_REPAIR,
        UserOp::Resync => CODE_RESYNC,
        _ => CODE_REBUILD_FLUSH,
    }
}

fn op_of_code(code: u64) -> UserOp {
    match code {
        CODE_REBUILD => UserOp::Rebuild,
        CODE_SCRUB => UserOp::Scrub,
        CODE_REPAIR => UserOp::Repair,
        CODE_RESYNC | CODE_INIT => UserOp::Resync,
        _ => UserOp::Flush,
    }
}

/// Runs when a pass is over, with the pass and its final state.
pub(crate) type PassThen = Box<dyn FnOnce(&PassResult)>;

/// How a pass ended (for whoever started it).
pub(crate) struct PassResult {
    /// "done", "failed" or "aborted".
    pub state: &'static str,
    /// The first error.
    pub first_error: Option<String>,
    /// Status as last published.
    pub status: ProcStatus,
}

/// A pass on the app thread: the control plane's [`control::Pass`] driven through a channel
/// of the volume, with its status published for `bdev_jraid_get_bdevs`.
struct Pass {
    vol: Arc<SpdkVolume>,
    pass: control::Pass,
    ch: *mut sys::spdk_io_channel,
    poller: *mut sys::spdk_poller,
    window: usize,
    /// Bytes per second (member bytes for a rebuild, stripe data for a scrub); 0: no cap.
    cap: u64,
    started_us: u64,
    /// An error after the stripes (recording the rebuilt member).
    late_error: Option<String>,
    /// The first error was logged.
    logged: bool,
    bdev: String,
    /// Run at the end (resync passes).
    then: Option<PassThen>,
    /// The initial pass: the watermark last recorded in the superblocks, and whether a
    /// superblock write recording it is in flight.
    init_recorded: u64,
    init_recording: Rc<Cell<bool>>,
}

impl Pass {
    fn first_error(&self) -> Option<String> {
        self.pass
            .first_error()
            .map(str::to_owned)
            .or_else(|| self.late_error.clone())
    }

    fn status(&self, state: &str) -> ProcStatus {
        let done = self.pass.done();
        let elapsed = (ffi::now_us() - self.started_us).max(1) as f64 / 1e6;
        let mib =
            self.pass.done_here() as f64 * self.pass.bytes_per_stripe() as f64 / (1 << 20) as f64;
        ProcStatus {
            kind: self.pass.kind(),
            state: ProcState::from_pass(state),
            bdev: self.bdev.clone(),
            total: self.vol.geo.stripes,
            done,
            rebuilt: self.vol.vol.rebuilt_stripes(),
            elapsed_s: elapsed,
            mib_per_s: (mib / elapsed * 10.0).round() / 10.0,
            bandwidth_mb: self.cap / (1 << 20),
            window: self.window,
            errors: self.pass.errors() + self.late_error.is_some() as u64,
            error: self.first_error(),
            mismatches: self.pass.mismatches(),
            mismatch_stripes: self.pass.mismatch_stripes().to_vec(),
            repaired: self.pass.repaired(),
            repair_failed: self.pass.repair_failed(),
        }
    }

    fn publish(&self, state: &str) {
        super::status::set(
            self.vol.uuid,
            slot(self.pass.kind()),
            Some(self.status(state)),
        );
    }

    /// The initial pass: record the volume's watermark in the superblocks when it moved
    /// (one superblock write at a time; the pass goes on meanwhile: the engine's watermark
    /// covers only stripes resynced and flushed, so any superblock written from it is right).
    fn record_init(&mut self) {
        let w = self.vol.vol.init_stripes();
        if w == self.init_recorded || self.init_recording.get() {
            return;
        }
        self.init_recorded = w;
        self.init_recording.set(true);
        let flag = self.init_recording.clone();
        let name = self.vol.name.clone();
        record_member_states_then(&self.vol, move |r| {
            flag.set(false);
            if let Err(e) = r {
                warnlog!("volume {name}: recording initialised stripes: {e}");
            }
        });
    }

    fn fail_late(&mut self, msg: String) {
        warnlog!("volume {}: {msg}", self.vol.name);
        self.late_error.get_or_insert(msg);
    }

    fn mine(&self, code: u64) -> bool {
        match self.pass.kind() {
            Kind::Rebuild { .. } => code == CODE_REBUILD || code == CODE_REBUILD_FLUSH,
            Kind::Scrub { .. } => code == CODE_SCRUB || code == CODE_REPAIR,
            Kind::Resync => code == CODE_RESYNC || code == CODE_REBUILD_FLUSH,
            Kind::Init => code == CODE_INIT || code == CODE_INIT_FLUSH,
        }
    }

    /// One step; `Some(final state)` when the pass is over.
    fn step(&mut self) -> Option<&'static str> {
        // SAFETY: `ch` is our channel of the volume's io_device on this thread; its context
        // lives while we hold the channel.
        let ptr = unsafe { channel::ctx_of(self.ch) };
        let mut mine = Vec::new();
        {
            // SAFETY: no other borrow of the context is live in this poller.
            let ctx = unsafe { &mut *ptr };
            ctx.internal.retain(|c| {
                if self.mine(code_of(c.tag)) {
                    mine.push((c.tag, c.result));
                    false
                } else {
                    true
                }
            });
        }
        for (t, result) in mine {
            self.pass
                .complete(op_of_code(code_of(t)), stripe_of(t), result);
        }
        let step = self
            .pass
            .poll(ffi::now_us(), &self.vol.vol, stopping(&self.vol));
        if self.pass.kind() == Kind::Init {
            self.record_init();
            // `bdev_jraid_set_options` may have changed the limits.
            let (window, mb) = super::create::init_limits();
            if (window, mb << 20) != (self.window, self.cap) {
                self.window = window;
                self.cap = mb << 20;
                self.pass.set_limits(window, self.cap);
            }
        }
        if !self.logged {
            if let Some(e) = self.pass.first_error() {
                warnlog!("volume {}: {e}", self.vol.name);
                self.logged = true;
            }
        }
        match step {
            control::PassStep::Submit(list) => {
                for s in list {
                    // SAFETY: as above; the borrow ends before pump.
                    let r = unsafe {
                        (*ptr).channel.submit(
                            tag(code_of_op(self.pass.kind(), s.op), s.lba),
                            s.op,
                            s.lba,
                            s.blocks,
                            None,
                        )
                    };
                    if let Err(e) = r {
                        self.pass.refused(s, e.error);
                    }
                    // SAFETY: no borrow of the context is live.
                    unsafe { pump(ptr) };
                }
                self.publish(self.pass.state());
                None
            }
            control::PassStep::Done(end) => Some(end.as_str()),
        }
    }
}

unsafe extern "C" fn pass_poll(arg: *mut c_void) -> i32 {
    guard("jraid pass poller", || {
        let p = arg as *mut Pass;
        // SAFETY: `arg` is the boxed Pass registered with this poller, alive until it is
        // taken back below.
        let out = unsafe { (*p).step() };
        let Some(state) = out else {
            return sys::spdk_thread_poller_rc_SPDK_POLLER_BUSY as i32;
        };
        // SAFETY: over: unregister first (so it never runs again), take the box back, put the
        // channel got on this thread.
        let mut b = unsafe { Box::from_raw(p) };
        // SAFETY: as above.
        unsafe {
            sys::spdk_poller_unregister(&mut b.poller);
            sys::spdk_put_io_channel(b.ch);
        }
        finish(*b, state);
        sys::spdk_thread_poller_rc_SPDK_POLLER_BUSY as i32
    })
}

fn finish(mut p: Pass, state: &'static str) {
    match p.pass.kind() {
        Kind::Resync => {
            let status = p.status(state);
            noticelog!(
                "volume {}: full resync {state}: {} of {} stripes{}",
                p.vol.name,
                p.pass.done(),
                p.vol.geo.stripes,
                p.first_error()
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            );
            let r = PassResult {
                state,
                first_error: p.first_error(),
                status,
            };
            if let Some(then) = p.then.take() {
                then(&r);
            }
        }
        Kind::Init => {
            if state != "done" {
                noticelog!(
                    "volume {}: initial parity pass {state} at stripe {} of {}{}",
                    p.vol.name,
                    p.vol.vol.init_stripes(),
                    p.vol.geo.stripes,
                    p.first_error()
                        .map(|e| format!(" (first error: {e}; a rebuild initialises every stripe)"))
                        .unwrap_or_default()
                );
                return p.publish(state);
            }
            p.publish("recording");
            let v = p.vol.clone();
            record_member_states_then(&v, move |r| match r {
                Ok(()) => {
                    noticelog!(
                        "volume {}: parity initialised: {} stripes at {} MiB/s",
                        p.vol.name,
                        p.vol.geo.stripes,
                        p.status("done").mib_per_s
                    );
                    p.publish("done");
                }
                Err(e) => {
                    let mut p = p;
                    p.fail_late(format!("recording the initialised stripes: {e}"));
                    p.publish("failed");
                }
            });
        }
        Kind::Scrub { repair } => {
            noticelog!(
                "volume {}: scrub {state}: {} stripes checked, {} mismatches{}",
                p.vol.name,
                p.pass.done(),
                p.pass.mismatches(),
                if repair {
                    format!(", {} repaired", p.pass.repaired())
                } else {
                    String::new()
                }
            );
            p.publish(state);
        }
        Kind::Rebuild { member } => {
            if state != "done" {
                if state == "failed" && p.vol.vol.rebuilding() == Some(member) {
                    // Back to failed (the engine keeps the failed count), so another
                    // replacement can be added.
                    p.vol.vol.fail_member(member);
                    record_member_states_then(&p.vol, |_| {});
                }
                p.publish(state);
                return;
            }
            if !p.vol.vol.finish_rebuild(member) {
                let mut p = p;
                p.fail_late(format!(
                    "rebuild of member {member} did not finish ({} of {} stripes rebuilt)",
                    p.vol.vol.rebuilt_stripes(),
                    p.vol.geo.stripes
                ));
                p.publish("failed");
                return;
            }
            p.publish("recording");
            let v = p.vol.clone();
            record_member_states_then(&v, move |r| match r {
                Ok(()) => {
                    noticelog!(
                        "volume {}: member {member} ({}) rebuilt: {} stripes at {} MiB/s",
                        p.vol.name,
                        p.bdev,
                        p.pass.done(),
                        p.status("done").mib_per_s
                    );
                    super::set_journal::member_copy_back(&p.vol, member);
                    p.publish("done");
                }
                Err(e) => {
                    let mut p = p;
                    p.fail_late(format!("recording the rebuilt member: {e}"));
                    p.publish("failed");
                }
            });
        }
    }
}

/// Options of a pass.
#[derive(Clone, Copy)]
pub(crate) struct PassOpts {
    /// Stripes in flight.
    pub window: usize,
    /// MiB/s cap (0: none).
    pub bandwidth_mb: u64,
}

fn start_pass(
    v: &Arc<SpdkVolume>,
    kind: Kind,
    opts: PassOpts,
    bdev: String,
    then: Option<PassThen>,
) -> Result<(), String> {
    // SAFETY: the io_device is registered while the volume is in the registry; on this thread.
    let ch = unsafe { sys::spdk_get_io_channel(v.io_device()) };
    if ch.is_null() {
        return Err("no channel for the pass".into());
    }
    let window = opts.window.max(1);
    let cap = opts.bandwidth_mb << 20;
    let pass = control::Pass::new(
        kind,
        &v.geo,
        control::PassOptions {
            window,
            bytes_per_s: cap,
            skip_member_flush: false,
        },
    );
    let p = Box::into_raw(Box::new(Pass {
        vol: v.clone(),
        pass,
        ch,
        poller: std::ptr::null_mut(),
        window,
        cap,
        started_us: ffi::now_us(),
        late_error: None,
        logged: false,
        bdev,
        then,
        init_recorded: v.vol.init_stripes(),
        init_recording: Rc::new(Cell::new(false)),
    }));
    // SAFETY: `p` lives until `pass_poll` takes it back; the poller runs on this thread.
    unsafe {
        (*p).publish("running");
        (*p).poller = sys::spdk_poller_register(Some(pass_poll), p as *mut c_void, PASS_POLL_US);
    }
    Ok(())
}

/// Start the initial parity pass of `v` when some of its stripes are not initialised
/// ([`crate::engine::Volume::set_init_stripes`]: a volume created over members that may not be
/// blank, or one whose pass was cut short by a restart) and every member is in service;
/// nothing otherwise (a rebuild initialises every stripe). Called when a volume comes online.
pub(crate) fn start_init(v: &Arc<SpdkVolume>) {
    let from = v.vol.init_stripes();
    if from >= v.geo.stripes || v.vol.failed_count() > 0 || running(&v.uuid, Slot::Init) {
        return;
    }
    noticelog!(
        "volume {}: initialising parity in the background, stripes {from} to {} (writes there \
         compute parity from all the data until then)",
        v.name,
        v.geo.stripes
    );
    let (window, bandwidth_mb) = super::create::init_limits();
    let opts = PassOpts {
        window,
        bandwidth_mb,
    };
    if let Err(e) = start_pass(v, Kind::Init, opts, String::new(), None) {
        warnlog!("volume {}: initial parity pass not started: {e}", v.name);
    }
}

/// Start a scrub of `v` (checked by [`super::scrub`]).
pub(crate) fn start_scrub(v: &Arc<SpdkVolume>, repair: bool, opts: PassOpts) -> Result<(), String> {
    if running(&v.uuid, Slot::Scrub) {
        return Err(format!("a scrub of {} is already running", v.name));
    }
    if running(&v.uuid, Slot::Init) {
        return Err(format!(
            "volume {}: its parity is being initialised (see init in bdev_jraid_get_bdevs): \
             scrub once that is done",
            v.name
        ));
    }
    if running(&v.uuid, Slot::SetJournal) {
        return Err(format!(
            "volume {}: a new journal is being attached",
            v.name
        ));
    }
    start_pass(v, Kind::Scrub { repair }, opts, String::new(), None)
}

/// Start the full resync of `v` that precedes attaching journal bdev `journal_bdev`; `then`
/// runs when it is over (checked by [`super::set_journal`]).
pub(crate) fn start_resync(
    v: &Arc<SpdkVolume>,
    journal_bdev: String,
    opts: PassOpts,
    then: PassThen,
) -> Result<(), String> {
    start_pass(v, Kind::Resync, opts, journal_bdev, Some(then))
}

// ---- member replacement ----------------------------------------------------------------------

/// Why a replacement was refused: (negative errno, message).
pub(crate) type AddError = (i32, String);

type AddDone = Box<dyn FnOnce(Result<(), AddError>)>;

fn open_replacement(v: &SpdkVolume, name: &str) -> Result<BaseBdev, AddError> {
    let mut b = BaseBdev::open(name).map_err(|e| (-19, e.to_string()))?;
    b.claim().map_err(|e| (-16, e.to_string()))?;
    if b.block_size != v.geo.block_size {
        return Err((
            -22,
            format!(
                "bdev {name} has {}-byte blocks, the volume {}",
                b.block_size, v.geo.block_size
            ),
        ));
    }
    if b.num_blocks < v.geo.member_blocks_used() {
        return Err((
            -28,
            format!(
                "bdev {name} has {} blocks, a member needs {}",
                b.num_blocks,
                v.geo.member_blocks_used()
            ),
        ));
    }
    Ok(b)
}

/// `bdev_jraid_add_base_bdev`: replace the failed member of `v` with `bdev` and rebuild it.
pub(crate) fn add_base_bdev(v: Arc<SpdkVolume>, bdev: String, opts: PassOpts, done: AddDone) {
    if v.vol.rebuilding().is_some() || running(&v.uuid, Slot::Rebuild) {
        return done(Err((
            -16,
            format!("volume {}: a rebuild is running", v.name),
        )));
    }
    if running(&v.uuid, Slot::SetJournal) {
        return done(Err((
            -16,
            format!("volume {}: a new journal is being attached", v.name),
        )));
    }
    if v.vol.failed_count() != 1 {
        return done(Err((
            -22,
            format!(
                "volume {}: {} members failed; a replacement needs exactly one",
                v.name,
                v.vol.failed_count()
            ),
        )));
    }
    let Some(m) = v.vol.failed_member() else {
        return done(Err((-22, format!("volume {}: no failed member", v.name))));
    };
    {
        let r = registry();
        let used = r.volumes.iter().any(|o| o.names().contains(&bdev))
            || r.journals.iter().any(|j| j.device_named(&bdev).is_some());
        let same_slot = v.names()[m as usize] == bdev;
        if used && !same_slot {
            return done(Err((
                -16,
                format!("bdev {bdev} is already in use by jraid"),
            )));
        }
    }
    // Let go of the failed member first (channels, then its descriptor and claim).
    super::status::set(
        v.uuid,
        Slot::Rebuild,
        Some(ProcStatus::starting(Kind::Rebuild { member: m }, &bdev)),
    );
    let v2 = v.clone();
    swap_member(&v, m, None, move || {
        let old = v2.members.lock().unwrap_or_else(|e| e.into_inner())[m as usize].take();
        drop(old);
        match open_replacement(&v2, &bdev) {
            Ok(b) => attach(v2, m, b, opts, done),
            Err(e) => {
                super::status::set(v2.uuid, Slot::Rebuild, None);
                done(Err(e))
            }
        }
    });
}

/// After examine assembled `v` without member `m`, whose superblock said "rebuilding": claim
/// `bdev` again and rebuild it from the start.
pub(crate) fn resume(v: &Arc<SpdkVolume>, m: u32, bdev: &str) {
    resume_try(v.clone(), m, bdev.to_owned(), 0);
}

/// Claims fail while another module's examine still has the bdev open: retry a while.
fn resume_try(v: Arc<SpdkVolume>, m: u32, bdev: String, attempt: u32) {
    let name = v.name.clone();
    let bdev_name = bdev.clone();
    let b = match open_replacement(&v, &bdev) {
        Ok(b) => b,
        Err((-16, _)) if attempt < 250 && !stopping(&v) => {
            return super::life::later(
                20_000,
                Box::new(move || resume_try(v, m, bdev, attempt + 1)),
            );
        }
        Err((_, e)) => {
            warnlog!("volume {name}: cannot resume the rebuild of member {m}: {e}");
            return super::create::note_missing(&v);
        }
    };
    let opts = PassOpts {
        window: DEFAULT_WINDOW,
        bandwidth_mb: 0,
    };
    attach(
        v.clone(),
        m,
        b,
        opts,
        Box::new(move |r| match r {
            Ok(()) => noticelog!("volume {name}: rebuild of member {m} ({bdev_name}) restarted"),
            Err((_, e)) => warnlog!("volume {name}: rebuild of member {m} not restarted: {e}"),
        }),
    );
}

/// Examine found `bdev` carrying superblock `sb` after its volume came up without it: when
/// that volume runs with slot `sb.member_index` failed and `sb` says this bdev was being
/// rebuilt into that slot, rebuild it again. True when it did.
pub(crate) fn resume_late(bdev: &str, sb: &crate::superblock::MemberSuperblock) -> bool {
    let Some(v) = registry()
        .volumes
        .iter()
        .find(|v| v.uuid == sb.volume_uuid)
        .cloned()
    else {
        return false;
    };
    let m = sb.member_index;
    let ok = sb.member_states.get(m as usize) == Some(&crate::superblock::MemberState::Rebuilding)
        && v.vol.failed_count() == 1
        && v.vol.failed_member() == Some(m)
        && v.vol.rebuilding().is_none()
        && !running(&v.uuid, Slot::Rebuild)
        && v.uuids().get(m as usize) == sb.member_uuids.get(m as usize);
    if ok {
        noticelog!(
            "volume {}: {bdev} (member {m}) was being rebuilt: rebuilding it again",
            v.name
        );
        resume(&v, m, bdev);
    }
    ok
}

/// Put `b` into slot `m` of every channel, mark it rebuilding, record that in the
/// superblocks, then start the rebuild pass.
fn attach(v: Arc<SpdkVolume>, m: u32, b: BaseBdev, opts: PassOpts, done: AddDone) {
    let name = b.name.clone();
    let uuid = b.uuid;
    let dev = b.clone();
    {
        // Channels created from now on get the replacement too.
        let mut members = v.members.lock().unwrap_or_else(|e| e.into_inner());
        members[m as usize] = Some(b);
        // Cache volatility re-evaluated before any write reaches the replacement: a volatile
        // one makes stripes wait for a member flush before they leave the record.
        let volatile = members.iter().flatten().any(|d| d.write_cache);
        if volatile != v.vol.member_volatile_cache() {
            noticelog!(
                "volume {}: members {} cache writes volatilely now ({name} joined)",
                v.name,
                if volatile { "may" } else { "no longer" }
            );
        }
        v.vol.set_member_volatile_cache(volatile);
        v.attached().jv.set_volatile_members(volatile);
    }
    v.member_names.lock().unwrap_or_else(|e| e.into_inner())[m as usize] = name.clone();
    v.member_uuids.lock().unwrap_or_else(|e| e.into_inner())[m as usize] = uuid;
    let v2 = v.clone();
    swap_member(&v, m, Some(dev), move || {
        if stopping(&v2) {
            return done(Err((-19, format!("volume {} is going away", v2.name))));
        }
        if !v2.vol.start_rebuild(m) {
            super::status::set(v2.uuid, Slot::Rebuild, None);
            return done(Err((
                -16,
                format!(
                    "volume {}: the engine refused to rebuild member {m}",
                    v2.name
                ),
            )));
        }
        noticelog!(
            "volume {}: rebuilding member {m} onto {name} ({} stripes)",
            v2.name,
            v2.geo.stripes
        );
        let v3 = v2.clone();
        record_member_states_then(&v2, move |r| {
            if let Err(e) = r {
                warnlog!("volume {}: {e}", v3.name);
            }
            let r = start_pass(&v3, Kind::Rebuild { member: m }, opts, name, None);
            done(r.map_err(|e| (-12, e)));
        });
    });
}

/// On every channel of `v`: retire the channel to member `m` (put after its last I/O), and with
/// `dev`, get one to `dev` instead. Then run `then` on this thread.
fn swap_member(v: &Arc<SpdkVolume>, m: u32, dev: Option<BaseBdev>, then: impl FnOnce() + 'static) {
    let step = move |ctx: &mut channel::ChanCtx| -> bool {
        let be = ctx.channel.backend_mut();
        let i = m as usize;
        let keep = matches!((be.members[i].as_ref(), dev.as_ref()), (Some(a), Some(b)) if a.is(b));
        if !keep {
            if let Some(old) = be.members[i].take() {
                be.retire(old);
            }
            if let Some(b) = dev.as_ref() {
                be.members[i] = DevSlot::open(b);
            }
        }
        true
    };
    super::life::each_channel_until(v.io_device(), 0, Box::new(step), then);
}
