//! The control plane: the steps around the data path, written once and driven by every
//! runtime — the SPDK adapter, the io_uring runtime and the simulator (which crashes inside
//! them). Safe Rust, no SPDK or io_uring types:
//! - [`assembly`]: which members a volume uses, from the superblocks found;
//! - [`recovery`]: after a crash (the volume may serve I/O meanwhile);
//! - [`pass`]: rebuild, scrub (and repair) and the full resync before a new journal;
//! - [`detach`]: a volume leaving its journal (delete, stop).
//!
//! The drivers' contract is small: submit engine requests on a channel of the volume and
//! report their completions, send the journal a kick, read the clock, poll again on a
//! completion or a timer tick, and (outside these modules) write and flush superblocks.
//!
//! Each ordering rule that protects data is enforced in one place here and named in that
//! module's docs:
//! - [`recovery`]: members are flushed before resynced stripes leave the record; while the
//!   volume serves I/O during it, no request trusts the parity of a stripe not yet resynced.
//! - [`pass`]: a rebuild or full resync flushes the members before it is done (before the
//!   replacement is marked active, or the new journal named).
//! - [`detach`]: a volume's members are flushed before its entries leave the journal.

pub mod assembly;
pub mod detach;
pub mod pass;
pub mod recovery;

pub use pass::{Pass, PassEnd, PassKind, PassOptions, PassStep, PassSubmit};
pub use recovery::{Outcome, Recovery, RecoveryError, RecoveryOptions, Step, Stripes, Submit};
