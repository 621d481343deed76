//! XOR parity kernels for RAID-5.
//!
//! Everything here is safe Rust written so that LLVM auto-vectorises it: the bulk of each buffer is
//! viewed as 64-byte chunks, each chunk is loaded into eight `u64` lanes, XORed lane-wise and
//! stored back. Bytes past the last whole chunk (the tail) are handled one at a time. No alignment
//! is assumed anywhere: `u64::from_ne_bytes` on a fixed array compiles to an unaligned load.
//!
//! `xor_into` with many sources works on one cache-friendly block of `dst` at a time and, inside
//! that block, folds the sources in at up to four per pass, so the partial result is read and
//! written once per four sources while it is hot in L1 instead of once per source.
//!
//! [`choice`] decides, from rounds of timing, between these kernels and a runtime's own (ISA-L's
//! under SPDK).

pub mod choice;

/// Bytes per chunk: one cache line, eight `u64` lanes.
const CHUNK: usize = 64;
/// Words per chunk.
const LANES: usize = CHUNK / 8;
/// Bytes of `dst` finished by `xor_into` before moving on; a multiple of `CHUNK`, small enough that
/// the block of `dst` plus one chunk per source stays in L1.
const BLOCK: usize = 4096;
/// Sources folded in per pass over a block.
const GROUP: usize = 4;

/// Computes `dst = srcs[0] ^ srcs[1] ^ ...`.
///
/// Intended for 1..=32 sources (a stripe's members); any count works, and with no sources `dst`
/// is zeroed (the XOR of nothing). Every source must be exactly `dst.len()` bytes long; any
/// alignment and any length, including zero, is accepted.
///
/// # Panics
///
/// If a source's length differs from `dst.len()` (a programming error).
pub fn xor_into(dst: &mut [u8], srcs: &[&[u8]]) {
    check_lengths("xor_into", dst.len(), srcs);
    let Some((first, rest)) = srcs.split_first() else {
        dst.fill(0);
        return;
    };
    if rest.is_empty() {
        // One source: plain copy; memcpy is faster than anything we would write.
        dst.copy_from_slice(first);
        return;
    }
    fold_blocks(dst, srcs, true);
}

/// Computes `dst ^= srcs[0] ^ srcs[1] ^ ...` in place (one pass over every buffer; with no
/// source `dst` stays as it is). Every source must be exactly `dst.len()` bytes long.
///
/// # Panics
///
/// If a source's length differs from `dst.len()` (a programming error).
pub fn xor_acc_all(dst: &mut [u8], srcs: &[&[u8]]) {
    check_lengths("xor_acc_all", dst.len(), srcs);
    if srcs.is_empty() {
        return;
    }
    fold_blocks(dst, srcs, false);
}

/// Panics, naming `what`, unless every source is `len` bytes long.
fn check_lengths(what: &str, len: usize, srcs: &[&[u8]]) {
    for (i, s) in srcs.iter().enumerate() {
        assert!(
            s.len() == len,
            "{what}: source {i} is {} bytes, dst is {len}",
            s.len()
        );
    }
}

/// `dst = xor(srcs)` (`overwrite`) or `dst ^= xor(srcs)`, block by block.
fn fold_blocks(dst: &mut [u8], srcs: &[&[u8]], overwrite: bool) {
    for (b, dblk) in dst.chunks_mut(BLOCK).enumerate() {
        let range = b * BLOCK..b * BLOCK + dblk.len();
        let mut groups = srcs.chunks(GROUP);
        // With `overwrite` the first group overwrites the block, so dst's old contents are
        // never read.
        if let Some(g) = groups.next() {
            fold_group(dblk, g, &range, overwrite);
        }
        // Later groups accumulate into the block while it is still in L1.
        for g in groups {
            fold_group(dblk, g, &range, false);
        }
    }
}

/// Computes `dst ^= src`.
///
/// # Panics
///
/// If `src.len() != dst.len()` (a programming error).
pub fn xor_acc(dst: &mut [u8], src: &[u8]) {
    assert!(
        src.len() == dst.len(),
        "xor_acc: src is {} bytes, dst is {}",
        src.len(),
        dst.len()
    );
    fold(dst, [src], false);
}

/// Incremental RAID-5 update of a parity strip after a data strip changed from `old` to `new`:
/// `parity ^= old ^ new`, in a single pass over the three buffers.
///
/// # Panics
///
/// If `old` or `new` is not `parity.len()` bytes long (a programming error).
pub fn update(parity: &mut [u8], old: &[u8], new: &[u8]) {
    assert!(
        old.len() == parity.len() && new.len() == parity.len(),
        "parity::update: old is {} bytes, new is {}, parity is {}",
        old.len(),
        new.len(),
        parity.len()
    );
    fold(parity, [old, new], false);
}

/// Folds one group of 1..=`GROUP` sources, restricted to `range`, into `dblk`; `overwrite` makes
/// it `dblk = xor(group)` instead of `dblk ^= xor(group)`.
fn fold_group(dblk: &mut [u8], g: &[&[u8]], range: &core::ops::Range<usize>, overwrite: bool) {
    let r = |i: usize| &g[i][range.clone()];
    // Dispatch on the group size so each kernel has a fixed source count the compiler can unroll.
    match g.len() {
        1 => fold(dblk, [r(0)], overwrite),
        2 => fold(dblk, [r(0), r(1)], overwrite),
        3 => fold(dblk, [r(0), r(1), r(2)], overwrite),
        4 => fold(dblk, [r(0), r(1), r(2), r(3)], overwrite),
        n => unreachable!("group of {n} sources"),
    }
}

/// The kernel: `dst = xor(srcs)` if `overwrite`, else `dst ^= xor(srcs)`. All slices must be
/// `dst.len()` bytes (checked by the callers).
#[inline(always)]
fn fold<const N: usize>(dst: &mut [u8], srcs: [&[u8]; N], overwrite: bool) {
    let (dchunks, dtail) = dst.as_chunks_mut::<CHUNK>();
    let n = dchunks.len();
    // Re-slice every source to exactly `n` chunks so the indexing below needs no bounds checks.
    let schunks: [&[[u8; CHUNK]]; N] = srcs.map(|s| &s.as_chunks::<CHUNK>().0[..n]);
    for (i, d) in dchunks.iter_mut().enumerate() {
        let mut acc = if overwrite { [0; LANES] } else { load(d) };
        for s in &schunks {
            let w = load(&s[i]);
            for (a, w) in acc.iter_mut().zip(w) {
                *a ^= w;
            }
        }
        store(d, &acc);
    }
    // Tail: the last < 64 bytes, byte by byte.
    let base = n * CHUNK;
    for (j, d) in dtail.iter_mut().enumerate() {
        let mut x = if overwrite { 0 } else { *d };
        for s in &srcs {
            x ^= s[base + j];
        }
        *d = x;
    }
}

/// Loads a chunk as eight native-endian words (an unaligned load once optimised).
#[inline(always)]
fn load(c: &[u8; CHUNK]) -> [u64; LANES] {
    core::array::from_fn(|k| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&c[k * 8..k * 8 + 8]);
        u64::from_ne_bytes(w)
    })
}

/// Stores eight native-endian words into a chunk.
#[inline(always)]
fn store(c: &mut [u8; CHUNK], words: &[u64; LANES]) {
    for (k, w) in words.iter().enumerate() {
        c[k * 8..k * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic filler (splitmix64), so large buffers come from a single proptest seed.
    fn fill(buf: &mut [u8], mut seed: u64) {
        for b in buf.chunks_mut(8) {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            b.copy_from_slice(&z.to_le_bytes()[..b.len()]);
        }
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0; len];
        fill(&mut v, seed);
        v
    }

    /// Byte-wise reference for `xor_into`.
    fn naive_xor(len: usize, srcs: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for s in srcs {
            for (o, b) in out.iter_mut().zip(s.iter()) {
                *o ^= *b;
            }
        }
        out
    }

    /// Builds `k` sources of `len` bytes at offset `off` inside larger random buffers, plus a
    /// garbage-filled destination buffer with its own offset; checks `xor_into` against the
    /// reference and that bytes around `dst` are untouched.
    fn check_xor_into(len: usize, k: usize, off: usize, doff: usize, seed: u64) {
        let bufs: Vec<Vec<u8>> = (0..k)
            .map(|i| random(len + off + 7, seed ^ ((i as u64 + 1) * 0x1234_5678)))
            .collect();
        let srcs: Vec<&[u8]> = bufs.iter().map(|b| &b[off..off + len]).collect();
        let mut dbuf = random(len + doff + 5, !seed);
        let before = dbuf.clone();
        xor_into(&mut dbuf[doff..doff + len], &srcs);
        assert_eq!(&dbuf[doff..doff + len], &naive_xor(len, &srcs)[..]);
        assert_eq!(&dbuf[..doff], &before[..doff]);
        assert_eq!(&dbuf[doff + len..], &before[doff + len..]);
    }

    #[test]
    fn xor_into_edge_sizes() {
        // Around chunk (64) and block (4096) boundaries, and every source-group remainder.
        const LENS: [usize; 14] = [
            0, 1, 7, 8, 63, 64, 65, 127, 128, 4095, 4096, 4097, 8191, 8255,
        ];
        for len in LENS {
            for k in [1, 2, 3, 4, 5, 7, 8, 9, 31, 32] {
                check_xor_into(len, k, 3, 5, len as u64 * 31 + k as u64);
            }
        }
    }

    #[test]
    fn xor_acc_all_folds_into_what_dst_held() {
        for len in [0, 1, 63, 64, 4096, 4097, 8255] {
            for k in [0, 1, 2, 3, 7, 8, 9, 33] {
                let bufs: Vec<Vec<u8>> = (0..k).map(|i| random(len, 1000 + i as u64)).collect();
                let srcs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
                let start = random(len, 5);
                let mut d = start.clone();
                xor_acc_all(&mut d, &srcs);
                let mut all = srcs.clone();
                all.push(&start);
                assert_eq!(d, naive_xor(len, &all), "len {len} sources {k}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "xor_acc_all")]
    fn xor_acc_all_length_mismatch_panics() {
        xor_acc_all(&mut [0u8; 10], &[&[0u8; 10], &[0u8; 9]]);
    }

    #[test]
    fn xor_into_no_sources_zeroes() {
        let mut d = vec![0xAA; 100];
        xor_into(&mut d, &[]);
        assert!(d.iter().all(|&b| b == 0));
    }

    #[test]
    fn xor_into_more_than_32_sources() {
        check_xor_into(1000, 40, 1, 2, 99);
    }

    #[test]
    fn xor_of_self_pair_is_zero() {
        let a = random(5000, 1);
        let mut d = vec![1; 5000];
        xor_into(&mut d, &[&a, &a]);
        assert!(d.iter().all(|&b| b == 0));
    }

    #[test]
    #[should_panic(expected = "xor_into")]
    fn xor_into_length_mismatch_panics() {
        let mut d = [0u8; 10];
        xor_into(&mut d, &[&[0u8; 10], &[0u8; 9]]);
    }

    #[test]
    #[should_panic(expected = "xor_acc")]
    fn xor_acc_length_mismatch_panics() {
        xor_acc(&mut [0u8; 10], &[0u8; 11]);
    }

    #[test]
    #[should_panic(expected = "update")]
    fn update_length_mismatch_panics() {
        update(&mut [0u8; 10], &[0u8; 10], &[0u8; 9]);
    }

    #[test]
    fn update_keeps_parity_consistent() {
        // Parity of 4 data strips; rewrite strip 2 incrementally and compare to a full recompute.
        let len = 4096 + 17;
        let mut data: Vec<Vec<u8>> = (0..4).map(|i| random(len, i)).collect();
        let mut parity = vec![0; len];
        let refs: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        xor_into(&mut parity, &refs);
        let new = random(len, 77);
        update(&mut parity, &data[2], &new);
        data[2] = new;
        let refs: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        assert_eq!(parity, naive_xor(len, &refs));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn prop_xor_into(
            len in 0usize..=70_000,
            k in 1usize..=32,
            off in 0usize..64,
            doff in 0usize..64,
            seed in any::<u64>(),
        ) {
            check_xor_into(len, k, off, doff, seed);
        }

        #[test]
        fn prop_xor_acc(
            len in 0usize..=70_000,
            off in 0usize..64,
            doff in 0usize..64,
            seed in any::<u64>(),
        ) {
            let sbuf = random(len + off, seed);
            let src = &sbuf[off..];
            let mut dbuf = random(len + doff + 3, !seed);
            let mut want = dbuf.clone();
            for (w, s) in want[doff..doff + len].iter_mut().zip(src) {
                *w ^= *s;
            }
            xor_acc(&mut dbuf[doff..doff + len], src);
            prop_assert_eq!(dbuf, want);
        }

        #[test]
        fn prop_update(
            len in 0usize..=70_000,
            offs in (0usize..64, 0usize..64, 0usize..64),
            seed in any::<u64>(),
        ) {
            let (po, oo, no) = offs;
            let obuf = random(len + oo, seed);
            let nbuf = random(len + no, seed.rotate_left(17));
            let (old, new) = (&obuf[oo..], &nbuf[no..]);
            let mut pbuf = random(len + po + 2, !seed);
            let mut want = pbuf.clone();
            for ((p, o), n) in want[po..po + len].iter_mut().zip(old).zip(new) {
                *p ^= *o ^ *n;
            }
            update(&mut pbuf[po..po + len], old, new);
            prop_assert_eq!(pbuf, want);
        }
    }
}
