//! Per-stripe planning: which strips a request touches, and how a stripe write gets its parity.

use crate::layout::Geometry;

/// Most members a volume can have.
pub const MAX_MEMBERS: usize = crate::layout::MAX_MEMBERS as usize;

/// The part of one stripe a request touches: a range of stripe-relative data blocks, with the
/// union row range of the strips it touches. Small and copied freely (it lives in every piece);
/// each strip's range is computed when asked for ([`StripeSpan::range`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StripeSpan {
    /// First stripe-relative data block.
    start: u64,
    /// End of the data blocks (exclusive), at most the stripe's data blocks.
    end: u64,
    /// Blocks per strip.
    strip: u64,
    /// Union row range over all touched strips.
    pub lo: u64,
    /// End of the union row range.
    pub hi: u64,
}

impl StripeSpan {
    /// Span of the stripe-relative data blocks `[start, start + len)`.
    pub fn new(geo: &Geometry, start: u64, len: u64) -> StripeSpan {
        let s = geo.strip_blocks;
        let end = (start + len).min(geo.data_members() as u64 * s);
        let (lo, hi) = if start >= end {
            (u64::MAX, 0)
        } else if start / s == (end - 1) / s {
            // One strip: its own range.
            let base = start / s * s;
            (start - base, end - base)
        } else {
            // Two or more strips: the first runs to the strip's end, the last from its start.
            (0, s)
        };
        StripeSpan {
            start,
            end,
            strip: s,
            lo,
            hi,
        }
    }

    /// Data index `i`'s touched block range inside its strip, `[a, b)`; `(0, 0)` when untouched.
    pub fn range(&self, i: usize) -> (u64, u64) {
        let (strip_a, strip_b) = (i as u64 * self.strip, (i as u64 + 1) * self.strip);
        let a = self.start.max(strip_a);
        let b = self.end.min(strip_b);
        if a < b {
            (a - strip_a, b - strip_a)
        } else {
            (0, 0)
        }
    }

    /// Whether data index `i` is touched.
    pub fn touched(&self, i: usize) -> bool {
        let r = self.range(i);
        r.0 < r.1
    }

    /// Whether data index `i` is written over the whole row range.
    pub fn covers_rows(&self, i: usize) -> bool {
        self.range(i) == (self.lo, self.hi)
    }

    /// Rows in the union range.
    pub fn rows(&self) -> u64 {
        self.hi - self.lo
    }
}

/// How a stripe write computes its parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePlan {
    /// Every data strip written over the rows: parity from the new data, no reads.
    FullStripe,
    /// Read the untouched data over the rows, parity from all data.
    ReconstructWrite,
    /// Read old data of the touched strips and old parity; parity ^= old ^ new.
    ReadModifyWrite,
    /// The parity member is missing: write the data only.
    DataOnly,
    /// A data member is missing: read every survivor, rebuild the missing strip, parity from all.
    Degraded,
}

/// Choose the plan with the fewest member reads.
pub fn choose(geo: &Geometry, stripe: u64, span: &StripeSpan, failed: Option<u32>) -> WritePlan {
    if let Some(f) = failed {
        if f == geo.parity_member(stripe) {
            return WritePlan::DataOnly;
        }
        return WritePlan::Degraded;
    }
    let d = geo.data_members() as usize;
    let touched = (0..d).filter(|&i| span.touched(i)).count();
    let rcw_reads = (0..d).filter(|&i| !span.covers_rows(i)).count();
    let rmw_reads = touched + 1;
    if rcw_reads == 0 {
        WritePlan::FullStripe
    } else if rcw_reads <= rmw_reads {
        WritePlan::ReconstructWrite
    } else {
        WritePlan::ReadModifyWrite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(n: u32) -> Geometry {
        Geometry::new(n, 4096 * 4, 4096, 256 + 4 * 100).unwrap()
    }

    #[test]
    fn spans() {
        let g = geo(4); // 3 data strips of 4 blocks
        let s = StripeSpan::new(&g, 3, 2);
        assert_eq!(s.range(0), (3, 4));
        assert_eq!(s.range(1), (0, 1));
        assert!(!s.touched(2));
        assert_eq!((s.lo, s.hi), (0, 4));
    }

    /// Every span of a small geometry against a block-by-block count.
    #[test]
    fn spans_match_blocks() {
        for n in [3, 4, 5] {
            let g = geo(n);
            let (s, d) = (g.strip_blocks, g.data_members() as u64);
            for start in 0..d * s {
                for len in 1..=d * s - start {
                    let span = StripeSpan::new(&g, start, len);
                    let (mut lo, mut hi) = (u64::MAX, 0);
                    for i in 0..d {
                        let rows: Vec<u64> = (start..start + len)
                            .filter(|b| b / s == i)
                            .map(|b| b % s)
                            .collect();
                        let want = match (rows.first(), rows.last()) {
                            (Some(&a), Some(&b)) => (a, b + 1),
                            _ => (0, 0),
                        };
                        assert_eq!(
                            span.range(i as usize),
                            want,
                            "n {n} start {start} len {len} strip {i}"
                        );
                        assert_eq!(span.touched(i as usize), !rows.is_empty());
                        if !rows.is_empty() {
                            lo = lo.min(want.0);
                            hi = hi.max(want.1);
                        }
                    }
                    assert_eq!(
                        (span.lo, span.hi),
                        (lo, hi),
                        "n {n} start {start} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn fewest_reads() {
        let g = geo(8); // 7 data strips
        assert_eq!(
            choose(&g, 0, &StripeSpan::new(&g, 0, 28), None),
            WritePlan::FullStripe
        );
        // One block: RMW (2 reads) beats RCW (6 reads).
        assert_eq!(
            choose(&g, 0, &StripeSpan::new(&g, 5, 1), None),
            WritePlan::ReadModifyWrite
        );
        // Six of seven strips: RCW (1 read) beats RMW (7 reads).
        assert_eq!(
            choose(&g, 0, &StripeSpan::new(&g, 0, 24), None),
            WritePlan::ReconstructWrite
        );
        // Degraded variants.
        let p = g.parity_member(0);
        assert_eq!(
            choose(&g, 0, &StripeSpan::new(&g, 0, 1), Some(p)),
            WritePlan::DataOnly
        );
        assert_eq!(
            choose(&g, 0, &StripeSpan::new(&g, 0, 1), Some((p + 1) % 8)),
            WritePlan::Degraded
        );
    }
}
