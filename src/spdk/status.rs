//! The background processes of each volume (rebuild, scrub, the full resync of a journal
//! replacement, the resync after a crash) as typed state; JSON only at the RPC edge ([`ProcStatus::to_json`], used by
//! `bdev_jraid_get_bdevs`).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::control::PassKind;

/// Which process a status belongs to (one of each kind is shown per volume).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    /// Member rebuild.
    Rebuild = 0,
    /// Scrub.
    Scrub = 1,
    /// Full resync before a new journal is attached (`bdev_jraid_set_journal`).
    SetJournal = 2,
    /// Resync of the stripes listed at a crash, while the volume serves I/O.
    Recovery = 3,
    /// The initial parity pass of a volume created over members that may not be blank.
    Init = 4,
}

/// Where a process is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ProcState {
    /// Accepted, not yet under way (a member being let go, a journal being prepared).
    Starting,
    /// Going through the stripes.
    Running,
    /// The member flush after the stripes.
    Flushing,
    /// The volume is going away: stopping.
    Stopping,
    /// Writing the superblocks (a rebuilt member becomes active).
    Recording,
    /// Attaching the new journal after its resync.
    Attaching,
    /// Over: done.
    Done,
    /// Over: failed (see the error).
    Failed,
    /// Over: stopped with the volume.
    Aborted,
}

impl ProcState {
    /// As the RPC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Running => "running",
            ProcState::Flushing => "flushing",
            ProcState::Stopping => "stopping",
            ProcState::Recording => "recording",
            ProcState::Attaching => "attaching",
            ProcState::Done => "done",
            ProcState::Failed => "failed",
            ProcState::Aborted => "aborted",
        }
    }

    /// From the pass's words.
    pub fn from_pass(s: &str) -> ProcState {
        match s {
            "starting" => ProcState::Starting,
            "flushing" => ProcState::Flushing,
            "recording" => ProcState::Recording,
            "attaching" => ProcState::Attaching,
            "stopping" => ProcState::Stopping,
            "done" => ProcState::Done,
            "failed" => ProcState::Failed,
            "aborted" => ProcState::Aborted,
            _ => ProcState::Running,
        }
    }

    /// Still under way (another process of the volume must wait).
    pub fn active(self) -> bool {
        matches!(
            self,
            ProcState::Starting
                | ProcState::Running
                | ProcState::Flushing
                | ProcState::Recording
                | ProcState::Attaching
        )
    }
}

/// One process's status.
#[derive(Clone, Debug)]
pub(crate) struct ProcStatus {
    /// What it does.
    pub kind: PassKind,
    /// Where it is.
    pub state: ProcState,
    /// The replacement (rebuild) or the new journal (resync).
    pub bdev: String,
    /// Stripes in all, and done.
    pub total: u64,
    pub done: u64,
    /// Stripes of the member being rebuilt already rebuilt (rebuild).
    pub rebuilt: u64,
    /// Seconds since it started, and its rate.
    pub elapsed_s: f64,
    pub mib_per_s: f64,
    /// Its limits (bandwidth 0: none).
    pub bandwidth_mb: u64,
    pub window: usize,
    /// Errors, and the first in words.
    pub errors: u64,
    pub error: Option<String>,
    /// Scrub findings.
    pub mismatches: u64,
    pub mismatch_stripes: Vec<u64>,
    pub repaired: u64,
    pub repair_failed: u64,
}

impl ProcStatus {
    /// A process of `kind` just accepted, on `bdev`.
    pub fn starting(kind: PassKind, bdev: &str) -> ProcStatus {
        ProcStatus {
            kind,
            state: ProcState::Starting,
            bdev: bdev.to_owned(),
            total: 0,
            done: 0,
            rebuilt: 0,
            elapsed_s: 0.0,
            mib_per_s: 0.0,
            bandwidth_mb: 0,
            window: 0,
            errors: 0,
            error: None,
            mismatches: 0,
            mismatch_stripes: Vec::new(),
            repaired: 0,
            repair_failed: 0,
        }
    }

    /// The same status in another state (with an error, when given).
    pub fn with_state(mut self, state: ProcState, error: Option<&str>) -> ProcStatus {
        self.state = state;
        if let Some(e) = error {
            self.error = Some(e.to_owned());
        }
        self
    }

    fn percent(&self) -> f64 {
        (self.done as f64 * 1000.0 / self.total.max(1) as f64).round() / 10.0
    }

    /// The status as `bdev_jraid_get_bdevs` shows it.
    pub fn to_json(&self) -> Value {
        let state = self.state.as_str();
        let elapsed = (self.elapsed_s * 100.0).round() / 100.0;
        match self.kind {
            PassKind::Rebuild { member } => json!({
                "state": state,
                "member": member,
                "base_bdev": self.bdev,
                "stripes_total": self.total,
                "stripes_done": self.done,
                "rebuilt_stripes": self.rebuilt,
                "percent": self.percent(),
                "elapsed_s": elapsed,
                "mib_per_s": self.mib_per_s,
                "bandwidth_mb": self.bandwidth_mb,
                "window": self.window,
                "error": self.error,
            }),
            PassKind::Scrub { repair } => json!({
                "state": state,
                "repair": repair,
                "stripes_total": self.total,
                "stripes_checked": self.done,
                "percent": self.percent(),
                "elapsed_s": elapsed,
                "mib_per_s": self.mib_per_s,
                "mismatches": self.mismatches,
                "mismatch_stripes": self.mismatch_stripes,
                "repaired": self.repaired,
                "repair_failed": self.repair_failed,
                "errors": self.errors,
                "error": self.error,
            }),
            PassKind::Init => json!({
                "state": state,
                "stripes_total": self.total,
                "stripes_initialised": self.done,
                "percent": self.percent(),
                "elapsed_s": elapsed,
                "mib_per_s": self.mib_per_s,
                "window": self.window,
                "errors": self.errors,
                "error": self.error,
            }),
            PassKind::Resync => json!({
                "state": state,
                "journal_bdev": self.bdev,
                "stripes_total": self.total,
                "stripes_resynced": self.done,
                "percent": self.percent(),
                "elapsed_s": elapsed,
                "mib_per_s": self.mib_per_s,
                "bandwidth_mb": self.bandwidth_mb,
                "window": self.window,
                "errors": self.errors,
                "error": self.error,
            }),
        }
    }
}

/// The statuses of every volume, by volume uuid and [`Slot`].
type StatusMap = HashMap<[u8; 16], [Option<ProcStatus>; 5]>;
static STATUS: Mutex<Option<StatusMap>> = Mutex::new(None);

/// Set (or with `None`, clear) the status of `slot` of volume `uuid`.
pub(crate) fn set(uuid: [u8; 16], slot: Slot, s: Option<ProcStatus>) {
    let mut g = STATUS.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new)
        .entry(uuid)
        .or_insert([None, None, None, None, None])[slot as usize] = s;
}

/// The status of `slot` of volume `uuid`.
pub(crate) fn get(uuid: &[u8; 16], slot: Slot) -> Option<ProcStatus> {
    let g = STATUS.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()
        .and_then(|m| m.get(uuid))
        .and_then(|e| e[slot as usize].clone())
}

/// The status of `slot` of volume `uuid` as JSON (null when none ran).
pub(crate) fn json(uuid: &[u8; 16], slot: Slot) -> Value {
    get(uuid, slot).map_or(Value::Null, |s| s.to_json())
}

/// Whether a process of `slot` is under way on volume `uuid`.
pub(crate) fn running(uuid: &[u8; 16], slot: Slot) -> bool {
    get(uuid, slot).is_some_and(|s| s.state.active())
}
