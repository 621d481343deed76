//! Recovery of one volume after a crash (before it serves I/O, or while it does): the one copy
//! the SPDK adapter, the io_uring runtime and the simulator drive.
//!
//! Steps, in order:
//! 1. **Resync** every stripe to recover (those the journal's newest record lists for the volume,
//!    or all of them before a new journal is named), at most `window` at a time.
//! 2. **Flush the members.** The resync writes may still sit in volatile member caches.
//! 3. **Release** the stripes from the journal (those at risk stay listed) and write a record
//!    with a generation above every one seen, which no longer lists them.
//!
//! # Ordering rule: members are flushed before resynced stripes leave the record
//! Enforced here, between steps 1 and 3, and nowhere else: a stripe leaves the record only after
//! the flush that makes its recomputed parity durable has completed. Without it, a second power
//! loss right after recovery can lose the resync writes from a volatile cache while the newest
//! record no longer lists the stripes; the next recovery then trusts their parity and a later
//! degraded read reconstructs garbage. The simulator's control run
//! ([`RecoveryOptions::skip_member_flush`], `crash_sim --crashes 2 --control no-recovery-flush`)
//! finds that loss; the same run with the flush finds none.
//!
//! # Serving I/O while it runs (online recovery)
//! The volume may serve I/O from the start: the driver calls [`Recovery::guard`] before the
//! first request. Until a listed stripe is resynced its parity is not trusted
//! ([`crate::engine::Volume::parity_untrusted`], enforced by the engine): data is read as it
//! is, a write computes parity from all the data, and a missing member's data is never rebuilt
//! from that parity (such a read or write fails with `ParityUntrusted`). The stripes stay
//! listed (carried) until step 3, so a crash in the middle resyncs them again. The simulator's
//! control ([`RecoveryOptions::skip_unsynced_guard`], `crash_sim --scenario online --control
//! no-unsynced-guard`) serves degraded reads of unsynced stripes from their parity and finds
//! loss; the same run with the guard finds none.
//!
//! The driver's contract: submit each [`Submit`] to a channel of the volume as an engine request
//! (`UserOp::Resync` of one stripe, or `UserOp::Flush`), report each completion with
//! [`Recovery::complete`], send a journal kick when [`Step::Kick`] asks, and call
//! [`Recovery::poll`] again after any completion or timer tick until it returns [`Step::Done`].

use crate::engine::{IoError, UserOp, Volume};
use crate::journal::{Journal, JournalMode};

/// Which stripes a recovery resyncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stripes {
    /// Those the journal lists (a crash recovery).
    Listed(Vec<u64>),
    /// All of them, `0..n` (before a new journal is named, when the old one is lost).
    All(u64),
}

impl Stripes {
    /// How many.
    pub fn len(&self) -> u64 {
        match self {
            Stripes::Listed(l) => l.len() as u64,
            Stripes::All(n) => *n,
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn at(&self, i: u64) -> u64 {
        match self {
            Stripes::Listed(l) => l[i as usize],
            Stripes::All(_) => i,
        }
    }
}

/// Whether a volume may trust the newest record read from its journal's devices, `missing`
/// of them (bit k: device k; [`crate::journal::record::Newest::missing`]), when its members'
/// superblocks record `dropped` as dropped while running
/// ([`crate::superblock::MemberSuperblock::journal_dropped`]).
///
/// # Rule: a restart that misses a journal device resyncs every stripe, unless a mirror says otherwise
/// Enforced here, for every runtime ([`stripes_to_resync`] takes the answer). With two
/// journal devices in alternate mode each record goes to one of them, so the newest
/// generation (whose writers may have been acknowledged, and whose stripes may be torn by the
/// power loss) can live on the missing device alone; the survivor's newest record then misses
/// its stripes. The journal itself goes on with the survivor. The simulator's control
/// (`crash_sim --scenario journal-devices --control trust-survivor`: the survivor's record
/// trusted as complete) finds loss; the same run with the full resync finds none.
///
/// In mirror mode every record went to both devices while both were live, so the device that
/// is here holds every record whose writers went on — unless it was dropped while running
/// and the other went on alone. A drop is recorded in the members' superblocks before any
/// record only the survivor holds releases its writers (the journal's rule, see
/// [`crate::journal::Journal::drops_to_record`]), so the device here is trusted exactly when
/// the superblocks do not record it dropped. The simulator's controls (`--loss swapped
/// --control trust-survivor`, and `--control no-drop-record`) find loss when the restart
/// finds only the dropped device.
pub fn journal_complete(mode: JournalMode, missing: u8, dropped: u8) -> bool {
    if missing == 0 {
        return true;
    }
    let present = !missing & 0b11;
    mode == JournalMode::Mirror && present != 0 && present & dropped == 0
}

/// What a restart resyncs of a volume of `stripes` stripes: the stripes the journal's newest
/// record lists for it (`listed`), or every stripe when that record may miss some
/// (`journal_complete` false: [`journal_complete`]).
pub fn stripes_to_resync(journal_complete: bool, listed: Vec<u64>, stripes: u64) -> Stripes {
    if journal_complete {
        Stripes::Listed(listed)
    } else {
        Stripes::All(stripes)
    }
}

/// Options of a recovery.
#[derive(Debug, Clone, Default)]
pub struct RecoveryOptions {
    /// Resyncs in flight at most (0: 1).
    pub window: usize,
    /// Bandwidth cap in bytes per second (0: none), counted as `bytes_per_stripe` per resync;
    /// for a resync that runs while the volume serves I/O.
    pub bytes_per_s: u64,
    /// Bytes a resync of one stripe moves (for the cap).
    pub bytes_per_stripe: u64,
    /// Simulator control only: release the stripes without flushing the members first. The
    /// crash simulation must then find loss; no runtime sets it.
    pub skip_member_flush: bool,
    /// Simulator control only: [`Recovery::guard`] does not tell the engine which stripes are
    /// not resynced, so a degraded read of one trusts its stale parity. The crash simulation
    /// must then find loss; no runtime sets it.
    pub skip_unsynced_guard: bool,
}

/// An engine request the driver submits for the recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submit {
    /// `UserOp::Resync` or `UserOp::Flush`.
    pub op: UserOp,
    /// The stripe (Resync), 0 for Flush.
    pub lba: u64,
    /// 1 for Resync, 0 for Flush.
    pub blocks: u64,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Submit these requests (possibly none), then poll again after a completion or a tick.
    Submit(Vec<Submit>),
    /// Send the journal a kick (a record is requested), then poll again after a tick.
    Kick,
    /// Nothing to do until a completion or a tick.
    Wait,
    /// Over.
    Done(Result<Outcome, RecoveryError>),
}

/// What a finished recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Stripes resynced.
    pub resynced: u64,
    /// The durable generation after the final record.
    pub generation: u64,
}

/// Why a recovery failed (the volume must not serve I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    /// Resyncs failed (member I/O errors, or a member went missing).
    Resync {
        /// How many.
        failed: u64,
    },
    /// The member flush after the resyncs failed: the stripes stay listed.
    Flush(IoError),
    /// The final record could not be written.
    Journal,
    /// Stopped with the volume ([`Recovery::stop`]): the stripes not resynced stay listed.
    Stopped,
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryError::Resync { failed } => {
                write!(f, "{failed} listed stripes could not be resynced")
            }
            RecoveryError::Flush(e) => write!(f, "member flush after the resync failed: {e:?}"),
            RecoveryError::Journal => write!(f, "the journal record write failed"),
            RecoveryError::Stopped => write!(f, "stopped with the volume"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resync,
    Flush { sent: bool },
    Record { target: Option<u64> },
    Stopping,
    Over,
}

/// One volume's recovery (see the module docs).
#[derive(Debug)]
pub struct Recovery {
    number: u32,
    stripes: Stripes,
    at_risk: Vec<u64>,
    opts: RecoveryOptions,
    phase: Phase,
    next: u64,
    inflight: usize,
    completed: u64,
    failed: u64,
    flush_error: Option<IoError>,
    /// When the first resync was sent (µs; for the bandwidth cap).
    started_us: Option<u64>,
}

impl Recovery {
    /// Recovery of volume `number`: resync `stripes`; `at_risk` stripes (listed, but a member
    /// is missing) stay listed.
    pub fn new(number: u32, stripes: Stripes, at_risk: Vec<u64>, opts: RecoveryOptions) -> Self {
        Recovery {
            number,
            stripes,
            at_risk,
            opts,
            phase: Phase::Resync,
            next: 0,
            inflight: 0,
            completed: 0,
            failed: 0,
            flush_error: None,
            started_us: None,
        }
    }

    /// Change the window and the bandwidth cap (0: none) of a running recovery.
    pub fn set_limits(&mut self, window: usize, bytes_per_s: u64) {
        self.opts.window = window;
        self.opts.bytes_per_s = bytes_per_s;
    }

    /// Before the volume serves I/O while this recovery runs: tell the engine which stripes'
    /// parity is not trusted until they are resynced (each resync clears its stripe). Only the
    /// stripes the record listed (a full resync runs before a new journal is named, while the
    /// volume is held back).
    pub fn guard(&self, vol: &Volume) {
        if let Stripes::Listed(l) = &self.stripes {
            if !self.opts.skip_unsynced_guard {
                vol.set_unsynced(l.clone());
            }
        }
    }

    /// The volume is going away (while it served I/O during this recovery): submit nothing
    /// more, and end with [`RecoveryError::Stopped`] once nothing is in flight. The stripes
    /// not released stay listed (carried), so the next start resyncs them.
    pub fn stop(&mut self) {
        if matches!(self.phase, Phase::Resync | Phase::Flush { .. }) {
            self.phase = Phase::Stopping;
        }
    }

    /// Resyncs finished so far (progress).
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Stripes to resync in all.
    pub fn total(&self) -> u64 {
        self.stripes.len()
    }

    /// Resyncs that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// A submission was refused at once (as if it completed with `e`).
    pub fn refused(&mut self, e: IoError) {
        self.complete(Err(e));
    }

    /// A submitted request completed.
    pub fn complete(&mut self, result: Result<(), IoError>) {
        self.inflight = self.inflight.saturating_sub(1);
        match self.phase {
            Phase::Resync => {
                self.completed += 1;
                if result.is_err() {
                    self.failed += 1;
                }
            }
            Phase::Flush { .. } => {
                if let Err(e) = result {
                    self.flush_error = Some(e);
                }
            }
            _ => {}
        }
    }

    /// The next step, given `journal` (the volume's journal) and the time (µs).
    pub fn poll(&mut self, journal: &Journal, now_us: u64) -> Step {
        loop {
            match self.phase {
                Phase::Resync => {
                    let window = self.opts.window.max(1);
                    let started = *self.started_us.get_or_insert(now_us);
                    let elapsed = now_us.saturating_sub(started);
                    let cap = self.opts.bytes_per_s;
                    let mut out = Vec::new();
                    while self.inflight < window && self.next < self.stripes.len() {
                        if cap > 0
                            && self.next as u128 * self.opts.bytes_per_stripe as u128 * 1_000_000
                                > elapsed as u128 * cap as u128
                        {
                            break; // over the bandwidth cap: wait for a tick
                        }
                        out.push(Submit {
                            op: UserOp::Resync,
                            lba: self.stripes.at(self.next),
                            blocks: 1,
                        });
                        self.next += 1;
                        self.inflight += 1;
                    }
                    if !out.is_empty() {
                        return Step::Submit(out);
                    }
                    if self.inflight > 0 || self.next < self.stripes.len() {
                        return Step::Wait;
                    }
                    if self.failed > 0 {
                        self.phase = Phase::Over;
                        return Step::Done(Err(RecoveryError::Resync {
                            failed: self.failed,
                        }));
                    }
                    self.phase = if self.opts.skip_member_flush || self.stripes.is_empty() {
                        Phase::Record { target: None }
                    } else {
                        Phase::Flush { sent: false }
                    };
                }
                Phase::Flush { sent: false } => {
                    self.phase = Phase::Flush { sent: true };
                    self.inflight += 1;
                    return Step::Submit(vec![Submit {
                        op: UserOp::Flush,
                        lba: 0,
                        blocks: 0,
                    }]);
                }
                Phase::Flush { sent: true } => {
                    if self.inflight > 0 {
                        return Step::Wait;
                    }
                    if let Some(e) = self.flush_error {
                        self.phase = Phase::Over;
                        return Step::Done(Err(RecoveryError::Flush(e)));
                    }
                    self.phase = Phase::Record { target: None };
                }
                Phase::Record { target: None } => {
                    // The ordering rule: only here, after the flush completed, do the
                    // resynced stripes leave the record.
                    journal.release_carried(self.number, &self.at_risk);
                    let g = journal.open_generation();
                    journal.request(g);
                    self.phase = Phase::Record { target: Some(g) };
                    return Step::Kick;
                }
                Phase::Record { target: Some(g) } => {
                    if journal.is_failed() {
                        self.phase = Phase::Over;
                        return Step::Done(Err(RecoveryError::Journal));
                    }
                    if journal.durable_generation() < g {
                        return Step::Wait;
                    }
                    self.phase = Phase::Over;
                    return Step::Done(Ok(Outcome {
                        resynced: self.completed,
                        generation: journal.durable_generation(),
                    }));
                }
                Phase::Stopping => {
                    if self.inflight > 0 {
                        return Step::Wait;
                    }
                    self.phase = Phase::Over;
                    return Step::Done(Err(RecoveryError::Stopped));
                }
                Phase::Over => return Step::Wait,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both devices read: complete. One missing: alternate never; mirror unless the device
    /// read is recorded dropped (a dropped other device, or none recorded, is fine).
    #[test]
    fn a_restart_trusts_one_device_only_of_a_mirror_that_did_not_drop_it() {
        use JournalMode::{Alternate, Mirror};
        for mode in [Alternate, Mirror] {
            assert!(journal_complete(mode, 0, 0));
            assert!(journal_complete(mode, 0, 0b11));
        }
        for (missing, dropped) in [(0b01, 0), (0b10, 0), (0b01, 0b01), (0b10, 0b10)] {
            assert!(!journal_complete(Alternate, missing, dropped));
            assert!(journal_complete(Mirror, missing, dropped));
        }
        for (missing, dropped) in [(0b01, 0b10), (0b10, 0b01), (0b01, 0b11), (0b11, 0)] {
            assert!(!journal_complete(Mirror, missing, dropped));
        }
        assert_eq!(stripes_to_resync(false, vec![3], 9), Stripes::All(9));
        assert_eq!(
            stripes_to_resync(true, vec![3], 9),
            Stripes::Listed(vec![3])
        );
    }
}
