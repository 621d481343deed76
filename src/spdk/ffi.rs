//! The FFI edge in one place: panic guards for C callbacks, SPDK logging, C strings, the
//! process-wide clock and small wrappers over SPDK threads.
#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use spdk_sys as sys;

/// Run the body of an `extern "C"` callback; a panic must not unwind into C: log it and abort.
pub(crate) fn guard<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            let why = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log(
                Level::Error,
                file!(),
                line!(),
                &format!("panic in {what}: {why}; aborting"),
            );
            std::process::abort();
        }
    }
}

/// SPDK log levels jraid uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    Error,
    Warn,
    Notice,
    Info,
}

/// Log through SPDK's logger (component "bdev_jraid"; `Info` only when that flag is on).
pub(crate) fn log(level: Level, file: &str, line: u32, msg: &str) {
    let lvl = match level {
        Level::Error => sys::spdk_log_level_SPDK_LOG_ERROR,
        Level::Warn => sys::spdk_log_level_SPDK_LOG_WARN,
        Level::Notice => sys::spdk_log_level_SPDK_LOG_NOTICE,
        Level::Info => {
            // SAFETY: reads a flag the shim's constructor registered; no arguments.
            if !unsafe { sys::jraid_log_flag_enabled() } {
                return;
            }
            sys::spdk_log_level_SPDK_LOG_INFO
        }
    };
    let file = cstring(file);
    let msg = cstring(msg);
    // SAFETY: both strings are NUL-terminated and outlive the call; the shim prints `msg` with
    // a "%s" format, so it is never interpreted as a format string.
    unsafe {
        sys::jraid_log(
            lvl as i32,
            file.as_ptr(),
            line as i32,
            c"jraid".as_ptr(),
            msg.as_ptr(),
        )
    };
}

/// Log an error: `errlog!("...", args)`.
macro_rules! errlog {
    ($($t:tt)*) => {
        $crate::spdk::ffi::log($crate::spdk::ffi::Level::Error, file!(), line!(), &format!($($t)*))
    };
}
/// Log a warning.
macro_rules! warnlog {
    ($($t:tt)*) => {
        $crate::spdk::ffi::log($crate::spdk::ffi::Level::Warn, file!(), line!(), &format!($($t)*))
    };
}
/// Log a notice.
macro_rules! noticelog {
    ($($t:tt)*) => {
        $crate::spdk::ffi::log($crate::spdk::ffi::Level::Notice, file!(), line!(), &format!($($t)*))
    };
}
/// Log at info level (printed when the "bdev_jraid" log flag is on).
macro_rules! infolog {
    ($($t:tt)*) => {
        $crate::spdk::ffi::log($crate::spdk::ffi::Level::Info, file!(), line!(), &format!($($t)*))
    };
}
pub(crate) use {errlog, infolog, noticelog, warnlog};

/// A C string from Rust text; interior NULs (never expected) are replaced.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).expect("NULs removed")
}

/// Microseconds on SPDK's tick clock (the TSC: one time base for every reactor, and far cheaper
/// than a clock_gettime per write; a journal clean reads it where members cache writes
/// volatilely, else takes [`recent_us`]). Falls back to a monotonic clock while the env is not
/// up (tick rate 0).
pub(crate) fn now_us() -> u64 {
    let Some(f) = us_per_tick() else {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        return EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64;
    };
    // SAFETY: no arguments; reads the tick counter.
    let ticks = unsafe { sys::spdk_get_ticks() };
    ((u128::from(ticks) * u128::from(f)) >> 32) as u64
}

/// Microseconds per tick as a 32.32 fixed-point factor (a multiply per conversion, not a 128-bit
/// division); `None` while the env is not up.
fn us_per_tick() -> Option<u64> {
    static US_PER_TICK: AtomicU64 = AtomicU64::new(0);
    let f = US_PER_TICK.load(Ordering::Relaxed);
    if f != 0 {
        return Some(f);
    }
    // SAFETY: no arguments; returns 0 before the env layer is initialised.
    let hz = unsafe { sys::spdk_get_ticks_hz() };
    if hz == 0 {
        return None;
    }
    let f = (((1_000_000u128) << 32) / u128::from(hz)).max(1) as u64;
    US_PER_TICK.store(f, Ordering::Relaxed);
    Some(f)
}

/// [`now_us`]'s clock as SPDK thread `thread`, the caller's, last read it: when its current poll
/// began, or when its last poller returned (SPDK keeps that tick count for each thread). Never
/// after the time [`now_us`] would give, at most one poll behind it, and a load where
/// [`now_us`] reads the tick counter (a `rdtsc`: 9.6 ns each on the 2-core AMD EPYC VM the
/// benches ran on). A null `thread`, or before its first poll: [`now_us`].
pub(crate) fn recent_us(thread: *mut sys::spdk_thread) -> u64 {
    let Some(f) = us_per_tick() else {
        return now_us();
    };
    if thread.is_null() {
        return now_us();
    }
    // SAFETY: `thread` is the caller's own SPDK thread (non-null above), live while it runs.
    let ticks = unsafe { sys::spdk_thread_get_last_tsc(thread) };
    if ticks == 0 {
        return now_us();
    }
    ((u128::from(ticks) * u128::from(f)) >> 32) as u64
}

/// The SPDK thread running the caller.
pub(crate) fn current_thread() -> *mut sys::spdk_thread {
    // SAFETY: no arguments; returns NULL outside an SPDK thread.
    unsafe { sys::spdk_get_thread() }
}

/// A numeric id of an SPDK thread (unique while it lives).
pub(crate) fn thread_id(t: *mut sys::spdk_thread) -> u64 {
    // SAFETY: `t` is a live thread handed out by SPDK.
    unsafe { sys::spdk_thread_get_id(t) }
}

/// Run `f` later on SPDK thread `thread` (always asynchronously). False when the thread is
/// exiting and the message could not be sent (then `f` is dropped unrun).
pub(crate) fn send_to<F: FnOnce() + Send + 'static>(thread: *mut sys::spdk_thread, f: F) -> bool {
    unsafe extern "C" fn run<F: FnOnce()>(arg: *mut c_void) {
        guard("thread message", || {
            // SAFETY: `arg` came from Box::into_raw below and is consumed exactly once.
            let f = unsafe { Box::from_raw(arg as *mut F) };
            f();
        })
    }
    let arg = Box::into_raw(Box::new(f)) as *mut c_void;
    // SAFETY: `thread` is a live SPDK thread; `run::<F>` takes ownership of `arg`.
    let rc = unsafe { sys::spdk_thread_send_msg(thread, Some(run::<F>), arg) };
    if rc != 0 {
        // SAFETY: SPDK refused the message, so `arg` is still ours.
        drop(unsafe { Box::from_raw(arg as *mut F) });
        return false;
    }
    true
}

/// A raw pointer that may cross threads; whoever dereferences it states why that is sound.
#[derive(Debug)]
pub(crate) struct SendPtr<T>(pub *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}

// SAFETY: SendPtr only carries the address; every dereference happens on the thread that owns
// the pointee (SPDK threads, channel contexts), which the users check or arrange.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above: sharing the address is harmless, dereferencing is the users' business.
unsafe impl<T> Sync for SendPtr<T> {}

/// Alignment at which SPDK's XOR runs its fast kernel (`spdk_xor_get_optimal_alignment`: 32
/// with ISA-L), read once; 0 until then.
static XOR_ALIGN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// XOR with ISA-L's kernels through `spdk_xor_gen`: `dst = srcs[0] ^ srcs[1] ^ ...`, or with
/// `accumulate` `dst ^= srcs[0] ^ ...`. Takes only what ISA-L runs at full speed: SPDK built
/// with ISA-L, every buffer aligned as it wants and `dst.len()` bytes long, two to
/// `MAX_MEMBERS + 1` inputs. Returns false, having done nothing, otherwise: the caller then
/// uses the engine's kernel ([`crate::parity`]), which gives the same bytes.
pub(crate) fn xor_gen(dst: &mut [u8], accumulate: bool, srcs: &[&[u8]]) -> bool {
    const MAX: usize = crate::layout::MAX_MEMBERS as usize + 1;
    let mut align = XOR_ALIGN.load(Ordering::Relaxed);
    if align == 0 {
        // SAFETY: a pure query of a constant of the SPDK build.
        align = unsafe { sys::spdk_xor_get_optimal_alignment() }.max(1);
        XOR_ALIGN.store(align, Ordering::Relaxed);
    }
    let n = srcs.len() + usize::from(accumulate);
    let aligned = |p: *const u8| (p as usize).is_multiple_of(align);
    if align < 32
        || !(2..=MAX).contains(&n)
        || u32::try_from(dst.len()).is_err()
        || !aligned(dst.as_ptr())
        || srcs
            .iter()
            .any(|s| s.len() != dst.len() || !aligned(s.as_ptr()))
    {
        return false;
    }
    let d = dst.as_mut_ptr();
    let mut ptrs = [std::ptr::null_mut::<c_void>(); MAX];
    let mut k = 0;
    if accumulate {
        ptrs[0] = d.cast();
        k = 1;
    }
    for s in srcs {
        ptrs[k] = s.as_ptr().cast_mut().cast();
        k += 1;
    }
    // Asked before the call: the answer's line is still near then, and not once ISA-L has
    // streamed a stripe through the caches (it was a cold load after the call).
    #[cfg(target_arch = "x86_64")]
    let avx = std::arch::is_x86_feature_detected!("avx");
    // SAFETY: `ptrs[..n]` point to `n` live buffers of `dst.len()` bytes each, `dst` borrowed
    // mutably for the call and the sources shared (ISA-L only reads them; they cannot overlap
    // `dst`, whose borrow is exclusive). With `accumulate` `dst` is also the first source: ISA-L
    // loads every source's bytes at an offset before it stores the result's bytes at that same
    // offset, so an in-place update reads each old byte before overwriting it.
    let rc = unsafe { sys::spdk_xor_gen(d.cast(), ptrs.as_mut_ptr(), n as u32, dst.len() as u32) };
    // ISA-L's AVX kernels return with the vector registers' upper halves dirty (no
    // `vzeroupper`); the legacy-SSE code compiled for the x86_64 baseline (this crate's and
    // SPDK's) would then pay a merge on every SSE instruction until the next clear: clear now.
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: `vzeroupper` (present with AVX, just checked) only zeroes bits 128 and up
        // of the vector registers; every vector register is declared clobbered (the C ABI's
        // caller-saved set), so the compiler keeps nothing in them across it.
        unsafe {
            std::arch::asm!(
                "vzeroupper",
                clobber_abi("C"),
                options(nomem, nostack, preserves_flags)
            )
        };
    }
    rc == 0
}

/// Ask for transparent huge pages over `len` bytes at `at` (the pages wholly inside it), where
/// the kernel lets a process ask (`transparent_hugepage=madvise`); a hint, errors ignored. For
/// [`crate::journal::JournalConfig::advise_state_memory`].
pub(crate) fn advise_huge_pages(at: *const u8, len: usize) {
    const PAGE: usize = 4096;
    let start = (at as usize).next_multiple_of(PAGE);
    let end = (at as usize).saturating_add(len) / PAGE * PAGE;
    if end > start {
        // SAFETY: madvise with MADV_HUGEPAGE changes no contents and no access rights: it only
        // lets the kernel back the range with huge pages. The range lies inside one live
        // allocation (the caller's), rounded inwards to page boundaries.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// A prefetch hint for the cache line at `at` (see [`crate::engine::Backend::prefetch`] and
/// [`crate::journal::JournalConfig::prefetch`]); never reads or writes through it.
pub(crate) fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults nor reads through the pointer (any
    // address is allowed), and SSE, which it needs, is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
