//! Engine simulation over a seed range: `cargo run --release --example sim -- --seeds 2000
//! [--seed-base B] [--rebuild]`; replay one with `--seed S`. `--rebuild`: a member lost, rebuilt
//! onto a replacement under load, sometimes with a power loss in the middle.

use jraid::sim::cli::SeedArgs;
use jraid::sim::workload::{io_check, rebuild_check};

fn main() {
    let args = match SeedArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sim: {e}\nusage: sim [--seeds N] [--seed-base B] [--seed S]");
            std::process::exit(2);
        }
    };
    let rebuild = args.rest.iter().any(|a| a == "--rebuild");
    if let Some(bad) = args.rest.iter().find(|a| *a != "--rebuild") {
        eprintln!("sim: unknown argument {bad}");
        std::process::exit(2);
    }
    let start = std::time::Instant::now();
    let mut failed = 0u64;
    let (mut writes, mut records, mut merged) = (0u64, 0u64, 0u64);
    for seed in args.base..args.base + args.count {
        let out = if rebuild {
            rebuild_check(seed)
        } else {
            io_check(seed)
        };
        writes += out.writes;
        records += out.record_writes;
        merged += out.merged_writes;
        if !out.clean() {
            failed += 1;
            println!("seed {seed} FAILED: {out:?}");
            let flag = if rebuild { " --rebuild" } else { "" };
            println!("  replay: cargo run --release --example sim -- --seed {seed}{flag}");
        }
    }
    println!(
        "seeds={} failed={} user_writes={} record_writes={} merged_writes={} elapsed={:.1}s",
        args.count,
        failed,
        writes,
        records,
        merged,
        start.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
