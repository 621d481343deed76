//! `jraid bench`: a load generator running on the reactors themselves.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use jraid::engine::{Buf, Completion, UserOp};
use jraid::uring::{self, Ctx, Driver, Error, VolumeFiles};

use crate::util::Rng;

/// Access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// Random writes.
    Randwrite,
    /// Random reads.
    Randread,
    /// Sequential writes.
    Write,
    /// Sequential reads.
    Read,
    /// Random, half reads and half writes.
    Randrw,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Volume directory.
    pub dir: PathBuf,
    /// Access pattern.
    pub rw: Rw,
    /// Request size in bytes.
    pub bs: u64,
    /// Requests in flight per reactor.
    pub qd: u32,
    /// Reactor threads.
    pub reactors: u32,
    /// Run time (default 10 s unless `bytes`).
    pub seconds: Option<f64>,
    /// Bytes to transfer instead of a run time.
    pub bytes: Option<u64>,
    /// Serve with the journal.
    pub journal: bool,
    /// No progress bar or notices.
    pub quiet: bool,
    /// Bandwidth cap of the resync after a crash, which runs while the load does (bytes per
    /// second; 0: none).
    pub recovery_bytes_per_s: u64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Slowest.
    pub max: u64,
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Access pattern.
    pub rw: Rw,
    /// Request size in bytes.
    pub bs: u64,
    /// Requests in flight per reactor.
    pub qd: u32,
    /// Reactor threads.
    pub reactors: u32,
    /// Serve with the journal.
    pub journal: bool,
    /// Every device ran with O_DIRECT.
    pub direct_io: bool,
    /// Measured run time.
    pub seconds: f64,
    /// Requests completed.
    pub ops: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Requests per second.
    pub iops: f64,
    /// Throughput in MiB/s.
    pub mib_s: f64,
    /// Completion latency.
    pub lat_us: Latency,
    /// Journal records written during the load.
    pub journal_record_writes: u64,
    /// Record writes per user write.
    pub journal_records_per_write: f64,
    /// Journal bytes written per user write (records, padding included).
    pub journal_bytes_per_write: f64,
    /// Checkpoints among the records written.
    pub journal_checkpoints: u64,
    /// Stripes listed in the journal when the load ended.
    pub journal_listed: u64,
    /// Share of marks that found their stripe already durable.
    pub journal_fast_path: f64,
    /// Stripes listed at the crash before this run, which the recovery resyncs in the
    /// background while the load runs.
    pub recovered_stripes: usize,
    /// Of those, the stripes resynced when the load ended.
    pub recovery_done_at_end: u64,
    /// The recovery was over when the load ended.
    pub recovery_over_at_end: bool,
}

struct Load {
    rw: Rw,
    bs_blocks: u64,
    block_size: u64,
    qd: u32,
    units: u64,
    seq_pos: u64,
    seq_end: u64,
    seq_start: u64,
    rng: Rng,
    seconds: Option<f64>,
    deadline_us: u64,
    ops_left: Option<Arc<AtomicU64>>,
    started: bool,
    stop: bool,
    inflight: u32,
    starts: Vec<u64>,
    is_read: Vec<bool>,
    free_tags: Vec<u64>,
    bufs: Vec<Buf>,
    hist: Histogram<u64>,
    done: Arc<AtomicU64>,
    abort: Arc<AtomicBool>,
    reads: u64,
    writes: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Load {
    fn take_op(&self) -> bool {
        match &self.ops_left {
            None => true,
            Some(a) => a
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

impl Driver for Load {
    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now_us();
        if !self.started {
            self.started = true;
            self.deadline_us = self.seconds.map_or(u64::MAX, |s| now + (s * 1e6) as u64);
        }
        if now >= self.deadline_us || self.abort.load(Ordering::Relaxed) {
            self.stop = true;
        }
        while !self.stop && self.inflight < self.qd {
            if !self.take_op() {
                self.stop = true;
                break;
            }
            let read = match self.rw {
                Rw::Randread | Rw::Read => true,
                Rw::Randwrite | Rw::Write => false,
                Rw::Randrw => self.rng.chance(0.5),
            };
            let unit = match self.rw {
                Rw::Read | Rw::Write => {
                    let u = self.seq_pos;
                    self.seq_pos += 1;
                    if self.seq_pos >= self.seq_end {
                        self.seq_pos = self.seq_start;
                    }
                    u
                }
                _ => self.rng.below(self.units),
            };
            let tag = self.free_tags.pop().expect("a tag per queue slot");
            let len = (self.bs_blocks * self.block_size) as usize;
            let buf = self.bufs.pop().unwrap_or_else(|| {
                let mut b = Buf::new(len);
                let mut r = Rng::new(tag ^ 0x5eed);
                for c in b.as_mut_slice().chunks_mut(8) {
                    let v = r.next_u64().to_le_bytes();
                    c.copy_from_slice(&v[..c.len()]);
                }
                b
            });
            let op = if read { UserOp::Read } else { UserOp::Write };
            self.starts[tag as usize] = ctx.now_us();
            self.is_read[tag as usize] = read;
            match ctx.submit(0, tag, op, unit * self.bs_blocks, self.bs_blocks, Some(buf)) {
                Ok(()) => self.inflight += 1,
                Err(e) => {
                    self.errors += 1;
                    self.first_error.get_or_insert(e.error.to_string());
                    if let Some(b) = e.buf {
                        self.bufs.push(b);
                    }
                    self.free_tags.push(tag);
                    self.stop = true;
                    self.abort.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    fn complete(&mut self, ctx: &mut Ctx<'_>, _volume: usize, c: Completion) {
        self.inflight -= 1;
        let lat = ctx.now_us().saturating_sub(self.starts[c.tag as usize]);
        let _ = self.hist.record(lat.max(1));
        if self.is_read[c.tag as usize] {
            self.reads += 1;
        } else {
            self.writes += 1;
        }
        if let Err(e) = c.result {
            self.errors += 1;
            self.first_error.get_or_insert(e.to_string());
            self.stop = true;
            self.abort.store(true, Ordering::Relaxed);
        }
        if let Some(b) = c.buf {
            self.bufs.push(b);
        }
        self.free_tags.push(c.tag);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self) -> bool {
        self.stop && self.inflight == 0
    }
}

/// Open, recover and run the load. Progress goes to stderr unless `quiet`.
pub fn run(o: &BenchOptions) -> Result<BenchResult, Error> {
    if o.qd == 0 {
        return Err(Error::new("--qd must be at least 1"));
    }
    if o.reactors == 0 || o.reactors > 64 {
        return Err(Error::new("--reactors must be within 1..=64"));
    }
    let files = VolumeFiles::open(&o.dir, true)?;
    let geo = files.geo;
    let bsz = geo.block_size as u64;
    if o.bs == 0 || !o.bs.is_multiple_of(bsz) {
        return Err(Error::new(format!(
            "--bs {} is not a multiple of the volume's block size {bsz}",
            o.bs
        )));
    }
    let bs_blocks = o.bs / bsz;
    let units = geo.volume_blocks() / bs_blocks;
    if units == 0 {
        return Err(Error::new("--bs is larger than the volume"));
    }
    // Online: the load starts as soon as the newest record is read, while the listed
    // stripes are resynced in the background.
    let engine = uring::start_with(
        &files,
        &uring::StartOptions {
            online: true,
            recovery_bytes_per_s: o.recovery_bytes_per_s,
            ..uring::StartOptions::new(o.reactors, o.journal)
        },
    )?;
    if !o.quiet && !engine.recovery.resynced.is_empty() {
        eprintln!(
            "jraid: {} {} stripes listed in journal record {}",
            if o.journal {
                "resyncing in the background"
            } else {
                "recovery resynced (before serving without the journal)"
            },
            engine.recovery.resynced.len(),
            engine.recovery.generation,
        );
    }
    if !engine.recovery.at_risk.is_empty() {
        eprintln!(
            "jraid: a member is out of service; {} listed stripes could not be resynced and are at risk: {:?}",
            engine.recovery.at_risk.len(),
            &engine.recovery.at_risk[..engine.recovery.at_risk.len().min(16)]
        );
    }
    let ops_left = o.bytes.map(|b| Arc::new(AtomicU64::new(b.div_ceil(o.bs))));
    let seconds = match (o.seconds, o.bytes) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(10.0),
    };
    let done = Arc::new(AtomicU64::new(0));
    let abort = Arc::new(AtomicBool::new(false));
    let per = units / o.reactors as u64;
    let seed = crate::util::random_seed();
    let drivers = (0..o.reactors)
        .map(|r| {
            let seq_start = if per == 0 { 0 } else { per * r as u64 };
            let seq_end = if per == 0 { units } else { seq_start + per };
            (
                r,
                Load {
                    rw: o.rw,
                    bs_blocks,
                    block_size: bsz,
                    qd: o.qd,
                    units,
                    seq_pos: seq_start,
                    seq_end,
                    seq_start,
                    rng: Rng::new(seed ^ r as u64),
                    seconds,
                    deadline_us: u64::MAX,
                    ops_left: ops_left.clone(),
                    started: false,
                    stop: false,
                    inflight: 0,
                    starts: vec![0; o.qd as usize],
                    is_read: vec![false; o.qd as usize],
                    free_tags: (0..o.qd as u64).rev().collect(),
                    bufs: Vec::new(),
                    hist: Histogram::new(3).expect("histogram"),
                    done: done.clone(),
                    abort: abort.clone(),
                    reads: 0,
                    writes: 0,
                    errors: 0,
                    first_error: None,
                },
            )
        })
        .collect();
    let pb = if o.quiet {
        ProgressBar::hidden()
    } else {
        let pb = match (seconds, o.bytes) {
            (Some(s), _) => ProgressBar::new((s * 1000.0) as u64).with_style(
                ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
                    .expect("template"),
            ),
            (None, Some(b)) => ProgressBar::new(b).with_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
                    .expect("template"),
            ),
            _ => ProgressBar::hidden(),
        };
        pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        pb
    };
    let journal = engine.journal.clone();
    let rec0 = journal
        .as_ref()
        .map_or(0, |j| j.stats.record_writes.load(Ordering::Relaxed));
    let (bytes0, cp0) = journal.as_ref().map_or((0, 0), |j| {
        (
            j.stats.bytes_written.load(Ordering::Relaxed),
            j.stats.checkpoints.load(Ordering::Relaxed),
        )
    });
    let marks0 = journal.as_ref().map_or((0, 0), |j| {
        (
            j.stats.marks.load(Ordering::Relaxed),
            j.stats.fast_path.load(Ordering::Relaxed),
        )
    });
    let t0 = Instant::now();
    let loads = engine.runtime.run(drivers, || {
        let n = done.load(Ordering::Relaxed);
        match seconds {
            Some(_) => pb.set_position(t0.elapsed().as_millis() as u64),
            None => pb.set_position(n * o.bs),
        }
        let el = t0.elapsed().as_secs_f64().max(1e-3);
        pb.set_message(format!("{:.0} IOPS", n as f64 / el));
    })?;
    let secs = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut reads, mut writes, mut errors, mut first_error) = (0, 0, 0, None);
    for l in &loads {
        hist.add(&l.hist).expect("same histogram bounds");
        reads += l.reads;
        writes += l.writes;
        errors += l.errors;
        if first_error.is_none() {
            first_error = l.first_error.clone();
        }
    }
    let (records, fast, bytes, checkpoints, listed) = match &journal {
        Some(j) => {
            let r = j.stats.record_writes.load(Ordering::Relaxed) - rec0;
            let m = j.stats.marks.load(Ordering::Relaxed) - marks0.0;
            let f = j.stats.fast_path.load(Ordering::Relaxed) - marks0.1;
            let b = j.stats.bytes_written.load(Ordering::Relaxed) - bytes0;
            let c = j.stats.checkpoints.load(Ordering::Relaxed) - cp0;
            let fp = if m == 0 { 0.0 } else { f as f64 / m as f64 };
            (r, fp, b, c, j.listed_count())
        }
        None => (0, 0.0, 0, 0, 0),
    };
    let recovered = engine.recovery.resynced.len();
    let rs = engine.recovery_status();
    if !o.quiet && recovered > 0 {
        eprintln!(
            "jraid: recovery at the end of the load: {:?}, {} of {} stripes resynced in {:.2} s",
            rs.state,
            rs.done,
            rs.total,
            rs.elapsed_us as f64 / 1e6
        );
    }
    if let uring::RecoveryState::Failed(e) = &rs.state {
        return Err(Error::new(format!("recovery failed during the bench: {e}")));
    }
    let direct = files.direct();
    // Clean shutdown: let the clean stripes leave the record so the next open resyncs nothing.
    engine.shutdown(std::time::Duration::from_secs(3))?;
    if let Some(e) = first_error {
        return Err(Error::new(format!("I/O failed during the bench: {e}")));
    }
    let ops = reads + writes;
    Ok(BenchResult {
        rw: o.rw,
        bs: o.bs,
        qd: o.qd,
        reactors: o.reactors,
        journal: o.journal,
        direct_io: direct,
        seconds: secs,
        ops,
        reads,
        writes,
        errors,
        iops: ops as f64 / secs,
        mib_s: (ops * o.bs) as f64 / secs / (1 << 20) as f64,
        lat_us: Latency {
            p50: hist.value_at_quantile(0.5),
            p99: hist.value_at_quantile(0.99),
            p99_9: hist.value_at_quantile(0.999),
            max: hist.max(),
        },
        journal_record_writes: records,
        journal_records_per_write: if writes == 0 {
            0.0
        } else {
            records as f64 / writes as f64
        },
        journal_bytes_per_write: if writes == 0 {
            0.0
        } else {
            bytes as f64 / writes as f64
        },
        journal_checkpoints: checkpoints,
        journal_listed: listed,
        journal_fast_path: fast,
        recovered_stripes: recovered,
        recovery_done_at_end: rs.done,
        recovery_over_at_end: rs.state != uring::RecoveryState::Running,
    })
}

/// The human-readable report.
pub fn print(r: &BenchResult) {
    println!(
        "{} bs={} qd={} reactors={} journal={} io={}",
        format!("{:?}", r.rw).to_lowercase(),
        crate::util::fmt_size(r.bs),
        r.qd,
        r.reactors,
        if r.journal { "on" } else { "off" },
        if r.direct_io { "O_DIRECT" } else { "buffered" }
    );
    println!(
        "  {} ops in {:.2} s: {:.0} IOPS, {:.1} MiB/s",
        r.ops, r.seconds, r.iops, r.mib_s
    );
    println!(
        "  latency (us): p50 {}  p99 {}  p99.9 {}  max {}",
        r.lat_us.p50, r.lat_us.p99, r.lat_us.p99_9, r.lat_us.max
    );
    if r.journal {
        println!(
            "  journal: {} record writes ({} checkpoints), {:.4} per user write, {:.0} bytes per \
             user write, {:.1}% of marks on the fast path, {} stripes listed at the end",
            r.journal_record_writes,
            r.journal_checkpoints,
            r.journal_records_per_write,
            r.journal_bytes_per_write,
            r.journal_fast_path * 100.0,
            r.journal_listed
        );
    } else {
        println!("  journal: off (write hole open)");
    }
}
