//! Assembly: from the member superblocks found, which members a volume uses. One copy for the
//! SPDK adapter's examine and create-by-uuid and the io_uring runtime's open.
//!
//! The newest superblock (highest seq) is the volume's truth. Member `i` is used when that
//! superblock says it is active and the device found at index `i` carries the same member
//! identities (a device that missed a state change, or was replaced since, carries older
//! ones). A member the newest superblock says is being rebuilt, found with the current
//! identities, is assembled out of service and its rebuild starts again. Everything else is
//! left out: recorded failed, stale, or missing.

use crate::superblock::{MemberState, MemberSuperblock};

/// What assembly does with one member slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberUse {
    /// In service.
    Use,
    /// A replacement whose rebuild was cut short: out of service, rebuilt again.
    Resume,
    /// Found, but recorded failed (or being rebuilt without the current identities).
    Failed,
    /// Found, but it carries other member identities than the newest superblock: it missed
    /// a state change, or it is a device the slot held before a replacement.
    Stale,
    /// Not found.
    Missing,
}

impl MemberUse {
    /// Whether the member serves I/O after assembly.
    pub fn in_service(self) -> bool {
        self == MemberUse::Use
    }
}

/// The newest of `sbs` (highest seq), the one assembly follows.
pub fn newest<'a>(
    sbs: impl IntoIterator<Item = &'a MemberSuperblock>,
) -> Option<&'a MemberSuperblock> {
    sbs.into_iter().max_by_key(|s| s.seq)
}

/// What to do with each member slot of the volume `newest` describes, given the superblock
/// found at each slot (`found[i]`: the device found as member `i`, if any).
pub fn decide(newest: &MemberSuperblock, found: &[Option<&MemberSuperblock>]) -> Vec<MemberUse> {
    (0..newest.members as usize)
        .map(|i| {
            let Some(s) = found.get(i).copied().flatten() else {
                return MemberUse::Missing;
            };
            let same = s.volume_uuid == newest.volume_uuid
                && s.member_index == i as u32
                && s.member_uuids == newest.member_uuids;
            match (newest.member_states[i], same) {
                (MemberState::Active, true) => MemberUse::Use,
                (MemberState::Rebuilding, true) => MemberUse::Resume,
                (MemberState::Active, false) => MemberUse::Stale,
                _ => MemberUse::Failed,
            }
        })
        .collect()
}

/// Whether a volume so assembled can serve its data (at most one member out of service).
pub fn servable(uses: &[MemberUse]) -> bool {
    uses.iter().filter(|u| !u.in_service()).count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(index: u32, seq: u64, states: &[MemberState], uuids: &[[u8; 16]]) -> MemberSuperblock {
        MemberSuperblock {
            volume_uuid: [1; 16],
            journal_uuid: [2; 16],
            volume_number: 0,
            name: "v".into(),
            members: states.len() as u32,
            member_index: index,
            strip_blocks: 16,
            block_size: 4096,
            stripes: 100,
            seq,
            member_states: states.to_vec(),
            member_uuids: uuids.to_vec(),
            journal_dropped: 0,
            journal_area: 0,
            init_stripes: 10,
        }
    }

    #[test]
    fn newest_superblock_decides() {
        use MemberState::*;
        let old_ids = [[10; 16], [11; 16], [12; 16]];
        let new_ids = [[10; 16], [11; 16], [99; 16]];
        // Member 2 was replaced (new identity, rebuilding); member 1 missed nothing.
        let s0 = sb(0, 5, &[Active, Active, Rebuilding], &new_ids);
        let s1 = sb(1, 5, &[Active, Active, Rebuilding], &new_ids);
        let old2 = sb(2, 3, &[Active, Active, Active], &old_ids);
        let new2 = sb(2, 5, &[Active, Active, Rebuilding], &new_ids);
        let n = newest([&s0, &old2, &s1]).unwrap().clone();
        assert_eq!(n.seq, 5);
        // The old device in slot 2: stale identity, left out.
        let u = decide(&n, &[Some(&s0), Some(&s1), Some(&old2)]);
        assert_eq!(u, vec![MemberUse::Use, MemberUse::Use, MemberUse::Failed]);
        // The replacement in slot 2: its rebuild resumes.
        let u = decide(&n, &[Some(&s0), Some(&s1), Some(&new2)]);
        assert_eq!(u, vec![MemberUse::Use, MemberUse::Use, MemberUse::Resume]);
        assert!(servable(&u));
        // A member said active whose device carries older identities: stale.
        let stale1 = sb(1, 3, &[Active, Active, Active], &old_ids);
        let u = decide(&n, &[Some(&s0), Some(&stale1), None]);
        assert_eq!(
            u,
            vec![MemberUse::Use, MemberUse::Stale, MemberUse::Missing]
        );
        assert!(!servable(&u));
        // A device found at the wrong index is not that member.
        let u = decide(&n, &[Some(&s1), Some(&s1), Some(&new2)]);
        assert_eq!(u[0], MemberUse::Stale);
    }
}
