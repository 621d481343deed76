//! Mark aggregation throughput: marks (mark + clean) per second from 1 and 2 threads, on the
//! fast path (stripes already listed in a durable record) and with group commit (fresh stripes,
//! one record per generation). `cargo bench --bench aggregator`.
//!
//! Also `hot_set/N`: mark + clean of random stripes of a hot set of N, all listed, on a volume
//! of 2^26 stripes (terabyte members), from one thread: the state look-up's cost as the hot set
//! outgrows the caches (a layout of the state table must not make a large hot set pay).
//!
//! Also `recovery/largest_journal`: reading the newest state of the largest journal jraid formats
//! (two 16 MiB areas, each a checkpoint of the most stripes that may be listed followed by full
//! one-block deltas up to the area's end), as every start-up does after reading the areas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jraid::journal::{Journal, JournalConfig, JournalVolume, Mark};

const STRIPES: u64 = 1 << 16;

/// A journal whose clean stripes stay listed (`keep`) or leave at the next record.
fn journal(keep: bool) -> (Arc<Journal>, Arc<JournalVolume>) {
    let mut cfg = JournalConfig::new([3; 16], 4096, 1 << 20, [(0, 16), (0, 16 + 256)]);
    if keep {
        cfg.hysteresis_us = u64::MAX / 4;
        cfg.first_hysteresis_us = u64::MAX / 4;
    } else {
        cfg.hysteresis_us = 0;
        cfg.hysteresis_generations = 0;
    }
    let j = Arc::new(Journal::new(cfg, None));
    let (jv, _) = j.attach_volume(0, STRIPES, false);
    (j, jv)
}

/// List every stripe in a durable record, so later marks take the fast path.
fn list_all(j: &Journal, jv: &JournalVolume, stripes: std::ops::Range<u64>) {
    let mut buf = Vec::new();
    for s in stripes.clone() {
        assert!(matches!(j.mark(jv, s), Mark::Wait(_)));
    }
    let job = j.begin_flush(0, &mut buf).unwrap();
    j.finish_flush(job.generation, &mut Vec::new());
    for s in stripes {
        j.clean(jv, s, 0);
    }
}

/// `threads` threads doing `per_thread` mark+clean pairs each on their own stripes.
fn fast_path(threads: u64, per_thread: u64) -> Duration {
    let (j, jv) = journal(true);
    let span = STRIPES / 4 / threads;
    list_all(&j, &jv, 0..span * threads);
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (j, jv) = (j.clone(), jv.clone());
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let s = t * span + i % span;
                    assert_eq!(black_box(j.mark(&jv, s)), Mark::Ready);
                    j.clean(&jv, s, 1);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

/// Stripes not listed: every mark joins the open generation; each thread flushes when it has 64
/// waiting marks (group commit), as channels do; clean stripes leave at the next record.
fn group_commit(threads: u64, per_thread: u64) -> Duration {
    let (j, jv) = journal(false);
    let span = STRIPES / threads;
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (j, jv) = (j.clone(), jv.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut pending = Vec::with_capacity(64);
                for i in 0..per_thread {
                    let s = t * span + i % span;
                    match j.mark(&jv, s) {
                        Mark::Ready => {
                            j.clean(&jv, s, 0);
                        }
                        // A 1 MiB slot holds 87k entries, more than the bench's stripes.
                        Mark::Full => unreachable!("slot holds every stripe of the bench"),
                        Mark::Wait(g) => {
                            j.request(g);
                            pending.push((s, g));
                        }
                    }
                    if pending.len() == 64 {
                        let g = pending.last().unwrap().1;
                        while j.durable_generation() < g {
                            if let Some(job) = j.begin_flush(1, &mut buf) {
                                j.finish_flush(job.generation, &mut Vec::new());
                            }
                        }
                        for (s, _) in pending.drain(..) {
                            j.clean(&jv, s, 0);
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

/// `iters` mark+clean pairs on random stripes of a hot set of `hot`, all listed and durable, on
/// a volume of 2^26 stripes and a journal of 4 MiB areas (~173k entries: the default's room).
fn hot_set(hot: u64, iters: u64) -> Duration {
    const BIG: u64 = 1 << 26;
    let slot = 4u64 << 20;
    let mut cfg = JournalConfig::new([3; 16], 4096, slot, [(0, 16), (0, 16 + slot / 4096)]);
    cfg.hysteresis_us = u64::MAX / 4;
    cfg.first_hysteresis_us = u64::MAX / 4;
    let j = Journal::new(cfg, None);
    let (jv, _) = j.attach_volume(0, BIG, false);
    // Spread over the volume by an odd multiplier (a bijection modulo 2^26).
    let stripe = |i: u64| i.wrapping_mul(0x2545_F491) % BIG;
    let mut buf = Vec::new();
    for i in 0..hot {
        assert!(matches!(j.mark(&jv, stripe(i)), Mark::Wait(_)));
    }
    let job = j.begin_flush(0, &mut buf).unwrap();
    j.finish_flush(job.generation, &mut Vec::new());
    for i in 0..hot {
        j.clean(&jv, stripe(i), 0);
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let start = Instant::now();
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = stripe(x % hot);
        assert_eq!(black_box(j.mark(&jv, s)), Mark::Ready);
        j.clean(&jv, s, 1);
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("marks");
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    for threads in [1u64, 2] {
        g.throughput(Throughput::Elements(threads));
        g.bench_function(format!("fast_path/{threads}_threads"), |b| {
            b.iter_custom(|iters| fast_path(threads, iters))
        });
        g.bench_function(format!("group_commit/{threads}_threads"), |b| {
            b.iter_custom(|iters| group_commit(threads, iters))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("hot_set");
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    g.throughput(Throughput::Elements(1));
    for hot in [1_000u64, 40_000, 150_000] {
        g.bench_function(format!("{hot}"), |b| {
            b.iter_custom(|iters| hot_set(hot, iters))
        });
    }
    g.finish();
}

/// Two full 16 MiB areas in their worst case for recovery: the largest checkpoint, then deltas
/// of 336 entries (one 4 KiB block each, half additions, half removals) up to the end.
fn largest_journal() -> (Vec<u8>, Vec<u8>) {
    use jraid::journal::record::{self, Entry, Header, Kind};
    const SLOT: usize = 16 << 20;
    const BS: usize = 4096;
    let area = |k: usize, g0: u64| {
        let mut buf = Vec::with_capacity(SLOT);
        let mut out = Vec::new();
        let n = record::max_listed(SLOT) as u64;
        let e = |i: u64| Entry {
            volume: (i % 3) as u32,
            stripe: i * 7,
        };
        let h = Header {
            kind: Kind::Checkpoint,
            generation: g0,
            base: g0,
            area: k,
        };
        record::encode(
            &[5; 16],
            &h,
            (0..n as u32).map(|i| e(u64::from(i))),
            [],
            BS,
            &mut out,
        );
        buf.extend_from_slice(&out);
        let mut g = g0;
        let mut next = n;
        while buf.len() + BS <= SLOT {
            g += 1;
            let h = Header {
                kind: Kind::Delta,
                generation: g,
                base: g0,
                area: k,
            };
            let adds = (0..168u32).map(|i| e(next + u64::from(i)));
            let removes = (0..168u32).map(|i| e(next - n + u64::from(i)));
            record::encode(&[5; 16], &h, adds, removes, BS, &mut out);
            assert_eq!(out.len(), BS);
            buf.extend_from_slice(&out);
            next += 168;
        }
        buf.resize(SLOT, 0);
        buf
    };
    (area(0, 1_000_000), area(1, 10))
}

fn recovery(c: &mut Criterion) {
    let (a0, a1) = largest_journal();
    let mut g = c.benchmark_group("recovery");
    g.measurement_time(Duration::from_secs(5)).sample_size(10);
    g.bench_function("largest_journal", |b| {
        b.iter(|| {
            let r = jraid::journal::record::newest(&a0, &a1, &[5; 16], 4096)
                .unwrap()
                .unwrap();
            black_box(r.entries.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench, recovery);
criterion_main!(benches);
