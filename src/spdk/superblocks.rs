//! Superblock I/O on base bdevs: write member and journal superblocks, read LBA 0 and the
//! journal's record slots. All on the app thread, asynchronously.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::base::{raw_io, RawDev};
use super::bdev::SpdkVolume;
use super::ffi::warnlog;
use crate::engine::{Buf, IoOp, MemberHealth};
use crate::superblock::{MemberState, MemberSuperblock, SUPERBLOCK_BYTES};

/// What a [`Join`] runs at the end.
type JoinDone = Box<dyn FnOnce(Result<(), String>)>;

/// Counts outstanding steps; runs `done` with the first error (or Ok) when the last ends.
pub(crate) struct Join {
    left: usize,
    error: Option<String>,
    done: Option<JoinDone>,
}

impl Join {
    /// A join of `n` steps (with `n == 0`, `done` runs at once).
    pub fn new(n: usize, done: impl FnOnce(Result<(), String>) + 'static) -> Rc<RefCell<Join>> {
        let j = Rc::new(RefCell::new(Join {
            left: n,
            error: None,
            done: Some(Box::new(done)),
        }));
        if n == 0 {
            Join::fire(&j);
        }
        j
    }

    /// One step ended.
    pub fn one(j: &Rc<RefCell<Join>>, r: Result<(), String>) {
        {
            let mut g = j.borrow_mut();
            if let Err(e) = r {
                g.error.get_or_insert(e);
            }
            g.left -= 1;
            if g.left > 0 {
                return;
            }
        }
        Join::fire(j);
    }

    fn fire(j: &Rc<RefCell<Join>>) {
        let (done, err) = {
            let mut g = j.borrow_mut();
            (g.done.take(), g.error.take())
        };
        if let Some(d) = done {
            d(match err {
                Some(e) => Err(e),
                None => Ok(()),
            });
        }
    }
}

/// Blocks a superblock spans on a device of `block_size`.
fn sb_blocks(block_size: u32) -> u64 {
    (SUPERBLOCK_BYTES as u64).div_ceil(block_size as u64)
}

/// Write `image` at LBA 0 of `dev` (then flush when it caches writes).
pub(crate) fn write_sb(
    dev: RawDev,
    what: String,
    image: Vec<u8>,
    done: impl FnOnce(Result<(), String>) + 'static,
) {
    let len = sb_blocks(dev.block_size) as usize * dev.block_size as usize;
    let mut buf = Buf::new(len);
    buf.as_mut_slice()[..image.len()].copy_from_slice(&image);
    // The flush goes through a handle of its own: whatever happens to the volume meanwhile,
    // the descriptor stays open until the flush is over.
    raw_io(dev.clone(), IoOp::Write, 0, Some(buf), move |ok, _| {
        if !ok {
            return done(Err(format!("{what}: superblock write failed")));
        }
        if !dev.write_cache {
            return done(Ok(()));
        }
        raw_io(dev, IoOp::Flush, 0, None, move |ok, _| {
            done(if ok {
                Ok(())
            } else {
                Err(format!("{what}: flush after superblock write failed"))
            })
        });
    });
}

/// Read `bytes` (a multiple of the block size) at byte `offset` of `dev`.
pub(crate) fn read_bytes(
    dev: RawDev,
    offset: u64,
    bytes: usize,
    done: impl FnOnce(Option<Buf>) + 'static,
) {
    let bs = dev.block_size as u64;
    let blocks = (bytes as u64).div_ceil(bs);
    if !offset.is_multiple_of(bs) || offset / bs + blocks > dev.num_blocks {
        return done(None);
    }
    let buf = Buf::new((blocks * bs) as usize);
    raw_io(dev, IoOp::Read, offset / bs, Some(buf), move |ok, buf| {
        done(if ok { buf } else { None })
    });
}

/// Read the superblock area (LBA 0) of `dev`.
pub(crate) fn read_sb(dev: RawDev, done: impl FnOnce(Option<Buf>) + 'static) {
    read_bytes(dev, 0, SUPERBLOCK_BYTES, done)
}

/// The member superblock of member `index` of `v` as it should be now.
pub(crate) fn member_sb(
    v: &SpdkVolume,
    index: u32,
    seq: u64,
    uuids: &[[u8; 16]],
) -> MemberSuperblock {
    MemberSuperblock {
        volume_uuid: v.uuid,
        journal_uuid: v.journal().journal.cfg.uuid,
        volume_number: v.number,
        name: v.name.clone(),
        members: v.geo.members,
        member_index: index,
        strip_blocks: v.geo.strip_blocks,
        block_size: v.geo.block_size,
        stripes: v.geo.stripes,
        seq,
        member_states: (0..v.geo.members)
            .map(|m| match v.vol.health(m) {
                MemberHealth::Active => MemberState::Active,
                MemberHealth::Failed if v.vol.rebuilding() == Some(m) => MemberState::Rebuilding,
                MemberHealth::Failed => MemberState::Failed,
            })
            .collect(),
        member_uuids: uuids.to_vec(),
        journal_dropped: v.journal_dropped.load(std::sync::atomic::Ordering::Acquire),
        journal_area: v.journal_area,
        init_stripes: v.vol.init_stripes(),
    }
}

/// Rewrite the superblocks of the live members of `v` with the current member states and a
/// higher seq (a removed member then never comes back as if in sync).
pub(crate) fn record_member_states(v: &Arc<SpdkVolume>) {
    record_member_states_then(v, |_| {});
}

/// [`record_member_states`], then `done` with the first error once every write has ended.
/// The member being rebuilt gets its superblock too (saying "rebuilding").
pub(crate) fn record_member_states_then(
    v: &Arc<SpdkVolume>,
    done: impl FnOnce(Result<(), String>) + 'static,
) {
    let seq = {
        let mut s = v.seq.lock().unwrap_or_else(|e| e.into_inner());
        *s += 1;
        *s
    };
    let uuids = v.uuids();
    let members = v.members.lock().unwrap_or_else(|e| e.into_inner());
    let targets: Vec<(usize, &super::base::BaseBdev)> = members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
        .filter(|&(i, _)| {
            v.vol.health(i as u32) == MemberHealth::Active || v.vol.rebuilding() == Some(i as u32)
        })
        .collect();
    let join = Join::new(targets.len(), done);
    for (i, m) in targets {
        let sb = member_sb(v, i as u32, seq, &uuids);
        let name = m.name.clone();
        let join = join.clone();
        write_sb(m.raw(), name.clone(), sb.encode(), move |r| {
            if let Err(e) = &r {
                warnlog!("member {name}: could not record member states: {e}");
            }
            Join::one(&join, r);
        });
    }
}
