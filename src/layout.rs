//! RAID-5 geometry: left-symmetric rotating parity.
//!
//! A volume is a sequence of stripes. Stripe `s` has one strip on every member, at member LBA
//! `data_offset + s * strip_blocks`. The parity strip of stripe `s` sits on member
//! `n - 1 - (s mod n)`; the data strips follow it, wrapping around (left-symmetric, md's default), so
//! consecutive volume strips land on consecutive members.

use std::fmt;

/// Bytes reserved at the start of every member for superblocks; member data starts after it.
pub const RESERVED_BYTES: u64 = 1 << 20;
/// Smallest and largest member counts.
pub const MIN_MEMBERS: u32 = 3;
pub const MAX_MEMBERS: u32 = 32;
/// Strip size bounds in bytes (both powers of two).
pub const MIN_STRIP_BYTES: u64 = 4 << 10;
pub const MAX_STRIP_BYTES: u64 = 1 << 20;

/// Why a geometry cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Member count outside 3..=32.
    Members(u32),
    /// Strip size not a power of two within 4 KiB..=1 MiB.
    StripSize(u64),
    /// Block size other than 512 or 4096.
    BlockSize(u32),
    /// Members too small to hold a single stripe after the reserved area.
    TooSmall { member_blocks: u64, needed: u64 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Members(n) => {
                write!(
                    f,
                    "RAID-5 needs {MIN_MEMBERS} to {MAX_MEMBERS} members, got {n}"
                )
            }
            LayoutError::StripSize(s) => write!(
                f,
                "strip size must be a power of two from 4 KiB to 1 MiB, got {s} bytes"
            ),
            LayoutError::BlockSize(b) => write!(f, "block size must be 512 or 4096, got {b}"),
            LayoutError::TooSmall {
                member_blocks,
                needed,
            } => write!(
                f,
                "members hold {member_blocks} blocks, at least {needed} are needed for one stripe"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Where one volume block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Stripe number.
    pub stripe: u64,
    /// Position of the strip among the stripe's data strips (0..data_members).
    pub data_index: u32,
    /// Member holding the block.
    pub member: u32,
    /// Block offset inside the strip.
    pub offset: u64,
    /// Absolute LBA on the member.
    pub member_lba: u64,
}

/// Division by a divisor fixed in advance, without a divide instruction (one 64x64->128-bit
/// multiply and at most two corrections): the per-I/O address arithmetic divides by the data
/// member and member counts, and a hardware divide costs tens of cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divisor {
    d: u64,
    /// floor((2^64 - 1) / d): the quotient it gives is at most 2 below the true one.
    m: u64,
}

impl Divisor {
    /// A divisor of `d` (not 0).
    pub fn new(d: u64) -> Divisor {
        assert!(d > 0, "division by zero");
        Divisor { d, m: u64::MAX / d }
    }

    /// `(x / d, x % d)`.
    #[inline]
    pub fn div_rem(&self, x: u64) -> (u64, u64) {
        // x * m / 2^64 < x / d, so q never exceeds the true quotient and x - q * d never
        // underflows; it falls short by less than x * (1 + 1/d) / 2^64 + 1 < 3.
        let mut q = ((u128::from(x) * u128::from(self.m)) >> 64) as u64;
        let mut r = x - q * self.d;
        while r >= self.d {
            q += 1;
            r -= self.d;
        }
        (q, r)
    }
}

/// The shape of a RAID-5 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Number of members, parity included.
    pub members: u32,
    /// Blocks per strip.
    pub strip_blocks: u64,
    /// Bytes per block.
    pub block_size: u32,
    /// Member LBA where stripe 0 starts (after the reserved area).
    pub data_offset: u64,
    /// Number of stripes.
    pub stripes: u64,
    /// log2 of `strip_blocks` (a power of two).
    strip_shift: u32,
    /// Divides by the data members per stripe.
    by_data_members: Divisor,
    /// Divides by `members`.
    by_members: Divisor,
    /// Divides by the data blocks per stripe.
    by_stripe_blocks: Divisor,
}

impl Geometry {
    /// Geometry for `members` members of `member_blocks` blocks each.
    pub fn new(
        members: u32,
        strip_bytes: u64,
        block_size: u32,
        member_blocks: u64,
    ) -> Result<Geometry, LayoutError> {
        if !(MIN_MEMBERS..=MAX_MEMBERS).contains(&members) {
            return Err(LayoutError::Members(members));
        }
        if !strip_bytes.is_power_of_two()
            || !(MIN_STRIP_BYTES..=MAX_STRIP_BYTES).contains(&strip_bytes)
        {
            return Err(LayoutError::StripSize(strip_bytes));
        }
        if block_size != 512 && block_size != 4096 {
            return Err(LayoutError::BlockSize(block_size));
        }
        let strip_blocks = strip_bytes / block_size as u64;
        let data_offset = RESERVED_BYTES / block_size as u64;
        let needed = data_offset + strip_blocks;
        if member_blocks < needed {
            return Err(LayoutError::TooSmall {
                member_blocks,
                needed,
            });
        }
        let stripes = (member_blocks - data_offset) / strip_blocks;
        Ok(Geometry {
            members,
            strip_blocks,
            block_size,
            data_offset,
            stripes,
            strip_shift: strip_blocks.trailing_zeros(),
            by_data_members: Divisor::new(u64::from(members - 1)),
            by_members: Divisor::new(u64::from(members)),
            by_stripe_blocks: Divisor::new(strip_blocks * u64::from(members - 1)),
        })
    }

    /// Data strips per stripe.
    pub fn data_members(&self) -> u32 {
        self.members - 1
    }

    /// Data blocks per stripe.
    pub fn stripe_blocks(&self) -> u64 {
        self.strip_blocks * self.data_members() as u64
    }

    /// Volume size in blocks.
    pub fn volume_blocks(&self) -> u64 {
        self.stripes * self.stripe_blocks()
    }

    /// Member blocks a volume of this geometry uses (reserved area included).
    pub fn member_blocks_used(&self) -> u64 {
        self.data_offset + self.stripes * self.strip_blocks
    }

    /// Member holding the parity of `stripe`.
    pub fn parity_member(&self, stripe: u64) -> u32 {
        self.members - 1 - self.by_members.div_rem(stripe).1 as u32
    }

    /// Member holding data strip `data_index` of `stripe`.
    pub fn data_member(&self, stripe: u64, data_index: u32) -> u32 {
        debug_assert!(data_index < self.data_members());
        // Below 2 * members: one subtraction is the modulo.
        let m = self.parity_member(stripe) + 1 + data_index;
        if m >= self.members {
            m - self.members
        } else {
            m
        }
    }

    /// Data index of `member` in `stripe`, or `None` when it holds the parity.
    pub fn data_index(&self, stripe: u64, member: u32) -> Option<u32> {
        let p = self.parity_member(stripe);
        if member == p {
            None
        } else {
            Some((member + self.members - p - 1) % self.members)
        }
    }

    /// Member LBA of block `offset` of `stripe`'s strips.
    pub fn member_lba(&self, stripe: u64, offset: u64) -> u64 {
        self.data_offset + stripe * self.strip_blocks + offset
    }

    /// The stripe of volume block `lba` and the block's offset in the stripe's data.
    #[inline]
    pub fn stripe_of(&self, lba: u64) -> (u64, u64) {
        self.by_stripe_blocks.div_rem(lba)
    }

    /// Where volume block `lba` lives. `lba` must be below `volume_blocks()`.
    pub fn locate(&self, lba: u64) -> Location {
        // Strip number across the volume, then stripe and position in it.
        let (stripe, data_index) = self.by_data_members.div_rem(lba >> self.strip_shift);
        let data_index = data_index as u32;
        let offset = lba & (self.strip_blocks - 1);
        Location {
            stripe,
            data_index,
            member: self.data_member(stripe, data_index),
            offset,
            member_lba: self.member_lba(stripe, offset),
        }
    }

    /// Volume LBA of a member block, or `None` for parity and reserved blocks.
    pub fn volume_lba(&self, member: u32, member_lba: u64) -> Option<u64> {
        let rel = member_lba.checked_sub(self.data_offset)?;
        let stripe = rel / self.strip_blocks;
        if stripe >= self.stripes {
            return None;
        }
        let di = self.data_index(stripe, member)? as u64;
        Some(stripe * self.stripe_blocks() + di * self.strip_blocks + rel % self.strip_blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geometry() -> impl Strategy<Value = Geometry> {
        (3u32..=32, 0u32..=8, prop::bool::ANY, 1u64..=6).prop_map(|(n, s, big, stripes)| {
            let bs = if big { 4096 } else { 512 };
            let strip = 4096u64 << s;
            let member_blocks = RESERVED_BYTES / bs as u64 + stripes * strip / bs as u64 + 3;
            Geometry::new(n, strip, bs, member_blocks).unwrap()
        })
    }

    #[test]
    fn divisor_matches_division_at_the_edges() {
        let xs = [
            0,
            1,
            2,
            3,
            31,
            32,
            33,
            u64::MAX / 2,
            u64::MAX - 2,
            u64::MAX - 1,
            u64::MAX,
        ];
        for d in (1..=64).chain([1000, 1 << 32, (1 << 32) + 1, u64::MAX / 3, u64::MAX]) {
            let div = Divisor::new(d);
            for &x in &xs {
                for x in [x, x.wrapping_mul(d), x.wrapping_mul(d).wrapping_sub(1)] {
                    assert_eq!(div.div_rem(x), (x / d, x % d), "{x} / {d}");
                }
            }
        }
    }

    /// The definition the fast arithmetic of `locate` must agree with.
    fn locate_by_division(g: &Geometry, lba: u64) -> Location {
        let stripe = lba / g.stripe_blocks();
        let in_stripe = lba % g.stripe_blocks();
        let data_index = (in_stripe / g.strip_blocks) as u32;
        let n = u64::from(g.members);
        let parity = (n - 1 - stripe % n) as u32;
        Location {
            stripe,
            data_index,
            member: (parity + 1 + data_index) % g.members,
            offset: in_stripe % g.strip_blocks,
            member_lba: g.data_offset + stripe * g.strip_blocks + in_stripe % g.strip_blocks,
        }
    }

    proptest! {
        #[test]
        fn divisor_matches_division(d in 1u64.., x in any::<u64>()) {
            prop_assert_eq!(Divisor::new(d).div_rem(x), (x / d, x % d));
        }

        #[test]
        fn locate_matches_division_on_huge_volumes(
            n in 3u32..=32, s in 0u32..=8, big in prop::bool::ANY, lba in 0u64..(1 << 50)
        ) {
            // 2^50 blocks of 4 KiB: far past any member that exists.
            let bs = if big { 4096 } else { 512 };
            let g = Geometry::new(n, 4096u64 << s, bs, 1 << 50).unwrap();
            prop_assert_eq!(g.locate(lba), locate_by_division(&g, lba));
            prop_assert_eq!(g.stripe_of(lba), (lba / g.stripe_blocks(), lba % g.stripe_blocks()));
        }

        #[test]
        fn mapping_is_a_bijection(g in geometry()) {
            let mut seen = std::collections::HashSet::new();
            for lba in 0..g.volume_blocks() {
                let l = g.locate(lba);
                prop_assert!(l.member < g.members);
                prop_assert!(l.member_lba >= g.data_offset && l.member_lba < g.member_blocks_used());
                prop_assert!(seen.insert((l.member, l.member_lba)), "two volume blocks on one member block");
                prop_assert_eq!(g.volume_lba(l.member, l.member_lba), Some(lba));
            }
            // Every member block of the data area is either data (hit above) or parity.
            let parity_blocks = g.stripes * g.strip_blocks;
            prop_assert_eq!(seen.len() as u64 + parity_blocks, g.members as u64 * g.stripes * g.strip_blocks);
        }

        #[test]
        fn parity_never_shares_a_member_with_data(g in geometry()) {
            for s in 0..g.stripes.min(64) {
                let p = g.parity_member(s);
                let mut members: Vec<u32> = (0..g.data_members()).map(|i| g.data_member(s, i)).collect();
                prop_assert!(!members.contains(&p));
                members.push(p);
                members.sort();
                members.dedup();
                prop_assert_eq!(members.len() as u32, g.members);
                prop_assert_eq!(g.data_index(s, p), None);
            }
        }

        #[test]
        fn parity_visits_every_member(n in 3u32..=32) {
            let g = Geometry::new(n, 4096, 4096, 256 + 64 * 40).unwrap();
            let visited: std::collections::HashSet<u32> = (0..n as u64).map(|s| g.parity_member(s)).collect();
            prop_assert_eq!(visited.len() as u32, n);
        }
    }

    #[test]
    fn bad_geometry_is_an_error() {
        assert_eq!(
            Geometry::new(2, 4096, 512, 1 << 20),
            Err(LayoutError::Members(2))
        );
        assert_eq!(
            Geometry::new(33, 4096, 512, 1 << 20),
            Err(LayoutError::Members(33))
        );
        assert_eq!(
            Geometry::new(4, 6144, 512, 1 << 20),
            Err(LayoutError::StripSize(6144))
        );
        assert_eq!(
            Geometry::new(4, 2048, 512, 1 << 20),
            Err(LayoutError::StripSize(2048))
        );
        assert_eq!(
            Geometry::new(4, 2 << 20, 512, 1 << 20),
            Err(LayoutError::StripSize(2 << 20))
        );
        assert_eq!(
            Geometry::new(4, 4096, 1024, 1 << 20),
            Err(LayoutError::BlockSize(1024))
        );
        assert!(matches!(
            Geometry::new(4, 65536, 4096, 256),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn left_symmetric_layout() {
        // 4 members: stripe 0 parity on 3, data on 0,1,2; stripe 1 parity on 2, data on 3,0,1.
        let g = Geometry::new(4, 4096, 4096, 256 + 100).unwrap();
        assert_eq!(g.parity_member(0), 3);
        assert_eq!(
            (0..3).map(|i| g.data_member(0, i)).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(g.parity_member(1), 2);
        assert_eq!(
            (0..3).map(|i| g.data_member(1, i)).collect::<Vec<_>>(),
            vec![3, 0, 1]
        );
        assert_eq!(g.locate(4).member, 0);
        assert_eq!(g.locate(4).member_lba, 256 + 1);
    }
}
