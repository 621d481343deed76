//! Crash simulation: `cargo run --release --example crash_sim -- --seeds N [--seed-base B]
//! [--crashes K] [--no-journal] [--control no-recovery-flush]`. Per seed: volumes sharing a
//! journal, a random concurrent workload, power loss at a random instant, recovery; with
//! `--crashes K`, K power losses in all (more writes or none between them, and each recovery
//! after the first may itself lose power at a random point inside it); then one member of every
//! volume lost, every acknowledged write read back and every stripe's parity checked. Controls
//! that must find loss: `--no-journal`; `--control write-before-durable` (writes go on as soon
//! as their reads are in, before the record that holds their mark is durable);
//! `--control no-recovery-flush` (recovery releases the resynced stripes without flushing the
//! members first; needs `--crashes 2` or more).
//! `--scenario transient`: a member fails transiently under writes, the power goes, the member
//! works again after the restart (control: `--control no-failure-record`, degraded writes
//! acknowledged before the failure is recorded). `--scenario admin`: per seed in turn, one of
//! the three administrative scenarios below (passes, journal, delete). `--scenario passes`: a
//! scrub, then a member lost and rebuilt, racing the workload, with `--crashes K` power losses
//! inside them (control:
//! `--control no-pass-flush`, the replacement counts as active before a member flush).
//! `--scenario journal`: the journal devices die under writes, every stripe is resynced and a
//! fresh journal named, with power losses inside (control: `--control no-pass-flush`, the
//! new journal named before the resync's member flush). `--scenario journal-devices`: a
//! journal of two devices (alternate or mirror) loses one while running (no request may fail)
//! or at a power loss (the restart resyncs every stripe, unless a mirror's superblocks say the
//! device it finds is whole); control: `--control trust-survivor`, the restart trusts the
//! survivor's newest record instead; `--loss running|crash|member|replaced|swapped` picks one
//! case for every seed (`swapped`: the survivor lost at the power loss, the dropped device
//! back; its controls `--control trust-survivor` and `--control no-drop-record` run mirrored). `--scenario delete`: one of the
//! volumes sharing a journal is deleted under writes, then power losses, then it is
//! re-assembled (control: `--control no-detach-flush`, its entries leave before its members
//! are flushed). `--scenario read-errors`: bad sectors under reads, repaired from parity.
//! `--scenario init`: a volume created over old contents takes small writes while its initial
//! parity pass runs (its control `--control assume-clean` takes it as initialised from the
//! start; `--control no-pass-flush` moves the watermark without a member flush).
//! `--scenario large`: large volumes, thousands of stripes listed, a few changed per
//! generation, the record chain wrapping between its areas many times, `--crashes K` power
//! losses (some while a checkpoint is written); a seed also fails unless it exercised that
//! (controls: `--no-journal`; `--control checkpoint-only`, recovery ignores the chain's deltas).
//! Last
//! line: `seeds=N lost_acked=X inconsistent_stripes=Y`; exits non-zero when X or Y is above
//! zero.

use jraid::control::RecoveryOptions;
use jraid::sim::cli::SeedArgs;
use jraid::sim::workload::{
    admin_check, crash_check_with, crash_check_writes_before_durable, delete_check, init_check,
    journal_device_check, journal_loss_check, journal_on_members_check, large_check, online_check,
    read_error_check, transient_check, DevicesControl, InitControl, JournalDeviceLoss,
    MemberJournalLoss,
};
use jraid::sim::RecordRead;

fn main() {
    let args = match SeedArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crash_sim: {e}\nusage: crash_sim [--seeds N] [--seed-base B] [--seed S] [--crashes K] [--scenario crash|transient|admin|passes|journal|journal-devices [--loss running|crash|member|replaced|swapped]|delete|read-errors|large|online|init] [--no-journal] [--control assume-clean|no-recovery-flush|no-failure-record|no-pass-flush|no-detach-flush|checkpoint-only|trust-survivor|replace-early|no-drop-record|no-unsynced-guard|write-before-durable]");
            std::process::exit(2);
        }
    };
    let mut journal = true;
    let mut verbose = false;
    let mut crashes = 1u32;
    let mut opts = RecoveryOptions::default();
    let mut transient = false;
    let mut admin = false;
    let mut passes = false;
    let mut journal_loss = false;
    let mut journal_devices = false;
    let mut device_loss = None;
    let mut on_members = false;
    let mut member_loss = None;
    let mut delete = false;
    let mut read_errors = false;
    let mut large = false;
    let mut online = false;
    let mut init = false;
    let mut assume_clean = false;
    let mut record_read = RecordRead::Chain;
    let mut replace_early = false;
    let mut no_drop_record = false;
    let mut skip_detach_flush = false;
    let mut skip_pass_flush = false;
    let mut record_failures = true;
    let mut writes_before_durable = false;
    let mut flags = args.rest.iter();
    let usage = |m: String| -> ! {
        eprintln!("crash_sim: {m}");
        std::process::exit(2);
    };
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--no-journal" => journal = false,
            "-v" | "--verbose" => verbose = true,
            "--crashes" => {
                crashes = flags
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&k| k >= 1)
                    .unwrap_or_else(|| usage("--crashes needs a count of at least 1".into()));
            }
            "--control" => match flags.next().map(String::as_str) {
                Some("no-recovery-flush") => opts.skip_member_flush = true,
                Some("no-failure-record") => record_failures = false,
                Some("no-pass-flush") => skip_pass_flush = true,
                Some("no-detach-flush") => skip_detach_flush = true,
                Some("checkpoint-only") => record_read = RecordRead::CheckpointOnly,
                Some("trust-survivor") => record_read = RecordRead::SurvivorTrusted,
                Some("replace-early") => replace_early = true,
                Some("no-drop-record") => no_drop_record = true,
                Some("no-unsynced-guard") => opts.skip_unsynced_guard = true,
                Some("assume-clean") => assume_clean = true,
                Some("write-before-durable") => writes_before_durable = true,
                other => usage(format!(
                    "unknown control {other:?} (assume-clean, no-recovery-flush, no-failure-record, no-pass-flush, no-detach-flush, checkpoint-only, trust-survivor, replace-early, no-drop-record, no-unsynced-guard, write-before-durable)"
                )),
            },
            "--member-loss" => {
                member_loss = match flags.next().map(String::as_str) {
                    Some("running") => Some(MemberJournalLoss::Running),
                    Some("transient") => Some(MemberJournalLoss::Transient),
                    Some("crash") => Some(MemberJournalLoss::Crash),
                    other => usage(format!(
                        "unknown --member-loss {other:?} (running, transient, crash)"
                    )),
                }
            }
            "--loss" => {
                device_loss = match flags.next().map(String::as_str) {
                    Some("running") => Some(JournalDeviceLoss::Running),
                    Some("crash") => Some(JournalDeviceLoss::Crash),
                    Some("member") => Some(JournalDeviceLoss::WithMember),
                    Some("replaced") => Some(JournalDeviceLoss::Replaced),
                    Some("swapped") => Some(JournalDeviceLoss::Swapped),
                    other => usage(format!(
                        "unknown --loss {other:?} (running, crash, member, replaced, swapped)"
                    )),
                }
            }
            "--scenario" => match flags.next().map(String::as_str) {
                Some("crash") => {}
                Some("transient") => transient = true,
                Some("admin") => admin = true,
                Some("passes") => passes = true,
                Some("journal") => journal_loss = true,
                Some("journal-devices") => journal_devices = true,
                Some("journal-on-members") => on_members = true,
                Some("delete") => delete = true,
                Some("read-errors") => read_errors = true,
                Some("large") => large = true,
                Some("online") => online = true,
                Some("init") => init = true,
                other => usage(format!(
                    "unknown scenario {other:?} (crash, transient, admin, passes, journal, journal-devices, journal-on-members, delete, read-errors, large, online, init)"
                )),
            },
            other => usage(format!("unknown argument {other}")),
        }
    }
    let mut extra = String::new();
    if crashes > 1 {
        extra += &format!(" --crashes {crashes}");
    }
    if !journal {
        extra += " --no-journal";
    }
    if opts.skip_member_flush {
        extra += " --control no-recovery-flush";
    }
    if transient {
        extra += " --scenario transient";
    }
    if admin {
        extra += " --scenario admin";
    }
    if passes {
        extra += " --scenario passes";
    }
    if journal_loss {
        extra += " --scenario journal";
    }
    if journal_devices {
        extra += " --scenario journal-devices";
    }
    if on_members {
        extra += " --scenario journal-on-members";
    }
    if let Some(l) = member_loss {
        extra += match l {
            MemberJournalLoss::Running => " --member-loss running",
            MemberJournalLoss::Transient => " --member-loss transient",
            MemberJournalLoss::Crash => " --member-loss crash",
        };
    }
    if let Some(l) = device_loss {
        extra += match l {
            JournalDeviceLoss::Running => " --loss running",
            JournalDeviceLoss::Crash => " --loss crash",
            JournalDeviceLoss::WithMember => " --loss member",
            JournalDeviceLoss::Replaced => " --loss replaced",
            JournalDeviceLoss::Swapped => " --loss swapped",
        };
    }
    if delete {
        extra += " --scenario delete";
    }
    if read_errors {
        extra += " --scenario read-errors";
    }
    if large {
        extra += " --scenario large";
    }
    if online {
        extra += " --scenario online";
    }
    if init {
        extra += " --scenario init";
    }
    if assume_clean {
        extra += " --control assume-clean";
    }
    if opts.skip_unsynced_guard {
        extra += " --control no-unsynced-guard";
    }
    if record_read == RecordRead::CheckpointOnly {
        extra += " --control checkpoint-only";
    }
    if record_read == RecordRead::SurvivorTrusted {
        extra += " --control trust-survivor";
    }
    if replace_early {
        extra += " --control replace-early";
    }
    if no_drop_record {
        extra += " --control no-drop-record";
    }
    if skip_detach_flush {
        extra += " --control no-detach-flush";
    }
    if skip_pass_flush {
        extra += " --control no-pass-flush";
    }
    if !record_failures {
        extra += " --control no-failure-record";
    }
    if writes_before_durable {
        extra += " --control write-before-durable";
    }
    let start = std::time::Instant::now();
    let (mut lost, mut inconsistent, mut failed_seeds, mut other) = (0u64, 0u64, 0u64, 0u64);
    let (mut writes, mut records, mut full) = (0u64, 0u64, 0u64);
    // Large scenario: the fewest listed / wraps / deltas per checkpoint of any seed, the most
    // entries of any delta, checkpoints and deltas in all, the most stripes one recovery
    // resynced.
    let (mut min_listed, mut max_delta, mut min_wraps, mut min_ratio) =
        (u64::MAX, 0u64, u64::MAX, f64::INFINITY);
    let (mut checkpoints, mut deltas, mut max_resynced) = (0u64, 0u64, 0u64);
    let (mut torn, mut fallbacks) = (0u64, 0u64);
    // Online scenario: requests served while a resync ran, requests refused on unsynced
    // stripes after a member loss (never wrong data), seeds that had both.
    let (mut served, mut refused, mut both) = (0u64, 0u64, 0u64);
    for seed in args.base..args.base + args.count {
        let out = if transient {
            transient_check(seed, record_failures)
        } else if admin {
            // Every administrative operation in turn, seed by seed.
            match seed % 3 {
                0 => admin_check(seed, crashes, skip_pass_flush),
                1 => journal_loss_check(seed, crashes, skip_pass_flush),
                _ => delete_check(seed, crashes, skip_detach_flush),
            }
        } else if passes {
            admin_check(seed, crashes, skip_pass_flush)
        } else if journal_loss {
            journal_loss_check(seed, crashes, skip_pass_flush)
        } else if on_members {
            journal_on_members_check(seed, crashes, member_loss)
        } else if journal_devices {
            journal_device_check(
                seed,
                crashes,
                device_loss,
                if record_read == RecordRead::SurvivorTrusted {
                    Some(DevicesControl::TrustSurvivor)
                } else if replace_early {
                    Some(DevicesControl::ReplaceEarly)
                } else if no_drop_record {
                    Some(DevicesControl::NoDropRecord)
                } else {
                    None
                },
            )
        } else if delete {
            delete_check(seed, crashes, skip_detach_flush)
        } else if read_errors {
            read_error_check(seed)
        } else if large {
            large_check(seed, journal, crashes, record_read)
        } else if online {
            online_check(seed, crashes, &opts)
        } else if init {
            let control = if assume_clean {
                InitControl::AssumeClean
            } else if skip_pass_flush {
                InitControl::SkipFlush
            } else {
                InitControl::None
            };
            init_check(seed, crashes, control)
        } else if writes_before_durable {
            crash_check_writes_before_durable(seed, crashes)
        } else {
            crash_check_with(seed, journal, crashes, &opts)
        };
        lost += out.lost_acked;
        inconsistent += out.inconsistent_stripes;
        other += out.failed_requests
            + out.bad_reads
            + out.unexercised
            + out.needless_full_resyncs
            + out.journal.malformed;
        writes += out.writes;
        records += out.record_writes;
        full += out.full_marks;
        let t = &out.journal;
        min_listed = min_listed.min(t.max_listed);
        max_delta = max_delta.max(t.max_delta);
        min_wraps = min_wraps.min(t.wraps);
        min_ratio = min_ratio.min(t.deltas() as f64 / t.checkpoints.max(1) as f64);
        checkpoints += t.checkpoints;
        deltas += t.deltas();
        max_resynced = max_resynced.max(out.max_resynced);
        torn += out.torn_checkpoints;
        served += out.served_while_resyncing;
        refused += out.untrusted_refused;
        both += u64::from(out.served_while_resyncing > 0 && out.untrusted_refused > 0);
        fallbacks += out.checkpoint_fallbacks;
        if verbose && large {
            println!(
                "seed {seed}: writes={} max_listed={} max_delta={} checkpoints={} wraps={} deltas={} \
                 delta_entries={} delta_removes={} bytes={} max_resynced={} torn_checkpoints={} \
                 fallbacks={} full={} odd={} malformed={}",
                out.writes,
                t.max_listed,
                t.max_delta,
                t.checkpoints,
                t.wraps,
                t.deltas(),
                t.delta_entries,
                t.delta_removes,
                t.bytes,
                out.max_resynced,
                out.torn_checkpoints,
                out.checkpoint_fallbacks,
                out.full_marks,
                t.odd_entries,
                t.malformed
            );
        }
        if !out.clean() {
            failed_seeds += 1;
            if verbose || failed_seeds <= 5 {
                println!(
                    "seed {seed}: lost_acked={} inconsistent_stripes={} failed_requests={} bad_reads={} unexercised={} malformed_records={} {:?} {:?}",
                    out.lost_acked, out.inconsistent_stripes, out.failed_requests, out.bad_reads,
                    out.unexercised, out.journal.malformed, out.notes, out.journal.notes
                );
                println!(
                    "  replay: cargo run --release --example crash_sim -- --seed {seed}{extra}"
                );
            }
        }
        if args.count >= 1000 && (seed - args.base + 1) % (args.count / 10) == 0 {
            eprintln!(
                "  {} / {} seeds, {:.0}s",
                seed - args.base + 1,
                args.count,
                start.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "journal={} crashes={crashes} recovery_flush={} failure_record={record_failures} \
         scenario={} failed_seeds={failed_seeds} \
         other_errors={other} user_writes={writes} record_writes={records} \
         full_record_waits={full} elapsed={:.1}s",
        if journal { "on" } else { "off" },
        if opts.skip_member_flush { "off" } else { "on" },
        if transient {
            "transient"
        } else if admin {
            "admin"
        } else if passes {
            "passes"
        } else if journal_loss {
            "journal"
        } else if on_members {
            "journal-on-members"
        } else if journal_devices {
            "journal-devices"
        } else if delete {
            "delete"
        } else if read_errors {
            "read-errors"
        } else if large {
            "large"
        } else if online {
            "online"
        } else if init {
            "init"
        } else {
            "crash"
        },
        start.elapsed().as_secs_f64()
    );
    if online && args.count > 0 {
        eprintln!(
            "online: requests served while resyncing={served} refused on unsynced stripes after a \
             member loss={refused} seeds with both={both} max_resynced={max_resynced}"
        );
    }
    if large && args.count > 0 {
        eprintln!(
            "large: min_max_listed={min_listed} max_delta_entries={max_delta} min_wraps={min_wraps} \
             min_deltas_per_checkpoint={min_ratio:.1} checkpoints={checkpoints} deltas={deltas} \
             max_resynced={max_resynced} torn_checkpoints={torn} (previous chain read after \
             {fallbacks})"
        );
    }
    println!(
        "seeds={} lost_acked={lost} inconsistent_stripes={inconsistent}",
        args.count
    );
    if lost > 0 || inconsistent > 0 || other > 0 {
        std::process::exit(1);
    }
}
