//! The simulator's proofs, run in CI. Seed counts can be raised with JRAID_SIM_SEEDS /
//! JRAID_CRASH_SEEDS; a failing seed is printed with the command that replays it.

use std::cell::Cell;

use jraid::control::RecoveryOptions;
use jraid::sim::workload::{
    admin_check, crash_check, crash_check_streams, crash_check_with,
    crash_check_writes_before_durable, delete_check, init_check, io_check, journal_device_check,
    journal_loss_check, journal_on_members_check, large_check, read_error_check, transient_check,
    DevicesControl, InitControl, JournalDeviceLoss, MemberJournalLoss, Outcome,
};
use jraid::sim::RecordRead;

fn seeds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random concurrent reads and writes (overlapping, sub-stripe, multi-stripe), healthy and
/// degraded, member failures mid-run: every read returns acknowledged data and every stripe's
/// parity matches when idle.
#[test]
fn engine_simulation_2000_seeds() {
    let n = seeds("JRAID_SIM_SEEDS", 2000);
    let mut failures = Vec::new();
    let (mut writes, mut merged) = (0, 0);
    for seed in 0..n {
        let out = io_check(seed);
        writes += out.writes;
        merged += out.merged_writes;
        if !out.clean() {
            failures.push(format!(
                "seed {seed}: {out:?}\n  replay: cargo run --release --example sim -- --seed {seed}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        writes > n * 20,
        "the workload barely wrote ({writes} writes)"
    );
    // Half the seeds run sequential streams of small writes: those queued on a stripe's lock
    // must have merged, or the merged stripe writes went unchecked.
    assert!(merged > n, "only {merged} writes merged over {n} seeds");
}

/// Crash anywhere with the journal on: no acknowledged write is lost and every stripe's parity
/// matches after recovery, even with a member lost after recovery.
#[test]
fn crash_simulation_5000_seeds_with_journal() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000);
    let (mut lost, mut inconsistent, mut full, mut merged) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for seed in 0..n {
        let out = crash_check(seed, true);
        lost += out.lost_acked;
        inconsistent += out.inconsistent_stripes;
        full += out.full_marks;
        merged += out.merged_writes;
        if !out.clean() {
            failures.push(format!(
                "seed {seed}: {out:?}\n  replay: cargo run --release --example crash_sim -- --seed {seed}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seeds={n} lost_acked={lost} inconsistent_stripes={inconsistent}\n{}",
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The runs must reach the back-pressure path too (a full record makes writers wait).
    assert!(full > 0, "no seed filled a record: back-pressure untested");
    // Merged stripe writes (sequential small writes, odd seeds) must be among those crashed.
    assert!(merged > n / 2, "only {merged} writes merged over {n} seeds");
}

/// Control: the same simulation with the journal switched off finds the write hole.
#[test]
fn crash_simulation_without_journal_finds_loss() {
    let found = (0..2000).find(|&seed| {
        let out = crash_check(seed, false);
        out.lost_acked > 0 && out.inconsistent_stripes > 0
    });
    assert!(
        found.is_some(),
        "2,000 seeds without the journal found no loss: the checker is blind"
    );
}

/// Control of the journal's rule 1 where it is enforced (`Channel::go_on`: a write marks as its
/// reads go out, and writes only once that mark's record is durable): with writes going on as
/// soon as their reads are in, the crash simulation finds loss.
#[test]
fn crash_simulation_writing_before_the_record_is_durable_finds_loss() {
    let found = (0..2000).find(|&seed| {
        let out = crash_check_writes_before_durable(seed, 1);
        out.lost_acked > 0 || out.inconsistent_stripes > 0
    });
    assert!(
        found.is_some(),
        "2,000 seeds writing before the record is durable found no loss: the checker is blind"
    );
}

/// Crash anywhere while some writes are sequential streams of full-stripe writes, which the
/// journal lists stripes ahead of (`Journal::list_ahead`): no acknowledged write is lost and
/// parity matches; the runs must list ahead. Control: without the journal, loss is found.
#[test]
fn crash_simulation_with_streams_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    let opts = RecoveryOptions::default();
    let listed = Cell::new(0);
    all_clean(
        n,
        |s| {
            let out = crash_check_streams(s, true, 2, &opts, true);
            listed.set(listed.get() + out.listed_ahead);
            out
        },
        " (streams: crash_check_streams)",
    );
    assert!(
        listed.get() > 0,
        "no seed listed ahead of a stream: untested"
    );
    finds_loss(
        2000,
        |s| crash_check_streams(s, false, 1, &opts, true),
        "with streams and without the journal",
    );
}

/// Every seed in `0..n` must come out clean under `check`; a failure names its seed and the
/// crash_sim command (`replay` holds its flags) that replays it.
fn all_clean(n: u64, check: impl Fn(u64) -> Outcome, replay: &str) {
    let failures: Vec<String> = (0..n)
        .filter_map(|seed| {
            let out = check(seed);
            (!out.clean()).then(|| {
                format!(
                    "seed {seed}: {out:?}\n  replay: cargo run --release --example crash_sim -- --seed {seed}{replay}"
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {n} seeds failed:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}

/// A control: some seed in `0..n` must lose acknowledged writes or leave stripes inconsistent
/// under `check` (the rule it switches off is needed).
fn finds_loss(n: u64, check: impl Fn(u64) -> Outcome, what: &str) {
    let found = (0..n).find(|&seed| {
        let out = check(seed);
        out.lost_acked > 0 || out.inconsistent_stripes > 0
    });
    assert!(
        found.is_some(),
        "{n} seeds {what} found no loss: the checker is blind"
    );
}

/// Three power losses per seed (more writes, or none, between them; recoveries that lose power
/// themselves at random points inside): no acknowledged write is lost and parity matches.
#[test]
fn crash_simulation_3_crashes_5000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000);
    let opts = RecoveryOptions::default();
    all_clean(n, |s| crash_check_with(s, true, 3, &opts), " --crashes 3");
}

/// Control of the rule "members are flushed before resynced stripes leave the record"
/// (control::recovery): without that flush, repeated power losses find loss.
#[test]
fn crash_simulation_without_recovery_flush_finds_loss() {
    let opts = RecoveryOptions {
        skip_member_flush: true,
        ..RecoveryOptions::default()
    };
    finds_loss(
        2000,
        |s| crash_check_with(s, true, 3, &opts),
        "with three power losses and no member flush in recovery",
    );
}

/// A member fails transiently under writes, the power goes, the member works again after the
/// restart: its failure was recorded before any degraded write was acknowledged, so the volume
/// keeps it out and no acknowledged write is lost.
#[test]
fn transient_member_failure_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    all_clean(n, |s| transient_check(s, true), " --scenario transient");
}

/// Control of the rule "a member failure is durable before a write that depends on it is
/// acknowledged" (engine::channel): without the record, the member comes back with stale
/// data and acknowledged writes are lost.
#[test]
fn transient_member_failure_without_record_finds_loss() {
    finds_loss(
        500,
        |s| transient_check(s, false),
        "with unrecorded transient failures",
    );
}

/// Background passes racing the workload (a scrub, then a member lost and rebuilt) with three
/// power losses inside them, inside recovery and right after a rebuild: parity matches and
/// every acknowledged write reads back, also with another member lost.
#[test]
fn admin_scenario_1000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(1000);
    all_clean(
        n,
        |s| admin_check(s, 3, false),
        " --scenario passes --crashes 3",
    );
}

/// Control of the rule "a rebuild flushes the members before the replacement counts as
/// active" (control::pass): without that flush, a power loss right after a rebuild loses data.
#[test]
fn admin_scenario_without_pass_flush_finds_loss() {
    finds_loss(
        3000,
        |s| admin_check(s, 3, true),
        "with rebuilds ending without a member flush",
    );
}

/// A volume created over members that were not blank (parity disagreeing with the data) takes
/// small writes while its initial parity pass runs, three power losses at random points (many
/// inside the pass, which resumes from the watermark its superblocks recorded), sometimes a
/// member lost during the pass and rebuilt: in the end every stripe is initialised, parity
/// matches and every acknowledged write reads back, also with a member lost.
#[test]
fn init_scenario_1000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(1000);
    let in_pass = Cell::new(0u64);
    all_clean(
        n,
        |s| {
            let out = init_check(s, 3, InitControl::None);
            in_pass.set(in_pass.get() + out.crashes_in_pass);
            out
        },
        " --scenario init --crashes 3",
    );
    assert!(
        in_pass.get() >= n / 4,
        "only {} power losses came during an initial pass in {n} seeds",
        in_pass.get()
    );
}

/// Control of read-modify-write's guard on stripes not initialised (engine::Volume::
/// set_init_stripes): a volume taken as initialised over old contents loses acknowledged
/// writes once a member is lost.
#[test]
fn init_scenario_assumed_clean_loses_acknowledged_writes() {
    let found = (0..500).find(|&s| {
        let out = init_check(s, 0, InitControl::AssumeClean);
        out.lost_acked + out.bad_reads > 0
    });
    assert!(
        found.is_some(),
        "500 seeds over old contents taken as initialised lost nothing: the checker is blind"
    );
}

/// Control of the rule "the initial pass flushes the members before a stripe counts as
/// initialised" (control::pass): without that flush, power losses find loss.
#[test]
fn init_scenario_without_pass_flush_finds_loss() {
    finds_loss(
        2000,
        |s| init_check(s, 3, InitControl::SkipFlush),
        "with initial passes moving their watermark without a member flush",
    );
}

/// The journal devices die under writes; every stripe is resynced (members flushed) and a
/// fresh journal named, with three power losses at random points (in the resync, right after
/// the naming, in recovery): parity matches and acknowledged writes read back.
#[test]
fn journal_loss_scenario_1000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(1000);
    all_clean(
        n,
        |s| journal_loss_check(s, 3, false),
        " --scenario journal --crashes 3",
    );
}

/// Control of the rule "a full resync flushes the members before the new journal is named"
/// (control::pass): without the flush, a power loss after the naming finds loss.
#[test]
fn journal_loss_scenario_without_pass_flush_finds_loss() {
    finds_loss(
        1000,
        |s| journal_loss_check(s, 3, true),
        "without the resync's member flush",
    );
}

/// A journal of two devices (alternate or mirror) loses one under writes, for good or
/// transiently; three power losses per seed: no request fails for it, every acknowledged
/// write reads back and parity matches.
#[test]
fn journal_device_lost_while_running_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    all_clean(
        n,
        |s| journal_device_check(s, 3, Some(JournalDeviceLoss::Running), None),
        " --scenario journal-devices --loss running --crashes 3",
    );
}

/// The same with the journal device lost at the first power loss (the restart resyncs every
/// stripe and goes on with the survivor).
#[test]
fn journal_device_lost_at_a_crash_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    all_clean(
        n,
        |s| journal_device_check(s, 3, Some(JournalDeviceLoss::Crash), None),
        " --scenario journal-devices --loss crash --crashes 3",
    );
}

/// The same with a member of the first volume lost too while running (the journal device
/// comes back after the power loss, behind the survivor).
#[test]
fn journal_device_lost_with_a_member_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    all_clean(
        n,
        |s| journal_device_check(s, 3, Some(JournalDeviceLoss::WithMember), None),
        " --scenario journal-devices --loss member --crashes 3",
    );
}

/// The same with the lost device replaced online by a fresh one (it gets a checkpoint of
/// everything first), then power losses that may take either device.
#[test]
fn journal_device_replaced_online_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    all_clean(
        n,
        |s| journal_device_check(s, 3, Some(JournalDeviceLoss::Replaced), None),
        " --scenario journal-devices --loss replaced --crashes 3",
    );
}

/// A mirrored or alternating pair loses a device while running, then the survivor at the power
/// loss, and the first device comes back behind it: the restart must not trust it (its drop is
/// recorded in the members' superblocks before the survivor's records let writers go).
#[test]
fn journal_device_dropped_then_survivor_lost_2000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    all_clean(
        n,
        |s| journal_device_check(s, 3, Some(JournalDeviceLoss::Swapped), None),
        " --scenario journal-devices --loss swapped --crashes 3",
    );
}

/// Controls of the rule "a mirrored pair's drop is recorded before a record only the survivor
/// holds releases its writers" (`Journal::drops_to_record`, `control::recovery::journal_complete`):
/// trusting the device found, or not recording the drop, finds loss when the restart finds
/// only the dropped device.
#[test]
fn mirror_restart_without_the_drop_record_finds_loss() {
    for control in [DevicesControl::TrustSurvivor, DevicesControl::NoDropRecord] {
        finds_loss(
            500,
            |s| journal_device_check(s, 1, Some(JournalDeviceLoss::Swapped), Some(control)),
            "a mirror restart from the dropped device",
        );
    }
}

/// The journal on the members (a mirrored pair in reserved areas of members 0 and 1): a member
/// lost while running (for good, or back after the power loss), or at a power loss, takes its
/// journal device with it; three power losses per seed: no request fails for it, every
/// acknowledged write reads back and parity matches.
#[test]
fn journal_on_members_member_lost_2000_seeds_each() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    for (loss, flag) in [
        (MemberJournalLoss::Running, "running"),
        (MemberJournalLoss::Transient, "transient"),
        (MemberJournalLoss::Crash, "crash"),
    ] {
        all_clean(
            n,
            |s| journal_on_members_check(s, 3, Some(loss)),
            &format!(" --scenario journal-on-members --member-loss {flag} --crashes 3"),
        );
    }
}

/// Control of the rule "a restart that misses a journal device of an alternating pair resyncs
/// every stripe" (control::journal): trusting the survivor's newest record finds loss.
#[test]
fn journal_devices_scenario_trusting_the_survivor_finds_loss() {
    finds_loss(
        1000,
        |s| {
            journal_device_check(
                s,
                1,
                Some(JournalDeviceLoss::Crash),
                Some(DevicesControl::TrustSurvivor),
            )
        },
        "trusting the surviving journal device",
    );
}

/// Control of the rule "a replacement journal device is taken only once the survivor holds
/// every durable record" (`Journal::device_added`): taking it at once, a restart finds both
/// devices with neither holding the newest durable record, so the marks of acknowledged
/// writers are not resynced (the check sees the durable generation go back; actual torn
/// stripes need a torn write there too, rarer).
#[test]
fn journal_device_replaced_early_finds_durable_records_lost() {
    let found = (0..3000).find(|&s| {
        let out = journal_device_check(
            s,
            3,
            Some(JournalDeviceLoss::Replaced),
            Some(DevicesControl::ReplaceEarly),
        );
        out.lost_acked > 0 || out.inconsistent_stripes > 0 || out.failed_requests > 0
    });
    assert!(
        found.is_some(),
        "3000 seeds replacing a journal device early found nothing: the checker is blind"
    );
}

/// One of the volumes sharing a journal is deleted under writes (members flushed, then it
/// leaves the journal), power losses follow, and it is re-assembled: every acknowledged write
/// reads back and parity matches.
#[test]
fn delete_scenario_1000_seeds() {
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(1000);
    all_clean(
        n,
        |s| delete_check(s, 2, false),
        " --scenario delete --crashes 2",
    );
}

/// Control of the rule "a volume's members are flushed before its entries leave the journal"
/// (control::detach).
#[test]
fn delete_scenario_without_detach_flush_finds_loss() {
    finds_loss(
        1000,
        |s| delete_check(s, 2, true),
        "without the detach flush",
    );
}

/// Large volumes (tens of thousands of stripes) on one journal: thousands of stripes stay listed
/// while each generation adds and removes a few, the record chain wraps between its areas many
/// times, and two power losses per seed (at random instants, or while a checkpoint is written;
/// recoveries losing power too): parity matches, every acknowledged write reads back, also with
/// a member lost, and recovery finds every durable generation. `large_check` also fails a seed
/// that did not exercise that (listed set, delta sizes, wraps, deltas per checkpoint, removals,
/// record placement).
#[test]
fn large_scenario_40_seeds() {
    let n = seeds("JRAID_LARGE_SEEDS", 40);
    let (listed, delta, torn) = (Cell::new(u64::MAX), Cell::new(0), Cell::new(0));
    all_clean(
        n,
        |s| {
            let out = large_check(s, true, 2, RecordRead::Chain);
            listed.set(listed.get().min(out.journal.max_listed));
            delta.set(delta.get().max(out.journal.max_delta));
            torn.set(torn.get() + out.torn_checkpoints);
            out
        },
        " --scenario large --crashes 2",
    );
    eprintln!(
        "large: {n} seeds, at least {} listed per seed, deltas of at most {} entries, {} power \
         losses while a checkpoint was written",
        listed.get(),
        delta.get(),
        torn.get()
    );
    // Power losses must also tear checkpoints (the previous chain is then the newest).
    assert!(
        torn.get() > 0,
        "no power loss came while a checkpoint was written"
    );
}

/// Control of the large scenario: without the journal, power losses find loss.
#[test]
fn large_scenario_without_journal_finds_loss() {
    finds_loss(
        20,
        |s| large_check(s, false, 2, RecordRead::Chain),
        "of the large scenario without the journal",
    );
}

/// Control of the large scenario's chains: a recovery that reads only the newest chain's
/// checkpoint, not the deltas behind it, resyncs too little and finds loss.
#[test]
fn large_scenario_reading_checkpoints_only_finds_loss() {
    finds_loss(
        20,
        |s| large_check(s, true, 2, RecordRead::CheckpointOnly),
        "of the large scenario with recovery ignoring deltas",
    );
}

/// Bad sectors on data blocks: every read returns the acknowledged data, the sectors are
/// rebuilt from the others and rewritten, no member is failed for them, parity matches, and
/// the data still reads back with a member lost. (Without the repair, the first read error
/// fails its member and the check reports it.)
#[test]
fn read_errors_are_repaired_2000_seeds() {
    all_clean(2000, read_error_check, " --scenario read-errors");
}

/// A member lost, writes degraded, a blank replacement rebuilt under load, sometimes a power
/// loss in the middle (recovery, then the rebuild starts again): afterwards parity matches,
/// acknowledged writes read back, and still do with another member lost.
#[test]
fn rebuild_simulation_600_seeds() {
    let n = seeds("JRAID_REBUILD_SEEDS", 600);
    let mut failures = Vec::new();
    for seed in 0..n {
        let out = jraid::sim::workload::rebuild_check(seed);
        if !out.clean() {
            failures.push(format!(
                "seed {seed}: {out:?}\n  replay: cargo run --release --example sim -- --seed {seed} --rebuild"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Online recovery (issue "back online at once"): after a power loss the volumes serve reads
/// and writes while their listed stripes are resynced in the background, lose power again in
/// the middle of it, and lose a member while it runs: no acknowledged write is lost, and a
/// stripe not yet resynced refuses what it cannot serve instead of trusting its parity. The
/// seeds must show it exercised that: requests served while resyncing, power lost while
/// resyncing, and refusals after a member loss, in many seeds.
#[test]
fn online_recovery_2000_seeds() {
    use jraid::sim::workload::online_check;
    let n = seeds("JRAID_CRASH_SEEDS", 5000).min(2000);
    let opts = RecoveryOptions::default();
    let (mut served, mut crashed, mut both) = (0u64, 0u64, 0u64);
    for s in 0..n {
        let out = online_check(s, 2, &opts);
        assert!(
            out.clean(),
            "seed {s}: {out:?}\n  replay: cargo run --release --example crash_sim -- --seed {s} --crashes 2 --scenario online"
        );
        served += u64::from(out.served_while_resyncing > 0);
        crashed += out.crashes_while_resyncing;
        both += u64::from(out.served_while_resyncing > 0 && out.untrusted_refused > 0);
    }
    assert!(
        served * 2 > n,
        "only {served} of {n} seeds served requests while resyncing"
    );
    assert!(
        crashed * 4 > n,
        "only {crashed} of {n} seeds lost power while resyncing"
    );
    assert!(
        both * 4 > n,
        "only {both} of {n} seeds met an unsynced stripe after a member loss"
    );
}

/// Control of online recovery's rule "a stripe's parity is not trusted before its resync"
/// (control::recovery, engine::Volume::parity_untrusted): without it, degraded reads of
/// unsynced stripes rebuild from stale parity and the checker finds loss.
#[test]
fn online_recovery_without_unsynced_guard_finds_loss() {
    use jraid::sim::workload::online_check;
    let opts = RecoveryOptions {
        skip_unsynced_guard: true,
        ..RecoveryOptions::default()
    };
    finds_loss(
        2000,
        |s| online_check(s, 2, &opts),
        "of online recovery without the unsynced guard",
    );
}
