//! Random workloads over the simulator and the checks run after them: read-back against the
//! model, parity of every stripe, and crash → recover → lose a member → read back.

use std::collections::BTreeMap;

use super::model::{identify, Model, Seen};
use super::rng::Rng;
use super::world::{JournalTrace, RecordRead, SimConfig, SimJournal, World};
use crate::control::pass::{op_code, op_of_code};
use crate::control::{Pass, PassEnd, PassKind, PassOptions, PassStep, RecoveryOptions};
use crate::engine::{Buf, UserOp};
use crate::journal::JournalMode;
use crate::layout::Geometry;
use crate::parity;

/// Shape of a random workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Requests to issue.
    pub ops: usize,
    /// Most requests in flight.
    pub qd: usize,
    /// Share of reads.
    pub read_fraction: f64,
    /// Confine requests to the first `n` stripes of each volume (a hot set).
    pub hot_stripes: Option<u64>,
    /// Only single-block requests.
    pub single_block: bool,
    /// Mix in user flushes and background scrubs of single stripes.
    pub background: bool,
}

/// What the checks found.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Reads (during the run or in the final read-back) that returned content the model rules out.
    pub bad_reads: u64,
    /// Stripes whose parity disagreed with their data when the volume was idle (or recovered).
    pub inconsistent_stripes: u64,
    /// Blocks whose acknowledged content was lost after crash, recovery and a member failure.
    pub lost_acked: u64,
    /// Requests that failed.
    pub failed_requests: u64,
    /// Requests completed.
    pub completed: u64,
    /// User writes completed.
    pub writes: u64,
    /// Journal record writes.
    pub record_writes: u64,
    /// Marks that found the record full and waited for room.
    pub full_marks: u64,
    /// What the journal wrote (checks that record it).
    pub journal: JournalTrace,
    /// Most stripes one recovery resynced.
    pub max_resynced: u64,
    /// Power losses while a checkpoint was being written.
    pub torn_checkpoints: u64,
    /// Stripes the journal listed ahead of sequential streams (before each power loss).
    pub listed_ahead: u64,
    /// Of those, the ones after which recovery read the chain before that checkpoint (it did
    /// not survive whole).
    pub checkpoint_fallbacks: u64,
    /// The run did not exercise what its check is about (see the note).
    pub unexercised: u64,
    /// Power losses that came while a background pass ran (the initial pass's check).
    pub crashes_in_pass: u64,
    /// Requests refused because a stripe not resynced since a crash had lost a member
    /// (`ParityUntrusted`: never wrong data), in online recoveries.
    pub untrusted_refused: u64,
    /// User requests completed while an online recovery was resyncing.
    pub served_while_resyncing: u64,
    /// Restarts that resynced every stripe though the journal they found was complete (a
    /// mirrored pair missing a device its members do not record as dropped).
    pub needless_full_resyncs: u64,
    /// Power losses while an online recovery was resyncing.
    pub crashes_while_resyncing: u64,
    /// User writes that joined another write of their stripe waiting for its lock (the
    /// volumes' `merged_writes`, summed over the worlds of the run).
    pub merged_writes: u64,
    /// First few problems, for the report.
    pub notes: Vec<String>,
}

impl Outcome {
    /// True when nothing went wrong.
    pub fn clean(&self) -> bool {
        self.bad_reads == 0
            && self.inconsistent_stripes == 0
            && self.lost_acked == 0
            && self.failed_requests == 0
            && self.unexercised == 0
            && self.needless_full_resyncs == 0
            && self.journal.malformed == 0
    }

    fn note(&mut self, s: String) {
        if self.notes.len() < 8 {
            self.notes.push(s);
        }
    }
}

/// Tags of background pass requests have this bit (user requests count up from 1); the
/// request's op sits at bit 48, its stripe below.
const PASS_TAG: u64 = 1 << 62;

/// A background pass (the control plane's, as every runtime runs it) alongside the workload.
struct PassRun {
    vi: usize,
    pass: Pass,
    /// The initial pass: the watermark last recorded in the superblocks.
    recorded_init: u64,
}

struct InFlight {
    vi: usize,
    op: UserOp,
    lba: u64,
    blocks: u64,
    write_id: u64,
    submitted: u64,
}

/// Drives a workload against a world and checks every read on the way.
pub struct Driver {
    /// The world.
    pub world: World,
    /// The reference model.
    pub model: Model,
    rng: Rng,
    inflight: BTreeMap<u64, InFlight>,
    next_tag: u64,
    /// Per volume: the stripe the sequential stream of full-stripe writes goes on at.
    stream: Vec<u64>,
    /// Make some writes a per-volume sequential stream of full-stripe writes.
    pub streams: bool,
    /// Per volume: the block the sequential stream of small writes goes on at.
    small_stream: Vec<u64>,
    /// Make some writes a per-volume sequential stream of small writes (one to four blocks,
    /// each starting where the one before ended, from reactor 0): those queued together on a
    /// stripe's lock merge into one stripe write.
    pub small_streams: bool,
    /// Findings.
    pub out: Outcome,
    pass: Option<PassRun>,
    /// Rebuilds that completed.
    pub rebuilds_done: u64,
    /// Scrubs that completed.
    pub scrubs_done: u64,
    /// Per volume: stripes whose loss is excused (reported at risk by recovery).
    pub excused: Vec<std::collections::BTreeSet<u64>>,
    /// Power losses inside recovery.
    pub recovery_crashes: u64,
    /// Simulator control: background passes end without their member flush.
    pub skip_pass_flush: bool,
    /// `run` stops (as if at its event limit) the moment a background pass ends.
    pub stop_at_pass_end: bool,
    /// Writes refused because the journal is lost are expected (counted, not failures).
    pub journal_may_fail: bool,
    /// Writes refused because the journal was lost.
    pub journal_refused: u64,
    /// Full resyncs that completed.
    pub resyncs_done: u64,
    /// Initial parity passes finished.
    pub inits_done: u64,
    /// Initial parity passes cut short by a member failure.
    pub inits_cut: u64,
    /// Per volume: deleted (no requests go to it until a restart re-assembles it).
    pub deleted: Vec<bool>,
    /// `run` stops (as if at its event limit) while a checkpoint write is in flight, once the
    /// world has started this many checkpoint writes.
    pub stop_at_checkpoint: Option<u64>,
    /// `run` stops (as if at its event limit) once the clock reaches this time.
    pub stop_at_time: Option<u64>,
    /// How recovery reads the journal (anything but the chain is a control).
    pub record_read: RecordRead,
    /// What the journal wrote in the worlds that ended in a power loss, recoveries' records
    /// apart (the current world's is `world.trace`; see [`Driver::journal_trace`]).
    pub trace: JournalTrace,
    /// What the journal wrote during the recoveries that finished.
    pub recovery_trace: JournalTrace,
    /// Most stripes one recovery resynced.
    pub max_resynced: u64,
    /// Marks that found the record full, in the worlds that ended in a power loss.
    pub full_marks: u64,
    /// Power losses while a checkpoint was being written (outside recoveries).
    pub torn_checkpoints: u64,
    /// Of those, the ones after which recovery read the chain before that checkpoint.
    pub checkpoint_fallbacks: u64,
    pass_ended: bool,
    /// Requests may be refused with `ParityUntrusted` (an online recovery met a missing
    /// member): counted, not failures. Reads must still never return wrong data.
    pub untrusted_may_refuse: bool,
    /// The final read-back checks only blocks some write touched (a volume created over old
    /// contents that lost a member before its initial pass was over: what no write ever
    /// touched there is undefined).
    pub unwritten_undefined: bool,
}

impl Driver {
    /// A driver over `world`, drawing requests from `rng`.
    pub fn new(world: World, rng: Rng) -> Driver {
        let nvol = world.volumes.len();
        let blocks: Vec<u64> = world
            .volumes
            .iter()
            .map(|v| v.vol.geo.volume_blocks())
            .collect();
        let volatile = world.cfg.member_volatile;
        Driver {
            world,
            model: Model::new(&blocks, volatile),
            rng,
            inflight: BTreeMap::new(),
            next_tag: 1,
            stream: vec![0; nvol],
            streams: false,
            small_stream: vec![0; nvol],
            small_streams: false,
            out: Outcome::default(),
            pass: None,
            rebuilds_done: 0,
            scrubs_done: 0,
            excused: vec![Default::default(); nvol],
            recovery_crashes: 0,
            skip_pass_flush: false,
            stop_at_pass_end: false,
            pass_ended: false,
            journal_may_fail: false,
            journal_refused: 0,
            resyncs_done: 0,
            inits_done: 0,
            inits_cut: 0,
            deleted: vec![false; nvol],
            stop_at_checkpoint: None,
            stop_at_time: None,
            record_read: RecordRead::Chain,
            trace: JournalTrace::default(),
            recovery_trace: JournalTrace::default(),
            max_resynced: 0,
            full_marks: 0,
            torn_checkpoints: 0,
            checkpoint_fallbacks: 0,
            untrusted_may_refuse: false,
            unwritten_undefined: false,
        }
    }

    fn random_request(&mut self, w: &Workload) {
        let mut vi = self.rng.range(0, self.world.volumes.len() as u64) as usize;
        if self.deleted.get(vi).copied().unwrap_or(false) {
            // A deleted volume takes no requests: the next one that is served.
            let n = self.world.volumes.len();
            match (1..n).map(|k| (vi + k) % n).find(|&o| !self.deleted[o]) {
                Some(o) => vi = o,
                None => return,
            }
        }
        let geo = self.world.volumes[vi].vol.geo;
        let reactor = self.rng.range(0, self.world.cfg.reactors as u64) as u32;
        let total = match w.hot_stripes {
            Some(h) => h.min(geo.stripes) * geo.stripe_blocks(),
            None => geo.volume_blocks(),
        };
        let blocks = if w.single_block {
            1
        } else {
            match self.rng.range(0, 4) {
                0 | 1 => self.rng.range(1, 5),
                2 => geo.strip_blocks * self.rng.range(1, geo.data_members() as u64 + 1),
                _ => self.rng.range(1, geo.stripe_blocks() * 5 / 2 + 1),
            }
        }
        .min(total);
        let lba = if self.rng.chance(0.3) && blocks <= total - (total % geo.strip_blocks).min(total)
        {
            let strips = (total - blocks) / geo.strip_blocks + 1;
            self.rng.range(0, strips) * geo.strip_blocks
        } else {
            self.rng.range(0, total - blocks + 1)
        };
        let bs = geo.block_size as usize;
        let tag = self.next_tag;
        if w.background && self.rng.chance(0.04) {
            self.next_tag += 1;
            let now = self.world.now;
            if self
                .world
                .submit(reactor, vi, tag, UserOp::Flush, 0, 0, None)
                .is_ok()
            {
                let f = InFlight {
                    vi,
                    op: UserOp::Flush,
                    lba: 0,
                    blocks: 0,
                    write_id: 0,
                    submitted: now,
                };
                self.inflight.insert(tag, f);
            }
            return;
        }
        if w.background && self.rng.chance(0.02) {
            // A background scrub of one stripe: under concurrent writes it must never see a
            // mismatch (it holds the stripe lock).
            self.next_tag += 1;
            let stripe = self.rng.range(0, geo.stripes);
            let now = self.world.now;
            if self
                .world
                .submit(reactor, vi, tag, UserOp::Scrub, stripe, 1, None)
                .is_ok()
            {
                let f = InFlight {
                    vi,
                    op: UserOp::Scrub,
                    lba: stripe,
                    blocks: 1,
                    write_id: 0,
                    submitted: now,
                };
                self.inflight.insert(tag, f);
            }
            return;
        }
        let op = if self.rng.chance(w.read_fraction) {
            UserOp::Read
        } else {
            UserOp::Write
        };
        let (mut lba, mut blocks, mut reactor) = (lba, blocks, reactor);
        if self.streams
            && op == UserOp::Write
            && !w.single_block
            && w.hot_stripes.is_none()
            && self.rng.chance(0.15)
        {
            // The next full stripe of the volume's sequential stream, from reactor 0 (the
            // journal lists stripes ahead of such a stream: `Journal::list_ahead`).
            let s = self.stream[vi] % geo.stripes;
            self.stream[vi] = s + 1;
            (lba, blocks, reactor) = (s * geo.stripe_blocks(), geo.stripe_blocks(), 0);
        } else if self.small_streams
            && op == UserOp::Write
            && !w.single_block
            && w.hot_stripes.is_none()
            && self.rng.chance(0.4)
        {
            let n = self.rng.range(1, 5).min(geo.volume_blocks());
            let mut at = self.small_stream[vi];
            if at + n > geo.volume_blocks() {
                at = 0;
            }
            self.small_stream[vi] = at + n;
            (lba, blocks, reactor) = (at, n, 0);
        }
        let mut buf = Buf::new(blocks as usize * bs);
        let now = self.world.now;
        let write_id = if op == UserOp::Write {
            self.model
                .begin_write(vi, lba, blocks, bs, now, buf.as_mut_slice())
        } else {
            0
        };
        self.next_tag += 1;
        match self
            .world
            .submit(reactor, vi, tag, op, lba, blocks, Some(buf))
        {
            Ok(()) => {
                self.inflight.insert(
                    tag,
                    InFlight {
                        vi,
                        op,
                        lba,
                        blocks,
                        write_id,
                        submitted: now,
                    },
                );
            }
            Err(e) if self.journal_may_fail && e.error == crate::engine::IoError::JournalFailed => {
                self.journal_refused += 1;
            }
            Err(e) => {
                self.out.failed_requests += 1;
                self.out.note(format!("submit refused: {:?}", e.error));
            }
        }
    }

    /// Rebuild member `m` of volume index `vi` onto a blank replacement, `window` stripes at a
    /// time, alongside whatever `run` issues. False when the engine refuses (or another pass
    /// runs).
    pub fn start_rebuild(&mut self, vi: usize, m: u32, window: usize) -> bool {
        if self.pass.is_some() {
            return false;
        }
        let ok = if self.world.volumes[vi].vol.rebuilding() == Some(m) {
            true
        } else {
            self.world.replace_member(vi, m)
        };
        if ok {
            self.start_pass(vi, PassKind::Rebuild { member: m }, window);
        }
        ok
    }

    /// Resync every stripe of volume index `vi` (before a new journal is named) alongside the
    /// workload. False when another pass runs.
    pub fn start_resync(&mut self, vi: usize, window: usize) -> bool {
        if self.pass.is_some() {
            return false;
        }
        self.start_pass(vi, PassKind::Resync, window);
        true
    }

    /// Run the initial parity pass of volume index `vi` (from its watermark up) alongside the
    /// workload, recording the watermark in the superblocks whenever it moves, as every
    /// runtime does. False when another pass runs.
    pub fn start_init(&mut self, vi: usize, window: usize) -> bool {
        if self.pass.is_some() {
            return false;
        }
        self.start_pass(vi, PassKind::Init, window);
        true
    }

    /// Scrub volume index `vi` (with `repair`) alongside the workload. False when another pass
    /// runs.
    pub fn start_scrub(&mut self, vi: usize, repair: bool, window: usize) -> bool {
        if self.pass.is_some() {
            return false;
        }
        self.start_pass(vi, PassKind::Scrub { repair }, window);
        true
    }

    fn start_pass(&mut self, vi: usize, kind: PassKind, window: usize) {
        let geo = self.world.volumes[vi].vol.geo;
        let opts = PassOptions {
            window,
            bytes_per_s: 0,
            skip_member_flush: self.skip_pass_flush,
        };
        self.pass = Some(PassRun {
            vi,
            pass: Pass::new(kind, &geo, opts),
            recorded_init: self.world.volumes[vi].vol.init_stripes(),
        });
    }

    /// Whether a background pass runs.
    pub fn pass_running(&self) -> bool {
        self.pass.is_some()
    }

    fn pump_pass(&mut self) {
        let Some(r) = self.pass.as_mut() else {
            return;
        };
        let vi = r.vi;
        let step = r
            .pass
            .poll(self.world.now, &self.world.volumes[vi].vol, false);
        let init = self.world.volumes[vi].vol.init_stripes();
        if r.pass.kind() == PassKind::Init && init != r.recorded_init {
            r.recorded_init = init;
            self.world.record_init(vi);
        }
        match step {
            PassStep::Submit(list) => {
                for s in list {
                    let tag = PASS_TAG | (op_code(s.op) << 48) | s.lba;
                    let reactor = (s.lba % self.world.cfg.reactors as u64) as u32;
                    if let Err(e) = self
                        .world
                        .submit(reactor, vi, tag, s.op, s.lba, s.blocks, None)
                    {
                        r.pass.refused(s, e.error);
                    }
                }
            }
            PassStep::Done(end) => {
                self.pass_ended = true;
                let r = self.pass.take().expect("a pass runs");
                match (r.pass.kind(), end) {
                    (PassKind::Rebuild { member }, PassEnd::Done) => {
                        // The members were flushed (the pass's rule): now active.
                        if self.world.finish_rebuild(vi, member) {
                            self.rebuilds_done += 1;
                        } else {
                            self.out.failed_requests += 1;
                            self.out
                                .note(format!("rebuild of member {member} did not finish"));
                        }
                    }
                    (PassKind::Scrub { .. }, PassEnd::Done) => self.scrubs_done += 1,
                    (PassKind::Resync, PassEnd::Done) => self.resyncs_done += 1,
                    (PassKind::Init, PassEnd::Done) => self.inits_done += 1,
                    // A member failed: the pass cannot go on (a rebuild initialises instead).
                    (PassKind::Init, PassEnd::Failed)
                        if self.world.volumes[vi].vol.failed_count() > 0 =>
                    {
                        self.inits_cut += 1
                    }
                    (kind, end) => {
                        self.out.failed_requests += 1;
                        self.out.note(format!(
                            "{kind:?} ended {end:?}: {:?}",
                            r.pass.first_error()
                        ));
                    }
                }
            }
        }
    }

    fn collect(&mut self) {
        let mut done = Vec::new();
        self.world.take_completions(&mut done);
        let now = self.world.now;
        for (_, _, c) in done {
            if c.tag & PASS_TAG != 0 {
                let op = op_of_code((c.tag >> 48) & 0xff);
                let stripe = c.tag & ((1 << 48) - 1);
                match c.result {
                    Ok(()) | Err(crate::engine::IoError::ParityMismatch) => {}
                    Err(e) => {
                        self.out.failed_requests += 1;
                        self.out
                            .note(format!("{op:?} of stripe {stripe} failed: {e}"));
                    }
                }
                if let Some(r) = self.pass.as_mut() {
                    r.pass.complete(op, stripe, c.result);
                }
                continue;
            }
            let Some(f) = self.inflight.remove(&c.tag) else {
                continue;
            };
            self.out.completed += 1;
            if f.op == UserOp::Scrub && c.result == Err(crate::engine::IoError::VolumeFailed) {
                continue; // a member is missing: nothing to check
            }
            if self.journal_may_fail && c.result == Err(crate::engine::IoError::JournalFailed) {
                self.journal_refused += 1;
                continue; // the journal is lost: writes are refused, never acknowledged
            }
            if self.untrusted_may_refuse && c.result == Err(crate::engine::IoError::ParityUntrusted)
            {
                self.out.untrusted_refused += 1;
                continue; // refused, never acknowledged; never wrong data
            }
            if self.world.recovering() {
                self.out.served_while_resyncing += 1;
            }
            if let Err(e) = c.result {
                self.out.failed_requests += 1;
                self.out.note(format!(
                    "{:?} of {}+{} on volume {} failed: {e}",
                    f.op, f.lba, f.blocks, f.vi
                ));
                continue;
            }
            match f.op {
                UserOp::Write => {
                    self.out.writes += 1;
                    self.model.ack(f.write_id, now);
                }
                UserOp::Read => {
                    let buf = c.buf.expect("read returns its buffer");
                    let geo = self.world.volumes[f.vi].vol.geo;
                    let bs = geo.block_size as usize;
                    for b in 0..f.blocks {
                        if self.excused[f.vi].contains(&((f.lba + b) / geo.stripe_blocks())) {
                            continue; // reported at risk by recovery: loss there is expected
                        }
                        let block = &buf.as_slice()[b as usize * bs..(b as usize + 1) * bs];
                        let seen = identify(block, f.lba + b, f.vi as u64);
                        if !self.model.valid(f.vi, f.lba + b, seen, f.submitted, now) {
                            self.out.bad_reads += 1;
                            self.out.note(format!(
                                "read of block {} (volume {}) during [{}, {}] saw {seen:?}",
                                f.lba + b,
                                f.vi,
                                f.submitted,
                                now
                            ));
                        }
                    }
                }
                UserOp::Flush => self.model.flushed(f.vi, f.submitted, now),
                UserOp::Resync | UserOp::Rebuild | UserOp::Scrub | UserOp::Repair => {}
            }
        }
    }

    /// Issue `w.ops` requests at up to `w.qd` in flight; `before_op(driver, i)` runs before the
    /// i-th. Stops early (without draining) once `max_events` events ran. Returns true when
    /// it stopped early.
    pub fn run(
        &mut self,
        w: &Workload,
        max_events: Option<u64>,
        mut before_op: impl FnMut(&mut Driver, usize),
    ) -> bool {
        let mut issued = 0;
        let mut events = 0u64;
        loop {
            while issued < w.ops && self.inflight.len() < w.qd {
                before_op(self, issued);
                self.random_request(w);
                issued += 1;
            }
            if max_events.is_some_and(|m| events >= m) {
                return true;
            }
            if self.stop_at_checkpoint.is_some_and(|n| {
                self.world.trace.checkpoints >= n && self.world.checkpoint_writing()
            }) || self.stop_at_time.is_some_and(|t| self.world.now >= t)
            {
                return true;
            }
            self.pump_pass();
            if std::mem::take(&mut self.pass_ended) && self.stop_at_pass_end {
                return true;
            }
            if !self.world.step() {
                self.collect();
                if self.pass.is_some() {
                    continue;
                }
                if issued >= w.ops && self.inflight.is_empty() {
                    return false;
                }
                if self.inflight.is_empty() {
                    continue;
                }
                self.out.failed_requests += self.inflight.len() as u64;
                self.out
                    .note(format!("{} requests never completed", self.inflight.len()));
                return false;
            }
            events += 1;
            self.collect();
        }
    }

    /// Power loss now, then recovery as assembly runs it (`World::recover` with `cfg`). Requests
    /// in flight die with the power (the model keeps them as never acknowledged), and so does a
    /// running rebuild.
    pub fn crash_and_recover(&mut self, cfg: SimConfig) -> super::world::RecoveryReport {
        self.crash_and_recover_with(cfg, 0.0, &RecoveryOptions::default())
    }

    /// [`Driver::crash_and_recover`] where each recovery attempt itself loses power, with chance
    /// `p_crash`, at a random point inside it (then recovery starts again from what is
    /// durable), with the control plane's recovery options `opts`.
    pub fn crash_and_recover_with(
        &mut self,
        cfg: SimConfig,
        p_crash: f64,
        opts: &RecoveryOptions,
    ) -> super::world::RecoveryReport {
        let (mut image, mut durable, torn) = self.power_loss(&cfg);
        loop {
            let at = self.rng.chance(p_crash).then(|| self.rng.range(0, 400));
            match World::recover_until_with(cfg.clone(), image, at, opts, self.record_read) {
                Ok((mut recovered, report)) => {
                    self.recovery_trace.absorb(&recovered.trace.split());
                    self.world = recovered;
                    if torn.is_some_and(|g| report.generation < g) {
                        self.checkpoint_fallbacks += 1;
                    }
                    self.recovered(&report, durable);
                    return report;
                }
                Err(again) => {
                    if let Some(g) = again.full_resync_durable {
                        durable = g;
                    }
                    self.model.crashed(again.now);
                    self.recovery_crashes += 1;
                    image = again;
                }
            }
        }
    }

    /// [`Driver::crash_and_recover_with`] for a one-volume check (recoveries lose power with
    /// chance 0.3, default options): the stripes recovery reports at risk are excused from the
    /// read-backs, failed resyncs count as failed requests.
    pub fn crash_and_recover_one(&mut self, cfg: SimConfig) {
        self.crash_and_recover_one_with(cfg, 0.3);
    }

    /// [`Driver::crash_and_recover_one`] with recoveries losing power with chance `p_crash`.
    pub fn crash_and_recover_one_with(&mut self, cfg: SimConfig, p_crash: f64) {
        let report = self.crash_and_recover_with(cfg, p_crash, &RecoveryOptions::default());
        for (_, stripes) in &report.at_risk {
            self.excused[0].extend(stripes.iter().copied());
        }
        if report.resync_errors > 0 {
            self.out.failed_requests += report.resync_errors;
            self.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
    }

    /// Power loss now, then an online recovery ([`World::recover_online`]): the volumes serve
    /// requests at once while the world resyncs their listed stripes in the background.
    pub fn crash_and_recover_online(
        &mut self,
        cfg: SimConfig,
        opts: &RecoveryOptions,
    ) -> super::world::RecoveryReport {
        let (image, durable, _) = self.power_loss(&cfg);
        let (recovered, report) = World::recover_online(cfg, image, opts);
        self.world = recovered;
        self.recovered(&report, durable);
        report
    }

    /// The power goes: the world's durable contents, the newest generation durable before (it
    /// must be found again) and the generation of a checkpoint whose write it tore. Requests
    /// in flight die with the power (the model keeps them as never acknowledged), and so does
    /// a running pass; deleted volumes are re-assembled from their superblocks at the restart.
    fn power_loss(&mut self, cfg: &SimConfig) -> (super::world::CrashImage, u64, Option<u64>) {
        let placeholder = World::new(SimConfig {
            volumes: vec![],
            ..cfg.clone()
        });
        let world = std::mem::replace(&mut self.world, placeholder);
        self.model.crashed(world.now);
        self.trace.absorb(&world.trace);
        self.full_marks += journal_counts(&world).1;
        let torn = world.checkpoint_in_flight();
        self.torn_checkpoints += u64::from(torn.is_some());
        let durable = match &world.journal {
            Some(j) if !world.journal_lost => j.durable_generation(),
            _ => 0,
        };
        let image = world.crash();
        self.inflight.clear();
        self.pass = None;
        self.deleted.iter_mut().for_each(|d| *d = false);
        (image, durable, torn)
    }

    /// A recovery started from `report`: it must have found generation `durable` again (unless
    /// it resynced every stripe: a journal device was missing).
    fn recovered(&mut self, report: &super::world::RecoveryReport, durable: u64) {
        if report.generation < durable && !report.resynced_all {
            self.out.failed_requests += 1;
            self.out.note(format!(
                "recovery started from generation {} but {durable} was durable",
                report.generation
            ));
        }
        let resynced = report.resynced.iter().map(|(_, s)| s.len() as u64).sum();
        self.max_resynced = self.max_resynced.max(resynced);
    }

    /// Check every stripe's parity of every volume with all members present (idle volume).
    pub fn check_parity(&mut self) {
        for vi in 0..self.world.volumes.len() {
            let n = count_inconsistent(&self.world, vi);
            if n > 0 {
                self.out.inconsistent_stripes += n;
                self.out
                    .note(format!("volume {vi}: {n} stripes with wrong parity"));
            }
        }
    }

    /// The end of a one-volume check (volume index 0, idle): parity with every member
    /// present, every block read back (as of `as_of`, see [`Driver::read_back`]), member `m`
    /// lost, every block read back again, degraded; then the record writes' findings. A wrong
    /// block counts as a lost acknowledged write when the run `crashed`, else as a bad read.
    pub fn check_with_member_lost(&mut self, m: u32, as_of: Option<u64>, crashed: bool) {
        self.check_parity();
        let bad = self.read_back(as_of);
        self.world.fail_member(0, m, true);
        let bad_degraded = self.read_back(as_of);
        if crashed {
            self.out.lost_acked += bad + bad_degraded;
        } else {
            self.out.bad_reads += bad + bad_degraded;
        }
        self.check_records();
    }

    /// Fold the findings about every record write so far (recoveries' too: malformed or odd
    /// writes, see [`JournalTrace`]) into the outcome.
    pub fn check_records(&mut self) {
        let t = self.journal_trace();
        self.out.journal.absorb_checks(&t);
        self.out.journal.absorb_checks(&self.recovery_trace);
    }

    /// What the journal wrote so far, in every world of this driver, outside recoveries.
    pub fn journal_trace(&self) -> JournalTrace {
        let mut t = self.trace.clone();
        t.absorb(&self.world.trace);
        t
    }

    /// Read every block of every volume through the engine and check it against the model as
    /// of the read time (`as_of`: check as of that past instant instead, for crash runs).
    pub fn read_back(&mut self, as_of: Option<u64>) -> u64 {
        self.read_back_where(as_of, false)
    }

    /// [`Driver::read_back`] that skips stripes no write ever touched whose member blocks were
    /// never written either (they read as zeros, which is what the model expects of them): the
    /// same verdict, in time proportional to the stripes written, for large volumes.
    pub fn read_back_sparse(&mut self, as_of: Option<u64>) -> u64 {
        self.read_back_where(as_of, true)
    }

    fn read_back_where(&mut self, as_of: Option<u64>, sparse: bool) -> u64 {
        let mut bad = 0;
        for vi in 0..self.world.volumes.len() {
            let geo = self.world.volumes[vi].vol.geo;
            let bs = geo.block_size as usize;
            for stripe in 0..geo.stripes {
                if self.excused[vi].contains(&stripe) {
                    continue; // reported at risk by recovery: loss there is expected
                }
                let lba = stripe * geo.stripe_blocks();
                if sparse
                    && !self.model.touched(vi, lba, geo.stripe_blocks())
                    && !stripe_stored(&self.world, vi, stripe)
                {
                    continue;
                }
                let buf = Buf::new(geo.stripe_blocks() as usize * bs);
                let tag = u64::MAX / 2 + stripe;
                if let Err(e) = self.world.submit(
                    0,
                    vi,
                    tag,
                    UserOp::Read,
                    lba,
                    geo.stripe_blocks(),
                    Some(buf),
                ) {
                    self.out.note(format!("read-back refused: {:?}", e.error));
                    bad += geo.stripe_blocks();
                    continue;
                }
                self.world.run_until_idle();
                let mut done = Vec::new();
                self.world.take_completions(&mut done);
                let now = self.world.now;
                for (_, _, c) in done {
                    if self.untrusted_may_refuse
                        && c.result == Err(crate::engine::IoError::ParityUntrusted)
                    {
                        self.out.untrusted_refused += 1;
                        continue;
                    }
                    let Ok(()) = c.result else {
                        bad += geo.stripe_blocks();
                        self.out
                            .note(format!("read-back of stripe {stripe} failed"));
                        continue;
                    };
                    let buf = c.buf.expect("read buffer");
                    for b in 0..geo.stripe_blocks() {
                        if self.unwritten_undefined && !self.model.touched(vi, lba + b, 1) {
                            continue;
                        }
                        let block = &buf.as_slice()[b as usize * bs..(b as usize + 1) * bs];
                        let seen = identify(block, lba + b, vi as u64);
                        let ok = match as_of {
                            Some(t) => self.model.valid_after_crash(vi, lba + b, seen, t),
                            None => self.model.valid(vi, lba + b, seen, now, now),
                        };
                        if !ok {
                            bad += 1;
                            if seen == Seen::Garbage || bad < 4 {
                                self.out.note(format!(
                                    "block {} of volume {vi} holds {seen:?}",
                                    lba + b
                                ));
                            }
                        }
                    }
                }
            }
        }
        bad
    }
}

/// Whether any member block of `stripe` of volume `vi` was ever written (else all read zeros).
fn stripe_stored(world: &World, vi: usize, stripe: u64) -> bool {
    let v = &world.volumes[vi];
    let lba = v.vol.geo.member_lba(stripe, 0);
    v.disks
        .iter()
        .any(|d| d.stored(lba, v.vol.geo.strip_blocks))
}

/// Stripes of volume `vi` whose parity is not the XOR of their data (all members read raw;
/// a stripe no member block of which was ever written is zeros, consistent).
pub fn count_inconsistent(world: &World, vi: usize) -> u64 {
    let geo = world.volumes[vi].vol.geo;
    let len = (geo.strip_blocks * geo.block_size as u64) as usize;
    let mut acc = vec![0u8; len];
    let mut strip = vec![0u8; len];
    let mut bad = 0;
    for s in 0..geo.stripes {
        if !stripe_stored(world, vi, s) {
            continue;
        }
        acc.fill(0);
        for m in 0..geo.members {
            world.peek(vi, m, geo.member_lba(s, 0), &mut strip);
            parity::xor_acc(&mut acc, &strip);
        }
        if acc.iter().any(|&b| b != 0) {
            bad += 1;
        }
    }
    bad
}

/// A random geometry small enough for fast simulation.
pub fn random_geometry(rng: &mut Rng) -> Geometry {
    let members = rng.range(3, 9) as u32;
    let bs = if rng.chance(0.5) { 512 } else { 4096 };
    let (strip, stripes) = if rng.chance(0.15) {
        // Many small stripes: enough dirty stripes to fill a small record.
        (4096, rng.range(40, 64))
    } else {
        (4096u64 << rng.range(0, 4), rng.range(3, 13))
    };
    let member_blocks = crate::layout::RESERVED_BYTES / bs as u64 + stripes * strip / bs as u64;
    Geometry::new(members, strip, bs, member_blocks).expect("valid random geometry")
}

/// A random journal set-up.
pub fn random_journal(rng: &mut Rng) -> SimJournal {
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    uuid[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let block_size = if rng.chance(0.5) { 512 } else { 4096 };
    let mut sj = SimJournal {
        uuid,
        block_size,
        // Small slots sometimes (37 entries at 512 bytes), so writers meet a full record.
        slot_bytes: match rng.range(0, 10) {
            0 | 1 if block_size == 512 => 512,
            0..=2 => 4096,
            _ => 64 * 1024,
        },
        devices: rng.range(1, 3) as u32,
        mode: if rng.chance(0.5) {
            JournalMode::Alternate
        } else {
            JournalMode::Mirror
        },
        volatile: rng.chance(0.5),
        hysteresis_us: [0, 200, 2_000, 100_000][rng.range(0, 4) as usize],
        hysteresis_generations: rng.range(0, 3),
        // u64::MAX: as long as `hysteresis_us` (every listed stripe waits the same).
        first_hysteresis_us: [0, 200, 2_000, u64::MAX][rng.range(0, 4) as usize],
        first_short: rng.chance(0.75),
        roomy_hysteresis_us: 0,
        control_replace_early: false,
        control_no_drop_record: false,
        on_members: false,
        list_ahead: 0,
    };
    // Stretched tenfold while the listed set leaves room, half of the time.
    if rng.chance(0.5) {
        sj.roomy_hysteresis_us = sj.hysteresis_us * 10;
    }
    sj
}

/// A simulation of `volumes` on `journal` with a random number of reactors, volatile member
/// caches half of the time, random device latencies, no injected errors, failures recorded,
/// 500 µs ticks (the crash checks' set-up).
fn random_config(
    seed: u64,
    rng: &mut Rng,
    volumes: Vec<(u32, Geometry)>,
    journal: Option<SimJournal>,
) -> SimConfig {
    SimConfig {
        seed,
        reactors: rng.range(1, 4) as u32,
        volumes,
        member_volatile: rng.chance(0.5),
        journal,
        max_latency_us: rng.range(2, 200),
        error_rate: 0.0,
        tick_us: 500,
        record_failures: true,
        writes_before_durable: false,
    }
}

/// One volume with a journal (slots of at least 4 KiB), members volatile half of the time:
/// the set-up of the rebuild and administrative checks.
fn one_volume_with_journal(seed: u64, rng: &mut Rng) -> (Geometry, SimConfig) {
    let geo = random_geometry(rng);
    (geo, volumes_with_journal(seed, rng, vec![(0, geo)], 0.5))
}

/// `volumes` on one journal (slots of at least 4 KiB), members volatile with chance
/// `p_volatile`, no injected errors, failures recorded.
fn volumes_with_journal(
    seed: u64,
    rng: &mut Rng,
    volumes: Vec<(u32, Geometry)>,
    p_volatile: f64,
) -> SimConfig {
    let mut sj = random_journal(rng);
    sj.slot_bytes = sj.slot_bytes.max(4096);
    SimConfig {
        seed,
        reactors: rng.range(1, 4) as u32,
        volumes,
        member_volatile: rng.chance(p_volatile),
        journal: Some(sj),
        max_latency_us: rng.range(2, 200),
        error_rate: 0.0,
        tick_us: 1000,
        record_failures: true,
        writes_before_durable: false,
    }
}

/// Engine check for one seed: random concurrent reads and writes (overlapping, sub-stripe,
/// multi-stripe) on one volume, sometimes losing a member mid-run; every read checked, parity
/// checked when idle, everything read back healthy and then degraded.
pub fn io_check(seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let geo = random_geometry(&mut rng);
    let journal = random_journal(&mut rng);
    let cfg = SimConfig {
        seed,
        reactors: rng.range(1, 4) as u32,
        volumes: vec![(0, geo)],
        member_volatile: rng.chance(0.5),
        journal: Some(journal),
        max_latency_us: rng.range(2, 200),
        error_rate: if rng.chance(0.2) { 0.01 } else { 0.0 },
        tick_us: 1000,
        record_failures: true,
        writes_before_durable: false,
    };
    let kill_at = rng.chance(0.2).then(|| rng.range(0, 150) as usize);
    let victim = rng.range(0, geo.members as u64) as u32;
    let w = Workload {
        ops: 150,
        qd: rng.range(1, 33) as usize,
        read_fraction: 0.4,
        hot_stripes: rng.chance(0.3).then_some(2),
        single_block: false,
        background: true,
    };
    let mut d = Driver::new(World::new(cfg), rng.fork(1));
    d.small_streams = seed & 1 == 0;
    d.run(&w, None, |d, i| {
        if Some(i) == kill_at && d.world.volumes[0].disks.iter().all(|disk| !disk.failed) {
            d.world.fail_member(0, victim, false);
        }
    });
    // Faults stop with the workload: the checks below must not lose a second member.
    d.world.cfg.error_rate = 0.0;
    let failed = d.world.volumes[0].disks.iter().any(|disk| disk.failed);
    if !failed {
        d.check_parity();
    }
    let bad = d.read_back(None);
    d.out.bad_reads += bad;
    if !failed {
        // Degraded read-back.
        d.world.fail_member(0, victim, true);
        let bad = d.read_back(None);
        d.out.bad_reads += bad;
    }
    (d.out.record_writes, d.out.full_marks) = journal_counts(&d.world);
    d.out.merged_writes = merged_writes(&d.world);
    d.check_records();
    d.out
}

/// User writes merged into another write of their stripe, over the world's volumes.
fn merged_writes(w: &World) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    w.volumes
        .iter()
        .map(|v| v.vol.stats.merged_writes.load(Relaxed))
        .sum()
}

/// (record writes, marks that met a full record) of the world's journal.
fn journal_counts(w: &World) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    w.journal.as_ref().map_or((0, 0), |j| {
        (
            j.stats.record_writes.load(Relaxed),
            j.stats.full.load(Relaxed),
        )
    })
}

/// Crash check for one seed: two or three volumes sharing one journal, a random concurrent
/// workload, power loss at a random instant, recovery, then one member of every volume lost; every
/// acknowledged write must read back and every stripe's parity must match after recovery.
pub fn crash_check(seed: u64, journal: bool) -> Outcome {
    crash_check_with(seed, journal, 1, &RecoveryOptions::default())
}

/// [`crash_check`] with `crashes` power losses per seed: after each recovery more writes, then
/// the power goes again at a random point (sometimes at once, before anything else runs); every
/// recovery after the first may itself lose power at a random point inside it. `opts` are the
/// control plane's recovery options (the simulator's controls switch ordering rules off).
pub fn crash_check_with(seed: u64, journal: bool, crashes: u32, opts: &RecoveryOptions) -> Outcome {
    crash_check_streams(seed, journal, crashes, opts, false)
}

/// [`crash_check_with`]; with `streams`, some writes are a sequential stream of full-stripe
/// writes per volume, which the journal lists ahead of (`Journal::list_ahead`, 4 stripes).
pub fn crash_check_streams(
    seed: u64,
    journal: bool,
    crashes: u32,
    opts: &RecoveryOptions,
    streams: bool,
) -> Outcome {
    crash_check_controlled(seed, journal, crashes, opts, streams, false)
}

/// Control of the journal's rule 1 where it is enforced (`Channel::go_on`): [`crash_check_with`]
/// with writes that go on as soon as their reads are in, before their mark is durable
/// ([`SimConfig::writes_before_durable`]). Loss must be found.
pub fn crash_check_writes_before_durable(seed: u64, crashes: u32) -> Outcome {
    crash_check_controlled(
        seed,
        true,
        crashes,
        &RecoveryOptions::default(),
        false,
        true,
    )
}

fn crash_check_controlled(
    seed: u64,
    journal: bool,
    crashes: u32,
    opts: &RecoveryOptions,
    streams: bool,
    writes_before_durable: bool,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let nvol = rng.range(2, 4) as usize;
    let volumes: Vec<(u32, Geometry)> = (0..nvol)
        .map(|i| (i as u32 * 3 + 1, random_geometry(&mut rng)))
        .collect();
    let mut sj = random_journal(&mut rng);
    if streams {
        sj.list_ahead = 4;
    }
    let mut cfg = random_config(seed, &mut rng, volumes, journal.then_some(sj));
    cfg.writes_before_durable = writes_before_durable;
    let w = Workload {
        ops: 120,
        qd: rng.range(1, 33) as usize,
        read_fraction: 0.2,
        hot_stripes: rng.chance(0.3).then_some(2).filter(|_| !streams),
        single_block: false,
        background: true,
    };
    let crash_after = rng.range(1, 1500);
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.streams = streams;
    d.small_streams = seed & 1 == 1;
    d.run(&w, Some(crash_after), |_, _| {});
    let mut crash_time = d.world.now;
    let (mut record_writes, mut full_marks) = journal_counts(&d.world);
    for k in 0..crashes.max(1) {
        if k > 0 {
            // The power goes again: right after recovery, or after more writes.
            if !rng.chance(0.3) {
                let after = rng.range(1, 1500);
                d.run(&w, Some(after), |_, _| {});
            }
            crash_time = d.world.now;
            let (r, f) = journal_counts(&d.world);
            record_writes += r;
            full_marks += f;
        }
        d.out.merged_writes += merged_writes(&d.world);
        d.out.listed_ahead += d.world.journal.as_ref().map_or(0, |j| {
            j.stats
                .listed_ahead
                .load(std::sync::atomic::Ordering::Relaxed)
        });
        let p_crash = if crashes > 1 { 0.3 } else { 0.0 };
        let report = d.crash_and_recover_with(cfg.clone(), p_crash, opts);
        if report.resync_errors > 0 {
            d.out.failed_requests += report.resync_errors;
            d.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
    }
    d.out.record_writes = record_writes;
    d.out.full_marks = full_marks;
    d.check_parity();
    for vi in 0..d.world.volumes.len() {
        let m = rng.range(0, d.world.volumes[vi].vol.geo.members as u64) as u32;
        d.world.fail_member(vi, m, true);
    }
    d.out.lost_acked = d.read_back(Some(crash_time));
    d.check_records();
    d.out
}

/// Online recovery check for one seed: one or two volumes sharing a journal with a long
/// hysteresis (every stripe written stays listed: a large dirty set), power loss at a random
/// instant; the volumes then serve reads and writes at once while their listed stripes are
/// resynced in the background, lose power again in the middle of that (`crashes` power losses
/// in all, each followed by an online recovery), and finally one member of every volume goes
/// while the resync still runs (or, sometimes, after it ended, once parity is checked). Every
/// acknowledged write must read back, before and after the member loss; a stripe not resynced
/// when its member went may refuse a request (`ParityUntrusted`) but never returns wrong data.
/// Control: `opts.skip_unsynced_guard` (degraded reads trust unsynced parity) must find loss.
pub fn online_check(seed: u64, crashes: u32, opts: &RecoveryOptions) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x0411_11E5);
    let nvol = rng.range(1, 3) as usize;
    let volumes: Vec<(u32, Geometry)> = (0..nvol)
        .map(|i| (i as u32 * 5 + 2, random_geometry(&mut rng)))
        .collect();
    let mut sj = random_journal(&mut rng);
    sj.slot_bytes = 64 * 1024;
    sj.hysteresis_us = 1_000_000;
    sj.first_hysteresis_us = u64::MAX;
    let cfg = random_config(seed, &mut rng, volumes, Some(sj));
    let w = Workload {
        ops: 160,
        qd: rng.range(4, 33) as usize,
        read_fraction: 0.3,
        hot_stripes: None,
        single_block: rng.chance(0.5),
        background: false,
    };
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.untrusted_may_refuse = true;
    d.run(&w, Some(rng.range(200, 2500)), |_, _| {});
    let (mut record_writes, mut full_marks) = journal_counts(&d.world);
    let mut listed_at_crash = 0;
    let mut crashed_while_resyncing = 0;
    for k in 0..crashes.max(1) {
        if k > 0 {
            // More requests while the resync runs, then the power goes again.
            crashed_while_resyncing += u64::from(d.world.recovering());
            let (r, f) = journal_counts(&d.world);
            record_writes += r;
            full_marks += f;
        }
        let report = d.crash_and_recover_online(cfg.clone(), opts);
        let listed: u64 = report.resynced.iter().map(|(_, s)| s.len() as u64).sum();
        listed_at_crash = listed_at_crash.max(listed);
        if k + 1 < crashes.max(1) {
            d.run(&w, Some(rng.range(1, 600)), |_, _| {});
        }
    }
    // Requests while the last resync runs; then a member of every volume goes (while it still
    // runs, mostly).
    let lose_after = rng.range(40, 400);
    let wait_for_resync = rng.chance(0.2);
    d.run(&w, Some(lose_after), |_, _| {});
    if wait_for_resync {
        d.run(&w, None, |_, _| {});
        d.world.run_until_idle();
        d.check_parity();
    }
    // Recoveries that ended before the loss are over; those still running must fail on it.
    d.world.recovery_ends.clear();
    let unsynced_at_loss: Vec<u64> = d
        .world
        .volumes
        .iter()
        .map(|v| v.vol.unsynced_stripes())
        .collect();
    for vi in 0..d.world.volumes.len() {
        let m = rng.range(0, d.world.volumes[vi].vol.geo.members as u64) as u32;
        d.world.fail_member(vi, m, true);
    }
    // Requests with the member gone, while what is left of the resync fails.
    d.run(&w, None, |_, _| {});
    d.world.run_until_idle();
    // A recovery that ended well resynced everything (those in flight at the loss may have
    // finished); one that did not leaves its stripes untrusted (at risk), never forgotten.
    for (vi, end) in std::mem::take(&mut d.world.recovery_ends) {
        let left = d.world.volumes[vi].vol.unsynced_stripes();
        if end.is_ok() == (left > 0) && !opts.skip_unsynced_guard {
            d.out.failed_requests += 1;
            d.out.note(format!(
                "volume {vi}: recovery ended {end:?} with {left} stripes unsynced (of {} at the loss)",
                unsynced_at_loss[vi]
            ));
        }
    }
    d.out.max_resynced = d.max_resynced;
    d.out.record_writes = record_writes;
    d.out.full_marks = full_marks;
    d.out.lost_acked = d.read_back(None);
    d.check_records();
    if listed_at_crash == 0 {
        d.out.unexercised += 1;
        d.out
            .note("not exercised: nothing listed at the crash".into());
    }
    d.out.crashes_while_resyncing = crashed_while_resyncing;
    d.out
}

/// Transient member failure check for one seed: a member starts failing every I/O in the
/// middle of a write workload (the engine fails it and writes go on degraded), then the power
/// goes, either in the middle of the workload or after an idle spell (clean stripes have left
/// the record), and the member works again after the restart. Unless its failure was recorded
/// before the degraded writes were acknowledged, the volume takes it back with stale data.
/// Every acknowledged write must read back (stripes recovery reports at risk excepted); with
/// `record_failures` false (the control) loss is expected.
pub fn transient_check(seed: u64, record_failures: bool) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x7EA5_1E57);
    let geo = random_geometry(&mut rng);
    let journal = random_journal(&mut rng);
    let hysteresis = journal.hysteresis_us;
    let cfg = SimConfig {
        seed,
        reactors: rng.range(1, 4) as u32,
        volumes: vec![(0, geo)],
        member_volatile: rng.chance(0.5),
        journal: Some(journal),
        max_latency_us: rng.range(2, 200),
        error_rate: 0.0,
        tick_us: 500,
        record_failures,
        writes_before_durable: false,
    };
    let w = Workload {
        ops: 150,
        qd: rng.range(1, 17) as usize,
        read_fraction: 0.1,
        hot_stripes: None,
        single_block: false,
        background: false,
    };
    let fail_at = rng.range(0, 60) as usize;
    let victim = rng.range(0, geo.members as u64) as u32;
    let mid_run = rng.chance(0.5);
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    let before = |d: &mut Driver, i: usize| {
        if i == fail_at {
            d.world.fail_member_transiently(0, victim);
        }
    };
    if mid_run {
        let crash_after = rng.range(200, 3000);
        d.run(&w, Some(crash_after), before);
    } else {
        d.run(&w, None, before);
        d.world.advance(hysteresis * 4 + 10_000);
    }
    let crash_time = d.world.now;
    d.crash_and_recover_one_with(cfg, 0.2);
    if d.world.volumes[0].vol.failed_count() == 0 {
        d.check_parity();
    }
    d.out.lost_acked = d.read_back(Some(crash_time));
    d.check_records();
    d.out
}

/// Admin check for one seed: a workload with the control plane's background passes racing it
/// — a scrub (sometimes with repair), then a member failed and rebuilt onto a replacement —
/// and `crashes` power losses at random points (inside the passes, inside recovery, right
/// after it). After each restart an unfinished rebuild starts again (the replacement's
/// superblock says "rebuilding"). In the end every stripe's parity matches and every
/// acknowledged write reads back, also with another member lost.
///
/// `skip_pass_flush` is the control of the pass's rule (a rebuild flushes the members before
/// the replacement counts as active): loss is expected then.
pub fn admin_check(seed: u64, crashes: u32, skip_pass_flush: bool) -> Outcome {
    let mut rng = Rng::new(seed ^ 0xAD31_0000);
    let (geo, cfg) = one_volume_with_journal(seed, &mut rng);
    let qd = rng.range(1, 17) as usize;
    let load = |ops| Workload {
        ops,
        qd,
        read_fraction: 0.3,
        hot_stripes: None,
        single_block: false,
        background: false,
    };
    let victim = rng.range(0, geo.members as u64) as u32;
    let window = rng.range(1, 9) as usize;
    let repair = rng.chance(0.5);
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.skip_pass_flush = skip_pass_flush;
    let mut crashes_left = crashes;
    let mut last_crash = None;
    // Phases: 0 scrub racing writes, 1 member lost and rebuilt racing writes, 2 quiet end.
    for phase in 0..3 {
        match phase {
            0 => {
                d.start_scrub(0, repair, window);
            }
            1 => {
                if d.pass_running() {
                    d.run(&load(0), None, |_, _| {});
                }
                d.world.fail_member(0, victim, true);
                d.run(&load(20), None, |_, _| {});
                if !d.start_rebuild(0, victim, window) {
                    d.out.failed_requests += 1;
                    d.out.note("engine refused the rebuild".into());
                    return d.out;
                }
            }
            _ => {}
        }
        loop {
            let crash_at = (crashes_left > 0 && rng.chance(0.6)).then(|| rng.range(1, 2000));
            // Sometimes the power goes the moment the rebuild is over.
            d.stop_at_pass_end = phase == 1 && crashes_left > 0 && rng.chance(0.5);
            let crashed = d.run(&load(if phase == 2 { 0 } else { 120 }), crash_at, |_, _| {});
            d.stop_at_pass_end = false;
            if !crashed {
                break;
            }
            crashes_left -= 1;
            last_crash = Some(d.world.now);
            d.crash_and_recover_one(cfg.clone());
            // A rebuild cut short starts again (its replacement is "rebuilding").
            let v = &d.world.volumes[0];
            if phase >= 1
                && v.vol.health(victim) != crate::engine::MemberHealth::Active
                && !d.start_rebuild(0, victim, window)
            {
                d.out.failed_requests += 1;
                d.out.note("engine refused the restarted rebuild".into());
                return d.out;
            }
        }
    }
    if d.pass_running() {
        d.run(&load(0), None, |_, _| {});
    }
    if d.world.volumes[0].vol.health(victim) != crate::engine::MemberHealth::Active {
        d.out.failed_requests += 1;
        d.out.note("rebuilt member is not active".into());
        return d.out;
    }
    // Checked as of now: writes went on after the power losses, and the model knows which
    // acknowledged writes a power loss may have taken (unflushed in a volatile cache).
    let other = (victim + 1 + rng.range(0, geo.members as u64 - 1) as u32) % geo.members;
    d.check_with_member_lost(other, None, last_crash.is_some());
    d.out
}

/// Journal loss check for one seed: the journal devices die under a write workload (writes
/// are refused from then on, reads go on); the operator resyncs every stripe (the control
/// plane's pass, members flushed at its end) and names a fresh journal, and writes go on.
/// `crashes` power losses come at random points: in the workload, in the resync, right after
/// the new journal is named, inside recovery — a restart before the new journal is named
/// resyncs every stripe onto a fresh journal. In the end parity matches and every
/// acknowledged write reads back, also with a member lost. With `skip_pass_flush` (the
/// control) the resync ends without its member flush: loss is expected.
pub fn journal_loss_check(seed: u64, crashes: u32, skip_pass_flush: bool) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x10_57_10_55);
    let nvol = rng.range(1, 3) as usize;
    let volumes: Vec<(u32, Geometry)> = (0..nvol)
        .map(|i| (i as u32, random_geometry(&mut rng)))
        .collect();
    let cfg = volumes_with_journal(seed, &mut rng, volumes, 0.7);
    let qd = rng.range(1, 17) as usize;
    let load = |ops| Workload {
        ops,
        qd,
        read_fraction: 0.3,
        hot_stripes: None,
        single_block: false,
        background: false,
    };
    let window = rng.range(1, 33) as usize;
    let lose_at = rng.range(0, 60) as usize;
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.skip_pass_flush = skip_pass_flush;
    d.journal_may_fail = true;
    let mut crashes_left = crashes;
    let crash = |d: &mut Driver, crashes_left: &mut u32| {
        *crashes_left -= 1;
        let report = d.crash_and_recover_with(cfg.clone(), 0.3, &RecoveryOptions::default());
        if report.resync_errors > 0 {
            d.out.failed_requests += report.resync_errors;
            d.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
    };
    // Phase 0: writes; the journal dies at op `lose_at`.
    let crash_at = (crashes_left > 0 && rng.chance(0.5)).then(|| rng.range(1, 3000));
    let lost = std::cell::Cell::new(false);
    if d.run(&load(150), crash_at, |d, i| {
        if i == lose_at && !lost.get() {
            d.world.lose_journal();
            lost.set(true);
        }
    }) {
        crash(&mut d, &mut crashes_left);
    }
    if !lost.get() {
        d.world.lose_journal();
    }
    // Phase 1: while the journal is lost (a restart in between resynced onto a fresh one),
    // resync every stripe with reads going on, then name a fresh journal.
    for vi in 0..nvol {
        if !d.world.journal_lost {
            break;
        }
        let reads = Workload {
            read_fraction: 1.0,
            ..load(40)
        };
        d.start_resync(vi, window);
        d.stop_at_pass_end = true;
        let crash_at = (crashes_left > 0 && rng.chance(0.5)).then(|| rng.range(1, 3000));
        d.run(&reads, crash_at, |_, _| {});
        d.stop_at_pass_end = false;
        if d.pass_running() {
            // Lost power inside the resync: the restart resynced onto a fresh journal.
            crash(&mut d, &mut crashes_left);
        }
    }
    if d.world.journal_lost {
        for _ in 0..1000 {
            if d.world.name_new_journal() {
                break;
            }
            d.world.advance(1000);
        }
        if d.world.journal_lost {
            d.out.failed_requests += 1;
            d.out.note("the new journal could not be named".into());
            return d.out;
        }
        if crashes_left > 0 && rng.chance(0.5) {
            // The power goes right after the new journal is named.
            crash(&mut d, &mut crashes_left);
        }
    }
    // Phase 2: writes on the new journal.
    d.journal_may_fail = false;
    loop {
        let crash_at = (crashes_left > 0 && rng.chance(0.5)).then(|| rng.range(1, 2000));
        if !d.run(&load(80), crash_at, |_, _| {}) {
            break;
        }
        crash(&mut d, &mut crashes_left);
    }
    d.check_parity();
    d.out.lost_acked += d.read_back(None);
    for vi in 0..nvol {
        let m = rng.range(0, d.world.volumes[vi].vol.geo.members as u64) as u32;
        d.world.fail_member(vi, m, true);
    }
    d.out.lost_acked += d.read_back(None);
    d.check_records();
    d.out
}

/// The controls of [`journal_device_check`] (each must find loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicesControl {
    /// A restart that misses a journal device trusts the newest record of the one it finds
    /// (alternate mode; mirror mode with [`JournalDeviceLoss::Swapped`]).
    TrustSurvivor,
    /// Mirror mode: a record only the survivor holds releases its writers before the drop of
    /// the other device is recorded, and nothing records it
    /// ([`crate::journal::JournalConfig::control_no_drop_record`]); with
    /// [`JournalDeviceLoss::Swapped`].
    NoDropRecord,
    /// A replacement device is taken online before the survivor holds every durable record
    /// ([`crate::journal::JournalConfig::control_replace_early`]).
    ReplaceEarly,
}

/// Which journal device loss [`journal_device_check`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalDeviceLoss {
    /// Lost while running.
    Running,
    /// Lost at a power loss.
    Crash,
    /// Lost while running together with a member (the device comes back after the power loss).
    WithMember,
    /// Lost while running for good, then a fresh device takes its place online
    /// ([`World::replace_journal_device`]).
    Replaced,
    /// Lost while running (the survivor goes on alone), then at the power loss the survivor
    /// is lost for good and the first device comes back with what it held: the restart finds
    /// only the device that is behind.
    Swapped,
}

/// Journal device check for one seed: one to three volumes on a journal of two devices
/// (alternate or mirror mode), random concurrent writes and reads, `crashes` power losses at
/// random points (recoveries that lose power themselves too). One journal device is lost:
/// - while running (the journal hears of it at once, or at its next record write there), for
///   good or transiently (back after the next power loss with what it held, behind the
///   survivor), sometimes together with a member of the first volume: no request may fail for
///   it (the survivor takes every record from then on);
/// - or at a power loss: the restart finds it missing;
/// - lost for good while running, a fresh device may take its place online (the next record
///   is a checkpoint to both), before or around the power losses;
/// - lost while running, and the survivor lost at the power loss, the first one back: the
///   restart finds only the device that is behind.
///
/// A restart with a journal device missing resyncs every stripe (all members are there then)
/// unless the journal is mirrored and the members' superblocks do not record the device it
/// finds as dropped ([`crate::control::recovery::journal_complete`]). Every acknowledged write
/// reads back and parity matches, also with a member lost. With the control
/// [`DevicesControl::TrustSurvivor`] a restart that misses a device trusts the newest record
/// of the one it finds: the newest generation may have been on the missing device alone, and
/// loss is expected; likewise with [`DevicesControl::NoDropRecord`]. `loss` picks one case for
/// every seed (`None`: each seed draws one); a seed of a picked case fails unless it
/// exercised it.
pub fn journal_device_check(
    seed: u64,
    crashes: u32,
    loss: Option<JournalDeviceLoss>,
    control: Option<DevicesControl>,
) -> Outcome {
    let trust_survivor = control == Some(DevicesControl::TrustSurvivor);
    let mut rng = Rng::new(seed ^ 0x0D_E1_1C_E2);
    let nvol = rng.range(1, 4) as usize;
    let volumes: Vec<(u32, Geometry)> = (0..nvol)
        .map(|i| (i as u32 * 2 + 1, random_geometry(&mut rng)))
        .collect();
    let mut sj = random_journal(&mut rng);
    sj.devices = 2;
    let swap_loss = loss == Some(JournalDeviceLoss::Swapped);
    match control {
        Some(DevicesControl::NoDropRecord) => sj.mode = JournalMode::Mirror,
        Some(DevicesControl::TrustSurvivor) if swap_loss => sj.mode = JournalMode::Mirror,
        Some(_) => sj.mode = JournalMode::Alternate,
        None => {}
    }
    sj.control_replace_early = control == Some(DevicesControl::ReplaceEarly);
    sj.control_no_drop_record = control == Some(DevicesControl::NoDropRecord);
    let sj_mode = sj.mode;
    let cfg = random_config(seed, &mut rng, volumes, Some(sj));
    let w = Workload {
        ops: 120,
        qd: rng.range(1, 33) as usize,
        read_fraction: 0.2,
        hot_stripes: rng.chance(0.3).then_some(2),
        single_block: false,
        background: true,
    };
    let victim = rng.range(0, 2) as u32;
    let mut while_running = (!trust_survivor || swap_loss) && rng.chance(0.6);
    let mut transient = rng.chance(0.5);
    let mut tell = rng.chance(0.3);
    // A member too: only with a device that comes back (a restart without a journal device
    // resyncs every stripe, which needs every member).
    let mut with_member = while_running && transient && rng.chance(0.4);
    let mut lose_at = rng.range(0, 60) as usize;
    let mut member_at = rng.range(0, 120) as usize;
    let mut replace = while_running && !transient && !with_member && rng.chance(0.5);
    let mut replace_at = lose_at + rng.range(0, 60) as usize;
    let mut swapped = while_running && transient && !with_member && !replace && rng.chance(0.3);
    let mut min_events = 1;
    if let Some(l) = loss {
        // Early enough that the power goes after it.
        (lose_at, member_at, min_events) =
            (rng.range(0, 8) as usize, rng.range(0, 8) as usize, 300);
        while_running = l != JournalDeviceLoss::Crash;
        with_member = l == JournalDeviceLoss::WithMember;
        transient |= with_member;
        replace = l == JournalDeviceLoss::Replaced;
        swapped = l == JournalDeviceLoss::Swapped;
        transient |= swapped;
        if replace {
            // Replaced after the runtime reported the loss (as an operator does).
            (transient, tell) = (false, true);
            replace_at = lose_at + rng.range(1, 10) as usize;
        }
    }
    let member = rng.range(0, cfg.volumes[0].1.members as u64) as u32;
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    if trust_survivor {
        d.record_read = RecordRead::SurvivorTrusted;
    }
    let mut crash_time = 0;
    let mut device_lost = false;
    let mut replaced = false;

    for k in 0..crashes.max(1) {
        let crash_after = rng.range(min_events, 1500);
        let first = k == 0;
        d.run(&w, Some(crash_after), |d, i| {
            if first && while_running && i == lose_at {
                d.world.lose_journal_device(victim, transient, tell);
            }
            if first && with_member && i == member_at {
                d.world.fail_member(0, member, true);
            }
            // Tried at every request from `replace_at` on until the journal takes it.
            if replace && !replaced && i >= replace_at && i > lose_at {
                replaced = d.world.replace_journal_device(victim);
            }
        });
        if first && loss.is_some() {
            let lost = d.world.journal_disks.iter().any(|disk| disk.failed);
            let member_out = d.world.volumes[0].disks.iter().any(|disk| disk.failed);
            if (while_running && !lost && !replaced) || (with_member && !member_out) {
                d.out.unexercised += 1;
                d.out
                    .note(format!("{loss:?}: the power went before the loss"));
            }
        }
        if first && swapped && d.world.journal_disks[victim as usize].failed {
            // The survivor goes for good at the power loss; the victim comes back behind it.
            d.world.lose_journal_device(1 - victim, false, false);
        }
        // After a replacement, either device may be lost at the power loss, or neither.
        let at_crash = if replaced {
            rng.chance(0.5).then(|| rng.range(0, 2) as u32)
        } else {
            Some(victim)
        };
        if let (true, Some(k)) = (
            first && !d.world.journal_disks.iter().any(|disk| disk.failed),
            at_crash,
        ) {
            // Lost at the power loss itself (or the power went before the loss planned
            // while running).
            // (Back after it when a member is lost too: see `with_member`.)
            let transient = with_member || (!trust_survivor && rng.chance(0.3));
            d.world.lose_journal_device(k, transient, false);
        }
        if let Some(j) = &d.world.journal {
            device_lost |=
                replaced || j.degraded() || d.world.journal_disks.iter().any(|disk| disk.failed);
        }
        crash_time = d.world.now;
        let (r, f) = journal_counts(&d.world);
        d.out.record_writes += r;
        d.out.full_marks += f;
        let p_crash = if crashes > 1 { 0.3 } else { 0.0 };
        // A mirror that loses a device only at the power loss (nothing dropped while
        // running) restarts from the other one alone: no full resync.
        let mirror_whole = sj_mode == JournalMode::Mirror
            && !d.world.journal.as_ref().is_some_and(|j| j.degraded())
            && !replaced;
        let report = d.crash_and_recover_with(cfg.clone(), p_crash, &RecoveryOptions::default());
        if first && mirror_whole && report.resynced_all {
            d.out.needless_full_resyncs += 1;
            d.out.note(
                "a mirror missing a device lost at the power loss resynced every stripe".into(),
            );
        }
        if report.resync_errors > 0 {
            d.out.failed_requests += report.resync_errors;
            d.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
        // A stripe written at the power loss with a member missing is at risk (its parity
        // cannot be recomputed): recovery says so, and loss there is excused.
        for (number, stripes) in &report.at_risk {
            let vi = d.world.vi(*number);
            d.excused[vi].extend(stripes.iter().copied());
        }
    }
    if !device_lost {
        d.out.unexercised += 1;
        d.out.note("no journal device was lost".into());
    }
    if loss == Some(JournalDeviceLoss::Replaced) && !replaced {
        d.out.unexercised += 1;
        d.out
            .note("the lost device was never replaced (the survivor never held the whole chain before a power loss)".into());
    }
    let failed = d.world.volumes[0].disks.iter().any(|disk| disk.failed);
    if !failed {
        d.check_parity();
    }
    for vi in 0..d.world.volumes.len() {
        if vi > 0 || !failed {
            let m = rng.range(0, d.world.volumes[vi].vol.geo.members as u64) as u32;
            d.world.fail_member(vi, m, true);
        }
    }
    d.out.lost_acked = d.read_back(Some(crash_time));
    d.check_records();
    d.out
}

/// When [`journal_on_members_check`] loses a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberJournalLoss {
    /// For good, while running (the runtime tells the engine, or it learns on first use).
    Running,
    /// While running, back after the next power loss with what it held.
    Transient,
    /// At a power loss (for good, or back after it).
    Crash,
}

/// Journal on the members, one seed: one volume whose journal lives in a reserved area of
/// members 0 and 1 (two devices, mirrored: each generation on two members), random
/// concurrent writes and reads, `crashes` power losses at random points (recoveries that lose
/// power themselves too). One member (one of the two holding the journal, most of the time)
/// is lost as `loss` says (`None`: each seed draws one): its journal device goes with it, the
/// journal goes on with the other member's copy, no request fails for it, and a restart
/// recovers from the copy that is left (its drop recorded when it happened while running).
/// A member lost for good is sometimes rebuilt onto a blank replacement, whose blank journal
/// area the journal takes online ([`crate::journal::Journal::device_added`]).
/// Every acknowledged write reads back and parity matches, also with a member lost (listed
/// stripes written at a power loss with a member missing are at risk, and excused).
pub fn journal_on_members_check(
    seed: u64,
    crashes: u32,
    loss: Option<MemberJournalLoss>,
) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x0A_3E_3B_E5);
    let geo = random_geometry(&mut rng);
    let mut sj = random_journal(&mut rng);
    sj.devices = 2;
    sj.mode = JournalMode::Mirror;
    sj.on_members = true;
    let cfg = random_config(seed, &mut rng, vec![(0, geo)], Some(sj));
    let w = Workload {
        ops: 120,
        qd: rng.range(1, 33) as usize,
        read_fraction: 0.2,
        hot_stripes: rng.chance(0.3).then_some(2),
        single_block: false,
        background: true,
    };
    let loss = loss.unwrap_or(match rng.range(0, 3) {
        0 => MemberJournalLoss::Running,
        1 => MemberJournalLoss::Transient,
        _ => MemberJournalLoss::Crash,
    });
    let victim = if rng.chance(0.8) {
        rng.range(0, 2) as u32
    } else {
        rng.range(0, geo.members as u64) as u32
    };
    let tell = rng.chance(0.5);
    let back_after_crash = rng.chance(0.5);
    let lose_at = rng.range(0, 8) as usize;
    // Lost for good (and the engine told): rebuilt onto a blank replacement (with a blank
    // journal area) sometimes.
    let rebuild = loss == MemberJournalLoss::Running && tell && rng.chance(0.6);
    let rebuild_at = lose_at + rng.range(1, 30) as usize;
    let window = rng.range(1, 9) as usize;
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    let mut crash_time = 0;
    let mut rebuilt = false;
    for k in 0..crashes.max(1) {
        let crash_after = rng.range(300, 1500);
        let first = k == 0;
        d.run(&w, Some(crash_after), |d, i| {
            if first && i == lose_at {
                match loss {
                    MemberJournalLoss::Running => d.world.fail_member(0, victim, tell),
                    MemberJournalLoss::Transient => d.world.fail_member_transiently(0, victim),
                    MemberJournalLoss::Crash => {}
                }
            }
            // Once the engine has the member failed (told, or learnt on use).
            if first
                && rebuild
                && !rebuilt
                && i >= rebuild_at
                && d.world.volumes[0].vol.health(victim) == crate::engine::MemberHealth::Failed
            {
                rebuilt = d.start_rebuild(0, victim, window);
            }
        });
        if first {
            if loss == MemberJournalLoss::Crash {
                if back_after_crash {
                    d.world.fail_member_transiently(0, victim);
                } else {
                    d.world.fail_member(0, victim, false);
                }
            }
            if !d.world.volumes[0].disks[victim as usize].failed && !rebuilt {
                d.out.unexercised += 1;
                d.out
                    .note(format!("{loss:?}: the power went before the loss"));
            }
        }
        crash_time = d.world.now;
        let (r, f) = journal_counts(&d.world);
        d.out.record_writes += r;
        d.out.full_marks += f;
        let p_crash = if crashes > 1 { 0.3 } else { 0.0 };
        let report = d.crash_and_recover_with(cfg.clone(), p_crash, &RecoveryOptions::default());
        if report.resync_errors > 0 {
            d.out.failed_requests += report.resync_errors;
            d.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
        for (number, stripes) in &report.at_risk {
            let vi = d.world.vi(*number);
            d.excused[vi].extend(stripes.iter().copied());
        }
    }
    // Out of service: failed now, or recorded failed (a transient loss the engine saw stays
    // out until a rebuild).
    let failed = d.world.volumes[0].vol.failed_count() > 0
        || d.world.volumes[0].disks.iter().any(|disk| disk.failed);
    if !failed {
        d.check_parity();
        let m = rng.range(0, geo.members as u64) as u32;
        d.world.fail_member(0, m, true);
    }
    d.out.lost_acked = d.read_back(Some(crash_time));
    d.check_records();
    d.out
}

/// Delete check for one seed: two or three volumes share a journal; under a write workload one
/// of them is deleted (it leaves the journal through the control plane's detach: members
/// flushed, then its entries leave), the others go on writing (records no longer list it),
/// then `crashes` power losses at random points; after each restart the deleted volume is
/// re-assembled from its superblocks (as SPDK's examine does), and the first re-assembly
/// finds nothing of it listed (it stopped clean). Every acknowledged write of every volume
/// reads back and parity matches, also with a member lost. With `skip_detach_flush` (the
/// control) loss is expected.
pub fn delete_check(seed: u64, crashes: u32, skip_detach_flush: bool) -> Outcome {
    let mut rng = Rng::new(seed ^ 0xDE1E_7E00);
    let nvol = rng.range(2, 4) as usize;
    let volumes: Vec<(u32, Geometry)> = (0..nvol)
        .map(|i| (i as u32 * 5 + 2, random_geometry(&mut rng)))
        .collect();
    let cfg = volumes_with_journal(seed, &mut rng, volumes, 0.7);
    let qd = rng.range(1, 17) as usize;
    let load = |ops| Workload {
        ops,
        qd,
        read_fraction: 0.2,
        hot_stripes: None,
        single_block: false,
        background: false,
    };
    let victim = rng.range(0, nvol as u64) as usize;
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.run(&load(100), None, |_, _| {});
    // Delete: no new requests, its in-flight ones drain, then it leaves the journal.
    d.deleted[victim] = true;
    while !(d.world.volume_idle(victim) && d.inflight.values().all(|f| f.vi != victim)) {
        if !d.world.step() {
            d.world.advance(1000);
        }
        d.collect();
    }
    d.world.delete_volume(victim, skip_detach_flush);
    let victim_number = d.world.volumes[victim].vol.number;
    let mut crashes_left = crashes;
    let mut first = true;
    while crashes_left > 0 {
        crashes_left -= 1;
        // The power goes after some writes to the others (records without the deleted
        // volume), or right away.
        let crash_at = rng.chance(0.7).then(|| rng.range(1, 3000));
        if let Some(at) = crash_at {
            d.run(&load(100), Some(at), |_, _| {});
        }
        let report = d.crash_and_recover_with(cfg.clone(), 0.3, &RecoveryOptions::default());
        // The deletion stopped the volume clean: re-assembled, it has nothing to resync.
        let listed = report
            .resynced
            .iter()
            .chain(&report.at_risk)
            .filter(|(n, _)| *n == victim_number)
            .map(|(_, s)| s.len())
            .sum::<usize>();
        if first && listed > 0 {
            d.out.failed_requests += 1;
            d.out.note(format!(
                "the deleted volume came back with {listed} listed stripes"
            ));
        }
        first = false;
        if report.resync_errors > 0 {
            d.out.failed_requests += report.resync_errors;
            d.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
    }
    d.run(&load(40), None, |_, _| {});
    d.check_parity();
    d.out.lost_acked += d.read_back(None);
    for vi in 0..nvol {
        let m = rng.range(0, d.world.volumes[vi].vol.geo.members as u64) as u32;
        d.world.fail_member(vi, m, true);
    }
    d.out.lost_acked += d.read_back(None);
    d.check_records();
    d.out
}

/// Read error check for one seed: after a random workload, bad sectors appear on data blocks
/// of random members; reading every block back must return the acknowledged data, repair the
/// bad sectors from the others (rewriting them) and keep every member in service; parity then
/// matches, and everything still reads back with a member lost.
pub fn read_error_check(seed: u64) -> Outcome {
    let mut rng = Rng::new(seed ^ 0xBAD5_EC70);
    let geo = random_geometry(&mut rng);
    let cfg = SimConfig {
        seed,
        reactors: rng.range(1, 4) as u32,
        volumes: vec![(0, geo)],
        member_volatile: rng.chance(0.5),
        journal: Some(random_journal(&mut rng)),
        max_latency_us: rng.range(2, 200),
        error_rate: 0.0,
        tick_us: 1000,
        record_failures: true,
        writes_before_durable: false,
    };
    let w = Workload {
        ops: 100,
        qd: rng.range(1, 17) as usize,
        read_fraction: 0.0,
        hot_stripes: None,
        single_block: false,
        background: false,
    };
    let mut d = Driver::new(World::new(cfg), rng.fork(1));
    d.run(&w, None, |_, _| {});
    // Bad sectors in distinct stripes (two members unreadable in one stripe is a double
    // fault RAID-5 cannot serve).
    let planted = rng.range(1, 9);
    let mut used = std::collections::BTreeSet::new();
    for _ in 0..planted {
        let lba = rng.range(0, geo.volume_blocks());
        let sb = geo.stripe_blocks();
        let (stripe, o) = (lba / sb, lba % sb);
        if !used.insert(stripe) {
            continue;
        }
        let m = geo.data_member(stripe, (o / geo.strip_blocks) as u32);
        let mlba = geo.member_lba(stripe, o % geo.strip_blocks);
        d.world.plant_bad_block(0, m, mlba);
    }
    d.out.bad_reads += d.read_back(None);
    let vol = d.world.volumes[0].vol.clone();
    if vol.failed_count() > 0 {
        d.out.failed_requests += 1;
        d.out
            .note("a member was failed for a repairable read error".into());
    }
    let left = d.world.bad_blocks(0);
    if left > 0 {
        d.out.failed_requests += 1;
        d.out
            .note(format!("{left} bad blocks left after reading every block"));
    }
    d.check_parity();
    let m = rng.range(0, geo.members as u64) as u32;
    d.world.fail_member(0, m, true);
    d.out.bad_reads += d.read_back(None);
    d.check_records();
    d.out
}

/// Rebuild check for one seed: writes healthy, a member lost, writes degraded, a blank
/// replacement rebuilt under load, sometimes a power loss in the middle (then recovery and a
/// restarted rebuild). Afterwards every stripe's parity matches, every acknowledged write reads
/// back (except in stripes recovery reported at risk), and still does with another member lost.
pub fn rebuild_check(seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let (geo, cfg) = one_volume_with_journal(seed, &mut rng);
    let qd = rng.range(1, 17) as usize;
    let load = |ops| Workload {
        ops,
        qd,
        read_fraction: 0.3,
        hot_stripes: None,
        single_block: false,
        background: true,
    };
    let victim = rng.range(0, geo.members as u64) as u32;
    let window = rng.range(1, 5) as usize;
    let crash_after = rng.chance(0.5).then(|| rng.range(1, 1500));
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.run(&load(60), None, |_, _| {});
    d.world.fail_member(0, victim, true);
    d.run(&load(40), None, |_, _| {});
    if !d.start_rebuild(0, victim, window) {
        d.out.failed_requests += 1;
        d.out.note("engine refused the rebuild".into());
        return d.out;
    }
    let crashed = d.run(&load(150), crash_after, |_, _| {});
    let as_of = if crashed {
        let crash_time = d.world.now;
        let report = d.crash_and_recover(cfg);
        for (_, stripes) in &report.at_risk {
            d.excused[0].extend(stripes.iter().copied());
        }
        // The replacement comes back stale (its superblock says "rebuilding"): start again,
        // unless the rebuild had finished (and flushed) before the power went.
        let done = d.world.volumes[0].vol.health(victim) == crate::engine::MemberHealth::Active;
        if !done && !d.start_rebuild(0, victim, window) {
            d.out.failed_requests += 1;
            d.out.note("engine refused the restarted rebuild".into());
            return d.out;
        }
        d.run(&load(0), None, |_, _| {});
        Some(crash_time)
    } else {
        None
    };
    if d.world.volumes[0].vol.health(victim) != crate::engine::MemberHealth::Active {
        d.out.failed_requests += 1;
        d.out.note("rebuilt member is not active".into());
        return d.out;
    }
    let other = (victim + 1 + rng.range(0, geo.members as u64 - 1) as u32) % geo.members;
    d.check_with_member_lost(other, as_of, as_of.is_some());
    d.out
}

/// A control of [`init_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitControl {
    /// None: what every runtime does.
    None,
    /// The volume is taken as initialised at creation (no initial pass, read-modify-write
    /// everywhere): parity disagreeing with the old contents is carried on.
    AssumeClean,
    /// The initial pass moves its watermark without flushing the members first.
    SkipFlush,
}

/// Initial parity pass check for one seed: a volume of five to eight members created over
/// members that were not blank (data blocks hold the initial content the model knows, parity
/// blocks noise) serves small writes (read-modify-write where its parity is initialised)
/// while the initial pass runs, the watermark recorded in the superblocks as it moves; power
/// losses come at random points, and after each the pass resumes from the recorded watermark.
/// Sometimes a member fails during the pass (which then ends failed) and is rebuilt. In the
/// end the volume is initialised throughout, parity matches, and every acknowledged write
/// reads back, also with a member lost (with a member lost before the pass was over, blocks
/// no write touched are undefined and not checked). A control (see [`InitControl`]) must find
/// loss.
pub fn init_check(seed: u64, crashes: u32, control: InitControl) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x1417_0000);
    let members = rng.range(5, 9) as u32;
    let bs = if rng.chance(0.5) { 512 } else { 4096 };
    let strip = 4096u64 << rng.range(0, 3);
    let stripes = rng.range(8, 40);
    let member_blocks = crate::layout::RESERVED_BYTES / bs as u64 + stripes * strip / bs as u64;
    let geo = Geometry::new(members, strip, bs, member_blocks).expect("valid geometry");
    let mut cfg = volumes_with_journal(seed, &mut rng, vec![(0, geo)], 0.5);
    if control == InitControl::SkipFlush {
        cfg.member_volatile = true; // without a volatile cache a flush changes nothing
    }
    let qd = rng.range(1, 17) as usize;
    let single = rng.chance(0.7);
    let load = |ops| Workload {
        ops,
        qd,
        read_fraction: 0.2,
        hot_stripes: None,
        single_block: single,
        background: false,
    };
    let window = rng.range(1, 5) as usize;
    let fail_during = (control != InitControl::SkipFlush && rng.chance(0.3))
        .then(|| rng.range(0, geo.members as u64) as u32);
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.skip_pass_flush = control == InitControl::SkipFlush;
    d.world.uninitialise(0, seed ^ 0x5EED);
    if control == InitControl::AssumeClean {
        d.world.volumes[0].vol.set_init_stripes(geo.stripes);
        d.world.record_init(0);
    } else {
        d.start_init(0, window);
    }
    let mut crashes_left = crashes;
    let mut last_crash = None;
    loop {
        let crash_at = (crashes_left > 0 && rng.chance(0.7)).then(|| rng.range(1, 3000));
        let crashed = d.run(&load(150), crash_at, |_, _| {});
        if !crashed {
            break;
        }
        crashes_left -= 1;
        last_crash = Some(d.world.now);
        d.out.crashes_in_pass += u64::from(d.pass_running());
        d.crash_and_recover_one(cfg.clone());
        // Resumed from the watermark the superblocks recorded.
        if d.world.volumes[0].vol.init_stripes() < geo.stripes {
            d.start_init(0, window);
        }
    }
    if let Some(m) = fail_during {
        // The pass (if still running) ends failed: expected here, not a failure.
        d.world.fail_member(0, m, true);
        d.run(&load(60), None, |_, _| {});
        d.unwritten_undefined = true;
        if !d.start_rebuild(0, m, window) {
            d.out.failed_requests += 1;
            d.out.note("engine refused the rebuild".into());
            return d.out;
        }
    }
    if d.pass_running() {
        d.run(&load(0), None, |_, _| {});
    }
    let init = d.world.volumes[0].vol.init_stripes();
    if init != geo.stripes {
        d.out.failed_requests += 1;
        d.out
            .note(format!("{init} of {} stripes initialised", geo.stripes));
    }
    let other = rng.range(0, geo.members as u64) as u32;
    d.check_with_member_lost(other, None, last_crash.is_some());
    d.out
}

/// A large volume: tens of thousands of stripes of one 4 KiB strip per member (the simulated
/// members are sparse: only the blocks written cost memory).
pub fn large_geometry(rng: &mut Rng) -> Geometry {
    let (bs, members, stripes) = if rng.chance(0.75) {
        (4096u32, rng.range(3, 9) as u32, rng.range(20_000, 65_001))
    } else {
        // 8 blocks per strip: fewer stripes keep the model's per-block history small.
        (512, rng.range(3, 6) as u32, rng.range(12_000, 24_001))
    };
    let strip = 4096;
    let member_blocks =
        crate::layout::RESERVED_BYTES / u64::from(bs) + stripes * strip / u64::from(bs);
    Geometry::new(members, strip, bs, member_blocks).expect("valid large geometry")
}

/// [`large_check`]: every seed's records listed at least this many stripes at once,
pub const LARGE_MIN_LISTED: u64 = 1000;
/// [`large_check`]: and this many times the mean entries of a delta its workload wrote;
pub const LARGE_LISTED_PER_DELTA: u64 = 20;
/// [`large_check`]: every seed wrote at least this many checkpoints because the chain's area was
/// full,
pub const LARGE_MIN_WRAPS: u64 = 2;
/// [`large_check`]: and at least this many deltas per checkpoint.
pub const LARGE_DELTAS_PER_CHECKPOINT: u64 = 10;

/// Large check for one seed: one or two large volumes (12,000 to 65,000 stripes) on one
/// journal, random writes spread over all their stripes, and a hysteresis long enough that
/// thousands of clean stripes stay listed while each generation adds and removes only a few:
/// a short trial run measures how fast the workload lists stripes, and the hysteresis is set
/// so that a drawn number of them (2,400 to 4,800) stays listed. The areas hold a checkpoint
/// of half as many again, and fill with deltas many times a run (checkpoints alternate between
/// them). Each of `crashes` runs goes on until stripes leave as fast as others join and ends in
/// a power loss at a random instant, or at the next checkpoint write (it tears); a recovery may
/// itself lose power. Then a quiet run; parity matches, every acknowledged write reads back,
/// also with a member of every volume lost, and every recovery started from the newest durable
/// generation or a later one.
///
/// A seed also fails unless it exercised that (`LARGE_*`): its records listed thousands of
/// stripes at once, far more than a delta of the workload held on average, the chain wrapped
/// more than once, deltas outnumbered checkpoints many times and removed stripes, no mark found
/// the record full, and every record write decoded and landed where the format puts it. The
/// figures are in `Outcome::journal` (the workload's records: recoveries and the final
/// read-back apart).
///
/// Controls: without the journal (`journal` false), or with recovery reading only the chain's
/// checkpoint ([`RecordRead::CheckpointOnly`]), loss is expected.
pub fn large_check(seed: u64, journal: bool, crashes: u32, read: RecordRead) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x1A26_E5E7);
    let nvol = rng.range(1, 3) as usize;
    let volumes: Vec<(u32, Geometry)> = (0..nvol)
        .map(|i| (i as u32 * 7 + 3, large_geometry(&mut rng)))
        .collect();
    let mut sj = random_journal(&mut rng);
    sj.block_size = if rng.chance(0.75) { 512 } else { 4096 };
    // For the trial: nothing leaves. Stripes written once under random writes stay listed as
    // long as rewritten ones (the large dirty set this scenario is about).
    sj.hysteresis_us = 1 << 40;
    sj.first_hysteresis_us = u64::MAX;
    // The hysteresis is calibrated below to a listed set of the target's size: not stretched.
    sj.roomy_hysteresis_us = 0;
    sj.hysteresis_generations = rng.range(2, 65);
    let target = rng.range(2400, 4801);
    // Half an area holds a checkpoint of 1.5 times the target (the listed set stays within
    // 1.15 times it), the other half deltas; with 4 KiB journal blocks (a delta takes a block
    // at least) 64 blocks more, so that deltas still outnumber checkpoints.
    let bs = sj.block_size as usize;
    let extra = if bs == 4096 { 64 * 4096 } else { 0 };
    let bound = target as usize * 3 / 2;
    sj.slot_bytes = (2 * crate::journal::record::record_bytes(bound, bs) + extra) as u64;
    let mut cfg = random_config(seed, &mut rng, volumes, Some(sj));
    let qd = rng.range(1, 33) as usize;
    let load = |ops| Workload {
        ops,
        qd,
        read_fraction: 0.1,
        hot_stripes: None,
        single_block: false,
        background: true,
    };
    // Trial: stripes listed per µs.
    let rate = {
        let mut t = Driver::new(World::new(cfg.clone()), rng.fork(2));
        t.run(&load(300), None, |_, _| {});
        let listed = t.world.journal.as_ref().map_or(0, |j| j.listed_count());
        listed.max(1) as f64 / t.world.now.max(1) as f64
    };
    // A stripe stays listed a hysteresis after its write went clean, plus the time until a
    // record checks it (journal::aggregator, scan_removals); the trial's rate counts stripes
    // that never leave, so half the naive figure keeps the listed set near the target.
    let hysteresis = (target as f64 / rate / 2.0) as u64;
    if let Some(sj) = cfg.journal.as_mut() {
        sj.hysteresis_us = hysteresis;
    }
    if !journal {
        cfg.journal = None;
    }
    let mut d = Driver::new(World::new(cfg.clone()), rng.fork(1));
    d.record_read = read;
    for _ in 0..crashes.max(1) {
        // Past two hystereses (stripes leave as others join), then the power goes: at once, or
        // at the next checkpoint write (within four more hystereses).
        let until = d.world.now + 2 * hysteresis + rng.range(hysteresis / 10, hysteresis + 1);
        d.stop_at_time = Some(until);
        let w = load(50_000);
        d.run(&w, None, |_, _| {});
        if rng.chance(0.4) && journal {
            d.stop_at_time = Some(until + 4 * hysteresis);
            d.stop_at_checkpoint = Some(d.world.trace.checkpoints + 1);
            d.run(&w, None, |_, _| {});
            d.stop_at_checkpoint = None;
        }
        d.stop_at_time = None;
        let report = d.crash_and_recover_with(cfg.clone(), 0.3, &RecoveryOptions::default());
        if report.resync_errors > 0 {
            d.out.failed_requests += report.resync_errors;
            d.out
                .note(format!("{} resyncs failed", report.resync_errors));
        }
    }
    d.run(&load(200), None, |_, _| {});
    // The figures are the workload's; the read-back below idles the journal (whole stretches
    // of the listed set leave at once then), its records are checked all the same.
    d.out.journal = d.journal_trace();
    d.world.trace.split();
    d.check_parity();
    d.out.lost_acked += d.read_back_sparse(None);
    for vi in 0..nvol {
        let m = rng.range(0, d.world.volumes[vi].vol.geo.members as u64) as u32;
        d.world.fail_member(vi, m, true);
    }
    d.out.lost_acked += d.read_back_sparse(None);
    d.out.journal.absorb_checks(&d.recovery_trace);
    d.out.journal.absorb_checks(&d.world.trace);
    d.out.max_resynced = d.max_resynced;
    d.out.torn_checkpoints = d.torn_checkpoints;
    d.out.checkpoint_fallbacks = d.checkpoint_fallbacks;
    d.out.full_marks = d.full_marks + journal_counts(&d.world).1;
    d.out.record_writes = d.out.journal.records + d.recovery_trace.records;
    if journal {
        large_exercised(&mut d.out, target, hysteresis);
    }
    d.out
}

/// Whether a [`large_check`] run exercised what it claims; counts and notes it in `out` if not.
fn large_exercised(out: &mut Outcome, target: u64, hysteresis: u64) {
    let t = &out.journal;
    let mut missing = Vec::new();
    if t.max_listed < LARGE_MIN_LISTED {
        missing.push(format!("{} listed at most", t.max_listed));
    }
    // Per generation on average: a burst of removals (all that went clean while no record was
    // written) may make one delta large, which is what deltas are for.
    let mean_delta = t.delta_entries.div_ceil(t.deltas().max(1));
    if t.max_listed < LARGE_LISTED_PER_DELTA * mean_delta {
        missing.push(format!(
            "{} listed at most, {} entries per delta",
            t.max_listed, mean_delta
        ));
    }
    if t.wraps < LARGE_MIN_WRAPS {
        missing.push(format!("{} wraps of the chain", t.wraps));
    }
    if t.deltas() < LARGE_DELTAS_PER_CHECKPOINT * t.checkpoints {
        missing.push(format!(
            "{} deltas, {} checkpoints",
            t.deltas(),
            t.checkpoints
        ));
    }
    if t.delta_removes == 0 {
        missing.push("no delta removed a stripe".into());
    }
    if out.full_marks > 0 {
        missing.push(format!("{} marks found the record full", out.full_marks));
    }
    if !missing.is_empty() {
        out.unexercised += 1;
        out.note(format!(
            "not exercised (target {target} listed, hysteresis {hysteresis} us): {}",
            missing.join("; ")
        ));
    }
}
