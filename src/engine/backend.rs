//! The engine's only window on the world: member and journal I/O, messages between reactors, time.
//!
//! A backend is owned by one channel (one volume on one reactor). Requests are fire-and-forget; the
//! runtime later feeds each completion back to the same channel with
//! [`Channel::io_done`](super::Channel::io_done) and each message with
//! [`Channel::message`](super::Channel::message), always on the channel's own thread. SPDK reactors,
//! io_uring threads and the simulator implement it.

use super::buf::Buf;

/// A device the engine talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// Member `i` of the volume.
    Member(u32),
    /// Journal device holding slot `k` (with one journal device both slots map to `Journal(0)`).
    Journal(u32),
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Read `blocks` blocks at `lba` into the buffer.
    Read,
    /// Write `blocks` blocks at `lba` from the buffer.
    Write,
    /// Make every completed write durable (volatile caches flushed).
    Flush,
}

/// One request to a device.
#[derive(Debug)]
pub struct DeviceIo {
    /// Target device.
    pub dev: Device,
    /// Operation.
    pub op: IoOp,
    /// First block (device LBA, in the device's block size).
    pub lba: u64,
    /// Number of blocks (0 for flush).
    pub blocks: u64,
    /// Data buffer (none for flush); the I/O uses `blocks * block_size` bytes from `buf_offset`.
    pub buf: Option<Buf>,
    /// Byte offset of the I/O's data inside `buf`.
    pub buf_offset: usize,
    /// Opaque to the backend; handed back with the completion.
    pub tag: u64,
}

/// Identity of a reactor (a thread that owns channels).
pub type ReactorId = u64;

/// A message between channels of one volume (or volumes sharing a journal) on different reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// The stripe lock a piece waited for is now its own.
    LockGranted {
        /// Waiting piece.
        token: u64,
    },
    /// Journal generation `generation` is durable: waiters of it may go on.
    Durable {
        /// The generation that became durable.
        generation: u64,
    },
    /// Nudge: the journal may have work for this reactor (a flush to start, a timer to run).
    JournalKick,
}

/// Where a message goes: a volume's channel on a reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Reactor owning the channel.
    pub reactor: ReactorId,
    /// Volume number of the channel (unique per journal).
    pub volume: u32,
}

/// The runtime services a channel needs.
pub trait Backend {
    /// Start a device request; its completion comes back later through `Channel::io_done`.
    fn submit(&mut self, io: DeviceIo);
    /// Deliver `msg` to the channel at `to` later, on its own thread (never synchronously).
    fn send(&mut self, to: Address, msg: Msg);
    /// Monotonic time in microseconds.
    fn now_us(&self) -> u64;
    /// [`Backend::now_us`]'s clock a moment ago: never after now, and behind it by at most a
    /// pass of the runtime's event loop (SPDK: when the reactor's current poll began). For
    /// what only needs a time of that precision, where the runtime can give it cheaper than the
    /// clock itself. The default: [`Backend::now_us`].
    fn recent_us(&self) -> u64 {
        self.now_us()
    }
    /// Hint: the memory at `at` is about to be read and written; start fetching it into the
    /// cache without waiting for it. Never dereferences `at` (any address is harmless). The
    /// default does nothing (the simulator).
    fn prefetch(&self, at: *const u8) {
        let _ = at;
    }
    /// `dst = srcs[0] ^ srcs[1] ^ ...`, every source `dst.len()` bytes (as
    /// [`crate::parity::xor_into`], the default). A runtime may bring a faster kernel of the
    /// same result (SPDK: ISA-L's through `spdk_xor_gen`).
    fn xor_into(&self, dst: &mut [u8], srcs: &[&[u8]]) {
        crate::parity::xor_into(dst, srcs);
    }
    /// `dst ^= srcs[0] ^ srcs[1] ^ ...`, in place, every source `dst.len()` bytes (as
    /// [`crate::parity::xor_acc_all`], the default).
    fn xor_acc(&self, dst: &mut [u8], srcs: &[&[u8]]) {
        crate::parity::xor_acc_all(dst, srcs);
    }
    /// `parity ^= old ^ new`, in place (as [`crate::parity::update`], the default).
    fn xor_update(&self, parity: &mut [u8], old: &[u8], new: &[u8]) {
        crate::parity::update(parity, old, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// SPDK thread ids are u64: reactors whose ids differ only above bit 31 are different
    /// addresses (a u32 id would merge them and deliver one channel's messages to the other).
    #[test]
    fn reactor_ids_keep_all_64_bits() {
        let low = Address {
            reactor: 7,
            volume: 0,
        };
        let high = Address {
            reactor: 7 | 1 << 32,
            volume: 0,
        };
        assert_ne!(low, high);
        let mut routes = HashMap::new();
        routes.insert(low, "low");
        routes.insert(high, "high");
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[&high], "high");
        assert_eq!(routes[&low], "low");
        assert_eq!(u64::MAX as ReactorId, u64::MAX);
    }
}
