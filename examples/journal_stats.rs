//! Journal record writes per user write, in the simulator: random 4 KiB writes at QD 1, 32 and
//! 128, over a small hot set and over the whole volume. `cargo run --release --example
//! journal_stats [-- --ops N]`.

use std::sync::atomic::Ordering::Relaxed;

use jraid::layout::Geometry;
use jraid::sim::workload::{Driver, Workload};
use jraid::sim::{Rng, SimConfig, SimJournal, World};

fn main() {
    let mut ops = 20_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--ops", Some(v)) => ops = v.parse().expect("--ops N"),
            _ => {
                eprintln!("usage: journal_stats [--ops N]");
                std::process::exit(2);
            }
        }
    }
    // 5 members, 64 KiB strips, 4 KiB blocks, 4,096 stripes (1 GiB of data).
    let stripes = 4096u64;
    let geo = Geometry::new(5, 65536, 4096, 256 + stripes * 16).expect("geometry");
    println!("| set | QD | user writes | record writes | records per write | fast-path share |");
    println!("|---|---|---|---|---|---|");
    for (name, hot) in [("hot set (8 stripes)", Some(8)), ("whole volume", None)] {
        for qd in [1usize, 32, 128] {
            let cfg = SimConfig {
                seed: 42,
                reactors: 2,
                volumes: vec![(0, geo)],
                member_volatile: false,
                journal: Some(SimJournal {
                    uuid: [1; 16],
                    block_size: 4096,
                    slot_bytes: 1 << 20,
                    devices: 1,
                    mode: jraid::journal::JournalMode::Alternate,
                    volatile: false,
                    hysteresis_us: 100_000,
                    first_hysteresis_us: 2_000,
                    first_short: true,
                    roomy_hysteresis_us: 0,
                    hysteresis_generations: 2,
                    control_replace_early: false,
                    control_no_drop_record: false,
                    on_members: false,
                    list_ahead: 0,
                }),
                max_latency_us: 20,
                error_rate: 0.0,
                tick_us: 1000,
                record_failures: true,
                writes_before_durable: false,
            };
            let mut d = Driver::new(World::new(cfg), Rng::new(qd as u64));
            let w = Workload {
                ops,
                qd,
                read_fraction: 0.0,
                hot_stripes: hot,
                single_block: true,
                background: false,
            };
            d.run(&w, None, |_, _| {});
            assert!(d.out.clean(), "{:?}", d.out);
            let j = d.world.journal.as_ref().expect("journal");
            let records = j.stats.record_writes.load(Relaxed);
            let (marks, fast) = (j.stats.marks.load(Relaxed), j.stats.fast_path.load(Relaxed));
            println!(
                "| {name} | {qd} | {} | {records} | {:.4} | {:.1}% |",
                d.out.writes,
                records as f64 / d.out.writes as f64,
                100.0 * fast as f64 / marks.max(1) as f64
            );
        }
    }
}
