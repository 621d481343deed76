//! Which XOR kernel computes parity under SPDK: ISA-L's (through `spdk_xor_gen`, see
//! [`super::ffi::xor_gen`]) or the engine's own ([`crate::parity`]), chosen apart for the two
//! shapes the write path uses, since neither kernel is the faster one for both on every CPU:
//!
//! - **full**: `dst = a ^ b ^ ...` into a buffer of its own (a full stripe's parity);
//! - **in place**: `dst ^= a ^ b ^ ...` where `dst` holds the old parity or an old strip (a
//!   read-modify-write's update, a reconstruct-write's parity built in an old-data buffer).
//!   ISA-L reads the destination as one of its sources right before it stores the same bytes;
//!   on some CPUs that runs several times slower than the engine's kernel (an AVX2 AMD EPYC VM:
//!   744 ns against 125 ns per 4 KiB in this module's start-up timing under bdevperf).
//!
//! `bdev_jraid_set_options` `xor_kernel` picks: `"isal"` or `"native"` for both, or `"auto"`
//! (the default): at module start (and when the option is set at runtime) each shape is timed
//! with both kernels on page-aligned buffers (full stripes of three 64 KiB strips, 4 KiB
//! in-place updates with two sources, about 2 MiB of each), the kernels taking turns for 15
//! rounds (the XOR log line came 4.4–5.7 ms after the reactor started, against 2.0–2.6 ms
//! with the earlier, shorter timing, on the machine measured). ISA-L's is used unless the
//! median of the rounds' ratios finds it at least 25 % slower ([`crate::parity::choice`]); the
//! choice and the timings go to SPDK's log. Both kernels give the same bytes
//! (`tests/spdk/test_scrub.sh` scrubs a volume written under each); only the speed differs.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use crate::engine::Buf;
use crate::parity::choice::{self, time_in_turns, KernelTiming};

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
                 {:.0} ns per 3 x 64 KiB{}), in-place update {} (ISA-L {}, native {:.0} ns per \
                 4 KiB{}); medians of {} rounds in turns, ISA-L unless {:.2} times slower",
                kernel_name(full.runtime_chosen()),
                isal_text(&full),
                full.native_ns,
                ratio_text(&full),
                kernel_name(in_place.runtime_chosen()),
                isal_text(&in_place),
                in_place.native_ns,
                ratio_text(&in_place),
                ROUNDS,
                choice::NATIVE_MARGIN
            );
            (full.runtime_chosen(), in_place.runtime_chosen())
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

/// Rounds per kernel, the two kernels taking turns ([`choice::time_in_turns`]).
const ROUNDS: usize = 15;

/// One round of `calls` calls of `run(index, isal)`: ns per call, or `None` when a call says
/// ISA-L's kernel did not run.
fn round_ns(calls: usize, isal: bool, run: &mut impl FnMut(usize, bool) -> bool) -> Option<f64> {
    let t = Instant::now();
    for i in 0..calls {
        if !run(i, isal) {
            return None;
        }
    }
    Some(t.elapsed().as_nanos() as f64 / calls as f64)
}

fn isal_text(t: &KernelTiming) -> String {
    match t.runtime_ns {
        Some(ns) => format!("{ns:.0} ns"),
        None => "unavailable".to_string(),
    }
}

fn ratio_text(t: &KernelTiming) -> String {
    match t.ratio {
        Some(r) => format!(", ISA-L ÷ native {r:.2}"),
        None => String::new(),
    }
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

/// Stripes (full) and updates (in place) the timing cycles through: about 2 MiB of buffers
/// for each shape, more than a core's nearest caches hold, as with the buffers of a queue of
/// writes. The times then come out as in a write workload: on one machine, ISA-L's update took
/// a median 213 ns per 4 KiB in these timings and 235 ns per write in a profile of 4 KiB
/// random writes, where one hot set of buffers gave 116 ns (`docs/bench/20261207-xorpick/`).
const FULL_SETS: usize = 8;
const IN_PLACE_SETS: usize = 160;

/// A full stripe's parity on four members: three 64 KiB strips into a fourth buffer.
fn time_full() -> KernelTiming {
    const LEN: usize = 64 << 10;
    let mut sets: Vec<Vec<Buf>> = (0..FULL_SETS).map(|_| buffers(4, LEN)).collect();
    let mut run = |i: usize, isal: bool| {
        let (dst, srcs) = sets[i % FULL_SETS].split_last_mut().expect("four buffers");
        let srcs = [srcs[0].as_slice(), srcs[1].as_slice(), srcs[2].as_slice()];
        let dst = dst.as_mut_slice();
        if isal {
            ffi::xor_gen(dst, false, &srcs)
        } else {
            crate::parity::xor_into(dst, &srcs);
            true
        }
    };
    time_in_turns(ROUNDS, |isal| round_ns(FULL_SETS, isal, &mut run))
}

/// A read-modify-write's update: `parity ^= old ^ new` over 4 KiB.
fn time_in_place() -> KernelTiming {
    const LEN: usize = 4 << 10;
    let mut sets: Vec<Vec<Buf>> = (0..IN_PLACE_SETS).map(|_| buffers(3, LEN)).collect();
    let mut run = |i: usize, isal: bool| {
        let (parity, srcs) = sets[i % IN_PLACE_SETS]
            .split_first_mut()
            .expect("three buffers");
        let (old, new) = (srcs[0].as_slice(), srcs[1].as_slice());
        let parity = parity.as_mut_slice();
        if isal {
            ffi::xor_gen(parity, true, &[old, new])
        } else {
            crate::parity::update(parity, old, new);
            true
        }
    };
    time_in_turns(ROUNDS, |isal| round_ns(IN_PLACE_SETS, isal, &mut run))
}
