//! The control plane: the steps around the data path (recovery today), written once as state
//! machines whose steps are values, and driven by every runtime: the SPDK adapter, the io_uring
//! runtime and the simulator (which crashes inside them). Safe Rust, no SPDK or io_uring types.
//!
//! Each ordering rule that protects data is enforced in one place here and named in that
//! module's docs:
//! - [`recovery`]: members are flushed before resynced stripes leave the record.
//! - [`pass`]: a rebuild or full resync flushes the members before it is done (before the
//!   replacement is marked active, or the new journal named).

pub mod pass;
pub mod recovery;

pub use pass::{Pass, PassEnd, PassKind, PassOptions, PassStep, PassSubmit};
pub use recovery::{Outcome, Recovery, RecoveryError, RecoveryOptions, Step, Stripes, Submit};
