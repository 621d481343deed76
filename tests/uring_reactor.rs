//! The io_uring reactors on real rings: a panic with device I/O in flight aborts the process
//! instead of unwinding through the slab, and the tick-timeout fallback of kernels without
//! `IORING_FEAT_EXT_ARG` serves I/O and wakes the reactor for its ticks.
#![cfg(feature = "uring")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jraid::engine::{Completion, UserOp, Volume};
use jraid::uring::{
    self, CreateOptions, Ctx, Driver, Runtime, RuntimeOptions, VolumeDevices, VolumeFiles, WaitMode,
};

const BS: usize = 4096;

fn create(dir: &Path) {
    uring::create(&CreateOptions {
        dir: dir.to_path_buf(),
        members: 3,
        member_size: 8 << 20,
        strip_bytes: 16 << 10,
        block_size: BS as u32,
        journal_size: 1 << 20,
        name: "reactor-test".into(),
    })
    .expect("create the volume");
}

/// Submits a read, then panics while the read is in flight.
struct PanicsWithReadInFlight;

impl Driver for PanicsWithReadInFlight {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        let buf = ctx.take_buf(0, 4 * BS);
        if ctx.submit(0, 1, UserOp::Read, 0, 4, Some(buf)).is_err() {
            return; // the parent then sees no abort and fails
        }
        panic!("test driver panics with a read in flight");
    }
    fn complete(&mut self, _ctx: &mut Ctx<'_>, _volume: usize, _c: Completion) {}
    fn finished(&self) -> bool {
        false
    }
}

/// The volume directory, set in the child process of [`reactor_panic_with_io_in_flight_aborts`].
const PANIC_CHILD: &str = "JRAID_REACTOR_PANIC_CHILD";

#[test]
#[ignore = "run as a child process by reactor_panic_with_io_in_flight_aborts"]
fn child_reactor_panics_with_io_in_flight() {
    let Some(dir) = std::env::var_os(PANIC_CHILD) else {
        return;
    };
    let files = VolumeFiles::open(Path::new(&dir), true).expect("open the volume");
    let engine = uring::start(&files, 1, true).expect("start the volume");
    let r = engine.runtime.run(vec![(0, PanicsWithReadInFlight)], || {});
    // Reached only when the reactor thread unwound (and freed its slab).
    eprintln!("child: Runtime::run returned (ok: {})", r.is_ok());
    engine.stop();
}

#[test]
fn reactor_panic_with_io_in_flight_aborts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    create(dir.path());
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_reactor_panics_with_io_in_flight",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PANIC_CHILD, dir.path())
        .output()
        .expect("run the child test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test driver panics with a read in flight"),
        "the driver did not panic; stderr:\n{err}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGABRT),
        "the reactor unwound with I/O in flight instead of aborting ({}); stderr:\n{err}",
        out.status
    );
    assert!(
        err.contains("jraid: reactor 0 panicked with") && err.contains("device I/O in flight"),
        "stderr:\n{err}"
    );
    assert!(
        !err.contains("child: Runtime::run returned"),
        "stderr:\n{err}"
    );
}

/// Writes a pattern, reads it back, then stays idle for a while: it finishes only if the
/// reactor keeps waking up for its ticks with nothing else to wake it.
struct WriteReadIdle {
    blocks: u64,
    phase: Phase,
    outstanding: u64,
    mismatches: u64,
    errors: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Write,
    Writing,
    Read,
    Reading,
    Idle { since_us: u64 },
    Done,
}

/// Idle time the driver waits out.
const IDLE_US: u64 = 50_000;

fn pattern(lba: u64) -> u8 {
    (lba as u8).wrapping_mul(31).wrapping_add(7)
}

impl Driver for WriteReadIdle {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Write | Phase::Read => {
                let op = match self.phase {
                    Phase::Write => UserOp::Write,
                    _ => UserOp::Read,
                };
                for lba in 0..self.blocks {
                    let mut buf = ctx.take_buf(0, BS);
                    if op == UserOp::Write {
                        buf.as_mut_slice().fill(pattern(lba));
                    }
                    match ctx.submit(0, lba, op, lba, 1, Some(buf)) {
                        Ok(()) => self.outstanding += 1,
                        Err(e) => {
                            self.errors += 1;
                            if let Some(b) = e.buf {
                                ctx.give_buf(0, b);
                            }
                        }
                    }
                }
                self.phase = match self.phase {
                    Phase::Write => Phase::Writing,
                    _ => Phase::Reading,
                };
            }
            Phase::Writing if self.outstanding == 0 => self.phase = Phase::Read,
            Phase::Reading if self.outstanding == 0 => {
                self.phase = Phase::Idle {
                    since_us: ctx.now_us(),
                }
            }
            Phase::Idle { since_us } if ctx.now_us() >= since_us + IDLE_US => {
                self.phase = Phase::Done
            }
            _ => {}
        }
    }

    fn complete(&mut self, ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        self.outstanding -= 1;
        if c.result.is_err() {
            self.errors += 1;
        }
        if let Some(b) = c.buf {
            if self.phase == Phase::Reading && b.as_slice().iter().any(|&x| x != pattern(c.tag)) {
                self.mismatches += 1;
            }
            ctx.give_buf(0, b);
        }
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Done
    }
}

#[test]
fn timeout_request_fallback_serves_io_and_ticks() {
    let dir = tempfile::tempdir().expect("temporary directory");
    create(dir.path());
    let files = VolumeFiles::open(dir.path(), true).expect("open the volume");
    let dup = |f: &std::fs::File| f.try_clone().expect("dup");
    let devs = Arc::new(VolumeDevices {
        vol: Arc::new(Volume::new(files.volume_number(), files.geo, true, None)),
        jv: None,
        members: files.members.iter().map(|d| dup(&d.file)).collect(),
        journal: vec![dup(&files.journal.file)],
        journal_block_size: files.journal_sb.block_size,
    });
    let rt = Runtime::start_with(
        vec![devs],
        1,
        RuntimeOptions {
            split_writes: false,
            wait: Some(WaitMode::TimeoutSqe),
        },
    )
    .expect("start the reactor");
    assert_eq!(rt.wait_mode(), WaitMode::TimeoutSqe);
    let driver = WriteReadIdle {
        blocks: 64,
        phase: Phase::Write,
        outstanding: 0,
        mismatches: 0,
        errors: 0,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = rt.run(vec![(0, driver)], || {});
        let _ = tx.send(r.map(|mut d| d.pop().map(|d| (d.errors, d.mismatches))));
        rt.stop();
    });
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the reactor never woke for its ticks: the timeout request did not fire");
    let (errors, mismatches) = got.expect("run").expect("the driver back");
    assert_eq!((errors, mismatches), (0, 0));
}

/// Fails member 1 (as an I/O error would), then writes: each write's completion checks that the
/// surviving members' superblocks on disk already say member 1 failed.
struct WriteAfterFailure {
    dir: std::path::PathBuf,
    sent: bool,
    done: bool,
    recorded_at_ack: Option<bool>,
}

fn recorded_failed(dir: &Path, member: u32) -> bool {
    let files = VolumeFiles::open(dir, false).expect("reopen read-only");
    files.recorded_states()[member as usize] != jraid::superblock::MemberState::Active
}

impl Driver for WriteAfterFailure {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        if self.sent {
            return;
        }
        self.sent = true;
        ctx.volume(0).fail_member(1);
        let mut buf = ctx.take_buf(0, 8 * BS);
        buf.as_mut_slice().fill(0xA5);
        ctx.submit(0, 1, UserOp::Write, 0, 8, Some(buf))
            .expect("submit the write");
    }
    fn complete(&mut self, _ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        assert!(c.result.is_ok(), "degraded write failed: {:?}", c.result);
        self.recorded_at_ack = Some(recorded_failed(&self.dir, 1));
        self.done = true;
    }
    fn finished(&self) -> bool {
        self.done
    }
}

/// The io_uring runtime records a member failure in the surviving members' superblocks before
/// it acknowledges a write made after it, and a restart keeps the member out (degraded open).
#[test]
fn member_failure_is_recorded_before_a_write_is_acknowledged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    create(dir.path());
    let files = VolumeFiles::open(dir.path(), true).expect("open the volume");
    let engine = uring::start(&files, 1, true).expect("start the volume");
    let d = WriteAfterFailure {
        dir: dir.path().to_path_buf(),
        sent: false,
        done: false,
        recorded_at_ack: None,
    };
    let d = engine
        .runtime
        .run(vec![(0, d)], || {})
        .expect("run")
        .pop()
        .expect("one driver");
    engine.stop();
    assert_eq!(
        d.recorded_at_ack,
        Some(true),
        "the write was acknowledged before the failure was recorded"
    );
    drop(files);
    let files = VolumeFiles::open(dir.path(), true).expect("reopen");
    let engine = uring::start(&files, 1, true).expect("restart degraded");
    assert_eq!(
        engine.vol.failed_count(),
        1,
        "member 1 came back after the restart"
    );
    assert!(!engine.vol.reachable(1));
    engine.stop();
}
