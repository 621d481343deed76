//! Stripe locks shared by every reactor of a volume.
//!
//! A table of lock words: a stripe hashes to one word, and holding the word is holding the
//! stripe (two stripes that share a word exclude each other too, rarely: the table is far larger
//! than the stripes in flight). The fast path, when no other writer holds or waits for the
//! word, is one compare-and-swap to lock and one to unlock: no mutex, no list. A word holds
//! its holder's stripe + 1 (0: free) and a waiting bit. A locker that finds the word taken
//! queues itself under the mutex of the word's shard and sets the waiting bit, so that the
//! holder's unlocking swap fails and it takes the slow path: under the same mutex it hands the
//! word straight to the oldest waiter (FIFO per word) and tells the caller whom to wake; the
//! wake-up itself travels as a message to the waiter's reactor. Queues start with room for a
//! few waiters (`WAITERS_ROOM`; about 160 KiB for a volume's 1,024 shards) and keep their
//! capacity, so the steady state allocates nothing.

use std::collections::VecDeque;

use super::backend::Address;
use crate::journal::sync::{
    AtomicU64, Mutex, MutexGuard,
    Ordering::{AcqRel, Acquire, Release},
};

/// A piece waiting for a stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockWaiter {
    /// Channel to wake.
    pub addr: Address,
    /// Piece token inside that channel.
    pub token: u64,
}

/// Waiting bit of a lock word: someone is queued for it (its holder unlocks the slow way).
const WAITING: u64 = 1 << 63;

/// Words per mutex shard (the shards only serve lockers that have to wait).
const WORDS_PER_SHARD: usize = 16;

/// Waiters each shard's queue has room for from the start, so that a locker that has to wait
/// allocates nothing (a queue grows only past a peak of more waiters than this in one shard).
/// Random writes meet a taken word rarely, so each of a table's many shards met its first
/// waiter at a different time, long into a steady load: without this room, 60,000 random
/// writes after a warm-up allocated 105 times (`tests/hot_path_alloc.rs`).
const WAITERS_ROOM: usize = 4;

/// Waiters of one shard's words, in arrival order: (word index, stripe, waiter).
#[derive(Default)]
struct Shard {
    waiters: VecDeque<(usize, u64, LockWaiter)>,
}

/// A shard's mutex on a cache line of its own.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// The lock table of one volume.
pub struct StripeLocks {
    words: Box<[AtomicU64]>,
    shards: Box<[Padded]>,
    mask: usize,
    /// Loom control only: a hand-off frees the word instead of giving it to the waiter (who is
    /// still told it holds it). The lock model must then fail; no build but loom's has it.
    #[cfg(loom)]
    control_free_on_handoff: bool,
}

impl StripeLocks {
    /// A table of `words` lock words (rounded up to a power of two, at least one shard's).
    pub fn new(words: usize) -> StripeLocks {
        let n = words.max(WORDS_PER_SHARD).next_power_of_two();
        StripeLocks {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            shards: (0..n / WORDS_PER_SHARD)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        waiters: VecDeque::with_capacity(WAITERS_ROOM),
                    }))
                })
                .collect(),
            mask: n - 1,
            #[cfg(loom)]
            control_free_on_handoff: false,
        }
    }

    fn index(&self, stripe: u64) -> usize {
        (stripe.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A poisoned shard means a panic while holding it, which aborts the process under SPDK;
        // the queue itself is still consistent (no operation panics half-way).
        self.shards[i / WORDS_PER_SHARD]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Take `stripe` for `waiter`: true when taken now; false when queued (a later `unlock` names
    /// this waiter as the new holder).
    pub fn lock(&self, stripe: u64, waiter: LockWaiter) -> bool {
        let i = self.index(stripe);
        let word = &self.words[i];
        let mine = stripe + 1;
        if word.compare_exchange(0, mine, AcqRel, Acquire).is_ok() {
            return true;
        }
        // Taken: queue, and make the holder's unlock take the slow path. Under the shard's
        // mutex, where the holder hands the word over, so it finds us queued.
        let mut s = self.shard(i);
        let mut cur = word.load(Acquire);
        loop {
            if cur == 0 {
                // Released meanwhile (a fast unlock: nobody was waiting).
                match word.compare_exchange(0, mine, AcqRel, Acquire) {
                    Ok(_) => return true,
                    Err(x) => cur = x,
                }
                continue;
            }
            if cur & WAITING != 0 {
                break;
            }
            match word.compare_exchange(cur, cur | WAITING, AcqRel, Acquire) {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
        s.waiters.push_back((i, stripe, waiter));
        false
    }

    /// Release `stripe`. Returns the waiter that now holds it, if any.
    pub fn unlock(&self, stripe: u64) -> Option<LockWaiter> {
        let i = self.index(stripe);
        let word = &self.words[i];
        let mine = stripe + 1;
        let cur = match word.compare_exchange(mine, 0, AcqRel, Acquire) {
            Ok(_) => return None,
            Err(x) => x,
        };
        debug_assert_eq!(cur, mine | WAITING, "unlock of a stripe that is not held");
        // Someone waits: hand the word to the oldest waiter of it. Only the holder changes a
        // word that has its waiting bit set, and waiters set it under this mutex.
        let mut s = self.shard(i);
        let pos = s.waiters.iter().position(|(w, _, _)| *w == i);
        let Some(pos) = pos else {
            debug_assert!(false, "waiting bit without a waiter");
            word.store(0, Release);
            return None;
        };
        let (_, next, w) = s.waiters.remove(pos).expect("position is in range");
        let more = s.waiters.iter().any(|(w, _, _)| *w == i);
        #[cfg(loom)]
        if self.control_free_on_handoff {
            word.store(0, Release);
            return Some(w);
        }
        word.store((next + 1) | if more { WAITING } else { 0 }, Release);
        Some(w)
    }

    /// Address of `stripe`'s lock word, for a prefetch hint only (see
    /// [`crate::engine::Backend::prefetch`]); never dereferenced through it. The table is far
    /// larger than what stays in the nearest caches while full stripes stream through them.
    pub fn word_address(&self, stripe: u64) -> *const u8 {
        (&self.words[self.index(stripe)] as *const AtomicU64).cast()
    }

    /// True when `stripe` is held (for tests).
    pub fn is_held(&self, stripe: u64) -> bool {
        self.words[self.index(stripe)].load(Acquire) & !WAITING == stripe + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn w(token: u64) -> LockWaiter {
        LockWaiter {
            addr: Address {
                reactor: 0,
                volume: 0,
            },
            token,
        }
    }

    #[test]
    fn fifo_handoff() {
        let l = StripeLocks::new(4);
        assert!(l.lock(7, w(1)));
        assert!(!l.lock(7, w(2)));
        assert!(!l.lock(7, w(3)));
        assert!(l.lock(8, w(4)));
        assert_eq!(l.unlock(7), Some(w(2)));
        assert_eq!(l.unlock(7), Some(w(3)));
        assert!(l.is_held(7));
        assert_eq!(l.unlock(7), None);
        assert!(!l.is_held(7));
        assert_eq!(l.unlock(8), None);
    }

    /// A stripe that shares `stripe`'s lock word in `l`.
    fn sharing_word(l: &StripeLocks, stripe: u64) -> u64 {
        (stripe + 1..)
            .find(|&x| l.index(x) == l.index(stripe))
            .expect("a table has finitely many words")
    }

    #[test]
    fn stripes_sharing_a_word_exclude_each_other_in_order() {
        let l = StripeLocks::new(16);
        let other = sharing_word(&l, 7);
        assert!(l.lock(7, w(1)));
        assert!(!l.lock(other, w(2)));
        assert!(!l.lock(7, w(3)));
        assert!(!l.is_held(other));
        // FIFO per word, whichever stripe each waiter wants.
        assert_eq!(l.unlock(7), Some(w(2)));
        assert!(l.is_held(other) && !l.is_held(7));
        assert_eq!(l.unlock(other), Some(w(3)));
        assert!(l.is_held(7));
        assert_eq!(l.unlock(7), None);
        assert!(!l.is_held(7) && !l.is_held(other));
        // Free again: the fast path takes it.
        assert!(l.lock(other, w(4)));
        assert_eq!(l.unlock(other), None);
    }

    #[test]
    fn exclusive_across_threads() {
        // Each thread spins on try-lock semantics: lock, and if queued, wait for the hand-off
        // through a shared mailbox. A counter checks that no two holders overlap.
        let l = Arc::new(StripeLocks::new(2));
        let inside = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let granted: Arc<Vec<std::sync::atomic::AtomicBool>> =
            Arc::new((0..4).map(|_| Default::default()).collect());
        use std::sync::atomic::Ordering::SeqCst;
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (l, inside, granted) = (l.clone(), inside.clone(), granted.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if !l.lock(3, w(t)) {
                            while !granted[t as usize].swap(false, SeqCst) {
                                std::hint::spin_loop();
                            }
                        }
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders at once");
                        inside.fetch_sub(1, SeqCst);
                        if let Some(next) = l.unlock(3) {
                            granted[next.token as usize].store(true, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(!l.is_held(3));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model check of the lock words: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
    use super::*;
    use loom::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use loom::sync::{Arc, Condvar, Mutex};

    fn w(token: u64) -> LockWaiter {
        LockWaiter {
            addr: Address {
                reactor: 0,
                volume: 0,
            },
            token,
        }
    }

    /// Hand-offs delivered: per locker, whether it was told it holds the word (the message a
    /// channel gets), with a condition variable to wait on (loom rules out spinning).
    struct Grants {
        granted: Mutex<[bool; 3]>,
        cv: Condvar,
    }

    /// Lock `stripe` as locker `t` (waiting for the hand-off when queued), check that nobody
    /// else holds the word, unlock and deliver the hand-off.
    fn locker(t: u64, stripe: u64, l: &StripeLocks, inside: &AtomicU32, g: &Grants) {
        if !l.lock(stripe, w(t)) {
            let mut granted = g.granted.lock().unwrap();
            while !granted[t as usize] {
                granted = g.cv.wait(granted).unwrap();
            }
        }
        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders at once");
        inside.fetch_sub(1, SeqCst);
        if let Some(next) = l.unlock(stripe) {
            g.granted.lock().unwrap()[next.token as usize] = true;
            g.cv.notify_all();
        }
    }

    /// Three lockers of one word (two of one stripe, one of a stripe sharing its word), each
    /// taking it fast or waiting for its hand-off, in every interleaving: never two holders,
    /// and every waiter is handed the word (else the model deadlocks).
    fn model(control: bool) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(move || {
            let mut l = StripeLocks::new(16);
            l.control_free_on_handoff = control;
            let other = (6..).find(|&x| l.index(x) == l.index(5)).unwrap();
            let l = Arc::new(l);
            let inside = Arc::new(AtomicU32::new(0));
            let g = Arc::new(Grants {
                granted: Mutex::new([false; 3]),
                cv: Condvar::new(),
            });
            let hs: Vec<_> = [(1, 5), (2, other)]
                .into_iter()
                .map(|(t, s)| {
                    let (l, inside, g) = (l.clone(), inside.clone(), g.clone());
                    loom::thread::spawn(move || locker(t, s, &l, &inside, &g))
                })
                .collect();
            locker(0, 5, &l, &inside, &g);
            for h in hs {
                h.join().unwrap();
            }
            assert!(!l.is_held(5) && !l.is_held(other));
        });
    }

    #[test]
    fn loom_stripe_lock_words() {
        model(false);
    }

    #[test]
    #[should_panic(expected = "two holders at once")]
    fn loom_stripe_lock_control_freeing_on_handoff_fails() {
        model(true);
    }
}
