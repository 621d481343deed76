//! Model checks of the aggregator's protocols (group commit, removal under the shard lock,
//! list-ahead, journal devices): `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
//!
//! Writers mark, flush themselves when nobody else does (as channels do), and on being released
//! check the invariant: their stripe is listed in the newest record written.

use std::sync::Arc as StdArc;

use loom::sync::{Arc, Mutex};
use loom::thread;

use super::aggregator::{Journal, JournalConfig, JournalVolume, Mark};
use super::record;

struct Rig {
    j: Journal,
    jv: StdArc<JournalVolume>,
    /// Records written, in generation order: (generation, stripes the journal device then
    /// lists).
    log: Mutex<Vec<(u64, Vec<u64>)>>,
    /// The journal device: two areas of 8 blocks of 512 bytes, at blocks 0 and 8.
    disk: Mutex<Vec<u8>>,
    /// The clock of the flushes (µs): each flush is 10 µs after the one before, so entries
    /// listed by one are due for a removal check at the next (the hysteresis is 0).
    clock: std::sync::atomic::AtomicU64,
}

fn rig() -> Arc<Rig> {
    rig_with(false)
}

/// A rig whose volume's members cache writes volatilely when `volatile_members`.
fn rig_with(volatile_members: bool) -> Arc<Rig> {
    rig_from(volatile_members, None)
}

/// A rig resuming from `last` (recovered from an earlier run).
fn rig_from(volatile_members: bool, last: Option<record::Record>) -> Arc<Rig> {
    rig_of(2, volatile_members, last)
}

/// A rig whose volume has `stripes` stripes.
fn rig_of(stripes: u64, volatile_members: bool, last: Option<record::Record>) -> Arc<Rig> {
    rig_cfg(stripes, volatile_members, last, false)
}

/// [`rig_of`]; with `control`, the flusher removes a stripe under a later shard lock than the
/// one it decided under.
fn rig_cfg(
    stripes: u64,
    volatile_members: bool,
    last: Option<record::Record>,
    control: bool,
) -> Arc<Rig> {
    rig_build(stripes, volatile_members, last, |cfg| {
        cfg.control_recheck_unlocked = control
    })
}

/// [`rig`]; with `control`, list-ahead lists stripes whatever their state.
fn rig_list(control: bool) -> Arc<Rig> {
    rig_build(2, false, None, |cfg| {
        cfg.control_list_over_anything = control
    })
}

fn rig_build(
    stripes: u64,
    volatile_members: bool,
    last: Option<record::Record>,
    set: impl FnOnce(&mut JournalConfig),
) -> Arc<Rig> {
    let mut cfg = JournalConfig::new([7; 16], 512, 4096, [(0, 0), (0, 8)]);
    cfg.max_channels = 1;
    cfg.hysteresis_generations = 0;
    cfg.hysteresis_us = 0;
    cfg.roomy_hysteresis_us = 0;
    set(&mut cfg);
    let j = Journal::new(cfg, last);
    let (jv, _) = j.attach_volume(0, stripes, volatile_members);
    Arc::new(Rig {
        j,
        jv,
        log: Mutex::new(Vec::new()),
        disk: Mutex::new(vec![0; 16 * 512]),
        clock: std::sync::atomic::AtomicU64::new(1000),
    })
}

/// Write one record if no one else is: encode, "write", publish, finish.
fn flush_once(r: &Rig) -> bool {
    let mut buf = Vec::new();
    let now = r.clock.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
    let Some(job) = r.j.begin_flush(now, &mut buf) else {
        return false;
    };
    // "Write" the record where the journal placed it (a delta behind its area's chain, or a
    // checkpoint at the start of the other area), then read the device back as recovery would.
    let stripes = {
        let mut disk = r.disk.lock().unwrap();
        let w = job.writes()[0];
        let at = w.lba as usize * 512;
        disk[at..at + w.end - w.start].copy_from_slice(&buf[w.start..w.end]);
        let rec = record::newest(&disk[..4096], &disk[4096..], &[7; 16], 512)
            .expect("current format")
            .expect("a record");
        assert_eq!(rec.generation, job.generation);
        rec.entries.iter().map(|e| e.stripe).collect()
    };
    r.log.lock().unwrap().push((job.generation, stripes));
    let mut notify = Vec::new();
    r.j.finish_flush(job.generation, &mut notify);
    true
}

/// The whole writer protocol for one stripe write.
fn write_stripe(r: &Rig, stripe: u64) {
    write_stripe_at(r, stripe, 1);
}

/// [`write_stripe`], going clean at `clean_us`.
fn write_stripe_at(r: &Rig, stripe: u64, clean_us: u64) {
    assert!(try_write_stripe(r, stripe, clean_us, u32::MAX));
}

/// [`write_stripe_at`], giving up (false) after `attempts` marks that found no room.
fn try_write_stripe(r: &Rig, stripe: u64, clean_us: u64, attempts: u32) -> bool {
    try_write_stripe_on(r, None, stripe, clean_us, attempts)
}

/// [`try_write_stripe`] from the channel registered in `chan` (its marks queue in that
/// channel's ring; `None`: no channel).
fn try_write_stripe_on(
    r: &Rig,
    chan: Option<usize>,
    stripe: u64,
    clean_us: u64,
    attempts: u32,
) -> bool {
    let mut left = attempts;
    let m = loop {
        let mark = match chan {
            Some(c) => r.j.mark_on(c, &r.jv, stripe),
            None => r.j.mark(&r.jv, stripe),
        };
        match mark {
            Mark::Ready => break Mark::Ready,
            Mark::Wait(g) => {
                r.j.request(g);
                while r.j.durable_generation() < g {
                    if !flush_once(r) {
                        thread::yield_now();
                    }
                }
                break Mark::Wait(g);
            }
            // No free state slot (the models' table has two): room comes with a record that
            // lets a clean stripe go.
            Mark::Full => {
                left -= 1;
                if left == 0 {
                    return false;
                }
                r.j.space_wait();
                if !flush_once(r) {
                    thread::yield_now();
                }
                r.j.space_done();
            }
        }
    };
    // The invariant: while we hold the mark, the newest record written lists our stripe.
    let log = r.log.lock().unwrap();
    let (g, newest) = log.last().expect("a record was written before any write");
    assert!(
        newest.contains(&stripe),
        "stripe {stripe} ({m:?}) missing from record {g}: {newest:?}; log {:?}; durable {}",
        *log,
        r.j.durable_generation()
    );
    drop(log);
    r.j.clean(&r.jv, stripe, clean_us);
    true
}

#[test]
fn loom_two_writers_group_commit() {
    group_commit_model(false);
}

/// Control: a flusher that closes a generation without waiting for the writers that entered it
/// to leave writes a record without a stripe of that generation, and releases its writer.
#[test]
#[should_panic(expected = "missing from record")]
fn loom_group_commit_control_skipping_the_drain_fails() {
    group_commit_model(true);
}

fn group_commit_model(control: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let r = rig_build(2, false, None, |cfg| cfg.control_skip_drain = control);
        let r2 = r.clone();
        let t = thread::spawn(move || write_stripe(&r2, 1));
        write_stripe(&r, 0);
        t.join().unwrap();
    });
}

#[test]
fn loom_remark_races_removal() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let r = rig();
        let r2 = r.clone();
        // One thread writes stripe 0 twice (clean in between), the other keeps flushing, which
        // removes stripe 0 whenever it is clean: a re-mark must never be released unlisted.
        let t = thread::spawn(move || {
            write_stripe(&r2, 0);
            write_stripe(&r2, 0);
        });
        for _ in 0..2 {
            flush_once(&r);
            thread::yield_now();
        }
        t.join().unwrap();
        assert!(r.jv.active(0) == 0);
    });
}

#[test]
fn loom_fast_path_write_races_removal_check() {
    fast_path_removal_model(false);
}

/// Control: with a flusher that decides on removal under the shard lock and removes under a
/// later one, the model finds the stripe gone from the record while its newest write is not
/// covered.
#[test]
#[should_panic(expected = "is not covered by the member flush")]
fn loom_fast_path_control_removing_after_the_lock_fails() {
    fast_path_removal_model(true);
}

fn fast_path_removal_model(control: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        // Volatile member caches. Stripe 0 was written (clean at 1 µs), listed in a durable
        // record, and a member flush that started at 2 µs covers that write: it may leave.
        let r = rig_cfg(2, true, None, control);
        write_stripe_at(&r, 0, 1);
        r.jv.member_flush_done(2);
        // A second write takes the fast path (still listed) and goes clean at 3 µs, after the
        // member flush started: nothing covers it while the flusher decides on removal.
        let r2 = r.clone();
        let t = thread::spawn(move || write_stripe_at(&r2, 0, 3));
        flush_once(&r);
        t.join().unwrap();
        // The rule: a stripe leaves the record only if no write to it started after the member
        // flush that covers it. The newest write is uncovered, so the newest record lists it.
        let log = r.log.lock().unwrap();
        let (g, newest) = log.last().expect("records written");
        assert!(
            newest.contains(&0),
            "stripe 0 left with record {g} although its newest write (clean at 3 us) is not \
             covered by the member flush (started at 2 us); log {:?}",
            *log
        );
    });
}

#[test]
fn loom_release_of_carried_stripe_races_its_write() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        // Recovery found stripe 0 listed (a record of generation 4, area 1) and resynced it. As
        // the volume lets the carried entry go, a write to stripe 0 starts: the release (which
        // writes a removal) must never take the write's listing with it.
        let last = record::Record {
            generation: 4,
            entries: vec![record::Entry {
                volume: 0,
                stripe: 0,
            }],
            area: 1,
            base: 4,
            records: 1,
            bytes: 512,
        };
        let r = rig_from(false, Some(last));
        let r2 = r.clone();
        let t = thread::spawn(move || write_stripe(&r2, 0));
        r.j.release_carried(0, &[]);
        flush_once(&r);
        t.join().unwrap();
    });
}

/// A journal of two devices in alternate mode (512-byte blocks, 4 KiB areas, no hysteresis)
/// with volume 0 of two stripes attached.
fn two_device_journal() -> (Arc<Journal>, StdArc<JournalVolume>) {
    two_device_journal_in(super::aggregator::JournalMode::Alternate, false)
}

/// [`two_device_journal`] in `mode` (with the drop-record control when `no_drop_record`).
fn two_device_journal_in(
    mode: super::aggregator::JournalMode,
    no_drop_record: bool,
) -> (Arc<Journal>, StdArc<JournalVolume>) {
    let mut cfg = JournalConfig::new([7; 16], 512, 4096, [(0, 0), (0, 8)]);
    cfg.devices = 2;
    cfg.mode = mode;
    cfg.control_no_drop_record = no_drop_record;
    cfg.max_channels = 1;
    cfg.hysteresis_generations = 0;
    cfg.hysteresis_us = 0;
    cfg.roomy_hysteresis_us = 0;
    let j = Arc::new(Journal::new(cfg, None));
    let (jv, _) = j.attach_volume(0, 2, false);
    (j, jv)
}

/// The newest state over both devices of [`two_device_journal`], as a restart reads it.
fn newest_over(disks: &[Vec<u8>; 2]) -> Result<record::Newest, record::RecordError> {
    let views = [
        Some((&disks[0][..4096], &disks[0][4096..])),
        Some((&disks[1][..4096], &disks[1][4096..])),
    ];
    record::newest_of(&views, &[7; 16], 512)
}

/// One record write of a [`two_device_journal`] onto `disks`, as a runtime issues it; a
/// write to device 1 fails once `dead` is set (checked as the write lands). False when no
/// record could start.
fn flush_two(
    j: &Journal,
    disks: &Mutex<[Vec<u8>; 2]>,
    dead: &std::sync::atomic::AtomicBool,
) -> bool {
    use super::aggregator::RecordOutcome;
    let mut buf = Vec::new();
    let Some(job) = j.begin_flush(0, &mut buf) else {
        return false;
    };
    for w in job.writes().to_vec() {
        let ok = w.dev == 0 || !dead.load(std::sync::atomic::Ordering::SeqCst);
        if ok {
            let at = w.lba as usize * 512;
            disks.lock().unwrap()[w.dev as usize][at..at + w.end - w.start]
                .copy_from_slice(&buf[w.start..w.end]);
        }
        let outcome = j.write_done(job.generation, w.dev, ok, &mut Vec::new());
        assert_ne!(outcome, RecordOutcome::Failed, "one device is left");
    }
    true
}

/// Two journal devices (alternate mode): a writer marks stripe 0 and flushes until its
/// generation is durable, while another thread drops device 1 (as a runtime's hot-remove
/// does; its writes fail from then on). Whatever the interleaving, the writer is released
/// with the journal not failed, and the newest state over both devices (device 1 read back
/// as it stayed, behind) lists stripe 0: a record whose only write failed is not durable, and
/// the next one carries its change to the survivor. (Control, run by hand: `write_done`
/// counting device 1's failed write as done fails this model.)
#[test]
fn loom_journal_device_lost_while_a_record_is_written() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let (j, jv) = two_device_journal();
        let disks = Arc::new(Mutex::new([vec![0u8; 16 * 512], vec![0u8; 16 * 512]]));
        let dead = StdArc::new(AtomicBool::new(false));
        // Generations 1 (a checkpoint, to both) and 2 (to device 0) first: the writer's
        // generation, 3, goes to device 1 alone.
        let flush = |j: &Journal, dead: &AtomicBool| flush_two(j, &disks, dead);
        assert!(flush(&j, &dead) && flush(&j, &dead));
        let (j2, dead2) = (j.clone(), dead.clone());
        let t = thread::spawn(move || {
            dead2.store(true, SeqCst);
            j2.device_gone(1);
        });
        let Mark::Wait(g) = j.mark(&jv, 0) else {
            panic!("a first mark waits");
        };
        assert_eq!(g, 3);
        j.request(g);
        while j.durable_generation() < g {
            assert!(!j.is_failed(), "one device is left");
            if !flush(&j, &dead) {
                thread::yield_now();
            }
        }
        t.join().unwrap();
        let d = disks.lock().unwrap();
        let newest = newest_over(&d)
            .expect("current format")
            .record
            .expect("a record");
        assert!(newest.generation >= g);
        assert!(newest.entries.iter().any(|e| e.stripe == 0), "{newest:?}");
        j.clean(&jv, 0, 1);
    });
}

/// A lost journal device, which alone held the newest durable record, replaced online
/// (`device_added`, with the fresh device swapped in at the same moment) while a writer's
/// record is being written to the survivor: at the moment of the replacement, a restart that
/// finds both devices reads back every durable generation; and once the writer's generation
/// is durable, the newest state over both lists the writer's stripe. (Control, run by hand:
/// `control_replace_early` set fails this model.)
#[test]
fn loom_journal_device_replaced_while_a_record_is_written() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let (j, jv) = two_device_journal();
        // Device 1's writes fail while it is dead (the flag), until the replacement.
        let disks = Arc::new(Mutex::new((
            [vec![0u8; 16 * 512], vec![0u8; 16 * 512]],
            false,
        )));
        let flush = |j: &Journal| {
            let mut buf = Vec::new();
            let Some(job) = j.begin_flush(0, &mut buf) else {
                return false;
            };
            for w in job.writes().to_vec() {
                let ok = {
                    let mut d = disks.lock().unwrap();
                    let ok = w.dev == 0 || !d.1;
                    if ok {
                        let at = w.lba as usize * 512;
                        d.0[w.dev as usize][at..at + w.end - w.start]
                            .copy_from_slice(&buf[w.start..w.end]);
                    }
                    ok
                };
                j.write_done(job.generation, w.dev, ok, &mut Vec::new());
            }
            true
        };
        // Generations 1 (a checkpoint, to both), 2 (device 0) and 3 (device 1 alone), then
        // device 1 is lost: the survivor lacks generation 3 until its next record.
        assert!(flush(&j) && flush(&j) && flush(&j));
        assert_eq!(j.durable_generation(), 3);
        disks.lock().unwrap().1 = true;
        j.device_gone(1);
        let (j2, disks2) = (j.clone(), disks.clone());
        let t = thread::spawn(move || loop {
            let mut d = disks2.lock().unwrap();
            let durable = j2.durable_generation();
            if j2.device_added(1) {
                d.0[1].iter_mut().for_each(|b| *b = 0);
                d.1 = false;
                let newest = newest_over(&d.0).expect("current format");
                let found = newest.record.map_or(0, |r| r.generation);
                assert!(
                    found >= durable,
                    "a restart now finds {found}, {durable} was durable"
                );
                return;
            }
            drop(d);
            thread::yield_now();
        });
        let Mark::Wait(g) = j.mark(&jv, 0) else {
            panic!("a first mark waits");
        };
        j.request(g);
        while j.durable_generation() < g {
            assert!(!j.is_failed(), "device 0 works");
            if !flush(&j) {
                thread::yield_now();
            }
        }
        t.join().unwrap();
        let d = disks.lock().unwrap();
        let newest = newest_over(&d.0).expect("current format");
        assert!(newest.complete);
        let newest = newest.record.expect("a record");
        assert!(newest.generation >= g);
        assert!(newest.entries.iter().any(|e| e.stripe == 0), "{newest:?}");
        j.clean(&jv, 0, 1);
    });
}

/// Mirror mode: a writer marks stripe 0 and flushes until its generation is durable, while
/// another thread drops device 1 (its writes fail from then on) and then records the drop as a
/// runtime does (the member superblocks, here a flag, then `drops_recorded`). Whatever the
/// interleaving, once the writer is released a restart that finds device 1 alone either reads
/// stripe 0 listed there or finds device 1 recorded dropped (and resyncs every stripe): a
/// record only the survivor holds releases its writers only after the drop is recorded.
/// (Control, run by hand: `two_device_journal_in(Mirror, true)`, the journal neither waiting
/// for the record nor asking for it, fails this model.)
#[test]
fn loom_mirror_device_dropped_while_a_record_is_written() {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let (j, jv) = two_device_journal_in(super::aggregator::JournalMode::Mirror, false);
        let disks = Arc::new(Mutex::new([vec![0u8; 16 * 512], vec![0u8; 16 * 512]]));
        let dead = StdArc::new(AtomicBool::new(false));
        // The drops the member superblocks record.
        let sb = StdArc::new(AtomicU8::new(0));
        let flush = |j: &Journal, dead: &AtomicBool| flush_two(j, &disks, dead);
        assert!(flush(&j, &dead));
        let (j2, dead2, sb2) = (j.clone(), dead.clone(), sb.clone());
        let t = thread::spawn(move || {
            dead2.store(true, SeqCst);
            j2.device_gone(1);
            while let Some(m) = j2.drops_to_record(0) {
                sb2.store(m, SeqCst);
                j2.drops_recorded(0, m);
            }
        });
        let Mark::Wait(g) = j.mark(&jv, 0) else {
            panic!("a first mark waits");
        };
        j.request(g);
        while j.durable_generation() < g {
            assert!(!j.is_failed(), "one device is left");
            if !flush(&j, &dead) {
                thread::yield_now();
            }
        }
        // Released: what a restart finding device 1 alone would do now.
        if sb.load(SeqCst) & 0b10 == 0 {
            let d = disks.lock().unwrap();
            let one = record::newest(&d[1][..4096], &d[1][4096..], &[7; 16], 512)
                .expect("current format")
                .expect("a record");
            assert!(
                one.entries.iter().any(|e| e.stripe == 0),
                "released, device 1 not recorded dropped, and it misses the stripe: {one:?}"
            );
        }
        t.join().unwrap();
        j.clean(&jv, 0, 1);
    });
}

#[test]
fn loom_list_ahead_races_a_write_and_removal() {
    list_ahead_model(false);
}

/// Control: a list-ahead that lists a stripe whatever its state finds it listed twice.
#[test]
#[should_panic(expected = "twice")]
fn loom_list_ahead_control_listing_over_anything_fails() {
    list_ahead_model(true);
}

fn list_ahead_model(control: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        // The main thread lists stripes 0 and 1 ahead of a stream, asks for them and keeps
        // flushing (which removes clean stripes); the other thread writes stripe 0. The write
        // is never released unlisted (checked in `write_stripe`), a stripe is never listed
        // twice, and the count of listed entries stays exact.
        let r = rig_list(control);
        let r2 = r.clone();
        let t = thread::spawn(move || write_stripe(&r2, 0));
        if let Some(g) = r.j.list_ahead(&r.jv, 0, 2) {
            r.j.request(g);
        }
        for _ in 0..2 {
            flush_once(&r);
            thread::yield_now();
        }
        t.join().unwrap();
        // Nothing is in flight now: each listed stripe has one state and one entry (a stripe
        // listed twice has two, until both leave).
        let listed = (0..2).filter(|&s| r.jv.listed(s)).count() as u64;
        assert_eq!(
            r.j.listed_count(),
            listed,
            "reserved drifted from the listed set (a stripe listed twice)"
        );
        flush_once(&r);
        let log = r.log.lock().unwrap();
        let (g, newest) = log.last().expect("records written");
        let mut once = newest.clone();
        once.sort_unstable();
        once.dedup();
        assert_eq!(
            once.len(),
            newest.len(),
            "record {g} lists a stripe twice: {newest:?}"
        );
        let listed = (0..2).filter(|&s| r.jv.listed(s)).count() as u64;
        assert_eq!(
            r.j.listed_count(),
            listed,
            "reserved drifted from the listed set (a stripe listed twice)"
        );
        assert_eq!(r.jv.active(0), 0);
    });
}

#[test]
fn loom_a_channel_registering_during_a_flush_has_its_marks_drained() {
    channel_ring_model(false);
}

/// Control: a flusher that reads which channel rings to drain before it closes the generation
/// misses the ring of a channel that registered and marked in between, and releases that
/// channel's write with a record that lacks its stripe.
#[test]
#[should_panic(expected = "missing from record")]
fn loom_channel_ring_control_reading_the_rings_before_the_close_fails() {
    channel_ring_model(true);
}

fn channel_ring_model(control: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        // The other thread registers a channel (its ring is made then) and writes stripe 1
        // through it while the main thread writes stripe 0 without one (the shared ring); both
        // flush when nobody else does. Every write is released by a record listing its stripe
        // (checked in `try_write_stripe_on`), whichever ring its entry went through.
        let r = rig_build(2, false, None, |cfg| {
            cfg.max_channels = 2;
            cfg.control_drain_high_early = control;
        });
        let r2 = r.clone();
        let t = thread::spawn(move || {
            let chan = r2.j.register_channel(crate::engine::Address {
                reactor: 1,
                volume: 0,
            });
            assert!(try_write_stripe_on(&r2, chan, 1, 1, u32::MAX));
        });
        write_stripe(&r, 0);
        t.join().unwrap();
    });
}

/// A value whose two words say whether they belong together (a drain that read a slot before
/// its entry's words were written would see a pair that does not).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Checked(u64);

impl super::sync::Words for Checked {
    fn to_words(self) -> [u64; 2] {
        [self.0, !self.0]
    }
    fn from_words(w: [u64; 2]) -> Self {
        assert_eq!(
            w[1], !w[0],
            "a drained entry's words do not belong together"
        );
        Checked(w[0])
    }
}

#[test]
fn loom_slot_ring_hands_every_entry_over_once_in_order() {
    slot_ring_model(false);
}

/// Control: a producer that publishes an entry before writing its words lets a drain read the
/// slot's old words.
#[test]
#[should_panic(expected = "do not belong together")]
fn loom_slot_ring_control_publishing_before_the_words_fails() {
    slot_ring_model(true);
}

fn slot_ring_model(control: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        // A ring of two slots; the producer pushes three entries (the third reuses a slot a
        // drain gave back) while the main thread drains until it has them all.
        let mut ring = super::sync::SlotRing::<Checked>::new(2);
        ring.control_publish_first = control;
        let ring = Arc::new(ring);
        let r2 = ring.clone();
        let t = thread::spawn(move || {
            for v in 1..=3 {
                while r2.push(Checked(v)).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            ring.drain(|v| got.push(v));
            if got.len() < 3 {
                thread::yield_now();
            }
        }
        t.join().unwrap();
        assert_eq!(got, [Checked(1), Checked(2), Checked(3)]);
    });
}
