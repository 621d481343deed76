//! A volume leaves its journal (delete, or stop): the one copy the SPDK adapter and the
//! simulator drive. Steps: flush the members, detach the volume from the journal, then make
//! a record without it durable — the volume stops clean: when it is assembled again (its
//! superblocks survive), nothing of it is listed and nothing is resynced.
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
//! [`Detach::flushed`]; on [`DetachStep::WriteRecord`] write one record if the journal lets it
//! ([`Journal::begin_flush`]: none while another record write is in flight), as a channel
//! does, and poll again later; [`DetachStep::Done`] ends it.

use crate::journal::Journal;

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachStep {
    /// Flush every member, then report it.
    FlushMembers,
    /// Wait for the flush.
    Wait,
    /// Write a record now if none is in flight (begin_flush, write, flush, finish_flush),
    /// then poll again.
    WriteRecord,
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
    /// The generation that must be durable (a record written after the detach).
    target: Option<u64>,
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
            target: None,
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
        let target = match self.target {
            Some(t) => t,
            None => {
                // The ordering rule of the module docs.
                journal.detach_volume(self.number);
                let t = journal.open_generation();
                journal.request(t);
                self.target = Some(t);
                t
            }
        };
        if journal.is_failed() || journal.durable_generation() >= target {
            self.done = true;
            return DetachStep::Done(r);
        }
        DetachStep::WriteRecord
    }
}
