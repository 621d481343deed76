//! The state of one volume that every reactor shares: geometry, member health, stripe locks and the
//! journal the volume writes through.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::journal::Journal;
use crate::layout::Geometry;

use super::lock::StripeLocks;

/// Lock words per volume ([`StripeLocks`]): 128 KiB, far more than the stripes in flight on
/// every reactor together, so stripes sharing a word rarely wait for each other.
const LOCK_WORDS: usize = 16384;

const ACTIVE: u8 = 0;
const FAILED: u8 = 1;
const REBUILDING: u8 = 2;

/// Health of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberHealth {
    /// Serving I/O.
    Active,
    /// Failed or removed: no I/O goes to it.
    Failed,
}

/// Counters shared by the volume's channels.
#[derive(Debug, Default)]
pub struct VolumeStats {
    /// Stripe writes planned as full-stripe writes.
    pub full_stripe: AtomicU64,
    /// Stripe writes planned as reconstruct-writes.
    pub reconstruct_write: AtomicU64,
    /// Stripe writes planned as read-modify-writes.
    pub read_modify_write: AtomicU64,
    /// Stripe writes made while a member was missing.
    pub degraded_write: AtomicU64,
    /// Reads that rebuilt a missing member's blocks from parity.
    pub degraded_read: AtomicU64,
    /// Read errors repaired: the blocks rebuilt from the others and written back (the member
    /// stayed in service).
    pub read_repaired: AtomicU64,
    /// User write pieces that joined another write of their stripe queued for its lock (one
    /// stripe write for both; not counted in the plans).
    pub merged_writes: AtomicU64,
}

/// Shared state of one volume.
pub struct Volume {
    /// Volume number (unique on its journal).
    pub number: u32,
    /// Shape.
    pub geo: Geometry,
    /// Whether members keep written data in a volatile cache until flushed (re-evaluated when
    /// a replacement joins).
    member_volatile_cache: AtomicBool,
    /// Member state: ACTIVE, FAILED or REBUILDING.
    health: Vec<AtomicU8>,
    /// While a member is rebuilt: one bit per stripe already rebuilt.
    rebuilt: Box<[AtomicU64]>,
    /// Number of failed members.
    failed: AtomicU32,
    /// Members taken out of service so far (a sequence number of failures).
    failures: AtomicU64,
    /// Failures the runtime has recorded durably (in the surviving members' superblocks).
    recorded: AtomicU64,
    /// Whether the runtime records failures (writes are then acknowledged only once every
    /// failure before them is recorded).
    records_failures: AtomicBool,
    /// Simulator control only: write pieces go on to their writes before their mark is durable
    /// (see [`Volume::set_control_writes_before_durable`]).
    control_writes_before_durable: AtomicBool,
    /// Stripe locks.
    pub locks: StripeLocks,
    /// The dirty-stripe journal new channels write through; `None` only for comparison runs
    /// with the journal switched off. Channels keep their own reference: a new journal (after
    /// the old one failed) reaches each of them through [`super::Channel::replace_journal`].
    journal: Mutex<Option<Arc<Journal>>>,
    /// Counters.
    pub stats: VolumeStats,
    /// Stripes whose parity cannot be trusted yet: listed by the record a crash recovery
    /// started from and not resynced so far (see [`Volume::set_unsynced`]).
    unsynced: Mutex<Option<Unsynced>>,
    /// How many of them are left (0: no stripe is unsynced, and nothing is looked up).
    unsynced_left: AtomicU64,
    /// Stripes initialised: below this one parity matches data (see [`Volume::set_init_stripes`]).
    init_stripes: AtomicU64,
}

/// The stripes a crash recovery still has to resync while the volume serves I/O.
struct Unsynced {
    /// Ascending.
    stripes: Vec<u64>,
    /// Per stripe (same index): resynced since.
    done: Vec<bool>,
}

impl Unsynced {
    fn index(&self, stripe: u64) -> Option<usize> {
        self.stripes.binary_search(&stripe).ok()
    }
}

impl Volume {
    /// A healthy volume.
    pub fn new(
        number: u32,
        geo: Geometry,
        member_volatile_cache: bool,
        journal: Option<Arc<Journal>>,
    ) -> Volume {
        Volume {
            number,
            geo,
            member_volatile_cache: AtomicBool::new(member_volatile_cache),
            health: (0..geo.members).map(|_| AtomicU8::new(ACTIVE)).collect(),
            rebuilt: (0..geo.stripes.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            failed: AtomicU32::new(0),
            failures: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            records_failures: AtomicBool::new(false),
            control_writes_before_durable: AtomicBool::new(false),
            locks: StripeLocks::new(LOCK_WORDS),
            journal: Mutex::new(journal),
            stats: VolumeStats::default(),
            unsynced: Mutex::new(None),
            unsynced_left: AtomicU64::new(0),
            init_stripes: AtomicU64::new(geo.stripes),
        }
    }

    /// Stripes initialised: in every stripe below `n`, parity matches the data (made so by the
    /// initial parity pass, a rebuild or a full resync, and kept so by every write since); at
    /// or above it, parity may still disagree with what the members held before the volume
    /// was created. A write at or above it computes parity from all the data (never
    /// read-modify-write, which would carry the disagreement on into a row it writes), so
    /// every row a write touched matches its parity whatever the watermark. Degraded reads and
    /// writes there are served (unlike [`Volume::parity_untrusted`] stripes, which may hold
    /// acknowledged data their parity disagrees with): a row some write touched matches its
    /// parity, and what no write touched holds nothing acknowledged. A new volume is
    /// initialised throughout until told otherwise (call before it serves I/O, then only from
    /// the initial pass: [`crate::control::Pass`], which moves it up once the stripes below
    /// are resynced and flushed).
    pub fn set_init_stripes(&self, n: u64) {
        self.init_stripes
            .store(n.min(self.geo.stripes), Ordering::Release);
    }

    /// Stripes initialised (see [`Volume::set_init_stripes`]); what superblocks record.
    pub fn init_stripes(&self) -> u64 {
        self.init_stripes.load(Ordering::Acquire)
    }

    /// Whether `stripe`'s parity may still disagree with what the members held at creation
    /// (see [`Volume::set_init_stripes`]). One load.
    pub fn parity_uninitialised(&self, stripe: u64) -> bool {
        stripe >= self.init_stripes.load(Ordering::Acquire)
    }

    /// A crash recovery resyncs `stripes` while the volume serves I/O: until each is resynced
    /// ([`Volume::mark_synced`]) its parity is not trusted. A write to it computes parity from
    /// all data (never read-modify-write), and nothing that would rebuild a missing member's
    /// data from its parity is served (degraded reads and writes of it fail with
    /// [`super::IoError::ParityUntrusted`]). Call before the volume serves I/O.
    pub fn set_unsynced(&self, mut stripes: Vec<u64>) {
        stripes.sort_unstable();
        stripes.dedup();
        let n = stripes.len() as u64;
        let set = (n > 0).then(|| Unsynced {
            done: vec![false; stripes.len()],
            stripes,
        });
        *self.unsynced.lock().unwrap_or_else(|e| e.into_inner()) = set;
        self.unsynced_left.store(n, Ordering::Release);
    }

    /// Whether `stripe`'s parity is not trusted yet (see [`Volume::set_unsynced`]). One load
    /// when no recovery is resyncing.
    pub fn parity_untrusted(&self, stripe: u64) -> bool {
        if self.unsynced_left.load(Ordering::Acquire) == 0 {
            return false;
        }
        let guard = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .is_some_and(|u| u.index(stripe).is_some_and(|i| !u.done[i]))
    }

    /// `stripe`'s parity was recomputed from its data (a resync, under the stripe lock).
    pub fn mark_synced(&self, stripe: u64) {
        if self.unsynced_left.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut guard = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
        let Some(u) = guard.as_mut() else { return };
        let Some(i) = u.index(stripe) else { return };
        if !std::mem::replace(&mut u.done[i], true)
            && self.unsynced_left.fetch_sub(1, Ordering::AcqRel) == 1
        {
            *guard = None;
        }
    }

    /// Stripes not resynced yet.
    pub fn unsynced_stripes(&self) -> u64 {
        self.unsynced_left.load(Ordering::Acquire)
    }

    /// The stripes not resynced yet, ascending (status and tests; O(listed)).
    pub fn unsynced_list(&self) -> Vec<u64> {
        let guard = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map_or_else(Vec::new, |u| {
            u.stripes
                .iter()
                .zip(u.done.iter())
                .filter(|(_, &d)| !d)
                .map(|(&s, _)| s)
                .collect()
        })
    }

    /// Whether members keep written data in a volatile cache until flushed.
    pub fn member_volatile_cache(&self) -> bool {
        self.member_volatile_cache.load(Ordering::Acquire)
    }

    /// Members now do (or no longer do) keep written data in a volatile cache (a replacement
    /// joined); the journal's per-volume state must be told as well
    /// ([`crate::journal::JournalVolume::set_volatile_members`]).
    pub fn set_member_volatile_cache(&self, on: bool) {
        self.member_volatile_cache.store(on, Ordering::Release);
    }

    /// The journal new channels write through.
    pub fn journal(&self) -> Option<Arc<Journal>> {
        self.journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make `journal` the one new channels write through (existing channels are moved with
    /// [`super::Channel::replace_journal`]).
    pub fn set_journal(&self, journal: Option<Arc<Journal>>) {
        *self.journal.lock().unwrap_or_else(|e| e.into_inner()) = journal;
    }

    /// Health of member `m` (a member being rebuilt is not yet active).
    pub fn health(&self, m: u32) -> MemberHealth {
        // Relaxed is enough: a stale "active" only sends one more I/O to a failed member, whose
        // error then takes the same path as the first failure.
        match self.health[m as usize].load(Ordering::Relaxed) {
            ACTIVE => MemberHealth::Active,
            _ => MemberHealth::Failed,
        }
    }

    /// Whether member `m` holds valid data for `stripe`: active, or being rebuilt and past
    /// `stripe`. Callers that act on the answer for writes hold the stripe lock; the rebuild
    /// sets a stripe's bit under that lock.
    pub fn serves(&self, m: u32, stripe: u64) -> bool {
        match self.health[m as usize].load(Ordering::Acquire) {
            ACTIVE => true,
            REBUILDING => {
                let word = self.rebuilt[(stripe / 64) as usize].load(Ordering::Acquire);
                word & (1 << (stripe % 64)) != 0
            }
            _ => false,
        }
    }

    /// Whether I/O may be sent to member `m` at all (active or being rebuilt).
    pub fn reachable(&self, m: u32) -> bool {
        self.health[m as usize].load(Ordering::Acquire) != FAILED
    }

    /// The member that does not serve `stripe`, if any (at most one while the volume is usable).
    pub fn failed_for(&self, stripe: u64) -> Option<u32> {
        (0..self.geo.members).find(|&m| !self.serves(m, stripe))
    }

    /// The failed member, when exactly one has failed.
    pub fn failed_member(&self) -> Option<u32> {
        (0..self.geo.members).find(|&m| self.health(m) == MemberHealth::Failed)
    }

    /// Number of failed members.
    pub fn failed_count(&self) -> u32 {
        self.failed.load(Ordering::Acquire)
    }

    /// True while the volume can serve I/O (at most one member missing).
    pub fn usable(&self) -> bool {
        self.failed_count() <= 1
    }

    /// Mark member `m` failed (also when it was being rebuilt). Returns true when this call
    /// took it out of service.
    pub fn fail_member(&self, m: u32) -> bool {
        if self.health[m as usize].load(Ordering::Acquire) == FAILED {
            return false;
        }
        // Counted before the state changes: whoever sees the member failed (and writes
        // degraded) also sees this failure unrecorded.
        self.failures.fetch_add(1, Ordering::AcqRel);
        match self.health[m as usize].swap(FAILED, Ordering::AcqRel) {
            ACTIVE => {
                self.failed.fetch_add(1, Ordering::AcqRel);
                true
            }
            _ => false,
        }
    }

    /// The runtime records member failures durably (in the surviving members' superblocks)
    /// and reports each with [`Volume::failures_recorded`]. From then on a write completed
    /// while a failure is unrecorded is acknowledged only once it is recorded; see
    /// [`super::Channel`] ("a member failure is durable before a write that depends on it is
    /// acknowledged").
    pub fn set_records_failures(&self, on: bool) {
        self.records_failures.store(on, Ordering::Release);
    }

    /// Simulator control only: write pieces write as soon as their reads are in, without
    /// waiting for the record that makes their mark durable (the journal's rule 1, enforced in
    /// `Channel::go_on`, switched off). The crash simulation must then find loss
    /// (`crash_sim --control write-before-durable`); no runtime sets it.
    pub fn set_control_writes_before_durable(&self, on: bool) {
        self.control_writes_before_durable
            .store(on, Ordering::Relaxed);
    }

    /// Whether [`Volume::set_control_writes_before_durable`] is on.
    pub fn control_writes_before_durable(&self) -> bool {
        self.control_writes_before_durable.load(Ordering::Relaxed)
    }

    /// With the journal on the members (journal device k in member k's journal area, k < 2):
    /// the journal devices whose member is out of service. The runtimes drop them
    /// ([`crate::journal::Journal::device_gone`]) before they record a member failure, so that
    /// one superblock write records both: the journal must not go on with a copy a restart
    /// will not read (a member out of service is no journal device at assembly either).
    pub fn journal_copies_out(&self) -> impl Iterator<Item = u32> + '_ {
        (0..2.min(self.geo.members)).filter(|&k| self.health(k) != MemberHealth::Active)
    }

    /// The failure count the runtime must record, when some failure is not recorded yet (and
    /// the runtime records failures).
    pub fn unrecorded_failures(&self) -> Option<u64> {
        if !self.records_failures.load(Ordering::Acquire) {
            return None;
        }
        let f = self.failures.load(Ordering::Acquire);
        (f > self.recorded.load(Ordering::Acquire)).then_some(f)
    }

    /// Every failure up to count `upto` (from [`Volume::unrecorded_failures`], read before the
    /// member states were captured for writing) is now durable.
    pub fn failures_recorded(&self, upto: u64) {
        self.recorded.fetch_max(upto, Ordering::AcqRel);
    }

    /// Start rebuilding failed member `m` onto a replacement: from now on it receives the
    /// writes of stripes already rebuilt. False when `m` is not failed or another rebuild runs.
    pub fn start_rebuild(&self, m: u32) -> bool {
        if self.rebuilding().is_some() {
            return false;
        }
        for w in self.rebuilt.iter() {
            w.store(0, Ordering::Release);
        }
        self.health[m as usize]
            .compare_exchange(FAILED, REBUILDING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The member being rebuilt, if any.
    pub fn rebuilding(&self) -> Option<u32> {
        (0..self.geo.members)
            .find(|&m| self.health[m as usize].load(Ordering::Acquire) == REBUILDING)
    }

    /// `stripe` of the member being rebuilt now holds valid data (called under the stripe lock).
    pub fn mark_rebuilt(&self, stripe: u64) {
        self.rebuilt[(stripe / 64) as usize].fetch_or(1 << (stripe % 64), Ordering::AcqRel);
    }

    /// Stripes rebuilt so far (progress).
    pub fn rebuilt_stripes(&self) -> u64 {
        self.rebuilt
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as u64)
            .sum()
    }

    /// Every stripe is rebuilt: the member is active again. False when it is not being rebuilt
    /// or some stripe is missing.
    pub fn finish_rebuild(&self, m: u32) -> bool {
        if self.rebuilt_stripes() < self.geo.stripes {
            return false;
        }
        if self.health[m as usize]
            .compare_exchange(REBUILDING, ACTIVE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.failed.fetch_sub(1, Ordering::AcqRel);
            // Every stripe was rebuilt (flushed: the pass's rule): the rebuilt strip is the
            // XOR of the others, so every row now matches its parity.
            self.set_init_stripes(self.geo.stripes);
            return true;
        }
        false
    }
}
