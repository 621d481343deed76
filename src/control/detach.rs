//! A volume leaves its journal (delete, or stop): the one copy the SPDK adapter and the
//! simulator drive.
//!
//! # Ordering rule: a volume's members are flushed before its entries leave the journal
//! Enforced here: [`Detach::poll`] asks for a member flush and detaches the volume (its
//! listed stripes leave with the next record) only once the flush has completed. Without
//! it, data and parity still in a volatile member cache are neither durable nor listed, and a
//! re-assembly after a power loss (the superblocks survive a delete) trusts their parity. The
//! simulator's control (`crash_sim --scenario delete --control no-detach-flush`) finds that
//! loss.
//!
//! The driver's contract: no I/O of the volume is in flight any more (its channels are
//! gone); on [`DetachStep::FlushMembers`] flush every member and report with
//! [`Detach::flushed`]; poll again; [`DetachStep::Done`] ends it.

use crate::journal::Journal;

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachStep {
    /// Flush every member, then report it.
    FlushMembers,
    /// Wait for the flush.
    Wait,
    /// Detached (the flush result says whether the members were durable).
    Done(Result<(), ()>),
}

/// One volume leaving its journal.
#[derive(Debug)]
pub struct Detach {
    number: u32,
    skip_flush: bool,
    asked: bool,
    flushed: Option<Result<(), ()>>,
    done: bool,
}

impl Detach {
    /// Volume `number` leaves its journal. `skip_flush` is the simulator's control only.
    pub fn new(number: u32, skip_flush: bool) -> Detach {
        Detach {
            number,
            skip_flush,
            asked: false,
            flushed: None,
            done: false,
        }
    }

    /// The member flush ended (`Err` when a member failed it: the volume leaves anyway, as
    /// it is going away, and its stripes may be at risk).
    pub fn flushed(&mut self, r: Result<(), ()>) {
        self.flushed = Some(r);
    }

    /// The next step; detaches from `journal` once the members are flushed.
    pub fn poll(&mut self, journal: &Journal) -> DetachStep {
        if self.done {
            return DetachStep::Done(self.flushed.unwrap_or(Ok(())));
        }
        if self.skip_flush && !self.asked {
            self.asked = true;
            self.flushed = Some(Ok(()));
        }
        if !self.asked {
            self.asked = true;
            return DetachStep::FlushMembers;
        }
        let Some(r) = self.flushed else {
            return DetachStep::Wait;
        };
        // The ordering rule of the module docs.
        journal.detach_volume(self.number);
        self.done = true;
        DetachStep::Done(r)
    }
}
