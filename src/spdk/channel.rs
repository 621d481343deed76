//! A volume's channel on one reactor: the io_device channel context holding a
//! [`Channel<SpdkBackend>`], its tick poller, user bdev_io submission and completion, and the
//! routing of engine messages between reactors.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use spdk_sys as sys;

use super::backend::{DevSlot, SpdkBackend};
use super::bdev::SpdkVolume;
use super::ffi::{self, guard, SendPtr};
use super::life::Poller;
use crate::engine::{Address, Buf, Channel, Completion, Lent, Msg, UserOp};

/// Period of the per-channel tick poller.
const TICK_US: u64 = 1000;

/// Where one channel lives.
#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub thread: SendPtr<sys::spdk_thread>,
    pub ctx: SendPtr<ChanCtx>,
}

/// Address → (thread, channel context) for every channel of every volume on one journal.
#[derive(Default)]
pub(crate) struct Routes {
    map: Mutex<HashMap<Address, Route>>,
}

impl Routes {
    fn lookup(&self, to: Address) -> Option<Route> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to)
            .copied()
    }

    pub(crate) fn insert(&self, at: Address, route: Route) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(at, route);
    }

    pub(crate) fn remove(&self, at: Address) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&at);
    }

    /// Deliver `msg` to the channel at `to`, later, on its own thread. Messages to a channel
    /// that has gone are dropped (nothing waits there any more).
    pub fn send(self: &Arc<Self>, to: Address, msg: Msg) {
        let Some(route) = self.lookup(to) else {
            return;
        };
        let routes = self.clone();
        ffi::send_to(route.thread.0, move || {
            // Look again on the target thread: the channel may have gone meanwhile, and
            // contexts are only destroyed on this same thread, so what we find stays alive.
            let Some(route) = routes.lookup(to) else {
                return;
            };
            let ptr = route.ctx.0;
            // SAFETY: the context is registered, hence alive, and belongs to this thread; no
            // other borrow of it is live in a message callback.
            unsafe {
                (*ptr).channel.message(msg);
                pump(ptr);
            }
        });
    }
}

/// A user request's single iovec, lent to the engine: a write's data (data strips then go to
/// the members without a copy) or a read's destination (writable: members may read into it).
#[derive(Default)]
struct UserData {
    ptr: usize,
    len: usize,
    /// A read's destination.
    writable: bool,
}

impl Lent for UserData {
    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr`/`len` describe the iovec of a bdev_io that is still outstanding: a
        // UserData is filled in `start_write`/`start_read` and reaches the engine only inside
        // that request's buffer; the engine drops every view of it before completing the
        // request, and `ChanCtx::recycle` clears it before the bdev_io is completed. SPDK does
        // not change a write's data, nor read a read's buffer, while the I/O is outstanding.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if !self.writable || self.len == 0 {
            return None;
        }
        // SAFETY: as in `bytes`; a read's buffer belongs to us until the bdev_io completes, and
        // `&mut self` (through `Arc::get_mut`) means no other reference to it is alive.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) })
    }

    fn writable(&self) -> bool {
        self.writable
    }
}

/// Lent-memory holders kept for reuse per channel (beyond this, they are freed).
const LENT_KEEP: usize = 4096;

/// Tags of internal requests (recovery resyncs) have the low bit set; user requests are tagged
/// with their bdev_io address, which is aligned.
pub(crate) const INTERNAL_TAG: u64 = 1;

/// The context of one volume channel on one reactor.
pub(crate) struct ChanCtx {
    /// The engine.
    pub channel: Channel<SpdkBackend>,
    /// The volume (kept alive while the channel exists).
    pub vol: Arc<SpdkVolume>,
    /// Our address among the journal's channels.
    pub addr: Address,
    /// The tick poller.
    poller: Poller,
    /// Scratch: completions drained from the engine.
    done: Vec<Completion>,
    /// User bdev_ios to complete once the engine is no longer borrowed.
    pub(crate) finished: Vec<(*mut sys::spdk_bdev_io, sys::spdk_bdev_io_status)>,
    /// Completions of internal requests, for whoever issued them (recovery).
    pub internal: Vec<Completion>,
    /// The io channel was destroyed; the context lives on until its device I/O drains.
    dead: bool,
    /// Holders of lent user memory, for reuse.
    lent: Vec<Arc<UserData>>,
}

impl ChanCtx {
    /// Route one engine completion.
    fn finish(&mut self, c: Completion) {
        if c.tag & INTERNAL_TAG != 0 {
            self.internal.push(c);
            return;
        }
        let io = c.tag as *mut sys::spdk_bdev_io;
        let ok = c.result.is_ok();
        if let Some(buf) = c.buf {
            // SAFETY: `io` is the user bdev_io this request was submitted for; it stays valid
            // until we complete it, which has not happened yet.
            if ok
                && !buf.is_lent()
                && unsafe { (*io).type_ } as u32 == sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_READ
            {
                // SAFETY: as above; its iovecs describe the caller's buffers.
                unsafe { copy_to_iovs(io, buf.as_slice()) };
            }
            self.recycle(buf);
        }
        if let Err(e) = c.result {
            ffi::infolog!("volume {}: request failed: {e}", self.vol.name);
        }
        let st = if ok {
            sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_SUCCESS
        } else {
            sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_FAILED
        };
        self.finished.push((io, st));
    }

    /// Submit a user request; failures at submission complete it as failed.
    fn submit_user(&mut self, io: *mut sys::spdk_bdev_io, op: UserOp, buf: Option<Buf>) {
        // SAFETY: `io` is a live bdev_io of this bdev; for read/write `u.bdev` is the active
        // union member.
        let (lba, blocks) = match op {
            UserOp::Read | UserOp::Write => unsafe {
                ((*io).u.bdev.offset_blocks, (*io).u.bdev.num_blocks)
            },
            _ => (0, 0),
        };
        if let Err(e) = self.channel.submit(io as u64, op, lba, blocks, buf) {
            ffi::infolog!("volume {}: request refused: {}", self.vol.name, e.error);
            if let Some(b) = e.buf {
                self.recycle(b);
            }
            self.finished
                .push((io, sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_FAILED));
        }
    }

    /// Start a user read. Returns true when it went straight to a member with nothing else
    /// to do here ([`SpdkBackend::start_direct_read`]; no pump needed).
    fn start_read(&mut self, io: *mut sys::spdk_bdev_io) -> bool {
        let len = self.io_bytes(io);
        // SAFETY: `io` is a live read bdev_io, so `u.bdev` is the active union member.
        let (lba, blocks) = unsafe { ((*io).u.bdev.offset_blocks, (*io).u.bdev.num_blocks) };
        // SAFETY: as above.
        if unsafe { one_segment(io, len) } {
            if let Some((m, mlba)) = self.channel.direct_read(lba, blocks) {
                // SAFETY: `io` is a live read bdev_io of this volume with one segment of
                // `blocks` blocks.
                let be = self.channel.backend_mut();
                if unsafe { be.start_direct_read(io, m, mlba, blocks) } {
                    return true;
                }
            }
        }
        // Anything else (and a direct read the member's channel refused) goes through the
        // engine, into the caller's buffer when it is one segment.
        let buf = self
            .lend(io, len, true)
            .unwrap_or_else(|| self.channel.take_buf(len));
        self.submit_user(io, UserOp::Read, Some(buf));
        false
    }

    /// A lean direct read ([`SpdkBackend::start_direct_read`]) of `member` met an error, or
    /// could not start (`enomem`: for want of memory). An error goes to the engine as its own
    /// failed read of that member (`direct_reads_failed`: rebuilt from the other members and
    /// written back, or the member fails on a degraded volume); a shortage is never an error:
    /// the read goes the engine's way, which retries it as any device I/O. The caller pumps.
    pub(crate) fn direct_read_failed(
        &mut self,
        io: *mut sys::spdk_bdev_io,
        member: u32,
        enomem: bool,
    ) {
        let len = self.io_bytes(io);
        let buf = self.lend(io, len, true);
        let be = self.channel.backend_mut();
        match buf {
            Some(buf) if !enomem => be.direct_failed.push((io, member, buf)),
            buf => {
                be.direct_inflight -= 1;
                let buf = buf.unwrap_or_else(|| self.channel.take_buf(len));
                self.submit_user(io, UserOp::Read, Some(buf));
            }
        }
    }

    /// The single iovec of `io` as lent memory (`None` when it has several segments).
    fn lend(&mut self, io: *mut sys::spdk_bdev_io, len: usize, writable: bool) -> Option<Buf> {
        // SAFETY: `io` is a live read/write bdev_io.
        let v = unsafe { iovs(io) };
        if v.len() != 1 || v[0].iov_len < len || v[0].iov_base.is_null() {
            return None;
        }
        let mut holder = self.lent.pop().unwrap_or_default();
        let data = UserData {
            ptr: v[0].iov_base as usize,
            len,
            writable,
        };
        match Arc::get_mut(&mut holder) {
            Some(h) => *h = data,
            None => holder = Arc::new(data),
        }
        Some(Buf::lent(holder))
    }

    fn start_write(&mut self, io: *mut sys::spdk_bdev_io) {
        let len = self.io_bytes(io);
        if let Some(buf) = self.lend(io, len, false) {
            // One segment: lent to the engine (no copy).
            return self.submit_user(io, UserOp::Write, Some(buf));
        }
        let mut buf = self.channel.take_buf(len);
        // SAFETY: `io` is a live write bdev_io; its iovecs hold `len` bytes of caller data.
        unsafe { copy_from_iovs(io, buf.as_mut_slice()) };
        self.submit_user(io, UserOp::Write, Some(buf));
    }

    /// A request's buffer is back: pool the engine's own, forget lent memory (before its
    /// bdev_io is completed) and keep the holder for reuse.
    fn recycle(&mut self, buf: Buf) {
        if !buf.is_lent() {
            return self.channel.give_buf(buf);
        }
        let Some(l) = buf.into_lent() else { return };
        if let Ok(mut u) = Buf::lent_any(l).downcast::<UserData>() {
            if let Some(h) = Arc::get_mut(&mut u) {
                *h = UserData::default();
                if self.lent.len() < LENT_KEEP {
                    self.lent.push(u);
                }
            }
        }
    }

    /// Nothing in flight: no engine request and no direct read.
    fn idle(&self) -> bool {
        self.channel.idle() && self.channel.backend().direct_inflight == 0
    }

    /// Hand the direct reads that met a member error to the engine as its own failed reads
    /// (`Channel::submit_failed_direct_read`: it rebuilds the blocks from the other members and
    /// writes them back, or fails the member on a degraded volume).
    fn direct_reads_failed(&mut self) {
        let be = self.channel.backend_mut();
        if be.direct_failed.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut be.direct_failed);
        be.direct_inflight -= list.len() as u64;
        for (io, member, buf) in list.drain(..) {
            // SAFETY: `io` is the live read bdev_io this direct read served.
            let (lba, blocks) = unsafe { ((*io).u.bdev.offset_blocks, (*io).u.bdev.num_blocks) };
            let r = self
                .channel
                .submit_failed_direct_read(io as u64, lba, blocks, buf, member);
            if let Err(e) = r {
                ffi::infolog!("volume {}: request refused: {}", self.vol.name, e.error);
                if let Some(b) = e.buf {
                    self.recycle(b);
                }
                self.finished
                    .push((io, sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_FAILED));
            }
        }
        // Kept (empty) for its capacity, unless more arrived meanwhile.
        let be = self.channel.backend_mut();
        if be.direct_failed.is_empty() {
            be.direct_failed = list;
        }
    }

    fn io_bytes(&self, io: *mut sys::spdk_bdev_io) -> usize {
        // SAFETY: `io` is a live read/write bdev_io, so `u.bdev` is the active member.
        let blocks = unsafe { (*io).u.bdev.num_blocks };
        blocks as usize * self.vol.geo.block_size as usize
    }
}

/// The iovecs of a read/write bdev_io.
///
/// # Safety
/// `io` is a live read/write bdev_io with buffers.
unsafe fn iovs<'a>(io: *mut sys::spdk_bdev_io) -> &'a [sys::iovec] {
    let b = &(*io).u.bdev;
    if b.iovs.is_null() || b.iovcnt <= 0 {
        return &[];
    }
    std::slice::from_raw_parts(b.iovs, b.iovcnt as usize)
}

/// Whether `io`'s buffer is one segment of at least `len` bytes.
///
/// # Safety
/// `io` is a live read/write bdev_io.
unsafe fn one_segment(io: *mut sys::spdk_bdev_io, len: usize) -> bool {
    let v = iovs(io);
    v.len() == 1 && v[0].iov_len >= len && !v[0].iov_base.is_null()
}

/// # Safety
/// `io` is a live read bdev_io whose iovecs hold at least `src.len()` bytes.
unsafe fn copy_to_iovs(io: *mut sys::spdk_bdev_io, mut src: &[u8]) {
    for v in iovs(io) {
        if src.is_empty() {
            break;
        }
        let n = v.iov_len.min(src.len());
        std::ptr::copy_nonoverlapping(src.as_ptr(), v.iov_base as *mut u8, n);
        src = &src[n..];
    }
}

/// # Safety
/// `io` is a live write bdev_io whose iovecs hold at least `dst.len()` bytes.
unsafe fn copy_from_iovs(io: *mut sys::spdk_bdev_io, mut dst: &mut [u8]) {
    for v in iovs(io) {
        if dst.is_empty() {
            break;
        }
        let n = v.iov_len.min(dst.len());
        std::ptr::copy_nonoverlapping(v.iov_base as *const u8, dst.as_mut_ptr(), n);
        dst = &mut dst[n..];
    }
}

/// Feed the engine what the backend deferred, route its completions, and complete user
/// bdev_ios once no borrow of the context is live (completing may re-enter `submit_request`).
///
/// # Safety
/// `ptr` is a live channel context of the current thread, not borrowed by the caller.
pub(crate) unsafe fn pump(ptr: *mut ChanCtx) {
    {
        // Most calls (a member I/O of a request still running) find nothing to do: say so
        // from four lengths, without moving the lists.
        // SAFETY: `ptr` is live and not borrowed elsewhere (the caller's promise); read only.
        let ctx = &*ptr;
        let be = ctx.channel.backend();
        if be.deferred.is_empty()
            && be.direct_failed.is_empty()
            && !ctx.channel.has_completions()
            && ctx.finished.is_empty()
        {
            return;
        }
    }
    loop {
        let mut batch = {
            let ctx = &mut *ptr;
            loop {
                let deferred = std::mem::take(&mut ctx.channel.backend_mut().deferred);
                if deferred.is_empty() {
                    break;
                }
                for (tag, buf) in deferred {
                    ctx.channel.io_done(tag, false, buf);
                }
            }
            ctx.direct_reads_failed();
            let mut done = std::mem::take(&mut ctx.done);
            ctx.channel.drain_completions(&mut done);
            for c in done.drain(..) {
                ctx.finish(c);
            }
            ctx.done = done;
            std::mem::take(&mut ctx.finished)
        };
        if batch.is_empty() {
            // Put the (empty) list back with its capacity: dropping it here made the next
            // completion allocate a new one, a malloc and a free per request.
            (*ptr).finished = batch;
            return;
        }
        for (io, st) in batch.drain(..) {
            sys::spdk_bdev_io_complete(io, st);
        }
        let ctx = &mut *ptr;
        if ctx.finished.is_empty() {
            ctx.finished = batch;
        }
    }
}

/// Free a destroyed context once its last device I/O has finished.
///
/// # Safety
/// `ptr` is a channel context of the current thread, not borrowed by the caller, and not used
/// by the caller afterwards.
pub(crate) unsafe fn reap_if_dead(ptr: *mut ChanCtx) {
    let ctx = &mut *ptr;
    if ctx.dead && ctx.channel.backend().inflight == 0 {
        let mut ctx = Box::from_raw(ptr);
        let be = ctx.channel.backend();
        if be.bounced > 0 {
            ffi::noticelog!(
                "volume {}: {} device I/Os of this channel went through DMA bounce buffers ({} allocated)",
                ctx.vol.name,
                be.bounced,
                be.dma.allocations
            );
        }
        if be.direct_waits > 0 {
            ffi::noticelog!(
                "volume {}: direct reads of this channel found no bdev_io {} times",
                ctx.vol.name,
                be.direct_waits
            );
        }
        if be.reserved > 0 {
            ffi::noticelog!(
                "volume {}: {} device I/Os of this channel found no bdev_io and went through the reserve thread",
                ctx.vol.name,
                be.reserved
            );
        }
        ctx.channel.backend_mut().put_channels();
    }
}

/// The context pointer stored in an io channel of a jraid volume.
///
/// # Safety
/// `ch` is an io channel of a jraid volume io_device.
pub(crate) unsafe fn ctx_of(ch: *mut sys::spdk_io_channel) -> *mut ChanCtx {
    *(sys::jraid_io_channel_get_ctx(ch) as *mut *mut ChanCtx)
}

/// Bytes of channel context SPDK keeps for us: one pointer to the boxed [`ChanCtx`].
pub(crate) const CTX_SIZE: u32 = std::mem::size_of::<*mut ChanCtx>() as u32;

/// io_device channel constructor: this thread's channels to every member and the journal.
pub(crate) unsafe extern "C" fn channel_create(io_device: *mut c_void, buf: *mut c_void) -> i32 {
    guard("channel create", || {
        let vp = io_device as *const SpdkVolume;
        // SAFETY: the io_device is the address of a SpdkVolume inside an Arc that the registry
        // holds until the io_device is unregistered, which waits for every channel.
        let vol = unsafe {
            Arc::increment_strong_count(vp);
            Arc::from_raw(vp)
        };
        // Slots got here are put again (DevSlot's drop) if a later one fails.
        let mut members = Vec::new();
        {
            let bases = vol.members.lock().unwrap_or_else(|e| e.into_inner());
            for b in bases.iter() {
                match b {
                    None => members.push(None),
                    Some(b) => {
                        let Some(d) = DevSlot::open(b) else {
                            return -super::base::ENOMEM;
                        };
                        members.push(Some(d));
                    }
                }
            }
        }
        let att = vol.attached();
        let mut journal = Vec::new();
        for dev in &att.journal.devs {
            let jb = dev.base.lock().unwrap_or_else(|e| e.into_inner());
            match jb.as_ref() {
                None => journal.push(None),
                Some(b) => {
                    let Some(d) = DevSlot::open(b) else {
                        return -super::base::ENOMEM;
                    };
                    journal.push(Some(d));
                }
            }
        }
        let thread = ffi::current_thread();
        let addr = Address {
            reactor: ffi::thread_id(thread),
            volume: vol.number,
        };
        let routes = att.journal.routes.clone();
        let backend =
            SpdkBackend::new(thread, members, journal, routes.clone(), vol.routes.clone());
        let mut channel = match Channel::try_new(
            vol.vol.clone(),
            Some(att.jv.clone()),
            addr,
            backend,
        ) {
            Ok(c) => c,
            Err(_backend) => {
                // Dropping the backend puts the device channels got above.
                ffi::errlog!(
                    "volume {}: journal {} has no free channel slot (at most {} channels per journal: volumes x threads, plus recovery and background passes)",
                    vol.name,
                    att.journal.name,
                    att.journal.journal.cfg.max_channels
                );
                return -super::base::ENOMEM;
            }
        };
        // `bdev_jraid_set_journal` may have replaced the journal between the two reads above:
        // the channel follows the one whose bdev channel it holds (a new channel is quiet).
        if channel
            .journal()
            .is_some_and(|j| !Arc::ptr_eq(j, &att.journal.journal))
        {
            channel.replace_journal(att.journal.journal.clone(), att.jv.clone());
        }
        let ctx = Box::new(ChanCtx {
            channel,
            vol,
            addr,
            poller: Poller::none(),
            done: Vec::new(),
            finished: Vec::new(),
            internal: Vec::new(),
            dead: false,
            lent: Vec::new(),
        });
        let ptr = Box::into_raw(ctx);
        // SAFETY: `ptr` was just boxed and is only used on this thread; `buf` is SPDK's
        // context area of CTX_SIZE bytes for this channel.
        unsafe {
            (*ptr).channel.backend_mut().owner = ptr;
            (*ptr).poller = Poller::register(tick, ptr as *mut c_void, TICK_US);
            *(buf as *mut *mut ChanCtx) = ptr;
        }
        let route = Route {
            thread: SendPtr(thread),
            ctx: SendPtr(ptr),
        };
        routes.insert(addr, route);
        // SAFETY: `ptr` is live (just boxed).
        unsafe { &*ptr }.vol.routes.insert(addr, route);
        0
    })
}

/// io_device channel destructor (on the channel's thread).
pub(crate) unsafe extern "C" fn channel_destroy(_io_device: *mut c_void, buf: *mut c_void) {
    guard("channel destroy", || {
        // SAFETY: `buf` is the context area `channel_create` filled.
        let ptr = unsafe { *(buf as *mut *mut ChanCtx) };
        {
            // SAFETY: the context is alive and only used on this thread.
            let ctx = unsafe { &mut *ptr };
            ctx.channel.backend().routes.remove(ctx.addr);
            ctx.vol.routes.remove(ctx.addr);
            // The tick poller stays until the context is freed: device I/O still in flight or
            // waiting for memory is retried from it.
            ctx.dead = true;
        }
        // SAFETY: no borrow is live; nothing uses `ptr` after this.
        unsafe { reap_if_dead(ptr) };
    })
}

unsafe extern "C" fn tick(arg: *mut c_void) -> i32 {
    guard("channel tick", || {
        let ptr = arg as *mut ChanCtx;
        // SAFETY: the poller is dropped (unregistered) with its context, so `ptr` is a live
        // context of this thread.
        unsafe {
            if !(*ptr).dead {
                (*ptr).channel.tick();
            }
            (*ptr).channel.backend_mut().retry_parked();
            pump(ptr);
            if (*ptr).dead {
                // Last use of `ptr` here: it may be freed.
                reap_if_dead(ptr);
            }
        }
        sys::spdk_thread_poller_rc_SPDK_POLLER_IDLE as i32
    })
}

/// `submit_request` of the jraid bdev.
pub(crate) unsafe extern "C" fn submit_request(
    ch: *mut sys::spdk_io_channel,
    io: *mut sys::spdk_bdev_io,
) {
    guard("submit_request", || {
        // SAFETY: `ch` is a channel of our io_device (from `get_io_channel`).
        let ptr = unsafe { ctx_of(ch) };
        {
            // SAFETY: live context of this thread; no other borrow is live here (completions
            // are issued by `pump` only after its borrow ends).
            let ctx = unsafe { &mut *ptr };
            // SAFETY: `io` is a live bdev_io handed to us.
            let ty = unsafe { (*io).type_ } as u32;
            match ty {
                sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_READ => {
                    // SAFETY: read bdev_io: `u.bdev` is active; `iovs` has at least one entry.
                    let has_buf = unsafe {
                        let b = &(*io).u.bdev;
                        !b.iovs.is_null() && !(*b.iovs).iov_base.is_null()
                    };
                    if has_buf {
                        if ctx.start_read(io) {
                            // Straight to a member: nothing for `pump` to do.
                            return;
                        }
                    } else {
                        let len = ctx.io_bytes(io) as u64;
                        // SAFETY: a read without buffers; `get_buf_done` runs later on this
                        // thread.
                        unsafe { sys::spdk_bdev_io_get_buf(io, Some(get_buf_done), len) };
                    }
                }
                sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_WRITE => ctx.start_write(io),
                sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_FLUSH => {
                    ctx.submit_user(io, UserOp::Flush, None)
                }
                // Nothing is queued outside the engine, and the engine finishes what it
                // started: a reset aborts nothing, it completes once every channel of the
                // volume has drained what it had in flight.
                sys::spdk_bdev_io_type_SPDK_BDEV_IO_TYPE_RESET => reset(ctx, io),
                _ => ctx
                    .finished
                    .push((io, sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_FAILED)),
            }
        }
        // SAFETY: no borrow of the context is live.
        unsafe { pump(ptr) };
    })
}

/// Retry period while a reset waits for a channel to drain.
const RESET_POLL_US: u64 = 100;

/// A RESET of the volume: complete it (on this thread) once every channel of the volume has
/// nothing in flight. SPDK's bdev layer holds new I/O back while a reset runs.
fn reset(ctx: &mut ChanCtx, io: *mut sys::spdk_bdev_io) {
    let io = SendPtr(io);
    let name = ctx.vol.name.clone();
    super::life::each_channel_until(
        ctx.vol.io_device(),
        RESET_POLL_US,
        Box::new(|c: &mut ChanCtx| c.idle()),
        move || {
            let io = io;
            ffi::infolog!("volume {name}: reset: every channel drained");
            // SAFETY: the reset bdev_io was submitted on this thread (`then` runs where
            // `each_channel_until` was called) and is completed once, here.
            unsafe {
                sys::spdk_bdev_io_complete(
                    io.0,
                    sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_SUCCESS,
                )
            };
        },
    );
}

unsafe extern "C" fn get_buf_done(
    ch: *mut sys::spdk_io_channel,
    io: *mut sys::spdk_bdev_io,
    ok: bool,
) {
    guard("get_buf", || {
        // SAFETY: `ch` is the channel the read was submitted on (ours).
        let ptr = unsafe { ctx_of(ch) };
        {
            // SAFETY: live context of this thread, not otherwise borrowed.
            let ctx = unsafe { &mut *ptr };
            if ok {
                ctx.start_read(io);
            } else {
                // SPDK waits for a buffer itself when none is free; `false` means the read is
                // larger than any buffer it has. NOMEM would be retried forever: fail it.
                ffi::errlog!(
                    "volume {}: a {}-byte read without a buffer is larger than SPDK's largest I/O buffer",
                    ctx.vol.name,
                    ctx.io_bytes(io)
                );
                ctx.finished
                    .push((io, sys::spdk_bdev_io_status_SPDK_BDEV_IO_STATUS_FAILED));
            }
        }
        // SAFETY: no borrow is live.
        unsafe { pump(ptr) };
    })
}
