//! Mark aggregation and group commit.
//!
//! Hot path (any thread): a writer looks its stripe up in the volume's table of listed stripes
//! and counts its mark there, under the lock of the stripe's shard. A stripe already listed in a
//! durable record is the fast path. Otherwise the writer adds the stripe's state, enters the open
//! generation (a lock-free handshake with the flusher: one increment in, one out; see
//! `Journal::enter_open`), tags the state with it and pushes the entry onto a bounded queue.
//! One flusher at a time closes the open generation, drains the queue into the listed set, drops
//! stripes that stayed clean long enough, encodes what changed (a delta behind the area's chain,
//! or a checkpoint of the whole set in the other area when the delta no longer fits: see
//! [`super::record`]) and writes it; when it is durable every channel with a waiter is told by
//! message.
//!
//! Cost per record: the flusher touches only what changed. New marks come from the queue. The
//! listed set is a queue ordered by when each entry is next due for a removal check (the
//! hysteresis); a generation examines only the entries whose time has come, and an entry still in
//! use goes to the back, due again one hysteresis later. Nothing walks the listed set per record
//! except a checkpoint (amortised: see the record module) and, while writers wait for room in a
//! full record, the search for stripes that may leave.
//!
//! Memory: a stripe has a state only while it is listed (its active marks, the generation it was
//! listed in, when its last write went clean), kept in one of at most [`MAX_STATE_SHARDS`]
//! shards per volume ([`state_shards`]), each a spin lock over four states in the shard's own two
//! cache lines (more on the heap: when a large volume's listed set nears the record's room). So the state's size, and the cache and TLB footprint
//! of a write's look-up, follow the listed set (bounded by the record's room), not the volume: a
//! write to a random stripe of a volume of terabyte members touches one line of a 4 MiB table,
//! where a per-stripe array would be hundreds of MiB. The table is capped at 4 MiB for its
//! address span: on the VM measured, random look-ups across more than 8 MiB cost 10–13 ns more
//! each even when their lines are cached, and at terabyte members each write looks its stripe up
//! three times (`docs/bench/20261207-tablespan/`). A full listed set then holds more states than
//! the shards' lines (the rest on the heap), which a hot-set bench showed no slower, beyond its
//! runs' spread. A shard is locked for a few instructions; marks of stripes in other shards run
//! in parallel.
//!
//! Hysteresis: a clean stripe stays listed for [`JournalConfig::hysteresis_us`] (stretched
//! while the listed set leaves room: [`JournalConfig::roomy_hysteresis_us`]) when it was
//! written again while listed (a hot stripe: the fast path pays), or when its volume cannot fill
//! the listed set; else (a stripe written once on a volume of more stripes than the listed set
//! holds, as nearly all are under random writes to such a volume: keeping it listed would cost
//! checkpoint bytes and a cold cache line when it leaves, for a fast path few writes take) only
//! for [`JournalConfig::first_hysteresis_us`] from its listing, once its write is clean (so the
//! flusher looks at it once). A cost decision only; the rule below holds either way.
//!
//! Removal rule: a stripe leaves the record only if no write to it started after the member flush
//! that covers it (and, always, only once its hysteresis is over). The flusher
//! decides and removes in one step under the stripe's shard lock (`Journal::try_remove`), and
//! every mark takes that lock, so a write either started before the decision (its mark is
//! counted, or its clean time is the one checked) or starts after the removal and lists the
//! stripe again.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::sync::{
    lock_shard, spin, AtomicBool, AtomicU64, MarkQueue, Mutex, MutexGuard, Ordering::*, ShardLock,
    Words,
};

use super::record::{self, Entry};
use crate::engine::Address;

/// Low bits of [`Journal::open`] counting the writers that entered the open generation (each
/// thread is in at most one at a time); the generation is above them.
const ENTER_BITS: u32 = 16;
const ENTER_MASK: u64 = (1 << ENTER_BITS) - 1;

/// Tunables of a journal.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Identity written into every record.
    pub uuid: [u8; 16],
    /// Block size of the journal device(s); records are padded to it.
    pub block_size: u32,
    /// Bytes per slot; bounds the entries a record can hold.
    pub slot_bytes: u64,
    /// Where each slot (area) lives: (journal device index, first block). With two journal
    /// devices ([`JournalConfig::devices`]) each device holds both areas at these blocks, and
    /// the device index here is not used.
    pub slots: [(u32, u64); 2],
    /// Journal devices: 1, or 2 (claim 13: records alternate over them, or are mirrored on
    /// both, as [`JournalConfig::mode`] says; see [`Journal::begin_flush`]).
    pub devices: u32,
    /// How records spread over two journal devices.
    pub mode: JournalMode,
    /// Whether the journal device(s) cache writes volatilely (then a record needs write + flush).
    pub volatile_cache: bool,
    /// A clean stripe stays listed for at least this many later generations...
    pub hysteresis_generations: u64,
    /// ...and at least this long once it was written again while listed (it is likely to be
    /// written again: staying listed spares those writes a record each)...
    pub hysteresis_us: u64,
    /// ...stretched, while the listed set leaves most of the record's room free, up to this
    /// long (nothing when not above `hysteresis_us`): [`Journal::long_hysteresis_us`]. A
    /// listed stripe costs room, its bytes in each checkpoint and a resync after a crash, not
    /// bytes in every record; where the room is there, a stripe kept listed longer spares more
    /// later writes to it a record each (a volume of 8 GiB members under random writes: 40 %
    /// of writes find their stripe listed with 100 ms, 82 % with the stretch, which settles
    /// near 0.3 s there as the set fills to 60–65 % of the room). As the set fills, it falls
    /// back to `hysteresis_us`, so several volumes sharing the journal still fit...
    pub roomy_hysteresis_us: u64,
    /// ...or, when it was written once only since it was listed, on a volume of more stripes
    /// than `first_hysteresis_above`, this long (at most `hysteresis_us`) from its listing (or
    /// from when the flusher last found that write still running), once it is clean: the
    /// flusher then decides at its first look, instead of looking again once this long has
    /// passed since the write went clean. On a large
    /// volume under random writes nearly every stripe is written once in a hysteresis: kept
    /// listed for the whole of it, they would fill the listed set (hundreds of thousands of
    /// entries, each in every checkpoint and each a cache miss when it leaves) for a fast path
    /// that almost no write takes. See `Journal::try_remove`.
    pub first_hysteresis_us: u64,
    /// Volumes of more stripes than this get [`JournalConfig::first_hysteresis_us`] (`None`:
    /// the listed set's bound, [`JournalConfig::max_entries`]). A smaller volume cannot fill
    /// the listed set, so every stripe it writes stays for the whole hysteresis.
    pub first_hysteresis_above: Option<u64>,
    /// Most channels (volumes × reactors) that can wait on this journal.
    pub max_channels: usize,
    /// How far ahead of a sequential stream of full-stripe writes its stripes are listed
    /// ([`Journal::list_ahead`]; 0: never).
    pub list_ahead: u64,
    /// Called with the address and length of each volume's table of stripe-state shards before
    /// it is first written (the runtime asks the kernel for huge pages there: a write looks up
    /// a random shard of up to 4 MiB of them, and with 4 KiB pages each such look-up also
    /// misses the TLB). Never reads or writes through the address.
    pub advise_state_memory: Option<fn(*const u8, usize)>,
    /// Starts fetching the memory at an address into the cache without waiting (a prefetch
    /// hint; never reads or writes through it). With it, the removal scan fetches the state
    /// shards of the entries due next while it decides on the current one.
    pub prefetch: Option<fn(*const u8)>,
    /// Simulator control only: [`Journal::device_added`] takes a replacement device without
    /// waiting until the survivor holds every durable record. The simulation must then find
    /// loss; no runtime sets it.
    pub control_replace_early: bool,
    /// Simulator control only: in [`JournalMode::Mirror`] a record the survivor alone holds
    /// releases its writers before the drop of the other device is recorded in the members'
    /// superblocks, and nothing asks the runtime to record it ([`Journal::drops_to_record`]).
    /// The simulation must then find loss; no runtime sets it.
    pub control_no_drop_record: bool,
    /// Loom control only: [`Journal::try_remove`] decides under the shard lock but removes
    /// under a later one (the removal rule of the module comment). The removal-race model must
    /// then fail; no build but loom's has the field.
    #[cfg(loom)]
    pub control_recheck_unlocked: bool,
    /// Loom control only: [`Journal::list_ahead`] lists a stripe whatever its word holds
    /// (instead of only one with nothing on it). The list-ahead model must then fail.
    #[cfg(loom)]
    pub control_list_over_anything: bool,
    /// Loom control only: the flusher closes a generation without waiting for the writers
    /// that entered it to leave ([`Journal::close_open`]). The group-commit model must then
    /// fail (a writer released by a record that lacks its stripe).
    #[cfg(loom)]
    pub control_skip_drain: bool,
    /// Loom control only: the flusher reads which channel rings to drain before it closes the
    /// generation (instead of after every writer of it left: [`Journal::take_marks`]). The
    /// model of a channel registering during a flush must then fail.
    #[cfg(loom)]
    pub control_drain_high_early: bool,
}

impl JournalConfig {
    /// Defaults: two generations / 100 ms hysteresis (up to 1 s while the listed set leaves
    /// room; 2 ms for a stripe written once on a large volume).
    pub fn new(uuid: [u8; 16], block_size: u32, slot_bytes: u64, slots: [(u32, u64); 2]) -> Self {
        JournalConfig {
            uuid,
            block_size,
            slot_bytes,
            slots,
            devices: 1,
            mode: JournalMode::Alternate,
            volatile_cache: false,
            hysteresis_generations: 2,
            hysteresis_us: 100_000,
            roomy_hysteresis_us: 1_000_000,
            first_hysteresis_us: 2_000,
            first_hysteresis_above: None,
            max_channels: 1024,
            list_ahead: 64,
            advise_state_memory: None,
            prefetch: None,
            control_replace_early: false,
            control_no_drop_record: false,
            #[cfg(loom)]
            control_recheck_unlocked: false,
            #[cfg(loom)]
            control_list_over_anything: false,
            #[cfg(loom)]
            control_skip_drain: false,
            #[cfg(loom)]
            control_drain_high_early: false,
        }
    }

    /// Most stripes listed at once (a checkpoint of them fills at most half an area).
    pub fn max_entries(&self) -> usize {
        record::max_listed(self.slot_bytes as usize)
    }
}

/// How a journal of two devices spreads its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    /// Generation g goes to device g mod 2 (with the deltas that device has not seen yet);
    /// checkpoints go to both. Losing a device at a crash costs a full resync.
    Alternate,
    /// Every record goes to both devices.
    Mirror,
}

impl JournalMode {
    /// The mode's name in RPCs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            JournalMode::Alternate => "alternate",
            JournalMode::Mirror => "mirror",
        }
    }
}

/// What [`Journal::try_remove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Taken out of the listed set.
    Removed,
    /// A write holds a mark on it.
    InUse,
    /// Clean, but at this time (µs), not before its hysteresis threshold (always the longer
    /// hysteresis: one written once leaves at the first look once clean, see
    /// [`Slot::hysteresis_from`]).
    Recent(u64),
    /// Clean long enough, but not yet covered by a member flush (one is asked for).
    Uncovered,
}

/// Outcome of [`Journal::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The stripe is listed in a durable record: go on.
    Ready,
    /// The stripe joins generation `g`: wait until it is durable.
    Wait(u64),
    /// The record is full: wait for space, then mark again.
    Full,
}

/// Per-volume stripe state kept by the journal.
pub struct JournalVolume {
    /// Volume number.
    pub number: u32,
    /// Stripes of the volume.
    stripes: u64,
    /// Whether a stripe written once leaves after the shorter first hysteresis (a volume of
    /// more stripes than [`JournalConfig::first_hysteresis_above`]).
    first_short: bool,
    /// The listed stripes' states (see the module comment), in shards: a stripe's state is in
    /// shard [`JournalVolume::shard_of`], present exactly while the stripe is listed. Memory
    /// and cache footprint follow the listed set (bounded by the record's room), not the
    /// volume. The table is `shards[first..]`: where the runtime asks for huge pages, a table of
    /// one huge page or more starts on a huge-page boundary of its allocation
    /// ([`Journal::new_shards`]), the shards before it unused.
    shards: Vec<Shard>,
    /// Index of the table's first shard in `shards`.
    first: usize,
    /// Whether the volume's members cache writes volatilely (re-evaluated when a replacement
    /// member joins: [`JournalVolume::set_volatile_members`]).
    volatile_members: AtomicBool,
    /// Start time of the latest completed member flush (µs); covers stripes cleaned before it.
    flushed_before_us: AtomicU64,
    /// Set when removals wait for a member flush; a channel of the volume then flushes members.
    pub member_flush_wanted: AtomicBool,
    /// Set while one of the volume's channels runs that member flush.
    pub member_flush_running: AtomicBool,
    /// Stripes of this volume in the newest record built (kept by `begin_flush`, so status
    /// never scans the stripes).
    listed_entries: AtomicU64,
    /// Journal devices the volume's member superblocks record as dropped (bit k: device k;
    /// see [`Journal::drops_to_record`]).
    drops_recorded: AtomicU64,
    /// The superblocks recorded drops when the volume was assembled, and its recovery has not
    /// released its carried stripes yet: those drops stay recorded until then.
    drops_held: AtomicBool,
}

/// Most shards of a volume's stripe states (4 MiB of them: see the module comment on the
/// table's span).
pub const MAX_STATE_SHARDS: u64 = 1 << 15;

/// Shards of the stripe states of a volume of `stripes` stripes on a journal whose record holds
/// `max_entries`. A smaller volume has one per `INLINE` consecutive stripes (a block: it
/// never overflows); a larger one, half the power of two at or above the record's room, and at
/// most [`MAX_STATE_SHARDS`] (the default 8 MiB journal area holds ~173k entries: 32,768 shards,
/// 5.3 states each when the listed set is full, those past a shard's four on its heap part),
/// each block of `INLINE` consecutive stripes in the shard a multiplicative hash of the block
/// picks, so that a sequential stream's states share lines. See `JournalVolume::shard_of`.
pub fn state_shards(stripes: u64, max_entries: usize) -> u64 {
    // (A bound past 2^63 has no next power of two: the most shards then.)
    let room = (max_entries as u64)
        .checked_next_power_of_two()
        .map_or(MAX_STATE_SHARDS, |p| p / 2)
        .clamp(1, MAX_STATE_SHARDS);
    let blocks = stripes.div_ceil(INLINE as u64).max(1);
    if blocks <= room {
        blocks
    } else {
        room
    }
}

/// A listed stripe's journal state, 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    stripe: u64,
    /// The generation the stripe was listed in (from [`GEN_SHIFT`] up; never 0, so 0 marks a
    /// free slot), whether it was written again while listed ([`REWRITTEN`]) and the writes
    /// that marked it and have not gone clean yet (below [`ACTIVE_BITS`]).
    word: u64,
    /// When its last write went clean (µs; 0: none since it was listed).
    clean_us: u64,
}

const ACTIVE_BITS: u32 = 16;
const ACTIVE_MAX: u64 = (1 << ACTIVE_BITS) - 1;
/// A write found the stripe listed after another write to it (active, or gone clean) since it
/// was listed: it stays for [`JournalConfig::hysteresis_us`], not the shorter
/// [`JournalConfig::first_hysteresis_us`].
const REWRITTEN: u64 = 1 << ACTIVE_BITS;
const GEN_SHIFT: u32 = ACTIVE_BITS + 1;

impl Slot {
    fn new(stripe: u64, generation: u64, active: u64) -> Slot {
        debug_assert!(generation > 0, "generations start at 1");
        Slot {
            stripe,
            word: generation << GEN_SHIFT | active,
            clean_us: 0,
        }
    }

    fn generation(&self) -> u64 {
        self.word >> GEN_SHIFT
    }

    fn rewritten(&self) -> bool {
        self.word & REWRITTEN != 0
    }

    /// When the stripe's hysteresis started and whether the longer one applies, for an entry
    /// due for a check since `due` (when it was listed, or last found in use, or went clean),
    /// on a volume where a stripe written once gets the shorter one (`first_short`) or not:
    /// - not written since it was listed (listed ahead of a stream): `due` and the longer one,
    ///   so that the stream still finds it listed;
    /// - written again while listed, or on a volume without the shorter one: its last clean
    ///   and the longer one;
    /// - written once: `due` and the shorter one. Its single write must be clean for it to
    ///   leave (the caller checks), and counting from `due` lets the flusher decide at its
    ///   first look once the shorter hysteresis has passed since the listing, instead of
    ///   looking a second time once it has passed since the write went clean (a write takes a
    ///   small part of the shorter hysteresis).
    fn hysteresis_from(&self, due: u64, first_short: bool) -> (u64, bool) {
        if self.clean_us == 0 && self.active() == 0 {
            (due, true)
        } else if self.rewritten() || !first_short {
            (self.clean_us, true)
        } else {
            (due, false)
        }
    }

    fn active(&self) -> u64 {
        self.word & ACTIVE_MAX
    }
}

/// States a shard holds in its own two cache lines.
const INLINE: usize = 4;

/// The states of one shard: the first [`INLINE`] in the shard itself (the count and the first
/// two in its first cache line, which the write path prefetches), more on the heap (a large
/// volume's listed set near the record's room: see [`state_shards`]).
#[derive(Default)]
#[repr(C)]
struct Slots {
    /// States held: `inline[..len.min(INLINE)]`, then `more`.
    len: u32,
    inline: [Slot; INLINE],
    /// Boxed: 8 bytes where a `Vec` takes 24. Kept once allocated (a shard that overflowed
    /// does not allocate again each time it does), so at most the peak overflow.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Slot>>>,
}

impl Slots {
    fn in_line(&self) -> usize {
        (self.len as usize).min(INLINE)
    }

    fn overflows(&self) -> bool {
        self.len as usize > INLINE
    }

    /// `stripe`'s state. The heap part is looked at only when the shard overflows: its pointer
    /// lies in the shard's second cache line, which the write path does not fetch ahead.
    fn find(&mut self, stripe: u64) -> Option<&mut Slot> {
        let n = self.in_line();
        if !self.overflows() {
            return self.inline[..n].iter_mut().find(|s| s.stripe == stripe);
        }
        let Slots { inline, more, .. } = self;
        inline
            .iter_mut()
            .chain(more.iter_mut().flat_map(|m| m.iter_mut()))
            .find(|s| s.stripe == stripe)
    }

    /// A copy of `stripe`'s state (the heap part looked at only as in [`Slots::find`]).
    fn get(&self, stripe: u64) -> Option<Slot> {
        let n = self.in_line();
        if !self.overflows() {
            return self.inline[..n]
                .iter()
                .find(|s| s.stripe == stripe)
                .copied();
        }
        self.inline
            .iter()
            .chain(self.more.iter().flat_map(|m| m.iter()))
            .find(|s| s.stripe == stripe)
            .copied()
    }

    fn insert(&mut self, slot: Slot) {
        match self.inline.get_mut(self.len as usize) {
            Some(free) => *free = slot,
            None => self.more.get_or_insert_with(Box::default).push(slot),
        }
        self.len += 1;
    }

    /// Take `stripe`'s state out; false when it has none. The states in the line stay first:
    /// the last one (from the heap, when the shard overflows) takes the freed place.
    fn remove(&mut self, stripe: u64) -> bool {
        let n = self.in_line();
        let overflows = self.overflows();
        if let Some(i) = self.inline[..n].iter().position(|s| s.stripe == stripe) {
            // The heap part only when the shard overflows (see `find`).
            let last = if overflows {
                self.more.as_mut().and_then(|m| m.pop()).unwrap_or_default()
            } else {
                std::mem::take(&mut self.inline[n - 1])
            };
            if i < n - 1 || overflows {
                self.inline[i] = last;
            }
        } else {
            if !overflows {
                return false;
            }
            let Some(more) = self.more.as_mut() else {
                return false;
            };
            let Some(i) = more.iter().position(|s| s.stripe == stripe) else {
                return false;
            };
            more.swap_remove(i);
        }
        self.len -= 1;
        true
    }
}

/// One shard: its lock and its first states in two cache lines (128 bytes).
#[repr(align(128))]
struct Shard(ShardLock<Slots>);

/// Bytes of memory a volume of `stripes` stripes keeps for its journal state on a journal whose
/// record holds `max_entries`, besides the states beyond four per shard (24 bytes each):
/// its table of shards, and for a table of a huge page or more, up to a huge page before it
/// and the rest of its last one (see [`Journal::new_shards`]).
pub fn state_table_bytes(stripes: u64, max_entries: usize) -> u64 {
    let table = state_shards(stripes, max_entries) * std::mem::size_of::<Shard>() as u64;
    let huge = HUGE_PAGE as u64;
    if table >= huge {
        table.next_multiple_of(huge) + huge
    } else {
        table
    }
}

/// The huge page a table of shards is aligned to ([`Journal::new_shards`]): x86-64's 2 MiB.
const HUGE_PAGE: usize = 2 << 20;

impl JournalVolume {
    /// Shard of `stripe`'s state ([`state_shards`]): its block of [`INLINE`] consecutive
    /// stripes when the volume has a shard per block, else a multiplicative hash of that block
    /// (so that streams at a regular stride do not share shards, and a sequential one shares
    /// lines).
    fn shard_of(&self, stripe: u64) -> &ShardLock<Slots> {
        let table = self.table();
        let n = table.len();
        let i = if self.stripes.div_ceil(INLINE as u64) <= n as u64 {
            // A block's index is below n for every stripe of the volume (no division by n).
            ((stripe / INLINE as u64) as usize).min(n - 1)
        } else {
            // Each block of INLINE consecutive stripes in one shard, the blocks spread by a
            // multiplicative hash: a sequential stream (a full-stripe stream and the stripes
            // listed ahead of it) finds the states of its next stripes in the line of its last.
            ((stripe / INLINE as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (n - 1)
        };
        &table[i].0
    }

    /// The table of shards.
    fn table(&self) -> &[Shard] {
        &self.shards[self.first..]
    }

    /// Address of `stripe`'s shard, for a prefetch hint only (see
    /// [`crate::engine::Backend::prefetch`]); never dereferenced through it.
    pub fn state_address(&self, stripe: u64) -> *const u8 {
        (self.shard_of(stripe) as *const ShardLock<Slots>).cast()
    }

    /// `stripe`'s state, if listed.
    fn slot(&self, stripe: u64) -> Option<Slot> {
        lock_shard(self.shard_of(stripe)).get(stripe)
    }

    /// Stripes of the volume.
    pub fn stripes(&self) -> u64 {
        self.stripes
    }

    /// Stripes of this volume listed in the newest record built (a counter, O(1)).
    pub fn listed_entries(&self) -> u64 {
        self.listed_entries.load(Relaxed)
    }

    /// The volume's members now do (or no longer do) cache writes volatilely: a replacement
    /// member joined. Set before any write reaches the new member: from then on a stripe
    /// leaves the record only after a member flush that started after it went clean.
    pub fn set_volatile_members(&self, on: bool) {
        self.volatile_members.store(on, Release);
    }

    /// Whether the volume's members cache writes volatilely.
    pub fn volatile_members(&self) -> bool {
        self.volatile_members.load(Acquire)
    }

    /// Record that a member flush which started at `started_us` completed.
    pub fn member_flush_done(&self, started_us: u64) {
        self.flushed_before_us.fetch_max(started_us, AcqRel);
        self.member_flush_running.store(false, Release);
    }

    /// Number of marks currently held on `stripe` (for tests and status).
    pub fn active(&self, stripe: u64) -> u64 {
        self.slot(stripe).map_or(0, |s| s.active())
    }

    /// Whether `stripe` is listed (durable or about to be).
    pub fn listed(&self, stripe: u64) -> bool {
        self.slot(stripe).is_some()
    }
}

/// Changes to volumes' [`JournalVolume::listed_entries`] summed while the flusher goes through
/// entries, and applied with one atomic add per run of entries of the same volume.
#[derive(Default)]
struct ListedCounts<'a> {
    run: Option<(&'a JournalVolume, i64)>,
}

impl<'a> ListedCounts<'a> {
    fn add(&mut self, v: &'a JournalVolume, delta: i64) {
        match &mut self.run {
            Some((cur, n)) if std::ptr::eq(*cur, v) => *n += delta,
            _ => {
                self.apply();
                self.run = Some((v, delta));
            }
        }
    }

    fn apply(&mut self) {
        if let Some((v, n)) = self.run.take() {
            if n > 0 {
                v.listed_entries.fetch_add(n as u64, Relaxed);
            } else if n < 0 {
                v.listed_entries.fetch_sub(n.unsigned_abs(), Relaxed);
            }
        }
    }
}

/// Counters.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Record writes issued.
    pub record_writes: AtomicU64,
    /// Marks taken (counted by the channels, added at their ticks).
    pub marks: AtomicU64,
    /// Marks that found their stripe already durable (likewise).
    pub fast_path: AtomicU64,
    /// Marks that found the record full.
    pub full: AtomicU64,
    /// Record bytes written (checkpoints and deltas, padding included).
    pub bytes_written: AtomicU64,
    /// Checkpoints among the records written.
    pub checkpoints: AtomicU64,
    /// User write I/Os on the journal's volumes (counted by their channels).
    pub user_writes: AtomicU64,
    /// Listed entries looked at for removal (a record looks only at those due).
    pub removal_checks: AtomicU64,
    /// Stripes listed ahead of sequential full-stripe writes ([`Journal::list_ahead`]).
    pub listed_ahead: AtomicU64,
    /// Journal devices lost while running.
    pub devices_lost: AtomicU64,
    /// Records that reached no device and were carried by the next one to the survivor.
    pub record_retries: AtomicU64,
}

impl JournalStats {
    /// Add a channel's counts (channels count marks, fast-path marks and user writes locally
    /// and add them here now and then).
    pub fn add(&self, marks: u64, fast_path: u64, user_writes: u64) {
        if marks > 0 {
            self.marks.fetch_add(marks, Relaxed);
        }
        if fast_path > 0 {
            self.fast_path.fetch_add(fast_path, Relaxed);
        }
        if user_writes > 0 {
            self.user_writes.fetch_add(user_writes, Relaxed);
        }
    }

    /// Record bytes written per user write so far (0 before the first write).
    pub fn bytes_per_write(&self) -> f64 {
        ratio(
            self.bytes_written.load(Relaxed),
            self.user_writes.load(Relaxed),
        )
    }

    /// Records written per user write so far (0 before the first write).
    pub fn records_per_write(&self) -> f64 {
        ratio(
            self.record_writes.load(Relaxed),
            self.user_writes.load(Relaxed),
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// What the flusher must write, from [`Journal::begin_flush`]: one write per journal device
/// it goes to ([`FlushJob::writes`]), each followed by a device flush when `flush_after`. Each
/// write's result goes to [`Journal::write_done`].
#[derive(Debug)]
pub struct FlushJob {
    /// Generation of the record.
    pub generation: u64,
    /// Checkpoint or delta.
    pub kind: record::Kind,
    /// Whether a device flush must follow each write.
    pub flush_after: bool,
    writes: [JournalWrite; 2],
    count: usize,
}

impl FlushJob {
    /// The writes, one per journal device (at most two).
    pub fn writes(&self) -> &[JournalWrite] {
        &self.writes[..self.count]
    }
}

/// One write of a [`FlushJob`]: `out[start..end]` of the buffer `begin_flush` filled, at block
/// `lba` of journal device `dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalWrite {
    /// Journal device index.
    pub dev: u32,
    /// First block.
    pub lba: u64,
    /// Byte range in the record buffer.
    pub start: usize,
    /// End of that range.
    pub end: usize,
}

/// What [`Journal::write_done`] made of a record's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Other writes of the record are still in flight.
    Pending,
    /// The record is durable (on at least one live device); waiters are in `notify`. `again`:
    /// another record write is wanted now.
    Durable {
        /// Write another record now.
        again: bool,
    },
    /// The record reached no device, but a journal device is still live: it was lost, and the
    /// next record (write one now) carries this one's changes to the survivor. Nobody is told
    /// yet: the waiters are told when that record is durable.
    Retry,
    /// No journal device is left: the journal failed; waiters are in `notify`.
    Failed,
}

/// The record write in flight (flusher state).
#[derive(Debug, Clone, Copy)]
struct InFlight {
    generation: u64,
    /// The record is a checkpoint.
    checkpoint: bool,
    /// Per device: whether it held every chain byte written before this record when the
    /// record was placed (every durable record; see [`Journal::device_added`]).
    held_before: [bool; 2],
    /// Writes not yet reported.
    left: usize,
    /// Devices whose write succeeded.
    ok: [bool; 2],
    /// Per device written to: the chain bytes it holds once its write succeeds.
    ends: [Option<u64>; 2],
}

/// An iterator of `n` items, said so (a checkpoint's entries straight from the listed queues,
/// whose lengths are known): stops after `n`.
struct Counted<I>(I, usize);

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if self.1 == 0 {
            return None;
        }
        self.1 -= 1;
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

/// Queue of listed entries that went clean recently and stay for the longer hysteresis
/// ([`Listed::queues`]).
const SOON: usize = 0;
/// Queue of the other listed entries.
const LATER: usize = 1;

/// Stripes that went clean strictly before these times may leave the record: `first` for a
/// stripe written once since it was listed, `again` for one written again while listed
/// ([`JournalConfig::first_hysteresis_us`], [`JournalConfig::hysteresis_us`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Thresholds {
    first: u64,
    again: u64,
}

impl Thresholds {
    /// The same threshold for every stripe.
    #[cfg(test)]
    fn both(t: u64) -> Thresholds {
        Thresholds { first: t, again: t }
    }

    /// The threshold of a stripe, by whether it was written again while listed.
    fn of(&self, rewritten: bool) -> u64 {
        if rewritten {
            self.again
        } else {
            self.first
        }
    }

    /// The threshold below which entries of queue `qi` are due for a check: [`SOON`] holds
    /// stripes of the longer hysteresis, [`LATER`] may hold stripes written once.
    fn of_queue(&self, qi: usize) -> u64 {
        self.of(qi == SOON)
    }
}

/// Flusher-only state.
struct Listed {
    /// Every listed entry (of attached volumes), with the time (µs) from which it is due for a
    /// removal check, in two queues each roughly in order of that time: [`SOON`] holds entries
    /// found clean but not yet past the longer hysteresis (due: when they went clean), and the
    /// entries of volumes without the shorter first hysteresis (see [`Journal::queue_for_check`]);
    /// [`LATER`] the others (due: when they were marked, or last found in use).
    queues: [VecDeque<(Entry, u64)>; 2],
    /// Entries of volumes not yet recovered (or stripes at risk): always in the record.
    carried: HashSet<Entry>,
    /// Close times of recent generations, newest last: (generation, µs).
    closes: VecDeque<(u64, u64)>,
    /// Entries added since the last record.
    adds: Vec<Entry>,
    /// Entries removed since the last record.
    removes: Vec<Entry>,
    /// Area holding the chain the next delta extends.
    area: usize,
    /// Bytes of that area the chain occupies; 0: the next record is a checkpoint in the other
    /// area (always so for the first record after a restart).
    used: u64,
    /// Generation of the chain's checkpoint.
    base: u64,
    /// Scratch for a checkpoint's entries (kept: a checkpoint may hold a hundred thousand).
    scratch: Vec<Entry>,
    /// Two devices: per device, the bytes of the current area's chain it holds (the chain is
    /// the same on both, each holding a prefix of it; a device written to next gets the rest).
    written: [u64; 2],
    /// Two devices: the chain's bytes from `tail_start` on (what some live device lacks).
    tail: Vec<u8>,
    /// Chain offset of `tail[0]`.
    tail_start: u64,
    /// The record write in flight.
    job: Option<InFlight>,
}

/// The words a mark that lists a stripe changes, each with a read-modify-write: together, on
/// lines of their own. Every reactor's new marks change them, so their line moves to the
/// marking reactor each time: one line for the three, not one each; and none of the words
/// every write only reads (the durable generation a fast-path mark reads, the failed flag, the
/// space-waiter count every clean reads) lies on it, so those reads do not miss each time
/// another reactor lists a stripe.
#[repr(align(128))]
struct MarkWords {
    /// Generation open for marks, and how many writers entered it: `(g << ENTER_BITS) | n`
    /// ([`Journal::enter_open`]).
    open: AtomicU64,
    /// Writers that entered generation g and left it, at index g % 2.
    left: [AtomicU64; 2],
    /// Entries listed or queued (bounded by the record size).
    reserved: AtomicU64,
}

/// A dirty-stripe journal shared by the volumes on it.
pub struct Journal {
    /// Configuration.
    pub cfg: JournalConfig,
    /// The words every mark of a stripe not yet listed changes (see [`MarkWords`]).
    mw: MarkWords,
    /// Newest durable generation.
    durable: AtomicU64,
    /// Highest generation some writer waits for.
    wanted: AtomicU64,
    /// Writers waiting for room in the record.
    space_waiters: AtomicU64,
    /// A record write is in flight.
    in_flight: AtomicBool,
    /// Set once a record write failed: no write may proceed any more.
    failed: AtomicBool,
    /// Per journal device: still in use (a device whose record write failed, or that went
    /// away, is not written again; with none left the journal fails).
    live: [AtomicBool; 2],
    /// Per journal device: a checkpoint has been durable on it since this journal was opened
    /// or the device was added ([`Journal::device_added`]); until then it may be behind.
    whole: [AtomicBool; 2],
    /// Earliest time (µs) the timer may scan the listed set again for stripes ready to leave.
    next_scan_us: AtomicU64,
    /// Entries marked since the last close.
    queue: MarkQueue<Entry>,
    /// Per channel: lowest generation it waits for (u64::MAX: none).
    waits: Box<[AtomicU64]>,
    /// Address of each registered channel, by slot; no longer than the highest slot in use
    /// (a record's completion looks at these slots only).
    channels: Mutex<Vec<Option<Address>>>,
    /// Volumes on this journal.
    volumes: Mutex<Vec<Arc<JournalVolume>>>,
    /// Flusher state.
    listed: Mutex<Listed>,
    /// Counters.
    pub stats: JournalStats,
}

impl Journal {
    /// A journal resuming from `last`, the newest state read from disk ([`record::newest`];
    /// `None` for a new journal). Its entries are carried until their volumes are recovered.
    /// The first record written is a checkpoint in the area `last` is not in.
    pub fn new(cfg: JournalConfig, last: Option<record::Record>) -> Journal {
        let (last_generation, carried, area) =
            last.map_or((0, Vec::new(), 1), |r| (r.generation, r.entries, r.area));
        let cap = cfg.max_entries().max(1);
        let waits = (0..cfg.max_channels)
            .map(|_| AtomicU64::new(u64::MAX))
            .collect();
        Journal {
            mw: MarkWords {
                open: AtomicU64::new((last_generation + 1) << ENTER_BITS),
                left: [AtomicU64::new(0), AtomicU64::new(0)],
                reserved: AtomicU64::new(carried.len() as u64),
            },
            durable: AtomicU64::new(last_generation),
            wanted: AtomicU64::new(last_generation),
            space_waiters: AtomicU64::new(0),
            in_flight: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            live: [AtomicBool::new(true), AtomicBool::new(cfg.devices > 1)],
            whole: [AtomicBool::new(false), AtomicBool::new(false)],
            next_scan_us: AtomicU64::new(0),
            queue: MarkQueue::new(cap, cfg.max_channels),
            waits,
            channels: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
            listed: Mutex::new(Listed {
                queues: [VecDeque::new(), VecDeque::new()],
                carried: carried.into_iter().collect(),
                closes: VecDeque::new(),
                adds: Vec::new(),
                removes: Vec::new(),
                area,
                used: 0,
                base: 0,
                scratch: Vec::new(),
                written: [0; 2],
                tail: Vec::new(),
                tail_start: 0,
                job: None,
            }),
            stats: JournalStats::default(),
            cfg,
        }
    }

    /// A table of `n` empty shards, in memory the runtime was asked to advise on before the
    /// table is written ([`JournalConfig::advise_state_memory`]): the shards, and the index of
    /// the table's first one among them.
    ///
    /// The kernel backs with a huge page only a whole aligned huge page of the advised range,
    /// and an allocation of a few MiB rarely starts on one: a 4 MiB table (8 GiB members) got
    /// none at all, every look-up of a random shard then also missing the TLB. So a table of a
    /// huge page or more starts at the first boundary of an allocation a huge page larger than
    /// the whole huge pages it spans (so that its last one lies inside too); the shards before
    /// it are never used. The allocation is kept as it is (a `Vec` with room left: shrinking it
    /// could move it).
    fn new_shards(&self, n: u64) -> (Vec<Shard>, usize) {
        let n = n as usize;
        let size = std::mem::size_of::<Shard>();
        let Some(advise) = self.cfg.advise_state_memory else {
            let mut v = Vec::with_capacity(n);
            v.extend((0..n).map(|_| Shard(ShardLock::new(Slots::default()))));
            return (v, 0);
        };
        let large = n * size >= HUGE_PAGE;
        // A large table's room: whole huge pages from its boundary on (its last page too, when
        // the table ends inside one), and a huge page before it to find the boundary in.
        let room = if large {
            (n * size).next_multiple_of(HUGE_PAGE) + HUGE_PAGE
        } else {
            n * size
        };
        let mut v: Vec<Shard> = Vec::with_capacity(room / size);
        let at = v.as_ptr() as usize;
        // Shards are 128-byte aligned, and so is every huge-page boundary.
        let first = if large {
            (at.next_multiple_of(HUGE_PAGE) - at) / size
        } else {
            0
        };
        advise(v.as_ptr().cast(), room);
        v.extend((0..first + n).map(|_| Shard(ShardLock::new(Slots::default()))));
        (v, first)
    }

    /// Add a volume of `stripes` stripes. Its carried entries are handed back: the caller resyncs
    /// them, then calls [`Journal::release_carried`] and forces a record write.
    pub fn attach_volume(
        &self,
        number: u32,
        stripes: u64,
        volatile_members: bool,
    ) -> (Arc<JournalVolume>, Vec<u64>) {
        let (shards, first) = self.new_shards(state_shards(stripes, self.cfg.max_entries()));
        let jv = Arc::new(JournalVolume {
            number,
            stripes,
            first_short: stripes
                > self
                    .cfg
                    .first_hysteresis_above
                    .unwrap_or(self.cfg.max_entries() as u64),
            shards,
            first,
            volatile_members: AtomicBool::new(volatile_members),
            flushed_before_us: AtomicU64::new(0),
            member_flush_wanted: AtomicBool::new(false),
            member_flush_running: AtomicBool::new(false),
            listed_entries: AtomicU64::new(0),
            drops_recorded: AtomicU64::new(0),
            drops_held: AtomicBool::new(false),
        });
        lock(&self.volumes).push(jv.clone());
        // Only stripes this volume has: a carried entry past its end cannot be its own.
        let mut carried: Vec<u64> = lock(&self.listed)
            .carried
            .iter()
            .filter(|e| e.volume == number && e.stripe < stripes)
            .map(|e| e.stripe)
            .collect();
        carried.sort_unstable();
        (jv, carried)
    }

    /// Stripes of `volume` carried from the record recovery started from, ascending.
    pub fn carried_stripes(&self, volume: u32) -> Vec<u64> {
        let l = lock(&self.listed);
        let mut v: Vec<u64> = l
            .carried
            .iter()
            .filter(|e| e.volume == volume)
            .map(|e| e.stripe)
            .collect();
        v.sort_unstable();
        v
    }

    /// Stop carrying `volume`'s old entries, except `at_risk` ones (which stay listed). They
    /// leave with the next record, except those a write listed again meanwhile.
    pub fn release_carried(&self, volume: u32, at_risk: &[u64]) {
        let mut guard = lock(&self.listed);
        let l = &mut *guard;
        let jv = lock(&self.volumes)
            .iter()
            .find(|v| v.number == volume)
            .cloned();
        if jv
            .as_ref()
            .is_some_and(|v| v.drops_held.swap(false, SeqCst))
        {
            // Devices recorded dropped may be behind until they hold a checkpoint of what the
            // journal lists now: the next record is one ([`Journal::drops_to_record`]).
            l.used = 0;
            for w in &self.whole {
                w.store(false, SeqCst);
            }
        }
        let keep: HashSet<u64> = at_risk.iter().copied().collect();
        let (removes, carried) = (&mut l.removes, &mut l.carried);
        let before = carried.len();
        carried.retain(|e| {
            let stays = e.volume != volume || keep.contains(&e.stripe);
            // A stripe a write has listed since is in the record as the write's: it leaves
            // when that write's entry does. (A mark racing this check adds it again in this
            // record or a later one; a record applies its removals before its additions.)
            let relisted = jv
                .as_ref()
                .is_some_and(|v| e.stripe < v.stripes && v.listed(e.stripe));
            if !stays && !relisted {
                removes.push(*e);
            }
            stays
        });
        let dropped = before - carried.len();
        self.mw.reserved.fetch_sub(dropped as u64, AcqRel);
    }

    /// Remove a volume (its listed stripes leave with the next record).
    pub fn detach_volume(&self, number: u32) {
        // Under the record lock (as `begin_flush`): the volume's listed entries leave now, not
        // at the next record, so a volume attached later under the same number never takes
        // them for its own (they would index its stripes, possibly past its end).
        let mut guard = lock(&self.listed);
        let l = &mut *guard;
        lock(&self.volumes).retain(|v| v.number != number);
        // Queued marks belong to the next record; take them in now so the volume's leave too.
        self.queue.drain(|e| {
            l.adds.push(e);
            l.queues[LATER].push_back((e, 0));
        });
        // Entries not yet written leave silently; written ones leave as removals.
        l.adds.retain(|e| e.volume != number);
        let (removes, queues) = (&mut l.removes, &mut l.queues);
        let mut dropped = 0;
        for q in queues.iter_mut() {
            let before = q.len();
            q.retain(|(e, _)| {
                if e.volume == number {
                    removes.push(*e);
                }
                e.volume != number
            });
            dropped += before - q.len();
        }
        self.mw.reserved.fetch_sub(dropped as u64, AcqRel);
    }

    /// Register a channel for durability notifications; returns its slot.
    pub fn register_channel(&self, addr: Address) -> Option<usize> {
        let mut c = lock(&self.channels);
        let i = match c.iter().position(|a| a.is_none()) {
            Some(i) => i,
            None if c.len() < self.waits.len() => {
                c.push(None);
                c.len() - 1
            }
            None => return None,
        };
        c[i] = Some(addr);
        self.waits[i].store(u64::MAX, SeqCst);
        self.queue.open_slot(i);
        Some(i)
    }

    /// Forget a channel slot.
    pub fn unregister_channel(&self, slot: usize) {
        let mut c = lock(&self.channels);
        c[slot] = None;
        while c.last().is_some_and(|a| a.is_none()) {
            c.pop();
        }
        self.waits[slot].store(u64::MAX, SeqCst);
    }

    /// Newest durable generation.
    pub fn durable_generation(&self) -> u64 {
        self.durable.load(SeqCst)
    }

    /// Generation open for marks.
    pub fn open_generation(&self) -> u64 {
        self.mw.open.load(SeqCst) >> ENTER_BITS
    }

    /// Listed entries (durable or queued), for status.
    pub fn listed_count(&self) -> u64 {
        self.mw.reserved.load(Relaxed)
    }

    /// Whether a record write is in flight (then [`Journal::begin_flush`] returns `None`: this
    /// is its first check, the same SeqCst load).
    pub fn record_in_flight(&self) -> bool {
        self.in_flight.load(SeqCst)
    }

    /// True once a record write failed; writes must then fail until a new journal is attached.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Acquire)
    }

    /// Mark `stripe` of `jv` dirty before writing it. Under the stripe's shard lock (marks of
    /// stripes of other shards run in parallel); joining the open generation is lock-free.
    pub fn mark(&self, jv: &JournalVolume, stripe: u64) -> Mark {
        self.mark_from(None, jv, stripe)
    }

    /// [`Journal::mark`] from the channel registered in `slot` ([`Journal::register_channel`]):
    /// a stripe it lists is queued in that channel's own ring (see `MarkQueue`).
    pub fn mark_on(&self, slot: usize, jv: &JournalVolume, stripe: u64) -> Mark {
        self.mark_from(Some(slot), jv, stripe)
    }

    /// [`Journal::mark`], queueing a listed stripe in channel slot `chan`'s ring (`None`: the
    /// shared one).
    fn mark_from(&self, chan: Option<usize>, jv: &JournalVolume, stripe: u64) -> Mark {
        let mut shard = lock_shard(jv.shard_of(stripe));
        if let Some(slot) = shard.find(stripe) {
            debug_assert!(slot.active() < ACTIVE_MAX, "active marks overflow");
            if slot.active() > 0 || slot.clean_us != 0 {
                slot.word |= REWRITTEN; // not its first write since it was listed
            }
            slot.word += 1;
            let g = slot.generation();
            drop(shard);
            if g <= self.durable.load(SeqCst) {
                return Mark::Ready;
            }
            return Mark::Wait(g);
        }
        // Room in the record first: never overfill, never skip.
        if self.mw.reserved.fetch_add(1, AcqRel) >= self.cfg.max_entries() as u64 {
            self.mw.reserved.fetch_sub(1, AcqRel);
            self.stats.full.fetch_add(1, Relaxed);
            return Mark::Full;
        }
        let g = self.enter_open();
        shard.insert(Slot::new(stripe, g, 1));
        drop(shard);
        self.queue_entry(chan, jv, stripe);
        self.leave(g);
        Mark::Wait(g)
    }

    /// Queue the entry of a stripe of `jv` just listed, for the open generation's record (the
    /// caller entered the generation and reserved room for the entry).
    fn queue_entry(&self, chan: Option<usize>, jv: &JournalVolume, stripe: u64) {
        // Cannot fail: `reserved` bounds the queue and the listed set together.
        let pushed = self.queue.push(
            chan,
            Entry {
                volume: jv.number,
                stripe,
            },
        );
        debug_assert!(pushed.is_ok(), "mark queue over its reserved bound");
    }

    /// Enter the open generation: one increment of the word that holds it and the count of
    /// writers that entered it. The flusher closes g by swapping that word to (g + 1, none)
    /// ([`Journal::close_open`]): an increment before the swap in the word's modification order
    /// is counted in what the swap returns, and the flusher then waits until as many writers
    /// left g; one after it entered g + 1. So an entry queued by a writer of g before it leaves
    /// is always drained into record g. The caller queues its entries, then calls
    /// [`Journal::leave`].
    fn enter_open(&self) -> u64 {
        let v = self.mw.open.fetch_add(1, SeqCst);
        debug_assert!(v & ENTER_MASK < ENTER_MASK, "writers entering overflow");
        v >> ENTER_BITS
    }

    /// Leave generation `g` (entered with [`Journal::enter_open`]), its entries queued.
    fn leave(&self, g: u64) {
        self.mw.left[(g % 2) as usize].fetch_add(1, SeqCst);
    }

    /// Close the open generation (the flusher, one at a time) and wait until every writer that
    /// entered it has left (its entries are then in the queue). Returns it.
    fn close_open(&self) -> u64 {
        let mut cur = self.mw.open.load(SeqCst);
        let (g, entered) = loop {
            let g = cur >> ENTER_BITS;
            match self
                .mw
                .open
                .compare_exchange_weak(cur, (g + 1) << ENTER_BITS, SeqCst, SeqCst)
            {
                Ok(_) => break (g, cur & ENTER_MASK),
                Err(x) => cur = x,
            }
        };
        // Writers that entered g are a few instructions from leaving it. Nobody enters g or
        // g + 2 (which shares the counter) before the next close, so the count goes back to 0.
        let left = &self.mw.left[(g % 2) as usize];
        #[cfg(loom)]
        let wait = !self.cfg.control_skip_drain;
        #[cfg(not(loom))]
        let wait = true;
        while wait && left.load(SeqCst) < entered {
            spin();
        }
        left.fetch_sub(entered, SeqCst);
        g
    }

    /// List stripes `from..to` of `jv` (those past its end are left out) in the open generation
    /// without a mark: ahead of a sequential stream of full-stripe writes, so that when the
    /// stream reaches them they are durable already and its writes take the fast path instead
    /// of each waiting for a record. Only a stripe not listed joins (under its shard lock, as a
    /// mark lists one), so a stripe is never listed twice and a mark racing it either comes
    /// first or finds it listed. It is then listed as a clean stripe is, and leaves as one does once its hysteresis is over. A
    /// hint: with little room left in the record it lists fewer, or none. Returns the generation
    /// the listed ones joined (the caller asks for it: [`Journal::request`]), or None.
    pub fn list_ahead(&self, jv: &JournalVolume, from: u64, to: u64) -> Option<u64> {
        self.list_ahead_from(None, jv, from, to)
    }

    /// [`Journal::list_ahead`] from the channel registered in `slot`: the stripes it lists are
    /// queued in that channel's own ring, as its marks are ([`Journal::mark_on`]).
    pub fn list_ahead_on(
        &self,
        slot: usize,
        jv: &JournalVolume,
        from: u64,
        to: u64,
    ) -> Option<u64> {
        self.list_ahead_from(Some(slot), jv, from, to)
    }

    /// [`Journal::list_ahead`], queueing the stripes listed in channel slot `chan`'s ring
    /// (`None`: the shared one).
    fn list_ahead_from(
        &self,
        chan: Option<usize>,
        jv: &JournalVolume,
        from: u64,
        to: u64,
    ) -> Option<u64> {
        let to = to.min(jv.stripes);
        if from >= to || self.is_failed() {
            return None;
        }
        let want = to - from;
        // Room as for a mark (never overfill), for the whole range at once; what is not used
        // goes back below.
        let before = self.mw.reserved.fetch_add(want, AcqRel);
        let room = (self.cfg.max_entries() as u64)
            .saturating_sub(before)
            .min(want);
        let mut listed = 0;
        let mut joined = None;
        if room > 0 {
            // The shards of stripes not yet written are rarely in a near cache (at 1 TiB members
            // they are random lines of a 4 MiB table): each is fetched a few stripes ahead of
            // its lock, instead of one miss after another.
            const AHEAD: u64 = 8;
            let prefetch = self.cfg.prefetch;
            if let Some(pf) = prefetch {
                for stripe in from..(from + AHEAD).min(to) {
                    pf(jv.state_address(stripe));
                }
            }
            let g = self.enter_open();
            for stripe in from..to {
                if listed == room {
                    break;
                }
                if let Some(pf) = prefetch.filter(|_| stripe + AHEAD < to) {
                    pf(jv.state_address(stripe + AHEAD));
                }
                let mut shard = lock_shard(jv.shard_of(stripe));
                #[cfg(loom)]
                let over_anything = self.cfg.control_list_over_anything;
                #[cfg(not(loom))]
                let over_anything = false;
                if !over_anything && shard.find(stripe).is_some() {
                    continue;
                }
                shard.insert(Slot::new(stripe, g, 0));
                drop(shard);
                self.queue_entry(chan, jv, stripe);
                listed += 1;
            }
            self.leave(g);
            if listed > 0 {
                self.stats.listed_ahead.fetch_add(listed, Relaxed);
                joined = Some(g);
            }
        }
        self.mw.reserved.fetch_sub(want - listed, AcqRel);
        joined
    }

    /// The writer of `stripe` is done (data and parity written). Returns true when a record
    /// write would help (writers wait for room).
    ///
    /// `now_us`: when it went clean. Where the volume's members cache writes volatilely
    /// ([`JournalVolume::volatile_members`]) it must be read after the writes completed: a
    /// member flush that started before it then never counts as covering them
    /// ([`Journal::clean_covered`]). Elsewhere it only times the stripe's hysteresis, and a
    /// time a little before that will do (the flag is set before any write reaches a member
    /// that caches volatilely: a write that read it clear wrote no such member).
    pub fn clean(&self, jv: &JournalVolume, stripe: u64, now_us: u64) -> bool {
        let mut shard = lock_shard(jv.shard_of(stripe));
        let slot = shard.find(stripe);
        debug_assert!(
            slot.as_ref().is_some_and(|s| s.active() > 0),
            "clean without mark"
        );
        if let Some(s) = slot.filter(|s| s.active() > 0) {
            s.word -= 1;
            s.clean_us = s.clean_us.max(now_us);
        }
        drop(shard);
        self.space_waiters.load(SeqCst) > 0
    }

    /// Ask for generation `g` to become durable.
    pub fn request(&self, g: u64) {
        self.wanted.fetch_max(g, SeqCst);
    }

    /// A writer starts waiting for room; [`Journal::space_done`] ends it.
    pub fn space_wait(&self) {
        self.space_waiters.fetch_add(1, SeqCst);
        self.request(self.open_generation());
    }

    /// A writer stops waiting for room.
    pub fn space_done(&self) {
        self.space_waiters.fetch_sub(1, SeqCst);
    }

    /// Channel `slot` waits for generation `g`. Returns true when `g` is already durable (the
    /// caller goes on at once; a message may still come and is harmless).
    pub fn subscribe(&self, slot: usize, g: u64) -> bool {
        // RMW on both sides (here and in `finish_flush`): whichever comes second in `waits`'
        // modification order sees the other's write.
        self.waits[slot].fetch_min(g, SeqCst);
        self.durable.fetch_add(0, SeqCst) >= g
    }

    /// Whether a record write would do something now: a waiter wants a generation not yet
    /// durable, or (with `timer`) listed stripes are ready to leave.
    pub fn flush_useful(&self, timer: bool, now_us: u64) -> bool {
        if self.wanted.fetch_add(0, SeqCst) > self.durable.load(SeqCst)
            || self.space_waiters.load(SeqCst) > 0
        {
            return true;
        }
        timer && self.scan_due(now_us) && self.removable_exists(now_us)
    }

    /// Rate-limits the timer's scan of the listed set to once per interval across all channels
    /// (a quarter of the hysteresis, between 1 ms and 25 ms).
    fn scan_due(&self, now_us: u64) -> bool {
        let next = self.next_scan_us.load(Relaxed);
        if now_us < next {
            return false;
        }
        let interval = (self.cfg.hysteresis_us / 4).clamp(1_000, 25_000);
        self.next_scan_us
            .compare_exchange(next, now_us + interval, Relaxed, Relaxed)
            .is_ok()
    }

    /// Whether the next record would remove something: looks at the first few entries due.
    fn removable_exists(&self, now_us: u64) -> bool {
        let Ok(l) = self.listed.try_lock() else {
            return false;
        };
        if !l.removes.is_empty() {
            return true;
        }
        let vols = lock(&self.volumes);
        let th = self.hysteresis_threshold(&l, now_us);
        l.queues.iter().enumerate().any(|(qi, q)| {
            q.iter()
                .take(64)
                .take_while(|(_, due)| *due < th.of_queue(qi))
                .any(|&(e, due)| {
                    vols.iter()
                        .find(|v| v.number == e.volume)
                        .is_none_or(|v| self.removable(v, e.stripe, due, th))
                })
        })
    }

    /// The longer hysteresis now: [`JournalConfig::roomy_hysteresis_us`] while the listed set
    /// holds at most a quarter of the record's room, [`JournalConfig::hysteresis_us`] from
    /// three quarters on, and linearly between (a gradual fall: a sudden one would make one
    /// record remove every stripe clean for longer than the shorter one at once). From the
    /// listed count (a counter): O(1) per record.
    fn long_hysteresis_us(&self) -> u64 {
        let short = self.cfg.hysteresis_us;
        let long = self.cfg.roomy_hysteresis_us;
        if long <= short {
            return short;
        }
        let quarter = self.cfg.max_entries() as u64 / 4;
        let listed = self.listed_count();
        if listed <= quarter {
            long
        } else if listed >= 3 * quarter {
            short
        } else {
            long - ((long - short) as u128 * u128::from(listed - quarter) / u128::from(2 * quarter))
                as u64
        }
    }

    /// Stripes that went clean strictly before these times may leave the record.
    fn hysteresis_threshold(&self, l: &Listed, now_us: u64) -> Thresholds {
        if self.space_waiters.load(SeqCst) > 0 {
            // Room is needed now: any clean, flushed stripe may leave.
            return Thresholds {
                first: u64::MAX,
                again: u64::MAX,
            };
        }
        let by_time = now_us.saturating_sub(self.long_hysteresis_us());
        let first_us = self.cfg.first_hysteresis_us.min(self.cfg.hysteresis_us);
        let by_time_first = now_us.saturating_sub(first_us);
        let n = self.cfg.hysteresis_generations as usize;
        let last_close = l.closes.back().map_or(0, |c| c.1);
        let by_gen = if n == 0 || now_us.saturating_sub(last_close) >= self.cfg.hysteresis_us {
            // No generation closed for a whole hysteresis period (an idle journal): time alone
            // decides, or clean stripes would stay listed until the next write.
            u64::MAX
        } else if l.closes.len() >= n {
            l.closes[l.closes.len() - n].1
        } else {
            0
        };
        Thresholds {
            first: by_time_first.min(by_gen),
            again: by_time.min(by_gen),
        }
    }

    /// Whether `stripe` looks ready to leave: no marks, clean long enough and covered. A hint
    /// only (a write may start right after); [`Journal::try_remove`] decides.
    fn removable(&self, v: &JournalVolume, stripe: u64, due: u64, th: Thresholds) -> bool {
        v.slot(stripe).is_none_or(|s| {
            let (since, again) = s.hysteresis_from(due, v.first_short);
            s.active() == 0 && since < th.of(again) && self.clean_covered(v, s.clean_us)
        })
    }

    /// Whether a stripe whose writes all went clean by `clean_us` is covered: with volatile
    /// member caches, by a member flush that started after it (else one is asked for).
    fn clean_covered(&self, v: &JournalVolume, clean_us: u64) -> bool {
        // Data and parity must be durable on the members before the stripe may leave.
        if v.volatile_members.load(Acquire) && v.flushed_before_us.load(Acquire) <= clean_us {
            v.member_flush_wanted.store(true, Release);
            return false;
        }
        true
    }

    /// Take `stripe` out of the listed set if it may leave: no marks, its hysteresis passed
    /// ([`Slot::hysteresis_from`] against `th.again` or `th.first`: the hysteresis is only a
    /// cost decision, the rule below holds for either), and covered by a
    /// member flush ([`Journal::clean_covered`]). This is where the removal rule of the module
    /// comment is enforced: the check and the removal are one step under the stripe's shard
    /// lock, which every mark takes, so no write can start between the check of the clean time
    /// and the removal.
    fn try_remove(&self, v: &JournalVolume, stripe: u64, due: u64, th: Thresholds) -> Removal {
        let mut shard = lock_shard(v.shard_of(stripe));
        let Some(s) = shard.get(stripe) else {
            debug_assert!(false, "listed entry without state");
            return Removal::Removed;
        };
        if s.active() > 0 {
            return Removal::InUse;
        }
        let (since, again) = s.hysteresis_from(due, v.first_short);
        let threshold = th.of(again);
        if since >= threshold {
            debug_assert!(
                again,
                "a stripe written once is never recent (see hysteresis_from)"
            );
            return Removal::Recent(since);
        }
        if !self.clean_covered(v, s.clean_us) {
            return Removal::Uncovered;
        }
        #[cfg(loom)]
        if self.cfg.control_recheck_unlocked {
            // Control: decide under the lock, remove under a later one.
            drop(shard);
            shard = lock_shard(v.shard_of(stripe));
        }
        shard.remove(stripe);
        Removal::Removed
    }

    /// Try to become the flusher: close the open generation and encode its record into `out`.
    /// Returns `None` when a record write is already in flight.
    pub fn begin_flush(&self, now_us: u64, out: &mut Vec<u8>) -> Option<FlushJob> {
        if self.is_failed() || self.drops_unrecorded() {
            return None;
        }
        // A load first: most calls find a record write in flight, and a failed exchange would
        // still take the line every reactor reads for itself. SeqCst like the exchange: with the
        // caller's `request` before it and `finish_flush`'s swap and `flush_useful` after the
        // flag clears, one total order holds all four, so either this sees the flag clear or
        // that `flush_useful` sees the request.
        if self.in_flight.load(SeqCst)
            || self
                .in_flight
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
        {
            return None;
        }
        #[cfg(loom)]
        let early = self.cfg.control_drain_high_early.then(|| self.queue.high());
        #[cfg(not(loom))]
        let early = None;
        let g = self.close_open();
        let mut guard = lock(&self.listed);
        let l = &mut *guard;
        let vols = lock(&self.volumes);
        // The removal scan starts with the entries at the queues' fronts, whose states have
        // most likely left the nearest caches since the last record: fetch them while the
        // marks are taken in.
        if let Some(pf) = self.cfg.prefetch {
            for q in &l.queues {
                fetch_states(pf, q.iter().take(SCAN_AHEAD), &vols);
            }
        }
        self.take_marks(l, &vols, now_us, early);
        let th = self.hysteresis_threshold(l, now_us);
        self.scan_removals(l, &vols, th, now_us);
        drop(vols);
        let (kind, offset) = self.encode_record(l, g, out);
        l.closes.push_back((g, now_us));
        if l.closes.len() > 64 {
            l.closes.pop_front();
        }
        let job = self.place(l, g, kind, offset, out);
        self.stats.record_writes.fetch_add(1, Relaxed);
        let bytes: usize = job.writes().iter().map(|w| w.end - w.start).sum();
        self.stats.bytes_written.fetch_add(bytes as u64, Relaxed);
        if kind == record::Kind::Checkpoint {
            self.stats.checkpoints.fetch_add(1, Relaxed);
        }
        Some(job)
    }

    /// Where record `g` (encoded in `out`, at byte `offset` of the chain in area `l.area`)
    /// goes: the writes of its [`FlushJob`], with `out` refilled to hold what they write.
    ///
    /// One device: the record, behind its chain. Two devices (claim 13): the chain is the
    /// same on both, each holding a prefix of it (`written`). A checkpoint goes to every live
    /// device, so both switch areas at the same generation and each keeps the single-device
    /// rule (its old area is not written until its new checkpoint is durable). A delta goes to
    /// device g mod 2 in [`JournalMode::Alternate`] (to the other one while that one is lost),
    /// to every live device in [`JournalMode::Mirror`]; each device written gets the chain's
    /// bytes it lacks (the deltas written to the other one since it was last written) and the
    /// record, as one write behind what it holds. So a device's chain never misses a
    /// generation, and the newest valid chain over both devices is the newest durable state.
    fn place(
        &self,
        l: &mut Listed,
        g: u64,
        kind: record::Kind,
        offset: u64,
        out: &mut Vec<u8>,
    ) -> FlushJob {
        let bs = u64::from(self.cfg.block_size);
        let (dev0, first) = self.cfg.slots[l.area];
        let end = offset + out.len() as u64;
        let mut job = FlushJob {
            generation: g,
            kind,
            flush_after: self.cfg.volatile_cache,
            writes: [JournalWrite::default(); 2],
            count: 0,
        };
        let mut flight = InFlight {
            generation: g,
            checkpoint: kind == record::Kind::Checkpoint,
            held_before: {
                let before = l.tail_start + l.tail.len() as u64;
                [l.written[0] >= before, l.written[1] >= before]
            },
            left: 0,
            ok: [false; 2],
            ends: [None; 2],
        };
        if self.cfg.devices < 2 {
            job.writes[0] = JournalWrite {
                dev: dev0,
                lba: first + offset / bs,
                start: 0,
                end: out.len(),
            };
            job.count = 1;
            flight.left = 1;
            flight.ends[0] = Some(end);
            l.job = Some(flight);
            return job;
        }
        if kind == record::Kind::Checkpoint {
            l.tail.clear();
            l.tail_start = 0;
            l.written = [0; 2];
        }
        l.tail.extend_from_slice(out);
        debug_assert_eq!(l.tail_start + l.tail.len() as u64, end);
        let live = [self.device_live(0), self.device_live(1)];
        let mut targets =
            if kind == record::Kind::Checkpoint || self.cfg.mode == JournalMode::Mirror {
                live
            } else {
                let d = (g % 2) as usize;
                let d = if live[d] { d } else { 1 - d };
                [d == 0, d == 1]
            };
        if !targets.contains(&true) {
            // Both went away since the check in `begin_flush`: write anyway; the writes fail
            // (or do not count) and `write_done` fails the journal.
            targets = [true; 2];
        }
        let from = (0..2)
            .filter(|&d| targets[d])
            .map(|d| l.written[d])
            .min()
            .unwrap_or(offset);
        out.clear();
        out.extend_from_slice(&l.tail[(from - l.tail_start) as usize..]);
        for d in (0..2).filter(|&d| targets[d]) {
            job.writes[job.count] = JournalWrite {
                dev: d as u32,
                lba: first + l.written[d] / bs,
                start: (l.written[d] - from) as usize,
                end: out.len(),
            };
            job.count += 1;
            flight.ends[d] = Some(end);
        }
        flight.left = job.count;
        l.job = Some(flight);
        job
    }

    /// Move the queued marks into the listed set (due for a removal check from `now_us` on) and
    /// into the next record's additions.
    fn take_marks(
        &self,
        l: &mut Listed,
        vols: &[Arc<JournalVolume>],
        now_us: u64,
        early: Option<usize>,
    ) {
        let mut listed = ListedCounts::default();
        // Which channel rings to visit is read now, after every writer of the closed generation
        // left it: a channel that pushed an entry of it opened its ring before (see
        // `MarkQueue::open_slot`). `early`: a loom control's reading from before the close.
        let high = early.unwrap_or_else(|| self.queue.high());
        self.queue.drain_below(high, |e| {
            l.adds.push(e);
            match vols.iter().find(|v| v.number == e.volume) {
                Some(v) => {
                    self.queue_for_check(&mut l.queues, v, e, now_us);
                    listed.add(v, 1);
                }
                None => l.queues[LATER].push_back((e, now_us)),
            }
        });
        listed.apply();
    }

    /// Queue listed entry `e` of volume `v`, marked (or found in use) at `now_us`, for its next
    /// removal check. A volume with the shorter first hysteresis: [`LATER`], due at `now_us`
    /// (its first look may find a stripe written once ready to leave). A volume without it:
    /// every stripe stays for the longer hysteresis from its last clean time, so a look before
    /// that would only find it recent and queue it again; [`SOON`], due at `now_us` plus the
    /// shorter hysteresis, a bound on when its write went clean (a write takes a small part
    /// of it): one look, once the longer hysteresis has passed since then, finds a stripe not
    /// written again ready to leave. A cost decision only; [`Journal::try_remove`] decides.
    fn queue_for_check(
        &self,
        queues: &mut [VecDeque<(Entry, u64)>; 2],
        v: &JournalVolume,
        e: Entry,
        now_us: u64,
    ) {
        if v.first_short {
            queues[LATER].push_back((e, now_us));
        } else {
            let first_us = self.cfg.first_hysteresis_us.min(self.cfg.hysteresis_us);
            queues[SOON].push_back((e, now_us.saturating_add(first_us)));
        }
    }

    /// Take out of the listed set the entries due for a check that may leave (past their
    /// threshold in `th`, covered by a member flush, no write since: [`Journal::try_remove`]).
    /// Each queue is scanned from its front while entries are due; an entry found clean but
    /// within the longer hysteresis waits in [`SOON`] until its clean time is past it, one
    /// found in use is queued again as if marked at `now_us` ([`Journal::queue_for_check`]). The
    /// scan stops at an entry waiting for a member flush. Each entry is looked at once at most.
    fn scan_removals(
        &self,
        l: &mut Listed,
        vols: &[Arc<JournalVolume>],
        th: Thresholds,
        now_us: u64,
    ) {
        let mut checked = 0;
        for qi in [SOON, LATER] {
            let (n, stop) = self.scan_queue(l, qi, vols, th, now_us);
            checked += n;
            if stop {
                break;
            }
        }
        self.stats.removal_checks.fetch_add(checked as u64, Relaxed);
    }

    /// [`Journal::scan_removals`] over queue `qi`: returns the entries looked at and whether
    /// the scan must stop (an entry waits for a member flush).
    fn scan_queue(
        &self,
        l: &mut Listed,
        qi: usize,
        vols: &[Arc<JournalVolume>],
        th: Thresholds,
        now_us: u64,
    ) -> (usize, bool) {
        let threshold = th.of_queue(qi);
        // Counter updates are summed here and applied once at the end: a locked add per entry
        // waits each time for the stores before it (the queue pushes) to reach the cache. Until
        // then `reserved` is high, never low (the bound stays safe).
        let mut freed = 0u64;
        let mut listed = ListedCounts::default();
        let mut budget = l.queues[qi].len();
        let start = budget;
        let prefetch = self.cfg.prefetch;
        while budget > 0 {
            let Some(&(e, due)) = l.queues[qi].front() else {
                break;
            };
            if due >= threshold {
                break;
            }
            budget -= 1;
            l.queues[qi].pop_front();
            if let Some(pf) = prefetch {
                fetch_states(pf, l.queues[qi].get(SCAN_AHEAD - 1), vols);
            }
            let Some(v) = vols.iter().find(|v| v.number == e.volume) else {
                // Volume detached (its entries already left with `detach_volume`).
                freed += 1;
                continue;
            };
            match self.try_remove(v, e.stripe, due, th) {
                Removal::Removed => {
                    freed += 1;
                    listed.add(v, -1);
                    // Still carried (at risk, or not yet resynced): it stays in the record.
                    if l.carried.is_empty() || !l.carried.contains(&e) {
                        l.removes.push(e);
                    }
                    continue;
                }
                Removal::Recent(clean_us) => {
                    // Clean, but recently: due once its hysteresis has passed its clean time.
                    l.queues[SOON].push_back((e, clean_us));
                    continue;
                }
                Removal::Uncovered => {
                    // A member flush is asked for; nothing behind this entry is covered either.
                    l.queues[qi].push_front((e, due));
                    self.mw.reserved.fetch_sub(freed, AcqRel);
                    listed.apply();
                    return (start - budget, true);
                }
                Removal::InUse => {}
            }
            self.queue_for_check(&mut l.queues, v, e, now_us);
        }
        self.mw.reserved.fetch_sub(freed, AcqRel);
        listed.apply();
        (start - budget, false)
    }

    /// Encode record `g` into `out`: a delta of the changes behind the chain when it fits, else
    /// a checkpoint of the whole set at the start of the other area. Returns its kind and its
    /// byte offset in its area (`l.area` afterwards).
    fn encode_record(&self, l: &mut Listed, g: u64, out: &mut Vec<u8>) -> (record::Kind, u64) {
        use record::{Header, Kind};
        let bs = self.cfg.block_size as usize;
        let changes = l.adds.len() + l.removes.len();
        let delta_bytes = record::record_bytes(changes, bs) as u64;
        let result = if l.used == 0 || l.used + delta_bytes > self.cfg.slot_bytes {
            l.area = 1 - l.area;
            l.base = g;
            let header = Header {
                kind: Kind::Checkpoint,
                generation: g,
                base: g,
                area: l.area,
            };
            let carried = &l.carried;
            if carried.is_empty() {
                // The listed entries straight from their queues (no copy first).
                let n = l.queues.iter().map(|q| q.len()).sum();
                let listed = l.queues.iter().flatten().map(|d| d.0);
                record::encode(&self.cfg.uuid, &header, Counted(listed, n), [], bs, out);
            } else {
                let listed = l
                    .queues
                    .iter()
                    .flatten()
                    .map(|d| d.0)
                    .filter(|e| !carried.contains(e));
                let mut all = std::mem::take(&mut l.scratch);
                all.clear();
                all.extend(carried.iter().copied().chain(listed));
                record::encode(&self.cfg.uuid, &header, all.iter().copied(), [], bs, out);
                l.scratch = all;
            }
            l.used = out.len() as u64;
            (Kind::Checkpoint, 0)
        } else {
            let header = Header {
                kind: Kind::Delta,
                generation: g,
                base: l.base,
                area: l.area,
            };
            record::encode(
                &self.cfg.uuid,
                &header,
                l.adds.iter().copied(),
                l.removes.iter().copied(),
                bs,
                out,
            );
            let offset = l.used;
            l.used += out.len() as u64;
            (Kind::Delta, offset)
        };
        l.adds.clear();
        l.removes.clear();
        result
    }

    /// One write of the record in flight (generation `g`, to journal device `dev`) finished
    /// (`ok`: written, and flushed when the job asked for it). Once every write of the record
    /// is in, the record is durable when some live device holds it; a device whose write
    /// failed is lost from then on ([`Journal::device_gone`]). This is the one place that
    /// decides whether a record is durable.
    pub fn write_done(
        &self,
        g: u64,
        dev: u32,
        ok: bool,
        notify: &mut Vec<Address>,
    ) -> RecordOutcome {
        let d = if self.cfg.devices < 2 {
            0
        } else {
            dev as usize
        };
        let mut guard = lock(&self.listed);
        let l = &mut *guard;
        let Some(job) = l.job.as_mut() else {
            debug_assert!(false, "a record write finished with none in flight");
            return RecordOutcome::Pending;
        };
        debug_assert_eq!(job.generation, g, "a write of another record");
        job.left -= 1;
        if ok {
            job.ok[d] = true;
        } else if self.cfg.devices > 1 {
            self.device_gone(d as u32);
        }
        if job.left > 0 {
            return RecordOutcome::Pending;
        }
        let job = l.job.take().expect("checked above");
        let mut durable = false;
        for d in 0..2 {
            if job.ok[d] && (self.cfg.devices < 2 || self.device_live(d)) {
                if let Some(end) = job.ends[d] {
                    l.written[d] = end;
                }
                durable = true;
            }
        }
        if durable && job.checkpoint {
            for d in (0..2).filter(|&d| job.ok[d] && self.device_live(d)) {
                self.whole[d].store(true, SeqCst);
            }
        }
        self.trim_tail(l);
        drop(guard);
        if durable && !self.drops_unrecorded() {
            return RecordOutcome::Durable {
                again: self.complete(g, notify),
            };
        }
        // Not durable, or durable on the survivor of a mirrored pair whose drop of the other
        // device is not recorded yet: nobody is told; the next record (written once the drop
        // is recorded: `begin_flush`) tells them.
        if self.cfg.devices > 1 && (0..2).any(|d| self.device_live(d)) {
            self.stats.record_retries.fetch_add(1, Relaxed);
            self.in_flight.swap(false, SeqCst);
            return RecordOutcome::Retry;
        }
        self.fail_flush(notify);
        RecordOutcome::Failed
    }

    /// Drop the chain bytes every live device holds.
    fn trim_tail(&self, l: &mut Listed) {
        if self.cfg.devices < 2 {
            return;
        }
        let low = (0..2)
            .filter(|&d| self.device_live(d))
            .map(|d| l.written[d])
            .min();
        if let Some(low) = low {
            if low > l.tail_start {
                let n = ((low - l.tail_start) as usize).min(l.tail.len());
                l.tail.drain(..n);
                l.tail_start = low;
            }
        }
    }

    /// Every write of the record of generation `g` succeeded: it is durable (as
    /// [`Journal::write_done`] for each). Fills `notify` with the channels to tell; returns
    /// true when another record write is wanted right away.
    pub fn finish_flush(&self, g: u64, notify: &mut Vec<Address>) -> bool {
        {
            let mut guard = lock(&self.listed);
            let l = &mut *guard;
            if let Some(job) = l.job.take() {
                debug_assert_eq!(job.generation, g, "finishing another record");
                for d in 0..2 {
                    if let Some(end) = job.ends[d] {
                        l.written[d] = end;
                    }
                }
                self.trim_tail(l);
            }
        }
        self.complete(g, notify)
    }

    /// Record `g` is durable: tell its waiters (into `notify`) and let the next record go.
    fn complete(&self, g: u64, notify: &mut Vec<Address>) -> bool {
        self.durable.fetch_max(g, SeqCst);
        {
            let chans = lock(&self.channels);
            for (i, w) in self.waits[..chans.len()].iter().enumerate() {
                let v = w.swap(u64::MAX, SeqCst);
                if v <= g {
                    // Told now; whatever still waits is subscribed again by the channel.
                    if let Some(a) = chans[i] {
                        notify.push(a);
                    }
                } else if v != u64::MAX {
                    w.fetch_min(v, SeqCst);
                }
            }
        }
        // RMW, so a writer whose `request` + `begin_flush` attempt raced with us either
        // finds the flag clear or is seen by `flush_useful` below.
        self.in_flight.swap(false, SeqCst);
        self.flush_useful(false, 0)
    }

    /// The journal device is gone: fail the journal now (writes are refused from here on;
    /// channels let their waiters go at their next tick).
    pub fn fail(&self) {
        self.failed.store(true, Release);
    }

    /// Journal device `dev` is gone (its record write failed, or the runtime saw it leave):
    /// it is not written again. With two devices the other one goes on alone (it gets every
    /// record from now on, and with the next one the changes this one held); with none left
    /// the journal fails ([`Journal::fail`]).
    pub fn device_gone(&self, dev: u32) {
        let d = dev as usize;
        if d < 2 && self.live[d].swap(false, SeqCst) {
            self.stats.devices_lost.fetch_add(1, Relaxed);
        }
        if !(0..self.cfg.devices.min(2) as usize).any(|d| self.device_live(d)) {
            self.fail();
        }
    }

    /// A fresh device takes the place of lost journal device `k` while running (an online
    /// replacement, `bdev_jraid_set_journal` on a degraded journal): it holds nothing of the
    /// chain, so the next record is a checkpoint, which goes to every live device, this one
    /// included (`Journal::place`); from then on records spread over both again. Until that
    /// checkpoint is durable on it, the device holds no record, and the newest chain over
    /// both devices is the survivor's, which holds every durable generation: a restart that
    /// finds both devices is complete. That holds only if the survivor holds every durable
    /// record when the replacement is taken: in alternate mode the newest record(s) may have
    /// gone to the lost device alone, and reach the survivor with the next record written
    /// there. So this is refused (false: the caller tries again later) while the survivor
    /// lacks chain bytes of durable records (the record in flight is not durable yet: what
    /// counts is what the survivor held when it was placed); and refused for good unless the
    /// journal has two
    /// devices, `k` is lost and the other one is live. The simulator's `--loss replaced` case
    /// finds acknowledged generations lost without this wait.
    pub fn device_added(&self, k: u32) -> bool {
        let d = k as usize;
        if self.cfg.devices < 2 || d > 1 || self.device_live(d) || !self.device_live(1 - d) {
            return false;
        }
        let mut guard = lock(&self.listed);
        let l = &mut *guard;
        let survivor_whole = match &l.job {
            None => l.written[1 - d] >= l.tail_start + l.tail.len() as u64,
            // A write to the lost device still in flight fails when it completes, which
            // would drop the replacement: wait for it.
            Some(job) if job.ends[d].is_some() => return false,
            Some(job) => job.held_before[1 - d],
        };
        if !survivor_whole && !self.cfg.control_replace_early {
            return false;
        }
        l.used = 0;
        l.written[d] = 0;
        self.whole[d].store(false, SeqCst);
        self.live[d].store(true, SeqCst);
        true
    }

    /// Mirror mode: the journal devices lost while running (bit k: device k).
    fn lost_mask(&self) -> u64 {
        if self.cfg.devices < 2
            || self.cfg.mode != JournalMode::Mirror
            || self.cfg.control_no_drop_record
        {
            return 0;
        }
        (0..2)
            .filter(|&d| !self.live[d].load(SeqCst))
            .fold(0, |m, d| m | 1 << d)
    }

    /// What the member superblocks of `volume` should record as dropped journal devices, when
    /// that differs from what they record ([`Journal::drops_recorded`]); the runtime writes it
    /// into the superblocks of the volume's live members and then reports it.
    ///
    /// # Rule: a mirrored pair's drop is recorded before a record only the survivor holds releases its writers
    /// Enforced here and in [`Journal::begin_flush`] / [`Journal::write_done`], and nowhere
    /// else. In [`JournalMode::Mirror`] every record goes to both devices, so a restart that
    /// finds one of them may recover from it alone ([`crate::control::recovery::journal_complete`])
    /// — unless that device was dropped while running and the other went on without it. So
    /// once a device is lost, no record that only the survivor holds lets its writers go (the
    /// record that saw the loss is retried, and no new record starts) until every volume on
    /// the journal records the lost device in its members' superblocks; a restart that finds
    /// only a device recorded dropped resyncs every stripe. A bit is cleared once the device
    /// (a replacement, or one that came back at a restart) holds a durable checkpoint written
    /// after the volume's recovery released its stripes ([`Journal::drops_found`]). The
    /// simulator's control (`crash_sim --scenario journal-devices --loss swapped --control
    /// no-drop-record`: writers go on at once and nothing is recorded) finds loss when the
    /// restart finds only the dropped device; the same run with the rule finds none.
    pub fn drops_to_record(&self, volume: u32) -> Option<u8> {
        if self.cfg.control_no_drop_record {
            return None;
        }
        let vols = lock(&self.volumes);
        let v = vols.iter().find(|v| v.number == volume)?;
        let recorded = v.drops_recorded.load(SeqCst);
        let behind = if v.drops_held.load(SeqCst) {
            0b11
        } else {
            (0..2)
                .filter(|&d| !self.whole[d].load(SeqCst))
                .fold(0, |m, d| m | 1 << d)
        };
        let want = self.lost_mask() | (recorded & behind);
        (want != recorded).then_some(want as u8)
    }

    /// The member superblocks of `volume` now record `mask` as the dropped journal devices
    /// (from [`Journal::drops_to_record`]).
    pub fn drops_recorded(&self, volume: u32, mask: u8) {
        if let Some(v) = lock(&self.volumes).iter().find(|v| v.number == volume) {
            v.drops_recorded.store(u64::from(mask), SeqCst);
        }
    }

    /// At assembly (before its recovery starts): the member superblocks of `volume` record
    /// `mask` as the dropped journal devices. Those stay recorded until the volume's recovery
    /// has released its carried stripes ([`Journal::release_carried`]) and a checkpoint
    /// written after that is durable on the device: until then a device recorded dropped may
    /// miss stripes that recovery (a full resync, when it was the only device found) still
    /// has to resync, and a restart must not trust it alone.
    pub fn drops_found(&self, volume: u32, mask: u8) {
        if let Some(v) = lock(&self.volumes).iter().find(|v| v.number == volume) {
            v.drops_recorded.store(u64::from(mask), SeqCst);
            v.drops_held.store(mask != 0, SeqCst);
        }
    }

    /// Some lost device of a mirrored pair is not yet recorded dropped by every volume.
    fn drops_unrecorded(&self) -> bool {
        let lost = self.lost_mask();
        lost != 0
            && lock(&self.volumes)
                .iter()
                .any(|v| lost & !v.drops_recorded.load(SeqCst) != 0)
    }

    /// Whether journal device `dev` is still in use.
    pub fn device_live(&self, dev: usize) -> bool {
        dev < self.cfg.devices as usize && dev < 2 && self.live[dev].load(SeqCst)
    }

    /// Two devices, one of them lost: records go to the survivor alone.
    pub fn degraded(&self) -> bool {
        self.cfg.devices > 1 && !(self.device_live(0) && self.device_live(1))
    }

    /// A record write failed: the journal can no longer protect writes. Waiters are told (they
    /// then see [`Journal::is_failed`]).
    pub fn fail_flush(&self, notify: &mut Vec<Address>) {
        self.failed.store(true, Release);
        lock(&self.listed).job = None;
        let chans = lock(&self.channels);
        for (i, w) in self.waits[..chans.len()].iter().enumerate() {
            if w.swap(u64::MAX, SeqCst) != u64::MAX {
                if let Some(a) = chans[i] {
                    notify.push(a);
                }
            }
        }
        self.in_flight.swap(false, SeqCst);
    }
}

/// How many listed entries ahead of the one it decides on the removal scan fetches the states
/// of ([`JournalConfig::prefetch`]).
const SCAN_AHEAD: usize = 16;

/// Start fetching the states of listed `entries` ([`JournalConfig::prefetch`]).
fn fetch_states<'a>(
    pf: fn(*const u8),
    entries: impl IntoIterator<Item = &'a (Entry, u64)>,
    vols: &[Arc<JournalVolume>],
) {
    for (e, _) in entries {
        if let Some(v) = vols.iter().find(|v| v.number == e.volume) {
            // Both lines of the shard: a removal moves the shard's last state into the freed
            // slot, in the second line whenever the shard holds three or more.
            let at = v.state_address(e.stripe);
            pf(at);
            pf(at.wrapping_add(64));
        }
    }
}

/// A queued entry as two words (a channel's mark ring holds words: see `sync::SlotRing`).
impl Words for Entry {
    fn to_words(self) -> [u64; 2] {
        [u64::from(self.volume), self.stripe]
    }

    fn from_words(w: [u64; 2]) -> Self {
        Entry {
            volume: w[0] as u32,
            stripe: w[1],
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [7; 16];

    use std::cell::RefCell;

    thread_local! {
        /// The journal device of this test's journal (areas of 8 × 512 bytes at blocks 0 and 8,
        /// or as [`disk_for`] sized it).
        static DISK: RefCell<Vec<u8>> = RefCell::new(vec![0; 16 * 512]);
    }

    fn disk_for(cfg: &JournalConfig) {
        let len = cfg.slots[1].1 * u64::from(cfg.block_size) + cfg.slot_bytes;
        DISK.with(|d| *d.borrow_mut() = vec![0; len as usize]);
    }

    /// The newest state on this test's journal device.
    fn on_disk(cfg: &JournalConfig) -> Option<record::Record> {
        DISK.with(|d| {
            let d = d.borrow();
            let bs = u64::from(cfg.block_size);
            let area = |k: usize| {
                let off = (cfg.slots[k].1 * bs) as usize;
                &d[off..off + cfg.slot_bytes as usize]
            };
            record::newest(area(0), area(1), &cfg.uuid, bs as usize).expect("current format")
        })
    }

    /// A journal with no hysteresis and one volume of 2 stripes whose members cache volatilely.
    fn rig() -> (Journal, Arc<JournalVolume>) {
        rig_of(2, true, |_| {})
    }

    /// A journal with no hysteresis (as `set` leaves it) and one volume of `stripes` stripes,
    /// on this test's journal device.
    fn rig_of(
        stripes: u64,
        volatile_members: bool,
        set: impl FnOnce(&mut JournalConfig),
    ) -> (Journal, Arc<JournalVolume>) {
        let mut cfg = JournalConfig::new(UUID, 512, 4096, [(0, 0), (0, 8)]);
        cfg.max_channels = 1;
        cfg.hysteresis_generations = 0;
        cfg.hysteresis_us = 0;
        cfg.roomy_hysteresis_us = 0;
        set(&mut cfg);
        disk_for(&cfg);
        let j = Journal::new(cfg, None);
        let (jv, _) = j.attach_volume(0, stripes, volatile_members);
        (j, jv)
    }

    /// Write one record at `now_us` to the test's journal device and make it durable; returns
    /// the job and the stripes the device then lists.
    fn flush_job(j: &Journal, now_us: u64) -> (FlushJob, Vec<u64>) {
        let mut buf = Vec::new();
        let job = j
            .begin_flush(now_us, &mut buf)
            .expect("no record in flight");
        let w = job.writes()[0];
        let at = (w.lba * u64::from(j.cfg.block_size)) as usize;
        DISK.with(|d| {
            d.borrow_mut()[at..at + w.end - w.start].copy_from_slice(&buf[w.start..w.end])
        });
        j.finish_flush(job.generation, &mut Vec::new());
        let rec = on_disk(&j.cfg).expect("a record");
        assert_eq!(rec.generation, job.generation);
        (job, rec.entries.iter().map(|e| e.stripe).collect())
    }

    /// [`flush_job`]'s stripes.
    fn flush(j: &Journal, now_us: u64) -> Vec<u64> {
        flush_job(j, now_us).1
    }

    /// A journal of one channel, 512-byte blocks and 4 KiB areas, whose clean stripes stay
    /// 1000 µs (no generations), or `first_us` when written once on a volume of more than
    /// `above` stripes (`None`: the listed set's bound).
    fn hysteresis_journal(first_us: u64, above: Option<u64>) -> Journal {
        let mut cfg = JournalConfig::new(UUID, 512, 4096, [(0, 0), (0, 8)]);
        cfg.max_channels = 1;
        cfg.hysteresis_generations = 0;
        cfg.hysteresis_us = 1000;
        cfg.roomy_hysteresis_us = 0;
        cfg.first_hysteresis_us = first_us;
        cfg.first_hysteresis_above = above;
        disk_for(&cfg);
        Journal::new(cfg, None)
    }

    /// Stripe 0 written once (clean at 1 µs) and listed in a durable record.
    fn written_once() -> (Journal, Arc<JournalVolume>) {
        let (j, jv) = rig();
        assert_eq!(j.mark(&jv, 0), Mark::Wait(1));
        assert_eq!(flush(&j, 1), vec![0]);
        j.clean(&jv, 0, 1);
        (j, jv)
    }

    #[test]
    fn a_detached_volumes_entries_never_reach_a_volume_attached_under_its_number() {
        let mut cfg = JournalConfig::new(UUID, 512, 4096, [(0, 0), (0, 8)]);
        cfg.max_channels = 1;
        disk_for(&cfg);
        let j = Journal::new(cfg, None);
        let (big, _) = j.attach_volume(3, 100, false);
        for s in [10, 50, 99] {
            assert!(matches!(j.mark(&big, s), Mark::Wait(_)));
        }
        assert_eq!(flush(&j, 1).len(), 3);
        assert_eq!(big.listed_entries(), 3);
        j.detach_volume(3);
        // A smaller volume takes number 3 before the next record: it must not inherit (and
        // index, past its end) the old volume's stripes.
        let (small, carried) = j.attach_volume(3, 8, false);
        assert!(carried.is_empty());
        assert!(flush(&j, 2).is_empty());
        assert_eq!(small.listed_entries(), 0);
        assert_eq!(j.listed_count(), 0);
    }

    #[test]
    fn list_ahead_lists_free_stripes_once_within_room_and_they_leave_like_clean_ones() {
        let (j, jv) = rig_of(20, false, |cfg| cfg.hysteresis_us = 10);
        // Stripe 3 in use (marked, not clean), stripe 5 listed and clean.
        assert_eq!(j.mark(&jv, 3), Mark::Wait(1));
        assert_eq!(j.mark(&jv, 5), Mark::Wait(1));
        assert_eq!(flush(&j, 1), vec![3, 5]);
        j.clean(&jv, 5, 1);
        // Past the end is left out; 3 and 5 are not listed twice.
        assert_eq!(j.list_ahead(&jv, 2, 25), Some(2));
        assert_eq!(j.stats.listed_ahead.load(Relaxed), 16);
        assert_eq!(j.listed_count(), 18);
        assert_eq!(j.mark(&jv, 7), Mark::Wait(2), "listed, not durable yet");
        let mut on_disk = flush(&j, 2);
        on_disk.sort_unstable();
        assert_eq!(on_disk, (2..20).collect::<Vec<_>>());
        assert_eq!(j.mark(&jv, 8), Mark::Ready, "durable: the fast path");
        j.clean(&jv, 7, 3);
        j.clean(&jv, 8, 3);
        // 0 and 1 join the open generation; then nothing is left to list.
        assert_eq!(j.list_ahead(&jv, 0, 20), Some(3));
        assert_eq!(j.list_ahead(&jv, 0, 20), None);
        // Past the hysteresis every clean stripe leaves but 0 and 1 (listed just now) and 3
        // (still in use).
        let mut left = flush(&j, 1000);
        left.sort_unstable();
        assert_eq!(left, vec![0, 1, 3]);
        j.clean(&jv, 3, 1001);
        assert_eq!(flush(&j, 2000), Vec::<u64>::new());
        assert_eq!(j.listed_count(), 0);
        assert!((0..20).all(|s| !jv.listed(s) && jv.active(s) == 0));
    }

    /// A channel's marks and list-ahead go through its own ring (`MarkQueue`) into the next
    /// record, with those of writers without a channel.
    #[test]
    fn a_channels_marks_and_list_ahead_reach_the_record() {
        let (j, jv) = rig_of(20, false, |_| {});
        let slot = j
            .register_channel(crate::engine::Address {
                reactor: 3,
                volume: 0,
            })
            .expect("a free channel slot");
        assert_eq!(j.list_ahead_on(slot, &jv, 4, 12), Some(1));
        assert_eq!(j.mark_on(slot, &jv, 15), Mark::Wait(1));
        assert_eq!(j.mark(&jv, 17), Mark::Wait(1));
        assert_eq!(
            j.mark_on(slot, &jv, 5),
            Mark::Wait(1),
            "listed ahead, not durable yet"
        );
        let mut on_disk = flush(&j, 1);
        on_disk.sort_unstable();
        assert_eq!(on_disk, [4, 5, 6, 7, 8, 9, 10, 11, 15, 17]);
        assert_eq!(j.listed_count(), 10);
    }

    /// By default the first hysteresis applies only to a volume of more stripes than the
    /// listed set holds: on a smaller one a stripe written once stays for the whole hysteresis.
    #[test]
    fn the_first_hysteresis_applies_to_volumes_larger_than_the_listed_set() {
        let j = hysteresis_journal(100, None);
        let room = j.cfg.max_entries() as u64;
        let (small, _) = j.attach_volume(0, room, false);
        let (large, _) = j.attach_volume(1, room + 1, false);
        assert!(!small.first_short && large.first_short);
        for jv in [&small, &large] {
            assert!(matches!(j.mark(jv, 3), Mark::Wait(_)));
        }
        flush_job(&j, 0);
        j.clean(&small, 3, 10);
        j.clean(&large, 3, 10);
        flush_job(&j, 200);
        assert!(small.listed(3) && !large.listed(3));
        // The small volume's first look comes the first hysteresis (a bound on when its write
        // went clean) plus the whole hysteresis after its mark.
        flush_job(&j, 1020);
        assert!(small.listed(3));
        flush_job(&j, 1120);
        assert!(!small.listed(3));
        assert_eq!(j.listed_count(), 0);
    }

    /// While the listed set leaves room, a clean stripe stays for the roomy hysteresis; as the
    /// set fills, the longer hysteresis falls linearly to `hysteresis_us`.
    #[test]
    fn the_longer_hysteresis_stretches_while_the_listed_set_leaves_room() {
        let mut cfg = JournalConfig::new(UUID, 512, 64 * 1024, [(0, 0), (0, 128)]);
        cfg.max_channels = 1;
        cfg.hysteresis_generations = 0;
        cfg.hysteresis_us = 1000;
        cfg.roomy_hysteresis_us = 9000;
        cfg.first_hysteresis_us = 100;
        disk_for(&cfg);
        let j = Journal::new(cfg, None);
        let quarter = j.cfg.max_entries() as u64 / 4;
        let (jv, _) = j.attach_volume(0, 4 * quarter, false);
        assert!(!jv.first_short);
        assert!(matches!(j.mark(&jv, 0), Mark::Wait(_)));
        flush_job(&j, 0);
        j.clean(&jv, 0, 10);
        assert_eq!(j.long_hysteresis_us(), 9000);
        flush_job(&j, 5000);
        assert!(jv.listed(0), "room: stays for 9 ms");
        // Looked at from 100 µs (the first hysteresis: see `queue_for_check`) plus 9 ms on.
        flush_job(&j, 9200);
        assert!(!jv.listed(0));
        // Half the room listed: halfway between.
        for s in 1..=2 * quarter {
            assert!(matches!(j.mark(&jv, s), Mark::Wait(_)));
            j.clean(&jv, s, 9250);
        }
        flush_job(&j, 9300);
        assert_eq!(j.listed_count(), 2 * quarter);
        assert_eq!(j.long_hysteresis_us(), 5000);
        // Three quarters: the shorter one; the first half leave after it.
        for s in 2 * quarter + 1..=3 * quarter {
            assert!(matches!(j.mark(&jv, s), Mark::Wait(_)));
        }
        flush_job(&j, 9400);
        assert_eq!(j.long_hysteresis_us(), 1000);
        flush_job(&j, 10_500);
        assert_eq!(j.listed_count(), quarter);
        assert_eq!(j.long_hysteresis_us(), 9000);
        // Not above `hysteresis_us`: no stretch.
        let mut cfg = j.cfg.clone();
        cfg.roomy_hysteresis_us = 500;
        assert_eq!(Journal::new(cfg, None).long_hysteresis_us(), 1000);
    }

    /// On a volume without the shorter first hysteresis a stripe written once is looked at
    /// once, when it leaves: a look at the first hysteresis would only find it recent.
    #[test]
    fn a_stripe_that_stays_the_whole_hysteresis_is_looked_at_once() {
        let j = hysteresis_journal(100, None);
        let (jv, _) = j.attach_volume(0, 64, false);
        assert!(!jv.first_short);
        let looks = j.stats.removal_checks.load(Relaxed);
        assert!(matches!(j.mark(&jv, 3), Mark::Wait(_)));
        flush_job(&j, 0);
        j.clean(&jv, 3, 50);
        for now in (10..=1110).step_by(10) {
            flush_job(&j, now);
            // Clean at 50: within the hysteresis until 1050.
            assert!(now > 1050 || jv.listed(3), "left at {now} µs");
        }
        assert!(!jv.listed(3));
        assert_eq!(j.stats.removal_checks.load(Relaxed) - looks, 1);
    }

    /// A stripe written once leaves at the record writer's first look past the first
    /// hysteresis from its listing (its write clean): one look, not a second once the
    /// hysteresis has passed since the write went clean; one written again stays for the
    /// longer hysteresis from its last clean.
    #[test]
    fn a_stripe_written_once_leaves_at_the_first_look() {
        let j = hysteresis_journal(100, Some(0));
        let (jv, _) = j.attach_volume(0, 64, false);
        for s in [3, 4] {
            assert!(matches!(j.mark(&jv, s), Mark::Wait(_)));
        }
        flush_job(&j, 0);
        // Stripe 4 is written again while listed.
        assert_eq!(j.mark(&jv, 4), Mark::Ready);
        j.clean(&jv, 3, 50);
        j.clean(&jv, 4, 50);
        j.clean(&jv, 4, 60);
        let looks = j.stats.removal_checks.load(Relaxed);
        flush_job(&j, 120);
        assert!(
            !jv.listed(3),
            "written once, clean, 120 µs after its listing"
        );
        assert!(jv.listed(4), "written again: 1000 µs from its last clean");
        assert_eq!(
            j.stats.removal_checks.load(Relaxed) - looks,
            2,
            "one look each"
        );
        flush_job(&j, 1059);
        assert!(jv.listed(4));
        flush_job(&j, 1061);
        assert!(!jv.listed(4));
        assert_eq!(j.listed_count(), 0);
    }

    /// A stripe listed ahead and not written stays for the longer hysteresis from its listing
    /// (the stream it was listed for finds it listed); written once, it leaves after the first.
    #[test]
    fn a_stripe_listed_ahead_stays_for_the_longer_hysteresis_until_written() {
        let (j, jv) = rig_of(4, false, |cfg| {
            cfg.hysteresis_us = 1000;
            cfg.first_hysteresis_us = 100;
            cfg.first_hysteresis_above = Some(0);
        });
        assert!(j.list_ahead(&jv, 0, 2).is_some());
        assert_eq!(flush(&j, 10), vec![0, 1]);
        assert_eq!(j.mark(&jv, 1), Mark::Ready);
        j.clean(&jv, 1, 20);
        assert_eq!(flush(&j, 300), vec![0]);
        assert_eq!(flush(&j, 1005), vec![0]);
        assert_eq!(flush(&j, 1020), Vec::<u64>::new());
    }

    #[test]
    fn list_ahead_never_overfills_the_record() {
        let max = JournalConfig::new(UUID, 512, 4096, [(0, 0), (0, 8)]).max_entries() as u64;
        let (j, jv) = rig_of(10 * max, false, |_| {});
        assert_eq!(j.mark(&jv, 0), Mark::Wait(1));
        assert!(j.list_ahead(&jv, 1, 10 * max).is_some());
        assert_eq!(j.listed_count(), max);
        assert_eq!(j.stats.listed_ahead.load(Relaxed), max - 1);
        assert_eq!(j.list_ahead(&jv, 1, 10 * max), None, "no room");
        assert_eq!(j.mark(&jv, 10 * max - 1), Mark::Full);
        assert_eq!(j.listed_count(), max);
        assert_eq!(flush(&j, 1).len() as u64, max);
    }

    #[test]
    fn stripe_leaves_only_once_a_member_flush_covers_its_last_write() {
        let (j, jv) = written_once();
        // Not covered yet: stays, and a member flush is asked for.
        assert_eq!(flush(&j, 1000), vec![0]);
        assert!(jv.member_flush_wanted.load(Relaxed));
        jv.member_flush_done(2);
        // A fast-path write going clean after that flush started: still not covered.
        assert_eq!(j.mark(&jv, 0), Mark::Ready);
        j.clean(&jv, 0, 3);
        assert_eq!(flush(&j, 1000), vec![0]);
        jv.member_flush_done(4);
        assert_eq!(flush(&j, 1000), Vec::<u64>::new());
        assert!(!jv.listed(0));
    }

    /// Two journal devices, as a runtime drives them: every write of a job lands on its
    /// device (unless that device is `down`) and is reported to `write_done`.
    struct TwoDevices {
        j: Journal,
        jv: Arc<JournalVolume>,
        disks: [Vec<u8>; 2],
        down: [bool; 2],
    }

    impl TwoDevices {
        fn new(mode: JournalMode) -> TwoDevices {
            let mut cfg = JournalConfig::new(UUID, 512, 4096, [(0, 0), (0, 8)]);
            cfg.devices = 2;
            cfg.mode = mode;
            cfg.max_channels = 1;
            cfg.hysteresis_generations = 0;
            cfg.hysteresis_us = 0;
            cfg.roomy_hysteresis_us = 0;
            let j = Journal::new(cfg, None);
            let (jv, _) = j.attach_volume(0, 64, false);
            TwoDevices {
                j,
                jv,
                disks: [vec![0; 16 * 512], vec![0; 16 * 512]],
                down: [false; 2],
            }
        }

        /// Write one record: (generation, kind, devices written, outcome).
        fn flush(&mut self, now_us: u64) -> (u64, record::Kind, Vec<u32>, RecordOutcome) {
            let mut buf = Vec::new();
            let job = self
                .j
                .begin_flush(now_us, &mut buf)
                .expect("none in flight");
            let mut devs = Vec::new();
            let mut outcome = RecordOutcome::Pending;
            for w in job.writes().to_vec() {
                devs.push(w.dev);
                let ok = !self.down[w.dev as usize];
                if ok {
                    let at = w.lba as usize * 512;
                    self.disks[w.dev as usize][at..at + w.end - w.start]
                        .copy_from_slice(&buf[w.start..w.end]);
                }
                outcome = self
                    .j
                    .write_done(job.generation, w.dev, ok, &mut Vec::new());
            }
            (job.generation, job.kind, devs, outcome)
        }

        /// The newest state of device `d` alone: (generation, stripes).
        fn device(&self, d: usize) -> Option<(u64, Vec<u64>)> {
            let disk = &self.disks[d];
            record::newest(&disk[..4096], &disk[4096..], &UUID, 512)
                .expect("current format")
                .map(|r| (r.generation, r.entries.iter().map(|e| e.stripe).collect()))
        }

        fn write(&mut self, stripe: u64, now_us: u64) {
            assert!(matches!(self.j.mark(&self.jv, stripe), Mark::Wait(_)));
            self.j.clean(&self.jv, stripe, now_us);
        }
    }

    /// Alternate mode: a checkpoint goes to both devices, each delta to device g mod 2 with
    /// the delta the other one got before it; each device alone reads back the state of the
    /// last record it was written, and the newer of the two is the newest durable state.
    #[test]
    fn alternate_devices_each_hold_the_whole_chain_up_to_their_last_record() {
        use record::Kind::{Checkpoint, Delta};
        let mut t = TwoDevices::new(JournalMode::Alternate);
        t.write(1, 1);
        // Clean stripes stay one record (no hysteresis otherwise), then leave.
        assert_eq!(
            t.flush(2),
            (
                1,
                Checkpoint,
                vec![0, 1],
                RecordOutcome::Durable { again: false }
            )
        );
        assert_eq!(t.device(0), Some((1, vec![1])));
        assert_eq!(t.device(1), Some((1, vec![1])));
        for g in 2..8u64 {
            t.write(g * 2, g * 10);
            let (gen, kind, devs, outcome) = t.flush(g * 10 + 1);
            assert_eq!(
                (gen, kind, outcome),
                (g, Delta, RecordOutcome::Durable { again: false })
            );
            assert_eq!(devs, vec![(g % 2) as u32], "generation {g}");
            let (dg, listed) = t.device((g % 2) as usize).expect("written");
            assert_eq!(dg, g);
            assert!(listed.contains(&(g * 2)));
            // The other device is one record behind.
            assert_eq!(t.device(((g + 1) % 2) as usize).map(|s| s.0), Some(g - 1));
        }
        // Device 0 goes (its write fails): generation 8 reaches no device, and the next record
        // takes it to device 1, which then holds the newest state alone.
        t.down[0] = true;
        // Stripe 60 is being written (marked, not clean) until the survivor has it.
        assert_eq!(t.j.mark(&t.jv, 60), Mark::Wait(8));
        let (g, _, devs, outcome) = t.flush(101);
        assert_eq!((g, devs, outcome), (8, vec![0], RecordOutcome::Retry));
        assert!(t.j.degraded() && !t.j.is_failed());
        assert_eq!(t.j.durable_generation(), 7);
        let (g, _, devs, outcome) = t.flush(102);
        assert_eq!(
            (g, devs, outcome),
            (9, vec![1], RecordOutcome::Durable { again: false })
        );
        let (g1, s1) = t.device(1).expect("written");
        assert_eq!(g1, 9);
        assert!(
            s1.contains(&60),
            "the lost record's mark reached the survivor"
        );
        assert_eq!(t.device(0).map(|s| s.0), Some(6));
        t.j.clean(&t.jv, 60, 103);
        // From now on every record goes to the survivor.
        t.write(62, 150);
        let (g, _, devs, _) = t.flush(151);
        assert_eq!((g, devs), (10, vec![1]));
        // The survivor goes too: the journal fails.
        t.down[1] = true;
        t.write(61, 200);
        let (_, _, _, outcome) = t.flush(201);
        assert_eq!(outcome, RecordOutcome::Failed);
        assert!(t.j.is_failed());
    }

    /// Mirror mode: every record goes to both devices; one failing costs nothing but the
    /// device (the record is durable on the other), and its marks are on the survivor. A
    /// record only the survivor holds lets its writers go only once the volume records the
    /// drop ([`Journal::drops_to_record`]); until then no record starts.
    #[test]
    fn mirrored_devices_hold_every_record_and_survive_one_loss() {
        let mut t = TwoDevices::new(JournalMode::Mirror);
        for g in 1..5u64 {
            t.write(g, g * 10);
            let (gen, _, devs, outcome) = t.flush(g * 10 + 1);
            assert_eq!(
                (gen, devs, outcome),
                (g, vec![0, 1], RecordOutcome::Durable { again: false })
            );
            assert_eq!(t.device(0), t.device(1));
        }
        assert_eq!(t.j.drops_to_record(0), None);
        t.down[0] = true;
        t.write(30, 100);
        let (g, _, devs, outcome) = t.flush(101);
        assert_eq!((g, devs, outcome), (5, vec![0, 1], RecordOutcome::Retry));
        assert!(t.j.degraded());
        assert!(t.device(1).expect("written").1.contains(&30));
        assert_eq!(
            t.j.durable_generation(),
            4,
            "held until the drop is recorded"
        );
        assert!(t.j.begin_flush(102, &mut Vec::new()).is_none());
        assert_eq!(t.j.drops_to_record(0), Some(0b01));
        t.j.drops_recorded(0, 0b01);
        assert_eq!(t.j.drops_to_record(0), None);
        t.write(31, 200);
        let (g, _, devs, outcome) = t.flush(201);
        assert_eq!((g, devs), (6, vec![1]));
        assert!(matches!(outcome, RecordOutcome::Durable { .. }));
        assert_eq!(t.j.durable_generation(), 6);
        assert_eq!(t.device(1).map(|s| s.0), Some(6));
        assert_eq!(t.device(0).map(|s| s.0), Some(4));
    }

    /// Alternate mode records no drop: a restart missing a device resyncs everything anyway.
    #[test]
    fn alternating_devices_ask_for_no_drop_record() {
        let mut t = TwoDevices::new(JournalMode::Alternate);
        t.write(1, 1);
        t.flush(2);
        t.down[1] = true;
        t.j.device_gone(1);
        assert_eq!(t.j.drops_to_record(0), None);
        t.write(2, 10);
        let (_, _, devs, outcome) = t.flush(11);
        assert_eq!(devs, vec![0]);
        assert!(matches!(outcome, RecordOutcome::Durable { .. }));
    }

    /// A lost device replaced online (a fresh, zeroed device in its place): the next record
    /// is a checkpoint of the whole listed set to both devices, so the replacement alone
    /// reads back the newest state from then on, and alternation resumes. Before that
    /// checkpoint it holds nothing, and the survivor everything.
    #[test]
    fn a_device_replaced_online_gets_a_checkpoint_of_everything_first() {
        use record::Kind::{Checkpoint, Delta};
        for mode in [JournalMode::Alternate, JournalMode::Mirror] {
            let mut t = TwoDevices::new(mode);
            // Stripe 5 stays listed throughout (marked, never clean).
            assert!(matches!(t.j.mark(&t.jv, 5), Mark::Wait(_)));
            t.write(1, 1);
            t.flush(2);
            t.write(2, 10);
            t.flush(11);
            t.down[1] = true;
            t.j.device_gone(1);
            if mode == JournalMode::Mirror {
                assert!(t.j.begin_flush(12, &mut Vec::new()).is_none());
                assert_eq!(t.j.drops_to_record(0), Some(0b10));
                t.j.drops_recorded(0, 0b10);
            }
            assert!(!t.j.device_added(0), "{mode:?}: device 0 is not lost");
            t.write(3, 20);
            let (g, _, devs, _) = t.flush(21);
            assert_eq!(devs, vec![0], "{mode:?}");
            // The replacement: fresh and zeroed.
            t.disks[1].iter_mut().for_each(|b| *b = 0);
            t.down[1] = false;
            assert!(t.j.device_added(1));
            assert!(!t.j.degraded());
            assert!(!t.j.device_added(1), "{mode:?}: already live");
            // Still recorded dropped until it holds a checkpoint.
            assert_eq!(t.j.drops_to_record(0), None, "{mode:?}");
            t.write(4, 30);
            let (g2, kind, devs, outcome) = t.flush(31);
            assert_eq!(
                (g2, kind, devs, outcome),
                (
                    g + 1,
                    Checkpoint,
                    vec![0, 1],
                    RecordOutcome::Durable { again: false }
                ),
                "{mode:?}"
            );
            assert_eq!(t.device(1), t.device(0), "{mode:?}");
            assert!(t.device(1).expect("written").1.contains(&5), "{mode:?}");
            if mode == JournalMode::Mirror {
                assert_eq!(t.j.drops_to_record(0), Some(0));
                t.j.drops_recorded(0, 0);
            }
            assert_eq!(t.j.drops_to_record(0), None, "{mode:?}");
            // Records spread over both again.
            t.write(6, 40);
            let (g3, kind, devs, _) = t.flush(41);
            let want = match mode {
                JournalMode::Alternate => vec![(g3 % 2) as u32],
                JournalMode::Mirror => vec![0, 1],
            };
            assert_eq!((kind, devs), (Delta, want), "{mode:?}");
            let newest = t.device(0).max(t.device(1)).expect("written");
            assert_eq!(newest.0, g3, "{mode:?}");
            assert!(newest.1.contains(&5) && newest.1.contains(&6), "{mode:?}");
        }
    }

    /// A replacement with a volatile cache joins a volume whose members had none: from then
    /// on a stripe leaves only once a member flush covers its last write.
    #[test]
    fn a_volatile_replacement_makes_stripes_wait_for_a_member_flush() {
        let (j, jv) = rig_of(2, false, |_| {});
        assert!(!jv.volatile_members());
        assert_eq!(j.mark(&jv, 0), Mark::Wait(1));
        assert_eq!(flush(&j, 1), vec![0]);
        jv.set_volatile_members(true);
        j.clean(&jv, 0, 2);
        assert_eq!(flush(&j, 1000), vec![0], "left without a member flush");
        assert!(jv.member_flush_wanted.load(Relaxed));
        jv.member_flush_done(3);
        assert_eq!(flush(&j, 1000), Vec::<u64>::new());
    }

    /// A write that takes the fast path after the member flush that covered the stripe's
    /// earlier write started keeps the stripe listed until a later member flush covers it.
    #[test]
    fn fast_path_write_after_the_member_flush_keeps_the_stripe() {
        let (j, jv) = written_once();
        jv.member_flush_done(2); // covers the clean at 1 µs
        assert_eq!(j.mark(&jv, 0), Mark::Ready);
        j.clean(&jv, 0, 3); // after the member flush started: not covered
        assert_eq!(jv.active(0), 0);
        assert_eq!(
            j.try_remove(&jv, 0, 0, Thresholds::both(u64::MAX)),
            Removal::Uncovered
        );
        assert!(jv.listed(0));
        assert!(jv.member_flush_wanted.load(Relaxed));
        // The next record keeps it too, and with its write covered it leaves.
        assert_eq!(flush(&j, 1000), vec![0]);
        jv.member_flush_done(4);
        assert_eq!(flush(&j, 1000), Vec::<u64>::new());
    }

    /// A stripe with a mark on it never leaves, however old its last clean; without one it
    /// does, and a mark then lists it again in the open generation.
    #[test]
    fn a_marked_stripe_stays_and_a_mark_after_removal_lists_it_again() {
        let (j, jv) = written_once();
        jv.member_flush_done(5);
        assert_eq!(j.mark(&jv, 0), Mark::Ready);
        let all = Thresholds::both(u64::MAX);
        assert_eq!(j.try_remove(&jv, 0, 0, all), Removal::InUse);
        j.clean(&jv, 0, 2);
        // Its second write since it was listed: the longer hysteresis applies.
        let th = Thresholds {
            first: u64::MAX,
            again: 2,
        };
        assert_eq!(j.try_remove(&jv, 0, 0, th), Removal::Recent(2));
        assert_eq!(j.try_remove(&jv, 0, 0, all), Removal::Removed);
        assert!(!jv.listed(0));
        let open = j.open_generation();
        assert_eq!(j.mark(&jv, 0), Mark::Wait(open));
        assert!(jv.listed(0));
    }

    /// A shard's lock and its first two states share one cache line (what a write's prefetch
    /// fetches); more states go to the heap and come back out of it.
    #[test]
    fn a_shard_holds_four_states_and_more_beside() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(std::mem::size_of::<Shard>(), 128);
        // The count and the first two states are in the shard's first line.
        let shard = Shard(ShardLock::new(Slots::default()));
        let base = &shard as *const Shard as usize;
        let end_of_second = {
            let g = lock_shard(&shard.0);
            &g.inline[1] as *const Slot as usize + std::mem::size_of::<Slot>()
        };
        assert!(end_of_second - base <= 64, "{}", end_of_second - base);
        let mut slots = Slots::default();
        for s in 0..7 {
            slots.insert(Slot::new(s * 7, 1, s));
        }
        assert!(slots.more.as_ref().is_some_and(|m| m.len() == 3));
        for s in 0..7 {
            assert_eq!(slots.get(s * 7).map(|x| x.active()), Some(s));
            assert!(slots.find(s * 7).is_some());
        }
        assert_eq!(slots.get(1), None);
        // A state in the line leaves: the last from the heap takes its place.
        assert!(slots.remove(0) && !slots.remove(0));
        assert_eq!(slots.get(0), None);
        assert_eq!(slots.inline[0].stripe, 42);
        assert_eq!(slots.len, 6);
        // One from the heap leaves.
        assert!(slots.remove(28));
        assert_eq!(slots.len, 5);
        for s in [7, 14, 21, 35, 42] {
            assert!(slots.get(s).is_some(), "{s}");
        }
        // Down to the line alone, then emptied: the heap part is kept, unused.
        assert!(slots.remove(35) && slots.remove(7));
        assert_eq!(slots.in_line(), 3);
        assert!(!slots.overflows());
        let kept: Vec<u64> = slots.inline[..3].iter().map(|s| s.stripe).collect();
        for s in kept {
            assert!(slots.remove(s));
        }
        assert_eq!(slots.len, 0);
        assert!(slots.inline.iter().all(|s| *s == Slot::default()));
        slots.insert(Slot::new(99, 2, 0));
        assert_eq!(slots.get(99).map(|x| x.generation()), Some(2));
    }

    /// Where the runtime asks for huge pages, a table of a huge page or more starts on a
    /// huge-page boundary (the kernel backs only whole aligned huge pages of the advised
    /// range), within the memory [`state_table_bytes`] counts; a smaller one, or one without the
    /// hook, takes just its own shards. Marks go through the table as placed.
    #[test]
    fn a_large_state_table_starts_on_a_huge_page_boundary() {
        let size = std::mem::size_of::<Shard>();
        for advise in [true, false] {
            let mut cfg = JournalConfig::new(UUID, 512, 1 << 20, [(0, 0), (0, 2048)]);
            cfg.max_channels = 1;
            if advise {
                cfg.advise_state_memory = Some(|_, _| {});
            }
            let j = Journal::new(cfg, None);
            // 8 GiB members' worth of stripes (a 4 MiB table), and a small volume.
            for (number, stripes) in [(0u32, 131_072u64), (1, 131_065), (2, 1_000)] {
                let (jv, _) = j.attach_volume(number, stripes, false);
                let t = jv.table();
                assert_eq!(t.len() as u64, state_shards(stripes, j.cfg.max_entries()));
                let large = std::mem::size_of_val(t) >= HUGE_PAGE;
                assert_eq!(large, stripes > 1_000);
                if advise && large {
                    assert_eq!(
                        t.as_ptr() as usize % HUGE_PAGE,
                        0,
                        "table {number} unaligned"
                    );
                    assert!(jv.first < HUGE_PAGE / size);
                    // Its last huge page lies inside the allocation too (8 GiB members' table
                    // ends 512 bytes short of its second one).
                    assert!(
                        jv.shards.capacity() * size
                            >= jv.first * size
                                + std::mem::size_of_val(t).next_multiple_of(HUGE_PAGE)
                    );
                } else {
                    assert_eq!(jv.first, 0);
                }
                assert!(
                    ((jv.first + t.len()) * size) as u64
                        <= state_table_bytes(stripes, j.cfg.max_entries())
                );
                for s in [0, stripes / 2, stripes - 1] {
                    assert!(matches!(j.mark(&jv, s), Mark::Wait(_)));
                    assert!(jv.listed(s));
                }
            }
        }
    }

    /// A volume with a shard per block of four stripes: every stripe listed at once fits the
    /// shards' own lines (nothing on the heap), and each keeps its own state.
    #[test]
    fn a_small_volume_has_a_shard_per_block_of_stripes() {
        let (j, jv) = rig_of(102, false, |_| {});
        assert_eq!(jv.table().len(), 26);
        for s in 0..102 {
            assert!(matches!(j.mark(&jv, s), Mark::Wait(_)));
        }
        assert_eq!(flush(&j, 1), (0..102).collect::<Vec<u64>>());
        for sh in jv.table().iter() {
            let g = lock_shard(&sh.0);
            assert!(g.len as usize <= INLINE && g.more.is_none());
        }
        for s in (0..102).step_by(2) {
            j.clean(&jv, s, 1);
        }
        let left: Vec<u64> = (1..102).step_by(2).collect();
        assert_eq!(flush(&j, 1000), left);
        for s in 0..102 {
            assert_eq!(jv.listed(s), s % 2 == 1, "{s}");
        }
    }

    /// The memory bound a create checks ([`state_table_bytes`] with no bound on the record's
    /// room) is the largest table: 4 MiB of shards, and room for its huge-page alignment; a
    /// small volume's, its shard per block.
    #[test]
    fn the_state_table_bound_is_the_largest_table() {
        let shard = std::mem::size_of::<Shard>() as u64;
        assert_eq!(MAX_STATE_SHARDS * shard, 4 << 20);
        assert_eq!(state_table_bytes(1 << 34, usize::MAX), 6 << 20);
        assert_eq!(state_table_bytes(100, usize::MAX), 25 * shard);
        assert_eq!(
            state_shards(1 << 34, 173_000),
            32_768,
            "the default journal's room, capped"
        );
        assert_eq!(state_shards(1 << 34, 40_000), 32_768, "a smaller room's");
        assert_eq!(state_shards(1 << 34, 20_000), 16_384, "a smaller room's");
    }

    /// A volume of more stripes than shards: stripes sharing a shard keep their own states.
    #[test]
    fn stripes_sharing_a_shard_keep_their_own_state() {
        let (j, jv) = rig_of(1 << 20, false, |cfg| cfg.slot_bytes = 1 << 20);
        DISK.with(|d| d.borrow_mut().resize(1 << 22, 0));
        let stripes = jv.stripes();
        let shards = jv.table().len() as u64;
        assert_eq!(
            shards,
            ((j.cfg.max_entries() as u64).next_power_of_two() / 2).min(MAX_STATE_SHARDS)
        );
        assert!(shards.is_power_of_two());
        assert!(shards < stripes);
        // Stripes at a stride of the shard count, and their neighbours.
        let picked: Vec<u64> = (0..8)
            .flat_map(|k| [k * shards, k * shards + 1])
            .filter(|&s| s < stripes)
            .collect();
        for &s in &picked {
            assert!(matches!(j.mark(&jv, s), Mark::Wait(_)));
        }
        let mut want = picked.clone();
        want.sort_unstable();
        let mut got = flush(&j, 1);
        got.sort_unstable();
        assert_eq!(got, want);
        for &s in &picked[..4] {
            j.clean(&jv, s, 1);
        }
        let mut got = flush(&j, 1000);
        got.sort_unstable();
        let mut rest = picked[4..].to_vec();
        rest.sort_unstable();
        assert_eq!(got, rest, "only the clean ones left");
        for &s in &picked[4..] {
            assert_eq!(jv.active(s), 1);
        }
        assert_eq!(jv.listed_entries(), rest.len() as u64);
    }

    /// A volume of more stripes than shards: a block of four consecutive stripes shares one
    /// shard (a sequential stream's next states are in the line of its last), consecutive
    /// blocks spread over the shards, and a stream listed whole stays in the shards' lines.
    #[test]
    fn a_large_volume_keeps_a_block_of_stripes_in_one_shard() {
        let (j, jv) = rig_of(1 << 20, false, |cfg| cfg.slot_bytes = 1 << 20);
        DISK.with(|d| d.borrow_mut().resize(1 << 22, 0));
        let shards = jv.table().len() as u64;
        assert!(
            shards * (INLINE as u64) < jv.stripes(),
            "the hashed mapping"
        );
        let at = |s: u64| jv.state_address(s) as usize;
        for b in [0, 1, 1000, (1 << 18) - 1] {
            let s = b * INLINE as u64;
            for k in 1..INLINE as u64 {
                assert_eq!(at(s + k), at(s), "stripe {} with {s}", s + k);
            }
        }
        let blocks: HashSet<usize> = (0..1024).map(|b| at(b * INLINE as u64)).collect();
        assert!(
            blocks.len() > 1000,
            "1024 blocks in {} shards",
            blocks.len()
        );
        // A stream of 64 stripes listed ahead: every state in its shard's own lines.
        assert_eq!(j.list_ahead(&jv, 4096, 4096 + 64), Some(1));
        for s in 4096..4096 + 64 {
            assert!(lock_shard(jv.shard_of(s)).more.is_none(), "{s}");
            assert_eq!(jv.slot(s).map(|x| x.generation()), Some(1));
        }
    }

    /// A stripe leaves one hysteresis after it went clean, not two: found clean but within the
    /// hysteresis at its first check, it is due again at its clean time, not a whole
    /// hysteresis after that check.
    #[test]
    fn a_clean_stripe_leaves_one_hysteresis_after_its_write() {
        // A volume without the shorter first hysteresis (2 stripes): the first look comes
        // 1000 + 100 µs after the mark.
        let j = hysteresis_journal(100, None);
        let (jv, _) = j.attach_volume(0, 2, false);
        assert!(matches!(j.mark(&jv, 0), Mark::Wait(_)));
        assert_eq!(flush(&j, 0), vec![0]);
        j.clean(&jv, 0, 500);
        // First check (threshold 200): clean at 500, within the hysteresis: stays.
        assert_eq!(flush(&j, 1200), vec![0]);
        // Hysteresis past its clean time (threshold 600): leaves.
        assert_eq!(flush(&j, 1600), Vec::<u64>::new());
    }

    /// A stripe written once since it was listed leaves after the first hysteresis; one
    /// written again while listed stays for the whole hysteresis after its last write.
    #[test]
    fn a_stripe_written_again_while_listed_stays_for_the_longer_hysteresis() {
        let j = hysteresis_journal(100, Some(0));
        let (jv, _) = j.attach_volume(0, 8, false);
        assert!(matches!(j.mark(&jv, 0), Mark::Wait(_)));
        assert!(matches!(j.mark(&jv, 5), Mark::Wait(_)));
        assert_eq!(flush(&j, 0), vec![0, 5]);
        j.clean(&jv, 0, 10);
        j.clean(&jv, 5, 10);
        // Stripe 5 is written again (the fast path: listed and durable).
        assert_eq!(j.mark(&jv, 5), Mark::Ready);
        j.clean(&jv, 5, 20);
        // Threshold 100 for a first write, 0 for a second: 0 leaves, 5 stays.
        assert_eq!(flush(&j, 200), vec![5]);
        assert_eq!(flush(&j, 900), vec![5]);
        // The full hysteresis past its last clean (threshold 100): leaves.
        assert_eq!(flush(&j, 1100), Vec::<u64>::new());
        // Listed afresh, it is a first write again.
        assert!(matches!(j.mark(&jv, 5), Mark::Wait(_)));
        assert_eq!(flush(&j, 1200), vec![5]);
        j.clean(&jv, 5, 1210);
        assert_eq!(flush(&j, 1300), vec![5]);
        assert_eq!(flush(&j, 1320), Vec::<u64>::new());
    }

    /// A generation writes its changes: with 20,000 stripes listed, each record marking three
    /// more is one 4 KiB delta and looks at no listed entry; the chain wraps into a checkpoint
    /// of the whole set now and then; the device lists exactly what the journal does throughout.
    #[test]
    fn a_record_costs_its_changes_not_the_listed_set() {
        let mut cfg = JournalConfig::new(UUID, 4096, 1 << 20, [(0, 16), (0, 16 + 256)]);
        cfg.max_channels = 1;
        cfg.hysteresis_us = 1_000_000;
        disk_for(&cfg);
        let j = Journal::new(cfg, None);
        let (jv, _) = j.attach_volume(0, 1 << 20, false);
        for s in 0..20_000u64 {
            assert!(matches!(j.mark(&jv, s * 50), Mark::Wait(_)));
        }
        let (job, listed) = flush_job(&j, 1);
        assert_eq!(job.kind, record::Kind::Checkpoint);
        assert_eq!(listed.len(), 20_000);
        for s in 0..20_000u64 {
            j.clean(&jv, s * 50, 2);
        }
        let (bytes0, checks0) = (
            j.stats.bytes_written.load(Relaxed),
            j.stats.removal_checks.load(Relaxed),
        );
        let mut next = 20_000 * 50 + 1;
        let (mut deltas, mut checkpoints, mut delta_bytes) = (0u64, 0u64, 0u64);
        for g in 0..600u64 {
            for _ in 0..3 {
                assert!(matches!(j.mark(&jv, next), Mark::Wait(_)));
                next += 1;
            }
            let before = j.stats.bytes_written.load(Relaxed);
            let (job, listed) = flush_job(&j, 10 + g);
            let wrote = j.stats.bytes_written.load(Relaxed) - before;
            match job.kind {
                record::Kind::Delta => {
                    assert_eq!(wrote, 4096, "generation {}", job.generation);
                    deltas += 1;
                    delta_bytes += wrote;
                }
                record::Kind::Checkpoint => checkpoints += 1,
            }
            assert_eq!(listed.len() as u64, 20_000 + 3 * (g + 1));
            assert_eq!(j.listed_count(), 20_000 + 3 * (g + 1));
            assert_eq!(jv.listed_entries(), 20_000 + 3 * (g + 1));
        }
        // Nothing was due (all within the hysteresis): no record looked at a listed entry.
        assert_eq!(j.stats.removal_checks.load(Relaxed), checks0);
        assert!(
            checkpoints >= 2,
            "{checkpoints} checkpoints in 600 generations"
        );
        assert!(
            deltas > 100 * checkpoints,
            "{deltas} deltas, {checkpoints} checkpoints"
        );
        // Checkpoints cost no more than the deltas they follow.
        let total = j.stats.bytes_written.load(Relaxed) - bytes0;
        assert!(
            total <= 2 * delta_bytes,
            "{total} bytes, {delta_bytes} in deltas"
        );
        // Once the hysteresis has passed, the first 20,000 leave: one record of removals.
        let (job, listed) = flush_job(&j, 2_000_000);
        assert_eq!(listed.len(), 1800);
        assert_eq!(j.listed_count(), 1800);
        assert!(job.generation > 600);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever the journal does — marks, cleans, records of removals after hysteresis,
        /// carried entries released with some at risk, checkpoints when the chain wraps — after
        /// each record its device lists exactly the stripes the journal lists (and those it
        /// carries), read back as recovery reads it.
        #[test]
        fn the_device_lists_what_the_journal_lists(
            ops in proptest::collection::vec((0u8..4, 0u64..48), 1..300),
            carried in proptest::collection::btree_set(0u64..48, 0..10),
            at_risk_pick in proptest::collection::vec(proptest::bool::ANY, 10),
            hyst in 0u64..4,
            slot_blocks in 4u64..9,
        ) {
            let mut cfg = JournalConfig::new(UUID, 512, slot_blocks * 512, [(0, 0), (0, 8)]);
            cfg.max_channels = 1;
            cfg.hysteresis_generations = hyst;
            cfg.hysteresis_us = hyst * 10;
            // Stretched while the listed set leaves room (unless 0).
            cfg.roomy_hysteresis_us = hyst * 40;
            // Half the cases scan with prefetch hints (as the runtimes do), half with loads.
            if hyst % 2 == 0 {
                cfg.prefetch = Some(|_| {});
            }
            disk_for(&cfg);
            let carried: Vec<Entry> = carried.into_iter().map(|stripe| Entry { volume: 0, stripe }).collect();
            let last = (!carried.is_empty()).then(|| record::Record {
                generation: 9,
                entries: carried.clone(),
                area: 0,
                base: 9,
                records: 1,
                bytes: 512,
            });
            let j = Journal::new(cfg, last);
            let (jv, mine) = j.attach_volume(0, 48, false);
            proptest::prop_assert_eq!(&mine, &carried.iter().map(|e| e.stripe).collect::<Vec<_>>());
            let at_risk: Vec<u64> = mine.iter().zip(&at_risk_pick).filter(|(_, &k)| k).map(|(s, _)| *s).collect();
            let mut released = false;
            let mut marked: Vec<u64> = Vec::new();
            let mut now = 100;
            for (op, s) in ops {
                now += 3;
                match op {
                    0 => {
                        // A write starts (if the record has room).
                        if j.mark(&jv, s) != Mark::Full {
                            marked.push(s);
                        }
                    }
                    1 => {
                        if let Some(s) = marked.pop() {
                            j.clean(&jv, s, now);
                        }
                    }
                    2 => {
                        if !released {
                            j.release_carried(0, &at_risk);
                            released = true;
                        }
                    }
                    _ => {
                        let (_, on_disk) = flush_job(&j, now);
                        let mut want: Vec<u64> = (0..48).filter(|&s| jv.listed(s)).collect();
                        let still: Vec<u64> = if released { at_risk.clone() } else { mine.clone() };
                        want.extend(still);
                        want.sort_unstable();
                        want.dedup();
                        proptest::prop_assert_eq!(on_disk, want);
                    }
                }
            }
        }
    }
}
