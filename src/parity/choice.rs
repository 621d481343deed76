//! Choosing between two XOR kernels for one shape of work by timing them: the runtime's (ISA-L
//! under SPDK) and the engine's own ([`crate::parity`]). The timing itself (a clock around
//! calls of each kernel) is the runtime's; what is decided from the rounds is here, so that it
//! can be tested without a clock.
//!
//! The two kernels take turns, round by round: a change of the machine's speed during the
//! timing (a neighbour on the host, an interrupt, a frequency step) then falls on both alike.
//! The median of the per-round ratios decides, so one disturbed round does not. A near tie
//! goes to the runtime's kernel: within [`NATIVE_MARGIN`] the rounds cannot tell the two apart
//! from one start-up to the next, and a fixed preference keeps a volume's speed the same across
//! restarts (`docs/bench/20261207-xorpick/`).

/// The engine's kernel is chosen only where the runtime's takes this much longer (median of
/// the rounds' ratios) or more. On one machine where ISA-L's kernels took about 4 % less time
/// in both write workloads, the in-place ratio still ranged from 0.78 to 1.05 over 98
/// start-ups, and with a margin of 1.10 one start-up in ten of a later bench still ran the
/// engine's kernel in place (its profile: `parity::fold_group` where the others had ISA-L's,
/// `docs/bench/20261207-onoff-1t/`); on the AVX2 machines of earlier runs ISA-L in place was 6
/// times slower, far past this.
pub const NATIVE_MARGIN: f64 = 1.25;

/// What the rounds of one shape found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelTiming {
    /// The runtime kernel's median ns per call; `None` where it does not run (no such kernel,
    /// or its alignment not met).
    pub runtime_ns: Option<f64>,
    /// The engine kernel's median ns per call.
    pub native_ns: f64,
    /// Median over the rounds of the runtime's time ÷ the engine's in the same round.
    pub ratio: Option<f64>,
}

impl KernelTiming {
    /// Whether the runtime's kernel is the one to use.
    pub fn runtime_chosen(&self) -> bool {
        self.ratio.is_some_and(|r| r < NATIVE_MARGIN)
    }
}

/// Time both kernels in turns: `rounds` rounds of each after one warm-up round of each (not
/// counted). `round(true)` times one round of the runtime's kernel and returns its ns per call,
/// or `None` when that kernel does not run (it is not timed again); `round(false)` the same
/// for the engine's, which always runs.
pub fn time_in_turns(rounds: usize, mut round: impl FnMut(bool) -> Option<f64>) -> KernelTiming {
    assert!(rounds > 0, "at least one round");
    let (mut runtime, mut native, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut runtime_runs = true;
    for r in 0..=rounds {
        let t = if runtime_runs { round(true) } else { None };
        runtime_runs = t.is_some();
        let n = round(false).expect("the engine's kernel always runs");
        if r == 0 {
            continue; // warm-up
        }
        native.push(n);
        if let Some(t) = t {
            runtime.push(t);
            ratios.push(t / n.max(f64::MIN_POSITIVE));
        }
    }
    let runtime_ok = runtime_runs && !runtime.is_empty();
    KernelTiming {
        runtime_ns: runtime_ok.then(|| median(&mut runtime)),
        native_ns: median(&mut native),
        ratio: runtime_ok.then(|| median(&mut ratios)),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds whose ns come from a schedule: `cost(kernel is the runtime's, round index)`,
    /// the round index counting both kernels' rounds in the order they are timed.
    fn scheduled(rounds: usize, cost: impl Fn(bool, usize) -> Option<f64>) -> KernelTiming {
        let mut k = 0;
        time_in_turns(rounds, |runtime| {
            k += 1;
            cost(runtime, k - 1)
        })
    }

    #[test]
    fn a_clearly_faster_engine_kernel_is_chosen() {
        // The in-place update on an AVX2 EPYC VM: ISA-L 744 ns, the engine's 125 ns.
        let t = scheduled(15, |rt, _| Some(if rt { 744.0 } else { 125.0 }));
        assert!(!t.runtime_chosen());
        assert_eq!(t.runtime_ns, Some(744.0));
        assert_eq!(t.native_ns, 125.0);
    }

    #[test]
    fn a_faster_runtime_kernel_is_chosen() {
        let t = scheduled(15, |rt, _| Some(if rt { 180.0 } else { 200.0 }));
        assert!(t.runtime_chosen());
        assert_eq!(t.ratio, Some(0.9));
    }

    #[test]
    fn a_near_tie_goes_to_the_runtime_kernel() {
        for ratio in [0.98, 1.0, 1.05, 1.1, 1.2, 1.249] {
            let t = scheduled(15, |rt, _| Some(if rt { 100.0 * ratio } else { 100.0 }));
            assert!(t.runtime_chosen(), "ratio {ratio}");
        }
        let t = scheduled(15, |rt, _| Some(if rt { 126.0 } else { 100.0 }));
        assert!(!t.runtime_chosen(), "26 % slower");
    }

    /// The machine slows down during the timing (here 5 % per round): in turns, two kernels of
    /// the same cost still come out even. Timed apart (all of one kernel's rounds, then the
    /// other's), the one timed second would have looked about 1.6 times slower.
    #[test]
    fn a_drift_during_the_timing_falls_on_both_kernels() {
        let t = scheduled(15, |_, k| Some(100.0 * (1.0 + 0.05 * (k / 2) as f64)));
        assert_eq!(t.ratio, Some(1.0));
        assert!(t.runtime_chosen());
        // Faster by 10 % under the same drift: still found.
        let t = scheduled(15, |rt, k| {
            let base = if rt { 200.0 } else { 100.0 / 0.9 * 2.0 };
            Some(base * (1.0 + 0.05 * (k / 2) as f64))
        });
        assert!((t.ratio.unwrap() - 0.9).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn disturbed_rounds_do_not_decide() {
        // Four rounds of the runtime's kernel hit by an interrupt: the median ratio stays.
        let t = scheduled(15, |rt, k| {
            Some(match (rt, k / 2) {
                (true, r) if r % 4 == 1 => 500.0,
                (true, _) => 100.0,
                (false, _) => 110.0,
            })
        });
        assert!(t.runtime_chosen(), "{t:?}");
        assert_eq!(t.runtime_ns, Some(100.0));
    }

    #[test]
    fn a_runtime_kernel_that_does_not_run_is_never_chosen() {
        let mut runtime_calls = 0;
        let t = time_in_turns(15, |rt| {
            if rt {
                runtime_calls += 1;
                None
            } else {
                Some(100.0)
            }
        });
        assert_eq!(runtime_calls, 1, "not timed again once it did not run");
        assert_eq!(t.runtime_ns, None);
        assert_eq!(t.ratio, None);
        assert!(!t.runtime_chosen());
        assert_eq!(t.native_ns, 100.0);
    }
}
