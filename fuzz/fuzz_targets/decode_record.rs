//! Fuzzes the journal record decoder and the chain reader.
//!
//! Input: the first byte picks the area (bit 0) and where to split the rest into two areas for
//! `newest` (the other bits); the rest is the area image. Decoding must never panic; whatever
//! decodes must re-encode to the same meaningful bytes; reading the chains must never panic,
//! and `newest` must return the chain reaching the highest generation.
#![no_main]

use jraid::journal::record::{decode, encode, newest, read_area, version_at, RECORD_VERSION};
use libfuzzer_sys::fuzz_target;

const UUID: [u8; 16] = *b"jraid-fuzz-uuid!";

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let area = usize::from(first & 1);

    if let Ok(d) = decode(rest, area, &UUID) {
        assert_eq!(d.header.area, area);
        let meaningful = d.meaningful_bytes();
        assert!(meaningful <= rest.len());
        let mut out = Vec::new();
        for block_size in [512, 4096] {
            encode(
                &UUID,
                &d.header,
                d.adds.iter().copied(),
                d.removes.iter().copied(),
                block_size,
                &mut out,
            );
            assert_eq!(&out[..meaningful], &rest[..meaningful]);
            assert!(out[meaningful..].iter().all(|&b| b == 0));
            assert_eq!(decode(&out, area, &UUID).as_ref(), Ok(&d));
        }
    }
    for block_size in [512, 4096] {
        if let Some(r) = read_area(rest, area, &UUID, block_size) {
            assert!(r.generation >= r.base);
            assert!(r.records >= 1 && r.bytes as usize <= rest.len());
            assert!(r.entries.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        }
    }

    // Split the rest into two areas; the split point comes from the first byte's upper bits.
    let split = usize::from(first >> 1) * rest.len() / 127;
    let (a0, a1) = rest.split_at(split.min(rest.len()));
    let old = [a0, a1]
        .iter()
        .any(|a| version_at(a, &UUID).is_some_and(|v| v != RECORD_VERSION));
    match newest(a0, a1, &UUID, 512) {
        Err(_) => assert!(old),
        Ok(got) => {
            assert!(!old);
            let want = match (read_area(a0, 0, &UUID, 512), read_area(a1, 1, &UUID, 512)) {
                (Some(a), Some(b)) => Some(if a.generation > b.generation { a } else { b }),
                (a, b) => a.or(b),
            };
            assert_eq!(got, want);
        }
    }
});
