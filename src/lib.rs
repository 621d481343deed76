//! jraid: a RAID-5 engine whose dirty-stripe journal closes the write hole.
//!
//! The core (layout, parity, journal, engine, sim) is safe Rust and runs the same under SPDK, over
//! io_uring and in the deterministic simulator; see DESIGN in the README.
#![deny(unsafe_code)]

pub mod control;
pub mod engine;
pub mod journal;
pub mod layout;
pub mod parity;
pub mod sim;
#[cfg(feature = "spdk")]
pub mod spdk;
pub mod superblock;
#[cfg(feature = "uring")]
pub mod uring;
