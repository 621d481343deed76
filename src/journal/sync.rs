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

/// Bounded multi-producer queue of marks: crossbeam's lock-free `ArrayQueue`, or a mutexed
/// deque under loom (the queue is crossbeam's to prove; the protocol around it is ours).
pub(crate) struct MarkQueue<T> {
    #[cfg(not(loom))]
    q: crossbeam_queue::ArrayQueue<T>,
    #[cfg(loom)]
    q: Mutex<std::collections::VecDeque<T>>,
}

impl<T> MarkQueue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        #[cfg(not(loom))]
        return MarkQueue {
            q: crossbeam_queue::ArrayQueue::new(cap),
        };
        #[cfg(loom)]
        return MarkQueue {
            q: Mutex::new(std::collections::VecDeque::with_capacity(cap)),
        };
    }

    pub(crate) fn push(&self, v: T) -> Result<(), T> {
        #[cfg(not(loom))]
        return self.q.push(v);
        #[cfg(loom)]
        {
            self.q.lock().unwrap().push_back(v);
            Ok(())
        }
    }

    pub(crate) fn pop(&self) -> Option<T> {
        #[cfg(not(loom))]
        return self.q.pop();
        #[cfg(loom)]
        return self.q.lock().unwrap().pop_front();
    }
}
