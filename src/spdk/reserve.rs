//! The reserve thread: where a device I/O goes when its reactor has no bdev_io for it.
//!
//! SPDK hands out bdev_ios from a cache per thread and a shared pool. A thread that meets
//! -ENOMEM can only wait (`spdk_bdev_queue_io_wait`); its waiters are woken only by a bdev_io
//! freed *on that thread*, and while it has waiters it takes none from the shared pool. SPDK
//! fills each thread's cache when the thread gets its first channel so that "this thread cannot
//! be starved": a thread whose cache is empty has that many I/Os in flight, whose completions
//! wake it. A jraid volume breaks that premise. Its user writes hold their bdev_ios while they
//! wait for a journal record, and the record (or, once it is durable, their member reads and
//! writes) may be the very I/O that met -ENOMEM: then nothing of that thread is in flight,
//! nothing frees a bdev_io there, and the volume stops for good while the shared pool has
//! plenty (bdevperf verify on two reactors over 72 bdev_ios: a stall with 29 of them free).
//!
//! So a device I/O that meets -ENOMEM on a volume's reactor is handed to this thread, which
//! runs nothing else. Its own cache is used only by such I/Os, and they wait for nothing but
//! their device: every one completes, frees its bdev_io here and wakes the next waiter here.
//! The completion goes back to the reactor that asked, which finishes the I/O as if it had
//! run there. Progress is guaranteed for as long as the volume's devices answer.
//!
//! Channels: each device channel a reactor holds ([`super::backend::DevSlot`]) has a twin
//! here, got when the slot opens ([`twin_open`]) and put when the last slot of that descriptor
//! is gone ([`twin_close`]). A twin holds a handle of its device, so the descriptor closes
//! after the twin is put. One thread's messages arrive in order: a slot's twin is there before
//! any I/O of that slot reaches this thread, and its close comes after the slot's last I/O
//! (a slot is dropped only when nothing counted in it is in flight).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use spdk_sys as sys;

use super::base::BaseBdev;
use super::ffi;

/// The reserve thread (null: not started, or stopped).
static THREAD: AtomicPtr<sys::spdk_thread> = AtomicPtr::new(std::ptr::null_mut());

/// A channel of the reserve thread to one descriptor.
struct Twin {
    ch: *mut sys::spdk_io_channel,
    /// Slots (on any reactor) that share it.
    refs: u32,
    /// Keeps the descriptor open until the channel is put.
    _hold: BaseBdev,
}

/// The twins, by descriptor address (a held descriptor cannot close, so its address is not
/// reused while it is a key). Locked only on the reserve thread (uncontended); a static rather
/// than a thread-local because a scheduler may move the SPDK thread between reactors.
struct Twins(Mutex<BTreeMap<usize, Twin>>);

// SAFETY: the channels in it are got, used and put only on the reserve thread.
unsafe impl Sync for Twins {}

static TWINS: Twins = Twins(Mutex::new(BTreeMap::new()));

fn twins() -> std::sync::MutexGuard<'static, BTreeMap<usize, Twin>> {
    TWINS.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start the reserve thread (module init). Without it, a device I/O that meets -ENOMEM waits
/// on its own reactor (`spdk_bdev_queue_io_wait`).
///
/// Only under SPDK's event framework (`spdk_app_start`: spdk_tgt, bdevperf, bdevio, nvmf_tgt),
/// whose reactors run every thread created; its first thread is named `app_thread`. The fio
/// plugin runs its own threads and polls a thread it did not create as if it were one of its
/// jobs, which crashes it; there (and in any other host) the module creates none.
pub(crate) fn start() {
    // SAFETY: no arguments; the app thread lives as long as the app.
    let app = unsafe { sys::spdk_thread_get_app_thread() };
    // SAFETY: a live thread's name is a NUL-terminated string it owns.
    let name = (!app.is_null())
        .then(|| unsafe { std::ffi::CStr::from_ptr(sys::spdk_thread_get_name(app)) });
    if name != Some(c"app_thread") {
        ffi::infolog!(
            "jraid: not under SPDK's event framework: no reserve thread; device I/O that finds no bdev_io waits on its thread"
        );
        return;
    }
    // SAFETY: the name is NUL-terminated; no cpumask (the app's scheduler places it).
    let t = unsafe { sys::spdk_thread_create(c"jraid_reserve".as_ptr(), std::ptr::null()) };
    if t.is_null() {
        ffi::warnlog!(
            "jraid: no reserve thread; device I/O that finds no bdev_io waits on its reactor"
        );
        return;
    }
    THREAD.store(t, Ordering::Release);
}

/// Stop it (module fini: every volume, and with it every twin, is gone).
pub(crate) fn stop() {
    let t = THREAD.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if t.is_null() {
        return;
    }
    let _ = ffi::send_to(t, || {
        let left = twins().len();
        if left > 0 {
            ffi::warnlog!("jraid reserve thread: {left} device channels still open at exit");
        }
        // SAFETY: called on the thread itself; SPDK finishes the exit once its channels are
        // put.
        unsafe { sys::spdk_thread_exit(ffi::current_thread()) };
    });
}

/// Whether the reserve thread runs.
pub(crate) fn running() -> bool {
    !THREAD.load(Ordering::Acquire).is_null()
}

/// Run `f` on the reserve thread. False (with `f` dropped unrun) when it does not run.
pub(crate) fn send(f: impl FnOnce() + Send + 'static) -> bool {
    let t = THREAD.load(Ordering::Acquire);
    !t.is_null() && ffi::send_to(t, f)
}

/// A reactor opened a channel to `b`: make sure the reserve thread has one too.
pub(crate) fn twin_open(b: &BaseBdev) {
    let hold = b.clone();
    send(move || {
        let key = hold.desc() as usize;
        let mut t = twins();
        if let Some(tw) = t.get_mut(&key) {
            tw.refs += 1;
            return;
        }
        let ch = hold.get_channel();
        if ch.is_null() {
            ffi::warnlog!("jraid reserve thread: no I/O channel to a device");
        }
        t.insert(
            key,
            Twin {
                ch,
                refs: 1,
                _hold: hold,
            },
        );
    });
}

/// A reactor put its channel to descriptor `desc`: put the twin with the last one.
pub(crate) fn twin_close(desc: *mut sys::spdk_bdev_desc) {
    let key = desc as usize;
    send(move || {
        let gone = {
            let mut t = twins();
            let Some(tw) = t.get_mut(&key) else {
                return;
            };
            tw.refs -= 1;
            if tw.refs > 0 {
                return;
            }
            t.remove(&key)
        };
        if let Some(tw) = gone {
            if !tw.ch.is_null() {
                // SAFETY: got on this thread by `twin_open`; every I/O through it was issued
                // for a slot that is gone now, so each has completed.
                unsafe { sys::spdk_put_io_channel(tw.ch) };
            }
            // `_hold` drops here: the descriptor closes (on its opening thread) if this was
            // its last handle.
        }
    });
}

/// The reserve thread's channel to `desc` (null: none). Call on the reserve thread only.
pub(crate) fn channel(desc: *mut sys::spdk_bdev_desc) -> *mut sys::spdk_io_channel {
    twins()
        .get(&(desc as usize))
        .map_or(std::ptr::null_mut(), |t| t.ch)
}
