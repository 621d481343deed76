//! The engine's [`Backend`] on an SPDK reactor: member and journal I/O through this thread's
//! bdev channels, messages through `spdk_thread_send_msg`, time from one process-wide clock.
//!
//! Buffers: the engine's [`Buf`]s are ordinary page-aligned heap memory. Malloc, AIO, uring,
//! delay, error and NVMe/TCP bdevs take them as they are. Devices that need memory the SPDK env
//! can translate (NVMe PCIe, RDMA) get a bounce buffer from the channel's [`DmaPool`] when
//! the engine's buffer is not translatable (see [`super::dma`]).
//!
//! A user write with a single segment is lent to the engine as it is ([`crate::engine::Lent`],
//! see `channel.rs`): data strips the write covers whole go from the caller's memory straight to
//! the members (SPDK's own buffers are DMA memory, so NVMe needs no bounce either). Other writes,
//! and every read, go through one copy into or out of an engine buffer.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

use spdk_sys as sys;

use super::base::{submit_blocks, BaseBdev, ENOMEM};
use super::channel::{pump, reap_if_dead, ChanCtx, Routes};
use super::dma::{self, DmaBuf, DmaPool};
use super::ffi::{self, guard};
use crate::engine::{Address, Backend, Buf, Device, DeviceIo, IoOp, Msg};

/// One device as seen from one reactor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DevChan {
    /// Open descriptor (owned by the volume or journal).
    pub desc: *mut sys::spdk_bdev_desc,
    /// The bdev.
    pub bdev: *mut sys::spdk_bdev,
    /// This reactor's channel to it (owned by this backend).
    pub ch: *mut sys::spdk_io_channel,
    /// Bytes per block.
    pub block_size: u32,
    /// Size in blocks (flushes cover the whole bdev).
    pub num_blocks: u64,
    /// I/O needs memory the SPDK env can translate (bounce the engine's buffers).
    pub dma: bool,
    /// Where its block 0 is on the bdev (a window: [`BaseBdev::window`]).
    pub offset: u64,
}

/// This reactor's channel to one device, and what keeps it safe to put.
///
/// The lifetime rule of the adapter lives here: a channel is put only when no I/O issued
/// through it is in flight (every completion, and every queued ENOMEM retry, still uses it),
/// on the thread that got it; and it holds the device's [`BaseBdev`] handle, so the
/// descriptor closes only after the last channel to it is put. A slot taken out of service
/// while I/O is in flight ([`SpdkBackend::retire`]) waits in `retiring` until its count drains.
/// Boxed: device I/Os point at their slot.
pub(crate) struct DevSlot {
    /// The raw handles.
    pub dev: DevChan,
    /// Device I/Os in flight (or queued for a retry) through this channel.
    inflight: u64,
    /// Taken out of service: put the channel when `inflight` reaches zero.
    retired: bool,
    /// Keeps the descriptor open.
    _hold: BaseBdev,
}

impl DevSlot {
    /// This thread's channel to `b` (`None` when SPDK has no channel for us).
    pub fn open(b: &BaseBdev) -> Option<Box<DevSlot>> {
        let ch = b.get_channel();
        (!ch.is_null()).then(|| {
            Box::new(DevSlot {
                dev: DevChan {
                    desc: b.desc(),
                    bdev: b.bdev(),
                    ch,
                    block_size: b.block_size,
                    num_blocks: b.num_blocks,
                    dma: b.dma,
                    offset: b.offset_blocks,
                },
                inflight: 0,
                retired: false,
                _hold: b.clone(),
            })
        })
    }

    /// Same device (descriptor) as `b`?
    pub fn is(&self, b: &BaseBdev) -> bool {
        self.dev.desc == b.desc()
    }
}

impl Drop for DevSlot {
    fn drop(&mut self) {
        debug_assert_eq!(self.inflight, 0, "device channel put with I/O in flight");
        // SAFETY: got on this thread by `open` (slots never leave their backend's thread), and
        // nothing is in flight on it: slots are dropped only by `retire`/`finish` at zero, or
        // by `put_channels` once the whole backend has drained.
        unsafe { sys::spdk_put_io_channel(self.dev.ch) };
    }
}

/// A device I/O in flight; boxed so SPDK can hold its address, recycled through a free list.
struct DevIo {
    /// The channel context whose engine asked for it.
    owner: *mut ChanCtx,
    /// Engine tag.
    tag: u64,
    op: IoOp,
    lba: u64,
    blocks: u64,
    /// The slot of the channel it goes through (alive while this I/O is counted in it).
    slot: *mut DevSlot,
    /// The single segment SPDK reads or writes.
    iov: sys::iovec,
    /// The engine's buffer, handed back with the completion.
    buf: Option<Buf>,
    /// Where the segment starts in `buf`.
    buf_offset: usize,
    /// The bounce buffer `iov` points into, when the device needs DMA memory.
    bounce: Option<DmaBuf>,
    /// The device needs DMA memory and the buffer is not: bounce before starting.
    needs_bounce: bool,
    /// Queue entry for `spdk_bdev_queue_io_wait` after -ENOMEM.
    wait: sys::spdk_bdev_io_wait_entry,
    /// The user read this device read serves directly ([`SpdkBackend::submit_direct_read`]);
    /// null for the engine's I/O.
    user: *mut sys::spdk_bdev_io,
    /// The member of a direct user read.
    member: u32,
}

impl DevIo {
    fn boxed() -> Box<DevIo> {
        Box::new(DevIo {
            owner: std::ptr::null_mut(),
            tag: 0,
            op: IoOp::Flush,
            lba: 0,
            blocks: 0,
            slot: std::ptr::null_mut(),
            iov: sys::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            buf: None,
            buf_offset: 0,
            bounce: None,
            needs_bounce: false,
            wait: sys::spdk_bdev_io_wait_entry::default(),
            user: std::ptr::null_mut(),
            member: 0,
        })
    }
}

/// The backend of one channel.
pub(crate) struct SpdkBackend {
    /// Per member: this reactor's channel, `None` once the member is gone.
    pub members: Vec<Option<Box<DevSlot>>>,
    /// This reactor's channel to each journal device (by index in the pair), `None` once it
    /// is gone.
    pub journal: Vec<Option<Box<DevSlot>>>,
    /// Slots taken out of service with I/O still in flight on them.
    #[allow(clippy::vec_box)]
    retiring: Vec<Box<DevSlot>>,
    /// Where the channels of every volume on the journal live (journal messages).
    pub routes: Arc<Routes>,
    /// Where the channels of this volume live (stripe-lock messages): unlike `routes`, it
    /// never changes, so no lock grant is lost while channels move to a new journal.
    pub vol_routes: Arc<Routes>,
    /// The channel context that owns this backend (set right after it is boxed).
    pub owner: *mut ChanCtx,
    /// Requests that failed at submission: fed back as failed completions by `pump`.
    pub deferred: Vec<(u64, Option<Buf>)>,
    /// Direct user reads that ended: (user bdev_io, member, success, its lent buffer), for
    /// `pump`.
    pub direct_done: Vec<(*mut sys::spdk_bdev_io, u32, bool, Option<Buf>)>,
    /// Direct user reads started and not yet completed or handed to the engine (a reset waits
    /// for them as for the engine's requests).
    pub direct_inflight: u64,
    /// Counted device I/Os waiting for memory (a bounce buffer, a bdev_io).
    #[allow(clippy::vec_box)]
    parked: Vec<Box<DevIo>>,
    /// Device I/O in flight.
    pub inflight: u64,
    /// Bounce buffers for devices that need DMA memory.
    pub dma: DmaPool,
    /// Device I/Os that went through a bounce buffer.
    pub bounced: u64,
    /// Recycled I/O contexts (boxed: SPDK holds their addresses while in flight).
    #[allow(clippy::vec_box)]
    free: Vec<Box<DevIo>>,
}

impl SpdkBackend {
    /// A backend over these channels.
    pub fn new(
        members: Vec<Option<Box<DevSlot>>>,
        journal: Vec<Option<Box<DevSlot>>>,
        routes: Arc<Routes>,
        vol_routes: Arc<Routes>,
    ) -> Self {
        SpdkBackend {
            members,
            journal,
            retiring: Vec::new(),
            parked: Vec::new(),
            routes,
            vol_routes,
            owner: std::ptr::null_mut(),
            deferred: Vec::new(),
            direct_done: Vec::new(),
            direct_inflight: 0,
            inflight: 0,
            dma: DmaPool::default(),
            bounced: 0,
            free: Vec::new(),
        }
    }

    /// Put back every device channel (on the owning thread, once nothing is in flight).
    pub fn put_channels(&mut self) {
        debug_assert_eq!(self.inflight, 0);
        for d in self.members.iter_mut() {
            drop(d.take());
        }
        for d in self.journal.iter_mut() {
            drop(d.take());
        }
        self.retiring.clear();
    }

    /// Start a counted device I/O: bounce it if it needs DMA memory, submit it. What cannot
    /// start for want of memory (no bounce buffer, no bdev_io and no way to wait for one) is
    /// parked and retried by [`SpdkBackend::retry_parked`]: transient shortage is never an I/O
    /// error (which would fail a member or the journal). Only a real submission error fails it.
    fn launch(&mut self, mut d: Box<DevIo>) {
        if d.needs_bounce && d.bounce.is_none() {
            let len = d.iov.iov_len;
            let Some(mut bounce) = self.dma.take(len) else {
                if self.parked.is_empty() {
                    ffi::warnlog!("no DMA memory for a {len}-byte bounce buffer: I/O waits");
                }
                self.parked.push(d);
                return;
            };
            if d.op == IoOp::Write {
                // SAFETY: `iov` describes `len` bytes of the buffer `d` owns.
                let seg = unsafe { std::slice::from_raw_parts(d.iov.iov_base as *const u8, len) };
                bounce.slice_mut(len).copy_from_slice(seg);
            }
            d.iov.iov_base = bounce.as_mut_ptr();
            d.bounce = Some(bounce);
            self.bounced += 1;
        }
        let raw = Box::into_raw(d);
        // SAFETY: `raw` is a boxed DevIo counted in its slot (so its channel is alive); the
        // channel was got on this thread (backends never leave their thread) and `iov` points
        // into the buffer (or bounce buffer) the box owns.
        let rc = unsafe { start(raw) };
        // SAFETY: as above; on -ENOMEM the box stays alive until the retry.
        if rc == 0 || (rc == -ENOMEM && unsafe { queue_retry(raw) }) {
            return;
        }
        // SAFETY: the I/O did not start, so SPDK holds no reference to the box.
        let d = unsafe { Box::from_raw(raw) };
        if rc == -ENOMEM {
            self.parked.push(d);
            return;
        }
        self.fail_unstarted(d);
    }

    /// A counted device I/O that could not start: fail it (after this call returns).
    fn fail_unstarted(&mut self, mut d: Box<DevIo>) {
        if let Some(bounce) = d.bounce.take() {
            self.dma.give(bounce);
        }
        self.inflight -= 1;
        let slot = std::mem::replace(&mut d.slot, std::ptr::null_mut());
        // SAFETY: counted I/Os keep their slot alive.
        unsafe {
            (*slot).inflight -= 1;
            if (*slot).retired && (*slot).inflight == 0 {
                self.retiring.retain(|s| !std::ptr::eq(&**s, slot));
            }
        }
        if d.user.is_null() {
            self.deferred.push((d.tag, d.buf.take()));
        } else {
            self.direct_done
                .push((d.user, d.member, false, d.buf.take()));
        }
        self.free.push(d);
    }

    /// Try again what waits for memory (from the channel's tick and after completions).
    pub fn retry_parked(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        for d in std::mem::take(&mut self.parked) {
            self.launch(d);
        }
    }

    /// Take a device channel out of service: put now when nothing is in flight on it, else
    /// when its last I/O completes.
    pub fn retire(&mut self, mut slot: Box<DevSlot>) {
        if slot.inflight > 0 {
            slot.retired = true;
            self.retiring.push(slot);
        }
    }
}

/// Start `d` on its device. Returns SPDK's rc (0, -ENOMEM, or another error).
///
/// # Safety
/// `d` is a live boxed DevIo counted in its slot (so the slot and its channel, which belongs
/// to the current thread, are alive) whose buffer (if any) covers `iov`.
unsafe fn start(d: *mut DevIo) -> i32 {
    let (dev, op, lba, blocks) = ((*(*d).slot).dev, (*d).op, (*d).lba, (*d).blocks);
    let iov = std::ptr::addr_of_mut!((*d).iov);
    submit_blocks(
        dev.desc,
        dev.ch,
        op,
        iov,
        lba,
        blocks,
        dev.num_blocks,
        dev.offset,
        dev_io_done,
        d as *mut c_void,
    )
}

/// Wait for a free bdev_io and retry. Returns false when even the wait cannot be queued.
///
/// # Safety
/// As for [`start`]; `d` stays boxed until the retry runs.
unsafe fn queue_retry(d: *mut DevIo) -> bool {
    let dev = (*(*d).slot).dev;
    (*d).wait.bdev = dev.bdev;
    (*d).wait.cb_fn = Some(dev_io_retry);
    (*d).wait.cb_arg = d as *mut c_void;
    sys::spdk_bdev_queue_io_wait(dev.bdev, dev.ch, std::ptr::addr_of_mut!((*d).wait)) == 0
}

unsafe extern "C" fn dev_io_retry(arg: *mut c_void) {
    guard("device I/O retry", || {
        let d = arg as *mut DevIo;
        // SAFETY: `arg` is the DevIo queued by `queue_retry`, still boxed and owned by us; we
        // run on its channel's thread.
        let rc = unsafe { start(d) };
        // SAFETY: as above.
        if rc == 0 || (rc == -ENOMEM && unsafe { queue_retry(d) }) {
            return;
        }
        // SAFETY: the I/O did not start, so the box is ours; its owner context is alive
        // (contexts live until their last device I/O is finished) and not borrowed here.
        unsafe {
            let d = Box::from_raw(d);
            let owner = d.owner;
            let be = (*owner).channel.backend_mut();
            if rc == -ENOMEM {
                be.parked.push(d);
            } else {
                be.fail_unstarted(d);
                pump(owner);
            }
        }
    })
}

unsafe extern "C" fn dev_io_done(io: *mut sys::spdk_bdev_io, ok: bool, arg: *mut c_void) {
    guard("device I/O completion", || {
        // SAFETY: `io` is the completed bdev_io (freed once, here); `arg` is our DevIo, handed
        // back exactly once.
        let d = unsafe {
            sys::spdk_bdev_free_io(io);
            Box::from_raw(arg as *mut DevIo)
        };
        // SAFETY: the owner context lives until its last device I/O is finished.
        unsafe { finish(d, ok) };
    })
}

/// A device I/O ended: recycle its context and feed the engine.
///
/// # Safety
/// `d.owner` is a live channel context of the current thread, not borrowed elsewhere.
unsafe fn finish(mut d: Box<DevIo>, ok: bool) {
    let owner = d.owner;
    let (tag, mut buf) = (d.tag, d.buf.take());
    {
        let ctx = &mut *owner;
        let be = ctx.channel.backend_mut();
        if let Some(bounce) = d.bounce.take() {
            if let (true, IoOp::Read, Some(b)) = (ok, d.op, buf.as_mut()) {
                let len = d.iov.iov_len;
                b.as_mut_slice()[d.buf_offset..d.buf_offset + len]
                    .copy_from_slice(bounce.slice(len));
            }
            be.dma.give(bounce);
        }
        be.inflight -= 1;
        let slot = std::mem::replace(&mut d.slot, std::ptr::null_mut());
        (*slot).inflight -= 1;
        if (*slot).retired && (*slot).inflight == 0 {
            // Its last I/O: the channel can go (DevSlot's drop puts it).
            be.retiring.retain(|s| !std::ptr::eq(&**s, slot));
        }
        let user = std::mem::replace(&mut d.user, std::ptr::null_mut());
        let member = d.member;
        be.free.push(d);
        // Memory may have come back (this I/O's bounce buffer, its bdev_io).
        be.retry_parked();
        if user.is_null() {
            ctx.channel.io_done(tag, ok, buf);
        } else {
            be.direct_done.push((user, member, ok, buf));
        }
    }
    pump(owner);
    reap_if_dead(owner);
}

impl SpdkBackend {
    /// Read a user read's blocks straight from the member that holds them, into the user's
    /// buffer (`buf`, lent): a healthy read of one member range, as the engine's
    /// [`crate::engine::Channel::direct_read`] found it. Counted and retried like every device
    /// I/O of this channel; its end goes to `direct_done` for `pump`, which completes the user
    /// read, or on an error submits it to the engine (which rebuilds, repairs and records the
    /// failure as for any read). `Err` hands the buffer back when the member has no channel
    /// here (it is leaving): the caller submits the read to the engine.
    pub fn submit_direct_read(
        &mut self,
        user: *mut sys::spdk_bdev_io,
        member: u32,
        lba: u64,
        blocks: u64,
        buf: Buf,
    ) -> Result<(), Buf> {
        if self
            .members
            .get(member as usize)
            .is_none_or(|s| s.is_none())
        {
            return Err(buf);
        }
        let io = DeviceIo {
            dev: Device::Member(member),
            op: IoOp::Read,
            lba,
            blocks,
            buf: Some(buf),
            buf_offset: 0,
            tag: 0,
        };
        self.direct_inflight += 1;
        self.submit_as(io, user);
        Ok(())
    }

    /// [`Backend::submit`], for the engine (`user` null) or a direct user read.
    fn submit_as(&mut self, io: DeviceIo, user: *mut sys::spdk_bdev_io) {
        let member = match io.dev {
            Device::Member(m) => m,
            Device::Journal(_) => u32::MAX,
        };
        let slot = match io.dev {
            Device::Member(m) => self.members.get_mut(m as usize).and_then(|s| s.as_mut()),
            Device::Journal(k) => self.journal.get_mut(k as usize).and_then(|s| s.as_mut()),
        };
        let Some(slot) = slot else {
            // The device is gone: fail the request (after this call returns).
            if user.is_null() {
                self.deferred.push((io.tag, io.buf));
            } else {
                self.direct_done.push((user, member, false, io.buf));
            }
            return;
        };
        let dev = slot.dev;
        let slot: *mut DevSlot = &mut **slot;
        let mut d = self.free.pop().unwrap_or_else(DevIo::boxed);
        d.owner = self.owner;
        d.user = user;
        d.member = member;
        d.slot = slot;
        d.tag = io.tag;
        d.op = io.op;
        d.lba = io.lba;
        d.blocks = io.blocks;
        d.buf = io.buf;
        d.buf_offset = io.buf_offset;
        d.needs_bounce = false;
        if let Some(b) = d.buf.as_mut() {
            let len = io.blocks as usize * dev.block_size as usize;
            let range = io.buf_offset..io.buf_offset + len;
            // A write's buffer may be a read-only view of the request's buffer: the device
            // only reads it. A read's buffer is the engine's own.
            let base = if d.op == IoOp::Write {
                b.as_slice()[range].as_ptr() as *mut u8
            } else {
                b.as_mut_slice()[range].as_mut_ptr()
            };
            d.iov = sys::iovec {
                iov_base: base as *mut c_void,
                iov_len: len,
            };
            d.needs_bounce = dev.dma && !b.is_runtime_memory() && dma::untranslatable(base, len);
        }
        self.inflight += 1;
        // SAFETY: `slot` points into a box this backend owns (members or journal, just above).
        unsafe { (*slot).inflight += 1 };
        self.launch(d);
    }
}

impl Backend for SpdkBackend {
    fn submit(&mut self, io: DeviceIo) {
        self.submit_as(io, std::ptr::null_mut());
    }

    fn send(&mut self, to: Address, msg: Msg) {
        match msg {
            Msg::LockGranted { .. } => self.vol_routes.send(to, msg),
            Msg::Durable { .. } | Msg::JournalKick => self.routes.send(to, msg),
        }
    }

    fn now_us(&self) -> u64 {
        ffi::now_us()
    }

    fn prefetch(&self, at: *const u8) {
        super::ffi::prefetch(at);
    }
}
