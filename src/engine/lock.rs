//! Stripe locks shared by every reactor of a volume.
//!
//! Sharded: a stripe hashes to one of many small shards, so two writers contend only when their
//! stripes share a shard, and no lock is global. A shard holds a handful of stripes at most
//! (queue depth ÷ shards), so it keeps them in a short list scanned linearly: no hashing per
//! lock, and each shard sits on a cache line of its own (reactors locking neighbouring shards
//! do not share lines). A holder that releases hands the stripe straight to
//! the oldest waiter (FIFO per stripe) and tells the caller whom to wake; the wake-up itself travels
//! as a message to the waiter's reactor. Tables keep their capacity, so the steady state allocates
//! nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::backend::Address;

/// A piece waiting for a stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockWaiter {
    /// Channel to wake.
    pub addr: Address,
    /// Piece token inside that channel.
    pub token: u64,
}

#[derive(Default)]
struct Shard {
    /// Stripes currently held (a few at most: see the module comment).
    held: Vec<u64>,
    /// Waiters in arrival order.
    waiters: VecDeque<(u64, LockWaiter)>,
}

/// A shard on a cache line of its own.
#[derive(Default)]
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// The lock table of one volume.
pub struct StripeLocks {
    shards: Box<[Padded]>,
    mask: usize,
}

impl StripeLocks {
    /// A table with `shards` shards (rounded up to a power of two).
    pub fn new(shards: usize) -> StripeLocks {
        let n = shards.max(1).next_power_of_two();
        StripeLocks {
            shards: (0..n).map(|_| Padded::default()).collect(),
            mask: n - 1,
        }
    }

    fn shard(&self, stripe: u64) -> std::sync::MutexGuard<'_, Shard> {
        let i = (stripe.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask;
        // A poisoned shard means a panic while holding it, which aborts the process under SPDK;
        // the table itself is still consistent (no operation panics half-way).
        self.shards[i].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take `stripe` for `waiter`: true when taken now; false when queued (a later `unlock` names
    /// this waiter as the new holder).
    pub fn lock(&self, stripe: u64, waiter: LockWaiter) -> bool {
        let mut s = self.shard(stripe);
        if s.held.contains(&stripe) {
            s.waiters.push_back((stripe, waiter));
            false
        } else {
            s.held.push(stripe);
            true
        }
    }

    /// Release `stripe`. Returns the waiter that now holds it, if any.
    pub fn unlock(&self, stripe: u64) -> Option<LockWaiter> {
        let mut s = self.shard(stripe);
        if let Some(pos) = s.waiters.iter().position(|(st, _)| *st == stripe) {
            let (_, w) = s.waiters.remove(pos).expect("position is in range");
            return Some(w);
        }
        let pos = s.held.iter().position(|&h| h == stripe);
        debug_assert!(pos.is_some(), "unlock of a stripe that is not held");
        if let Some(pos) = pos {
            s.held.swap_remove(pos);
        }
        None
    }

    /// True when `stripe` is held (for tests and scrubbing).
    pub fn is_held(&self, stripe: u64) -> bool {
        self.shard(stripe).held.contains(&stripe)
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
