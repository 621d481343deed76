//! What a new ring's kernel offers, and how a reactor sleeps on it.
//!
//! A reactor sleeps in `io_uring_enter` until a completion, a posted command (its eventfd read
//! completes) or its next tick. With `IORING_FEAT_EXT_ARG` (Linux 5.11) the tick is a timeout
//! passed to the wait itself; without it the reactor keeps one `IORING_OP_TIMEOUT` request
//! armed instead, and waits for any completion. Kernels without the operations the reactor
//! issues (`IORING_OP_READ`/`WRITE`, Linux 5.6) are refused with a message saying so.

use io_uring::{opcode, IoUring, Probe};

/// How a reactor waits for its next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// A timeout passed to `io_uring_enter` (`IORING_FEAT_EXT_ARG`, Linux 5.11).
    ExtArg,
    /// An `IORING_OP_TIMEOUT` request kept armed in the ring (any kernel from 5.6).
    TimeoutSqe,
}

/// What a ring's kernel offers, as far as the reactor cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RingSupport {
    /// `IORING_FEAT_EXT_ARG`: a wait with a timeout in one `io_uring_enter`.
    pub ext_arg: bool,
    /// Operations the reactor issues that the kernel lacks; `None` when the kernel cannot say
    /// (no `IORING_REGISTER_PROBE`: before Linux 5.6, so it lacks `IORING_OP_READ` too).
    pub missing: Option<Vec<&'static str>>,
}

/// Operations the reactor issues, with their names.
const OPS: [(u8, &str); 4] = [
    (opcode::Read::CODE, "IORING_OP_READ"),
    (opcode::Write::CODE, "IORING_OP_WRITE"),
    (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
];

/// Ask the kernel behind `ring` what it offers.
pub(super) fn probe(ring: &IoUring) -> RingSupport {
    let mut p = Probe::new();
    let missing = match ring.submitter().register_probe(&mut p) {
        Ok(()) => Some(
            OPS.iter()
                .filter(|(code, _)| !p.is_supported(*code))
                .map(|&(_, name)| name)
                .collect(),
        ),
        Err(_) => None,
    };
    RingSupport {
        ext_arg: ring.params().is_feature_ext_arg(),
        missing,
    }
}

/// How to wait on a ring with `support`: `want` when given (tests force the fallback with it),
/// else the best the kernel offers. An error is a message fit for a person.
pub(super) fn wait_mode(support: &RingSupport, want: Option<WaitMode>) -> Result<WaitMode, String> {
    match &support.missing {
        None => {
            return Err("io_uring on this kernel cannot list its operations \
                        (IORING_REGISTER_PROBE); jraid needs Linux 5.6 or later \
                        (IORING_OP_READ and IORING_OP_WRITE)"
                .into())
        }
        Some(m) if !m.is_empty() => {
            return Err(format!(
                "io_uring on this kernel lacks {}; jraid needs Linux 5.6 or later",
                m.join(", ")
            ))
        }
        Some(_) => {}
    }
    match want {
        Some(WaitMode::ExtArg) if !support.ext_arg => Err("io_uring on this kernel lacks \
             IORING_FEAT_EXT_ARG (Linux 5.11), which the requested wait mode needs"
            .into()),
        Some(w) => Ok(w),
        None if support.ext_arg => Ok(WaitMode::ExtArg),
        None => Ok(WaitMode::TimeoutSqe),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support(ext_arg: bool, missing: Option<Vec<&'static str>>) -> RingSupport {
        RingSupport { ext_arg, missing }
    }

    #[test]
    fn ext_arg_is_used_when_present() {
        let s = support(true, Some(vec![]));
        assert_eq!(wait_mode(&s, None), Ok(WaitMode::ExtArg));
        assert_eq!(
            wait_mode(&s, Some(WaitMode::TimeoutSqe)),
            Ok(WaitMode::TimeoutSqe)
        );
    }

    #[test]
    fn without_ext_arg_a_timeout_request_is_used() {
        let s = support(false, Some(vec![]));
        assert_eq!(wait_mode(&s, None), Ok(WaitMode::TimeoutSqe));
        let e = wait_mode(&s, Some(WaitMode::ExtArg)).unwrap_err();
        assert!(
            e.contains("IORING_FEAT_EXT_ARG") && e.contains("5.11"),
            "{e}"
        );
    }

    #[test]
    fn kernels_without_the_operations_are_refused() {
        let e = wait_mode(&support(false, None), None).unwrap_err();
        assert!(
            e.contains("Linux 5.6") && e.contains("IORING_OP_READ"),
            "{e}"
        );
        let e = wait_mode(&support(true, Some(vec!["IORING_OP_TIMEOUT"])), None).unwrap_err();
        assert!(e.contains("lacks IORING_OP_TIMEOUT"), "{e}");
    }
}
