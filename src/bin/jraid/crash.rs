//! `jraid crash-test`: a child writes and logs every acknowledged write durably; the parent kills
//! it at a random moment, recovers, fails a member and reads every acknowledged write back.
//!
//! Log: fixed 32-byte records appended by the child. `I` (intent) is written before a write is
//! submitted; `A` (acknowledged) after it completed, and only once the `A` is fdatasync'ed is the
//! write counted and its blocks free for another write. So at most one write per block is in
//! flight, and a block may hold either its latest acknowledged contents or those of a write
//! logged after it (an intent without an acknowledgement: it may or may not have landed).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jraid::engine::{Buf, Completion, UserOp};
use jraid::uring::{self, Ctx, Driver, Error, VolumeFiles};

use crate::util::{fill_block, Rng};

const REC: usize = 32;
const MAGIC: &[u8; 4] = b"JRLG";
const KIND_INTENT: u8 = 1;
const KIND_ACK: u8 = 2;

/// Name of the write log inside the volume directory.
pub const LOG_FILE: &str = "crash-test.log";

fn encode(kind: u8, lba: u64, blocks: u32, seed: u64, out: &mut Vec<u8>) {
    let mut r = [0u8; REC];
    r[..4].copy_from_slice(MAGIC);
    r[4] = kind;
    r[8..16].copy_from_slice(&lba.to_le_bytes());
    r[16..24].copy_from_slice(&seed.to_le_bytes());
    r[24..28].copy_from_slice(&blocks.to_le_bytes());
    let crc = crc32c::crc32c(&r[..28]);
    r[28..32].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&r);
}

struct LogRec {
    kind: u8,
    lba: u64,
    blocks: u32,
    seed: u64,
}

fn decode_log(bytes: &[u8]) -> Vec<LogRec> {
    let mut out = Vec::new();
    for r in bytes.chunks_exact(REC) {
        let crc = u32::from_le_bytes(r[28..32].try_into().expect("4 bytes"));
        if &r[..4] != MAGIC || crc != crc32c::crc32c(&r[..28]) {
            break; // a torn tail
        }
        out.push(LogRec {
            kind: r[4],
            lba: u64::from_le_bytes(r[8..16].try_into().expect("8 bytes")),
            seed: u64::from_le_bytes(r[16..24].try_into().expect("8 bytes")),
            blocks: u32::from_le_bytes(r[24..28].try_into().expect("4 bytes")),
        });
    }
    out
}

// ---- child ------------------------------------------------------------------------------------

struct Shared {
    /// Busy-block bitmap and the log, under one lock so log order follows block ownership.
    state: Mutex<(Vec<u64>, File)>,
    /// A second handle on the log for fdatasync outside the lock.
    sync: File,
}

fn busy(bits: &[u64], b: u64) -> bool {
    bits[(b / 64) as usize] & (1 << (b % 64)) != 0
}

fn set_busy(bits: &mut [u64], b: u64, on: bool) {
    if on {
        bits[(b / 64) as usize] |= 1 << (b % 64);
    } else {
        bits[(b / 64) as usize] &= !(1 << (b % 64));
    }
}

struct Writer {
    shared: Arc<Shared>,
    rng: Rng,
    seed_base: u64,
    counter: u64,
    qd: u32,
    inflight: u32,
    vol_blocks: u64,
    hot_blocks: u64,
    strip_blocks: u64,
    stripe_blocks: u64,
    block_size: usize,
    deadline_us: u64,
    /// In flight by tag: (lba, blocks, seed).
    writes: HashMap<u64, (u64, u64, u64)>,
    /// Completed, waiting for their `A` to be durable.
    acks: Vec<(u64, u64, u64)>,
    /// Writes that failed: their blocks stay busy (their contents are unknown).
    failed: u64,
    stop: bool,
}

impl Writer {
    fn pick(&mut self) -> (u64, u64) {
        let r = self.rng.below(100);
        let blocks = if r < 70 {
            1
        } else if r < 90 {
            1 + self.rng.below(self.strip_blocks)
        } else {
            1 + self.rng.below(2 * self.stripe_blocks)
        };
        let blocks = blocks.min(self.vol_blocks);
        let space = if self.rng.chance(0.8) {
            self.hot_blocks
        } else {
            self.vol_blocks
        };
        let space = space.max(blocks);
        (self.rng.below(space - blocks + 1), blocks)
    }

    fn log_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.acks.len() * REC);
        for &(lba, blocks, seed) in &self.acks {
            encode(KIND_ACK, lba, blocks as u32, seed, &mut bytes);
        }
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.1.write_all(&bytes).is_err() {
                std::process::exit(3);
            }
        }
        // Acknowledged only once the log says so durably.
        if self.shared.sync.sync_data().is_err() {
            std::process::exit(3);
        }
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        for (lba, blocks, _) in self.acks.drain(..) {
            for b in lba..lba + blocks {
                set_busy(&mut st.0, b, false);
            }
        }
    }
}

impl Driver for Writer {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        self.log_acks();
        if self.deadline_us == 0 {
            self.deadline_us = ctx.now_us() + 600_000_000;
        }
        if ctx.now_us() > self.deadline_us {
            self.stop = true;
        }
        if self.stop || self.inflight >= self.qd {
            return;
        }
        let mut batch = Vec::new();
        let mut bytes = Vec::new();
        {
            let shared = self.shared.clone();
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            for _ in 0..(self.qd - self.inflight) * 2 {
                if batch.len() as u32 >= self.qd - self.inflight {
                    break;
                }
                let (lba, blocks) = self.pick();
                if (lba..lba + blocks).any(|b| busy(&st.0, b)) {
                    continue;
                }
                for b in lba..lba + blocks {
                    set_busy(&mut st.0, b, true);
                }
                self.counter += 1;
                let seed = crate::util::mix(self.seed_base ^ self.counter);
                encode(KIND_INTENT, lba, blocks as u32, seed, &mut bytes);
                batch.push((lba, blocks, seed, self.counter));
            }
            if !bytes.is_empty() && st.1.write_all(&bytes).is_err() {
                std::process::exit(3);
            }
        }
        for (lba, blocks, seed, tag) in batch {
            let mut buf = Buf::new(blocks as usize * self.block_size);
            for (i, blk) in buf.as_mut_slice().chunks_mut(self.block_size).enumerate() {
                fill_block(seed, lba + i as u64, blk);
            }
            match ctx.submit(0, tag, UserOp::Write, lba, blocks, Some(buf)) {
                Ok(()) => {
                    self.inflight += 1;
                    self.writes.insert(tag, (lba, blocks, seed));
                }
                Err(e) => {
                    eprintln!("crash-test child: write refused: {}", e.error);
                    self.failed += 1;
                    self.stop = true;
                }
            }
        }
    }

    fn complete(&mut self, _ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        self.inflight -= 1;
        let w = self.writes.remove(&c.tag).expect("known write");
        match c.result {
            Ok(()) => self.acks.push(w),
            Err(e) => {
                eprintln!("crash-test child: write failed: {e}");
                self.failed += 1;
            }
        }
    }

    fn finished(&self) -> bool {
        self.stop && self.inflight == 0
    }
}

/// The hidden child: open online (stripes left listed are resynced in the background while it
/// writes), say "ready" with their number, then write and log until killed.
pub fn child(
    dir: &Path,
    log: &Path,
    seed: u64,
    reactors: u32,
    qd: u32,
    journal: bool,
) -> Result<(), Error> {
    let files = VolumeFiles::open(dir, true)?;
    let geo = files.geo;
    // Torture mode: a stripe's writes enter the kernel one by one, so the kill can split them.
    let engine = uring::start_with(
        &files,
        &uring::StartOptions {
            reactors,
            journal,
            split_writes: true,
            online: true,
            recovery_bytes_per_s: 0,
        },
    )?;
    let logf = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .map_err(|e| Error::new(format!("{}: {e}", log.display())))?;
    let sync = logf
        .try_clone()
        .map_err(|e| Error::new(format!("{}: {e}", log.display())))?;
    let vol_blocks = geo.volume_blocks();
    let shared = Arc::new(Shared {
        state: Mutex::new((vec![0u64; vol_blocks.div_ceil(64) as usize], logf)),
        sync,
    });
    let hot = (64 * geo.stripe_blocks()).min(vol_blocks);
    let drivers = (0..reactors)
        .map(|r| {
            (
                r,
                Writer {
                    shared: shared.clone(),
                    rng: Rng::new(seed ^ (r as u64) << 48),
                    seed_base: seed ^ ((r as u64) << 56),
                    counter: 0,
                    qd,
                    inflight: 0,
                    vol_blocks,
                    hot_blocks: hot,
                    strip_blocks: geo.strip_blocks,
                    stripe_blocks: geo.stripe_blocks(),
                    block_size: geo.block_size as usize,
                    deadline_us: 0,
                    writes: HashMap::new(),
                    acks: Vec::new(),
                    failed: 0,
                    stop: false,
                },
            )
        })
        .collect();
    println!("ready {}", engine.recovery.resynced.len());
    let _ = std::io::stdout().flush();
    let mut resync_over = engine.recovery.resynced.is_empty();
    engine.runtime.run(drivers, || {
        if !resync_over && engine.recovery_status().state != uring::RecoveryState::Running {
            resync_over = true;
            println!("resync over");
            let _ = std::io::stdout().flush();
        }
    })?;
    engine.stop();
    Ok(())
}

// ---- parent -----------------------------------------------------------------------------------

/// Reads blocks back and compares them with what the log allows.
struct Verifier {
    /// (lba, allowed seeds: the latest acknowledged first).
    blocks: Vec<(u64, Vec<u64>)>,
    next: usize,
    inflight: usize,
    block_size: usize,
    expect: Vec<u8>,
    mismatches: Vec<(u64, String)>,
    checked: u64,
    done: Arc<AtomicU64>,
}

impl Driver for Verifier {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        while self.inflight < 64 && self.next < self.blocks.len() {
            let i = self.next;
            self.next += 1;
            let buf = ctx.take_buf(0, self.block_size);
            let lba = self.blocks[i].0;
            match ctx.submit(0, i as u64, UserOp::Read, lba, 1, Some(buf)) {
                Ok(()) => self.inflight += 1,
                Err(e) => self
                    .mismatches
                    .push((lba, format!("read refused: {}", e.error))),
            }
        }
    }

    fn complete(&mut self, ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        self.inflight -= 1;
        let (lba, seeds) = &self.blocks[c.tag as usize];
        let buf = c.buf.expect("read buffer back");
        match c.result {
            Err(e) => self.mismatches.push((*lba, format!("read failed: {e}"))),
            Ok(()) => {
                self.checked += 1;
                let got = buf.as_slice();
                let mut ok = false;
                for &s in seeds {
                    fill_block(s, *lba, &mut self.expect);
                    if self.expect == got {
                        ok = true;
                        break;
                    }
                }
                if !ok {
                    let found_seed = u64::from_le_bytes(got[..8].try_into().expect("8 bytes"));
                    let found_lba = u64::from_le_bytes(got[8..16].try_into().expect("8 bytes"));
                    self.mismatches.push((
                        *lba,
                        format!(
                            "expected write {:016x} ({} allowed), block starts with seed {found_seed:016x} lba {found_lba}",
                            seeds[0],
                            seeds.len()
                        ),
                    ));
                }
            }
        }
        ctx.give_buf(0, buf);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self) -> bool {
        self.next >= self.blocks.len() && self.inflight == 0
    }
}

/// Options of a crash test.
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// Volume directory.
    pub dir: PathBuf,
    /// Kills.
    pub rounds: u32,
    /// Longest run of a writer before its kill.
    pub seconds: f64,
    /// Reactors of the writer.
    pub reactors: u32,
    /// Writes in flight per writer reactor.
    pub qd: u32,
    /// Writer serves with the journal.
    pub journal: bool,
    /// Seed of kill times and failed members.
    pub seed: Option<u64>,
}

/// One round's outcome.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    /// Seconds of load before the kill.
    pub killed_after: f64,
    /// Acknowledged writes logged so far.
    pub acked_total: u64,
    /// Acknowledged writes of this round.
    pub acked_round: u64,
    /// Stripes the round's second writer was resyncing in the background (left listed by the
    /// first) while it wrote, until it was killed.
    pub online_resync: u64,
    /// The second writer was killed before that resync was over.
    pub killed_in_resync: bool,
    /// Stripes the offline recovery before the check resynced.
    pub resynced: usize,
    /// Member treated as failed while verifying.
    pub failed_member: u32,
    /// Blocks read back.
    pub verified_blocks: u64,
    /// Blocks holding neither allowed content.
    pub mismatches: u64,
    /// Stripes whose parity disagrees after recovery.
    pub parity_mismatches: u64,
}

/// Totals of a crash test.
#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    /// Per round.
    pub rounds: Vec<RoundReport>,
}

impl CrashReport {
    /// Data and parity mismatches over every round.
    pub fn failures(&self) -> u64 {
        self.rounds
            .iter()
            .map(|r| r.mismatches + r.parity_mismatches)
            .sum()
    }
}

/// Wait for the child's "ready <stripes resyncing in the background>" line; `over` is set when
/// it says "resync over" later.
fn wait_ready(
    child: &mut std::process::Child,
    timeout: Duration,
    over: Arc<AtomicBool>,
) -> Result<u64, Error> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut r = BufReader::new(out);
        let ready = if r.read_line(&mut line).is_ok() {
            line.trim()
                .strip_prefix("ready ")
                .and_then(|n| n.parse::<u64>().ok())
        } else {
            None
        };
        let _ = tx.send(ready);
        // Keep draining so the child never blocks on a full pipe.
        line.clear();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.trim() == "resync over" {
                over.store(true, Ordering::Release);
            }
            line.clear();
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => {
            let st = child.wait().ok();
            Err(Error::new(format!(
                "crash-test child failed before its load started ({})",
                st.map_or("no status".into(), |s| s.to_string())
            )))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Error::new("crash-test child did not start in time"))
        }
    }
}

/// Start a writer child, let it write for `delay` seconds after its open, kill it (SIGKILL) and
/// wait for its I/O to drain. Returns how long it wrote, how many listed stripes it was
/// resyncing in the background when it opened, and whether it was killed before that resync
/// was over (as far as its last report, every 100 ms, tells).
fn crash_child(
    o: &CrashOptions,
    exe: &Path,
    log: &Path,
    seed: u64,
    delay: f64,
) -> Result<(f64, u64, bool), Error> {
    let mut child = Command::new(exe)
        .arg("__crash-child")
        .arg("--dir")
        .arg(&o.dir)
        .arg("--log")
        .arg(log)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--reactors")
        .arg(o.reactors.to_string())
        .arg("--qd")
        .arg(o.qd.to_string())
        .args(if o.journal {
            &[][..]
        } else {
            &["--no-journal"][..]
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::new(format!("cannot start the crash-test child: {e}")))?;
    let over = Arc::new(AtomicBool::new(false));
    let resyncing = wait_ready(&mut child, Duration::from_secs(120), over.clone())?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(delay));
    if let Ok(Some(st)) = child.try_wait() {
        return Err(Error::new(format!(
            "crash-test child exited by itself ({st}) before it was killed"
        )));
    }
    // Child::kill sends SIGKILL.
    child
        .kill()
        .map_err(|e| Error::new(format!("cannot kill the child: {e}")))?;
    let _ = child.wait();
    let killed_after = t0.elapsed().as_secs_f64();
    let in_resync = resyncing > 0 && !over.load(Ordering::Acquire);
    // The kernel tears a dead process's io_uring down asynchronously: writes it had issued may
    // still land after wait() returns. A power loss has no such tail; a process crash does, so
    // recovery must not race it. Give the teardown time to finish.
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok((killed_after, resyncing, in_resync))
}

/// Run the crash test; `say` gets one line per event.
pub fn run(o: &CrashOptions, mut say: impl FnMut(&str)) -> Result<CrashReport, Error> {
    if o.rounds == 0 {
        return Err(Error::new("--rounds must be at least 1"));
    }
    if o.seconds.is_nan() || o.seconds <= 0.0 {
        return Err(Error::new("--seconds must be positive"));
    }
    // Fail early on a bad volume, in this process.
    let files = VolumeFiles::open(&o.dir, true)?;
    let geo = files.geo;
    drop(files);
    let log = o.dir.join(LOG_FILE);
    let _ = std::fs::remove_file(&log);
    let exe = std::env::current_exe()
        .map_err(|e| Error::new(format!("cannot find the jraid binary: {e}")))?;
    let mut rng = Rng::new(o.seed.unwrap_or_else(crate::util::random_seed));
    let mut report = CrashReport::default();
    let mut acked_before = 0;
    for round in 1..=o.rounds {
        // Two writers per round: the first is killed at a random moment; the second opens
        // online, so it writes while the stripes the first left listed are resynced in the
        // background, and is killed early, often inside that resync (with the journal).
        let mut killed_after = 0.0;
        let mut online_resync = 0;
        let mut killed_in_resync = false;
        for (i, (lo, span)) in [(0.25, 0.75), (0.05, 0.45)].into_iter().enumerate() {
            let delay = o.seconds * (lo + span * (rng.below(1000) as f64 / 1000.0));
            let (after, resyncing, in_resync) = crash_child(o, &exe, &log, rng.next_u64(), delay)?;
            if i == 0 {
                killed_after = after;
            } else {
                online_resync = resyncing;
                killed_in_resync = in_resync;
            }
        }

        // Expectations from the log.
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&log) {
            let _ = f.read_to_end(&mut bytes);
        }
        let recs = decode_log(&bytes);
        let mut latest: HashMap<u64, (Option<u64>, Vec<u64>)> = HashMap::new();
        let mut acked_total = 0;
        for r in &recs {
            for b in r.lba..r.lba + r.blocks as u64 {
                let e = latest.entry(b).or_default();
                if r.kind == KIND_ACK {
                    e.0 = Some(r.seed);
                    e.1.clear();
                } else {
                    e.1.push(r.seed);
                }
            }
            if r.kind == KIND_ACK {
                acked_total += 1;
            }
        }
        let mut blocks: Vec<(u64, Vec<u64>)> = latest
            .into_iter()
            .filter_map(|(b, (acked, later))| {
                acked.map(|a| {
                    let mut v = vec![a];
                    v.extend(later);
                    (b, v)
                })
            })
            .collect();
        blocks.sort_unstable_by_key(|b| b.0);

        // Recovery, scrub, a failed member, read back.
        let files = VolumeFiles::open(&o.dir, true)?;
        let engine = uring::start(&files, 1, true)?;
        let resynced = engine.recovery.resynced.len();
        let scrub = files.scrub(|_| {})?;
        let failed_member = rng.below(geo.members as u64) as u32;
        // The check only reads, as if the member were lost: the failure is not recorded in
        // the superblocks (the next round's writers use every member again).
        engine.vol.set_records_failures(false);
        engine.vol.fail_member(failed_member);
        let v = Verifier {
            blocks,
            next: 0,
            inflight: 0,
            block_size: geo.block_size as usize,
            expect: vec![0; geo.block_size as usize],
            mismatches: Vec::new(),
            checked: 0,
            done: Arc::new(AtomicU64::new(0)),
        };
        let v = engine
            .runtime
            .run(vec![(0, v)], || {})?
            .pop()
            .expect("one verifier");
        engine.stop();
        for (lba, why) in v.mismatches.iter().take(5) {
            say(&format!("  MISMATCH at volume block {lba}: {why}"));
        }
        if !scrub.first.is_empty() {
            say(&format!(
                "  parity mismatch in stripes {:?}{}",
                scrub.first,
                if scrub.mismatches > scrub.first.len() as u64 {
                    " …"
                } else {
                    ""
                }
            ));
        }
        let r = RoundReport {
            killed_after,
            acked_total,
            acked_round: acked_total - acked_before,
            online_resync,
            killed_in_resync,
            resynced,
            failed_member,
            verified_blocks: v.checked,
            mismatches: v.mismatches.len() as u64,
            parity_mismatches: scrub.mismatches,
        };
        acked_before = acked_total;
        say(&format!(
            "round {round}: killed after {:.2} s, then again while writing with {} stripes resyncing online ({}); {} writes acknowledged ({} in total), {} stripes resynced, member m{} failed, {} blocks verified: {} mismatches, {} parity mismatches",
            r.killed_after,
            r.online_resync,
            if r.killed_in_resync {
                "killed inside the resync"
            } else {
                "killed after the resync"
            },
            r.acked_round,
            r.acked_total,
            r.resynced,
            r.failed_member,
            r.verified_blocks,
            r.mismatches,
            r.parity_mismatches
        ));
        report.rounds.push(r);
    }
    Ok(report)
}
