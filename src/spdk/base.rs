//! Base bdevs (members and journals): open, claim, close, and the one-off I/O that creation,
//! examine and recovery do on the app thread.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use spdk_sys as sys;

use super::dma::{self, DmaBuf};
use super::ffi::{self, cstring, guard, warnlog, SendPtr};
use crate::engine::{Buf, IoOp};

/// An open (and, once claimed, owned) bdev below a jraid volume: a shared handle.
///
/// Everything that does I/O on the bdev holds a clone — the volume, each reactor's channel slot
/// (see `backend::DevSlot`) and each one-off I/O ([`RawDev`]) — so the descriptor stays open
/// until the last I/O issued through it has completed, whoever lets go first. The descriptor
/// is closed when the last clone is dropped, on the thread that opened it (SPDK requires it):
/// directly when that is the current thread, by a message to it otherwise.
#[derive(Clone)]
pub(crate) struct BaseBdev(Arc<BaseInner>);

impl std::ops::Deref for BaseBdev {
    type Target = BaseInner;
    fn deref(&self) -> &BaseInner {
        &self.0
    }
}

/// The open descriptor behind a [`BaseBdev`].
pub(crate) struct BaseInner {
    /// Bdev name.
    pub name: String,
    /// Open descriptor (read-write).
    desc: NonNull<sys::spdk_bdev_desc>,
    /// The bdev.
    bdev: NonNull<sys::spdk_bdev>,
    /// Bytes per block.
    pub block_size: u32,
    /// Size in blocks.
    pub num_blocks: u64,
    /// The bdev caches writes volatilely (a flush makes them durable).
    pub write_cache: bool,
    /// Bdev uuid.
    pub uuid: [u8; 16],
    /// I/O needs memory the SPDK env can translate (see [`super::dma`]).
    pub dma: bool,
    /// Context of the event callback (the bdev's name), freed after close.
    event_ctx: *mut String,
    /// The thread that opened the descriptor (and must close it).
    thread: *mut sys::spdk_thread,
    /// Of a window ([`BaseBdev::window`]): where its block 0 is on the bdev; 0 otherwise.
    pub offset_blocks: u64,
    /// Of a window: the handle whose descriptor it uses (kept open by this one).
    parent: Option<BaseBdev>,
}

// SAFETY: the descriptor is used from any reactor only to get I/O channels and submit I/O on
// them (thread-safe in SPDK); it is opened on the app thread and closed on the thread that
// opened it (see Drop), whichever thread drops the last handle.
unsafe impl Send for BaseInner {}
// SAFETY: see Send; shared access only reads the fields or gets I/O channels.
unsafe impl Sync for BaseInner {}

impl Drop for BaseInner {
    fn drop(&mut self) {
        if self.parent.is_some() {
            // A window: the descriptor is its parent's, closed when the parent's last handle
            // goes (this one's among them).
            return;
        }
        let (desc, ctx) = (SendPtr(self.desc.as_ptr()), SendPtr(self.event_ctx));
        let close = move || {
            let (desc, ctx) = (desc, ctx);
            // SAFETY: the descriptor was opened by `open` on this thread and is closed once
            // (the last handle is gone, so no I/O of ours is in flight on it and every
            // channel of ours to it has been put); closing releases a claim taken through it.
            unsafe { sys::spdk_bdev_close(desc.0) };
            // SAFETY: after close no event can arrive, so the context is ours again.
            drop(unsafe { Box::from_raw(ctx.0) });
        };
        if self.thread == ffi::current_thread() || !ffi::send_to(self.thread, close) {
            // On the opening thread (always so for the app thread's own drops); or that thread
            // has exited, and with it every reactor that could still use the descriptor.
            let (desc, ctx) = (desc, ctx);
            // SAFETY: as in `close`.
            unsafe {
                sys::spdk_bdev_close(desc.0);
                drop(Box::from_raw(ctx.0));
            }
        }
    }
}

/// Why a base bdev cannot be used.
#[derive(Debug)]
pub(crate) enum BaseError {
    /// No bdev of that name.
    NotFound(String),
    /// Another module (or volume) holds a claim.
    Claimed(String),
    /// Some other SPDK error (errno).
    Other(String, i32),
}

impl std::fmt::Display for BaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseError::NotFound(n) => write!(f, "bdev {n} not found"),
            BaseError::Claimed(n) => write!(f, "bdev {n} is already claimed"),
            BaseError::Other(n, rc) => write!(f, "bdev {n}: error {rc}"),
        }
    }
}

/// Bdev events (hot remove) of a base bdev.
unsafe extern "C" fn base_event(
    ty: sys::spdk_bdev_event_type,
    _bdev: *mut sys::spdk_bdev,
    ctx: *mut c_void,
) {
    guard("base bdev event", || {
        // SAFETY: `ctx` is the `event_ctx` String of a BaseBdev, freed only after the close
        // that stops these events.
        let name = unsafe { &*(ctx as *const String) }.clone();
        if ty == sys::spdk_bdev_event_type_SPDK_BDEV_EVENT_REMOVE {
            super::bdev::base_removed(&name);
        } else {
            super::ffi::infolog!("bdev {name}: event {ty} ignored");
        }
    })
}

/// What one-off I/O needs of a base bdev: a handle that keeps the descriptor open until the
/// I/O is over, whatever the volume does meanwhile.
#[derive(Clone)]
pub(crate) struct RawDev {
    base: BaseBdev,
    /// Bytes per block.
    pub block_size: u32,
    /// Size in blocks.
    pub num_blocks: u64,
    /// Volatile write cache.
    pub write_cache: bool,
    /// I/O needs memory the SPDK env can translate.
    pub dma: bool,
}

impl BaseBdev {
    /// Open `name` read-write (not yet claimed).
    pub fn open(name: &str) -> Result<BaseBdev, BaseError> {
        Self::open_mode(name, true)
    }

    /// Open `name` read-only (examine).
    pub fn open_ro(name: &str) -> Result<BaseBdev, BaseError> {
        Self::open_mode(name, false)
    }

    fn open_mode(name: &str, write: bool) -> Result<BaseBdev, BaseError> {
        let cname = cstring(name);
        let event_ctx = Box::into_raw(Box::new(name.to_owned()));
        let mut desc: *mut sys::spdk_bdev_desc = std::ptr::null_mut();
        // SAFETY: `cname` is NUL-terminated; `base_event` matches the callback type and its
        // context lives until after `spdk_bdev_close`; `desc` is a valid out-pointer.
        let rc = unsafe {
            sys::spdk_bdev_open_ext(
                cname.as_ptr(),
                write,
                Some(base_event),
                event_ctx as *mut c_void,
                &mut desc,
            )
        };
        let Some(desc) = NonNull::new(desc).filter(|_| rc == 0) else {
            // SAFETY: the open failed, so SPDK holds no reference to `event_ctx`.
            drop(unsafe { Box::from_raw(event_ctx) });
            return Err(if rc == -libc_enodev() {
                BaseError::NotFound(name.to_owned())
            } else if rc == -1 || rc == -libc_eperm() {
                BaseError::Claimed(name.to_owned())
            } else {
                BaseError::Other(name.to_owned(), rc)
            });
        };
        // SAFETY: `desc` was just opened; the bdev lives while the descriptor is open.
        let bdev = unsafe { sys::spdk_bdev_desc_get_bdev(desc.as_ptr()) };
        let bdev = NonNull::new(bdev).expect("open descriptor has a bdev");
        // SAFETY: `bdev` is live (descriptor open); these getters only read it.
        let (block_size, num_blocks, write_cache, uuid, dma) = unsafe {
            let u = sys::spdk_bdev_get_uuid(bdev.as_ptr());
            (
                sys::spdk_bdev_get_block_size(bdev.as_ptr()),
                sys::spdk_bdev_get_num_blocks(bdev.as_ptr()),
                sys::spdk_bdev_has_write_cache(bdev.as_ptr()),
                (*u).u.raw,
                dma::device_needs_dma(bdev.as_ptr()),
            )
        };
        Ok(BaseBdev(Arc::new(BaseInner {
            name: name.to_owned(),
            desc,
            bdev,
            block_size,
            num_blocks,
            write_cache,
            uuid,
            dma,
            event_ctx,
            thread: ffi::current_thread(),
            offset_blocks: 0,
            parent: None,
        })))
    }

    /// A window onto `num_blocks` blocks of this bdev from block `offset_blocks` (the journal
    /// on the members: a member's journal area as a journal device of its own). It goes
    /// through this handle's descriptor (kept open while the window lives) and has the same
    /// name, so a hot-remove of the bdev is the removal of both. Every I/O through it, and
    /// every flush, is shifted by the offset.
    pub fn window(&self, offset_blocks: u64, num_blocks: u64) -> BaseBdev {
        BaseBdev(Arc::new(BaseInner {
            name: self.name.clone(),
            desc: self.desc,
            bdev: self.bdev,
            block_size: self.block_size,
            num_blocks,
            write_cache: self.write_cache,
            uuid: self.uuid,
            dma: self.dma,
            event_ctx: std::ptr::null_mut(),
            thread: self.thread,
            offset_blocks: self.offset_blocks + offset_blocks,
            parent: Some(self.clone()),
        }))
    }

    /// Claim the bdev for the jraid module (one writer: us); released when the descriptor
    /// closes.
    pub fn claim(&mut self) -> Result<(), BaseError> {
        // SAFETY: the descriptor is open; NULL options are allowed; the module is a static.
        let rc = unsafe {
            sys::spdk_bdev_module_claim_bdev_desc(
                self.desc.as_ptr(),
                sys::spdk_bdev_claim_type_SPDK_BDEV_CLAIM_READ_MANY_WRITE_ONE,
                std::ptr::null_mut(),
                super::module_ptr(),
            )
        };
        if rc != 0 {
            return Err(BaseError::Claimed(self.name.clone()));
        }
        if self.dma {
            super::ffi::noticelog!(
                "bdev {}: needs DMA-able memory; I/O from unregistered buffers is bounced",
                self.name
            );
        }
        Ok(())
    }

    /// Handle for one-off I/O (holds the descriptor open until that I/O is over).
    pub fn raw(&self) -> RawDev {
        RawDev {
            base: self.clone(),
            block_size: self.block_size,
            num_blocks: self.num_blocks,
            write_cache: self.write_cache,
            dma: self.dma,
        }
    }

    /// The raw descriptor.
    pub fn desc(&self) -> *mut sys::spdk_bdev_desc {
        self.desc.as_ptr()
    }

    /// The raw bdev.
    pub fn bdev(&self) -> *mut sys::spdk_bdev {
        self.bdev.as_ptr()
    }

    /// This thread's I/O channel to the bdev (NULL on failure); put it back with
    /// `spdk_put_io_channel` on the same thread.
    pub fn get_channel(&self) -> *mut sys::spdk_io_channel {
        // SAFETY: the descriptor is open; SPDK returns this thread's channel or NULL.
        unsafe { sys::spdk_bdev_get_io_channel(self.desc.as_ptr()) }
    }
}

fn libc_enodev() -> i32 {
    19
}

fn libc_eperm() -> i32 {
    1
}

/// Start one single-segment read or write (`iov`), or a flush of the whole device, on `desc`
/// through `ch`; `cb(arg)` runs when it ends. Returns SPDK's rc (0, -ENOMEM, or another error).
/// `offset` shifts every block of it (a window of the bdev: [`BaseBdev::window`]; the flush
/// covers the window's `num_blocks` from there).
///
/// # Safety
/// `desc` is open, `ch` is its channel on the current thread, and `iov` (for a read or write)
/// points at a buffer of `blocks` blocks that stays alive, with `arg`, until `cb` runs.
#[allow(clippy::too_many_arguments)] // SPDK's own calls take these, plus the op
pub(crate) unsafe fn submit_blocks(
    desc: *mut sys::spdk_bdev_desc,
    ch: *mut sys::spdk_io_channel,
    op: IoOp,
    iov: *mut sys::iovec,
    lba: u64,
    blocks: u64,
    num_blocks: u64,
    offset: u64,
    cb: unsafe extern "C" fn(*mut sys::spdk_bdev_io, bool, *mut c_void),
    arg: *mut c_void,
) -> i32 {
    let lba = lba + offset;
    match op {
        IoOp::Read => sys::spdk_bdev_readv_blocks(desc, ch, iov, 1, lba, blocks, Some(cb), arg),
        IoOp::Write => sys::spdk_bdev_writev_blocks(desc, ch, iov, 1, lba, blocks, Some(cb), arg),
        IoOp::Flush => sys::spdk_bdev_flush_blocks(desc, ch, offset, num_blocks, Some(cb), arg),
    }
}

/// ENOMEM as SPDK returns it negated.
pub(crate) const ENOMEM: i32 = 12;

struct RawIo {
    iov: sys::iovec,
    buf: Option<Buf>,
    /// The bounce buffer `iov` points into, for a device that needs DMA memory.
    bounce: Option<DmaBuf>,
    op: IoOp,
    ch: *mut sys::spdk_io_channel,
    /// Keeps the descriptor open (and `ch` valid) until the I/O is over.
    _dev: RawDev,
    done: Box<dyn FnOnce(bool, Option<Buf>)>,
}

unsafe extern "C" fn raw_io_done(io: *mut sys::spdk_bdev_io, ok: bool, arg: *mut c_void) {
    guard("setup I/O completion", || {
        // SAFETY: `arg` is the RawIo boxed by `raw_io`, handed back exactly once; `io` is the
        // completed bdev_io, freed exactly once here.
        let mut r = unsafe {
            sys::spdk_bdev_free_io(io);
            Box::from_raw(arg as *mut RawIo)
        };
        // SAFETY: the channel was got on this thread by `raw_io`.
        unsafe { sys::spdk_put_io_channel(r.ch) };
        if let (true, IoOp::Read, Some(bounce), Some(b)) =
            (ok, r.op, r.bounce.as_ref(), r.buf.as_mut())
        {
            let len = b.len();
            b.as_mut_slice().copy_from_slice(bounce.slice(len));
        }
        (r.done)(ok, r.buf);
    })
}

/// One I/O on `dev` from the app thread outside any volume: `blocks` blocks at `lba` into or from
/// `buf` (reads and writes), or a flush of the whole bdev. `done` runs later on this thread
/// (also on submission failure, after this call returns).
pub(crate) fn raw_io(
    dev: RawDev,
    op: IoOp,
    lba: u64,
    buf: Option<Buf>,
    done: impl FnOnce(bool, Option<Buf>) + 'static,
) {
    let desc = dev.base.desc();
    // SAFETY: `dev` holds the descriptor open; the RawIo below keeps holding it until `done`.
    let ch = unsafe { sys::spdk_bdev_get_io_channel(desc) };
    if ch.is_null() {
        warnlog!("setup I/O: no I/O channel");
        let thread = ffi::current_thread();
        let done = SendBox(Box::new(move || done(false, buf)));
        ffi::send_to(thread, move || {
            let d = done;
            (d.0)()
        });
        return;
    }
    let mut r = Box::new(RawIo {
        iov: sys::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        },
        buf,
        bounce: None,
        op,
        ch,
        _dev: dev.clone(),
        done: Box::new(done),
    });
    let blocks = r.buf.as_ref().map_or(dev.num_blocks, |b| {
        (b.len() / dev.block_size as usize) as u64
    });
    if let Some(b) = r.buf.as_mut() {
        r.iov.iov_len = b.len();
        r.iov.iov_base = b.as_mut_slice().as_mut_ptr() as *mut c_void;
        if dev.dma && !b.is_runtime_memory() && dma::untranslatable(b.as_slice().as_ptr(), b.len())
        {
            // Setup I/O is rare: a bounce buffer of its own, freed with the RawIo.
            match DmaBuf::alloc(b.len()) {
                Some(mut bounce) => {
                    if op == IoOp::Write {
                        bounce.slice_mut(b.len()).copy_from_slice(b.as_slice());
                    }
                    r.iov.iov_base = bounce.as_mut_ptr();
                    r.bounce = Some(bounce);
                }
                None => warnlog!("setup I/O: no DMA memory for a bounce buffer"),
            }
        }
    }
    let raw = Box::into_raw(r);
    // SAFETY: descriptor and channel are live; the iovec and its buffer live in the RawIo box
    // until `raw_io_done` takes it back.
    let rc = unsafe {
        let iov = std::ptr::addr_of_mut!((*raw).iov);
        submit_blocks(
            desc,
            ch,
            op,
            iov,
            lba,
            blocks,
            dev.num_blocks,
            dev.base.offset_blocks,
            raw_io_done,
            raw as *mut c_void,
        )
    };
    if rc != 0 {
        // SAFETY: submission failed, so SPDK will not call back: the box is ours again, and the
        // channel was got above on this thread.
        let r = unsafe {
            let r = Box::from_raw(raw);
            sys::spdk_put_io_channel(r.ch);
            r
        };
        warnlog!("setup I/O failed to start ({rc})");
        let thread = ffi::current_thread();
        let RawIo { buf, done, .. } = *r;
        let done = SendBox(Box::new(move || done(false, buf)));
        ffi::send_to(thread, move || {
            let d = done;
            (d.0)()
        });
    }
}

/// A boxed closure sent to the thread it came from.
struct SendBox(Box<dyn FnOnce()>);
// SAFETY: only ever sent to the current thread (see `raw_io`), so it never runs elsewhere.
unsafe impl Send for SendBox {}
