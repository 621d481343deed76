//! XOR parity throughput against memcpy of the same number of bytes.
//!
//! Each `xor_into` case reads `k` sources of 64 KiB; its memcpy twin copies `k * 64 KiB`, so the
//! GiB/s figures (throughput counted as bytes read) can be compared directly.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jraid::parity::xor_into;

/// Bytes per source strip.
const STRIP: usize = 64 << 10;

/// Deterministic non-zero filler so no buffer is a page of zeros.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn bench_parity(c: &mut Criterion) {
    let mut g = c.benchmark_group("parity");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for k in [4usize, 8] {
        let bytes = k * STRIP;
        g.throughput(Throughput::Bytes(bytes as u64));

        let bufs: Vec<Vec<u8>> = (0..k).map(|i| pattern(STRIP, i as u8)).collect();
        let srcs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        let mut dst = vec![0u8; STRIP];
        g.bench_function(BenchmarkId::new("xor_into", format!("{k}x64KiB")), |b| {
            b.iter(|| xor_into(black_box(&mut dst[..]), black_box(&srcs[..])))
        });

        let src = pattern(bytes, 7);
        let mut big = vec![0u8; bytes];
        g.bench_function(BenchmarkId::new("memcpy", format!("{k}x64KiB")), |b| {
            b.iter(|| black_box(&mut big[..]).copy_from_slice(black_box(&src[..])))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_parity);
criterion_main!(benches);
