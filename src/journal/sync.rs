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
/// Small rings first, one per channel slot (made when a channel registers), and one of the
/// whole bound for what does not fit. The queue is drained at each record, so it rarely holds
/// more than a record's new marks, but a ring position only comes back after a whole lap: in a
/// ring of the whole bound (~173k entries, 4 MiB for the default journal) every push lands on a
/// line untouched for a lap, a cache miss; in a small one (24 KiB) the lines stay near. A ring
/// per channel: reactors listing stripes at the same time do not take turns on one ring's tail
/// (its line would move to the pushing reactor on every push). Entries are a set, so their
/// order across the rings does not matter.
pub(crate) struct MarkQueue<T> {
    /// Per channel slot: its small ring, once the slot was opened ([`MarkQueue::open_slot`]).
    #[cfg(not(loom))]
    near: Box<[std::sync::OnceLock<crossbeam_queue::ArrayQueue<T>>]>,
    /// Slots below this may have a ring.
    #[cfg(not(loom))]
    high: std::sync::atomic::AtomicUsize,
    /// The small ring of pushes without a slot.
    #[cfg(not(loom))]
    shared: crossbeam_queue::ArrayQueue<T>,
    #[cfg(not(loom))]
    far: crossbeam_queue::ArrayQueue<T>,
    #[cfg(loom)]
    q: Mutex<std::collections::VecDeque<T>>,
}

/// Entries of each of [`MarkQueue`]'s small rings.
#[cfg(not(loom))]
const NEAR: usize = 1024;

impl<T> MarkQueue<T> {
    /// A queue of `cap` entries in all, with small rings for channel slots below `slots`.
    pub(crate) fn new(cap: usize, slots: usize) -> Self {
        #[cfg(not(loom))]
        return MarkQueue {
            near: (0..slots).map(|_| std::sync::OnceLock::new()).collect(),
            high: std::sync::atomic::AtomicUsize::new(0),
            shared: crossbeam_queue::ArrayQueue::new(cap.clamp(1, NEAR)),
            far: crossbeam_queue::ArrayQueue::new(cap.max(1)),
        };
        #[cfg(loom)]
        {
            let _ = slots;
            MarkQueue {
                q: Mutex::new(std::collections::VecDeque::with_capacity(cap)),
            }
        }
    }

    /// Give channel slot `slot` its small ring (kept when the slot is given up: entries left in
    /// it are drained like any other). Called when a channel registers, before it pushes: a
    /// drain that follows one of its pushes (the flusher waits for its writer to leave the
    /// generation) then sees the slot below `high`.
    pub(crate) fn open_slot(&self, slot: usize) {
        #[cfg(not(loom))]
        if let Some(r) = self.near.get(slot) {
            r.get_or_init(|| crossbeam_queue::ArrayQueue::new(self.far.capacity().min(NEAR)));
            self.high
                .fetch_max(slot + 1, std::sync::atomic::Ordering::SeqCst);
        }
        #[cfg(loom)]
        let _ = slot;
    }

    /// Queue `v` from channel slot `slot` (`None`: no slot): in its small ring, else in the
    /// large one; gives it back when both are full (never, under the journal's bound on
    /// entries listed or queued).
    pub(crate) fn push(&self, slot: Option<usize>, v: T) -> Result<(), T> {
        #[cfg(not(loom))]
        {
            let near = slot
                .and_then(|s| self.near.get(s))
                .and_then(|r| r.get())
                .unwrap_or(&self.shared);
            near.push(v).or_else(|v| self.far.push(v))
        }
        #[cfg(loom)]
        {
            let _ = slot;
            self.q.lock().unwrap().push_back(v);
            Ok(())
        }
    }

    /// Take every queued entry out, into `f` (pushes racing this one may or may not be taken).
    pub(crate) fn drain(&self, mut f: impl FnMut(T)) {
        #[cfg(not(loom))]
        {
            let high = self.high.load(std::sync::atomic::Ordering::SeqCst);
            for r in self.near[..high.min(self.near.len())].iter() {
                if let Some(r) = r.get() {
                    while let Some(v) = r.pop() {
                        f(v);
                    }
                }
            }
            for q in [&self.shared, &self.far] {
                while let Some(v) = q.pop() {
                    f(v);
                }
            }
        }
        #[cfg(loom)]
        loop {
            // The lock is let go before `f` runs, as a pop at a time did.
            let v = self.q.lock().unwrap().pop_front();
            match v {
                Some(v) => f(v),
                None => break,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::MarkQueue;

    #[test]
    fn a_drain_takes_every_ring_the_shared_one_and_the_overflow() {
        let q = MarkQueue::new(3000, 8);
        q.open_slot(5);
        // Slot 5's ring, then the large one once it is full; slot 2 never opened: the shared
        // ring, then the large one.
        for i in 0..1500u32 {
            q.push(Some(5), i).unwrap();
        }
        for i in 1500..2700u32 {
            q.push(if i % 2 == 0 { Some(2) } else { None }, i).unwrap();
        }
        let mut got = Vec::new();
        q.drain(|v| got.push(v));
        got.sort_unstable();
        assert_eq!(got, (0..2700).collect::<Vec<_>>());
        let mut again = Vec::new();
        q.drain(|v| again.push(v));
        assert!(again.is_empty());
    }
}
