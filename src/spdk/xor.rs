//! Which XOR kernel computes parity under SPDK: ISA-L's (through `spdk_xor_gen`, see
//! [`super::ffi::xor_gen`]) or the engine's own ([`crate::parity`]), chosen apart for the two
//! shapes the write path uses, since neither kernel is the faster one for both on every CPU:
//!
//! - **full**: `dst = a ^ b ^ ...` into a buffer of its own (a full stripe's parity);
//! - **in place**: `dst ^= a ^ b ^ ...` where `dst` holds the old parity or an old strip (a
//!   read-modify-write's update, a reconstruct-write's parity built in an old-data buffer).
//!   ISA-L reads the destination as one of its sources right before it stores the same bytes;
//!   on some CPUs that runs several times slower than the engine's kernel (the AMD EPYC VMs
//!   here: 744 ns against 125 ns per 4 KiB in this module's start-up timing under bdevperf).
//!
//! `bdev_jraid_set_options` `xor_kernel` picks: `"isal"` or `"native"` for both, or `"auto"`
//! (the default): at module start (and when the option is set at runtime) each shape is timed
//! with both kernels on page-aligned buffers (a full stripe of three 64 KiB strips, a 4 KiB
//! in-place update with two sources; best of several rounds, a few milliseconds in all) and
//! the faster one is used; the choice and the timings go to SPDK's log. Both kernels give the
//! same bytes (`tests/spdk/test_scrub.sh` scrubs a volume written under each); only the speed
//! differs.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use crate::engine::Buf;

use super::ffi;

/// The `xor_kernel` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Setting {
    /// Time both kernels for each shape and use the faster.
    Auto = 0,
    /// ISA-L's for both shapes (where its alignment is met; the engine's otherwise).
    Isal = 1,
    /// The engine's for both shapes.
    Native = 2,
}

impl Setting {
    pub(crate) fn parse(s: &str) -> Option<Setting> {
        match s {
            "auto" => Some(Setting::Auto),
            "isal" => Some(Setting::Isal),
            "native" => Some(Setting::Native),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Setting::Auto => "auto",
            Setting::Isal => "isal",
            Setting::Native => "native",
        }
    }

    fn of_code(c: u8) -> Setting {
        match c {
            1 => Setting::Isal,
            2 => Setting::Native,
            _ => Setting::Auto,
        }
    }
}

/// The option as last set (module-wide).
static SETTING: AtomicU8 = AtomicU8::new(0);
/// Whether each shape runs ISA-L's kernel (else the engine's). Until [`apply`] first runs
/// (module start), ISA-L's out of place and the engine's in place.
static FULL_ISAL: AtomicBool = AtomicBool::new(true);
static IN_PLACE_ISAL: AtomicBool = AtomicBool::new(false);
/// Whether [`apply`] has run (the module has started): a later [`set`] applies at once.
static APPLIED: AtomicBool = AtomicBool::new(false);

/// The `xor_kernel` option as last set.
pub(crate) fn setting() -> Setting {
    Setting::of_code(SETTING.load(Relaxed))
}

/// Set the option: the kernels follow at once at runtime; set before the module starts (a
/// JSON config's startup phase), at its start.
pub(crate) fn set(s: Setting) {
    SETTING.store(s as u8, Relaxed);
    if APPLIED.load(Relaxed) {
        apply();
    }
}

/// Choose each shape's kernel from the option (timing both under `auto`), and log it.
pub(crate) fn apply() {
    let s = setting();
    let (full, in_place) = match s {
        Setting::Isal => (true, true),
        Setting::Native => (false, false),
        Setting::Auto => {
            let (full, in_place) = (time_full(), time_in_place());
            ffi::noticelog!(
                "jraid XOR kernels (xor_kernel auto): full-stripe parity {} (ISA-L {}, native \
                 {:.0} ns per 3 x 64 KiB), in-place update {} (ISA-L {}, native {:.0} ns per \
                 4 KiB)",
                kernel_name(full.faster_isal()),
                full.isal_text(),
                full.native_ns,
                kernel_name(in_place.faster_isal()),
                in_place.isal_text(),
                in_place.native_ns
            );
            (full.faster_isal(), in_place.faster_isal())
        }
    };
    FULL_ISAL.store(full, Relaxed);
    IN_PLACE_ISAL.store(in_place, Relaxed);
    APPLIED.store(true, Relaxed);
    if s != Setting::Auto {
        ffi::noticelog!(
            "jraid XOR kernels (xor_kernel {}): both {}",
            s.name(),
            kernel_name(full)
        );
    }
}

fn kernel_name(isal: bool) -> &'static str {
    if isal {
        "ISA-L"
    } else {
        "native"
    }
}

/// `dst = xor(srcs)` with the kernel chosen for full-stripe parity.
pub(crate) fn xor_into(dst: &mut [u8], srcs: &[&[u8]]) {
    if !FULL_ISAL.load(Relaxed) || !ffi::xor_gen(dst, false, srcs) {
        crate::parity::xor_into(dst, srcs);
    }
}

/// `dst ^= xor(srcs)` with the kernel chosen for in-place updates.
pub(crate) fn xor_acc(dst: &mut [u8], srcs: &[&[u8]]) {
    if srcs.is_empty() || !IN_PLACE_ISAL.load(Relaxed) || !ffi::xor_gen(dst, true, srcs) {
        crate::parity::xor_acc_all(dst, srcs);
    }
}

/// `parity ^= old ^ new` with the kernel chosen for in-place updates.
pub(crate) fn xor_update(parity: &mut [u8], old: &[u8], new: &[u8]) {
    if !IN_PLACE_ISAL.load(Relaxed) || !ffi::xor_gen(parity, true, &[old, new]) {
        crate::parity::update(parity, old, new);
    }
}

/// Best times of one shape: ISA-L's (`None` where it does not run: SPDK without ISA-L, or
/// its alignment not met) and the engine's.
struct Timing {
    isal_ns: Option<f64>,
    native_ns: f64,
}

impl Timing {
    fn faster_isal(&self) -> bool {
        self.isal_ns.is_some_and(|i| i <= self.native_ns)
    }

    fn isal_text(&self) -> String {
        match self.isal_ns {
            Some(ns) => format!("{ns:.0} ns"),
            None => "unavailable".to_string(),
        }
    }
}

/// Rounds per kernel; the best one counts (the others met interrupts, a neighbour, a cold
/// cache).
const ROUNDS: usize = 7;

/// Nanoseconds per call of `f`, best of [`ROUNDS`] rounds of `calls` calls (after one
/// warm-up round); `None` as soon as a call says it did not run.
fn best_ns(calls: usize, mut f: impl FnMut() -> bool) -> Option<f64> {
    let mut best = f64::INFINITY;
    for round in 0..=ROUNDS {
        let t = Instant::now();
        for _ in 0..calls {
            if !f() {
                return None;
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / calls as f64;
        if round > 0 {
            best = best.min(ns);
        }
    }
    Some(best)
}

/// Page-aligned buffers of `len` bytes, each a different pattern.
fn buffers(n: usize, len: usize) -> Vec<Buf> {
    (0..n)
        .map(|i| {
            let mut b = Buf::new(len);
            for (k, x) in b.as_mut_slice().iter_mut().enumerate() {
                *x = (k as u8).wrapping_mul(31).wrapping_add(i as u8);
            }
            b
        })
        .collect()
}

/// A full stripe's parity on four members: three 64 KiB strips into a fourth buffer.
fn time_full() -> Timing {
    const LEN: usize = 64 << 10;
    let mut bufs = buffers(4, LEN);
    let (dst, srcs) = bufs.split_last_mut().expect("four buffers");
    let srcs: Vec<&[u8]> = srcs.iter().map(|b| b.as_slice()).collect();
    let dst = dst.as_mut_slice();
    let isal_ns = best_ns(8, || ffi::xor_gen(dst, false, &srcs));
    let native_ns = best_ns(8, || {
        crate::parity::xor_into(dst, &srcs);
        true
    })
    .expect("the engine's kernel always runs");
    Timing { isal_ns, native_ns }
}

/// A read-modify-write's update: `parity ^= old ^ new` over 4 KiB.
fn time_in_place() -> Timing {
    const LEN: usize = 4 << 10;
    let mut bufs = buffers(3, LEN);
    let (parity, srcs) = bufs.split_first_mut().expect("three buffers");
    let (old, new) = (srcs[0].as_slice(), srcs[1].as_slice());
    let parity = parity.as_mut_slice();
    let isal_ns = best_ns(64, || ffi::xor_gen(parity, true, &[old, new]));
    let native_ns = best_ns(64, || {
        crate::parity::update(parity, old, new);
        true
    })
    .expect("the engine's kernel always runs");
    Timing { isal_ns, native_ns }
}
