//! Synchronisation primitives of the aggregator and of the engine's stripe locks: std's
//! normally, loom's under `--cfg loom` so the lock-free protocols can be model-checked
//! (`RUSTFLAGS="--cfg loom" cargo test --lib loom`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Wait a moment inside a spin loop.
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Bounded multi-producer queue of marks: crossbeam's lock-free `ArrayQueue`s, or a mutexed
/// deque under loom (the queue is crossbeam's to prove; the protocol around it is ours).
///
/// Two of them: a small one first, and one of the whole bound for what does not fit. The queue
/// is drained at each record, so it rarely holds more than a record's new marks, but a ring
/// position only comes back after a whole lap: in a ring of the whole bound (~173k entries, 4 MiB
/// for the default journal) every push lands on a line untouched for a lap, a cache miss; in
/// the small one (24 KiB) the lines stay near. Entries are a set, so their order across the two
/// does not matter.
pub(crate) struct MarkQueue<T> {
    #[cfg(not(loom))]
    near: crossbeam_queue::ArrayQueue<T>,
    #[cfg(not(loom))]
    far: crossbeam_queue::ArrayQueue<T>,
    #[cfg(loom)]
    q: Mutex<std::collections::VecDeque<T>>,
}

/// Entries of [`MarkQueue`]'s small ring.
#[cfg(not(loom))]
const NEAR: usize = 1024;

impl<T> MarkQueue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        #[cfg(not(loom))]
        return MarkQueue {
            near: crossbeam_queue::ArrayQueue::new(cap.clamp(1, NEAR)),
            far: crossbeam_queue::ArrayQueue::new(cap.max(1)),
        };
        #[cfg(loom)]
        return MarkQueue {
            q: Mutex::new(std::collections::VecDeque::with_capacity(cap)),
        };
    }

    /// Queue `v`: in the small ring, else in the large one; gives it back when both are full
    /// (never, under the journal's bound on entries listed or queued).
    pub(crate) fn push(&self, v: T) -> Result<(), T> {
        #[cfg(not(loom))]
        return self.near.push(v).or_else(|v| self.far.push(v));
        #[cfg(loom)]
        {
            self.q.lock().unwrap().push_back(v);
            Ok(())
        }
    }

    pub(crate) fn pop(&self) -> Option<T> {
        #[cfg(not(loom))]
        return self.near.pop().or_else(|| self.far.pop());
        #[cfg(loom)]
        return self.q.lock().unwrap().pop_front();
    }
}
