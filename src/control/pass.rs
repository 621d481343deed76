//! The background pass over every stripe of a volume while it serves I/O: rebuild onto a
//! replacement, scrub (with repair), and the full resync before a new journal is named. One
//! windowed loop with a bandwidth cap serves all three; the SPDK adapter, the io_uring CLI and
//! the simulator drive it.
//!
//! # Ordering rule: a rebuild or full resync flushes the members before it is done
//! Enforced here: after the last stripe, the pass submits one member flush and reports
//! [`PassEnd::Done`] only once it completed. The driver then marks the replacement active (its
//! superblock says so next) or names the new journal; before the flush the rebuilt data or the
//! recomputed parity may still sit in a volatile cache. Repaired stripes need no flush here:
//! a repair is marked in the journal like a write, and the journal's own rule (a stripe leaves
//! the record only after a member flush covers it) applies.
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
}

/// Limits of a pass.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Stripes in flight at most (0: 1).
    pub window: usize,
    /// Bandwidth cap in bytes per second (0: none).
    pub bytes_per_s: u64,
    /// Simulator control only: end a rebuild or resync without the member flush. The crash
    /// simulation must then find loss; no runtime sets it.
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
    /// A rebuild or resync could not finish (see [`Pass::first_error`]).
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
}

impl Pass {
    /// A pass of `kind` over the `stripes` stripes of a volume of geometry `geo`.
    pub fn new(kind: PassKind, geo: &crate::layout::Geometry, opts: PassOptions) -> Pass {
        let bytes_per_stripe = match kind {
            PassKind::Rebuild { .. } => geo.strip_blocks * geo.block_size as u64,
            PassKind::Scrub { .. } | PassKind::Resync => {
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
        }
    }

    /// What it does.
    pub fn kind(&self) -> PassKind {
        self.kind
    }
    /// Stripes in all.
    pub fn total(&self) -> u64 {
        self.stripes
    }
    /// Stripes done (rebuilt, checked or resynced).
    pub fn done(&self) -> u64 {
        self.done
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
            Phase::Flushing => "flushing",
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
        let fatal = matches!(self.kind, PassKind::Rebuild { .. } | PassKind::Resync);
        if self.phase != Phase::Over {
            match self.kind {
                PassKind::Rebuild { member } if vol.rebuilding() != Some(member) => {
                    self.fail(format!("member {member} failed during its rebuild"));
                    self.phase = Phase::Over;
                }
                PassKind::Resync if vol.failed_count() > 0 => {
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
                if self.next >= self.stripes {
                    break;
                }
                let cap = self.opts.bytes_per_s;
                if cap > 0
                    && self.next as u128 * self.bytes_per_stripe as u128 * 1_000_000
                        > elapsed as u128 * cap as u128
                {
                    break; // over the bandwidth cap: wait
                }
                let op = match self.kind {
                    PassKind::Rebuild { .. } => UserOp::Rebuild,
                    PassKind::Scrub { .. } => UserOp::Scrub,
                    PassKind::Resync => UserOp::Resync,
                };
                out.push(PassSubmit {
                    op,
                    lba: self.next,
                    blocks: 1,
                });
                self.next += 1;
                self.inflight += 1;
            }
            if self.inflight == 0 && self.next >= self.stripes && self.repairs.is_empty() {
                if fatal && self.errors == 0 && !self.opts.skip_member_flush {
                    // The ordering rule of the module docs.
                    self.phase = Phase::Flushing;
                    self.inflight += 1;
                    out.push(PassSubmit {
                        op: UserOp::Flush,
                        lba: 0,
                        blocks: 0,
                    });
                } else {
                    self.phase = Phase::Over;
                }
            }
        }
        if !out.is_empty() || self.phase != Phase::Over || self.inflight > 0 {
            return PassStep::Submit(out);
        }
        PassStep::Done(if self.stopping {
            PassEnd::Aborted
        } else if fatal && self.errors > 0 {
            PassEnd::Failed
        } else {
            PassEnd::Done
        })
    }
}
