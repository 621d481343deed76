//! Per-stripe planning: which strips a request touches, and how a stripe write gets its parity.

use crate::layout::Geometry;

/// Most members a volume can have.
pub const MAX_MEMBERS: usize = crate::layout::MAX_MEMBERS as usize;

/// The part of one stripe a request touches.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripeSpan {
    /// Per data index: touched block range inside the strip, `[a, b)`; `a == b` when untouched.
    pub ranges: [(u64, u64); MAX_MEMBERS],
    /// Union row range over all touched strips.
    pub lo: u64,
    /// End of the union row range.
    pub hi: u64,
}

impl StripeSpan {
    /// Span of the stripe-relative data blocks `[start, start + len)`.
    pub fn new(geo: &Geometry, start: u64, len: u64) -> StripeSpan {
        let s = geo.strip_blocks;
        let mut span = StripeSpan {
            lo: u64::MAX,
            hi: 0,
            ..Default::default()
        };
        for i in 0..geo.data_members() as usize {
            let (strip_a, strip_b) = (i as u64 * s, (i as u64 + 1) * s);
            let a = start.max(strip_a);
            let b = (start + len).min(strip_b);
            if a < b {
                span.ranges[i] = (a - strip_a, b - strip_a);
                span.lo = span.lo.min(a - strip_a);
                span.hi = span.hi.max(b - strip_a);
            }
        }
        span
    }

    /// Whether data index `i` is touched.
    pub fn touched(&self, i: usize) -> bool {
        self.ranges[i].0 < self.ranges[i].1
    }

    /// Whether data index `i` is written over the whole row range.
    pub fn covers_rows(&self, i: usize) -> bool {
        self.ranges[i] == (self.lo, self.hi)
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
        assert_eq!(s.ranges[0], (3, 4));
        assert_eq!(s.ranges[1], (0, 1));
        assert!(!s.touched(2));
        assert_eq!((s.lo, s.hi), (0, 4));
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
