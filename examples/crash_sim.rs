//! Crash simulation: `cargo run --release --example crash_sim -- --seeds N [--seed-base B]
//! [--no-journal]`. Per seed: volumes sharing a journal, a random concurrent workload, power loss
//! at a random instant, recovery, one member of every volume lost, then every acknowledged write
//! read back and every stripe's parity checked. Last line: `seeds=N lost_acked=X
//! inconsistent_stripes=Y`; exits non-zero when X or Y is above zero.

use jraid::sim::cli::SeedArgs;
use jraid::sim::workload::crash_check;

fn main() {
    let args = match SeedArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crash_sim: {e}\nusage: crash_sim [--seeds N] [--seed-base B] [--seed S] [--no-journal]");
            std::process::exit(2);
        }
    };
    let mut journal = true;
    let mut verbose = false;
    for flag in &args.rest {
        match flag.as_str() {
            "--no-journal" => journal = false,
            "-v" | "--verbose" => verbose = true,
            other => {
                eprintln!("crash_sim: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let start = std::time::Instant::now();
    let (mut lost, mut inconsistent, mut failed_seeds, mut other) = (0u64, 0u64, 0u64, 0u64);
    let (mut writes, mut records, mut full) = (0u64, 0u64, 0u64);
    for seed in args.base..args.base + args.count {
        let out = crash_check(seed, journal);
        lost += out.lost_acked;
        inconsistent += out.inconsistent_stripes;
        other += out.failed_requests + out.bad_reads;
        writes += out.writes;
        records += out.record_writes;
        full += out.full_marks;
        if !out.clean() {
            failed_seeds += 1;
            if verbose || failed_seeds <= 5 {
                println!(
                    "seed {seed}: lost_acked={} inconsistent_stripes={} failed_requests={} bad_reads={} {:?}",
                    out.lost_acked, out.inconsistent_stripes, out.failed_requests, out.bad_reads, out.notes
                );
                let nj = if journal { "" } else { " --no-journal" };
                println!("  replay: cargo run --release --example crash_sim -- --seed {seed}{nj}");
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
        "journal={} failed_seeds={failed_seeds} other_errors={other} user_writes={writes} \
         record_writes={records} full_record_waits={full} elapsed={:.1}s",
        if journal { "on" } else { "off" },
        start.elapsed().as_secs_f64()
    );
    println!(
        "seeds={} lost_acked={lost} inconsistent_stripes={inconsistent}",
        args.count
    );
    if lost > 0 || inconsistent > 0 || other > 0 {
        std::process::exit(1);
    }
}
