//! Synchronisation primitives of the aggregator and of the engine's stripe locks: std's
//! normally, loom's under `--cfg loom` so the lock-free protocols can be model-checked
//! (`RUSTFLAGS="--cfg loom" cargo test --lib loom`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// The lock of a journal state shard ([`super::aggregator`]): held for a few instructions
/// (a look-up in four states and an update), taken by every write two or three times. A spin
/// lock: taking it is one compare-exchange and releasing it a plain release store, where std's
/// mutex releases with a second read-modify-write (which waits for every store before it to
/// reach the cache) and checks for poisoning on both sides. Its flag is the first byte, in the
/// shard's first cache line with the states a write looks at. A holder descheduled meanwhile
/// (the io_uring runtime's reactors are ordinary threads) leaves a waiter spinning until it
/// runs again: with a hold of a few instructions that is rare, and costs time only. Loom's
/// mutex under loom.
#[cfg(not(loom))]
pub(crate) type ShardLock<T> = ::spin::mutex::SpinMutex<T>;
/// A held [`ShardLock`].
#[cfg(not(loom))]
pub(crate) type ShardGuard<'a, T> = ::spin::mutex::SpinMutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type ShardLock<T> = loom::sync::Mutex<T>;
#[cfg(loom)]
pub(crate) type ShardGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

/// Take a [`ShardLock`].
#[cfg(not(loom))]
pub(crate) fn lock_shard<T>(m: &ShardLock<T>) -> ShardGuard<'_, T> {
    m.lock()
}

/// Take a [`ShardLock`].
#[cfg(loom)]
pub(crate) fn lock_shard<T>(m: &ShardLock<T>) -> ShardGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait a moment inside a spin loop.
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Bounded multi-producer queue of marks.
///
/// Small rings first, one per channel slot (made when a channel registers), and one of the
/// whole bound for what does not fit. The queue is drained at each record, so it rarely holds
/// more than a record's new marks, but a ring position only comes back after a whole lap: in a
/// ring of the whole bound (~173k entries, 4 MiB for the default journal) every push lands on a
/// line untouched for a lap, a cache miss; in a small one (24 KiB) the lines stay near. A ring
/// per channel: reactors listing stripes at the same time do not take turns on one ring's tail
/// (its line would move to the pushing reactor on every push). Entries are a set, so their
/// order across the rings does not matter.
///
/// A channel slot's ring has one producer, the channel registered in the slot, and one consumer
/// at a time, a drain (under the journal's record lock): a [`SlotRing`], whose push is two plain
/// stores and a release store of its tail, where a multi-producer ring's takes a
/// compare-exchange. Its protocol is ours, so loom checks it as it runs here
/// (`loom_slot_ring_*`). The shared ring and the large one take pushes from any thread: they are
/// crossbeam's lock-free `ArrayQueue`s, or mutexed deques of the same bound under loom (each is
/// crossbeam's to prove). Which rings exist, and which of them a drain visits (`open_slot`,
/// `high`, `push`, `drain`), is the same code in both, so the loom models check it
/// (`loom_a_channel_registering_during_a_flush_has_its_marks_drained`).
pub(crate) struct MarkQueue<T: Words> {
    /// Per channel slot: its small ring, once the slot was opened ([`MarkQueue::open_slot`]).
    near: Box<[Once<SlotRing<T>>]>,
    /// Slots below this may have a ring.
    high: AtomicUsize,
    /// The small ring of pushes without a slot.
    shared: Ring<T>,
    /// The ring of the whole bound, for what a small ring has no room for.
    far: Ring<T>,
}

/// Entries of each of [`MarkQueue`]'s small rings.
const NEAR: usize = 1024;

impl<T: Words> MarkQueue<T> {
    /// A queue of `cap` entries in all, with small rings for channel slots below `slots`.
    pub(crate) fn new(cap: usize, slots: usize) -> Self {
        MarkQueue {
            near: (0..slots).map(|_| Once::new()).collect(),
            high: AtomicUsize::new(0),
            shared: Ring::new(cap.clamp(1, NEAR)),
            far: Ring::new(cap.max(1)),
        }
    }

    /// Give channel slot `slot` its small ring (kept when the slot is given up: entries left in
    /// it are drained like any other). Called when a channel registers, before it pushes: a
    /// drain that follows one of its pushes (the flusher waits for its writer to leave the
    /// generation) then sees the slot below `high`.
    pub(crate) fn open_slot(&self, slot: usize) {
        if let Some(r) = self.near.get(slot) {
            r.get_or_init(|| SlotRing::new(self.far.capacity().min(NEAR)));
            self.high.fetch_max(slot + 1, Ordering::SeqCst);
        }
    }

    /// Highest slot opened, plus one: a drain visits the rings below it.
    pub(crate) fn high(&self) -> usize {
        self.high.load(Ordering::SeqCst)
    }

    /// Queue `v` from channel slot `slot` (`None`: no slot): in its small ring, else in the
    /// large one; gives it back when both are full (never, under the journal's bound on
    /// entries listed or queued). Only the channel registered in `slot` pushes with it (its
    /// ring has that one producer).
    pub(crate) fn push(&self, slot: Option<usize>, v: T) -> Result<(), T> {
        let near = match slot.and_then(|s| self.near.get(s)).and_then(|r| r.get()) {
            Some(r) => r.push(v),
            None => self.shared.push(v),
        };
        near.or_else(|v| self.far.push(v))
    }

    /// Take every queued entry out, into `f` (pushes racing this one may or may not be taken).
    pub(crate) fn drain(&self, f: impl FnMut(T)) {
        self.drain_below(self.high(), f)
    }

    /// [`MarkQueue::drain`], visiting the slot rings below `high` only (the caller read
    /// [`MarkQueue::high`] after every push it must take; a loom control reads it too early).
    pub(crate) fn drain_below(&self, high: usize, mut f: impl FnMut(T)) {
        for r in self.near[..high.min(self.near.len())].iter() {
            if let Some(r) = r.get() {
                r.drain(&mut f);
            }
        }
        for q in [&self.shared, &self.far] {
            while let Some(v) = q.pop() {
                f(v);
            }
        }
    }
}

/// What a [`SlotRing`] holds: a value kept as two words.
pub(crate) trait Words: Copy {
    /// The value as two words.
    fn to_words(self) -> [u64; 2];
    /// The value back from [`Words::to_words`]'s words.
    fn from_words(w: [u64; 2]) -> Self;
}

/// An index of a [`SlotRing`], alone on its cache line(s): the producer writes the tail on
/// every push, a drain writes the head once.
#[repr(align(128))]
struct Index(AtomicUsize);

/// A bounded ring with one producer and one consumer at a time (a channel slot's ring of
/// [`MarkQueue`]). Positions count up; position `p` is slot `p & mask`.
///
/// The producer writes an entry's words, then publishes it with a release store of the tail;
/// a drain reads the tail with acquire ordering, so it sees the words of every entry below it,
/// then gives the slots back with a release store of the head, which the producer reads with
/// acquire ordering before it writes a slot again. Only the producer writes the tail and only
/// a drain writes the head, so neither needs a read-modify-write. A new producer of the slot
/// (a channel registering after the last one left) and the next drain follow the last one
/// through a lock (the journal's channel table, its record lock), which orders them.
pub(crate) struct SlotRing<T> {
    slots: Box<[[AtomicU64; 2]]>,
    mask: usize,
    /// Next position the producer writes.
    tail: Index,
    /// Next position a drain reads.
    head: Index,
    /// Loom control: publish an entry before writing its words (a drain may read a slot's old
    /// words).
    #[cfg(loom)]
    pub(crate) control_publish_first: bool,
    _values: std::marker::PhantomData<T>,
}

impl<T: Words> SlotRing<T> {
    /// A ring of `cap` entries rounded down to a power of two (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        let n = if cap <= 1 {
            1
        } else {
            1 << (usize::BITS - 1 - cap.leading_zeros())
        };
        SlotRing {
            slots: (0..n)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            mask: n - 1,
            tail: Index(AtomicUsize::new(0)),
            head: Index(AtomicUsize::new(0)),
            #[cfg(loom)]
            control_publish_first: false,
            _values: std::marker::PhantomData,
        }
    }

    /// Entries the ring holds at most.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Queue `v` (the ring's one producer); gives it back when the ring is full.
    pub(crate) fn push(&self, v: T) -> Result<(), T> {
        let t = self.tail.0.load(Ordering::Relaxed);
        if t.wrapping_sub(self.head.0.load(Ordering::Acquire)) > self.mask {
            return Err(v);
        }
        let slot = &self.slots[t & self.mask];
        #[cfg(loom)]
        if self.control_publish_first {
            self.tail.0.store(t.wrapping_add(1), Ordering::Release);
        }
        let w = v.to_words();
        slot[0].store(w[0], Ordering::Relaxed);
        slot[1].store(w[1], Ordering::Relaxed);
        #[cfg(loom)]
        if self.control_publish_first {
            return Ok(());
        }
        self.tail.0.store(t.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Take every entry published so far out, into `f` (one drain at a time).
    pub(crate) fn drain(&self, mut f: impl FnMut(T)) {
        let h = self.head.0.load(Ordering::Relaxed);
        let t = self.tail.0.load(Ordering::Acquire);
        let mut p = h;
        while p != t {
            let slot = &self.slots[p & self.mask];
            f(T::from_words([
                slot[0].load(Ordering::Relaxed),
                slot[1].load(Ordering::Relaxed),
            ]));
            p = p.wrapping_add(1);
        }
        self.head.0.store(t, Ordering::Release);
    }
}

/// A bounded multi-producer multi-consumer ring.
#[cfg(not(loom))]
struct Ring<T>(crossbeam_queue::ArrayQueue<T>);

#[cfg(not(loom))]
impl<T> Ring<T> {
    fn new(cap: usize) -> Self {
        Ring(crossbeam_queue::ArrayQueue::new(cap))
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
    fn push(&self, v: T) -> Result<(), T> {
        self.0.push(v)
    }
    fn pop(&self) -> Option<T> {
        self.0.pop()
    }
}

/// Under loom: a mutexed deque of the same bound (the lock is let go before the entry is used).
#[cfg(loom)]
struct Ring<T> {
    q: Mutex<std::collections::VecDeque<T>>,
    cap: usize,
}

#[cfg(loom)]
impl<T> Ring<T> {
    fn new(cap: usize) -> Self {
        Ring {
            q: Mutex::new(std::collections::VecDeque::new()),
            cap,
        }
    }
    fn capacity(&self) -> usize {
        self.cap
    }
    fn push(&self, v: T) -> Result<(), T> {
        let mut q = self.q.lock().unwrap();
        if q.len() == self.cap {
            return Err(v);
        }
        q.push_back(v);
        Ok(())
    }
    fn pop(&self) -> Option<T> {
        self.q.lock().unwrap().pop_front()
    }
}

/// A cell set once: std's `OnceLock`.
#[cfg(not(loom))]
struct Once<T>(std::sync::OnceLock<T>);

#[cfg(not(loom))]
impl<T> Once<T> {
    fn new() -> Self {
        Once(std::sync::OnceLock::new())
    }
    fn get(&self) -> Option<&T> {
        self.0.get()
    }
    fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }
}

/// Under loom (which has no `OnceLock`): the value is made up front, and is visible once a flag
/// set with release ordering (as `OnceLock` sets its state) is read with acquire ordering (as
/// its `get` reads it).
#[cfg(loom)]
struct Once<T> {
    set: AtomicBool,
    v: std::sync::OnceLock<T>,
    init: Mutex<()>,
}

#[cfg(loom)]
impl<T> Once<T> {
    fn new() -> Self {
        Once {
            set: AtomicBool::new(false),
            v: std::sync::OnceLock::new(),
            init: Mutex::new(()),
        }
    }
    fn get(&self) -> Option<&T> {
        if self.set.load(Ordering::Acquire) {
            self.v.get()
        } else {
            None
        }
    }
    fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        let _g = self.init.lock().unwrap();
        let v = self.v.get_or_init(f);
        self.set.store(true, Ordering::Release);
        v
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{MarkQueue, SlotRing, Words};

    impl Words for u32 {
        fn to_words(self) -> [u64; 2] {
            [u64::from(self), !u64::from(self)]
        }
        fn from_words(w: [u64; 2]) -> Self {
            assert_eq!(w[1], !w[0], "the two words of one entry");
            w[0] as u32
        }
    }

    #[test]
    fn a_slot_ring_holds_its_bound_and_goes_round_in_order() {
        let r = SlotRing::<u32>::new(6);
        assert_eq!(r.capacity(), 4, "rounded down to a power of two");
        let mut next = 0u32;
        let mut got = Vec::new();
        // Many laps, drained at every fill level: the positions wrap round the slots.
        for round in 0..40u32 {
            let n = round % 6;
            let mut pushed = 0;
            for _ in 0..n {
                if r.push(next + pushed).is_ok() {
                    pushed += 1;
                } else {
                    assert_eq!(pushed, 4, "refused with room left");
                    break;
                }
            }
            r.drain(|v| got.push(v));
            next += pushed;
        }
        assert_eq!(got, (0..next).collect::<Vec<_>>());
        assert!(next > 40);
    }

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
