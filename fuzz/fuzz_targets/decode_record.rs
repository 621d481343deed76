//! Fuzzes the dirty-stripe record decoder.
//!
//! Input: the first byte picks the slot (bit 0) and where to split the rest into two slots for
//! `newest` (the other bits); the rest is the slot image. Decoding must never panic, and
//! whatever decodes must re-encode to the same meaningful bytes (header and entries).
#![no_main]

use jraid::journal::record::{decode, encode, newest, ENTRY_BYTES, HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

const UUID: [u8; 16] = *b"jraid-fuzz-uuid!";

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let slot = usize::from(first & 1);

    let decoded = decode(rest, slot, &UUID);
    if let Ok(rec) = &decoded {
        assert_eq!(rec.generation % 2, slot as u64);
        let meaningful = HEADER_BYTES + rec.entries.len() * ENTRY_BYTES;
        assert!(meaningful <= rest.len());
        let mut out = Vec::new();
        for block_size in [512, 4096] {
            encode(&UUID, rec.generation, &rec.entries, block_size, &mut out);
            assert_eq!(&out[..meaningful], &rest[..meaningful]);
            assert!(out[meaningful..].iter().all(|&b| b == 0));
            assert_eq!(decode(&out, slot, &UUID).as_ref(), Ok(rec));
        }
    }

    // Split the rest into two slots; the split point comes from the first byte's upper bits.
    let split = usize::from(first >> 1) * rest.len() / 127;
    let (s0, s1) = rest.split_at(split.min(rest.len()));
    let a = decode(s0, 0, &UUID).ok();
    let b = decode(s1, 1, &UUID).ok();
    let want = match (a, b) {
        (Some(a), Some(b)) => Some(if a.generation > b.generation { a } else { b }),
        (a, b) => a.or(b),
    };
    assert_eq!(newest(s0, s1, &UUID), want);
});
