//! The embedded default runtime: an io_uring [`Backend`](crate::engine::Backend), reactor
//! threads, and the volume lifecycle on plain files or block devices (create, open with
//! superblock checks, recovery, scrub).
//!
//! Layout of a volume directory: member files `m0` … `m{N-1}` (each may be a symlink to a block
//! device) and a journal file `journal`. Members carry a
//! [`MemberSuperblock`](crate::superblock::MemberSuperblock) at LBA 0, the journal a
//! [`JournalSuperblock`](crate::superblock::JournalSuperblock) at byte 0 and its two record slots
//! from [`JOURNAL_SLOTS_OFFSET`](crate::superblock::JOURNAL_SLOTS_OFFSET).
//!
//! Devices are opened with `O_DIRECT` when the filesystem allows it; otherwise a one-line notice
//! goes to stderr and buffered I/O is used. Either way a device flush is `IORING_OP_FSYNC` with
//! the datasync flag, and every device is treated as having a volatile cache, so journal records
//! are durable (write + fdatasync) before the writes they protect go on.
//!
//! `unsafe` code in the crate lives only in this module (ring submissions, eventfd, fallocate);
//! each block states its safety condition. A buffer handed to the kernel is never freed before
//! its completion: a reactor that panics with device I/O in flight aborts the process rather
//! than unwind through its slab (`inflight.rs`).
//!
//! Kernel: Linux 5.6 or later (`IORING_OP_READ`/`WRITE`); from 5.11 (`IORING_FEAT_EXT_ARG`)
//! reactors sleep with a timeout in the wait itself, before it with a timeout request
//! (`ring.rs`).

pub mod engine;
pub mod files;
mod inflight;
pub mod reactor;
pub mod ring;
pub mod sys;

pub use engine::{
    start, start_with, Engine, PassReport, RecoveryReport, RecoveryState, RecoveryStatus,
    StartOptions,
};
pub use files::{create, CreateOptions, VolumeFiles};
pub use reactor::{Ctx, Driver, Runtime, RuntimeOptions, UringBackend, VolumeDevices};
pub use ring::WaitMode;

use std::fmt;

/// An error of the runtime, with a message fit for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error saying `msg`.
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
