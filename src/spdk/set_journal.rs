//! `bdev_jraid_set_journal {name, journal_bdev}`: a new journal for a volume whose journal
//! failed or was removed.
//!
//! Without its journal a volume refuses writes (reads go on), and nothing says any more which
//! stripes may be inconsistent. So before a new journal is attached, every stripe's parity is
//! rewritten from its data (a full resync, a background pass with progress under
//! "set_journal" in `bdev_jraid_get_bdevs`; writes stay refused meanwhile, so the resync cannot
//! race them). Then, in this order:
//!
//! 1. the new journal's superblock is written (a fresh bdev is formatted; a running journal
//!    of other volumes gets this volume's entry), listing nothing dirty;
//! 2. the member superblocks are rewritten naming the new journal — from here on a restart
//!    assembles the volume with it, and its empty record is the truth (every stripe is clean);
//! 3. every reactor's channel moves to the new journal (each once nothing of it depends on
//!    the old one) and writes are accepted again;
//! 4. the old journal lets go of the volume and is closed when no volume uses it any more.
//!
//! A crash before step 2 leaves the members naming the lost journal: the volume then waits in
//! examine and `bdev_jraid_set_journal` (which also accepts such a waiting volume, see
//! [`super::examine`]) runs the full resync again. Until step 2 nothing on the volume's
//! members changed, and a failure up to there releases the new journal bdev untouched (a
//! running journal keeps its other volumes).
#![allow(unsafe_code)]

use std::sync::Arc;

use super::backend::DevSlot;
use super::base::BaseBdev;
use super::bdev::{registry, Attached, SpdkJournal, SpdkVolume};
use super::channel::{ChanCtx, Route};
use super::create::{self, CreateError};
use super::ffi::{self, noticelog, warnlog, SendPtr};
use super::life;
use super::rebuild::{self, PassOpts, PassResult, Slot};
use super::status::{ProcState, ProcStatus};
use super::superblocks::{record_member_states_then, write_sb, Join};
use crate::control::PassKind;
use crate::journal::JournalVolume;
use crate::superblock::{JournalVolume as JournalEntry, MemberState, MAX_VOLUMES};

const EINVAL: i32 = 22;
const EBUSY: i32 = 16;
const EEXIST: i32 = 17;
const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const ENOMEM: i32 = 12;

/// Why a request was refused: (negative errno, message).
pub(crate) type SetError = (i32, String);

/// Answer of the RPC.
pub(crate) type SetDone = Box<dyn FnOnce(Result<(), SetError>)>;

fn e(code: i32, msg: impl Into<String>) -> SetError {
    (-code, msg.into())
}

fn from_create(c: CreateError) -> SetError {
    (c.code, c.msg)
}

/// Where the new journal comes from.
pub(crate) enum Target {
    /// A bdev to format as a journal (opened and claimed).
    New(BaseBdev),
    /// A running journal that serves other volumes.
    Shared(Arc<SpdkJournal>),
}

/// Pick the new journal `journal_bdev` for volume `number` named `name` (uuid `uuid`) whose
/// members are `members`: a healthy running journal where the number is free, or a bdev no one
/// uses, which is opened, claimed and checked.
pub(crate) fn choose(
    journal_bdev: &str,
    name: &str,
    uuid: [u8; 16],
    number: u32,
    members: &[String],
) -> Result<Target, SetError> {
    if members.iter().any(|m| m == journal_bdev) {
        return Err(e(
            EINVAL,
            format!("bdev {journal_bdev} is a member of volume {name}"),
        ));
    }
    let (running, member_of) = {
        let r = registry();
        let running = r
            .journals
            .iter()
            .find(|j| j.name == journal_bdev && j.present())
            .cloned();
        let member_of = r
            .volumes
            .iter()
            .find(|v| v.names().iter().any(|n| n == journal_bdev))
            .map(|v| v.name.clone());
        (running, member_of)
    };
    if let Some(v) = member_of {
        return Err(e(
            EBUSY,
            format!("bdev {journal_bdev} is a member of volume {v}"),
        ));
    }
    let Some(j) = running else {
        return create::open_journal_bdev(journal_bdev)
            .map(Target::New)
            .map_err(from_create);
    };
    if j.journal.is_failed() {
        return Err(e(
            EBUSY,
            format!("journal bdev {journal_bdev} has failed; choose another bdev"),
        ));
    }
    let sb = j.sb.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(o) = sb
        .volumes
        .iter()
        .find(|o| o.volume_number == number && o.volume_uuid != uuid)
    {
        return Err(e(
            EEXIST,
            format!(
                "volume number {number} is already in use on journal {journal_bdev} (by {})",
                o.name
            ),
        ));
    }
    if let Some(o) = sb
        .volumes
        .iter()
        .find(|o| o.name == name && o.volume_uuid != uuid)
    {
        return Err(e(
            EEXIST,
            format!(
                "name {name} is already in use on journal {journal_bdev} (volume {})",
                o.volume_number
            ),
        ));
    }
    if sb.volumes.len() >= MAX_VOLUMES && sb.volumes.iter().all(|o| o.volume_uuid != uuid) {
        return Err(e(
            ENOSPC,
            format!("journal {journal_bdev} already serves {MAX_VOLUMES} volumes"),
        ));
    }
    Ok(Target::Shared(j))
}

/// Step 1: write the journal superblock that lists `entry` and return the running journal
/// (a new one is put into the registry).
pub(crate) fn install(
    target: Target,
    entry: JournalEntry,
    done: impl FnOnce(Result<Arc<SpdkJournal>, SetError>) + 'static,
) {
    match target {
        Target::New(b) => {
            let sb = create::new_journal_sb(&b, vec![entry]);
            if let Err(er) = sb.validate() {
                return done(Err(e(EINVAL, format!("bad journal superblock: {er}"))));
            }
            let (raw, name, image) = (b.raw(), b.name.clone(), sb.encode());
            write_sb(raw, name, image, move |r| match r {
                Ok(()) => {
                    let j = create::new_spdk_journal(b, sb);
                    registry().journals.push(j.clone());
                    done(Ok(j))
                }
                Err(m) => done(Err(e(EIO, m))),
            });
        }
        Target::Shared(j) => {
            let lease = match j.lease(format!("bdev_jraid_set_journal {}", entry.name)) {
                Ok(l) => l,
                Err(m) => return done(Err(e(EBUSY, m))),
            };
            let mut sb = j.sb.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(o) = sb.volumes.iter().find(|o| {
                o.volume_uuid != entry.volume_uuid
                    && (o.volume_number == entry.volume_number || o.name == entry.name)
            }) {
                return done(Err(e(
                    EEXIST,
                    format!(
                        "journal {}: volume number {} or name {} is already in use (by {})",
                        j.name, entry.volume_number, entry.name, o.name
                    ),
                )));
            }
            sb.seq += 1;
            sb.volumes.retain(|o| o.volume_uuid != entry.volume_uuid);
            sb.volumes.push(entry);
            if let Err(er) = sb.validate() {
                return done(Err(e(EINVAL, format!("bad journal superblock: {er}"))));
            }
            let images = j.sb_images(&sb);
            if images.is_empty() {
                return done(Err(e(EIO, format!("journal bdev {} was removed", j.name))));
            }
            let j2 = j.clone();
            let join = Join::new(images.len(), move |r| match r {
                Ok(()) => {
                    *j2.sb.lock().unwrap_or_else(|e| e.into_inner()) = sb;
                    drop(lease);
                    done(Ok(j2))
                }
                Err(m) => done(Err(e(EIO, m))),
            });
            for (raw, name, image) in images {
                let join = join.clone();
                write_sb(raw, name, image, move |r| Join::one(&join, r));
            }
        }
    }
}

fn publish(v: &SpdkVolume, status: Option<ProcStatus>) {
    super::status::set(v.uuid, Slot::SetJournal, status);
}

/// `bdev_jraid_set_journal` on a running volume: checks, then the full resync in the
/// background (answered once it started), then steps 1–4.
pub(crate) fn set_journal(v: Arc<SpdkVolume>, journal_bdev: String, opts: PassOpts, done: SetDone) {
    let old = v.attached();
    if v.vol.journal().is_none() {
        return done(Err(e(
            EINVAL,
            format!(
                "volume {} runs without its journal (created with \"journal\": false)",
                v.name
            ),
        )));
    }
    if old.journal.on_members {
        return done(Err(e(
            EINVAL,
            format!(
                "volume {}: its journal is on its members (a copy on members 0 and 1); a lost copy comes back with its member's rebuild",
                v.name
            ),
        )));
    }
    let present = old.journal.present();
    // A journal of two going on with one device: the new bdev takes the lost one's place,
    // online and without a resync (the survivor holds every record).
    let j = &old.journal;
    if j.devs.len() == 2 && !j.journal.is_failed() {
        if let Some(k) = (0..2u32).find(|&k| !(j.has(k) && j.journal.device_live(k as usize))) {
            return replace_device(j.clone(), k, journal_bdev, done);
        }
    }
    if present && !old.journal.journal.is_failed() {
        return done(Err(e(
            EBUSY,
            format!(
                "volume {}: journal {} is working; a new journal is attached only after it failed or was removed",
                v.name, old.journal.name
            ),
        )));
    }
    for (slot, what) in [
        (Slot::SetJournal, "a new journal is being attached"),
        (Slot::Rebuild, "a rebuild is running"),
        (Slot::Scrub, "a scrub is running"),
    ] {
        if rebuild::running(&v.uuid, slot) {
            return done(Err(e(EBUSY, format!("volume {}: {what}", v.name))));
        }
    }
    if v.vol.failed_count() > 0 || v.vol.rebuilding().is_some() {
        return done(Err(e(
            EBUSY,
            format!(
                "volume {} is degraded: the full resync before a new journal needs every member; \
                 replace the failed member first (bdev_jraid_add_base_bdev)",
                v.name
            ),
        )));
    }
    let target = match choose(&journal_bdev, &v.name, v.uuid, v.number, &v.names()) {
        Ok(t) => t,
        Err(er) => return done(Err(er)),
    };
    noticelog!(
        "volume {}: full resync of {} stripes before attaching journal {journal_bdev}",
        v.name,
        v.geo.stripes
    );
    publish(
        &v,
        Some(ProcStatus::starting(PassKind::Resync, &journal_bdev)),
    );
    let v2 = v.clone();
    let name = journal_bdev.clone();
    let then = Box::new(move |r: &PassResult| {
        if r.state != "done" {
            let why = r
                .first_error
                .clone()
                .unwrap_or_else(|| format!("resync {}", r.state));
            warnlog!(
                "volume {}: journal {} not attached: {why}",
                v2.name,
                journal_bdev
            );
            drop(target); // a new bdev is released untouched
            return publish(&v2, Some(r.status.clone()));
        }
        publish(
            &v2,
            Some(r.status.clone().with_state(ProcState::Attaching, None)),
        );
        attach(v2, target, r.status.clone());
    });
    match rebuild::start_resync(&v, name, opts, then) {
        Ok(()) => done(Ok(())),
        Err(m) => {
            publish(&v, None);
            done(Err(e(ENOMEM, m)))
        }
    }
}

/// Steps 1–4 after a clean full resync of a running volume.
fn attach(v: Arc<SpdkVolume>, target: Target, status: ProcStatus) {
    if rebuild::stopping(&v) {
        return publish(&v, Some(status.with_state(ProcState::Aborted, None)));
    }
    let entry = JournalEntry {
        volume_number: v.number,
        volume_uuid: v.uuid,
        name: v.name.clone(),
    };
    install(target, entry, move |r| {
        let j = match r {
            Ok(j) => j,
            Err((_, m)) => {
                warnlog!("volume {}: new journal not attached: {m}", v.name);
                return publish(&v, Some(status.with_state(ProcState::Failed, Some(&m))));
            }
        };
        let (jv, _) =
            j.journal
                .attach_volume(v.number, v.geo.stripes, v.vol.member_volatile_cache());
        let old = v.attached();
        v.set_attached(Attached {
            journal: j.clone(),
            jv: jv.clone(),
        });
        v.vol.set_journal(Some(j.journal.clone()));
        // A new journal: nothing of the old one's devices is recorded dropped any more.
        v.journal_dropped
            .store(0, std::sync::atomic::Ordering::Release);
        let v2 = v.clone();
        record_member_states_then(&v, move |r| {
            if let Err(m) = &r {
                warnlog!(
                    "volume {}: naming the new journal in the superblocks: {m}",
                    v2.name
                );
            }
            let v3 = v2.clone();
            move_channels(&v2, j.clone(), jv, move || {
                retire(&v3, &old);
                noticelog!(
                    "volume {}: journal {} attached (journal uuid {}); writes accepted again",
                    v3.name,
                    j.name,
                    super::json::uuid_string(&j.journal.cfg.uuid)
                );
                publish(&v3, Some(status.with_state(ProcState::Done, None)));
            });
        });
    });
}

/// `bdev_jraid_set_journal` on a volume whose journal of two devices goes on with one: bdev
/// `bdev` takes the place of lost device `k`, online and without a resync. Its superblock (the
/// journal's, with index `k`) is written first; then every channel of every volume on the
/// journal gets a channel to it; then the journal takes it ([`crate::journal::Journal::device_added`],
/// retried until the survivor holds every durable record), and its next record, a checkpoint,
/// goes to both. Answered once the journal took it.
fn replace_device(j: Arc<SpdkJournal>, k: u32, bdev: String, done: SetDone) {
    let in_use = {
        let r = registry();
        r.volumes
            .iter()
            .find(|v| v.names().contains(&bdev))
            .map(|v| format!("bdev {bdev} is a member of volume {}", v.name))
            .or_else(|| {
                r.journals
                    .iter()
                    .find(|o| o.device_named(&bdev).is_some())
                    .map(|o| format!("bdev {bdev} is a device of journal {}", o.name))
            })
    };
    if let Some(m) = in_use {
        return done(Err(e(EBUSY, m)));
    }
    let lease = match j.lease(format!("bdev_jraid_set_journal (device {k})")) {
        Ok(l) => l,
        Err(m) => return done(Err(e(EBUSY, m))),
    };
    let b = match create::open_journal_bdev(&bdev) {
        Ok(b) => b,
        Err(c) => return done(Err(from_create(c))),
    };
    put_device(j, k, b, lease, done)
}

/// The journal on the members: member `member` (0 or 1) was rebuilt onto a new bdev, whose
/// journal area becomes journal device `member` again, online (as [`replace_device`] does with
/// a new bdev: a blank copy, taken once the survivor holds every durable record; the next
/// record, a checkpoint, goes to both). Nothing to do for another member or journal.
pub(crate) fn member_copy_back(v: &Arc<SpdkVolume>, member: u32) {
    let j = v.journal();
    if !j.on_members || member >= 2 || v.journal_area == 0 {
        return;
    }
    let Some(m) = v.members.lock().unwrap_or_else(|e| e.into_inner())[member as usize].clone()
    else {
        return;
    };
    let off = v.journal_area / u64::from(m.block_size);
    if m.num_blocks <= off {
        return;
    }
    // A copy still counted live (its member failed without it being dropped) is dropped now:
    // the new bdev's area holds nothing yet.
    j.journal.device_gone(member);
    let lease = match j.lease(format!("rebuild of member {member}: its journal copy")) {
        Ok(l) => l,
        Err(m) => {
            return warnlog!(
                "volume {}: journal copy {member} not put back ({m}); the journal goes on with the other copy",
                v.name
            )
        }
    };
    let name = v.name.clone();
    put_device(
        j,
        member,
        m.window(off, m.num_blocks - off),
        lease,
        Box::new(move |r| {
            if let Err((_, m)) = r {
                warnlog!(
                    "volume {name}: journal copy {member} not put back ({m}); the journal goes on with the other copy"
                );
            }
        }),
    );
}

/// [`replace_device`] with the bdev opened (and claimed, or a window of a member that is):
/// its journal superblock written, every channel's slot swapped, then the journal takes it.
/// The journal on the members gives a rebuilt member 0 or 1 its copy back this way.
pub(crate) fn put_device(
    j: Arc<SpdkJournal>,
    k: u32,
    b: BaseBdev,
    lease: super::bdev::SbLease,
    done: SetDone,
) {
    let bdev = b.name.clone();
    let mut sb = j.sb.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if b.block_size != sb.block_size {
        return done(Err(e(
            EINVAL,
            format!(
                "bdev {bdev} has {}-byte blocks; journal {} has {}-byte blocks",
                b.block_size, j.name, sb.block_size
            ),
        )));
    }
    let need = crate::superblock::JournalSuperblock::min_journal_bytes(sb.slot_bytes);
    if b.num_blocks * u64::from(b.block_size) < need {
        return done(Err(e(
            ENOSPC,
            format!(
                "bdev {bdev} too small: journal {} needs {need} bytes per device",
                j.name
            ),
        )));
    }
    if let Some(p) = sb.pair.as_mut() {
        p.index = k;
    }
    noticelog!(
        "journal {}: {bdev} takes the place of device {k} ({}), online, without a resync",
        j.name,
        j.dev_name(k)
    );
    let (raw, image) = (b.raw(), sb.encode());
    write_sb(raw, bdev.clone(), image, move |r| {
        if let Err(m) = r {
            drop(b); // released untouched but for its superblock
            return done(Err(e(EIO, m)));
        }
        // The lost device's bdev, if still open (its writes failed), goes once every channel
        // let go of it (the channels' slots are swapped below).
        let old = {
            let d = &j.devs[k as usize];
            *d.name.lock().unwrap_or_else(|e| e.into_inner()) = bdev.clone();
            d.base.lock().unwrap_or_else(|e| e.into_inner()).replace(b)
        };
        let vols: Vec<Arc<SpdkVolume>> = registry()
            .volumes
            .iter()
            .filter(|v| Arc::ptr_eq(&v.journal(), &j))
            .cloned()
            .collect();
        swap_slots(j, k, vols, old, lease, bdev, done);
    });
}

/// [`replace_device`]: on every channel of each of `vols` (one volume after the other), the
/// slot of journal device `k` retired and a new one opened on its new bdev; then the journal
/// takes the device.
fn swap_slots(
    j: Arc<SpdkJournal>,
    k: u32,
    mut vols: Vec<Arc<SpdkVolume>>,
    old: Option<BaseBdev>,
    lease: super::bdev::SbLease,
    bdev: String,
    done: SetDone,
) {
    let Some(v) = vols.pop() else {
        drop(old);
        return take_device(j, k, lease, bdev, done);
    };
    let j2 = j.clone();
    let step = move |ctx: &mut ChanCtx| -> bool {
        let be = ctx.channel.backend_mut();
        if let Some(old) = be.journal.get_mut(k as usize).and_then(Option::take) {
            be.retire(old);
        }
        let slot = j2.devs[k as usize]
            .base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(DevSlot::open);
        if slot.is_none() {
            warnlog!(
                "volume {}: no channel to journal device {k} on this reactor",
                ctx.vol.name
            );
        }
        if let Some(s) = be.journal.get_mut(k as usize) {
            *s = slot;
        }
        true
    };
    life::each_channel_until(v.io_device(), RETRY_US, Box::new(step), move || {
        swap_slots(j, k, vols, old, lease, bdev, done)
    });
}

/// [`replace_device`]'s last step: the journal takes device `k` once the survivor holds
/// every durable record (retried until then; refused for good once the journal failed).
fn take_device(
    j: Arc<SpdkJournal>,
    k: u32,
    lease: super::bdev::SbLease,
    bdev: String,
    done: SetDone,
) {
    if j.journal.device_added(k) {
        drop(lease);
        noticelog!(
            "journal {}: device {k} ({bdev}) in service: the next record, a checkpoint, goes to both devices",
            j.name
        );
        return done(Ok(()));
    }
    if j.journal.is_failed() || !(0..2).any(|d| d != k as usize && j.journal.device_live(d)) {
        drop(lease);
        return done(Err(e(
            EIO,
            format!("journal {}: the surviving device is gone too", j.name),
        )));
    }
    life::later(
        RETRY_US,
        Box::new(move || take_device(j, k, lease, bdev, done)),
    );
}

/// Step 4: the old journal lets go of `v`; closed when no volume uses it.
fn retire(v: &Arc<SpdkVolume>, old: &Attached) {
    old.journal.journal.detach_volume(v.number);
    let gone = {
        let mut r = registry();
        let used = r
            .volumes
            .iter()
            .any(|o| Arc::ptr_eq(&o.journal(), &old.journal));
        if used {
            None
        } else {
            r.journals
                .iter()
                .position(|j| Arc::ptr_eq(j, &old.journal))
                .map(|i| r.journals.remove(i))
        }
    };
    if let Some(j) = gone {
        j.close(None);
        noticelog!("journal {} released", j.name);
    }
}

/// Retry period of a channel not yet quiet.
const RETRY_US: u64 = 1000;

/// Step 3: on every channel of `v`, once nothing of it depends on the old journal: retire the
/// old journal's bdev channel (put after its last I/O), get one to the new journal, move the
/// route, write through the new journal. Then `then` on this thread.
fn move_channels(
    v: &Arc<SpdkVolume>,
    journal: Arc<SpdkJournal>,
    jv: Arc<JournalVolume>,
    then: impl FnOnce() + 'static,
) {
    let step = move |ctx: &mut ChanCtx| -> bool {
        if !ctx.channel.journal_quiet() {
            return false;
        }
        let addr = ctx.addr;
        let ptr: *mut ChanCtx = ctx;
        let be = ctx.channel.backend_mut();
        for old in std::mem::take(&mut be.journal).into_iter().flatten() {
            be.retire(old);
        }
        be.journal = journal
            .devs
            .iter()
            .map(|d| {
                d.base
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .and_then(DevSlot::open)
            })
            .collect();
        if be.journal.iter().all(Option::is_none) {
            warnlog!(
                "volume {}: no channel to journal {} on this reactor: its record writes fail",
                ctx.vol.name,
                journal.name
            );
        }
        let be = ctx.channel.backend_mut();
        be.routes.remove(addr);
        be.routes = journal.routes.clone();
        journal.routes.insert(
            addr,
            Route {
                thread: SendPtr(ffi::current_thread()),
                ctx: SendPtr(ptr),
            },
        );
        if !ctx
            .channel
            .replace_journal(journal.journal.clone(), jv.clone())
        {
            ffi::errlog!(
                "volume {}: a channel could not register with journal {} (too many channels)",
                ctx.vol.name,
                journal.name
            );
        }
        true
    };
    life::each_channel_until(v.io_device(), RETRY_US, Box::new(step), then);
}

/// `bdev_jraid_set_journal` on a volume examine holds back because its journal is lost (the
/// process restarted after losing it): claim its members, write the new journal's superblock,
/// then assemble it with a full resync, name the new journal in the member superblocks, and
/// register the bdev. Answered once the volume is being brought up (it then shows in
/// `bdev_jraid_get_bdevs` with the resync's progress).
pub(crate) fn set_journal_waiting(name: String, journal_bdev: String, done: SetDone) {
    let list = match super::examine::take_waiting_for_journal(&name) {
        Ok(l) => l,
        Err(m) => return done(Err(e(19, m))),
    };
    let Some(newest) = list.iter().map(|(_, s)| s).max_by_key(|s| s.seq).cloned() else {
        super::examine::put_back(list);
        return done(Err(e(19, format!("no jraid volume named {name}"))));
    };
    let n = newest.members as usize;
    let mut names = vec![String::new(); n];
    let mut missing = Vec::new();
    for (i, slot) in names.iter_mut().enumerate() {
        let found = (newest.member_states[i] == MemberState::Active)
            .then(|| {
                list.iter().find(|(_, s)| {
                    s.member_index == i as u32 && s.member_uuids == newest.member_uuids
                })
            })
            .flatten();
        match found {
            Some((b, _)) => *slot = b.clone(),
            None => missing.push(i),
        }
    }
    if !missing.is_empty() {
        super::examine::put_back(list);
        return done(Err(e(
            EBUSY,
            format!(
                "volume {name}: its journal is lost and members {missing:?} are missing or out of date; \
                 the full resync before a new journal needs every member"
            ),
        )));
    }
    let target = match choose(
        &journal_bdev,
        &name,
        newest.volume_uuid,
        newest.volume_number,
        &names,
    ) {
        Ok(t) => t,
        Err(er) => {
            super::examine::put_back(list);
            return done(Err(er));
        }
    };
    let mut members = Vec::with_capacity(n);
    for b in &names {
        match BaseBdev::open(b).and_then(|mut x| x.claim().map(|()| x)) {
            Ok(x) => members.push(Some(x)),
            Err(er) => {
                drop(members);
                drop(target);
                super::examine::put_back(list);
                return done(Err(e(EBUSY, er.to_string())));
            }
        }
    }
    let found = create::Found {
        sb: newest.clone(),
        members,
        member_names: names,
    };
    let entry = JournalEntry {
        volume_number: newest.volume_number,
        volume_uuid: newest.volume_uuid,
        name: name.clone(),
    };
    noticelog!(
        "volume {name}: assembling on new journal {journal_bdev} with a full resync of {} stripes",
        newest.stripes
    );
    let uuid = newest.volume_uuid;
    install(target, entry, move |r| {
        let j = match r {
            Ok(j) => j,
            Err(er) => {
                drop(found);
                super::examine::put_back(list);
                return done(Err(er));
            }
        };
        super::status::set(
            uuid,
            Slot::SetJournal,
            Some(ProcStatus::starting(PassKind::Resync, &j.name)),
        );
        let jname = j.name.clone();
        create::assemble_with_new_journal(
            found,
            j,
            Box::new(move |r| match r {
                Ok(v) => {
                    let st = super::status::get(&v.uuid, Slot::SetJournal);
                    publish(&v, st.map(|s| s.with_state(ProcState::Done, None)));
                    noticelog!("jraid volume {name} assembled on new journal {jname}");
                }
                Err(er) => {
                    ffi::errlog!(
                        "volume {name}: not assembled on new journal {jname}: {}",
                        er.msg
                    );
                    let st = super::status::get(&uuid, Slot::SetJournal);
                    super::status::set(
                        uuid,
                        Slot::SetJournal,
                        st.map(|s| s.with_state(ProcState::Failed, Some(&er.msg))),
                    );
                    // The members still name the lost journal: the volume waits again.
                    super::examine::put_back(list);
                }
            }),
        );
        done(Ok(()));
    });
}
