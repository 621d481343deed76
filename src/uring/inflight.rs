//! The requests a reactor has handed to the kernel, parked until their completions arrive.
//!
//! A parked entry's buffers belong to the kernel from the moment its SQE is pushed until its CQE
//! is reaped: the kernel may read or write them at any time in between, whatever the reactor
//! thread does. [`InFlight`] therefore never frees a parked entry. Dropped with entries still
//! parked, it
//!
//! - leaks them on an orderly exit (a stop whose grace period ran out, a ring that failed): the
//!   thread ends, the kernel finishes or cancels the requests into memory nobody reuses;
//! - aborts the process when the drop comes from a panic unwinding the reactor thread: the panic
//!   left the reactor's channels half way through an update of state other reactors share
//!   (stripe locks, journal marks), so the process must not go on serving; the journal makes the
//!   next start resync whatever was in flight.

use std::io::Write;

/// What becomes of the parked entries when an [`InFlight`] is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// Nothing parked: free everything.
    Free,
    /// Entries parked, orderly exit: leak them.
    Leak,
    /// Entries parked while a panic unwinds: abort the process.
    Abort,
}

/// The decision [`InFlight`]'s drop takes, given the entries still parked and whether the thread
/// is unwinding from a panic.
pub(super) fn exit(parked: usize, panicking: bool) -> Exit {
    match (parked, panicking) {
        (0, _) => Exit::Free,
        (_, false) => Exit::Leak,
        (_, true) => Exit::Abort,
    }
}

/// A slab of parked requests, indexed by the `user_data` of their SQEs.
pub(super) struct InFlight<T> {
    /// Reactor index, for the messages of [`Drop`].
    reactor: u32,
    /// Entries by index; `None` marks a free index.
    slots: Vec<Option<T>>,
    /// Free indexes, reused before the slab grows.
    free: Vec<usize>,
    /// Entries parked.
    parked: usize,
}

impl<T> InFlight<T> {
    /// An empty slab of reactor `reactor`.
    pub(super) fn new(reactor: u32) -> InFlight<T> {
        InFlight {
            reactor,
            slots: Vec::new(),
            free: Vec::new(),
            parked: 0,
        }
    }

    /// Park `entry`; returns its index (the `user_data` of its SQE).
    pub(super) fn park(&mut self, entry: T) -> usize {
        self.parked += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(entry);
                i
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        }
    }

    /// The entry parked at `idx`, if any, to update (not its buffers: the kernel owns those).
    pub(super) fn get_mut(&mut self, idx: usize) -> Option<&mut T> {
        self.slots.get_mut(idx).and_then(Option::as_mut)
    }

    /// Take the entry at `idx` back: its CQE arrived (or its SQE never reached the ring).
    pub(super) fn unpark(&mut self, idx: usize) -> Option<T> {
        let entry = self.slots.get_mut(idx)?.take()?;
        self.free.push(idx);
        self.parked -= 1;
        Some(entry)
    }

    /// Entries parked.
    pub(super) fn parked(&self) -> usize {
        self.parked
    }
}

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        // Count again rather than trust `parked`: a panic may have come between the two.
        let parked = self.slots.iter().filter(|s| s.is_some()).count();
        match exit(parked, std::thread::panicking()) {
            Exit::Free => {}
            Exit::Leak => {
                // Leak first: the message may fail, the leak must not.
                std::mem::forget(std::mem::take(&mut self.slots));
                let _ = writeln!(
                    std::io::stderr(),
                    "jraid: reactor {} exits with {parked} device I/O in flight; their buffers \
                     are leaked, not freed, since the kernel may still use them",
                    self.reactor
                );
            }
            Exit::Abort => {
                let _ = writeln!(
                    std::io::stderr(),
                    "jraid: reactor {} panicked with {parked} device I/O in flight; aborting, \
                     since unwinding would free buffers the kernel still owns",
                    self.reactor
                );
                std::process::abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn exit_decision() {
        assert_eq!(exit(0, false), Exit::Free);
        assert_eq!(exit(0, true), Exit::Free);
        assert_eq!(exit(3, false), Exit::Leak);
        assert_eq!(exit(1, true), Exit::Abort);
    }

    #[test]
    fn indexes_are_reused_and_unknown_ones_are_none() {
        let mut s = InFlight::new(0);
        let a = s.park(10);
        let b = s.park(11);
        assert_eq!(s.parked(), 2);
        assert_eq!(s.unpark(a), Some(10));
        assert_eq!(s.unpark(a), None);
        assert_eq!(s.unpark(99), None);
        assert_eq!(s.get_mut(b), Some(&mut 11));
        assert_eq!(s.park(12), a);
        assert_eq!(s.parked(), 2);
        s.unpark(a);
        s.unpark(b);
    }

    #[test]
    fn drop_outside_a_panic_leaks_parked_entries() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut s = InFlight::new(0);
        let done = s.park(Counted(drops.clone()));
        s.park(Counted(drops.clone()));
        drop(s.unpark(done));
        assert_eq!(drops.load(SeqCst), 1);
        drop(s);
        assert_eq!(drops.load(SeqCst), 1, "a parked entry was freed");
    }

    /// Set in the child process of [`panic_with_parked_entries_aborts`].
    const CHILD: &str = "JRAID_INFLIGHT_PANIC_CHILD";

    #[test]
    #[ignore = "run as a child process by panic_with_parked_entries_aborts"]
    fn child_panics_with_a_parked_entry() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let mut s = InFlight::new(5);
        s.park(vec![0u8; 4096]);
        panic!("test panic with an entry parked");
    }

    #[test]
    fn panic_with_parked_entries_aborts() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "uring::inflight::tests::child_panics_with_a_parked_entry",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the child test");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGABRT),
            "the child unwound instead of aborting ({}); stderr:\n{err}",
            out.status
        );
        assert!(
            err.contains("reactor 5 panicked with 1 device I/O in flight"),
            "stderr:\n{err}"
        );
    }
}
