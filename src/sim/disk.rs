//! A simulated block device: durable blocks, a volatile write cache, in-flight writes that a crash
//! may apply in part, failure.

use std::collections::{BTreeMap, BTreeSet};

use super::rng::Rng;

/// One simulated device.
#[derive(Debug, Clone)]
pub struct SimDisk {
    /// Block size.
    pub bs: usize,
    /// Blocks.
    pub blocks: u64,
    /// Durable contents (absent blocks are zero).
    durable: BTreeMap<u64, Box<[u8]>>,
    /// Written but not flushed (volatile cache only).
    cache: BTreeMap<u64, Box<[u8]>>,
    /// Whether completed writes sit in a volatile cache until a flush.
    pub volatile: bool,
    /// Dead: every I/O fails.
    pub failed: bool,
    /// Its member superblock (written durably, with its own write and flush): what assembly
    /// reads after a restart ([`crate::control::assembly`]).
    pub sb: Option<crate::superblock::MemberSuperblock>,
    /// Its failure is transient: after a power loss it works again (with the contents it had),
    /// and only a failure recorded in the others' superblocks keeps it out.
    pub transient: bool,
    /// Unreadable blocks: a read touching one fails (the device works otherwise); writing the
    /// block makes it readable again (the drive remaps it).
    pub bad: BTreeSet<u64>,
}

impl SimDisk {
    /// A zeroed device.
    pub fn new(bs: usize, blocks: u64, volatile: bool) -> SimDisk {
        SimDisk {
            bs,
            blocks,
            durable: BTreeMap::new(),
            cache: BTreeMap::new(),
            volatile,
            failed: false,
            sb: None,
            transient: false,
            bad: BTreeSet::new(),
        }
    }

    /// Whether a read of `blocks` blocks at `lba` touches an unreadable block.
    pub fn unreadable(&self, lba: u64, blocks: u64) -> bool {
        self.bad.range(lba..lba + blocks).next().is_some()
    }

    /// Whether any of `blocks` blocks at `lba` was ever written (durable or cached; a block
    /// never written reads as zeros).
    pub fn stored(&self, lba: u64, blocks: u64) -> bool {
        let r = lba..lba + blocks;
        self.durable.range(r.clone()).next().is_some() || self.cache.range(r).next().is_some()
    }

    /// Apply a completed write of whole blocks.
    pub fn write(&mut self, lba: u64, data: &[u8]) {
        for (i, chunk) in data.chunks(self.bs).enumerate() {
            let b = lba + i as u64;
            self.bad.remove(&b);
            if self.volatile {
                self.cache.insert(b, chunk.into());
            } else {
                self.durable.insert(b, chunk.into());
            }
        }
    }

    /// Current contents (what a read sees).
    pub fn read(&self, lba: u64, out: &mut [u8]) {
        for (i, chunk) in out.chunks_mut(self.bs).enumerate() {
            let b = lba + i as u64;
            match self.cache.get(&b).or_else(|| self.durable.get(&b)) {
                Some(d) => chunk.copy_from_slice(d),
                None => chunk.fill(0),
            }
        }
    }

    /// Make the cache durable.
    pub fn flush(&mut self) {
        let cache = std::mem::take(&mut self.cache);
        self.durable.extend(cache);
    }

    /// Power loss: each cached block independently survives or not (the cache may have written
    /// any of them back already).
    pub fn crash(&mut self, rng: &mut Rng) {
        if self.failed && self.transient {
            self.failed = false;
            self.transient = false;
        }
        let cache = std::mem::take(&mut self.cache);
        for (b, d) in cache {
            if rng.chance(0.5) {
                self.durable.insert(b, d);
            }
        }
    }

    /// Apply a random subset of the blocks of an interrupted write (a torn write).
    pub fn tear(&mut self, lba: u64, data: &[u8], rng: &mut Rng) {
        for (i, chunk) in data.chunks(self.bs).enumerate() {
            if rng.chance(0.5) {
                self.durable.insert(lba + i as u64, chunk.into());
            }
        }
    }
}
