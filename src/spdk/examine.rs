//! examine_disk: read LBA 0 of every new bdev; remember jraid member and journal superblocks;
//! assemble a volume (with recovery) once its journal and every member it needs are present.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Mutex;

use spdk_sys as sys;

use super::base::BaseBdev;
use super::bdev::registry;
use super::create::{self, assemble_with_journal, open_journal, Found};
use super::ffi::{errlog, guard, infolog, noticelog, warnlog};
use super::json::uuid_string;
use super::superblocks::read_sb;
use crate::control::assembly::{self, MemberUse};
use crate::superblock::{JournalSuperblock, MemberState, MemberSuperblock};

/// Superblocks seen but not yet assembled.
#[derive(Default)]
struct Pending {
    /// Volume uuid → (bdev name, member superblock).
    members: HashMap<[u8; 16], Vec<(String, MemberSuperblock)>>,
    /// Journal uuid → its devices seen.
    journals: HashMap<[u8; 16], SeenJournal>,
    /// Volumes already reported as complete but for their journal.
    told: Vec<[u8; 16]>,
}

/// The devices of one journal examine has seen.
#[derive(Default)]
struct SeenJournal {
    /// Bdev names by index in the pair (one slot for a journal of one device).
    devs: Vec<Option<String>>,
    /// A journal of two devices with one seen: waited JOURNAL_GRACE_US for the other, which
    /// is then taken as missing (the volume assembles with one, resyncing every stripe).
    waited: bool,
    /// The wait for the other device has started.
    waiting: bool,
}

impl SeenJournal {
    /// Every device is here, or the wait for the missing one is over.
    fn ready(&self) -> bool {
        let seen = self.devs.iter().flatten().count();
        seen > 0 && (seen == self.devs.len() || self.waited)
    }

    /// The device names seen.
    fn names(&self) -> Vec<String> {
        self.devs.iter().flatten().cloned().collect()
    }
}

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);

fn with_pending<R>(f: impl FnOnce(&mut Pending) -> R) -> R {
    let mut g = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Pending::default))
}

/// Forget what examine saw on these bdevs (create is formatting them).
pub(crate) fn forget_bdevs(names: &[String]) {
    with_pending(|p| {
        for v in p.members.values_mut() {
            v.retain(|(n, _)| !names.contains(n));
        }
        for j in p.journals.values_mut() {
            for d in j.devs.iter_mut() {
                if d.as_ref().is_some_and(|n| names.contains(n)) {
                    *d = None;
                }
            }
        }
        p.journals.retain(|_, j| j.devs.iter().any(Option::is_some));
    });
}

fn examine_done() {
    // SAFETY: one call per examine_disk, with our static module.
    unsafe { sys::spdk_bdev_module_examine_done(super::module_ptr()) };
}

/// `examine_disk` of the module.
pub(crate) unsafe extern "C" fn examine_disk(bdev: *mut sys::spdk_bdev) {
    guard("examine_disk", || {
        // SAFETY: `bdev` is the bdev being examined; its name is a NUL-terminated string.
        let (ours, name) = unsafe {
            (
                (*bdev).module == super::module_ptr(),
                CStr::from_ptr(sys::spdk_bdev_get_name(bdev))
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        if ours {
            return examine_done();
        }
        let b = match BaseBdev::open_ro(&name) {
            Ok(b) => b,
            Err(e) => {
                infolog!("examine {name}: {e}");
                return examine_done();
            }
        };
        if b.block_size > 4096 || b.num_blocks * (b.block_size as u64) < 4096 {
            return examine_done();
        }
        let raw = b.raw();
        let block_size = b.block_size;
        read_sb(raw, move |buf| {
            drop(b);
            if let Some(buf) = buf {
                if let Ok(sb) = MemberSuperblock::decode(buf.as_slice()) {
                    if sb.block_size != block_size {
                        warnlog!(
                            "examine {name}: member {} of jraid volume {} was written with {}-byte blocks, but the bdev now has {block_size}-byte blocks: not assembled (re-create the bdev with {}-byte blocks)",
                            sb.member_index,
                            sb.name,
                            sb.block_size,
                            sb.block_size
                        );
                        return try_assemble(Box::new(examine_done), 0);
                    }
                    if super::rebuild::resume_late(&name, &sb) {
                        return try_assemble(Box::new(examine_done), 0);
                    }
                    noticelog!(
                        "examine {name}: member {} of jraid volume {} ({})",
                        sb.member_index,
                        sb.name,
                        uuid_string(&sb.volume_uuid)
                    );
                    with_pending(|p| {
                        let v = p.members.entry(sb.volume_uuid).or_default();
                        v.retain(|(n, _)| *n != name);
                        // Two bdevs claiming one slot (a stale member and its replacement):
                        // keep the newer superblock.
                        match v
                            .iter()
                            .position(|(_, s)| s.member_index == sb.member_index)
                        {
                            Some(i) if v[i].1.seq > sb.seq => return,
                            Some(i) => drop(v.remove(i)),
                            None => {}
                        }
                        v.push((name.clone(), sb));
                    });
                } else if let Ok(sb) = JournalSuperblock::decode(buf.as_slice()) {
                    if sb.block_size != block_size {
                        warnlog!(
                            "examine {name}: jraid journal {} was written with {}-byte blocks, but the bdev now has {block_size}-byte blocks: not used (re-create the bdev with {}-byte blocks)",
                            uuid_string(&sb.journal_uuid),
                            sb.block_size,
                            sb.block_size
                        );
                        return try_assemble(Box::new(examine_done), 0);
                    }
                    match sb.pair {
                        None => noticelog!(
                            "examine {name}: jraid journal {} serving {} volumes",
                            uuid_string(&sb.journal_uuid),
                            sb.volumes.len()
                        ),
                        Some(pair) => noticelog!(
                            "examine {name}: device {} of jraid journal {} ({} mode) serving {} volumes",
                            pair.index,
                            uuid_string(&sb.journal_uuid),
                            pair.mode.name(),
                            sb.volumes.len()
                        ),
                    }
                    let (devices, k) = sb.pair.map_or((1, 0), |p| (2, p.index as usize));
                    with_pending(|p| {
                        let j = p.journals.entry(sb.journal_uuid).or_default();
                        if j.devs.len() != devices {
                            j.devs = vec![None; devices];
                        }
                        j.devs[k] = Some(name.clone());
                    });
                }
            }
            try_assemble(Box::new(examine_done), 0);
        });
    })
}

/// The member superblocks (bdev name, superblock) of the volume named `name` that examine
/// holds back because its journal is nowhere to be found, taken out of the pending set (give
/// them back with [`put_back`]).
pub(crate) fn take_waiting_for_journal(
    name: &str,
) -> Result<Vec<(String, MemberSuperblock)>, String> {
    let running: Vec<[u8; 16]> = registry()
        .journals
        .iter()
        .map(|j| j.journal.cfg.uuid)
        .collect();
    with_pending(|p| {
        let (uuid, newest) = p
            .members
            .iter()
            .find_map(|(u, list)| {
                let newest = list.iter().map(|(_, s)| s).max_by_key(|s| s.seq)?;
                (newest.name == name).then(|| (*u, newest.clone()))
            })
            .ok_or_else(|| {
                format!("no jraid volume named {name} (running, or waiting for its journal)")
            })?;
        if p.journals.contains_key(&newest.journal_uuid) || running.contains(&newest.journal_uuid) {
            return Err(format!(
                "volume {name} is not missing its journal (it waits for members)"
            ));
        }
        Ok(p.members.remove(&uuid).unwrap_or_default())
    })
}

/// Give back what [`take_waiting_for_journal`] took (the volume waits again).
pub(crate) fn put_back(list: Vec<(String, MemberSuperblock)>) {
    if let Some((_, sb)) = list.first() {
        let uuid = sb.volume_uuid;
        with_pending(|p| p.members.insert(uuid, list));
    }
}

/// Claims can fail while another module's examine still has a bdev open for writing: retry
/// every RETRY_US, this many times.
const RETRIES: u32 = 250;
/// How long a volume whose members are all here may wait for its journal before examine says
/// the journal is missing.
const JOURNAL_GRACE_US: u64 = 2_000_000;
const RETRY_US: u64 = 20_000;

/// Open and claim `name` for writing.
fn claim(name: &str) -> Result<BaseBdev, super::base::BaseError> {
    BaseBdev::open(name).and_then(|mut b| b.claim().map(|()| b))
}

/// Assemble the first complete pending volume, if any, then run `then` (and try again).
fn try_assemble(then: Box<dyn FnOnce()>, attempt: u32) {
    let running: Vec<[u8; 16]> = registry().volumes.iter().map(|v| v.uuid).collect();
    let running_journals: Vec<_> = registry().journals.clone();
    let mut wait_for_pair = Vec::new();
    let ready = with_pending(|p| {
        p.members.retain(|u, _| !running.contains(u));
        let uuid = p.members.iter().find_map(|(u, list)| {
            let newest = list.iter().map(|(_, s)| s).max_by_key(|s| s.seq)?;
            // A journal on the members comes with them.
            let journal_known = newest.journal_area != 0
                || p.journals
                    .get(&newest.journal_uuid)
                    .is_some_and(SeenJournal::ready)
                || running_journals
                    .iter()
                    .any(|j| j.journal.cfg.uuid == newest.journal_uuid);
            let complete = (0..newest.members).all(|i| {
                newest.member_states[i as usize] != MemberState::Active
                    || list
                        .iter()
                        .any(|(_, s)| s.member_index == i && s.member_uuids == newest.member_uuids)
            });
            (journal_known && complete).then_some(*u)
        });
        for (u, list) in &p.members {
            let Some(newest) = list.iter().map(|(_, s)| s).max_by_key(|s| s.seq) else {
                continue;
            };
            // One device of a pair here: wait a while for the other before going on without
            // it (then every stripe is resynced).
            if let Some(j) = p.journals.get_mut(&newest.journal_uuid) {
                if !j.ready() && !j.waiting && list.len() as u32 >= newest.members {
                    j.waiting = true;
                    wait_for_pair.push((newest.journal_uuid, newest.name.clone()));
                }
            }
            let journal_known = newest.journal_area != 0
                || p.journals.contains_key(&newest.journal_uuid)
                || running_journals
                    .iter()
                    .any(|j| j.journal.cfg.uuid == newest.journal_uuid);
            if !journal_known && list.len() as u32 >= newest.members && !p.told.contains(u) {
                // Journals are often examined after the members: say so only if it is still
                // missing a while later.
                p.told.push(*u);
                let (u, name, juuid) = (*u, newest.name.clone(), newest.journal_uuid);
                super::life::later(
                    JOURNAL_GRACE_US,
                    Box::new(move || {
                        let running = registry()
                            .journals
                            .iter()
                            .any(|j| j.journal.cfg.uuid == juuid);
                        let waiting = with_pending(|p| {
                            p.members.contains_key(&u) && !p.journals.contains_key(&juuid)
                        });
                        if waiting && !running {
                            warnlog!(
                                "volume {name}: every member is here but its journal {} is not; it stays down until the journal appears, or until bdev_jraid_set_journal gives it a new one (after a full resync)",
                                uuid_string(&juuid)
                            );
                        }
                    }),
                );
            }
        }
        let uuid = uuid?;
        let list = p.members.remove(&uuid)?;
        let newest = list.iter().map(|(_, s)| s).max_by_key(|s| s.seq)?.clone();
        let jname = p.journals.get(&newest.journal_uuid).map(SeenJournal::names);
        Some((list, newest, jname))
    });
    for (juuid, name) in wait_for_pair {
        super::life::later(
            JOURNAL_GRACE_US,
            Box::new(move || {
                let missing = with_pending(|p| match p.journals.get_mut(&juuid) {
                    Some(j) if !j.ready() => {
                        j.waited = true;
                        true
                    }
                    _ => false,
                });
                if missing {
                    warnlog!(
                        "volume {name}: one device of its journal {} is missing; assembling with the other (every stripe is resynced first)",
                        uuid_string(&juuid)
                    );
                    try_assemble(Box::new(|| {}), 0);
                }
            }),
        );
    }
    let Some((list, newest, jname)) = ready else {
        return then();
    };
    // Claim the journal first (when not running yet), then the members; on a busy bdev put
    // everything back and retry later.
    let running = running_journals
        .into_iter()
        .find(|j| j.journal.cfg.uuid == newest.journal_uuid);
    let requeue = |list: Vec<(String, MemberSuperblock)>, then: Box<dyn FnOnce()>, why: String| {
        if attempt >= RETRIES {
            errlog!("volume {}: cannot assemble: {why}", newest.name);
            return then();
        }
        with_pending(|p| p.members.insert(newest.volume_uuid, list));
        super::life::later(RETRY_US, Box::new(move || try_assemble(then, attempt + 1)));
    };
    let jbase = match (&running, &jname) {
        (Some(_), _) => None,
        (None, Some(js)) => {
            let mut bases = Vec::new();
            for j in js {
                match claim(j) {
                    Ok(b) => bases.push(b),
                    Err(e) => return requeue(list, then, format!("journal {j}: {e}")),
                }
            }
            Some(bases)
        }
        // The journal on the members: windows of members 0 and 1, once claimed (below).
        (None, None) if newest.journal_area != 0 => Some(Vec::new()),
        (None, None) => return then(),
    };
    let n = newest.members as usize;
    let mut names = vec![String::new(); n];
    let mut members: Vec<Option<BaseBdev>> = (0..n).map(|_| None).collect();
    // A replacement whose rebuild was cut short: assembled as failed, rebuilt again afterwards.
    let mut resume: Option<(u32, String)> = None;
    // What to do with each member: the control plane's assembly rule (shared with create by
    // uuid and the io_uring runtime).
    let mut found: Vec<Option<&MemberSuperblock>> = vec![None; n];
    for (_, s) in &list {
        if let Some(f) = found.get_mut(s.member_index as usize) {
            if f.is_none_or(|o| o.seq < s.seq) {
                *f = Some(s);
            }
        }
    }
    let uses = assembly::decide(&newest, &found);
    for (name, s) in &list {
        let i = s.member_index as usize;
        let chosen = found
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|f| std::ptr::eq(f, s));
        if chosen && uses[i] == MemberUse::Resume {
            noticelog!(
                "volume {}: {name} (member {i}) was being rebuilt: assembling without it, then rebuilding it again",
                newest.name
            );
            names[i] = name.clone();
            resume = Some((i as u32, name.clone()));
            continue;
        }
        if !chosen || uses[i] != MemberUse::Use {
            warnlog!(
                "volume {}: not using {name} (member {i}): marked failed or stale",
                newest.name
            );
            continue;
        }
        names[i] = name.clone();
        match claim(name) {
            Ok(b) => members[i] = Some(b),
            Err(e) => {
                drop(members);
                drop(jbase);
                return requeue(list.clone(), then, e.to_string());
            }
        }
    }
    let jbase = match jbase {
        Some(b) if b.is_empty() => {
            let w = create::member_windows(&members, &newest);
            if w.is_empty() {
                errlog!(
                    "volume {}: members 0 and 1, which hold its journal, are both missing or out of service: not assembled",
                    newest.name
                );
                return then();
            }
            Some(w)
        }
        b => b,
    };
    let found = Found {
        sb: newest.clone(),
        members,
        member_names: names,
    };
    let name = newest.name.clone();
    let finish = move |r: Result<std::sync::Arc<super::bdev::SpdkVolume>, create::CreateError>| {
        match r {
            Ok(v) => {
                match resume {
                    Some((m, bdev)) => super::rebuild::resume(&v, m, &bdev),
                    None => create::note_missing(&v),
                }
                noticelog!("jraid volume {name} assembled");
            }
            Err(e) => errlog!("jraid volume {name}: assembly failed: {}", e.msg),
        }
        // One bdev (a shared journal examined last) can complete several volumes: go on with
        // the next one (the one just tried has left the pending set either way).
        try_assemble(then, 0);
    };
    match (running, jbase) {
        (Some(j), _) => assemble_with_journal(found, j, Box::new(finish)),
        (None, Some(b)) => open_journal(b, move |r| match r {
            Ok(j) => assemble_with_journal(found, j, Box::new(finish)),
            Err(e) => finish(Err(e)),
        }),
        (None, None) => then_none(finish),
    }
}

fn then_none(
    finish: impl FnOnce(Result<std::sync::Arc<super::bdev::SpdkVolume>, create::CreateError>),
) {
    finish(Err(create::CreateError {
        code: -19,
        msg: "journal not found".into(),
    }))
}
