//! The background pass over every stripe of a volume while it serves I/O: rebuild onto a
//! replacement, scrub (with repair), the full resync before a new journal is named, and the
//! initial parity pass of a new volume. One windowed loop with a bandwidth cap serves all
//! four; the SPDK adapter, the io_uring CLI and the simulator drive it.
//!
//! # Ordering rule: a rebuild or full resync flushes the members before it is done
//! Enforced here: after the last stripe, the pass submits one member flush and reports
//! [`PassEnd::Done`] only once it completed. The driver then marks the replacement active (its
//! superblock says so next) or names the new journal; before the flush the rebuilt data or the
//! recomputed parity may still sit in a volatile cache. Repaired stripes need no flush here:
//! a repair is marked in the journal like a write, and the journal's own rule (a stripe leaves
//! the record only after a member flush covers it) applies.
//!
//! # Ordering rule: the initial pass flushes the members before a stripe counts as initialised
//! Enforced here: the initial pass ([`PassKind::Init`]) resyncs the stripes above the volume's
//! watermark ([`Volume::init_stripes`]) a chunk at a time; after a chunk's last stripe it
//! submits one member flush, and only once that completed does it move the watermark past the
//! chunk (the engine then lets writes there read-modify-write, and superblocks written from
//! then on record it). Before the flush the recomputed parity may still sit in a volatile
//! cache: a power loss would leave a row the superblock calls initialised with parity that
//! disagrees, and read-modify-write would carry that on into acknowledged data. A full resync
//! or a rebuild that ends [`PassEnd::Done`] leaves every row matching too: the volume is then
//! initialised throughout.
//!
//! The driver's contract: submit each [`PassSubmit`] as an engine request on a channel of the
//! volume, report its completion with [`Pass::complete`], and call [`Pass::poll`] on every
//! completion or timer tick until it returns [`PassStep::Done`].

use crate::engine::{IoError, UserOp, Volume};

/// Mismatching stripes a scrub lists by number (it counts them all).
pub const LIST_MAX: usize = 64;

/// What a pass does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Rebuild `member` (being rebuilt onto a replacement) from the others.
    Rebuild {
        /// The member.
        member: u32,
    },
    /// Check parity; with `repair`, rewrite it where it disagrees.
    Scrub {
        /// Repair mismatches.
        repair: bool,
    },
    /// Rewrite every stripe's parity from its data (before a new journal is named).
    Resync,
    /// The initial parity pass of a new volume: resync the stripes from its watermark
    /// ([`Volume::init_stripes`]) up, a chunk at a time, moving the watermark after each
    /// (see the module docs).
    Init,
}

/// Stripes of one chunk of the initial pass over `stripes` stripes: about 1/64 of the volume,
/// at most 65536 stripes (so a restart repeats little), at least 1.
pub fn init_chunk(stripes: u64) -> u64 {
    stripes.div_ceil(64).clamp(1, 1 << 16)
}

/// Limits of a pass.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Stripes in flight at most (0: 1).
    pub window: usize,
    /// Bandwidth cap in bytes per second (0: none).
    pub bytes_per_s: u64,
    /// Simulator control only: end a rebuild or resync, or an initial pass's chunk, without
    /// the member flush. The crash simulation must then find loss; no runtime sets it.
    pub skip_member_flush: bool,
}

/// An engine request the driver submits for the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassSubmit {
    /// `Rebuild`, `Scrub`, `Repair`, `Resync` (one stripe), or `Flush`.
    pub op: UserOp,
    /// The stripe (0 for Flush).
    pub lba: u64,
    /// 1, or 0 for Flush.
    pub blocks: u64,
}

/// A small number for each op a pass submits (1..=5), for drivers that carry the op in a
/// request tag; [`op_of_code`] reverses it.
pub fn op_code(op: UserOp) -> u64 {
    match op {
        UserOp::Rebuild => 1,
        UserOp::Scrub => 2,
        UserOp::Repair => 3,
        UserOp::Resync => 4,
        _ => 5,
    }
}

/// The op of a code from [`op_code`] (anything else: Flush).
pub fn op_of_code(code: u64) -> UserOp {
    match code {
        1 => UserOp::Rebuild,
        2 => UserOp::Scrub,
        3 => UserOp::Repair,
        4 => UserOp::Resync,
        _ => UserOp::Flush,
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    /// Every stripe done (a scrub may have found mismatches: see its counters).
    Done,
    /// A rebuild, resync or initial pass could not finish (see [`Pass::first_error`]).
    Failed,
    /// Stopped (the volume is going away).
    Aborted,
}

impl PassEnd {
    /// As status JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PassEnd::Done => "done",
            PassEnd::Failed => "failed",
            PassEnd::Aborted => "aborted",
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassStep {
    /// Submit these (possibly none), then poll again after a completion or a tick.
    Submit(Vec<PassSubmit>),
    /// Over.
    Done(PassEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Stripes,
    Flushing,
    /// The initial pass: a chunk's flush is in flight.
    ChunkFlushing,
    Over,
}

/// One pass (see the module docs).
#[derive(Debug)]
pub struct Pass {
    kind: PassKind,
    stripes: u64,
    bytes_per_stripe: u64,
    opts: PassOptions,
    phase: Phase,
    started_us: Option<u64>,
    next: u64,
    inflight: usize,
    done: u64,
    errors: u64,
    first_error: Option<String>,
    mismatches: u64,
    listed: Vec<u64>,
    repairs: Vec<u64>,
    repaired: u64,
    repair_failed: u64,
    stopping: bool,
    /// The initial pass: where it started (None until its first poll), the end of the
    /// chunk being resynced.
    init_from: Option<u64>,
    chunk_end: u64,
    /// The initial pass: the flush after the chunk completed (the watermark moves at the next
    /// poll, which has the volume).
    chunk_flushed: bool,
}

impl Pass {
    /// A pass of `kind` over the `stripes` stripes of a volume of geometry `geo`.
    pub fn new(kind: PassKind, geo: &crate::layout::Geometry, opts: PassOptions) -> Pass {
        let bytes_per_stripe = match kind {
            PassKind::Rebuild { .. } => geo.strip_blocks * geo.block_size as u64,
            PassKind::Scrub { .. } | PassKind::Resync | PassKind::Init => {
                geo.stripe_blocks() * geo.block_size as u64
            }
        };
        Pass {
            kind,
            stripes: geo.stripes,
            bytes_per_stripe,
            opts,
            phase: Phase::Stripes,
            started_us: None,
            next: 0,
            inflight: 0,
            done: 0,
            errors: 0,
            first_error: None,
            mismatches: 0,
            listed: Vec::new(),
            repairs: Vec::new(),
            repaired: 0,
            repair_failed: 0,
            stopping: false,
            init_from: None,
            chunk_end: 0,
            chunk_flushed: false,
        }
    }

    /// New limits for the rest of the pass: at most `window` stripes in flight, `bytes_per_s`
    /// (0: no cap) averaged from its start.
    pub fn set_limits(&mut self, window: usize, bytes_per_s: u64) {
        self.opts.window = window;
        self.opts.bytes_per_s = bytes_per_s;
    }

    /// What it does.
    pub fn kind(&self) -> PassKind {
        self.kind
    }
    /// Stripes in all.
    pub fn total(&self) -> u64 {
        self.stripes
    }
    /// Stripes done (rebuilt, checked or resynced; the initial pass counts those below the
    /// watermark it started from as done).
    pub fn done(&self) -> u64 {
        self.done
    }
    /// Stripes this pass did itself (its rate): [`Pass::done`] less those the initial pass
    /// found initialised at its start.
    pub fn done_here(&self) -> u64 {
        self.done - self.init_from.unwrap_or(0).min(self.done)
    }
    /// Bytes a stripe moves (for the rate).
    pub fn bytes_per_stripe(&self) -> u64 {
        self.bytes_per_stripe
    }
    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }
    /// The first error, in words.
    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }
    /// Stripes whose parity disagreed (scrub).
    pub fn mismatches(&self) -> u64 {
        self.mismatches
    }
    /// The lowest [`LIST_MAX`] mismatching stripes, ascending (scrub).
    pub fn mismatch_stripes(&self) -> &[u64] {
        &self.listed
    }
    /// Stripes repaired (scrub with repair).
    pub fn repaired(&self) -> u64 {
        self.repaired
    }
    /// Repairs that failed.
    pub fn repair_failed(&self) -> u64 {
        self.repair_failed
    }
    /// Its state in words while it runs.
    pub fn state(&self) -> &'static str {
        match self.phase {
            Phase::Flushing | Phase::ChunkFlushing => "flushing",
            _ if self.stopping => "stopping",
            _ => "running",
        }
    }

    fn fail(&mut self, msg: String) {
        self.errors += 1;
        self.first_error.get_or_insert(msg);
    }

    /// A submission was refused at once.
    pub fn refused(&mut self, s: PassSubmit, e: IoError) {
        self.complete(s.op, s.lba, Err(e));
    }

    /// A request of the pass completed.
    pub fn complete(&mut self, op: UserOp, stripe: u64, result: Result<(), IoError>) {
        self.inflight = self.inflight.saturating_sub(1);
        match (op, result) {
            (UserOp::Rebuild, Ok(())) | (UserOp::Resync, Ok(())) | (UserOp::Scrub, Ok(())) => {
                self.done += 1
            }
            (UserOp::Rebuild, Err(e)) => {
                self.done += 1;
                self.fail(format!("rebuild of stripe {stripe}: {e}"));
            }
            (UserOp::Resync, Err(e)) => {
                self.done += 1;
                self.fail(format!("resync of stripe {stripe}: {e}"));
            }
            (UserOp::Flush, Ok(())) if self.phase == Phase::ChunkFlushing => {
                self.phase = Phase::Stripes;
                self.chunk_flushed = true;
            }
            (UserOp::Flush, Err(e)) if self.phase == Phase::ChunkFlushing => {
                self.fail(format!(
                    "member flush after stripes up to {}: {e}",
                    self.chunk_end
                ));
                self.phase = Phase::Over;
            }
            (UserOp::Scrub, Err(IoError::ParityMismatch)) => {
                self.done += 1;
                self.mismatches += 1;
                // Ascending, the lowest LIST_MAX: stripes finish out of order.
                let at = self.listed.partition_point(|&s| s < stripe);
                if at < LIST_MAX {
                    self.listed.insert(at, stripe);
                    self.listed.truncate(LIST_MAX);
                }
                if self.kind == (PassKind::Scrub { repair: true }) {
                    self.repairs.push(stripe);
                }
            }
            (UserOp::Scrub, Err(e)) => {
                self.done += 1;
                self.fail(format!("scrub of stripe {stripe}: {e}"));
            }
            (UserOp::Repair, Ok(())) => self.repaired += 1,
            (UserOp::Repair, Err(e)) => {
                self.repair_failed += 1;
                self.fail(format!("repair of stripe {stripe}: {e}"));
            }
            (UserOp::Flush, Ok(())) => self.phase = Phase::Over,
            (UserOp::Flush, Err(e)) => {
                self.fail(format!("member flush after the pass: {e}"));
                self.phase = Phase::Over;
            }
            _ => {}
        }
    }

    /// The next step at `now_us`, given the volume's state; `stopping` when the volume is
    /// going away (the pass ends as soon as nothing of it is in flight).
    pub fn poll(&mut self, now_us: u64, vol: &Volume, stopping: bool) -> PassStep {
        let started = *self.started_us.get_or_insert(now_us);
        self.stopping |= stopping;
        let fatal = matches!(
            self.kind,
            PassKind::Rebuild { .. } | PassKind::Resync | PassKind::Init
        );
        if self.kind == PassKind::Init {
            if self.init_from.is_none() {
                let from = vol.init_stripes().min(self.stripes);
                self.init_from = Some(from);
                self.next = from;
                self.done = from;
                self.chunk_end = (from + init_chunk(self.stripes)).min(self.stripes);
            }
            if std::mem::take(&mut self.chunk_flushed) {
                // The ordering rule of the module docs: the chunk is resynced and flushed.
                self.advance_init(vol);
            }
        }
        if self.phase != Phase::Over {
            match self.kind {
                PassKind::Rebuild { member } if vol.rebuilding() != Some(member) => {
                    self.fail(format!("member {member} failed during its rebuild"));
                    self.phase = Phase::Over;
                }
                PassKind::Resync | PassKind::Init if vol.failed_count() > 0 => {
                    self.fail("a member failed during the resync".into());
                    self.phase = Phase::Over;
                }
                _ => {}
            }
            if (fatal && self.errors > 0) || self.stopping {
                self.phase = Phase::Over;
            }
        }
        let mut out = Vec::new();
        if self.phase == Phase::Stripes {
            let elapsed = now_us.saturating_sub(started);
            let window = self.opts.window.max(1);
            let end = if self.kind == PassKind::Init {
                self.chunk_end
            } else {
                self.stripes
            };
            while self.inflight < window {
                if let Some(s) = self.repairs.pop() {
                    out.push(PassSubmit {
                        op: UserOp::Repair,
                        lba: s,
                        blocks: 1,
                    });
                    self.inflight += 1;
                    continue;
                }
                if self.next >= end {
                    break;
                }
                let cap = self.opts.bytes_per_s;
                let moved = self.next - self.init_from.unwrap_or(0);
                if cap > 0
                    && moved as u128 * self.bytes_per_stripe as u128 * 1_000_000
                        > elapsed as u128 * cap as u128
                {
                    break; // over the bandwidth cap: wait
                }
                let op = match self.kind {
                    PassKind::Rebuild { .. } => UserOp::Rebuild,
                    PassKind::Scrub { .. } => UserOp::Scrub,
                    PassKind::Resync | PassKind::Init => UserOp::Resync,
                };
                out.push(PassSubmit {
                    op,
                    lba: self.next,
                    blocks: 1,
                });
                self.next += 1;
                self.inflight += 1;
            }
            if self.kind == PassKind::Init && self.inflight == 0 && self.next >= end {
                if vol.init_stripes() >= self.stripes {
                    self.phase = Phase::Over;
                } else if self.opts.skip_member_flush {
                    self.advance_init(vol); // the control: no flush before the watermark moves
                } else {
                    // The ordering rule of the module docs.
                    out.push(self.flush(Phase::ChunkFlushing));
                }
            } else if self.inflight == 0 && self.next >= self.stripes && self.repairs.is_empty() {
                if fatal && self.errors == 0 && !self.opts.skip_member_flush {
                    // The ordering rule of the module docs.
                    out.push(self.flush(Phase::Flushing));
                } else {
                    self.phase = Phase::Over;
                }
            }
        }
        if !out.is_empty() || self.phase != Phase::Over || self.inflight > 0 {
            return PassStep::Submit(out);
        }
        let end = if self.stopping {
            PassEnd::Aborted
        } else if fatal && self.errors > 0 {
            PassEnd::Failed
        } else {
            PassEnd::Done
        };
        if end == PassEnd::Done && self.kind == PassKind::Resync {
            // Every row's parity recomputed and flushed (the rule above): all initialised.
            vol.set_init_stripes(self.stripes);
        }
        PassStep::Done(end)
    }

    /// The member flush that ends the stripes (or a chunk of them): into `phase` until it
    /// completes.
    fn flush(&mut self, phase: Phase) -> PassSubmit {
        self.phase = phase;
        self.inflight += 1;
        PassSubmit {
            op: UserOp::Flush,
            lba: 0,
            blocks: 0,
        }
    }

    /// The initial pass: every stripe below the chunk's end is resynced and flushed; move the
    /// volume's watermark there and start the next chunk.
    fn advance_init(&mut self, vol: &Volume) {
        vol.set_init_stripes(self.chunk_end);
        self.chunk_end = (self.chunk_end + init_chunk(self.stripes)).min(self.stripes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Geometry;

    fn submits(step: PassStep) -> Vec<(UserOp, u64)> {
        match step {
            PassStep::Submit(v) => v.into_iter().map(|s| (s.op, s.lba)).collect(),
            PassStep::Done(e) => panic!("over: {e:?}"),
        }
    }

    /// The initial pass starts at the volume's watermark and moves it past a chunk only once
    /// the member flush after the chunk completed (the module's ordering rule).
    #[test]
    fn init_moves_the_watermark_only_after_the_chunk_flush() {
        let geo = Geometry::new(5, 4096, 4096, 256 + 10).expect("geometry");
        assert_eq!(geo.stripes, 10);
        assert_eq!(init_chunk(geo.stripes), 1);
        let vol = Volume::new(0, geo, true, None);
        vol.set_init_stripes(3);
        let opts = PassOptions {
            window: 4,
            bytes_per_s: 0,
            skip_member_flush: false,
        };
        let mut p = Pass::new(PassKind::Init, &geo, opts);
        for s in 3..10 {
            assert_eq!(submits(p.poll(0, &vol, false)), vec![(UserOp::Resync, s)]);
            assert_eq!(p.done(), s);
            p.complete(UserOp::Resync, s, Ok(()));
            assert_eq!(submits(p.poll(0, &vol, false)), vec![(UserOp::Flush, 0)]);
            assert_eq!(submits(p.poll(0, &vol, false)), vec![]);
            assert_eq!(vol.init_stripes(), s, "moved before the flush");
            assert!(vol.parity_uninitialised(s));
            p.complete(UserOp::Flush, 0, Ok(()));
            // The next poll moves it (and starts the next chunk).
            if s + 1 < 10 {
                assert_eq!(
                    submits(p.poll(0, &vol, false)),
                    vec![(UserOp::Resync, s + 1)]
                );
                p.refused(
                    PassSubmit {
                        op: UserOp::Resync,
                        lba: s + 1,
                        blocks: 1,
                    },
                    IoError::VolumeFailed,
                );
                break;
            }
        }
        assert_eq!(vol.init_stripes(), 4);
        assert!(!vol.parity_uninitialised(3));
        // A failed resync ends the pass failed; the watermark stays.
        assert_eq!(p.poll(0, &vol, false), PassStep::Done(PassEnd::Failed));
        assert_eq!(vol.init_stripes(), 4);
        // A new pass resumes from there and ends with every stripe initialised.
        let mut p = Pass::new(PassKind::Init, &geo, opts);
        loop {
            match p.poll(0, &vol, false) {
                PassStep::Submit(v) => {
                    for s in v {
                        assert!(s.op == UserOp::Flush || s.lba >= 4, "{s:?}");
                        p.complete(s.op, s.lba, Ok(()));
                    }
                }
                PassStep::Done(e) => {
                    assert_eq!(e, PassEnd::Done);
                    break;
                }
            }
        }
        assert_eq!(vol.init_stripes(), 10);
        assert_eq!(p.done(), 10);
        assert_eq!(p.done_here(), 6);
    }
}
