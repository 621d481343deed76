//! SPDK lifetimes in one place, beside the device slots of `backend.rs` (a channel put only once
//! its I/O has drained) and the shared [`super::base::BaseBdev`] handle (a descriptor closed by
//! its last holder, on the thread that opened it):
//!
//! - [`Poller`]: a registered poller that is unregistered when dropped (on its thread);
//! - [`later`]: run a closure once on this thread after a delay;
//! - [`each_channel_until`]: run a step on every channel of a volume, each on its own thread,
//!   retrying a step that cannot go on yet while holding a reference to its channel (never a
//!   cached pointer that SPDK may free in between), then run a closure on the calling thread.
#![allow(unsafe_code)]

use std::ffi::c_void;

use spdk_sys as sys;

use super::channel::{self, ChanCtx};
use super::ffi::{guard, SendPtr};

/// A registered SPDK poller, unregistered on drop. Created and dropped on one SPDK thread (the
/// owner of whatever holds it).
pub(crate) struct Poller(*mut sys::spdk_poller);

impl Poller {
    /// No poller.
    pub const fn none() -> Poller {
        Poller(std::ptr::null_mut())
    }

    /// Register `f(arg)` on this thread every `period_us` (0: every reactor iteration).
    ///
    /// # Safety
    /// `arg` stays valid for `f` until this poller is dropped or unregistered; both happen on
    /// this thread.
    pub unsafe fn register(
        f: unsafe extern "C" fn(*mut c_void) -> i32,
        arg: *mut c_void,
        period_us: u64,
    ) -> Poller {
        Poller(sys::spdk_poller_register(Some(f), arg, period_us))
    }

    /// Unregister now (idempotent).
    pub fn unregister(&mut self) {
        if !self.0.is_null() {
            // SAFETY: registered on this thread (see `register`), not yet unregistered;
            // SPDK nulls the pointer.
            unsafe { sys::spdk_poller_unregister(&mut self.0) };
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Run `f` once on this thread after `us` microseconds.
pub(crate) fn later(us: u64, f: Box<dyn FnOnce()>) {
    struct Once {
        poller: Poller,
        f: Option<Box<dyn FnOnce()>>,
    }
    unsafe extern "C" fn fire(arg: *mut c_void) -> i32 {
        guard("timer", || {
            // SAFETY: `arg` is the boxed Once registered below; taken back exactly once (its
            // poller is unregistered as the box drops, so it never fires again).
            let mut o = unsafe { Box::from_raw(arg as *mut Once) };
            o.poller.unregister();
            if let Some(f) = o.f.take() {
                f();
            }
            sys::spdk_thread_poller_rc_SPDK_POLLER_BUSY as i32
        })
    }
    let o = Box::into_raw(Box::new(Once {
        poller: Poller::none(),
        f: Some(f),
    }));
    // SAFETY: `o` lives until `fire` takes it back; the poller runs on this thread.
    unsafe { (*o).poller = Poller::register(fire, o as *mut c_void, us) };
}

/// A step on one channel: `true` when done there, `false` to be retried later on the same
/// channel (its context stays alive meanwhile).
pub(crate) type ChannelStep = dyn Fn(&mut ChanCtx) -> bool + Send + Sync;

struct EachCtx {
    io_device: SendPtr<c_void>,
    step: Box<ChannelStep>,
    retry_us: u64,
    then: Option<Box<dyn FnOnce()>>,
}

/// On every channel of the volume io_device `io_device`, each on its own thread: run `step`
/// until it returns true (retried every `retry_us`), then go on to the next channel; then
/// `then` on this thread. Channels created meanwhile are not visited (they are built from the
/// volume's current state).
pub(crate) fn each_channel_until(
    io_device: *mut c_void,
    retry_us: u64,
    step: Box<ChannelStep>,
    then: impl FnOnce() + 'static,
) {
    /// Retry on channel `ch` (a reference we hold) until the step holds.
    fn retry(i: SendPtr<sys::spdk_io_channel_iter>, ch: SendPtr<sys::spdk_io_channel>) {
        // SAFETY: `i` is kept by SPDK until we continue it; its ctx is our EachCtx (only
        // read); `ch` is this thread's channel, kept alive by the reference taken in `each`.
        unsafe {
            let e = &*(sys::spdk_io_channel_iter_get_ctx(i.0) as *const EachCtx);
            if !(e.step)(&mut *channel::ctx_of(ch.0)) {
                return later(e.retry_us, Box::new(move || retry(i, ch)));
            }
            // Drop our reference (the channel is destroyed later, by message, if it was the
            // last one), then go on.
            sys::spdk_put_io_channel(ch.0);
            sys::spdk_for_each_channel_continue(i.0, 0);
        }
    }
    unsafe extern "C" fn each(i: *mut sys::spdk_io_channel_iter) {
        guard("channel step", || {
            // SAFETY: `i` is a live iterator over a volume io_device; its ctx is our EachCtx;
            // the channel is this thread's, alive during this call.
            unsafe {
                let e = &*(sys::spdk_io_channel_iter_get_ctx(i) as *const EachCtx);
                let ch = sys::spdk_io_channel_iter_get_channel(i);
                if (e.step)(&mut *channel::ctx_of(ch)) {
                    return sys::spdk_for_each_channel_continue(i, 0);
                }
                // Not yet: hold a reference so the channel (and its context) outlives the
                // wait; `spdk_get_io_channel` on this thread returns this same channel.
                let held = sys::spdk_get_io_channel(e.io_device.0);
                debug_assert_eq!(held, ch);
                later(
                    e.retry_us,
                    Box::new(move || retry(SendPtr(i), SendPtr(held))),
                );
            }
        })
    }
    unsafe extern "C" fn done(i: *mut sys::spdk_io_channel_iter, _status: i32) {
        guard("channel steps done", || {
            // SAFETY: the ctx was boxed by `each_channel_until` and is consumed once, here.
            let mut e =
                unsafe { Box::from_raw(sys::spdk_io_channel_iter_get_ctx(i) as *mut EachCtx) };
            if let Some(f) = e.then.take() {
                f();
            }
        })
    }
    let ctx = Box::into_raw(Box::new(EachCtx {
        io_device: SendPtr(io_device),
        step,
        retry_us,
        then: Some(Box::new(then)),
    }));
    // SAFETY: the io_device is registered (its volume is in the registry); `done` runs on this
    // thread and frees the context.
    unsafe {
        sys::spdk_for_each_channel(io_device, Some(each), ctx as *mut c_void, Some(done));
    }
}
