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
//! Buffer lifetime: every [`DeviceIo`] (which owns its [`Buf`]) is moved into the reactor's slab
//! before its SQE is pushed and stays there, untouched, until its CQE arrives; only then is it
//! taken out and handed back to the channel. A reactor that must exit with I/O still in flight
//! leaks its slab instead of freeing buffers the kernel may still write.

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
/// How long a stopping reactor waits for in-flight I/O before it gives up (and leaks).
const STOP_GRACE: Duration = Duration::from_secs(10);

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
}

/// One volume as the reactors see it: shared state plus the open devices.
pub struct VolumeDevices {
    /// Shared volume state.
    pub vol: Arc<Volume>,
    /// The volume's journal state (with a journal).
    pub jv: Option<Arc<JournalVolume>>,
    /// Member devices, by member index.
    pub members: Vec<File>,
    /// Journal devices, by `Device::Journal` index.
    pub journal: Vec<File>,
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
}

/// What a driver can do on its reactor.
pub struct Ctx<'a> {
    chans: &'a mut [Channel<UringBackend>],
    io: &'a mut Io,
    submitted: u64,
}

impl Ctx<'_> {
    /// The reactor this driver runs on.
    pub fn reactor(&self) -> u32 {
        self.io.me
    }

    /// Submit a user request to volume index `volume` (see [`Channel::submit`]).
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
        let r = self.chans[volume].submit(tag, op, lba, blocks, buf);
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
    Stop,
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

struct Slot {
    vi: usize,
    io: DeviceIo,
    /// Bytes done so far (short reads and writes are resubmitted for the rest).
    done: usize,
    len: usize,
}

/// The reactor's I/O side: ring, slab of in-flight requests, routes to peers.
struct Io {
    me: u32,
    ring: IoUring,
    slab: Vec<Option<Slot>>,
    free: Vec<usize>,
    inflight: usize,
    vols: Vec<Arc<VolumeDevices>>,
    peers: Arc<Vec<Peer>>,
    /// Messages to channels of this reactor: (volume index, message).
    local: VecDeque<(usize, Msg)>,
    /// Requests refused before reaching the kernel: (volume index, tag, buffer).
    refused: Vec<(usize, u64, Option<Buf>)>,
    epoch: Instant,
    errors: u64,
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
        let v = &self.vols[vi];
        match dev {
            Device::Member(m) => v
                .members
                .get(m as usize)
                .map(|f| (f.as_raw_fd(), v.vol.geo.block_size as u64)),
            Device::Journal(k) => v
                .journal
                .get(k as usize)
                .map(|f| (f.as_raw_fd(), v.journal_block_size as u64)),
        }
    }

    /// Park a device request in the slab and push its SQE.
    fn start(&mut self, vi: usize, io: DeviceIo) {
        let Some((_, bs)) = self.fd_and_bs(vi, io.dev) else {
            self.refused.push((vi, io.tag, io.buf));
            return;
        };
        let len = (io.blocks * bs) as usize;
        if io.op != IoOp::Flush
            && io
                .buf
                .as_ref()
                .is_none_or(|b| io.buf_offset + len > b.len() || len > u32::MAX as usize)
        {
            self.refused.push((vi, io.tag, io.buf));
            return;
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slab.push(None);
                self.slab.len() - 1
            }
        };
        self.slab[idx] = Some(Slot {
            vi,
            io,
            done: 0,
            len,
        });
        self.inflight += 1;
        self.push_sqe(idx);
        if self.split_writes
            && self.slab[idx]
                .as_ref()
                .is_some_and(|s| s.io.op == IoOp::Write)
        {
            if let Err(e) = self.ring.submit() {
                if !matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EINTR)) {
                    panic!("io_uring submit failed: {e}");
                }
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Build and push the SQE for slab entry `idx` (from its `done` bytes on).
    fn push_sqe(&mut self, idx: usize) {
        let slot = self.slab[idx].as_mut().expect("live slab entry");
        let (vi, dev) = (slot.vi, slot.io.dev);
        let v = &self.vols[vi];
        let (fd, bs) = match dev {
            Device::Member(m) => (
                v.members[m as usize].as_raw_fd(),
                v.vol.geo.block_size as u64,
            ),
            Device::Journal(k) => (
                v.journal[k as usize].as_raw_fd(),
                v.journal_block_size as u64,
            ),
        };
        let off = slot.io.lba * bs + slot.done as u64;
        let rest = (slot.len - slot.done) as u32;
        let start = slot.io.buf_offset + slot.done;
        let fd = types::Fd(fd);
        let sqe = match slot.io.op {
            IoOp::Read => {
                let buf = slot.io.buf.as_mut().expect("checked in start");
                let ptr = buf.as_mut_slice()[start..].as_mut_ptr();
                opcode::Read::new(fd, ptr, rest).offset(off).build()
            }
            IoOp::Write => {
                let buf = slot.io.buf.as_ref().expect("checked in start");
                let ptr = buf.as_slice()[start..].as_ptr();
                opcode::Write::new(fd, ptr, rest).offset(off).build()
            }
            IoOp::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(idx as u64);
        self.push(&sqe);
    }

    fn push(&mut self, sqe: &io_uring::squeue::Entry) {
        loop {
            // SAFETY: every pointer in `sqe` stays valid until its CQE: read/write SQEs point into
            // the heap pages of a Buf owned by a DeviceIo parked in `self.slab` (moving the slab
            // entry does not move those pages), and the slab entry is neither dropped nor
            // touched until `reap` takes it on the CQE; the wake read points at a leaked u64.
            // File descriptors belong to `self.vols`, which outlives the ring.
            let pushed = unsafe { self.ring.submission().push(sqe) };
            if pushed.is_ok() {
                return;
            }
            // Submission queue full: hand the queued entries to the kernel and retry.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    panic!("io_uring submit failed: {e}");
                }
                // Completion queue overflowing: make room by reaping later; spin briefly.
                std::thread::yield_now();
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
}

struct Reactor {
    io: Io,
    chans: Vec<Channel<UringBackend>>,
    rx: Receiver<Cmd>,
    done_tx: Sender<(u32, Box<dyn Job>)>,
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
            if ud == WAKE_TAG {
                self.io.arm_wake();
                continue;
            }
            let idx = ud as usize;
            let slot = self.io.slab[idx]
                .as_mut()
                .expect("CQE for a live slab entry");
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
            let slot = self.io.slab[idx].take().expect("live slab entry");
            self.io.free.push(idx);
            self.io.inflight -= 1;
            if !ok {
                self.io.errors += 1;
            }
            let Slot { vi, mut io, .. } = slot;
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

    /// Hand finished requests to the driver (or drop them when none runs). True if any.
    fn deliver(&mut self, job: &mut Option<Box<dyn Job>>) -> bool {
        let mut any = false;
        for vi in 0..self.chans.len() {
            self.chans[vi].drain_completions(&mut self.completions);
            if self.completions.is_empty() {
                continue;
            }
            any = true;
            let mut done = std::mem::take(&mut self.completions);
            for c in done.drain(..) {
                match job.as_mut() {
                    Some(j) => {
                        let mut ctx = Ctx {
                            chans: &mut self.chans,
                            io: &mut self.io,
                            submitted: 0,
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

    fn run(mut self) {
        self.io.arm_wake();
        let mut job: Option<Box<dyn Job>> = None;
        let mut last_tick = Instant::now();
        let mut stop_at: Option<Instant> = None;
        loop {
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
                    Cmd::Stop => stop_at = Some(Instant::now()),
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
            progress |= self.deliver(&mut job);
            if let Some(j) = job.as_mut() {
                let mut ctx = Ctx {
                    chans: &mut self.chans,
                    io: &mut self.io,
                    submitted: 0,
                };
                j.driver().poll(&mut ctx);
                progress |= ctx.submitted > 0;
                progress |= self.run_local();
                progress |= self.deliver(&mut job);
                let finished = job.as_mut().is_some_and(|j| j.driver().finished());
                if finished && self.idle() {
                    let j = job.take().expect("job present");
                    let _ = self.done_tx.send((self.io.me, j));
                    progress = true;
                }
            }
            if let Some(t) = stop_at {
                if job.is_none() && self.idle() && self.io.inflight == 0 {
                    break;
                }
                if t.elapsed() > STOP_GRACE {
                    eprintln!(
                        "jraid: reactor {} stopping with {} device I/O still in flight",
                        self.io.me, self.io.inflight
                    );
                    // The kernel may still write into parked buffers: never free them.
                    std::mem::forget(std::mem::take(&mut self.io.slab));
                    break;
                }
            }
            if progress {
                if let Err(e) = self.io.ring.submit() {
                    if !matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EINTR)) {
                        panic!("io_uring submit failed: {e}");
                    }
                }
                continue;
            }
            self.wait(last_tick);
        }
        if self.io.inflight > 0 {
            std::mem::forget(std::mem::take(&mut self.io.slab));
        }
    }

    /// Block until a CQE, a posted command (eventfd) or the next tick.
    fn wait(&mut self, last_tick: Instant) {
        let peer = &self.io.peers[self.io.me as usize];
        peer.sleeping.store(true, SeqCst);
        fence(SeqCst);
        let r = if self.rx.is_empty() && self.io.local.is_empty() {
            let left = TICK.saturating_sub(last_tick.elapsed());
            let left = left.max(Duration::from_micros(20));
            let ts = types::Timespec::new().nsec(left.as_nanos() as u32);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.io.ring.submitter().submit_with_args(1, &args)
        } else {
            self.io.ring.submit()
        };
        peer.sleeping.store(false, SeqCst);
        if let Err(e) = r {
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) {
                panic!("io_uring wait failed: {e}");
            }
        }
    }
}

/// A set of reactor threads serving some volumes.
pub struct Runtime {
    peers: Arc<Vec<Peer>>,
    threads: Vec<JoinHandle<()>>,
    done_rx: Receiver<(u32, Box<dyn Job>)>,
    vols: Vec<Arc<VolumeDevices>>,
}

impl Runtime {
    /// Start `reactors` reactor threads, each with a ring and a channel per volume.
    pub fn start(vols: Vec<Arc<VolumeDevices>>, reactors: u32) -> Result<Runtime, Error> {
        Runtime::start_with(vols, reactors, false)
    }

    /// [`Runtime::start`], optionally in torture mode: with `split_writes` every device write
    /// enters the kernel on its own followed by a short pause, so that a process kill can leave
    /// a stripe's data and parity writes half issued (crash tests use it; it is slow).
    pub fn start_with(
        vols: Vec<Arc<VolumeDevices>>,
        reactors: u32,
        split_writes: bool,
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
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<io::Result<()>>();
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
                            slab: Vec::new(),
                            free: Vec::new(),
                            inflight: 0,
                            vols: vols2,
                            peers: peers2,
                            local: VecDeque::new(),
                            refused: Vec::new(),
                            epoch,
                            errors: 0,
                            split_writes,
                            wake_buf: Box::into_raw(Box::new(0u64)),
                            wake_fd,
                        },
                        chans,
                        rx,
                        done_tx,
                        cqes: Vec::new(),
                        completions: Vec::new(),
                    };
                    let _ = ready_tx.send(Ok(()));
                    reactor.run();
                })
                .map_err(|e| Error::new(format!("cannot start a reactor thread: {e}")))?;
            threads.push(t);
        }
        drop(ready_tx);
        let rt = Runtime {
            peers,
            threads,
            done_rx,
            vols,
        };
        for _ in 0..reactors {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Error::new(format!(
                        "cannot set up io_uring ({e}); is io_uring disabled (kernel.io_uring_disabled) or blocked by seccomp?"
                    )))
                }
                Err(_) => return Err(Error::new("a reactor thread died while starting")),
            }
        }
        Ok(rt)
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
                Ok((r, job)) => {
                    let i = order.iter().position(|&x| x == r).expect("known reactor");
                    let d = job
                        .into_any()
                        .downcast::<D>()
                        .expect("driver of the type sent");
                    back[i] = Some(*d);
                    got += 1;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.threads.iter().any(|t| t.is_finished()) {
                        return Err(Error::new("a reactor thread died (see the message above)"));
                    }
                    progress();
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(Error::new("reactor threads gone"));
                }
            }
        }
        Ok(back
            .into_iter()
            .map(|d| d.expect("every driver back"))
            .collect())
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
