//! Reference model: which contents each block may hold, given when writes were submitted and
//! acknowledged. Concurrent overlapping writes have no defined order, so a block may hold any
//! write not superseded by a later one that was submitted after it was acknowledged.

/// Bytes of a block's stamp: write id, lba, volume.
const STAMP: usize = 24;

/// Timing of one write (id 0 is the initial, all-zero content).
#[derive(Debug, Clone, Copy)]
struct WriteInfo {
    submit: u64,
    ack: Option<u64>,
}

/// The model of every volume's blocks.
pub struct Model {
    writes: Vec<WriteInfo>,
    /// Per volume, per block: ids of writes that touched it.
    history: Vec<Vec<Vec<u64>>>,
    /// Per volume: whether members cache writes volatilely (an acknowledged write is then
    /// durable only once a flush submitted after it completes).
    volatile: Vec<bool>,
    /// Per volume: completed user flushes (submitted, completed).
    flushes: Vec<Vec<(u64, u64)>>,
    /// Power losses so far (times, ascending).
    crashes: Vec<u64>,
}

/// What a block held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Content of write `id` (0: never written).
    Write(u64),
    /// Not a whole block of any write: torn or garbage.
    Garbage,
}

impl Model {
    /// A model of volumes with the given block counts.
    pub fn new(volume_blocks: &[u64], volatile: bool) -> Model {
        Model {
            writes: vec![WriteInfo {
                submit: 0,
                ack: Some(0),
            }],
            history: volume_blocks
                .iter()
                .map(|&n| vec![Vec::new(); n as usize])
                .collect(),
            volatile: vec![volatile; volume_blocks.len()],
            flushes: vec![Vec::new(); volume_blocks.len()],
            crashes: Vec::new(),
        }
    }

    /// The power went at `t`: what volatile caches held then is gone, and a flush after it no
    /// longer makes an earlier write durable.
    pub fn crashed(&mut self, t: u64) {
        self.crashes.push(t);
    }

    /// A flush of volume `vi` ran from `submit` to `complete`.
    pub fn flushed(&mut self, vi: usize, submit: u64, complete: u64) {
        self.flushes[vi].push((submit, complete));
    }

    /// When write `id` of volume `vi` became durable: at its acknowledgement, or with volatile
    /// members at the end of the first flush submitted after it.
    fn durable_at(&self, vi: usize, id: u64) -> Option<u64> {
        let ack = self.writes[id as usize].ack?;
        if !self.volatile[vi] || id == 0 {
            return Some(ack);
        }
        // Only a flush before the next power loss: the cache's copy dies with the power.
        let epoch_end = self
            .crashes
            .iter()
            .copied()
            .find(|&c| c >= ack)
            .unwrap_or(u64::MAX);
        self.flushes[vi]
            .iter()
            .filter(|f| f.0 >= ack && f.1 <= epoch_end)
            .map(|f| f.1)
            .min()
    }

    /// Whether acknowledged write `id` of volume `vi` survived every power loss between its
    /// acknowledgement and `t`: none came, or it was durable before the first one.
    fn survived(&self, vi: usize, id: u64, t: u64) -> bool {
        let Some(ack) = self.writes[id as usize].ack else {
            return false;
        };
        match self.crashes.iter().copied().find(|&c| c >= ack && c < t) {
            None => true,
            Some(c) => self.durable_at(vi, id).is_some_and(|d| d <= c),
        }
    }

    /// Whether block `lba` of volume `vi` may hold `seen` after a power loss at `crash`:
    /// any write submitted before the crash, unless a write submitted after it was acknowledged
    /// became durable before the crash.
    pub fn valid_after_crash(&self, vi: usize, lba: u64, seen: Seen, crash: u64) -> bool {
        let Seen::Write(id) = seen else { return false };
        let hist = &self.history[vi][lba as usize];
        if id != 0 && !hist.contains(&id) {
            return false;
        }
        let w = self.writes[id as usize];
        if w.submit > crash {
            return false;
        }
        let Some(ack) = w.ack else { return true };
        !hist.iter().any(|&o| {
            self.writes[o as usize].submit > ack
                && self.durable_at(vi, o).is_some_and(|d| d <= crash)
        })
    }

    /// A write of `blocks` blocks at `lba` of volume `vi` starts at `now`; fills `buf` with
    /// its stamped content and returns its id.
    pub fn begin_write(
        &mut self,
        vi: usize,
        lba: u64,
        blocks: u64,
        bs: usize,
        now: u64,
        buf: &mut [u8],
    ) -> u64 {
        let id = self.writes.len() as u64;
        self.writes.push(WriteInfo {
            submit: now,
            ack: None,
        });
        for b in 0..blocks {
            self.history[vi][(lba + b) as usize].push(id);
            stamp(
                &mut buf[b as usize * bs..(b as usize + 1) * bs],
                id,
                lba + b,
                vi as u64,
            );
        }
        id
    }

    /// Whether any write (acknowledged or not) touched one of `blocks` blocks at `lba` of
    /// volume `vi`.
    pub fn touched(&self, vi: usize, lba: u64, blocks: u64) -> bool {
        self.history[vi][lba as usize..(lba + blocks) as usize]
            .iter()
            .any(|h| !h.is_empty())
    }

    /// Write `id` was acknowledged at `now`.
    pub fn ack(&mut self, id: u64, now: u64) {
        self.writes[id as usize].ack = Some(now);
    }

    /// Write `id` failed: it may or may not have landed; keep it as never acknowledged.
    pub fn failed(&mut self, _id: u64) {}

    /// Whether block `lba` of volume `vi` may hold `seen` for a read that ran from `start` to
    /// `end` (both inclusive).
    pub fn valid(&self, vi: usize, lba: u64, seen: Seen, start: u64, end: u64) -> bool {
        let Seen::Write(id) = seen else { return false };
        let hist = &self.history[vi][lba as usize];
        if id != 0 && !hist.contains(&id) {
            return false;
        }
        let w = self.writes[id as usize];
        if w.submit > end {
            return false;
        }
        let Some(ack) = w.ack else { return true };
        // Superseded by a write submitted after `id` was acknowledged, acknowledged itself
        // before the read started, and not lost to a power loss since (a volatile cache's
        // unflushed copy dies with the power)?
        !hist.iter().any(|&o| {
            let ow = self.writes[o as usize];
            ow.submit > ack && ow.ack.is_some_and(|a| a < start) && self.survived(vi, o, start)
        })
    }
}

/// Stamp a block with its write id, lba and volume, and a pattern derived from them.
pub fn stamp(block: &mut [u8], id: u64, lba: u64, vol: u64) {
    block[0..8].copy_from_slice(&id.to_le_bytes());
    block[8..16].copy_from_slice(&lba.to_le_bytes());
    block[16..24].copy_from_slice(&vol.to_le_bytes());
    let pat = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ lba.rotate_left(17) ^ vol).to_le_bytes();
    for (i, b) in block[STAMP..].iter_mut().enumerate() {
        *b = pat[i % 8] ^ (i as u8);
    }
}

/// Identify a block's content: which write (0 = never written), or garbage.
pub fn identify(block: &[u8], lba: u64, vol: u64) -> Seen {
    if all_zero(block) {
        return Seen::Write(0);
    }
    let id = u64::from_le_bytes(block[0..8].try_into().expect("8 bytes"));
    if block[8..16] != lba.to_le_bytes() || block[16..24] != vol.to_le_bytes() {
        return Seen::Garbage;
    }
    // What `stamp` writes after the stamp repeats every 256 bytes: compare in 256-byte runs.
    let pat = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ lba.rotate_left(17) ^ vol).to_le_bytes();
    let mut run = [0u8; 256];
    for (i, b) in run.iter_mut().enumerate() {
        *b = pat[i % 8] ^ (i as u8);
    }
    if block[STAMP..].chunks(256).all(|c| c == &run[..c.len()]) {
        Seen::Write(id)
    } else {
        Seen::Garbage
    }
}

fn all_zero(block: &[u8]) -> bool {
    let mut words = block.chunks_exact(16);
    words.all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supersession() {
        let mut m = Model::new(&[4], false);
        let mut buf = vec![0u8; 512];
        let a = m.begin_write(0, 1, 1, 512, 10, &mut buf);
        assert_eq!(identify(&buf, 1, 0), Seen::Write(a));
        assert_eq!(identify(&buf, 2, 0), Seen::Garbage);
        // In flight: old and new both fine.
        assert!(m.valid(0, 1, Seen::Write(0), 11, 12));
        assert!(m.valid(0, 1, Seen::Write(a), 11, 12));
        m.ack(a, 20);
        // Acked: the initial content is superseded only by a write submitted after it was acked
        // (the initial content is "acked" at 0 and `a` was submitted at 10).
        assert!(!m.valid(0, 1, Seen::Write(0), 21, 22));
        let b = m.begin_write(0, 1, 1, 512, 15, &mut buf); // overlaps a in time
        m.ack(b, 25);
        assert!(m.valid(0, 1, Seen::Write(a), 30, 30));
        assert!(m.valid(0, 1, Seen::Write(b), 30, 30));
        let c = m.begin_write(0, 1, 1, 512, 40, &mut buf);
        m.ack(c, 50);
        assert!(!m.valid(0, 1, Seen::Write(a), 60, 60));
        assert!(!m.valid(0, 1, Seen::Write(b), 60, 60));
        assert!(m.valid(0, 1, Seen::Write(c), 60, 60));
        assert!(!m.valid(0, 1, Seen::Garbage, 60, 60));
        assert!(!m.valid_after_crash(0, 1, Seen::Write(a), 60));
        assert!(m.valid_after_crash(0, 1, Seen::Write(a), 45));
    }

    #[test]
    fn identify_tells_every_byte() {
        for bs in [512, 4096] {
            let mut block = vec![0u8; bs];
            assert_eq!(identify(&block, 7, 1), Seen::Write(0));
            stamp(&mut block, 42, 7, 1);
            assert_eq!(identify(&block, 7, 1), Seen::Write(42));
            assert_eq!(identify(&block, 8, 1), Seen::Garbage);
            assert_eq!(identify(&block, 7, 2), Seen::Garbage);
            for at in [0, 23, 24, 300, bs - 1] {
                let mut torn = block.clone();
                torn[at] ^= 1;
                assert_ne!(identify(&torn, 7, 1), Seen::Write(42), "byte {at}");
            }
            let mut zero_but_one = vec![0u8; bs];
            zero_but_one[bs - 1] = 1;
            assert_eq!(identify(&zero_but_one, 7, 1), Seen::Garbage);
        }
    }

    #[test]
    fn volatile_members_need_a_flush() {
        let mut m = Model::new(&[4], true);
        let mut buf = vec![0u8; 512];
        let a = m.begin_write(0, 1, 1, 512, 10, &mut buf);
        m.ack(a, 20);
        let b = m.begin_write(0, 1, 1, 512, 30, &mut buf);
        m.ack(b, 40);
        // Not flushed: a crash may lose either write, even b.
        assert!(m.valid_after_crash(0, 1, Seen::Write(0), 100));
        m.flushed(0, 25, 28); // covers a only
        assert!(!m.valid_after_crash(0, 1, Seen::Write(0), 100));
        assert!(m.valid_after_crash(0, 1, Seen::Write(a), 100));
        m.flushed(0, 45, 50);
        assert!(!m.valid_after_crash(0, 1, Seen::Write(a), 100));
        assert!(m.valid_after_crash(0, 1, Seen::Write(a), 49));
        assert!(m.valid_after_crash(0, 1, Seen::Write(b), 100));
    }

    #[test]
    fn a_flush_after_a_power_loss_does_not_revive_a_lost_write() {
        let mut m = Model::new(&[4], true);
        let mut buf = vec![0u8; 512];
        let a = m.begin_write(0, 1, 1, 512, 10, &mut buf);
        m.ack(a, 20);
        m.crashed(30); // a was never flushed: it may be gone
        m.flushed(0, 40, 50);
        // Still the old content is fine, after the second power loss and on a read meanwhile.
        assert!(m.valid_after_crash(0, 1, Seen::Write(0), 100));
        assert!(m.valid(0, 1, Seen::Write(0), 60, 70));
        // Without the first power loss the flush would have made a durable.
        let mut n = Model::new(&[4], true);
        let a = n.begin_write(0, 1, 1, 512, 10, &mut buf);
        n.ack(a, 20);
        n.flushed(0, 40, 50);
        assert!(!n.valid_after_crash(0, 1, Seen::Write(0), 100));
        assert!(!n.valid(0, 1, Seen::Write(0), 60, 70));
    }
}
