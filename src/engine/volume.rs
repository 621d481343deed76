//! The state of one volume that every reactor shares: geometry, member health, stripe locks and the
//! journal the volume writes through.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::journal::Journal;
use crate::layout::Geometry;

use super::lock::StripeLocks;

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
}

/// Shared state of one volume.
pub struct Volume {
    /// Volume number (unique on its journal).
    pub number: u32,
    /// Shape.
    pub geo: Geometry,
    /// Whether members keep written data in a volatile cache until flushed.
    pub member_volatile_cache: bool,
    /// Member health, `MemberHealth as u8`.
    health: Vec<AtomicU8>,
    /// Number of failed members.
    failed: AtomicU32,
    /// Stripe locks.
    pub locks: StripeLocks,
    /// The dirty-stripe journal; `None` only for comparison runs with the journal switched off.
    pub journal: Option<Arc<Journal>>,
    /// Counters.
    pub stats: VolumeStats,
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
            member_volatile_cache,
            health: (0..geo.members).map(|_| AtomicU8::new(0)).collect(),
            failed: AtomicU32::new(0),
            locks: StripeLocks::new(1024),
            journal,
            stats: VolumeStats::default(),
        }
    }

    /// Health of member `m`.
    pub fn health(&self, m: u32) -> MemberHealth {
        // Relaxed is enough: a stale "active" only sends one more I/O to a failed member, whose
        // error then takes the same path as the first failure.
        match self.health[m as usize].load(Ordering::Relaxed) {
            0 => MemberHealth::Active,
            _ => MemberHealth::Failed,
        }
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

    /// Mark member `m` failed. Returns true when this call changed its state.
    pub fn fail_member(&self, m: u32) -> bool {
        if self.health[m as usize].swap(1, Ordering::AcqRel) == 0 {
            self.failed.fetch_add(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    /// Bring member `m` back (after a rebuild or a replacement).
    pub fn restore_member(&self, m: u32) {
        if self.health[m as usize].swap(0, Ordering::AcqRel) == 1 {
            self.failed.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
