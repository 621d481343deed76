//! Deterministic simulation: devices with volatile caches, torn writes and failures; reactors
//! exchanging messages; completions in random order after random delays. One seed replays a run.

pub mod cli;
pub mod disk;
pub mod model;
pub mod rng;
pub mod workload;
pub mod world;

pub use disk::SimDisk;
pub use rng::Rng;
pub use world::{
    CrashImage, JournalTrace, RecordRead, RecoveryReport, SimConfig, SimJournal, SimVolume, World,
};
