//! Bring a volume up on reactors: journal from the newest record, recovery, then service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::files::{StateRecorder, VolumeFiles};
use super::reactor::{Ctx, Driver, Runtime, RuntimeOptions, VolumeDevices};
use super::Error;
use crate::control;
use crate::engine::{Completion, MemberHealth, Msg, Volume};
use crate::journal::Journal;
use crate::superblock::MemberState;

/// Resyncs kept in flight during recovery.
const RESYNC_DEPTH: usize = 64;

/// What recovery did.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Generation of the record recovery started from (0: none valid).
    pub generation: u64,
    /// The listed stripes recovery resyncs (after an online start it may still be at it:
    /// [`Engine::recovery_status`]).
    pub resynced: Vec<u64>,
    /// Every stripe was resynced: a journal device was missing.
    pub full_resync: bool,
    /// Resyncs that failed.
    pub resync_errors: u64,
    /// Generation of the record written at the end of recovery.
    pub new_generation: u64,
    /// Listed stripes that could not be resynced because a member is out of service (recorded
    /// failed): their parity may disagree with their data, so the missing member's blocks of
    /// them may be lost.
    pub at_risk: Vec<u64>,
}

/// A volume served by reactor threads.
pub struct Engine {
    /// Shared volume state.
    pub vol: Arc<Volume>,
    /// Its journal (`None` when started without one).
    pub journal: Option<Arc<Journal>>,
    /// The reactors.
    pub runtime: Runtime,
    /// What recovery did (after an online start: what it does; see [`Engine::wait_recovery`]).
    pub recovery: RecoveryReport,
    recovery_shared: Arc<std::sync::Mutex<RecoveryShared>>,
    /// The journal file (for messages).
    recovery_path: std::path::PathBuf,
    /// Records member failures in the superblocks (stops with the engine).
    _recorder: Recorder,
}

/// A thread that records the member failures the engine makes into the surviving members'
/// superblocks and then tells the engine ([`Volume::failures_recorded`]): writes completed
/// meanwhile are acknowledged only after that (the engine's rule "a member failure is durable
/// before a write that depends on it is acknowledged"). It also records the journal devices a
/// mirrored journal wants recorded as dropped ([`Journal::drops_to_record`]), and tells the
/// journal ([`Journal::drops_recorded`]). With the journal on the members, a member out of
/// service takes its journal device with it ([`Volume::journal_copies_out`]) before its failure is
/// recorded, so the same superblock write records both.
struct Recorder {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    rec: Arc<std::sync::Mutex<StateRecorder>>,
}

/// The member states of `vol` as superblocks record them.
fn states_of(vol: &Volume) -> Vec<MemberState> {
    (0..vol.geo.members)
        .map(|m| match vol.health(m) {
            MemberHealth::Active => MemberState::Active,
            MemberHealth::Failed if vol.rebuilding() == Some(m) => MemberState::Rebuilding,
            MemberHealth::Failed => MemberState::Failed,
        })
        .collect()
}

impl Recorder {
    fn start(vol: Arc<Volume>, rec: StateRecorder, journal_on_members: bool) -> Recorder {
        vol.set_records_failures(true);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let rec = Arc::new(std::sync::Mutex::new(rec));
        let rec2 = rec.clone();
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                let upto = vol.unrecorded_failures();
                let journal = vol.journal();
                // A failure about to be recorded takes its member's journal device first.
                if let (true, Some(_), Some(j)) = (journal_on_members, upto, &journal) {
                    for k in vol.journal_copies_out() {
                        j.device_gone(k);
                    }
                }
                let dropped = journal.as_ref().and_then(|j| j.drops_to_record(vol.number));
                if upto.is_none() && dropped.is_none() {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                let r = {
                    // States read under the lock: a record never goes out with older states
                    // than one before it.
                    let mut rec = rec2.lock().unwrap_or_else(|e| e.into_inner());
                    rec.record(&states_of(&vol), dropped)
                };
                match r {
                    Ok(()) => {
                        if let Some(upto) = upto {
                            vol.failures_recorded(upto);
                        }
                        if let (Some(j), Some(m)) = (journal, dropped) {
                            j.drops_recorded(vol.number, m);
                        }
                    }
                    Err(e) => {
                        eprintln!("jraid: member states not recorded ({e}); writes wait, retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        });
        Recorder {
            stop,
            handle: Some(handle),
            rec,
        }
    }

    /// Record the current member states now.
    fn record(&self, vol: &Volume) -> Result<(), Error> {
        let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        rec.record(&states_of(vol), None)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The shared volume state, assembled as the superblocks say (a member recorded failed, or a
/// stale file, stays out of service: a degraded open).
fn volume(
    files: &VolumeFiles,
    number: u32,
    geo: crate::layout::Geometry,
    journal: Option<Arc<Journal>>,
) -> Result<Arc<Volume>, Error> {
    let uses = files.member_uses();
    if !control::assembly::servable(&uses) {
        let out: Vec<String> = uses
            .iter()
            .enumerate()
            .filter(|(_, u)| !u.in_service())
            .map(|(i, u)| format!("m{i} {u:?}"))
            .collect();
        return Err(Error::new(format!(
            "{}: two or more members out of service ({}): the volume cannot serve its data",
            files.dir.display(),
            out.join(", ")
        )));
    }
    let vol = Arc::new(Volume::new(number, geo, true, journal));
    // What the superblocks record (every stripe: files this CLI creates read as zeros).
    vol.set_init_stripes(files.newest_sb().init_stripes);
    for (m, u) in uses.iter().enumerate() {
        if !u.in_service() {
            if *u == control::assembly::MemberUse::Stale {
                eprintln!(
                    "jraid: {}: member {m} missed a state change or held a replaced member: left out",
                    files.members[m].path.display()
                );
            }
            vol.fail_member(m as u32);
        }
    }
    Ok(vol)
}

impl Engine {
    /// Stop the reactors at once (stripes still listed in the journal are resynced by the next
    /// recovery; so are those a recovery still running has not released).
    pub fn stop(mut self) {
        self.stop_recovery();
        self.runtime.stop();
    }

    /// Clean shutdown: a recovery still running stops (its stripes stay listed); then wait (up
    /// to `timeout`) until the journal lists no other stripe of the volume, forcing record
    /// writes so that clean stripes leave, then stop. Returns the stripes still listed.
    pub fn shutdown(mut self, timeout: std::time::Duration) -> Result<u64, Error> {
        self.stop_recovery();
        let left = match &self.journal {
            Some(j) => {
                let d = Drain {
                    journal: j.clone(),
                    floor: j.carried_stripes(self.vol.number).len() as u64,
                    deadline_us: None,
                    timeout_us: timeout.as_micros() as u64,
                    last_kick_us: 0,
                    done: false,
                };
                self.runtime.run(vec![(0, d)], || {})?;
                j.listed_count()
            }
            None => 0,
        };
        self.runtime.stop();
        Ok(left)
    }
}

/// Forces record writes until the journal lists nothing but the carried stripes (or time is
/// up).
struct Drain {
    journal: Arc<Journal>,
    /// Stripes a stopped recovery left listed (carried): they stay.
    floor: u64,
    deadline_us: Option<u64>,
    timeout_us: u64,
    last_kick_us: u64,
    done: bool,
}

impl Driver for Drain {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now_us();
        let deadline = *self.deadline_us.get_or_insert(now + self.timeout_us);
        if self.journal.listed_count() <= self.floor || self.journal.is_failed() || now >= deadline
        {
            self.done = true;
            return;
        }
        // Generations close only when a record is written; hysteresis counts them, so close a
        // few while the stripes age.
        if now >= self.last_kick_us + 20_000 {
            self.last_kick_us = now;
            self.journal.request(self.journal.open_generation());
            ctx.message(0, Msg::JournalKick);
        }
    }

    fn complete(&mut self, _ctx: &mut Ctx<'_>, _volume: usize, _c: Completion) {}

    fn finished(&self) -> bool {
        self.done
    }
}

fn devices(
    files: &VolumeFiles,
    vol: Arc<Volume>,
    jv: Option<Arc<crate::journal::JournalVolume>>,
) -> Result<Arc<VolumeDevices>, Error> {
    let dup = |d: &super::files::Dev| {
        d.file
            .try_clone()
            .map_err(|e| Error::new(format!("{}: {e}", d.path.display())))
    };
    Ok(Arc::new(VolumeDevices {
        vol,
        jv,
        members: files.members.iter().map(dup).collect::<Result<_, _>>()?,
        journal: (0..files.journal_devices())
            .map(|k| files.journal_dev(k).map(dup).transpose())
            .collect::<Result<_, _>>()?,
        journal_block_size: files.journal_sb.block_size,
    }))
}

/// How to bring a volume up.
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    /// Reactor threads.
    pub reactors: u32,
    /// Serve with the journal (false: comparison runs, the write hole is open again).
    pub journal: bool,
    /// Torture mode of the reactors (see [`RuntimeOptions::split_writes`]).
    pub split_writes: bool,
    /// Return as soon as the newest record is read, with the listed stripes resynced in the
    /// background while the volume serves I/O ([`Engine::recovery_status`],
    /// [`Engine::wait_recovery`]); false: return once recovery is over. Only with the journal.
    pub online: bool,
    /// Bandwidth cap of an online resync in bytes per second (0: none).
    pub recovery_bytes_per_s: u64,
}

impl StartOptions {
    /// `reactors` reactors, with or without the journal, recovery over before serving.
    pub fn new(reactors: u32, journal: bool) -> StartOptions {
        StartOptions {
            reactors,
            journal,
            split_writes: false,
            online: false,
            recovery_bytes_per_s: 0,
        }
    }
}

/// Start `reactors` reactors on the volume and run recovery first: take the newest valid record
/// of the journal, resync each stripe it lists for this volume, stop carrying them and write a
/// record with a generation above any seen. With `use_journal` false the volume then serves
/// without a journal (comparison runs: the write hole is open again).
pub fn start(files: &VolumeFiles, reactors: u32, use_journal: bool) -> Result<Engine, Error> {
    start_with(files, &StartOptions::new(reactors, use_journal))
}

/// How a recovery running in the background stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryState {
    /// Resyncing, or flushing the members and writing the record that releases the stripes.
    Running,
    /// Over: every listed stripe resynced and released.
    Done,
    /// Over with an error (in words); the stripes not released stay listed.
    Failed(String),
    /// The volume stopped first; the stripes not released stay listed for the next start.
    Stopped,
}

/// Progress of the recovery ([`Engine::recovery_status`]).
#[derive(Debug, Clone)]
pub struct RecoveryStatus {
    /// Where it stands.
    pub state: RecoveryState,
    /// Stripes to resync.
    pub total: u64,
    /// Stripes resynced so far.
    pub done: u64,
    /// Microseconds since it started (to its end once over).
    pub elapsed_us: u64,
}

/// What the background recovery driver and the engine share.
#[derive(Debug)]
struct RecoveryShared {
    status: RecoveryStatus,
    outcome: Option<Result<control::Outcome, control::RecoveryError>>,
    /// Stop requested (the volume is going away).
    stop: bool,
}

/// Start with options: see [`start`] and [`StartOptions`].
pub fn start_with(files: &VolumeFiles, o: &StartOptions) -> Result<Engine, Error> {
    let (reactors, use_journal) = (o.reactors, o.journal);
    let geo = files.geo;
    let number = files.volume_number();
    let newest = files.newest_record()?;
    let sb = files.newest_sb();
    let complete = control::recovery::journal_complete(
        files.journal_config().mode,
        newest.missing,
        sb.journal_dropped,
    );
    let generation = newest.record.as_ref().map_or(0, |r| r.generation);
    let journal = Arc::new(Journal::new(files.journal_config(), newest.record));
    for k in 0..files.journal_devices() {
        if files.journal_dev(k).is_none() {
            journal.device_gone(k);
        }
    }
    let vol = volume(files, number, geo, Some(journal.clone()))?;
    if !newest.complete && complete {
        let why = files.journal_peer_missing.as_deref().unwrap_or("missing");
        eprintln!(
            "jraid: a journal device is missing ({why}); the journal is mirrored and the members \
             do not record {} as dropped: it holds every record, and the journal goes on with it",
            files.journal.path.display()
        );
    }
    if !complete {
        let why = files.journal_peer_missing.as_deref().unwrap_or("missing");
        if vol.failed_count() > 0 {
            return Err(Error::new(format!(
                "a journal device is missing ({why}) and a member is out of service: the newest \
                 record may have been on the missing device, and without every member the \
                 stripes it listed cannot be resynced; bring the journal device or the member \
                 back"
            )));
        }
        eprintln!(
            "jraid: a journal device is missing ({why}): the newest record may have been on it; \
             every stripe is resynced, and the journal goes on with {}",
            files.journal.path.display()
        );
    }
    let recorder = Recorder::start(
        vol.clone(),
        files.state_recorder()?,
        files.journal_base != 0,
    );
    let (jv, carried) = journal.attach_volume(number, geo.stripes, true);
    journal.drops_found(number, sb.journal_dropped);
    // With a member out of service the listed stripes cannot be resynced: they are at risk.
    let (resync, at_risk) = if vol.failed_count() > 0 {
        (control::Stripes::Listed(Vec::new()), carried)
    } else {
        (
            control::recovery::stripes_to_resync(complete, carried, geo.stripes),
            Vec::new(),
        )
    };
    let devs = devices(files, vol.clone(), Some(jv))?;
    let n = if use_journal { reactors } else { 1 };
    let split = o.split_writes && use_journal;
    let runtime = Runtime::start_with(
        vec![devs],
        n,
        RuntimeOptions {
            split_writes: split,
            wait: None,
        },
    )?;
    // A full resync (a journal device missing) runs before anything is served: the engine's
    // guard of unsynced stripes covers listed ones only.
    let online = o.online && use_journal && complete;
    let total = resync.len();
    let rec = control::Recovery::new(
        number,
        resync.clone(),
        at_risk.clone(),
        control::RecoveryOptions {
            window: RESYNC_DEPTH,
            bytes_per_s: if online { o.recovery_bytes_per_s } else { 0 },
            bytes_per_stripe: geo.stripe_blocks() * geo.block_size as u64 * geo.members as u64,
            ..Default::default()
        },
    );
    // Before any request is served: no stripe not yet resynced trusts its parity.
    rec.guard(&vol);
    let shared = Arc::new(std::sync::Mutex::new(RecoveryShared {
        status: RecoveryStatus {
            state: RecoveryState::Running,
            total,
            done: 0,
            elapsed_us: 0,
        },
        outcome: None,
        stop: false,
    }));
    runtime.background(
        0,
        RecoveryDriver {
            journal: journal.clone(),
            rec,
            tag: 0,
            started_us: None,
            shared: shared.clone(),
            over: false,
        },
    )?;
    let mut engine = Engine {
        vol,
        journal: Some(journal),
        runtime,
        recovery: RecoveryReport {
            generation,
            resynced: match resync {
                control::Stripes::Listed(l) => l,
                control::Stripes::All(n) => (0..n).collect(),
            },
            full_resync: !complete,
            resync_errors: 0,
            at_risk,
            new_generation: 0,
        },
        recovery_shared: shared,
        recovery_path: files.journal.path.clone(),
        _recorder: recorder,
    };
    if online {
        return Ok(engine);
    }
    engine.wait_recovery()?;
    if use_journal {
        return Ok(engine);
    }
    let recovery = engine.recovery.clone();
    let recovery_shared = engine.recovery_shared.clone();
    engine.runtime.stop();
    drop(engine._recorder);
    let vol = volume(files, number, geo, None)?;
    let recorder = Recorder::start(
        vol.clone(),
        files.state_recorder()?,
        files.journal_base != 0,
    );
    let devs = devices(files, vol.clone(), None)?;
    let runtime = Runtime::start_with(
        vec![devs],
        reactors,
        RuntimeOptions {
            split_writes: o.split_writes,
            wait: None,
        },
    )?;
    Ok(Engine {
        vol,
        journal: None,
        runtime,
        recovery,
        recovery_shared,
        recovery_path: files.journal.path.clone(),
        _recorder: recorder,
    })
}

impl Engine {
    /// Where the recovery stands (it runs in the background after an online start).
    pub fn recovery_status(&self) -> RecoveryStatus {
        lock(&self.recovery_shared).status.clone()
    }

    /// Wait until the recovery is over; then [`Engine::recovery`] has its final figures. An
    /// error: a resync failed (member I/O errors), the members could not be flushed, or the
    /// journal failed; the stripes not released stay listed.
    pub fn wait_recovery(&mut self) -> Result<(), Error> {
        let outcome = loop {
            if let Some(o) = lock(&self.recovery_shared).outcome.clone() {
                break o;
            }
            if !self.runtime.running() {
                return Err(Error::new(
                    "recovery: a reactor stopped (see the message above)",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.recovery.new_generation = self.journal.as_ref().map_or(0, |j| j.durable_generation());
        match outcome {
            Ok(_) => Ok(()),
            Err(control::RecoveryError::Resync { failed }) => {
                self.recovery.resync_errors = failed;
                Err(Error::new(format!(
                    "recovery: {failed} listed stripes could not be resynced (member I/O errors)"
                )))
            }
            Err(control::RecoveryError::Journal) => Err(Error::new(format!(
                "{}: journal record write failed during recovery",
                self.recovery_path.display()
            ))),
            Err(e) => Err(Error::new(format!("recovery: {e}"))),
        }
    }

    /// Stop a recovery still running (the volume is going away) and wait for it to end: the
    /// stripes it did not release stay listed for the next start.
    fn stop_recovery(&mut self) {
        lock(&self.recovery_shared).stop = true;
        let _ = self.wait_recovery();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The control plane's recovery ([`control::Recovery`]: resync the carried stripes, flush the
/// members, then release them and force a record write), run in the background on reactor 0
/// through its channel; it reports through [`RecoveryShared`].
struct RecoveryDriver {
    journal: Arc<Journal>,
    rec: control::Recovery,
    tag: u64,
    started_us: Option<u64>,
    shared: Arc<std::sync::Mutex<RecoveryShared>>,
    over: bool,
}

impl Driver for RecoveryDriver {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        if self.over {
            return;
        }
        let now = ctx.now_us();
        let started = *self.started_us.get_or_insert(now);
        if lock(&self.shared).stop {
            self.rec.stop();
        }
        let outcome = loop {
            match self.rec.poll(&self.journal, now) {
                control::Step::Submit(list) => {
                    for s in list {
                        self.tag += 1;
                        if let Err(e) = ctx.submit(0, self.tag, s.op, s.lba, s.blocks, None) {
                            self.rec.refused(e.error);
                        }
                    }
                }
                control::Step::Kick => {
                    ctx.message(0, Msg::JournalKick);
                    break None;
                }
                control::Step::Wait => break None,
                control::Step::Done(r) => break Some(r),
            }
        };
        let mut sh = lock(&self.shared);
        sh.status.done = self.rec.completed();
        sh.status.elapsed_us = now - started;
        if let Some(r) = outcome {
            sh.status.state = match &r {
                Ok(_) => RecoveryState::Done,
                Err(control::RecoveryError::Stopped) => RecoveryState::Stopped,
                Err(e) => RecoveryState::Failed(e.to_string()),
            };
            sh.outcome = Some(r);
            self.over = true;
        }
    }

    fn complete(&mut self, _ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        self.rec.complete(c.result);
    }

    fn finished(&self) -> bool {
        self.over
    }

    fn stop(&mut self) {
        self.rec.stop();
    }
}

impl Engine {
    /// Rebuild member `member` (recorded "rebuilding": [`VolumeFiles::prepare_replacement`])
    /// from the others while the volume serves I/O, `window` stripes at a time; then, with
    /// the members flushed (the pass's rule), it is active and the superblocks say so.
    /// `progress(done, total)` about every 100 ms.
    pub fn rebuild(
        &self,
        member: u32,
        window: usize,
        progress: impl FnMut(u64, u64),
    ) -> Result<PassReport, Error> {
        if !self.vol.start_rebuild(member) {
            return Err(Error::new(format!(
                "member {member} cannot be rebuilt: it is not out of service, or a rebuild runs"
            )));
        }
        // The superblocks say "rebuilding" before the first stripe lands on it.
        self._recorder.record(&self.vol)?;
        let r = self.run_pass(control::PassKind::Rebuild { member }, window, progress)?;
        if r.end == control::PassEnd::Done {
            if !self.vol.finish_rebuild(member) {
                return Err(Error::new(format!(
                    "rebuild of member {member} did not finish ({} of {} stripes)",
                    self.vol.rebuilt_stripes(),
                    self.vol.geo.stripes
                )));
            }
            self._recorder.record(&self.vol)?;
        }
        Ok(r)
    }
}

/// What a background pass did (`jraid scrub`).
#[derive(Debug, Clone)]
pub struct PassReport {
    /// How it ended.
    pub end: control::PassEnd,
    /// Stripes done.
    pub done: u64,
    /// Stripes whose parity disagreed (scrub).
    pub mismatches: u64,
    /// The lowest mismatching stripes, ascending.
    pub mismatch_stripes: Vec<u64>,
    /// Stripes repaired.
    pub repaired: u64,
    /// Errors.
    pub errors: u64,
    /// The first error, in words.
    pub first_error: Option<String>,
}

impl Engine {
    /// Run a background pass of `kind` (the control plane's [`control::Pass`]) on reactor 0,
    /// `window` stripes at a time; `progress(done, total)` about every 100 ms.
    pub fn run_pass(
        &self,
        kind: control::PassKind,
        window: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<PassReport, Error> {
        let pass = control::Pass::new(
            kind,
            &self.vol.geo,
            control::PassOptions {
                window,
                bytes_per_s: 0,
                skip_member_flush: false,
            },
        );
        let total = pass.total();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let d = PassDriver {
            pass,
            end: None,
            done: done.clone(),
        };
        let d = self
            .runtime
            .run(vec![(0, d)], || {
                progress(done.load(Ordering::Relaxed), total)
            })?
            .pop()
            .expect("one driver");
        progress(d.pass.done(), total);
        Ok(PassReport {
            end: d.end.unwrap_or(control::PassEnd::Aborted),
            done: d.pass.done(),
            mismatches: d.pass.mismatches(),
            mismatch_stripes: d.pass.mismatch_stripes().to_vec(),
            repaired: d.pass.repaired(),
            errors: d.pass.errors(),
            first_error: d.pass.first_error().map(str::to_owned),
        })
    }
}

/// Drives a [`control::Pass`] through reactor 0's channel. Tags: the op at bit 48, the stripe
/// below.
struct PassDriver {
    pass: control::Pass,
    end: Option<control::PassEnd>,
    done: Arc<std::sync::atomic::AtomicU64>,
}

impl Driver for PassDriver {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        if self.end.is_some() {
            return;
        }
        let now = ctx.now_us();
        let vol = ctx.volume(0).clone();
        match self.pass.poll(now, &vol, false) {
            control::PassStep::Submit(list) => {
                for s in list {
                    let tag = (control::pass::op_code(s.op) << 48) | s.lba;
                    if let Err(e) = ctx.submit(0, tag, s.op, s.lba, s.blocks, None) {
                        self.pass.refused(s, e.error);
                    }
                }
            }
            control::PassStep::Done(end) => self.end = Some(end),
        }
        self.done.store(self.pass.done(), Ordering::Relaxed);
    }

    fn complete(&mut self, _ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        let op = control::pass::op_of_code(c.tag >> 48);
        self.pass.complete(op, c.tag & ((1 << 48) - 1), c.result);
    }

    fn finished(&self) -> bool {
        self.end.is_some()
    }
}
