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
//! the members (SPDK's own buffers are DMA memory, so NVMe needs no bounce either). A read of one
//! member range on a healthy stripe goes to that member with the caller's iovec and its state in
//! the bdev_io's driver context ([`SpdkBackend::start_direct_read`]). Other requests go through
//! one copy into or out of an engine buffer.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

use spdk_sys as sys;

use super::base::{submit_blocks, BaseBdev, ENOMEM};
use super::channel::{pump, reap_if_dead, ChanCtx, Routes};
use super::dma::{self, DmaBuf, DmaPool};
use super::ffi::{self, guard, SendPtr};
use super::reserve;
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
            reserve::twin_open(b);
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
        reserve::twin_close(self.dev.desc);
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
    /// Handed to the reserve thread ([`to_reserve`]): the thread it came from.
    home: *mut sys::spdk_thread,
    /// ... and the device as the reserve thread reaches it (its channel there).
    alt: Option<DevChan>,
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
            home: std::ptr::null_mut(),
            alt: None,
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
    /// Direct user reads whose member read failed: (user bdev_io, member, its lent buffer), for
    /// `pump` to hand to the engine.
    pub direct_failed: Vec<(*mut sys::spdk_bdev_io, u32, Buf)>,
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
    /// Times a direct read found no bdev_io (it then goes the engine's way, or waits for one
    /// where there is no reserve thread).
    pub direct_waits: u64,
    /// Device I/Os handed to the reserve thread for want of a bdev_io here.
    pub reserved: u64,
    /// Recycled I/O contexts (boxed: SPDK holds their addresses while in flight).
    #[allow(clippy::vec_box)]
    free: Vec<Box<DevIo>>,
    /// The SPDK thread the channel lives on (its clock as last read: [`ffi::recent_us`]).
    thread: *mut sys::spdk_thread,
}

impl SpdkBackend {
    /// A backend over these channels, on SPDK thread `thread` (the caller's).
    pub fn new(
        thread: *mut sys::spdk_thread,
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
            direct_failed: Vec::new(),
            direct_inflight: 0,
            inflight: 0,
            dma: DmaPool::default(),
            bounced: 0,
            direct_waits: 0,
            reserved: 0,
            free: Vec::new(),
            thread,
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
        // SAFETY: as above; the box did not start, and goes to the reserve thread whole.
        if rc == -ENOMEM && unsafe { to_reserve(raw) } {
            self.reserved += 1;
            return;
        }
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
        let slot = std::mem::replace(&mut d.slot, std::ptr::null_mut());
        // SAFETY: `slot` is the slot this counted I/O was counted in.
        unsafe { self.uncount(slot) };
        self.deferred.push((d.tag, d.buf.take()));
        self.free.push(d);
    }

    /// A counted device I/O through `slot` is over: uncount it; a retired slot's last I/O lets
    /// its channel go (DevSlot's drop puts it).
    ///
    /// # Safety
    /// `slot` is the slot the I/O was counted in (alive while it is counted).
    unsafe fn uncount(&mut self, slot: *mut DevSlot) {
        self.inflight -= 1;
        (*slot).inflight -= 1;
        if (*slot).retired && (*slot).inflight == 0 {
            self.retiring.retain(|s| !std::ptr::eq(&**s, slot));
        }
    }

    /// Start a user read straight from `member` into the caller's buffer, its state in the
    /// bdev_io itself ([`DirectRead`]): a healthy read of one member range, as the engine's
    /// [`crate::engine::Channel::direct_read`] found it. When the member read succeeds its
    /// completion completes the user read at once; an error or a shortage hands it to the
    /// channel (see `direct_read_ended`). Counted like every device I/O of this channel (its
    /// slot and the channel stay until it ends; a reset waits for it). Returns false, with
    /// nothing done, when it cannot go this way: the member has no channel here (it is
    /// leaving), its device needs DMA memory the buffer is not, or the submission is refused
    /// (then the read goes the general way, which retries or fails it as any device I/O).
    ///
    /// # Safety
    /// `user` is a live read bdev_io of this channel's volume with one segment of `blocks`
    /// blocks.
    pub unsafe fn start_direct_read(
        &mut self,
        user: *mut sys::spdk_bdev_io,
        member: u32,
        lba: u64,
        blocks: u64,
    ) -> bool {
        let Some(slot) = self
            .members
            .get_mut(member as usize)
            .and_then(|s| s.as_mut())
        else {
            return false;
        };
        let dev = slot.dev;
        if dev.dma {
            let v = &*(*user).u.bdev.iovs;
            if dma::untranslatable(v.iov_base as *const u8, v.iov_len) {
                return false;
            }
        }
        let slot: *mut DevSlot = &mut **slot;
        direct_ctx(user).write(DirectRead {
            owner: self.owner,
            slot,
            member,
            lba: lba + dev.offset,
            blocks,
            wait: sys::spdk_bdev_io_wait_entry::default(),
        });
        self.inflight += 1;
        (*slot).inflight += 1;
        let rc = direct_start(user);
        if rc == -ENOMEM {
            self.direct_waits += 1;
            if reserve::running() {
                // The engine's way hands its member read to the reserve thread (see
                // `launch`); waiting here might never end.
                self.uncount(slot);
                return false;
            }
        }
        if rc == 0 || (rc == -ENOMEM && direct_queue_retry(user)) {
            self.direct_inflight += 1;
            return true;
        }
        self.uncount(slot);
        false
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

/// Hand `d`, which found no bdev_io on this thread, to the reserve thread
/// ([`super::reserve`]), which starts it through its own channel and sends the completion back
/// here. False (nothing done) when that thread does not run.
///
/// # Safety
/// As for [`start`]; `d` did not start, and stays boxed and counted until its completion comes
/// back to this thread.
unsafe fn to_reserve(d: *mut DevIo) -> bool {
    if !reserve::running() {
        return false;
    }
    (*d).home = ffi::current_thread();
    (*d).alt = Some((*(*d).slot).dev);
    let p = SendPtr(d);
    reserve::send(move || {
        let p = p;
        // SAFETY: the box was handed over whole by its home thread, which touches it again
        // only when `send_home` gives it back.
        unsafe { reserve_start(p.0) }
    })
}

/// On the reserve thread: start `d` through this thread's channel to its device; without a
/// bdev_io wait for one here (this thread's own completions wake it).
///
/// # Safety
/// `d` is a DevIo handed over by [`to_reserve`]; its descriptor is open (its home slot, which
/// holds it, is counted) and this is the reserve thread.
unsafe fn reserve_start(d: *mut DevIo) {
    let Some(mut dev) = (*d).alt else {
        return send_home(d, Back::Park);
    };
    dev.ch = reserve::channel(dev.desc);
    if dev.ch.is_null() {
        return send_home(d, Back::Park);
    }
    (*d).alt = Some(dev);
    let iov = std::ptr::addr_of_mut!((*d).iov);
    let rc = submit_blocks(
        dev.desc,
        dev.ch,
        (*d).op,
        iov,
        (*d).lba,
        (*d).blocks,
        dev.num_blocks,
        dev.offset,
        reserve_done,
        d as *mut c_void,
    );
    if rc == 0 {
        return;
    }
    if rc == -ENOMEM {
        (*d).wait.bdev = dev.bdev;
        (*d).wait.cb_fn = Some(reserve_retry);
        (*d).wait.cb_arg = d as *mut c_void;
        if sys::spdk_bdev_queue_io_wait(dev.bdev, dev.ch, std::ptr::addr_of_mut!((*d).wait)) == 0 {
            return;
        }
        return send_home(d, Back::Park);
    }
    send_home(d, Back::Fail);
}

unsafe extern "C" fn reserve_retry(arg: *mut c_void) {
    guard("reserve device I/O retry", || {
        // SAFETY: `arg` is the DevIo `reserve_start` queued on this (the reserve) thread.
        unsafe { reserve_start(arg as *mut DevIo) }
    })
}

unsafe extern "C" fn reserve_done(io: *mut sys::spdk_bdev_io, ok: bool, arg: *mut c_void) {
    guard("reserve device I/O completion", || {
        // SAFETY: `io` is the completed bdev_io (freed once, here, on the thread that got it);
        // `arg` is the DevIo `reserve_start` submitted.
        unsafe {
            sys::spdk_bdev_free_io(io);
            send_home(arg as *mut DevIo, Back::Done(ok));
        }
    })
}

/// What the reserve thread sends back with a device I/O.
#[derive(Clone, Copy)]
enum Back {
    /// It ran: its result.
    Done(bool),
    /// It could not start for want of memory: park it at home (retried on the tick).
    Park,
    /// It could not start: fail it.
    Fail,
}

/// Give `d` back to its home thread, and finish it there as `back` says.
///
/// # Safety
/// `d` is a DevIo handed over by [`to_reserve`], no longer in SPDK's hands.
unsafe fn send_home(d: *mut DevIo, back: Back) {
    let (home, p) = ((*d).home, SendPtr(d));
    let sent = ffi::send_to(home, move || {
        let p = p;
        // SAFETY: the box is back on its home thread, where its owner context lives until its
        // last device I/O (this one, still counted) is finished; no borrow of it is live in a
        // message.
        unsafe {
            let mut d = Box::from_raw(p.0);
            d.alt = None;
            let owner = d.owner;
            match back {
                Back::Done(ok) => finish(d, ok),
                Back::Park => (*owner).channel.backend_mut().parked.push(d),
                Back::Fail => {
                    (*owner).channel.backend_mut().fail_unstarted(d);
                    pump(owner);
                    reap_if_dead(owner);
                }
            }
        }
    });
    if !sent {
        // The home reactor is exiting, and with it the channel this I/O belonged to.
        ffi::errlog!("jraid reserve thread: a device I/O could not go back to its reactor");
    }
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

/// The state of a lean direct read ([`SpdkBackend::start_direct_read`]), kept in the user
/// bdev_io's driver context: SPDK reserves [`DIRECT_READ_CTX`] bytes of it in every bdev_io of
/// a jraid volume (`get_ctx_size`), so such a read needs no memory of ours at all.
struct DirectRead {
    /// The channel context that started it.
    owner: *mut ChanCtx,
    /// The member's slot (alive while this read is counted in it).
    slot: *mut DevSlot,
    member: u32,
    /// Where on the member's bdev (its window offset included).
    lba: u64,
    blocks: u64,
    /// Queue entry for `spdk_bdev_queue_io_wait` after -ENOMEM.
    wait: sys::spdk_bdev_io_wait_entry,
}

/// Bytes of driver context every bdev_io of a jraid volume carries (see [`DirectRead`]).
pub(crate) const DIRECT_READ_CTX: usize = std::mem::size_of::<DirectRead>();

/// The driver context of `user`.
///
/// # Safety
/// `user` is a live bdev_io of a jraid volume (its driver context is [`DIRECT_READ_CTX`] bytes,
/// 8-byte aligned: it follows the 1216-byte, 8-aligned `spdk_bdev_io`).
unsafe fn direct_ctx(user: *mut sys::spdk_bdev_io) -> *mut DirectRead {
    std::ptr::addr_of_mut!((*user).driver_ctx).cast()
}

/// Submit the member read of a lean direct read. Returns SPDK's rc.
///
/// # Safety
/// `user` is a live single-segment read bdev_io whose [`DirectRead`] is filled and counted in
/// its slot (so the slot and its channel, of the current thread, are alive).
unsafe fn direct_start(user: *mut sys::spdk_bdev_io) -> i32 {
    let d = direct_ctx(user);
    let dev = (*(*d).slot).dev;
    let b = &(*user).u.bdev;
    sys::spdk_bdev_readv_blocks(
        dev.desc,
        dev.ch,
        b.iovs,
        b.iovcnt,
        (*d).lba,
        (*d).blocks,
        Some(direct_read_done),
        user.cast(),
    )
}

/// Wait for a free bdev_io and retry a lean direct read. Returns false when even the wait
/// cannot be queued.
///
/// # Safety
/// As for [`direct_start`].
unsafe fn direct_queue_retry(user: *mut sys::spdk_bdev_io) -> bool {
    let d = direct_ctx(user);
    let dev = (*(*d).slot).dev;
    (*d).wait.bdev = dev.bdev;
    (*d).wait.cb_fn = Some(direct_read_retry);
    (*d).wait.cb_arg = user.cast();
    sys::spdk_bdev_queue_io_wait(dev.bdev, dev.ch, std::ptr::addr_of_mut!((*d).wait)) == 0
}

unsafe extern "C" fn direct_read_retry(arg: *mut c_void) {
    guard("direct read retry", || {
        let user = arg as *mut sys::spdk_bdev_io;
        // SAFETY: `arg` is the user read queued by `direct_queue_retry`: live (we have not
        // completed it), its DirectRead filled and counted; we run on its channel's thread.
        let rc = unsafe { direct_start(user) };
        if rc == -ENOMEM {
            // SAFETY: as above; the owner context lives until this read is uncounted, and no
            // borrow of it is live in a wait callback.
            unsafe {
                (*(*direct_ctx(user)).owner)
                    .channel
                    .backend_mut()
                    .direct_waits += 1
            };
        }
        // SAFETY: as above.
        if rc == 0 || (rc == -ENOMEM && unsafe { direct_queue_retry(user) }) {
            return;
        }
        // SAFETY: the read did not start, so SPDK holds nothing of it; its owner context lives
        // until its last device I/O (this one, still counted) is finished.
        unsafe { direct_read_ended(user, None, rc == -ENOMEM) };
    })
}

unsafe extern "C" fn direct_read_done(io: *mut sys::spdk_bdev_io, ok: bool, arg: *mut c_void) {
    guard("direct read completion", || {
        // SAFETY: `io` is the completed member bdev_io (freed once, here); `arg` is the user
        // read it served, live until we complete it, its DirectRead counted.
        unsafe {
            sys::spdk_bdev_free_io(io);
            direct_read_ended(arg as *mut sys::spdk_bdev_io, Some(ok), false);
        }
    })
}

/// A lean direct read's member read ended (`Some(ok)`) or could not start (`None`; `enomem`:
/// for want of memory). Uncount it; complete the user read when it succeeded; otherwise hand it
/// to the channel ([`ChanCtx::direct_read_failed`]: the engine rebuilds what a member error
/// lost, or reads again its own way after a shortage).
///
/// # Safety
/// `user` is a live user read bdev_io of a lean direct read still counted in its slot; its
/// owner context is alive and not borrowed elsewhere.
unsafe fn direct_read_ended(user: *mut sys::spdk_bdev_io, ok: Option<bool>, enomem: bool) {
    let d = direct_ctx(user);
    let (owner, slot, member) = ((*d).owner, (*d).slot, (*d).member);
    let done = {
        let ctx = &mut *owner;
        let be = ctx.channel.backend_mut();
        be.uncount(slot);
        let waiting = !be.parked.is_empty();
        be.retry_parked();
        if ok == Some(true) {
            be.direct_inflight -= 1;
            ctx.channel.count_direct_read();
            !waiting
        } else {
            ctx.direct_read_failed(user, member, enomem);
            false
        }
    };
    if done {
        // Nothing else changed in the channel: complete the read at once (no borrow of the
        // context is live; completing may submit again).
        sys::spdk_bdev_io_complete(user, sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_SUCCESS);
    } else {
        if ok == Some(true) {
            (*owner)
                .finished
                .push((user, sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_SUCCESS));
        }
        pump(owner);
    }
    reap_if_dead(owner);
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
        let slot = std::mem::replace(&mut d.slot, std::ptr::null_mut());
        be.uncount(slot);
        be.free.push(d);
        // Memory may have come back (this I/O's bounce buffer, its bdev_io).
        be.retry_parked();
        ctx.channel.io_done(tag, ok, buf);
    }
    pump(owner);
    reap_if_dead(owner);
}

impl SpdkBackend {
    /// [`Backend::submit`].
    fn submit_io(&mut self, io: DeviceIo) {
        let slot = match io.dev {
            Device::Member(m) => self.members.get_mut(m as usize).and_then(|s| s.as_mut()),
            Device::Journal(k) => self.journal.get_mut(k as usize).and_then(|s| s.as_mut()),
        };
        let Some(slot) = slot else {
            // The device is gone: fail the request (after this call returns).
            self.deferred.push((io.tag, io.buf));
            return;
        };
        let dev = slot.dev;
        let slot: *mut DevSlot = &mut **slot;
        let mut d = self.free.pop().unwrap_or_else(DevIo::boxed);
        d.owner = self.owner;
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
        self.submit_io(io);
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

    fn recent_us(&self) -> u64 {
        ffi::recent_us(self.thread)
    }

    fn prefetch(&self, at: *const u8) {
        super::ffi::prefetch(at);
    }

    fn xor_into(&self, dst: &mut [u8], srcs: &[&[u8]]) {
        super::xor::xor_into(dst, srcs);
    }

    fn xor_acc(&self, dst: &mut [u8], srcs: &[&[u8]]) {
        super::xor::xor_acc(dst, srcs);
    }

    fn xor_update(&self, parity: &mut [u8], old: &[u8], new: &[u8]) {
        super::xor::xor_update(parity, old, new);
    }
}
