//! The dirty-stripe journal: on-disk records, mark aggregation with group commit, and
//! the recovery rules.

pub mod aggregator;
#[cfg(all(test, loom))]
mod loom_tests;
pub mod record;
pub(crate) mod sync;

pub use aggregator::{state_shards, state_table_bytes, MAX_STATE_SHARDS};
pub use aggregator::{
    FlushJob, Journal, JournalConfig, JournalMode, JournalStats, JournalVolume, JournalWrite, Mark,
    RecordOutcome,
};
pub use record::{Entry, Record};
