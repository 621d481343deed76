//! One volume on one reactor: takes user I/O, splits it per stripe and runs each piece through
//! split → lock → plan → read, and mark as the reads go out (the mark's record is written while
//! they run) → wait durable → parity → write → clean → complete.
//!
//! A user write piece queued for its stripe's lock may instead join another write piece of
//! this channel queued for the same lock whose range it continues (`Channel::try_merge`):
//! the two become one stripe operation, and the joined piece finishes with it.
//!
//! Everything here runs on the channel's own thread; other reactors are reached only through the
//! shared [`Volume`] (stripe locks, member health, journal) and [`Backend::send`].
//!
//! # Ordering rule: a member failure is durable before a write that depends on it is acknowledged
//! Enforced in `complete_req`, and nowhere else: while a member failure is not yet recorded
//! by the runtime ([`Volume::unrecorded_failures`]; the runtime writes it into the surviving
//! members' superblocks and reports it with [`Volume::failures_recorded`]), a successful write
//! is held, not acknowledged; `tick` releases the held writes once every failure is recorded.
//! Without it, a member that errored transiently and comes back after a power loss is trusted
//! again, and recovery recomputes parity from its stale data, losing what the degraded writes
//! put only in parity. The simulator's control (`crash_sim --scenario transient --control
//! no-failure-record`) finds that loss.

use std::collections::VecDeque;
use std::sync::Arc;

use super::backend::{Address, Backend, Device, DeviceIo, IoOp, Msg};
use super::buf::{Buf, BufPool};
use super::lock::LockWaiter;
use super::plan::{self, StripeSpan, WritePlan, MAX_MEMBERS};
use super::volume::Volume;
use crate::journal::{Journal, JournalVolume, Mark, RecordOutcome};

/// What the user asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOp {
    /// Read blocks into the request buffer.
    Read,
    /// Write the request buffer.
    Write,
    /// Make every completed write durable.
    Flush,
    /// Recompute and rewrite the parity of stripe `lba` (recovery); `blocks` must be 1.
    Resync,
    /// Rebuild stripe `lba`'s strip on the member being rebuilt from the other members.
    Rebuild,
    /// Check stripe `lba`'s parity against its data; fails with `ParityMismatch` when they
    /// disagree.
    Scrub,
    /// Rewrite stripe `lba`'s parity from its data while the volume serves I/O (marked in the
    /// journal like a write).
    Repair,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// The range reaches past the end of the volume.
    OutOfRange,
    /// Zero blocks.
    ZeroLength,
    /// The buffer is missing or its length is not `blocks × block size`.
    BadBuffer,
    /// Two or more members are missing: data cannot be served.
    VolumeFailed,
    /// The journal failed: writes cannot be protected (reads go on).
    JournalFailed,
    /// Scrub: the stripe's parity does not match its data.
    ParityMismatch,
    /// The stripe is not resynced yet after a crash, and serving the request would rebuild a
    /// missing member's data from its parity (which may be stale): refused, not guessed.
    ParityUntrusted,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoError::OutOfRange => "request reaches past the end of the volume",
            IoError::ZeroLength => "request of zero blocks",
            IoError::BadBuffer => "buffer missing or of the wrong length",
            IoError::VolumeFailed => "two or more members missing: volume failed",
            IoError::JournalFailed => "journal failed: writes refused until a new journal is set",
            IoError::ParityMismatch => "parity does not match the data",
            IoError::ParityUntrusted => {
                "stripe not resynced since a crash: a missing member's data cannot be rebuilt from its parity"
            }
        })
    }
}

impl std::error::Error for IoError {}

/// A request refused at submission; the buffer comes back.
#[derive(Debug)]
pub struct SubmitError {
    /// Why.
    pub error: IoError,
    /// The caller's buffer.
    pub buf: Option<Buf>,
}

/// A finished user request.
#[derive(Debug)]
pub struct Completion {
    /// The caller's tag.
    pub tag: u64,
    /// Outcome.
    pub result: Result<(), IoError>,
    /// The caller's buffer (filled, for reads).
    pub buf: Option<Buf>,
}

/// Counters of one channel.
#[derive(Debug, Default, Clone)]
pub struct ChannelStats {
    /// User writes completed.
    pub writes: u64,
    /// User reads completed.
    pub reads: u64,
    /// Stripe pieces that waited for a journal generation.
    pub durable_waits: u64,
    /// Record writes this channel issued.
    pub record_writes: u64,
}

const KIND_SHIFT: u32 = 62;
const KIND_PIECE: u64 = 0;
const KIND_FLUSH: u64 = 1;
const KIND_JOURNAL: u64 = 2;
const KIND_MEMBER_FLUSH: u64 = 3;
const GEN_BITS: u32 = 24;
/// [`Channel::waiting`]'s generation of a piece waiting for room in the record.
const WAIT_SPACE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PieceState {
    #[default]
    Free,
    WaitLock,
    /// A write or repair piece whose reads are in, waiting for its journal step
    /// ([`JournalStep::Wait`] or [`JournalStep::Space`]).
    WaitJournal,
    Reading,
    Writing,
    /// Merged into another write piece of its stripe (its leader): issues nothing, finishes
    /// with the leader (see [`Channel::try_merge`]).
    Merged,
}

/// Where a write or repair piece stands with the journal; runs beside its reads (see
/// [`Channel::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum JournalStep {
    /// Not marked yet.
    #[default]
    Unmarked,
    /// Marked; waits for generation `g` to be durable (its entry `(piece, g)` is in
    /// [`Channel::waiting`]).
    Wait(u64),
    /// Not marked: the record was full; waits for room (its entry `(piece, WAIT_SPACE)` is in
    /// [`Channel::waiting`]) and marks again.
    Space,
    /// May write: marked in a durable generation, or no journal (comparison runs).
    Durable,
    /// The journal failed before the mark was durable: the piece fails once its reads are in.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PieceKind {
    #[default]
    Read,
    Write,
    Resync,
    Rebuild,
    Scrub,
    Repair,
}

/// The member reads a piece issues: (member, rows), at most one per member.
/// Write plans of a channel not yet added to its volume's counters.
#[derive(Default)]
struct PlanCounts {
    full_stripe: u64,
    reconstruct_write: u64,
    read_modify_write: u64,
    /// Write pieces merged into another (see [`Channel::try_merge`]).
    merged: u64,
}

/// Journal counts of a channel not yet added to its journal's.
#[derive(Default)]
struct JournalCounts {
    marks: u64,
    fast_path: u64,
    user_writes: u64,
}

/// Member reads a piece issues: (member, rows).
type ReadList = Vec<(u32, (u64, u64))>;

/// Every member but `skip`, over `rows`.
fn read_all_but(reads: &mut ReadList, members: u32, skip: Option<u32>, rows: (u64, u64)) {
    reads.extend((0..members).filter(|&m| Some(m) != skip).map(|m| (m, rows)));
}

/// One stripe's share of a user request.
#[derive(Default)]
struct Piece {
    /// Bumped on reuse, so stale tokens are recognised.
    gen: u32,
    /// Owning request.
    req: u32,
    kind: PieceKind,
    stripe: u64,
    /// Stripe-relative data blocks `[start, start + len)`.
    start: u64,
    len: u64,
    /// Byte offset of `start` in the request buffer.
    buf_off: usize,
    state: PieceState,
    /// Device I/O in flight.
    pending: u32,
    /// A device I/O of the current phase failed.
    io_failed: bool,
    locked: bool,
    /// A mark of its stripe is counted in the journal (cleaned when the piece finishes).
    marked: bool,
    step: JournalStep,
    /// Read that rebuilds a missing member's blocks (holds the stripe lock).
    degraded: bool,
    /// A read whose one device read goes straight into the request's buffer.
    direct: bool,
    span: StripeSpan,
    plan: Option<WritePlan>,
    /// The member that did not serve the stripe when the reads were planned (the computation
    /// after the reads uses the same view; a member failing later fails its I/O and the piece
    /// is planned again).
    failed: Option<u32>,
    /// A read of this member failed under a user read: its blocks are rebuilt from the others
    /// and written back (the member stays in service unless that write fails).
    bad_member: Option<u32>,
    /// The write-back of `bad_member`'s rebuilt blocks is in flight.
    repairing: bool,
    /// Per member buffer.
    bufs: Vec<Option<Buf>>,
    /// Other write pieces merged into this one ([`Channel::try_merge`]); its `start` and `len`
    /// then cover the merged range, and `Channel::merges` (same index) holds the rest.
    leader: bool,
}

/// What a piece that took merged writes keeps besides its [`Piece`] (see
/// [`Channel::try_merge`]); kept apart so that the pieces of unmerged writes stay small.
#[derive(Default)]
struct Merge {
    /// The write pieces merged into this one: they issue nothing and finish with it.
    followers: Vec<u32>,
    /// The leader's own part of its request: first stripe-relative block and length.
    own: (u64, u64),
    /// The merged range's new data gathered from every request (built when the parity is
    /// computed, given back with the member buffers).
    gathered: Option<Buf>,
}

#[derive(Default)]
struct Request {
    tag: u64,
    op: Option<UserOp>,
    buf: Option<Buf>,
    /// Pieces (or device flushes) still running.
    left: u32,
    error: Option<IoError>,
    /// For flushes: when it started (µs).
    started_us: u64,
}

/// A volume's channel on one reactor.
pub struct Channel<B: Backend> {
    vol: Arc<Volume>,
    /// The journal this channel writes through (the volume's, when the channel was made or
    /// last given one).
    journal: Option<Arc<Journal>>,
    /// Record writes (and their flushes) of this channel in flight.
    journal_ios: u32,
    addr: Address,
    backend: B,
    pool: BufPool,
    jv: Option<Arc<JournalVolume>>,
    jslot: usize,
    /// Highest generation this channel asked its journal for ([`Journal::request`]; the
    /// journal's wanted generation only grows, so asking again for it or a lower one is a
    /// shared read-modify-write for nothing).
    requested: u64,
    /// Lowest generation this channel subscribed to since its last look at its waiters
    /// ([`Channel::durable_progress`]); `u64::MAX`: none. A subscription stays in the journal
    /// until a record that makes it durable is complete, and that record's completion sends
    /// this channel a message, whose handling looks at every waiter and subscribes for the
    /// lowest one left: so a waiter of a generation at or above it needs no subscription of
    /// its own. See [`Channel::wait_for`].
    subscribed: u64,
    /// The stripe a full-stripe write marked next would have in a sequential stream (one past
    /// the last such write's stripe): see [`Channel::list_ahead`].
    next_sequential: u64,
    reqs: Vec<Request>,
    free_reqs: Vec<u32>,
    pieces: Vec<Piece>,
    free_pieces: Vec<u32>,
    done: Vec<Completion>,
    /// Writes finished while a member failure was unrecorded: acknowledged once it is.
    held: Vec<Completion>,
    /// Messages to this channel itself, run before returning to the runtime.
    local: VecDeque<Msg>,
    /// Pieces waiting for durability (with the generation each waits for) or room (with
    /// [`WAIT_SPACE`]): a look at the waiters ([`Channel::durable_progress`], the only place a
    /// piece leaves these states) skips those whose generation is not durable yet without
    /// loading their pieces.
    waiting: Vec<(u32, u64)>,
    /// User write pieces of this channel queued for their stripe lock, with their stripes: the
    /// writes a later adjacent write of the same stripe may join ([`Channel::try_merge`]).
    lock_waiting: Vec<(u64, u32)>,
    /// By piece index: the merge state of pieces that took merged writes (grown on demand).
    merges: Vec<Merge>,
    waiting_spare: Vec<(u32, u64)>,
    record_buf: Vec<u8>,
    /// Journal counts not yet added to the journal's ([`Channel::publish_journal_counts`]).
    journal_counts: JournalCounts,
    /// Write plans not yet added to the volume's ([`Channel::publish_counts`]).
    plan_counts: PlanCounts,
    /// Scratch list of the channels a record's completion tells.
    notify: Vec<Address>,
    /// Scratch list of the member reads a piece issues (see `issue_reads`).
    read_list: ReadList,
    /// Journal-driven member flush in flight: (members left, start time).
    member_flush: Option<(u32, u64)>,
    stats: ChannelStats,
}

impl<B: Backend> Channel<B> {
    /// The channel of `vol` on the reactor named by `addr`. `jv` is the volume's journal state
    /// (from [`crate::journal::Journal::attach_volume`]); required when the volume has a journal.
    pub fn new(
        vol: Arc<Volume>,
        jv: Option<Arc<JournalVolume>>,
        addr: Address,
        backend: B,
    ) -> Self {
        match Self::try_new(vol, jv, addr, backend) {
            Ok(c) => c,
            Err(_) => panic!("journal channel slots exhausted"),
        }
    }

    /// As [`Channel::new`], but when the journal has no free channel slot left, nothing is
    /// registered and the backend comes back.
    pub fn try_new(
        vol: Arc<Volume>,
        jv: Option<Arc<JournalVolume>>,
        addr: Address,
        backend: B,
    ) -> Result<Self, B> {
        let journal = vol.journal();
        let jslot = match (&journal, &jv) {
            (Some(j), Some(_)) => match j.register_channel(addr) {
                Some(slot) => slot,
                None => return Err(backend),
            },
            _ => usize::MAX,
        };
        Ok(Channel {
            vol,
            journal,
            journal_ios: 0,
            addr,
            backend,
            pool: BufPool::new(),
            jv,
            jslot,
            requested: 0,
            subscribed: u64::MAX,
            next_sequential: u64::MAX,
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            pieces: Vec::new(),
            free_pieces: Vec::new(),
            done: Vec::new(),
            held: Vec::new(),
            local: VecDeque::new(),
            waiting: Vec::new(),
            lock_waiting: Vec::new(),
            merges: Vec::new(),
            waiting_spare: Vec::new(),
            record_buf: Vec::new(),
            journal_counts: JournalCounts::default(),
            plan_counts: PlanCounts::default(),
            notify: Vec::new(),
            read_list: Vec::new(),
            member_flush: None,
            stats: ChannelStats::default(),
        })
    }

    /// The backend (the runtime drains its requests).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The shared volume.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }

    /// Counters.
    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    /// Buffers allocated because a pool was empty (flat in steady state).
    pub fn pool_allocations(&self) -> u64 {
        self.pool.allocations
    }

    /// A buffer from the channel's pool (give it back with [`Channel::give_buf`]).
    pub fn take_buf(&mut self, len: usize) -> Buf {
        self.pool.take(len)
    }

    /// Return a buffer to the channel's pool.
    pub fn give_buf(&mut self, buf: Buf) {
        self.pool.give(buf)
    }

    /// Where a user read of `blocks` blocks at `lba` may go straight to one member, as
    /// (member, member LBA): when it lies in one strip of one stripe and that member serves
    /// the stripe, the read is that member's blocks — what this channel would send it too
    /// (no stripe lock, no parity: see `start_piece`). `None`: submit the read here (it spans
    /// strips or stripes, touches a member out of service, is out of range, or the volume is
    /// not usable).
    ///
    /// A runtime that sends such a read itself completes it when the member does; on a member
    /// error it submits the read here instead, which rebuilds, repairs and records the failure
    /// as for any read. [`Channel::count_direct_read`] counts it in the channel's reads.
    pub fn direct_read(&self, lba: u64, blocks: u64) -> Option<(u32, u64)> {
        let loc = self.one_member_range(lba, blocks)?;
        (self.vol.usable() && self.vol.serves(loc.member, loc.stripe))
            .then_some((loc.member, loc.member_lba))
    }

    /// Where `blocks` blocks at `lba` live when they are in range and in one strip of one
    /// stripe (so on one member).
    fn one_member_range(&self, lba: u64, blocks: u64) -> Option<crate::layout::Location> {
        let geo = &self.vol.geo;
        if blocks == 0
            || lba
                .checked_add(blocks)
                .is_none_or(|end| end > geo.volume_blocks())
        {
            return None;
        }
        let loc = geo.locate(lba);
        (loc.offset + blocks <= geo.strip_blocks).then_some(loc)
    }

    /// A read the runtime sent straight to `member` ([`Channel::direct_read`]) met an error:
    /// the channel takes it over as if its own read of that member had failed — the blocks
    /// are rebuilt from the other members and written back (or, on a volume already degraded,
    /// the member fails and the read is rebuilt), exactly as for a read of its own. A read
    /// that is not (or no longer) one range of `member` is submitted as a plain read.
    pub fn submit_failed_direct_read(
        &mut self,
        tag: u64,
        lba: u64,
        blocks: u64,
        buf: Buf,
        member: u32,
    ) -> Result<(), SubmitError> {
        let geo = self.vol.geo;
        let one_range = self
            .one_member_range(lba, blocks)
            .is_some_and(|loc| loc.member == member);
        if !one_range
            || buf.len() as u64 != blocks * u64::from(geo.block_size)
            || !buf.is_writable()
            || !self.vol.usable()
        {
            return self.submit(tag, UserOp::Read, lba, blocks, Some(buf));
        }
        let ri = self.alloc_req();
        {
            let r = &mut self.reqs[ri];
            r.tag = tag;
            r.op = Some(UserOp::Read);
            r.buf = None;
            r.left = 1;
            r.error = None;
        }
        let sb = geo.stripe_blocks();
        let pi = self.alloc_piece(ri, PieceKind::Read, lba / sb, lba % sb, blocks, 0);
        let p = &mut self.pieces[pi];
        p.state = PieceState::Reading;
        p.direct = true;
        p.failed = self.vol.failed_for(lba / sb);
        p.pending = 1;
        let tag = (KIND_PIECE << KIND_SHIFT) | (self.token(pi) << 8) | member as u64;
        // The direct piece's member read, come back failed with the request's buffer.
        self.piece_io_done(tag, false, Some(buf));
        self.run_local();
        Ok(())
    }

    /// A read the runtime served itself ([`Channel::direct_read`]) completed.
    pub fn count_direct_read(&mut self) {
        self.stats.reads += 1;
    }

    /// Move finished requests into `out`.
    pub fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.done);
    }

    /// True when [`Channel::drain_completions`] has something to give.
    pub fn has_completions(&self) -> bool {
        !self.done.is_empty()
    }

    /// True when nothing is in flight on this channel.
    pub fn idle(&self) -> bool {
        self.reqs.len() == self.free_reqs.len()
            && self.member_flush.is_none()
            && self.held.is_empty()
    }

    /// True when nothing of this channel depends on its journal: no piece marked or waiting
    /// for a generation or for room, no record write and no journal-driven member flush in
    /// flight. Only then may [`Channel::replace_journal`] run.
    pub fn journal_quiet(&self) -> bool {
        self.waiting.is_empty()
            && self.journal_ios == 0
            && self.member_flush.is_none()
            && self.pieces.iter().all(|p| !p.marked)
    }

    /// Write through `journal` (with this volume's state `jv` on it) from now on, instead of
    /// the journal the channel had (which failed). Refused (false, nothing changed) unless
    /// [`Channel::journal_quiet`]: a marked stripe must be cleaned in the journal it was marked
    /// in.
    pub fn replace_journal(&mut self, journal: Arc<Journal>, jv: Arc<JournalVolume>) -> bool {
        if !self.journal_quiet() {
            return false;
        }
        if self
            .journal
            .as_ref()
            .is_some_and(|j| Arc::ptr_eq(j, &journal))
        {
            return true;
        }
        self.publish_journal_counts();
        let Some(slot) = journal.register_channel(self.addr) else {
            return false;
        };
        if let Some(old) = &self.journal {
            if self.jslot != usize::MAX {
                old.unregister_channel(self.jslot);
            }
        }
        self.journal = Some(journal);
        self.jv = Some(jv);
        self.jslot = slot;
        self.requested = 0;
        self.subscribed = u64::MAX;
        true
    }

    /// The journal this channel writes through.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// Submit a request of `blocks` blocks at volume block `lba`.
    pub fn submit(
        &mut self,
        tag: u64,
        op: UserOp,
        lba: u64,
        blocks: u64,
        buf: Option<Buf>,
    ) -> Result<(), SubmitError> {
        let geo = self.vol.geo;
        let bs = geo.block_size as u64;
        let err = |error, buf| Err(SubmitError { error, buf });
        match op {
            UserOp::Read | UserOp::Write => {
                if blocks == 0 {
                    return err(IoError::ZeroLength, buf);
                }
                if lba
                    .checked_add(blocks)
                    .is_none_or(|end| end > geo.volume_blocks())
                {
                    return err(IoError::OutOfRange, buf);
                }
                if buf.as_ref().is_none_or(|b| b.len() as u64 != blocks * bs) {
                    return err(IoError::BadBuffer, buf);
                }
                if op == UserOp::Read && buf.as_ref().is_some_and(|b| !b.is_writable()) {
                    return err(IoError::BadBuffer, buf); // a read needs a writable buffer
                }
            }
            UserOp::Resync | UserOp::Rebuild | UserOp::Scrub | UserOp::Repair => {
                if lba >= geo.stripes {
                    return err(IoError::OutOfRange, buf);
                }
            }
            UserOp::Flush => {}
        }
        if !self.vol.usable() {
            return err(IoError::VolumeFailed, buf);
        }
        if op == UserOp::Write {
            if let Some(j) = &self.journal {
                if j.is_failed() {
                    return err(IoError::JournalFailed, buf);
                }
                self.journal_counts.user_writes += 1;
            }
        }
        let ri = self.alloc_req();
        {
            let r = &mut self.reqs[ri];
            r.tag = tag;
            r.op = Some(op);
            r.buf = buf;
            r.left = 0;
            r.error = None;
        }
        match op {
            UserOp::Flush => self.start_flush(ri),
            UserOp::Resync | UserOp::Rebuild | UserOp::Scrub | UserOp::Repair => {
                self.reqs[ri].left = 1;
                let kind = match op {
                    UserOp::Resync => PieceKind::Resync,
                    UserOp::Rebuild => PieceKind::Rebuild,
                    UserOp::Scrub => PieceKind::Scrub,
                    _ => PieceKind::Repair,
                };
                let pi = self.alloc_piece(ri, kind, lba, 0, geo.stripe_blocks(), 0);
                self.start_piece(pi);
            }
            UserOp::Read | UserOp::Write => {
                let kind = if op == UserOp::Read {
                    PieceKind::Read
                } else {
                    PieceKind::Write
                };
                let sb = geo.stripe_blocks();
                let (first, last) = (geo.stripe_of(lba).0, geo.stripe_of(lba + blocks - 1).0);
                self.reqs[ri].left = (last - first + 1) as u32;
                let mut pos = lba;
                while pos < lba + blocks {
                    let (stripe, start) = geo.stripe_of(pos);
                    let len = (sb - start).min(lba + blocks - pos);
                    let off = ((pos - lba) * bs) as usize;
                    let pi = self.alloc_piece(ri, kind, stripe, start, len, off);
                    self.start_piece(pi);
                    pos += len;
                }
            }
        }
        self.run_local();
        Ok(())
    }

    /// A device request finished.
    pub fn io_done(&mut self, tag: u64, ok: bool, buf: Option<Buf>) {
        match tag >> KIND_SHIFT {
            KIND_PIECE => self.piece_io_done(tag, ok, buf),
            KIND_FLUSH => self.flush_io_done(tag, ok),
            KIND_JOURNAL => self.journal_io_done(tag, ok, buf),
            _ => self.member_flush_done(tag, ok),
        }
        self.run_local();
    }

    /// A message from another reactor (or this one).
    pub fn message(&mut self, msg: Msg) {
        self.handle_msg(msg);
        self.run_local();
    }

    /// Periodic work (every few milliseconds): member flushes the journal waits for, and record
    /// writes that let clean stripes leave.
    pub fn tick(&mut self) {
        self.publish_counts();
        if let (Some(j), Some(jv)) = (self.journal.clone(), self.jv.clone()) {
            if self.member_flush.is_none()
                && jv
                    .member_flush_wanted
                    .load(std::sync::atomic::Ordering::Acquire)
                && !jv
                    .member_flush_running
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                jv.member_flush_wanted
                    .store(false, std::sync::atomic::Ordering::Release);
                self.start_member_flush();
            }
            if j.is_failed() {
                if !self.waiting.is_empty() {
                    // Failed without a record write of ours failing (the device went away).
                    self.durable_progress();
                }
            } else if j.flush_useful(true, self.backend.now_us()) {
                self.try_flush();
            }
        }
        self.release_held();
        self.run_local();
    }

    // ---- requests and pieces ----------------------------------------------------------------

    fn alloc_req(&mut self) -> usize {
        match self.free_reqs.pop() {
            Some(i) => i as usize,
            None => {
                self.reqs.push(Request::default());
                self.reqs.len() - 1
            }
        }
    }

    fn alloc_piece(
        &mut self,
        req: usize,
        kind: PieceKind,
        stripe: u64,
        start: u64,
        len: u64,
        buf_off: usize,
    ) -> usize {
        let pi = match self.free_pieces.pop() {
            Some(i) => i as usize,
            None => {
                self.pieces.push(Piece::default());
                self.pieces.len() - 1
            }
        };
        let members = self.vol.geo.members as usize;
        let geo = self.vol.geo;
        let p = &mut self.pieces[pi];
        p.req = req as u32;
        p.kind = kind;
        p.stripe = stripe;
        p.start = start;
        p.len = len;
        p.buf_off = buf_off;
        debug_assert!(!p.leader);
        p.pending = 0;
        p.io_failed = false;
        p.locked = false;
        p.marked = false;
        p.step = JournalStep::Unmarked;
        p.degraded = false;
        p.bad_member = None;
        p.repairing = false;
        p.plan = None;
        p.span = StripeSpan::new(&geo, start, len);
        p.bufs.resize_with(members, || None);
        pi
    }

    fn token(&self, pi: usize) -> u64 {
        ((pi as u64) << GEN_BITS) | (self.pieces[pi].gen as u64 & ((1 << GEN_BITS) - 1))
    }

    /// The live piece a token names, if it is still the same piece.
    fn piece_of(&self, token: u64) -> Option<usize> {
        let pi = (token >> GEN_BITS) as usize;
        let p = self.pieces.get(pi)?;
        (p.state != PieceState::Free && self.token(pi) == token).then_some(pi)
    }

    fn start_piece(&mut self, pi: usize) {
        let p = &self.pieces[pi];
        let needs_lock = match p.kind {
            PieceKind::Write
            | PieceKind::Resync
            | PieceKind::Rebuild
            | PieceKind::Scrub
            | PieceKind::Repair => true,
            PieceKind::Read => self.read_touches_failed(pi),
        };
        if needs_lock {
            self.pieces[pi].degraded = p.kind == PieceKind::Read;
            self.lock_piece(pi);
        } else {
            self.issue_reads(pi);
        }
    }

    fn read_touches_failed(&self, pi: usize) -> bool {
        let p = &self.pieces[pi];
        let geo = &self.vol.geo;
        (0..geo.data_members()).any(|i| {
            p.span.touched(i as usize) && !self.vol.serves(geo.data_member(p.stripe, i), p.stripe)
        })
    }

    fn lock_piece(&mut self, pi: usize) {
        let write = self.pieces[pi].kind == PieceKind::Write;
        let stripe = self.pieces[pi].stripe;
        // A write may join one of this channel's writes queued for the same stripe (rare for
        // random writes: the look stays here, `try_merge` only runs on a stripe that matches).
        if write && self.lock_waiting.iter().any(|&(s, _)| s == stripe) && self.try_merge(pi) {
            return;
        }
        let waiter = LockWaiter {
            addr: self.addr,
            token: self.token(pi),
        };
        let p = &mut self.pieces[pi];
        p.state = PieceState::WaitLock;
        if matches!(p.kind, PieceKind::Write | PieceKind::Repair)
            && p.len != self.vol.geo.stripe_blocks()
        {
            // Marked as its reads go out (see `issue_reads`): its journal state's shard is
            // fetched now, its miss beside the lock word's rather than after it (the shards of a
            // large volume do not all stay in the nearest caches). Not for a full stripe: a
            // stream's was fetched by the write before (see `stream_step`).
            self.prefetch_state(stripe);
        }
        if self.vol.locks.lock(stripe, waiter) {
            self.locked(pi);
        } else if write {
            self.lock_waiting.push((stripe, pi as u32));
        }
    }

    /// Join user write piece `pi` to a write piece of this channel queued for the same
    /// stripe's lock whose range ends where `pi`'s begins or begins where it ends: one stripe
    /// operation (one lock hold, one set of reads, one parity, one mark) then writes both. A
    /// sequential stream of small writes otherwise takes the stripe lock once per write, each
    /// holding it for a read, a parity and a write. Returns whether it joined.
    ///
    /// Only writes not yet started are joined (the leader still waits for its lock), and only
    /// ranges that do not overlap: the merged range's new data is each block's one write. Both
    /// were in flight together, so no order between them and any other write is owed.
    #[cold]
    fn try_merge(&mut self, pi: usize) -> bool {
        let (stripe, start, len) = {
            let p = &self.pieces[pi];
            (p.stripe, p.start, p.len)
        };
        let end = start + len;
        let found = self
            .lock_waiting
            .iter()
            .filter(|&&(s, _)| s == stripe)
            .map(|&(_, l)| l as usize)
            .find(|&l| {
                let q = &self.pieces[l];
                q.start + q.len == start || end == q.start
            });
        let Some(l) = found else {
            return false;
        };
        debug_assert_eq!(self.pieces[l].state, PieceState::WaitLock);
        let geo = self.vol.geo;
        let q = &mut self.pieces[l];
        if !q.leader {
            q.leader = true;
            if self.merges.len() <= l {
                self.merges.resize_with(l + 1, Merge::default);
            }
            self.merges[l].own = (q.start, q.len);
        }
        q.start = q.start.min(start);
        q.len += len;
        q.span = StripeSpan::new(&geo, q.start, q.len);
        self.merges[l].followers.push(pi as u32);
        self.pieces[pi].state = PieceState::Merged;
        self.plan_counts.merged += 1;
        true
    }

    fn locked(&mut self, pi: usize) {
        if !self.lock_waiting.is_empty() {
            if let Some(k) = self
                .lock_waiting
                .iter()
                .position(|&(_, w)| w as usize == pi)
            {
                self.lock_waiting.swap_remove(k);
            }
        }
        self.pieces[pi].locked = true;
        // A write or repair is marked as its reads go out. A resync's stripe stays listed
        // (carried from the record recovery started from) until the recovery is over; rebuild
        // and scrub leave data and parity as they are.
        self.issue_reads(pi)
    }

    /// Fetch piece `pi`'s first line and the line of its state into the caches ahead of its
    /// use (a prefetch hint: nothing is read).
    #[inline]
    fn prefetch_piece(&self, pi: usize) {
        if let Some(p) = self.pieces.get(pi) {
            self.backend.prefetch(std::ptr::addr_of!(*p).cast());
            self.backend.prefetch(std::ptr::addr_of!(p.state).cast());
        }
    }

    /// Fetch the journal state of `stripe` into the caches ahead of its use (nothing without a
    /// journal: the state is never touched then, and a prefetch that misses is not free).
    #[inline]
    fn prefetch_state(&self, stripe: u64) {
        if let (Some(_), Some(jv)) = (&self.journal, &self.jv) {
            self.backend.prefetch(jv.state_address(stripe));
        }
    }

    /// A write or repair piece has what it needs to compute (its reads are in) and its mark is
    /// durable: write data and parity.
    fn write_marked(&mut self, pi: usize) {
        match self.pieces[pi].kind {
            PieceKind::Write => self.write_stripe(pi),
            PieceKind::Repair => {
                let pm = self.vol.geo.parity_member(self.pieces[pi].stripe);
                self.write_xor_of_others(pi, pm)
            }
            k => unreachable!("{k:?} pieces are not marked"),
        }
    }

    /// Mark the stripe of write or repair piece `pi` as its reads go out (called from
    /// `issue_reads` once they are submitted, and again after waiting for room): nothing of
    /// it is written before the stripe is in a durable record (rule 1 of the journal; enforced
    /// in [`Channel::go_on`], the only way to `write_marked`). The record write that makes the
    /// mark durable runs while the piece reads, so a read-modify-write pays the longer of the
    /// two, not their sum. Sets the piece's [`JournalStep`]; writes nothing.
    fn mark(&mut self, pi: usize) {
        debug_assert_eq!(self.pieces[pi].step, JournalStep::Unmarked);
        // Borrowed, not cloned: two reference-count round trips per write are measurable.
        let stripe = self.pieces[pi].stripe;
        let mark = match (&self.journal, &self.jv) {
            (Some(j), Some(jv)) if !j.is_failed() => Some(j.mark_on(self.jslot, jv, stripe)),
            (Some(_), Some(_)) => {
                self.pieces[pi].step = JournalStep::Failed;
                return;
            }
            _ => None,
        };
        let Some(mark) = mark else {
            // Journal switched off (comparison runs only).
            self.stream_step(pi);
            self.pieces[pi].step = JournalStep::Durable;
            return;
        };
        self.journal_counts.marks += 1;
        match mark {
            Mark::Ready => {
                self.journal_counts.fast_path += 1;
                let p = &mut self.pieces[pi];
                p.marked = true;
                p.step = JournalStep::Durable;
                let sequential = self.stream_step(pi);
                if self.list_ahead(pi, sequential) {
                    self.try_flush();
                }
            }
            Mark::Wait(g) => {
                self.stats.durable_waits += 1;
                let p = &mut self.pieces[pi];
                p.marked = true;
                p.step = JournalStep::Wait(g);
                self.waiting.push((pi as u32, g));
                self.wait_for(g);
                let sequential = self.stream_step(pi);
                self.list_ahead(pi, sequential);
                self.try_flush();
            }
            Mark::Full => {
                self.pieces[pi].step = JournalStep::Space;
                self.waiting.push((pi as u32, WAIT_SPACE));
                let j = self.journal.as_ref().expect("marked above");
                j.space_wait();
                let g = j.open_generation();
                self.subscribe(g);
                self.try_flush();
            }
        }
    }

    /// Write or repair piece `pi` has its reads in (state `Reading`) or its journal step
    /// changed while they were (state `WaitJournal`): write once the mark is durable, fail if the
    /// journal failed first, else wait (in `WaitJournal`) for [`Channel::durable_progress`].
    /// The one place a write piece goes from its mark to its writes: the journal's rule 1 is
    /// enforced here.
    fn go_on(&mut self, pi: usize) {
        match self.pieces[pi].step {
            JournalStep::Durable => self.write_marked(pi),
            JournalStep::Wait(_) if self.vol.control_writes_before_durable() => {
                self.write_marked(pi) // the simulator's control only
            }
            JournalStep::Failed => self.finish_piece(pi, Err(IoError::JournalFailed)),
            JournalStep::Wait(_) | JournalStep::Space => {
                self.pieces[pi].state = PieceState::WaitJournal;
            }
            JournalStep::Unmarked => unreachable!("write piece past its reads unmarked"),
        }
    }

    /// Whether write piece `pi` is a full-stripe write one stripe past the one before on this
    /// channel (a sequential stream, see [`Channel::list_ahead`]); asked once per marked write
    /// (a write that found the record full asks when it marks again). A stream's next write takes
    /// the next stripe's lock and then marks it: its lock word and journal state are fetched
    /// now (cold lines otherwise, the stream's data having passed through the caches since).
    fn stream_step(&mut self, pi: usize) -> bool {
        let p = &self.pieces[pi];
        if p.plan != Some(WritePlan::FullStripe) {
            return false;
        }
        let sequential = p.stripe == self.next_sequential;
        self.next_sequential = p.stripe.wrapping_add(1);
        if sequential {
            self.backend
                .prefetch(self.vol.locks.word_address(self.next_sequential));
            // ... and marks it next: its journal state too.
            self.prefetch_state(self.next_sequential);
        }
        sequential
    }

    /// Full-stripe writes of a sequential stream (each piece's stripe one past the one before
    /// on this channel) keep the stripes from `d / 2` to `1.5 × d` ahead of them listed
    /// ([`Journal::list_ahead`]; `d` is [`crate::journal::JournalConfig::list_ahead`]), and ask
    /// for the record that makes them durable: the stream then finds its stripes durable and
    /// does not wait for a record per group of writes, with nothing to do while it waits. One
    /// load per such write (the state of the stripe half the distance ahead) decides. Returns
    /// true when it listed some (the caller then starts a record write unless it does anyway).
    fn list_ahead(&mut self, pi: usize, sequential: bool) -> bool {
        let stripe = self.pieces[pi].stripe;
        let (true, Some(j), Some(jv)) = (sequential, &self.journal, &self.jv) else {
            return false;
        };
        let d = j.cfg.list_ahead;
        let from = stripe + d / 2;
        if d == 0 || from >= jv.stripes() {
            return false;
        }
        // The next write of the stream looks at the stripe after `from`: fetch its state now
        // (a cold line of the state table otherwise, the stream's data having passed through
        // the caches since it was listed).
        if from + 1 < jv.stripes() {
            self.prefetch_state(from + 1);
        }
        if jv.listed(from) {
            return false;
        }
        match j.list_ahead_on(self.jslot, jv, from, from + d) {
            Some(g) => {
                self.request(g);
                true
            }
            None => false,
        }
    }

    /// A waiter of this channel (in [`Channel::waiting`]) waits for generation `g`: ask for it
    /// and subscribe, each unless already done for it or a lower generation (every waiting
    /// write of an open generation after the first skips both: three shared read-modify-writes
    /// per write).
    fn wait_for(&mut self, g: u64) {
        self.request(g);
        if g < self.subscribed {
            self.subscribe(g);
        }
    }

    /// Ask the journal for generation `g` unless this channel asked for it or a later one.
    fn request(&mut self, g: u64) {
        if g > self.requested {
            if let Some(j) = &self.journal {
                j.request(g);
                self.requested = g;
            }
        }
    }

    /// Subscribe this channel to generation `g` (it is told by message when `g` is durable; at
    /// once, through its local queue, when it already is).
    fn subscribe(&mut self, g: u64) {
        let Some(j) = &self.journal else {
            return;
        };
        self.subscribed = self.subscribed.min(g);
        if j.subscribe(self.jslot, g) {
            self.local.push_back(Msg::Durable { generation: g });
        }
    }

    /// Add this channel's journal counts to the journal's (at each tick, when the channel
    /// leaves its journal, and when it is dropped): shared counters bumped per write would
    /// cost an atomic read-modify-write each.
    fn publish_journal_counts(&mut self) {
        let c = std::mem::take(&mut self.journal_counts);
        if let Some(j) = &self.journal {
            j.stats.add(c.marks, c.fast_path, c.user_writes);
        }
    }

    /// Add this channel's counts to the journal's and the volume's (at each tick and when it is
    /// dropped): counters shared by every reactor, bumped per write, would bounce their cache
    /// line between the reactors.
    fn publish_counts(&mut self) {
        self.publish_journal_counts();
        self.publish_plan_counts();
    }

    /// The write plan part of [`Channel::publish_counts`]; also whenever the channel goes idle
    /// (at most one shared increment per write then, as each write bumped one before).
    fn publish_plan_counts(&mut self) {
        let c = std::mem::take(&mut self.plan_counts);
        let st = &self.vol.stats;
        use std::sync::atomic::Ordering::Relaxed;
        for (n, counter) in [
            (c.full_stripe, &st.full_stripe),
            (c.reconstruct_write, &st.reconstruct_write),
            (c.read_modify_write, &st.read_modify_write),
            (c.merged, &st.merged_writes),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }

    fn handle_msg(&mut self, msg: Msg) {
        match msg {
            Msg::LockGranted { token } => {
                if let Some(pi) = self.piece_of(token) {
                    debug_assert_eq!(self.pieces[pi].state, PieceState::WaitLock);
                    self.locked(pi);
                }
            }
            Msg::Durable { .. } => self.durable_progress(),
            Msg::JournalKick => {
                if let Some(j) = &self.journal {
                    if j.flush_useful(false, 0) {
                        self.try_flush();
                    }
                }
            }
        }
    }

    /// Let every waiter whose generation is durable go on (or mark again, for room); re-subscribe
    /// the rest. A waiter may still be reading: its step changes, and it goes on when its reads
    /// are in.
    fn durable_progress(&mut self) {
        let Some(j) = self.journal.clone() else {
            return;
        };
        self.jv
            .as_ref()
            .expect("journal volume present with a journal");
        // Every waiter is looked at below, and the lowest one left subscribed for again.
        self.subscribed = u64::MAX;
        let mut list = std::mem::take(&mut self.waiting);
        let mut keep = std::mem::take(&mut self.waiting_spare);
        let failed = j.is_failed();
        let durable = j.durable_generation();
        // A record releases dozens of writes, whose pieces were last touched when their reads
        // went out: fetch each a few entries ahead of its turn, so their misses overlap.
        const AHEAD: usize = 4;
        for &(pi32, _) in list.iter().take(AHEAD) {
            self.prefetch_piece(pi32 as usize);
        }
        for (i, &(pi32, g)) in list.iter().enumerate() {
            if let Some(&(next, _)) = list.get(i + AHEAD) {
                self.prefetch_piece(next as usize);
            }
            if !failed && g != WAIT_SPACE && g > durable {
                keep.push((pi32, g));
                continue;
            }
            let pi = pi32 as usize;
            let p = &mut self.pieces[pi];
            let space = g == WAIT_SPACE;
            let expected = if space {
                JournalStep::Space
            } else {
                JournalStep::Wait(g)
            };
            if p.state == PieceState::Free || p.step != expected {
                continue; // finished meanwhile (`finish_piece` took its entry back)
            }
            if space {
                j.space_done();
            }
            p.step = if failed {
                JournalStep::Failed
            } else if space {
                JournalStep::Unmarked
            } else {
                JournalStep::Durable
            };
            if p.step == JournalStep::Unmarked {
                // Marks again; waits again (re-listed in `self.waiting`) when still full.
                self.mark(pi);
            }
            if self.pieces[pi].state == PieceState::WaitJournal {
                self.go_on(pi);
            }
        }
        list.clear();
        self.waiting_spare = list;
        keep.append(&mut self.waiting);
        self.waiting = keep;
        let lowest = self
            .waiting
            .iter()
            .map(|&(_, g)| {
                if g == WAIT_SPACE {
                    j.open_generation()
                } else {
                    g
                }
            })
            .min();
        if let Some(g) = lowest {
            self.subscribe(g);
        }
    }

    // ---- reads and writes ------------------------------------------------------------------

    fn submit_piece_io(
        &mut self,
        pi: usize,
        member: u32,
        op: IoOp,
        rows: (u64, u64),
        buf: Buf,
        off: usize,
    ) {
        let p = &mut self.pieces[pi];
        p.pending += 1;
        let tag = (KIND_PIECE << KIND_SHIFT) | (self.token(pi) << 8) | member as u64;
        let lba = self.vol.geo.member_lba(self.pieces[pi].stripe, rows.0);
        self.backend.submit(DeviceIo {
            dev: Device::Member(member),
            op,
            lba,
            blocks: rows.1 - rows.0,
            buf: Some(buf),
            buf_offset: off,
            tag,
        });
    }

    fn issue_reads(&mut self, pi: usize) {
        if !self.vol.usable() {
            return self.finish_piece(pi, Err(IoError::VolumeFailed));
        }
        let geo = self.vol.geo;
        let bs = geo.block_size as usize;
        let mut failed = self.vol.failed_for(self.pieces[pi].stripe);
        if let Some(bad) = self.pieces[pi].bad_member {
            if failed.is_some_and(|f| f != bad) {
                // Another member went meanwhile: nothing left to rebuild the bad blocks from.
                self.vol.fail_member(bad);
                return self.finish_piece(pi, Err(IoError::VolumeFailed));
            }
            failed = Some(bad);
        }
        let p = &self.pieces[pi];
        let rebuilds_from_parity = match p.kind {
            PieceKind::Read => p.degraded,
            PieceKind::Write => true,
            _ => false,
        };
        if rebuilds_from_parity && self.untrusted_parity_needed(pi, failed) {
            return self.finish_piece(pi, Err(IoError::ParityUntrusted));
        }
        let p = &mut self.pieces[pi];
        p.failed = failed;
        p.state = PieceState::Reading;
        p.io_failed = false;
        p.direct = false;
        let (stripe, span, kind) = (p.stripe, p.span, p.kind);
        let rows = (span.lo, span.hi);
        let row_bytes = span.rows() as usize * bs;
        let pm = geo.parity_member(stripe);
        let d = geo.data_members();
        // Reused (taken here, put back below): a list per piece would be an allocation per I/O.
        let mut reads = std::mem::take(&mut self.read_list);
        reads.clear();
        match kind {
            PieceKind::Read if !p.degraded => {
                for i in 0..d {
                    if span.touched(i as usize) {
                        reads.push((geo.data_member(stripe, i), span.range(i as usize)));
                    }
                }
            }
            PieceKind::Read => {
                // Degraded read: every survivor over the rows.
                read_all_but(&mut reads, geo.members, failed, rows);
                self.vol
                    .stats
                    .degraded_read
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            PieceKind::Resync | PieceKind::Repair => {
                if failed.is_some() {
                    // No parity can be trusted or rebuilt without every member.
                    return self.finish_piece(pi, Err(IoError::VolumeFailed));
                }
                for i in 0..d {
                    reads.push((geo.data_member(stripe, i), rows));
                }
            }
            PieceKind::Scrub => {
                if failed.is_some() {
                    return self.finish_piece(pi, Err(IoError::VolumeFailed));
                }
                read_all_but(&mut reads, geo.members, None, rows);
            }
            PieceKind::Rebuild => {
                let Some(target) = self.vol.rebuilding() else {
                    return self.finish_piece(pi, Err(IoError::VolumeFailed));
                };
                if self.vol.serves(target, stripe) {
                    return self.finish_piece(pi, Ok(())); // already rebuilt
                }
                read_all_but(&mut reads, geo.members, Some(target), rows);
            }
            PieceKind::Write => {
                let mut plan = plan::choose(&geo, stripe, &span, failed);
                if plan == WritePlan::ReadModifyWrite
                    && (self.vol.parity_uninitialised(stripe) || self.vol.parity_untrusted(stripe))
                {
                    // Old parity may be stale (or never made): parity from all the data.
                    plan = WritePlan::ReconstructWrite;
                }
                p.plan = Some(plan);
                // Counted per channel (see `publish_counts`); the rare degraded ones directly.
                let c = &mut self.plan_counts;
                match plan {
                    WritePlan::FullStripe => c.full_stripe += 1,
                    WritePlan::ReconstructWrite => c.reconstruct_write += 1,
                    WritePlan::ReadModifyWrite => c.read_modify_write += 1,
                    WritePlan::DataOnly | WritePlan::Degraded => {
                        let st = &self.vol.stats;
                        st.degraded_write
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                match plan {
                    WritePlan::FullStripe | WritePlan::DataOnly => {}
                    WritePlan::ReconstructWrite => {
                        for i in 0..d {
                            if !span.covers_rows(i as usize) {
                                reads.push((geo.data_member(stripe, i), rows));
                            }
                        }
                    }
                    WritePlan::ReadModifyWrite => {
                        for i in 0..d {
                            if span.touched(i as usize) {
                                reads.push((geo.data_member(stripe, i), rows));
                            }
                        }
                        reads.push((pm, rows));
                    }
                    WritePlan::Degraded => {
                        read_all_but(&mut reads, geo.members, failed, rows);
                    }
                }
            }
        }
        // A write or repair marks its stripe here, as its reads go out; a retried piece keeps
        // its mark.
        let marks = matches!(kind, PieceKind::Write | PieceKind::Repair)
            && self.pieces[pi].step == JournalStep::Unmarked;
        if reads.is_empty() {
            self.read_list = reads;
            if marks {
                self.mark(pi);
            }
            return self.reads_done(pi);
        }
        if kind == PieceKind::Read && !self.pieces[pi].degraded && reads.len() == 1 {
            // A request that is this one member range: the member reads into its buffer.
            let (m, r) = reads[0];
            let (req, buf_off) = (self.pieces[pi].req as usize, self.pieces[pi].buf_off);
            let len = (r.1 - r.0) as usize * bs;
            let whole = buf_off == 0 && self.reqs[req].buf.as_ref().is_some_and(|b| b.len() == len);
            if whole {
                let buf = self.reqs[req].buf.take().expect("read has a buffer");
                self.pieces[pi].direct = true;
                self.read_list = reads;
                return self.submit_piece_io(pi, m, IoOp::Read, r, buf, 0);
            }
        }
        for &(m, r) in &reads {
            let len = if kind == PieceKind::Read && !self.pieces[pi].degraded {
                (r.1 - r.0) as usize * bs
            } else {
                row_bytes
            };
            let buf = self.pool.take(len);
            self.submit_piece_io(pi, m, IoOp::Read, r, buf, 0);
        }
        self.read_list = reads;
        if marks {
            // After the reads are submitted (no completion comes before this returns): their
            // submission gives the journal state fetched when the lock was taken time to
            // arrive, and the record that makes the mark durable is written while they run.
            self.mark(pi);
        }
    }

    fn piece_io_done(&mut self, tag: u64, ok: bool, buf: Option<Buf>) {
        let token = (tag & ((1 << KIND_SHIFT) - 1)) >> 8;
        let member = (tag & 0xff) as u32;
        let Some(pi) = self.piece_of(token) else {
            if let Some(b) = buf {
                self.pool.give(b);
            }
            return;
        };
        let p = &mut self.pieces[pi];
        p.pending -= 1;
        match p.state {
            PieceState::Reading if p.direct => {
                // The request's own buffer comes home (filled when `ok`).
                let req = p.req as usize;
                self.reqs[req].buf = buf;
            }
            PieceState::Reading => {
                if let Some(b) = buf {
                    if let Some(old) = p.bufs[member as usize].replace(b) {
                        self.pool.give(old);
                    }
                }
            }
            _ => {
                if let Some(b) = buf {
                    self.pool.give(b);
                }
            }
        }
        if !ok {
            let p = &mut self.pieces[pi];
            if p.repairing {
                // The rewrite of the rebuilt blocks failed too: now the member goes.
                self.vol.fail_member(member);
            } else if p.kind == PieceKind::Read
                && p.state == PieceState::Reading
                && p.bad_member.is_none()
                && self.vol.failed_count() == 0
            {
                // A read error on a healthy volume: rebuild the blocks from the others and
                // write them back before giving up on the member (as md does).
                p.bad_member = Some(member);
                p.io_failed = true;
            } else {
                self.vol.fail_member(member);
                self.pieces[pi].io_failed = true;
            }
        }
        if self.pieces[pi].pending > 0 {
            // The piece's next step after its last write is a clean of its stripe's journal
            // state, whose shard may have left the nearest caches meanwhile, and the release of
            // its lock word: fetch both now, while the last I/O of the piece finishes (a
            // member's completions come one after another). Once, before the last: a full
            // stripe's four writes fetched the state three times.
            let p = &self.pieces[pi];
            if p.pending == 1 && p.state == PieceState::Writing {
                if p.marked {
                    self.prefetch_state(p.stripe);
                }
                self.backend.prefetch(self.vol.locks.word_address(p.stripe));
            }
            return;
        }
        if self.pieces[pi].repairing {
            self.pieces[pi].repairing = false;
            if ok {
                self.vol
                    .stats
                    .read_repaired
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // The data was rebuilt either way.
            self.copy_out(pi);
            return self.finish_piece(pi, Ok(()));
        }
        if self.pieces[pi].io_failed {
            return self.retry(pi);
        }
        match self.pieces[pi].state {
            PieceState::Reading => self.reads_done(pi),
            PieceState::Writing => self.finish_piece(pi, Ok(())),
            s => unreachable!("device completion for a piece in state {s:?}"),
        }
    }

    /// A member failed under this piece: plan again for the degraded volume. Writes keep their
    /// lock and mark; a read that did not hold the lock takes it now.
    fn retry(&mut self, pi: usize) {
        self.release_bufs(pi);
        if !self.vol.usable() {
            return self.finish_piece(pi, Err(IoError::VolumeFailed));
        }
        let p = &mut self.pieces[pi];
        if p.kind == PieceKind::Read && !p.locked {
            p.degraded = true;
            return self.lock_piece(pi);
        }
        p.degraded = p.kind == PieceKind::Read;
        self.issue_reads(pi)
    }

    fn reads_done(&mut self, pi: usize) {
        match self.pieces[pi].kind {
            PieceKind::Read => {
                if let Some(bad) = self.pieces[pi].bad_member {
                    if self.vol.health(bad) == super::volume::MemberHealth::Active {
                        return self.write_back_rebuilt(pi, bad);
                    }
                }
                if !self.pieces[pi].direct {
                    self.copy_out(pi);
                }
                self.finish_piece(pi, Ok(()));
            }
            // Marked as the reads went out: writes once that mark is durable.
            PieceKind::Write | PieceKind::Repair => self.go_on(pi),
            PieceKind::Resync => {
                let pm = self.vol.geo.parity_member(self.pieces[pi].stripe);
                self.write_xor_of_others(pi, pm)
            }
            PieceKind::Scrub => {
                let members = self.vol.geo.members;
                let bufs = &self.pieces[pi].bufs;
                let mut acc = self.pool.take(bufs[0].as_ref().map_or(0, |b| b.len()));
                xor_others(&self.backend, &mut acc, bufs, members, members, false);
                let clean = acc.as_slice().iter().all(|&b| b == 0);
                self.pool.give(acc);
                let result = if clean {
                    Ok(())
                } else {
                    Err(IoError::ParityMismatch)
                };
                self.finish_piece(pi, result)
            }
            PieceKind::Rebuild => match self.vol.rebuilding() {
                Some(target) => self.write_xor_of_others(pi, target),
                None => self.finish_piece(pi, Err(IoError::VolumeFailed)),
            },
        }
    }

    /// A user read met a read error on `bad`: its rows were read from every other member
    /// (under the stripe lock); write `bad`'s rebuilt rows back to it. The stripe stays
    /// consistent whatever becomes of that write (the rebuilt rows are what parity says), and
    /// the read completes with the rebuilt data in any case.
    fn write_back_rebuilt(&mut self, pi: usize, bad: u32) {
        let geo = self.vol.geo;
        let bs = geo.block_size as usize;
        let p = &self.pieces[pi];
        let rows = (p.span.lo, p.span.hi);
        let mut out = self.pool.take(p.span.rows() as usize * bs);
        xor_others(
            &self.backend,
            &mut out,
            &self.pieces[pi].bufs,
            bad,
            geo.members,
            false,
        );
        let p = &mut self.pieces[pi];
        p.state = PieceState::Writing;
        p.repairing = true;
        self.submit_piece_io(pi, bad, IoOp::Write, rows, out, 0);
    }

    /// Copy read data into the request buffer, rebuilding the missing member if needed.
    fn copy_out(&mut self, pi: usize) {
        let geo = self.vol.geo;
        let bs = geo.block_size as usize;
        let p = &mut self.pieces[pi];
        let (stripe, span, degraded, failed) = (p.stripe, p.span, p.degraded, p.failed);
        let mut bufs = std::mem::take(&mut p.bufs);
        if degraded {
            if let Some(f) = failed {
                let mut out = self.pool.take(span.rows() as usize * bs);
                xor_others(&self.backend, &mut out, &bufs, f, geo.members, false);
                bufs[f as usize] = Some(out);
            }
        }
        let p = &self.pieces[pi];
        let dst = self.reqs[p.req as usize]
            .buf
            .as_mut()
            .expect("read has a buffer")
            .as_mut_slice();
        for i in 0..geo.data_members() {
            let (a, b) = span.range(i as usize);
            if a >= b {
                continue;
            }
            let m = geo.data_member(stripe, i) as usize;
            let src_off = if degraded {
                (a - span.lo) as usize * bs
            } else {
                0
            };
            let len = (b - a) as usize * bs;
            let dst_off = p.buf_off + (i as u64 * geo.strip_blocks + a - p.start) as usize * bs;
            let Some(src) = bufs[m].as_ref() else {
                panic!("no buffer for member {m} (data index {i}) stripe {stripe} degraded={degraded} failed={failed:?} span={:?} kind={:?}", span, p.kind);
            };
            let src = src.as_slice();
            dst[dst_off..dst_off + len].copy_from_slice(&src[src_off..src_off + len]);
        }
        self.pieces[pi].bufs = bufs;
    }

    /// Compute the new parity for the piece's plan and write data and parity.
    fn write_stripe(&mut self, pi: usize) {
        // The stripe's journal state is next touched by the clean after these writes, its
        // shard's line likely gone from the nearest caches since the mark: start fetching it
        // now, ahead of the parity computation and the writes (fetched again before the last
        // write completes: see `piece_io_done`).
        if self.pieces[pi].marked {
            self.prefetch_state(self.pieces[pi].stripe);
        }
        if self.pieces[pi].leader && self.merges[pi].gathered.is_none() {
            self.gather(pi);
        }
        let geo = self.vol.geo;
        let bs = geo.block_size as usize;
        let p = &mut self.pieces[pi];
        let failed = p.failed;
        let (stripe, span, plan) = (p.stripe, p.span, p.plan.expect("write is planned"));
        let pm = geo.parity_member(stripe) as usize;
        let row_bytes = span.rows() as usize * bs;
        let mut bufs = std::mem::take(&mut p.bufs);
        let start = p.start;
        // The new data: the request's buffer, or what `gather` built from every merged one.
        let gathered = p
            .leader
            .then(|| self.merges[pi].gathered.as_ref())
            .flatten();
        let (src_buf, buf_off) = match gathered {
            Some(g) => (g, 0),
            None => (
                self.reqs[p.req as usize]
                    .buf
                    .as_ref()
                    .expect("write has a buffer"),
                p.buf_off,
            ),
        };
        let src = src_buf.as_slice();
        let new_data = |i: u32, a: u64, b: u64| {
            let off = buf_off + (i as u64 * geo.strip_blocks + a - start) as usize * bs;
            &src[off..off + (b - a) as usize * bs]
        };
        if plan == WritePlan::Degraded {
            let f = failed.expect("degraded plan has a failed member");
            let mut out = self.pool.take(row_bytes);
            xor_others(&self.backend, &mut out, &bufs, f, geo.members, false);
            bufs[f as usize] = Some(out);
        }
        for i in 0..geo.data_members() {
            let (a, b) = span.range(i as usize);
            if a >= b {
                continue;
            }
            let m = geo.data_member(stripe, i) as usize;
            let range = (a - span.lo) as usize * bs..(b - span.lo) as usize * bs;
            if plan == WritePlan::ReadModifyWrite {
                let mut par = bufs[pm].take().expect("old parity read");
                let old = bufs[m].as_ref().expect("old data read").as_slice();
                self.backend.xor_update(
                    &mut par.as_mut_slice()[range.clone()],
                    &old[range.clone()],
                    new_data(i, a, b),
                );
                bufs[pm] = Some(par);
            }
            if (a, b) == (span.lo, span.hi) {
                // Every row this member writes is new data: write it straight from the
                // request's buffer (a read-only view), no copy.
                if let Some(old) = bufs[m].take() {
                    self.pool.give(old);
                }
                let off = buf_off + (i as u64 * geo.strip_blocks + a - start) as usize * bs;
                bufs[m] = Some(src_buf.share(off, (b - a) as usize * bs));
                continue;
            }
            if bufs[m].is_none() {
                bufs[m] = Some(self.pool.take(row_bytes));
            }
            bufs[m].as_mut().expect("data buffer").as_mut_slice()[range]
                .copy_from_slice(new_data(i, a, b));
        }
        // Reconstruct-write: the parity goes in place into the old-data buffer of a member the
        // write leaves alone (read for the parity, not written back): three XOR streams and no
        // fresh buffer, where computing into a new one wrote a fourth.
        let in_place = (plan == WritePlan::ReconstructWrite && bufs[pm].is_none())
            .then(|| {
                (0..geo.data_members()).find_map(|i| {
                    let (a, b) = span.range(i as usize);
                    let m = geo.data_member(stripe, i) as usize;
                    let own = bufs[m]
                        .as_ref()
                        .is_some_and(|x| x.is_writable() && x.len() == row_bytes);
                    (a >= b && own).then_some(m)
                })
            })
            .flatten();
        if let Some(u) = in_place {
            let mut out = bufs[u].take().expect("untouched member's old data");
            xor_others(&self.backend, &mut out, &bufs, pm as u32, geo.members, true);
            bufs[pm] = Some(out);
        } else if matches!(
            plan,
            WritePlan::FullStripe | WritePlan::ReconstructWrite | WritePlan::Degraded
        ) {
            let mut out = bufs[pm].take().unwrap_or_else(|| self.pool.take(row_bytes));
            out.set_len(row_bytes);
            xor_others(
                &self.backend,
                &mut out,
                &bufs,
                pm as u32,
                geo.members,
                false,
            );
            bufs[pm] = Some(out);
        }
        // Issue writes: touched data strips on live members, then parity.
        self.pieces[pi].state = PieceState::Writing;
        self.pieces[pi].io_failed = false;
        let mut writes = 0;
        for i in 0..geo.data_members() {
            let (a, b) = span.range(i as usize);
            let m = geo.data_member(stripe, i);
            if a >= b || Some(m) == failed {
                continue;
            }
            let buf = bufs[m as usize].take().expect("data buffer built");
            self.submit_piece_io(pi, m, IoOp::Write, (a, b), buf, (a - span.lo) as usize * bs);
            writes += 1;
        }
        if plan != WritePlan::DataOnly && Some(pm as u32) != failed {
            let buf = bufs[pm].take().expect("parity built");
            self.submit_piece_io(pi, pm as u32, IoOp::Write, (span.lo, span.hi), buf, 0);
            writes += 1;
        }
        for b in bufs.iter_mut() {
            if let Some(b) = b.take() {
                self.pool.give(b);
            }
        }
        self.pieces[pi].bufs = bufs;
        if writes == 0 {
            self.finish_piece(pi, Ok(()));
        }
    }

    /// Gather the new data of leader `pi` and its followers (merged by [`Channel::try_merge`])
    /// into one buffer over the merged range, which the stripe write then takes its data from.
    #[cold]
    fn gather(&mut self, pi: usize) {
        let bs = self.vol.geo.block_size as usize;
        let m = &self.merges[pi];
        let p = &self.pieces[pi];
        let base = p.start;
        let mut g = self.pool.take(p.len as usize * bs);
        let dst = g.as_mut_slice();
        let parts =
            std::iter::once((p.req, m.own, p.buf_off)).chain(m.followers.iter().map(|&f| {
                let f = &self.pieces[f as usize];
                (f.req, (f.start, f.len), f.buf_off)
            }));
        for (req, (start, len), off) in parts {
            let src = self.reqs[req as usize]
                .buf
                .as_ref()
                .expect("write has a buffer")
                .as_slice();
            let at = (start - base) as usize * bs;
            let n = len as usize * bs;
            dst[at..at + n].copy_from_slice(&src[off..off + n]);
        }
        self.merges[pi].gathered = Some(g);
    }

    /// Write the XOR of every other member's strip to `target`: the parity for resync and repair,
    /// the missing strip for rebuild.
    fn write_xor_of_others(&mut self, pi: usize, target: u32) {
        let geo = self.vol.geo;
        let span = self.pieces[pi].span;
        let mut out = self
            .pool
            .take(span.rows() as usize * geo.block_size as usize);
        xor_others(
            &self.backend,
            &mut out,
            &self.pieces[pi].bufs,
            target,
            geo.members,
            false,
        );
        self.release_bufs(pi);
        self.pieces[pi].state = PieceState::Writing;
        self.submit_piece_io(pi, target, IoOp::Write, (span.lo, span.hi), out, 0);
    }

    fn release_bufs(&mut self, pi: usize) {
        let mut bufs = std::mem::take(&mut self.pieces[pi].bufs);
        for b in bufs.iter_mut() {
            if let Some(b) = b.take() {
                self.pool.give(b);
            }
        }
        self.pieces[pi].bufs = bufs;
        if self.pieces[pi].leader {
            if let Some(g) = self.merges[pi].gathered.take() {
                self.pool.give(g);
            }
        }
    }

    /// Whether piece `pi` (a read or write meeting missing member `failed`) would rebuild that
    /// member's data from a parity that is not trusted yet ([`Volume::parity_untrusted`]).
    /// The parity member missing costs nothing (data is read and written as it is).
    fn untrusted_parity_needed(&self, pi: usize, failed: Option<u32>) -> bool {
        let stripe = self.pieces[pi].stripe;
        failed.is_some_and(|f| f != self.vol.geo.parity_member(stripe))
            && self.vol.parity_untrusted(stripe)
    }

    fn finish_piece(&mut self, pi: usize, result: Result<(), IoError>) {
        self.release_bufs(pi);
        let p = &mut self.pieces[pi];
        let stripe = p.stripe;
        if p.kind == PieceKind::Rebuild && result.is_ok() && p.locked {
            // Still under the stripe lock: writers that take it next see the member serving.
            self.vol.mark_rebuilt(stripe);
        }
        if p.kind == PieceKind::Resync && result.is_ok() && p.locked {
            // Under the stripe lock: its parity now matches its data.
            self.vol.mark_synced(stripe);
        }
        let p = &mut self.pieces[pi];
        let step = std::mem::take(&mut p.step);
        if let JournalStep::Wait(_) | JournalStep::Space = step {
            // Finished before its wait was over (its reads failed the volume): its entry goes.
            self.forget_wait(pi, step);
        }
        let p = &mut self.pieces[pi];
        if p.marked {
            p.marked = false;
            if let (Some(j), Some(jv)) = (&self.journal, &self.jv) {
                // The clean time orders this write against member flushes only where members
                // cache writes volatilely ([`Journal::clean`]); else it only times the stripe's
                // hysteresis, and the clock as the reactor last read it will do.
                let now = if jv.volatile_members() {
                    self.backend.now_us()
                } else {
                    self.backend.recent_us()
                };
                if j.clean(jv, stripe, now) {
                    self.local.push_back(Msg::JournalKick);
                }
            }
        }
        let p = &mut self.pieces[pi];
        if p.locked {
            p.locked = false;
            if let Some(w) = self.vol.locks.unlock(stripe) {
                self.send(w.addr, Msg::LockGranted { token: w.token });
            }
        }
        if self.pieces[pi].leader {
            self.finish_followers(pi, result);
        }
        self.retire_piece(pi, result);
    }

    /// Take back the entry of piece `pi`, finished while it waited for the journal (`step`).
    #[cold]
    fn forget_wait(&mut self, pi: usize, step: JournalStep) {
        let g = match step {
            JournalStep::Wait(g) => g,
            _ => WAIT_SPACE,
        };
        // Not found while `durable_progress` holds the list: it then skips the entry (the
        // piece's step no longer matches it).
        self.waiting
            .retain(|&(w, wg)| !(w as usize == pi && wg == g));
        if g == WAIT_SPACE {
            if let Some(j) = &self.journal {
                j.space_done();
            }
        }
    }

    /// The writes merged into piece `pi` had their blocks written (or failed) with it: they
    /// finish with its result.
    #[cold]
    fn finish_followers(&mut self, pi: usize, result: Result<(), IoError>) {
        self.pieces[pi].leader = false;
        let mut followers = std::mem::take(&mut self.merges[pi].followers);
        for f in followers.drain(..) {
            self.retire_piece(f as usize, result);
        }
        self.merges[pi].followers = followers; // empty: its room is kept for the next use
    }

    /// Free piece `pi` and count it done in its request (completed with its last piece).
    #[inline]
    fn retire_piece(&mut self, pi: usize, result: Result<(), IoError>) {
        let p = &mut self.pieces[pi];
        let req = p.req as usize;
        p.state = PieceState::Free;
        p.gen = p.gen.wrapping_add(1);
        self.free_pieces.push(pi as u32);
        let r = &mut self.reqs[req];
        if let Err(e) = result {
            r.error.get_or_insert(e);
        }
        r.left -= 1;
        if r.left == 0 {
            self.complete_req(req);
        }
    }

    fn complete_req(&mut self, ri: usize) {
        let r = &mut self.reqs[ri];
        let result = match r.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        match r.op {
            Some(UserOp::Read) => self.stats.reads += 1,
            Some(UserOp::Write) => self.stats.writes += 1,
            _ => {}
        }
        let c = Completion {
            tag: r.tag,
            result,
            buf: r.buf.take(),
        };
        // The ordering rule of the module docs: a successful write waits for every member
        // failure before it to be recorded.
        let hold = r.op == Some(UserOp::Write)
            && c.result.is_ok()
            && (!self.held.is_empty() || self.vol.unrecorded_failures().is_some());
        if hold {
            self.held.push(c);
        } else {
            self.done.push(c);
        }
        r.op = None;
        self.free_reqs.push(ri as u32);
        if self.free_reqs.len() == self.reqs.len() {
            self.publish_plan_counts(); // idle: what status reads is exact
        }
    }

    /// Acknowledge the held writes once every member failure is recorded.
    fn release_held(&mut self) {
        if !self.held.is_empty() && self.vol.unrecorded_failures().is_none() {
            self.done.append(&mut self.held);
        }
    }

    fn send(&mut self, to: Address, msg: Msg) {
        if to == self.addr {
            self.local.push_back(msg);
        } else {
            self.backend.send(to, msg);
        }
    }

    fn run_local(&mut self) {
        while let Some(m) = self.local.pop_front() {
            self.handle_msg(m);
        }
    }

    // ---- flushes ---------------------------------------------------------------------------

    fn active_members(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.vol.geo.members).filter(|&m| self.vol.reachable(m))
    }

    fn start_flush(&mut self, ri: usize) {
        let now = self.backend.now_us();
        let members: Vec<u32> = self.active_members().collect();
        self.reqs[ri].left = members.len() as u32;
        self.reqs[ri].started_us = now;
        if members.is_empty() {
            return self.complete_req(ri);
        }
        for m in members {
            self.backend.submit(DeviceIo {
                dev: Device::Member(m),
                op: IoOp::Flush,
                lba: 0,
                blocks: 0,
                buf: None,
                buf_offset: 0,
                tag: (KIND_FLUSH << KIND_SHIFT) | ((ri as u64) << 8) | m as u64,
            });
        }
    }

    fn flush_io_done(&mut self, tag: u64, ok: bool) {
        let ri = ((tag & ((1 << KIND_SHIFT) - 1)) >> 8) as usize;
        let r = &mut self.reqs[ri];
        if !ok {
            self.vol.fail_member((tag & 0xff) as u32);
            r.error = (!self.vol.usable())
                .then_some(IoError::VolumeFailed)
                .or(r.error);
        }
        r.left -= 1;
        if r.left == 0 {
            if r.error.is_none() {
                if let Some(jv) = &self.jv {
                    jv.member_flush_done(r.started_us);
                }
            }
            self.complete_req(ri);
        }
    }

    fn start_member_flush(&mut self) {
        let now = self.backend.now_us();
        let members: Vec<u32> = self.active_members().collect();
        self.member_flush = Some((members.len() as u32, now));
        for m in members {
            self.backend.submit(DeviceIo {
                dev: Device::Member(m),
                op: IoOp::Flush,
                lba: 0,
                blocks: 0,
                buf: None,
                buf_offset: 0,
                tag: (KIND_MEMBER_FLUSH << KIND_SHIFT) | m as u64,
            });
        }
    }

    fn member_flush_done(&mut self, tag: u64, ok: bool) {
        if !ok {
            self.vol.fail_member((tag & 0xff) as u32);
        }
        let Some((left, started)) = self.member_flush.as_mut() else {
            return;
        };
        *left -= 1;
        if *left == 0 {
            let started = *started;
            self.member_flush = None;
            if let Some(jv) = &self.jv {
                jv.member_flush_done(started);
            }
        }
    }

    // ---- journal record writes -------------------------------------------------------------

    /// Become the flusher if no record write is in flight, and write the closing generation.
    fn try_flush(&mut self) {
        // Borrowed, not cloned: this runs for every write that waits for a generation, and a
        // clone is a read-modify-write of a count every reactor shares.
        let Some(j) = self.journal.as_ref() else {
            return;
        };
        if j.record_in_flight() {
            // `begin_flush` would refuse at once; most waiting writes find this, and the clock
            // read below is not free.
            return;
        }
        let now = self.backend.now_us();
        let Some(job) = j.begin_flush(now, &mut self.record_buf) else {
            return;
        };
        self.stats.record_writes += 1;
        let bs = j.cfg.block_size as usize;
        for w in job.writes() {
            let bytes = &self.record_buf[w.start..w.end];
            let mut buf = self.pool.take(bytes.len());
            buf.as_mut_slice().copy_from_slice(bytes);
            self.journal_ios += 1;
            self.backend.submit(DeviceIo {
                dev: Device::Journal(w.dev),
                op: IoOp::Write,
                lba: w.lba,
                blocks: (bytes.len() / bs) as u64,
                buf: Some(buf),
                buf_offset: 0,
                tag: journal_tag(job.generation, w.dev, job.flush_after as u64),
            });
        }
    }

    fn journal_io_done(&mut self, tag: u64, ok: bool, buf: Option<Buf>) {
        self.journal_ios -= 1;
        let j = self.journal.clone().expect("journal I/O without a journal");
        if let Some(b) = buf {
            self.pool.give(b);
        }
        let (g, dev, phase) = journal_tag_parts(tag);
        if ok && phase == JOURNAL_WRITE_THEN_FLUSH {
            // Written; now the device flush that makes it durable.
            self.journal_ios += 1;
            self.backend.submit(DeviceIo {
                dev: Device::Journal(dev),
                op: IoOp::Flush,
                lba: 0,
                blocks: 0,
                buf: None,
                buf_offset: 0,
                tag: journal_tag(g, dev, JOURNAL_FLUSH),
            });
            return;
        }
        let mut notify = std::mem::take(&mut self.notify);
        let mut next_by = None;
        match j.write_done(g, dev, ok, &mut notify) {
            RecordOutcome::Pending | RecordOutcome::Durable { again: false } => {}
            // Writers wait for the next record: a channel on another reactor that this record
            // releases starts it, if there is one. Its writes waited for this record, so that
            // reactor most likely has little else to run: it starts the record as soon as the
            // message arrives and sees the record's completion at once, where this reactor
            // sees it only once its poll loop has been round every request it runs (two
            // reactors, 1 TiB members, random writes: 95 µs between records against 155, median
            // of 9 runs each; docs/bench/20261206-flusher-handoff/). Else this channel starts it.
            // Of several such reactors, the next one after this one's number (cyclically): the
            // role goes round every reactor whose writes wait, where the first one in channel
            // order would pass it back and forth between the two lowest.
            RecordOutcome::Durable { again: true } => {
                let me = self.addr.reactor;
                next_by = notify
                    .iter()
                    .copied()
                    .filter(|a| a.reactor != me)
                    .min_by_key(|a| (a.reactor < me, a.reactor));
                if next_by.is_none() {
                    self.local.push_back(Msg::JournalKick);
                }
            }
            // Retry: the next record carries this one to the surviving device.
            RecordOutcome::Retry => self.local.push_back(Msg::JournalKick),
            RecordOutcome::Failed => {}
        }
        for a in notify.drain(..) {
            self.send(a, Msg::Durable { generation: g });
        }
        if let Some(a) = next_by {
            // After its Durable message (one queue per reactor, in order): it runs its released
            // writes, then starts the record. Should the message be lost (its channel gone),
            // the next record starts at a mark's or a tick's try.
            self.send(a, Msg::JournalKick);
        }
        self.notify = notify;
    }
}

/// Phases of a record I/O, in its tag's low two bits.
const JOURNAL_WRITE: u64 = 0;
const JOURNAL_WRITE_THEN_FLUSH: u64 = 1;
const JOURNAL_FLUSH: u64 = 2;

/// Tag of a record I/O: generation, journal device, phase.
fn journal_tag(g: u64, dev: u32, phase: u64) -> u64 {
    debug_assert!(dev < 2 && phase <= JOURNAL_FLUSH && JOURNAL_WRITE == 0);
    (KIND_JOURNAL << KIND_SHIFT) | (g << 3) | (u64::from(dev) << 2) | phase
}

/// [`journal_tag`]'s parts.
fn journal_tag_parts(tag: u64) -> (u64, u32, u64) {
    let body = tag & ((1 << KIND_SHIFT) - 1);
    (body >> 3, ((body >> 2) & 1) as u32, body & 3)
}

impl<B: Backend> Drop for Channel<B> {
    fn drop(&mut self) {
        self.publish_counts();
        if let Some(j) = &self.journal {
            if self.jslot != usize::MAX {
                j.unregister_channel(self.jslot);
            }
        }
    }
}

/// `out = XOR of every member buffer except `skip`` (members without a buffer are skipped too),
/// with the runtime's kernel ([`Backend::xor_into`]); with `acc`, `out ^=` that XOR
/// ([`Backend::xor_acc`]).
fn xor_others<B: Backend>(
    backend: &B,
    out: &mut Buf,
    bufs: &[Option<Buf>],
    skip: u32,
    members: u32,
    acc: bool,
) {
    let mut srcs: [&[u8]; MAX_MEMBERS] = [&[]; MAX_MEMBERS];
    let mut n = 0;
    for (m, b) in bufs.iter().enumerate().take(members as usize) {
        if m as u32 == skip {
            continue;
        }
        if let Some(b) = b {
            srcs[n] = b.as_slice();
            n += 1;
        }
    }
    if acc {
        backend.xor_acc(out.as_mut_slice(), &srcs[..n]);
    } else {
        backend.xor_into(out.as_mut_slice(), &srcs[..n]);
    }
}
