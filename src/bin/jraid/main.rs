//! `jraid`: the command line of the embedded default (io_uring, no SPDK).
//!
//! A volume lives in a directory: member files `m0` … `m{N-1}` (or symlinks to block devices)
//! and a `journal` file. See `jraid --help`.

mod bench;
mod crash;
mod util;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use jraid::journal::{record, JournalMode};
use jraid::uring::{self, files, CreateOptions, Error, VolumeFiles};
use util::{fmt_size, parse_size};

/// RAID-5 with a dirty-stripe journal that closes the write hole, over io_uring.
#[derive(Parser, Debug)]
#[command(name = "jraid", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a volume: member files and a journal file with fresh superblocks.
    Create(CreateArgs),
    /// Open a volume (recovery first) and measure a load.
    Bench(BenchArgs),
    /// Kill a writing process at random moments and check every acknowledged write survives.
    CrashTest(CrashArgs),
    /// Offline parity check of every stripe (the volume must not be in use).
    Check(DirArgs),
    /// Open the volume (recovery first) and scrub it: every stripe's parity checked against
    /// its data under the stripe lock, mismatches listed, and rewritten with --repair.
    Scrub(ScrubArgs),
    /// Mark a member failed in the other members' superblocks, as an operator does before
    /// pulling it: from then on the volume opens degraded without it.
    Fail(FailArgs),
    /// Replace a failed member with a new file or device and rebuild it from the others
    /// (progress bar); after a crash, run it again to resume.
    Replace(ReplaceArgs),
    /// Give a volume whose journal is lost a new journal: a full resync of every stripe (all
    /// members needed), then the members name the new journal.
    SetJournal(SetJournalArgs),
    /// Show geometry, member states and the journal's newest record.
    Status(DirArgs),
    /// Create a volume in a temporary directory, bench it, crash it once, check it.
    Demo(DemoArgs),
    /// The writer process of crash-test (internal).
    #[command(name = "__crash-child", hide = true)]
    CrashChild(ChildArgs),
}

#[derive(Args, Debug)]
struct DirArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Args, Debug)]
struct ScrubArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
    /// Rewrite the parity of mismatching stripes.
    #[arg(long)]
    repair: bool,
    /// Stripes in flight.
    #[arg(long, default_value_t = 16)]
    window: usize,
}

#[derive(Args, Debug)]
struct ReplaceArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
    /// The failed member (its index, m<N>).
    #[arg(long)]
    member: u32,
    /// The replacement: a file (created or extended to the member size) or a block device.
    /// Without it, an interrupted replacement resumes.
    #[arg(long)]
    with: Option<PathBuf>,
    /// Stripes in flight.
    #[arg(long, default_value_t = 16)]
    window: usize,
}

#[derive(Args, Debug)]
struct SetJournalArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
    /// The new journal: a file to create (or one an interrupted set-journal created).
    #[arg(long)]
    journal: PathBuf,
    /// Size of a journal file to create.
    #[arg(long, value_parser = parse_size, default_value = "4M")]
    journal_size: u64,
    /// Stripes in flight during the resync.
    #[arg(long, default_value_t = 32)]
    window: usize,
}

#[derive(Args, Debug)]
struct FailArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
    /// The member to mark failed (its index, m<N>).
    #[arg(long)]
    member: u32,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Volume directory (created if missing; existing volume files are never overwritten).
    #[arg(long)]
    dir: PathBuf,
    /// Number of members, parity included (3..=32).
    #[arg(long)]
    members: u32,
    /// Size of each member file, e.g. 256M.
    #[arg(long, value_parser = parse_size)]
    member_size: u64,
    /// Strip size in KiB (a power of two, 4..=1024).
    #[arg(long, default_value_t = 64)]
    strip_kb: u64,
    /// Block size in bytes: 512 or 4096.
    #[arg(long, default_value_t = 4096)]
    block_size: u32,
    /// Size of the journal file (64 KiB of superblock area plus two record slots).
    #[arg(long, value_parser = parse_size, default_value = "4M")]
    journal_size: u64,
    /// Journal devices: 1 (the `journal` file), or 2 (`journal` and `journal2`, each of
    /// --journal-size; symlink them to files on different disks): losing one while running
    /// costs no write.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    journal_devices: u32,
    /// With two journal devices: `alternate` (generation g to device g mod 2; a restart
    /// missing one resyncs every stripe) or `mirror` (every record to both).
    #[arg(long, default_value = "alternate", value_parser = ["alternate", "mirror"])]
    journal_mode: String,
    /// Put the journal file here (a new file, e.g. on another disk) instead of in --dir;
    /// `journal` in --dir becomes a symbolic link to it.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Put the second journal file here (implies --journal-devices 2); `journal2` in --dir
    /// becomes a symbolic link to it.
    #[arg(long)]
    journal2: Option<PathBuf>,
    /// Put the journal on the members instead of in journal files: every member reserves
    /// --journal-size at its end, and members 0 and 1 keep a mirrored copy there (a member
    /// lost takes one copy; the other serves, and a rebuilt member gets its copy back).
    #[arg(long, conflicts_with_all = ["journal", "journal2", "journal_devices", "journal_mode"])]
    journal_on_members: bool,
    /// Volume name.
    #[arg(long, default_value = "jraid")]
    name: String,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
    /// Access pattern.
    #[arg(long, value_enum, default_value = "randwrite")]
    rw: bench::Rw,
    /// Request size, a multiple of the block size.
    #[arg(long, value_parser = parse_size, default_value = "4k")]
    bs: u64,
    /// Requests in flight per reactor.
    #[arg(long, default_value_t = 32)]
    qd: u32,
    /// Reactor threads (one io_uring each).
    #[arg(long, default_value_t = 1)]
    reactors: u32,
    /// Run for this many seconds (default 10 unless --bytes is given).
    #[arg(long, conflicts_with = "bytes")]
    time: Option<f64>,
    /// Run until this many bytes were transferred.
    #[arg(long, value_parser = parse_size)]
    bytes: Option<u64>,
    /// Serve without the journal (comparison runs: the write hole is open).
    #[arg(long)]
    no_journal: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Bandwidth cap in MiB/s of the resync after a crash, which runs in the background while
    /// the load does (0: none).
    #[arg(long, default_value_t = 0)]
    recovery_bandwidth_mb: u64,
}

#[derive(Args, Debug)]
struct CrashArgs {
    /// Volume directory.
    #[arg(long)]
    dir: PathBuf,
    /// Rounds (one kill each).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Longest time a round's writer runs before it is killed.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Reactor threads of the writer.
    #[arg(long, default_value_t = 2)]
    reactors: u32,
    /// Writes in flight per reactor of the writer.
    #[arg(long, default_value_t = 16)]
    qd: u32,
    /// Control run: the writer serves without the journal (losses are expected).
    #[arg(long)]
    no_journal: bool,
    /// Seed of the kill times and failed members (random by default).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args, Debug)]
struct ChildArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    seed: u64,
    #[arg(long, default_value_t = 2)]
    reactors: u32,
    #[arg(long, default_value_t = 16)]
    qd: u32,
    #[arg(long)]
    no_journal: bool,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Seconds of the bench.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// A failed command: either an error or a check that found problems (message already shown).
enum Fail {
    Error(Error),
    Found(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Error(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Create(a) => cmd_create(a),
        Cmd::Bench(a) => cmd_bench(a),
        Cmd::CrashTest(a) => cmd_crash(a),
        Cmd::Check(a) => cmd_check(&a.dir),
        Cmd::Scrub(a) => cmd_scrub(a),
        Cmd::Fail(a) => cmd_fail(a),
        Cmd::Replace(a) => cmd_replace(a),
        Cmd::SetJournal(a) => cmd_set_journal(a),
        Cmd::Status(a) => cmd_status(&a.dir),
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::CrashChild(a) => crash::child(&a.dir, &a.log, a.seed, a.reactors, a.qd, !a.no_journal)
            .map_err(Fail::from),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Error(e)) => {
            eprintln!("jraid: error: {e}");
            ExitCode::from(1)
        }
        Err(Fail::Found(what)) => {
            eprintln!("jraid: {what}");
            ExitCode::from(2)
        }
    }
}

fn create(a: &CreateArgs) -> Result<uring::files::Created, Error> {
    uring::create(&CreateOptions {
        dir: a.dir.clone(),
        members: a.members,
        member_size: a.member_size,
        strip_bytes: a
            .strip_kb
            .checked_mul(1024)
            .ok_or_else(|| Error::new("bad geometry: strip size too large"))?,
        block_size: a.block_size,
        journal_size: a.journal_size,
        journal_paths: [a.journal.clone(), a.journal2.clone()],
        journal_pair: (a.journal_devices == 2 || a.journal2.is_some()).then_some(
            if a.journal_mode == "mirror" {
                JournalMode::Mirror
            } else {
                JournalMode::Alternate
            },
        ),
        journal_on_members: a.journal_on_members,
        name: a.name.clone(),
    })
}

fn cmd_create(a: CreateArgs) -> Result<(), Fail> {
    let c = create(&a)?;
    let g = c.geo;
    if a.journal_on_members {
        println!("journal on the members: a mirrored copy at the end of members 0 and 1");
    }
    println!(
        "created {}: {} members × {}, strip {} KiB, block {} B, {} stripes, capacity {}, journal areas 2 × {} (at most {} stripes listed)",
        a.dir.display(),
        g.members,
        fmt_size(a.member_size),
        a.strip_kb,
        g.block_size,
        g.stripes,
        fmt_size(g.volume_blocks() * g.block_size as u64),
        fmt_size(c.slot_bytes),
        record::max_listed(c.slot_bytes as usize)
    );
    Ok(())
}

fn cmd_bench(a: BenchArgs) -> Result<(), Fail> {
    let r = bench::run(&bench::BenchOptions {
        dir: a.dir,
        rw: a.rw,
        bs: a.bs,
        qd: a.qd,
        reactors: a.reactors,
        seconds: a.time,
        bytes: a.bytes,
        journal: !a.no_journal,
        quiet: a.json,
        recovery_bytes_per_s: a.recovery_bandwidth_mb << 20,
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(|e| Error::new(e.to_string()))?
        );
    } else {
        bench::print(&r);
    }
    Ok(())
}

fn crash_options(a: &CrashArgs) -> crash::CrashOptions {
    crash::CrashOptions {
        dir: a.dir.clone(),
        rounds: a.rounds,
        seconds: a.seconds,
        reactors: a.reactors,
        qd: a.qd,
        journal: !a.no_journal,
        seed: a.seed,
    }
}

fn cmd_crash(a: CrashArgs) -> Result<(), Fail> {
    let r = crash::run(&crash_options(&a), |l| println!("{l}"))?;
    let acked: u64 = r.rounds.last().map_or(0, |x| x.acked_total);
    let verified: u64 = r.rounds.iter().map(|x| x.verified_blocks).sum();
    let data: u64 = r.rounds.iter().map(|x| x.mismatches).sum();
    let parity: u64 = r.rounds.iter().map(|x| x.parity_mismatches).sum();
    println!(
        "total: {} rounds, {acked} writes acknowledged, {verified} block reads verified, {data} mismatches, {parity} parity mismatches",
        r.rounds.len()
    );
    if r.failures() > 0 {
        return Err(Fail::Found(format!(
            "crash-test found {data} data and {parity} parity mismatches"
        )));
    }
    Ok(())
}

fn dirty_of(files: &VolumeFiles) -> Result<(u64, Vec<u64>), Error> {
    let number = files.volume_number();
    Ok(match files.newest_record()?.record {
        Some(r) => (r.generation, stripes_of(&r, number)),
        None => (0, Vec::new()),
    })
}

fn stripes_of(r: &record::Record, volume: u32) -> Vec<u64> {
    r.entries
        .iter()
        .filter(|e| e.volume == volume)
        .map(|e| e.stripe)
        .collect()
}

fn check(dir: &Path, show: bool) -> Result<files::ScrubReport, Error> {
    let files = VolumeFiles::open(dir, false)?;
    let pb = if show {
        indicatif::ProgressBar::new(files.geo.stripes)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let r = files.scrub(|n| pb.set_position(n))?;
    pb.finish_and_clear();
    if show {
        println!(
            "checked {} stripes of {}: {} parity mismatches",
            r.stripes,
            dir.display(),
            r.mismatches
        );
        if !r.first.is_empty() {
            let (_, dirty) = dirty_of(&files)?;
            let listed = r.first.iter().filter(|s| dirty.contains(s)).count();
            println!(
                "  first mismatching stripes: {:?} ({listed} of them listed dirty in the journal: \
                 `jraid bench` runs recovery, which resyncs listed stripes)",
                r.first
            );
        }
    }
    Ok(r)
}

fn cmd_check(dir: &Path) -> Result<(), Fail> {
    let r = check(dir, true)?;
    if r.mismatches > 0 {
        return Err(Fail::Found(format!(
            "{} stripes with parity mismatches",
            r.mismatches
        )));
    }
    Ok(())
}

fn cmd_scrub(a: ScrubArgs) -> Result<(), Fail> {
    let files = VolumeFiles::open(&a.dir, true)?;
    let engine = uring::start(&files, 1, true)?;
    if !engine.recovery.resynced.is_empty() {
        eprintln!(
            "jraid: recovery resynced {} stripes listed in journal record {}",
            engine.recovery.resynced.len(),
            engine.recovery.generation
        );
    }
    if engine.vol.failed_count() > 0 {
        engine.stop();
        return Err(Fail::Error(Error::new(
            "a member is out of service: parity cannot be checked on a degraded volume",
        )));
    }
    let pb = indicatif::ProgressBar::new(files.geo.stripes);
    let kind = jraid::control::PassKind::Scrub { repair: a.repair };
    let r = engine.run_pass(kind, a.window.max(1), |done, _| pb.set_position(done));
    pb.finish_and_clear();
    let left = engine.shutdown(std::time::Duration::from_secs(10))?;
    let r = r?;
    println!(
        "scrubbed {} stripes of {}: {} parity mismatches{}",
        r.done,
        a.dir.display(),
        r.mismatches,
        if a.repair {
            format!(", {} repaired", r.repaired)
        } else {
            String::new()
        }
    );
    if !r.mismatch_stripes.is_empty() {
        println!("  mismatching stripes: {:?}", r.mismatch_stripes);
    }
    if left > 0 {
        eprintln!("jraid: {left} stripes still listed in the journal at the end (resynced at the next open)");
    }
    if let Some(e) = r.first_error.filter(|_| r.errors > 0) {
        return Err(Fail::Error(Error::new(format!("scrub: {e}"))));
    }
    if r.mismatches > r.repaired {
        return Err(Fail::Found(format!(
            "{} stripes with parity mismatches",
            r.mismatches - r.repaired
        )));
    }
    Ok(())
}

fn cmd_replace(a: ReplaceArgs) -> Result<(), Fail> {
    use jraid::superblock::MemberState;
    if let Some(with) = &a.with {
        let files = VolumeFiles::open(&a.dir, true)?;
        files.prepare_replacement(a.member, with)?;
    }
    let files = VolumeFiles::open(&a.dir, true)?;
    if files.recorded_states().get(a.member as usize) == Some(&MemberState::Active) {
        return Err(Fail::Error(Error::new(format!(
            "member {} is in service: nothing to rebuild (give --with to replace a failed member)",
            a.member
        ))));
    }
    let engine = uring::start(&files, 1, true)?;
    if !engine.recovery.at_risk.is_empty() {
        eprintln!(
            "jraid: {} listed stripes could not be resynced before the rebuild and are at risk: {:?}",
            engine.recovery.at_risk.len(),
            &engine.recovery.at_risk[..engine.recovery.at_risk.len().min(16)]
        );
    }
    let pb = indicatif::ProgressBar::new(files.geo.stripes);
    let t = std::time::Instant::now();
    let r = engine.rebuild(a.member, a.window.max(1), |done, _| pb.set_position(done));
    pb.finish_and_clear();
    let left = engine.shutdown(std::time::Duration::from_secs(10));
    let r = r?;
    left?;
    if r.end != jraid::control::PassEnd::Done {
        return Err(Fail::Error(Error::new(format!(
            "rebuild of member {} {}: {}",
            a.member,
            r.end.as_str(),
            r.first_error.unwrap_or_default()
        ))));
    }
    let g = files.geo;
    let secs = t.elapsed().as_secs_f64().max(1e-6);
    println!(
        "member {} rebuilt: {} stripes in {:.1} s ({:.0} MiB/s)",
        a.member,
        r.done,
        secs,
        (r.done * g.strip_blocks * g.block_size as u64) as f64 / (1 << 20) as f64 / secs
    );
    Ok(())
}

fn cmd_set_journal(a: SetJournalArgs) -> Result<(), Fail> {
    use jraid::superblock::MemberState;
    if VolumeFiles::open(&a.dir, false).is_ok() {
        return Err(Fail::Error(Error::new(format!(
            "{}: the volume's journal is working; a new journal is set only after it is lost",
            a.dir.display()
        ))));
    }
    if VolumeFiles::open_members(&a.dir)?
        .iter()
        .any(|sb| sb.journal_area != 0)
    {
        return Err(Fail::Error(Error::new(format!(
            "{}: the journal of this volume is on its members (a copy on members 0 and 1); it \
             takes no journal file",
            a.dir.display()
        ))));
    }
    if !a.journal.exists() {
        files::create_journal(&a.dir, &a.journal, a.journal_size)?;
    }
    let files = VolumeFiles::open_with_journal(&a.dir, &a.journal)?;
    if let Some(m) = files
        .recorded_states()
        .iter()
        .position(|s| *s != MemberState::Active)
    {
        return Err(Fail::Error(Error::new(format!(
            "member {m} is out of service: the full resync before a new journal needs every \
             member (replace it first)"
        ))));
    }
    eprintln!(
        "jraid: full resync of {} stripes before {} becomes the journal",
        files.geo.stripes,
        a.journal.display()
    );
    let engine = uring::start_with(
        &files,
        &uring::StartOptions {
            reactors: 1,
            journal: false,
            split_writes: false,
            online: false,
            recovery_bytes_per_s: 0,
        },
    )?;
    let pb = indicatif::ProgressBar::new(files.geo.stripes);
    let r = engine.run_pass(
        jraid::control::PassKind::Resync,
        a.window.max(1),
        |done, _| pb.set_position(done),
    );
    pb.finish_and_clear();
    engine.stop();
    let r = r?;
    if r.end != jraid::control::PassEnd::Done {
        return Err(Fail::Error(Error::new(format!(
            "full resync {}: {}",
            r.end.as_str(),
            r.first_error.unwrap_or_default()
        ))));
    }
    // Only now (members flushed by the pass) may the members name the new journal.
    files.name_journal()?;
    println!(
        "{} is the journal of {} now ({} stripes resynced)",
        a.journal.display(),
        a.dir.display(),
        r.done
    );
    Ok(())
}

fn cmd_fail(a: FailArgs) -> Result<(), Fail> {
    use jraid::superblock::MemberState;
    let files = VolumeFiles::open(&a.dir, true)?;
    let n = files.geo.members;
    if a.member >= n {
        return Err(Fail::Error(Error::new(format!(
            "no member {} (the volume has members 0..{})",
            a.member,
            n - 1
        ))));
    }
    let mut states = files.recorded_states();
    if states[a.member as usize] != MemberState::Active {
        println!("member {} is already out of service", a.member);
        return Ok(());
    }
    if let Some(other) = states.iter().position(|s| *s != MemberState::Active) {
        return Err(Fail::Error(Error::new(format!(
            "member {other} is already out of service: failing member {} too would leave the \
             volume unable to serve its data",
            a.member
        ))));
    }
    states[a.member as usize] = MemberState::Failed;
    files.state_recorder()?.record(&states, None)?;
    println!(
        "member {} ({}) marked failed; the volume opens degraded without it",
        a.member,
        files.members[a.member as usize].path.display()
    );
    Ok(())
}

fn uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn cmd_status(dir: &Path) -> Result<(), Fail> {
    let f = VolumeFiles::open(dir, false)?;
    let sb = &f.member_sbs[0];
    let g = f.geo;
    let bs = g.block_size as u64;
    println!("volume     {} ({})", sb.name, dir.display());
    println!("uuid       {}", uuid(&sb.volume_uuid));
    println!(
        "geometry   RAID-5 left-symmetric, {} members, strip {} KiB, block {} B, {} stripes",
        g.members,
        g.strip_blocks * bs / 1024,
        bs,
        g.stripes
    );
    println!(
        "capacity   {} ({} blocks)",
        fmt_size(g.volume_blocks() * bs),
        g.volume_blocks()
    );
    println!(
        "io         {}",
        if f.direct() {
            "O_DIRECT"
        } else {
            "buffered + fdatasync"
        }
    );
    println!("members");
    let states = f.recorded_states();
    for (i, (d, s)) in f.members.iter().zip(&f.member_sbs).enumerate() {
        println!(
            "  m{i:<3} {:<10} {:>10}  {}  seq {}",
            format!("{:?}", states[i]),
            fmt_size(d.len),
            d.path.display(),
            s.seq
        );
    }
    let j = &f.journal_sb;
    if f.journal_base != 0 {
        println!(
            "journal    on the members: mirrored in members 0 and 1 at byte {} ({} reserved on \
             every member)",
            f.journal_base,
            fmt_size(jraid::superblock::JournalSuperblock::min_journal_bytes(
                j.slot_bytes
            ))
        );
    }
    println!(
        "journal    {} uuid {}, block {} B, areas 2 × {} (at most {} stripes listed)",
        f.journal.path.display(),
        uuid(&j.journal_uuid),
        j.block_size,
        fmt_size(j.slot_bytes),
        record::max_listed(j.slot_bytes as usize)
    );
    let found = f.newest_record()?;
    if let Some(p) = j.pair {
        println!(
            "journal    device {} of 2 ({}), other device: {}",
            p.index,
            p.mode.name(),
            match (&f.journal_peer, &f.journal_peer_missing) {
                (Some(d), _) => d.path.display().to_string(),
                (None, why) => format!("MISSING ({})", why.as_deref().unwrap_or("?")),
            }
        );
        let dropped = f.newest_sb().journal_dropped;
        if dropped != 0 {
            let which: Vec<String> = (0..2)
                .filter(|k| dropped & (1 << k) != 0)
                .map(|k| k.to_string())
                .collect();
            println!(
                "journal    device(s) {} recorded dropped while running (a restart that finds \
                 only such a device resyncs every stripe)",
                which.join(", ")
            );
        }
    }
    let newest = found.record;
    let dirty = newest
        .as_ref()
        .map_or(Vec::new(), |r| stripes_of(r, f.volume_number()));
    match &newest {
        None => println!("record     none written yet (generation 0)"),
        Some(r) => println!(
            "record     generation {} in area {}: checkpoint {} + {} deltas, {} of {} used, \
             {} stripes listed (all volumes)",
            r.generation,
            r.area,
            r.base,
            r.records - 1,
            fmt_size(r.bytes),
            fmt_size(j.slot_bytes),
            r.entries.len()
        ),
    }
    if dirty.is_empty() {
        println!("dirty      none: every stripe's parity is known good");
    } else {
        let shown: Vec<String> = dirty.iter().take(32).map(|s| s.to_string()).collect();
        println!(
            "dirty      {} stripes listed (resynced in the background at the next open): {}{}",
            dirty.len(),
            shown.join(" "),
            if dirty.len() > 32 { " …" } else { "" }
        );
    }
    Ok(())
}

fn cmd_demo(a: DemoArgs) -> Result<(), Fail> {
    let tmp = tempfile::Builder::new()
        .prefix("jraid-demo-")
        .tempdir()
        .map_err(|e| Error::new(format!("cannot make a temporary directory: {e}")))?;
    let dir = tmp.path().join("vol");
    println!("== create ({})", dir.display());
    cmd_create(CreateArgs {
        dir: dir.clone(),
        members: 4,
        member_size: 64 << 20,
        strip_kb: 64,
        block_size: 4096,
        journal_size: 4 << 20,
        journal_devices: 1,
        journal_mode: "alternate".into(),
        journal: None,
        journal2: None,
        journal_on_members: false,
        name: "demo".into(),
    })?;
    println!(
        "== bench: 4 KiB random writes, QD 32, journal on, {} s",
        a.seconds
    );
    let b = bench::run(&bench::BenchOptions {
        dir: dir.clone(),
        rw: bench::Rw::Randwrite,
        bs: 4096,
        qd: 32,
        reactors: 1,
        seconds: Some(a.seconds),
        bytes: None,
        journal: true,
        quiet: false,
        recovery_bytes_per_s: 0,
    })?;
    bench::print(&b);
    println!("== crash-test: 1 round");
    let c = crash::run(
        &crash::CrashOptions {
            dir: dir.clone(),
            rounds: 1,
            seconds: 2.0,
            reactors: 2,
            qd: 16,
            journal: true,
            seed: None,
        },
        |l| println!("{l}"),
    )?;
    println!("== check");
    let s = check(&dir, true)?;
    let r = &c.rounds[0];
    println!();
    println!("{:<28} result", "step");
    println!("{:<28} {}", "-".repeat(28), "-".repeat(44));
    println!(
        "{:<28} 4 × 64 MiB, strip 64 KiB, {} stripes",
        "create", s.stripes
    );
    println!(
        "{:<28} {:.0} IOPS, p99 {} us, {:.3} records/write",
        "bench randwrite 4k qd32", b.iops, b.lat_us.p99, b.journal_records_per_write
    );
    println!(
        "{:<28} {} acked writes, {} stripes resynced, m{} failed, {} mismatches",
        "crash-test (1 round)",
        r.acked_total,
        r.resynced,
        r.failed_member,
        r.mismatches + r.parity_mismatches
    );
    println!(
        "{:<28} {} stripes, {} parity mismatches",
        "check", s.stripes, s.mismatches
    );
    if c.failures() > 0 || s.mismatches > 0 {
        return Err(Fail::Found("demo found mismatches".into()));
    }
    Ok(())
}
