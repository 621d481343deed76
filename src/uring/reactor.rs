#![allow(unsafe_code)]
//! Reactor threads over io_uring.
//!
//! One OS thread and one ring per reactor. A reactor owns a [`Channel`] per volume and drives it
//! the way the simulator does: it feeds `io_done`, `message` and `tick` (every millisecond), and
//! after every call drains the channel's [`UringBackend`] into SQEs (device I/O) or into the
//! target reactor's command queue (messages). A message to another reactor goes through that
//! reactor's crossbeam queue; if the target is asleep in `io_uring_enter`, an eventfd write wakes
//! it (the target keeps a read of its eventfd parked in its ring).
//!
//! User load runs on the reactors themselves: a [`Driver`] handed to a reactor with
//! [`Runtime::run`] submits user requests through a [`Ctx`] and gets their completions on the same
//! thread, so the hot path never crosses threads.
//!
//! Buffer lifetime: every [`DeviceIo`] (which owns its [`Buf`]) is parked in the reactor's
//! `InFlight` slab before its SQE is pushed and stays there, untouched, until its CQE arrives;
//! only then is it taken out and handed back to the channel. The slab never frees a parked
//! entry: a reactor that must exit with I/O still in flight (its stop grace ran out, its ring
//! failed) leaks them, and a panic on the reactor thread with I/O in flight aborts the process
//! instead of unwinding through the slab (see `inflight.rs`).
//!
//! Failures of the ring itself (`io_uring_enter` errors other than the transient EINTR, EAGAIN
//! and EBUSY, a completion for no parked request) are errors, not panics: the reactor stops, and
//! [`Runtime::run`] returns the message.
//!
//! Waiting for the next tick uses `IORING_FEAT_EXT_ARG` (Linux 5.11) when the kernel has it and
//! a kept-armed `IORING_OP_TIMEOUT` otherwise (see [`super::ring`]).

use std::any::Any;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use io_uring::{opcode, types, IoUring};

use super::inflight::InFlight;
use super::ring::{self, WaitMode};
use super::Error;
use crate::engine::{
    Address, Backend, Buf, Channel, Completion, Device, DeviceIo, IoOp, Msg, SubmitError, UserOp,
    Volume,
};
use crate::journal::JournalVolume;

/// Ring entries per reactor.
const RING_ENTRIES: u32 = 512;
/// Channel tick period.
const TICK: Duration = Duration::from_millis(1);
/// user_data of the parked eventfd read.
const WAKE_TAG: u64 = u64::MAX;
/// user_data of the tick timeout (in [`WaitMode::TimeoutSqe`]).
const TIMER_TAG: u64 = u64::MAX - 1;
/// How long a stopping reactor waits for in-flight I/O before it gives up (and leaks).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Tag bit of a background driver's requests ([`Runtime::background`]): its `Ctx` sets it on
/// submission and clears it on completion, so the reactor routes each completion to the right
/// driver. A foreground driver's tags keep it clear.
pub const BACKGROUND_TAG: u64 = 1 << 63;

/// The [`Backend`] of a channel on a reactor: it collects requests and messages; the reactor
/// turns them into SQEs and queue pushes after every call into the channel.
pub struct UringBackend {
    ios: Vec<DeviceIo>,
    msgs: Vec<(Address, Msg)>,
    epoch: Instant,
}

impl Backend for UringBackend {
    fn submit(&mut self, io: DeviceIo) {
        self.ios.push(io);
    }
    fn send(&mut self, to: Address, msg: Msg) {
        self.msgs.push((to, msg));
    }
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn prefetch(&self, at: *const u8) {
        super::sys::prefetch(at);
    }
}

/// One volume as the reactors see it: shared state plus the open devices.
pub struct VolumeDevices {
    /// Shared volume state.
    pub vol: Arc<Volume>,
    /// The volume's journal state (with a journal).
    pub jv: Option<Arc<JournalVolume>>,
    /// Member devices, by member index.
    pub members: Vec<File>,
    /// Journal devices, by `Device::Journal` index (`None`: missing; a request to it fails).
    pub journal: Vec<Option<File>>,
    /// Block size of the journal devices.
    pub journal_block_size: u32,
}

/// User load (or recovery, or verification) run on one reactor.
///
/// Every method runs on the reactor thread. The reactor calls [`Driver::poll`] once per loop
/// turn, [`Driver::complete`] for each finished request, and hands the driver back once
/// [`Driver::finished`] is true and its channels are idle.
pub trait Driver: Send + 'static {
    /// Submit whatever can be submitted now.
    fn poll(&mut self, ctx: &mut Ctx<'_>);
    /// A request submitted through `ctx` finished on volume index `volume`.
    fn complete(&mut self, ctx: &mut Ctx<'_>, volume: usize, c: Completion);
    /// True when the driver has nothing more to do (once its requests completed).
    fn finished(&self) -> bool;
    /// The runtime is stopping: submit nothing more, and become finished once what is in
    /// flight completed. Only background drivers ([`Runtime::background`]) are told; the
    /// default does nothing.
    fn stop(&mut self) {}
}

/// What a driver can do on its reactor.
pub struct Ctx<'a> {
    chans: &'a mut [Channel<UringBackend>],
    io: &'a mut Io,
    submitted: u64,
    /// A background driver's context: its tags carry [`BACKGROUND_TAG`].
    background: bool,
}

impl Ctx<'_> {
    /// The reactor this driver runs on.
    pub fn reactor(&self) -> u32 {
        self.io.me
    }

    /// Submit a user request to volume index `volume` (see [`Channel::submit`]).
    ///
    /// Here and in the other methods taking a volume index, an index beyond the runtime's
    /// volumes is a bug in the driver and panics (aborting the process if device I/O is in
    /// flight on this reactor).
    pub fn submit(
        &mut self,
        volume: usize,
        tag: u64,
        op: UserOp,
        lba: u64,
        blocks: u64,
        buf: Option<Buf>,
    ) -> Result<(), SubmitError> {
        self.submitted += 1;
        debug_assert!(
            tag & BACKGROUND_TAG == 0,
            "a driver's tag {tag:#x} uses the background bit"
        );
        let tag = if self.background {
            tag | BACKGROUND_TAG
        } else {
            tag
        };
        let r = self.chans[volume].submit(tag, op, lba, blocks, buf);
        if r.is_ok() && !self.background {
            self.io.foreground += 1;
        }
        self.io.pump(&mut self.chans[volume], volume);
        r
    }

    /// Deliver `msg` to this reactor's channel of volume index `volume` now.
    pub fn message(&mut self, volume: usize, msg: Msg) {
        self.submitted += 1;
        self.chans[volume].message(msg);
        self.io.pump(&mut self.chans[volume], volume);
    }

    /// The shared state of volume index `volume`.
    pub fn volume(&self, volume: usize) -> &Arc<Volume> {
        self.chans[volume].volume()
    }

    /// Monotonic time in microseconds (the engine's clock).
    pub fn now_us(&self) -> u64 {
        self.io.epoch.elapsed().as_micros() as u64
    }

    /// A page-aligned buffer from the channel's pool.
    pub fn take_buf(&mut self, volume: usize, len: usize) -> Buf {
        self.chans[volume].take_buf(len)
    }

    /// Return a buffer to the channel's pool.
    pub fn give_buf(&mut self, volume: usize, buf: Buf) {
        self.chans[volume].give_buf(buf)
    }

    /// Device I/O errors this reactor has seen (each also failed its member in the engine).
    pub fn device_errors(&self) -> u64 {
        self.io.errors
    }
}

/// Type-erased driver, so any `Driver` can travel to a reactor and back.
trait Job: Send {
    fn driver(&mut self) -> &mut dyn Driver;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

struct JobOf<D: Driver>(D);

impl<D: Driver> Job for JobOf<D> {
    fn driver(&mut self) -> &mut dyn Driver {
        &mut self.0
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.0)
    }
}

enum Cmd {
    Msg { volume: u32, msg: Msg },
    Run(Box<dyn Job>),
    Background(Box<dyn Job>),
    Stop,
}

/// What a reactor reports to [`Runtime::run`].
enum Done {
    /// The driver it ran is finished: (reactor, driver).
    Job(u32, Box<dyn Job>),
    /// The reactor stopped on a ring failure: (reactor, message).
    Failed(u32, String),
}

/// How other threads reach a reactor.
struct Peer {
    tx: Sender<Cmd>,
    /// Set while the reactor may block in the kernel; posters then write the eventfd.
    sleeping: AtomicBool,
    wake: File,
}

impl Peer {
    fn post(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            return; // reactor gone (shutting down)
        }
        // Dekker pair with the reactor: it stores `sleeping` then checks its queue; we push then
        // load `sleeping`. Either it sees the command or we see it asleep and wake it.
        fence(SeqCst);
        if self.sleeping.load(SeqCst) {
            let _ = (&self.wake).write(&1u64.to_ne_bytes());
        }
    }
}

/// A device request parked in the slab, with what its SQEs need (checked once, in
/// [`Io::slot`]).
struct Slot {
    /// Volume index.
    vi: usize,
    /// The request; it owns the buffer the kernel reads or writes.
    io: DeviceIo,
    /// The device's descriptor.
    fd: i32,
    /// Byte offset of the request on the device.
    pos: u64,
    /// Bytes done so far (short reads and writes are resubmitted for the rest).
    done: usize,
    /// Bytes of the request (0 for a flush).
    len: usize,
}

/// The reactor's I/O side: ring, slab of in-flight requests, routes to peers.
struct Io {
    me: u32,
    /// Declared before `timer`, so it is dropped first (see [`Io::push`]).
    ring: IoUring,
    /// Device requests the kernel owns until their CQEs.
    slab: InFlight<Slot>,
    /// How [`Reactor::wait`] sleeps.
    wait_mode: WaitMode,
    /// Expiry of the armed tick timeout ([`WaitMode::TimeoutSqe`]); boxed so that it does not
    /// move, and rewritten only while no timeout is armed.
    timer: Box<types::Timespec>,
    /// A tick timeout is in the ring.
    timer_armed: bool,
    /// Why the ring failed; the reactor stops when set.
    fatal: Option<String>,
    vols: Vec<Arc<VolumeDevices>>,
    peers: Arc<Vec<Peer>>,
    /// Messages to channels of this reactor: (volume index, message).
    local: VecDeque<(usize, Msg)>,
    /// Requests refused before reaching the kernel: (volume index, tag, buffer).
    refused: Vec<(usize, u64, Option<Buf>)>,
    epoch: Instant,
    errors: u64,
    /// Requests of the foreground driver not yet completed.
    foreground: u64,
    /// Torture mode: every member or journal write enters the kernel on its own, with a short
    /// pause after it, so a kill can land between the writes of one stripe.
    split_writes: bool,
    /// Target of the parked eventfd read; leaked, so it outlives the ring whatever happens.
    wake_buf: *mut u64,
    wake_fd: i32,
}

impl Io {
    /// Move a channel's pending device requests into the ring and its messages to their targets.
    fn pump(&mut self, ch: &mut Channel<UringBackend>, vi: usize) {
        let be = ch.backend_mut();
        if be.ios.is_empty() && be.msgs.is_empty() {
            return;
        }
        let mut ios = std::mem::take(&mut be.ios);
        let mut msgs = std::mem::take(&mut be.msgs);
        for io in ios.drain(..) {
            self.start(vi, io);
        }
        for (to, msg) in msgs.drain(..) {
            self.route(to, msg);
        }
        let be = ch.backend_mut();
        be.ios = ios;
        be.msgs = msgs;
    }

    fn route(&mut self, to: Address, msg: Msg) {
        if to.reactor == u64::from(self.me) {
            if let Some(vi) = self.vols.iter().position(|v| v.vol.number == to.volume) {
                self.local.push_back((vi, msg));
            }
        } else if let Some(p) = self.peers.get(to.reactor as usize) {
            p.post(Cmd::Msg {
                volume: to.volume,
                msg,
            });
        }
    }

    fn fd_and_bs(&self, vi: usize, dev: Device) -> Option<(i32, u64)> {
        let v = self.vols.get(vi)?;
        match dev {
            Device::Member(m) => v
                .members
                .get(m as usize)
                .map(|f| (f.as_raw_fd(), v.vol.geo.block_size as u64)),
            Device::Journal(k) => v
                .journal
                .get(k as usize)
                .and_then(Option::as_ref)
                .map(|f| (f.as_raw_fd(), v.journal_block_size as u64)),
        }
    }

    /// Check a device request and work out its slot; the request back when it cannot go to
    /// the kernel (no such device, a range that overflows, a buffer too short, a read into a
    /// read-only buffer): it then fails back to its channel.
    fn slot(&self, vi: usize, io: DeviceIo) -> Result<Slot, DeviceIo> {
        let checked = || {
            let (fd, bs) = self.fd_and_bs(vi, io.dev)?;
            let pos = io.lba.checked_mul(bs)?;
            let bytes = io.blocks.checked_mul(bs)?;
            pos.checked_add(bytes)?;
            let len = usize::try_from(bytes).ok()?;
            if io.op != IoOp::Flush {
                let buf = io.buf.as_ref()?;
                let fits = io.buf_offset.checked_add(len)? <= buf.len();
                let writable = io.op != IoOp::Read || buf.is_writable();
                if !fits || !writable || u32::try_from(len).is_err() {
                    return None;
                }
            }
            Some((fd, pos, len))
        };
        match checked() {
            Some((fd, pos, len)) => Ok(Slot {
                vi,
                io,
                fd,
                pos,
                done: 0,
                len,
            }),
            None => Err(io),
        }
    }

    /// Park a device request in the slab and push its SQE.
    fn start(&mut self, vi: usize, io: DeviceIo) {
        let slot = match self.slot(vi, io) {
            Ok(slot) => slot,
            Err(io) => {
                self.refused.push((vi, io.tag, io.buf));
                return;
            }
        };
        let is_write = slot.io.op == IoOp::Write;
        let idx = self.slab.park(slot);
        self.push_sqe(idx);
        if self.split_writes && is_write {
            self.submit();
            std::thread::sleep(SPLIT_PAUSE);
        }
    }

    /// Build and push the SQE for slab entry `idx` (from its `done` bytes on). The kernel does
    /// not own the entry now (it is new, or its last CQE arrived); if no SQE can be built it
    /// leaves the slab and fails back to its channel.
    fn push_sqe(&mut self, idx: usize) {
        let Some(slot) = self.slab.get_mut(idx) else {
            return;
        };
        let fd = types::Fd(slot.fd);
        let off = slot.pos + slot.done as u64;
        // `slot.done < slot.len <= u32::MAX` (checked in `slot`, kept by `reap`).
        let rest = (slot.len - slot.done) as u32;
        let start = slot.io.buf_offset + slot.done;
        let sqe = match (slot.io.op, slot.io.buf.as_mut()) {
            (IoOp::Read, Some(buf)) => buf.as_mut_slice().get_mut(start..).map(|b| {
                opcode::Read::new(fd, b.as_mut_ptr(), rest)
                    .offset(off)
                    .build()
            }),
            (IoOp::Write, Some(buf)) => buf
                .as_slice()
                .get(start..)
                .map(|b| opcode::Write::new(fd, b.as_ptr(), rest).offset(off).build()),
            (IoOp::Flush, _) => Some(
                opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build(),
            ),
            (_, None) => None,
        };
        match sqe {
            Some(sqe) => {
                self.push(&sqe.user_data(idx as u64));
            }
            None => {
                if let Some(slot) = self.slab.unpark(idx) {
                    self.refused.push((slot.vi, slot.io.tag, slot.io.buf));
                }
            }
        }
    }

    /// Push `sqe`, handing queued entries to the kernel while the submission queue is full.
    /// Returns false (and sets `fatal`) when the ring failed: the entry then never reaches the
    /// kernel, and whatever it points to stays where it is until the reactor exits.
    fn push(&mut self, sqe: &io_uring::squeue::Entry) -> bool {
        loop {
            if self.fatal.is_some() {
                return false;
            }
            // SAFETY: every pointer in `sqe` stays valid until its CQE: read/write SQEs point into
            // the heap pages of a Buf owned by a DeviceIo parked in `self.slab` (moving the slab
            // entry does not move those pages), and `InFlight` neither hands out nor frees the
            // entry until `reap` unparks it on the CQE (on exit it leaks it, on a panic it
            // aborts); the wake read points at a leaked u64; a timeout points at `self.timer`,
            // which is not rewritten while the timeout is armed and is dropped after the ring.
            // File descriptors belong to `self.vols`, which outlives the ring.
            let pushed = unsafe { self.ring.submission().push(sqe) };
            if pushed.is_ok() {
                return true;
            }
            // Submission queue full: hand the queued entries to the kernel and retry.
            self.submit();
            // Completion queue overflowing: make room by reaping later; spin briefly.
            std::thread::yield_now();
        }
    }

    /// Hand queued entries to the kernel without waiting.
    fn submit(&mut self) {
        let r = self.ring.submit();
        self.check("submit", r.map(drop));
    }

    /// Note the result of an `io_uring_enter`: transient failures pass (the caller retries or
    /// reaps first), any other sets `fatal`.
    fn check(&mut self, what: &str, r: io::Result<()>) {
        if let Err(e) = r {
            let transient = matches!(
                e.raw_os_error(),
                Some(libc::EBUSY | libc::EINTR | libc::EAGAIN | libc::ETIME)
            );
            if !transient && self.fatal.is_none() {
                self.fatal = Some(format!("io_uring {what} failed: {e}"));
            }
        }
    }

    fn arm_wake(&mut self) {
        let ptr = self.wake_buf.cast::<u8>();
        let sqe = opcode::Read::new(types::Fd(self.wake_fd), ptr, 8)
            .build()
            .user_data(WAKE_TAG);
        self.push(&sqe);
    }

    /// Arm the tick timeout to expire after `after`, unless one is armed already (it expires
    /// within a tick anyway).
    fn arm_timer(&mut self, after: Duration) {
        if self.timer_armed {
            return;
        }
        *self.timer = types::Timespec::new().nsec(after.as_nanos().min(999_999_999) as u32);
        let ptr: *const types::Timespec = &*self.timer;
        let sqe = opcode::Timeout::new(ptr).build().user_data(TIMER_TAG);
        self.timer_armed = self.push(&sqe);
    }
}

struct Reactor {
    io: Io,
    chans: Vec<Channel<UringBackend>>,
    rx: Receiver<Cmd>,
    done_tx: Sender<Done>,
    cqes: Vec<(u64, i32)>,
    completions: Vec<Completion>,
}

impl Reactor {
    /// Run CQEs through the channels. Returns true when any arrived.
    fn reap(&mut self) -> bool {
        self.cqes.clear();
        self.cqes.extend(
            self.io
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result())),
        );
        let any = !self.cqes.is_empty();
        for i in 0..self.cqes.len() {
            let (ud, res) = self.cqes[i];
            match ud {
                WAKE_TAG => {
                    self.io.arm_wake();
                    continue;
                }
                TIMER_TAG => {
                    self.io.timer_armed = false;
                    continue;
                }
                _ => {}
            }
            let idx = ud as usize;
            let Some(slot) = self.io.slab.get_mut(idx) else {
                // Not a request of ours: the bookkeeping is broken, trust nothing parked.
                self.io.fatal = Some(format!(
                    "io_uring completed request {ud}, which is not in flight"
                ));
                return any;
            };
            if res > 0 && slot.io.op != IoOp::Flush && slot.done + (res as usize) < slot.len {
                // Short transfer: go on from where it stopped.
                slot.done += res as usize;
                self.io.push_sqe(idx);
                continue;
            }
            let ok = match slot.io.op {
                IoOp::Flush => res >= 0,
                _ => res >= 0 && slot.done + res as usize == slot.len,
            };
            let Some(Slot { vi, mut io, .. }) = self.io.slab.unpark(idx) else {
                continue; // just seen in the slab
            };
            if !ok {
                self.io.errors += 1;
            }
            self.chans[vi].io_done(io.tag, ok, io.buf.take());
            self.io.pump(&mut self.chans[vi], vi);
        }
        any
    }

    /// Deliver local messages and refused requests. Returns true when there were any.
    fn run_local(&mut self) -> bool {
        let mut any = false;
        loop {
            if let Some((vi, msg)) = self.io.local.pop_front() {
                any = true;
                self.chans[vi].message(msg);
                self.io.pump(&mut self.chans[vi], vi);
                continue;
            }
            if let Some((vi, tag, buf)) = self.io.refused.pop() {
                any = true;
                self.io.errors += 1;
                self.chans[vi].io_done(tag, false, buf);
                self.io.pump(&mut self.chans[vi], vi);
                continue;
            }
            return any;
        }
    }

    fn idle(&self) -> bool {
        self.chans.iter().all(|c| c.idle())
    }

    /// Hand finished requests to their driver: the background driver's (tag bit
    /// [`BACKGROUND_TAG`], cleared) to it, the others to the foreground driver; a request whose
    /// driver is gone is dropped. True if any.
    fn deliver(&mut self, job: &mut Option<Box<dyn Job>>, bg: &mut Option<Box<dyn Job>>) -> bool {
        let mut any = false;
        for vi in 0..self.chans.len() {
            self.chans[vi].drain_completions(&mut self.completions);
            if self.completions.is_empty() {
                continue;
            }
            any = true;
            let mut done = std::mem::take(&mut self.completions);
            for mut c in done.drain(..) {
                let background = c.tag & BACKGROUND_TAG != 0;
                c.tag &= !BACKGROUND_TAG;
                if !background {
                    self.io.foreground = self.io.foreground.saturating_sub(1);
                }
                let target = if background {
                    bg.as_mut()
                } else {
                    job.as_mut()
                };
                match target {
                    Some(j) => {
                        let mut ctx = Ctx {
                            chans: &mut self.chans,
                            io: &mut self.io,
                            submitted: 0,
                            background,
                        };
                        j.driver().complete(&mut ctx, vi, c);
                    }
                    None => {
                        if let Some(b) = c.buf {
                            self.chans[vi].give_buf(b);
                        }
                    }
                }
            }
            self.completions = done;
        }
        any
    }

    /// Serve until stopped; an error is a ring failure (the reactor then exits at once, and its
    /// slab leaks whatever is still in flight).
    fn run(mut self) -> Result<(), String> {
        self.io.arm_wake();
        let mut job: Option<Box<dyn Job>> = None;
        let mut bg: Option<Box<dyn Job>> = None;
        let mut last_tick = Instant::now();
        let mut stop_at: Option<Instant> = None;
        loop {
            if let Some(e) = self.io.fatal.take() {
                return Err(e);
            }
            let mut progress = false;
            while let Ok(cmd) = self.rx.try_recv() {
                progress = true;
                match cmd {
                    Cmd::Msg { volume, msg } => {
                        if let Some(vi) = self.io.vols.iter().position(|v| v.vol.number == volume) {
                            self.chans[vi].message(msg);
                            self.io.pump(&mut self.chans[vi], vi);
                        }
                    }
                    Cmd::Run(j) => job = Some(j),
                    Cmd::Background(mut j) => {
                        if stop_at.is_some() {
                            j.driver().stop();
                        }
                        bg = Some(j);
                    }
                    Cmd::Stop => {
                        stop_at = Some(Instant::now());
                        if let Some(b) = bg.as_mut() {
                            b.driver().stop();
                        }
                    }
                }
            }
            progress |= self.run_local();
            progress |= self.reap();
            progress |= self.run_local();
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                for vi in 0..self.chans.len() {
                    self.chans[vi].tick();
                    self.io.pump(&mut self.chans[vi], vi);
                }
                self.run_local();
            }
            progress |= self.deliver(&mut job, &mut bg);
            if let Some(b) = bg.as_mut() {
                let mut ctx = Ctx {
                    chans: &mut self.chans,
                    io: &mut self.io,
                    submitted: 0,
                    background: true,
                };
                b.driver().poll(&mut ctx);
                progress |= ctx.submitted > 0;
                progress |= self.run_local();
                progress |= self.deliver(&mut job, &mut bg);
                // A background driver is finished only once its own requests completed (it
                // counts them); it reports through state it shares with whoever started it.
                if bg.as_mut().is_some_and(|b| b.driver().finished()) {
                    bg = None;
                    progress = true;
                }
            }
            if let Some(j) = job.as_mut() {
                let mut ctx = Ctx {
                    chans: &mut self.chans,
                    io: &mut self.io,
                    submitted: 0,
                    background: false,
                };
                j.driver().poll(&mut ctx);
                progress |= ctx.submitted > 0;
                progress |= self.run_local();
                progress |= self.deliver(&mut job, &mut bg);
                let finished = job.as_mut().is_some_and(|j| j.driver().finished());
                // Its requests are all done, and (with no background driver, whose requests
                // keep the channels busy) the channels are idle too.
                if finished && self.io.foreground == 0 && (bg.is_some() || self.idle()) {
                    if let Some(j) = job.take() {
                        let _ = self.done_tx.send(Done::Job(self.io.me, j));
                    }
                    progress = true;
                }
            }
            if let Some(t) = stop_at {
                if job.is_none() && bg.is_none() && self.idle() && self.io.slab.parked() == 0 {
                    return Ok(());
                }
                if t.elapsed() > STOP_GRACE {
                    // Dropping the slab leaks what is still in flight, and says so.
                    let _ = writeln!(
                        io::stderr(),
                        "jraid: reactor {}: device I/O did not complete within {} s of the stop",
                        self.io.me,
                        STOP_GRACE.as_secs()
                    );
                    return Ok(());
                }
            }
            if progress {
                self.io.submit();
                continue;
            }
            self.wait(last_tick);
        }
    }

    /// Block until a CQE, a posted command (eventfd) or the next tick.
    fn wait(&mut self, last_tick: Instant) {
        let peers = Arc::clone(&self.io.peers);
        let peer = peers.get(self.io.me as usize);
        if let Some(p) = peer {
            p.sleeping.store(true, SeqCst);
        }
        fence(SeqCst);
        let r = if self.rx.is_empty() && self.io.local.is_empty() {
            let left = TICK.saturating_sub(last_tick.elapsed());
            let left = left.max(Duration::from_micros(20));
            match self.io.wait_mode {
                WaitMode::ExtArg => {
                    let ts = types::Timespec::new().nsec(left.as_nanos() as u32);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.io.ring.submitter().submit_with_args(1, &args)
                }
                WaitMode::TimeoutSqe => {
                    self.io.arm_timer(left);
                    if self.io.timer_armed {
                        self.io.ring.submit_and_wait(1)
                    } else {
                        self.io.ring.submit() // the ring failed: do not sleep unbounded
                    }
                }
            }
        } else {
            self.io.ring.submit()
        };
        if let Some(p) = peer {
            p.sleeping.store(false, SeqCst);
        }
        self.io.check("wait", r.map(drop));
    }
}

/// The pause after each device write in torture mode ([`RuntimeOptions::split_writes`]). A kill
/// tears a stripe only while a pause between two of its writes runs, so the pause must outweigh the
/// rest of a reactor's work per write (the crash test's log fsync, filling buffers, parity in a
/// debug build): at 50 µs a 1 s debug-build round tore no surviving stripe about two times in
/// five, and the crash test's control (`--no-journal`, 4 rounds) found no loss in one CI run. At
/// 300 µs 4 debug-build rounds of 30 tore none (the control runs 6 rounds).
const SPLIT_PAUSE: Duration = Duration::from_micros(300);

/// How to run reactors.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeOptions {
    /// Torture mode: every device write enters the kernel on its own followed by a short pause,
    /// so that a process kill can leave a stripe's data and parity writes half issued (crash
    /// tests use it; it is slow).
    pub split_writes: bool,
    /// How reactors wait for their next tick; `None`: the best the kernel offers (see
    /// [`WaitMode`]). Tests force [`WaitMode::TimeoutSqe`] to run the fallback of kernels
    /// before 5.11 on any kernel.
    pub wait: Option<WaitMode>,
}

/// A set of reactor threads serving some volumes.
pub struct Runtime {
    peers: Arc<Vec<Peer>>,
    threads: Vec<JoinHandle<()>>,
    done_rx: Receiver<Done>,
    vols: Vec<Arc<VolumeDevices>>,
    wait_mode: WaitMode,
}

impl Runtime {
    /// Start `reactors` reactor threads, each with a ring and a channel per volume.
    pub fn start(vols: Vec<Arc<VolumeDevices>>, reactors: u32) -> Result<Runtime, Error> {
        Runtime::start_with(vols, reactors, RuntimeOptions::default())
    }

    /// [`Runtime::start`] with options.
    pub fn start_with(
        vols: Vec<Arc<VolumeDevices>>,
        reactors: u32,
        o: RuntimeOptions,
    ) -> Result<Runtime, Error> {
        if reactors == 0 {
            return Err(Error::new("at least one reactor is needed"));
        }
        let epoch = Instant::now();
        let mut rxs = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..reactors {
            let (tx, rx) = crossbeam_channel::unbounded();
            let wake = super::sys::eventfd()
                .map_err(|e| Error::new(format!("cannot create an eventfd: {e}")))?;
            peers.push(Peer {
                tx,
                sleeping: AtomicBool::new(false),
                wake,
            });
            rxs.push(rx);
        }
        let peers = Arc::new(peers);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<Result<WaitMode, String>>();
        let mut threads = Vec::new();
        for (r, rx) in rxs.into_iter().enumerate() {
            let peers2 = peers.clone();
            let vols2 = vols.clone();
            let done_tx = done_tx.clone();
            let ready_tx = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("jraid-reactor-{r}"))
                .spawn(move || {
                    let ring = match IoUring::new(RING_ENTRIES) {
                        Ok(ring) => ring,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!(
                                "cannot set up io_uring ({e}); is io_uring disabled \
                                 (kernel.io_uring_disabled) or blocked by seccomp?"
                            )));
                            return;
                        }
                    };
                    let wait_mode = match ring::wait_mode(&ring::probe(&ring), o.wait) {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let me = r as u32;
                    let chans = vols2
                        .iter()
                        .map(|v| {
                            let addr = Address {
                                reactor: u64::from(me),
                                volume: v.vol.number,
                            };
                            let be = UringBackend {
                                ios: Vec::new(),
                                msgs: Vec::new(),
                                epoch,
                            };
                            Channel::new(v.vol.clone(), v.jv.clone(), addr, be)
                        })
                        .collect();
                    let wake_fd = peers2[r].wake.as_raw_fd();
                    let reactor = Reactor {
                        io: Io {
                            me,
                            ring,
                            slab: InFlight::new(me),
                            wait_mode,
                            timer: Box::new(types::Timespec::new()),
                            timer_armed: false,
                            fatal: None,
                            vols: vols2,
                            peers: peers2,
                            local: VecDeque::new(),
                            refused: Vec::new(),
                            epoch,
                            errors: 0,
                            foreground: 0,
                            split_writes: o.split_writes,
                            wake_buf: Box::into_raw(Box::new(0u64)),
                            wake_fd,
                        },
                        chans,
                        rx,
                        done_tx: done_tx.clone(),
                        cqes: Vec::new(),
                        completions: Vec::new(),
                    };
                    let _ = ready_tx.send(Ok(wait_mode));
                    if let Err(e) = reactor.run() {
                        let _ = done_tx.send(Done::Failed(me, e));
                    }
                })
                .map_err(|e| Error::new(format!("cannot start a reactor thread: {e}")))?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut rt = Runtime {
            peers,
            threads,
            done_rx,
            vols,
            wait_mode: WaitMode::ExtArg,
        };
        for _ in 0..reactors {
            match ready_rx.recv() {
                Ok(Ok(w)) => rt.wait_mode = w,
                Ok(Err(e)) => return Err(Error::new(e)),
                Err(_) => return Err(Error::new("a reactor thread died while starting")),
            }
        }
        Ok(rt)
    }

    /// How the reactors wait for their ticks.
    pub fn wait_mode(&self) -> WaitMode {
        self.wait_mode
    }

    /// False once a reactor thread ended (a ring failure; it said why).
    pub fn running(&self) -> bool {
        !self.threads.iter().any(|t| t.is_finished())
    }

    /// Number of reactors.
    pub fn reactors(&self) -> u32 {
        self.peers.len() as u32
    }

    /// The volumes served.
    pub fn volumes(&self) -> &[Arc<VolumeDevices>] {
        &self.vols
    }

    /// Run `drivers` — `(reactor, driver)` pairs, at most one per reactor — until each is
    /// finished; `progress` is called about every 100 ms meanwhile. Returns the drivers in the
    /// order given.
    pub fn run<D: Driver>(
        &self,
        drivers: Vec<(u32, D)>,
        mut progress: impl FnMut(),
    ) -> Result<Vec<D>, Error> {
        let n = drivers.len();
        let mut order = Vec::new();
        for (r, d) in drivers {
            let p = self
                .peers
                .get(r as usize)
                .ok_or_else(|| Error::new(format!("no reactor {r}")))?;
            if order.contains(&r) {
                return Err(Error::new(format!("two drivers for reactor {r}")));
            }
            order.push(r);
            p.post(Cmd::Run(Box::new(JobOf(d))));
        }
        let mut back: Vec<Option<D>> = (0..n).map(|_| None).collect();
        let mut got = 0;
        while got < n {
            match self.done_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Done::Job(r, job)) => {
                    // A job of another reactor or type is left from an earlier run that
                    // returned early: drop it.
                    let Some(i) = order.iter().position(|&x| x == r) else {
                        continue;
                    };
                    let Ok(d) = job.into_any().downcast::<D>() else {
                        continue;
                    };
                    if back[i].replace(*d).is_none() {
                        got += 1;
                    }
                }
                Ok(Done::Failed(r, e)) => {
                    return Err(Error::new(format!("reactor {r} stopped: {e}")));
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.threads.iter().any(|t| t.is_finished()) {
                        // A failure is reported before the thread ends.
                        while let Ok(d) = self.done_rx.try_recv() {
                            if let Done::Failed(r, e) = d {
                                return Err(Error::new(format!("reactor {r} stopped: {e}")));
                            }
                        }
                        return Err(Error::new("a reactor thread died (see the message above)"));
                    }
                    progress();
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(Error::new("reactor threads gone"));
                }
            }
        }
        Ok(back.into_iter().flatten().collect())
    }

    /// Run `driver` on reactor `reactor` in the background, beside whatever [`Runtime::run`]
    /// runs there meanwhile, until it is finished; it is then dropped, so it reports through
    /// state it shares with the caller. A stopping runtime tells it ([`Driver::stop`]) and waits
    /// for it (up to the stop grace). At most one per reactor: a second replaces the first, so
    /// start one only after the last is finished.
    pub fn background<D: Driver>(&self, reactor: u32, driver: D) -> Result<(), Error> {
        let p = self
            .peers
            .get(reactor as usize)
            .ok_or_else(|| Error::new(format!("no reactor {reactor}")))?;
        p.post(Cmd::Background(Box::new(JobOf(driver))));
        Ok(())
    }

    /// Stop every reactor (after its in-flight I/O completes) and join the threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for p in self.peers.iter() {
            p.post(Cmd::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}
