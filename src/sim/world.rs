//! The simulated world: reactors with one channel per volume, devices, a clock and an event
//! queue. Every choice comes from the seed, so a run replays exactly.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::disk::SimDisk;
use super::rng::Rng;
use crate::control::assembly;
use crate::control::{Recovery, RecoveryError, RecoveryOptions, Step, Stripes};
use crate::engine::{
    Address, Backend, Buf, Channel, Completion, Device, DeviceIo, IoOp, Msg, SubmitError, UserOp,
    Volume,
};
use crate::journal::{record, Journal, JournalConfig, JournalMode, JournalVolume};
use crate::layout::Geometry;
use crate::superblock::{MemberState, MemberSuperblock};

/// The backend a simulated channel talks to: it only collects requests; the world runs them.
#[derive(Default)]
pub struct SimPort {
    now: u64,
    ios: Vec<DeviceIo>,
    msgs: Vec<(Address, Msg)>,
}

impl Backend for SimPort {
    fn submit(&mut self, io: DeviceIo) {
        self.ios.push(io);
    }
    fn send(&mut self, to: Address, msg: Msg) {
        self.msgs.push((to, msg));
    }
    fn now_us(&self) -> u64 {
        self.now
    }
    /// As SPDK's: the clock as it read at the start of a pass (here, of the last 64 µs), so
    /// the engine's cleans on members without volatile caches run with a time behind now.
    fn recent_us(&self) -> u64 {
        self.now - self.now % 64
    }
}

/// Journal set-up of a simulation.
#[derive(Debug, Clone)]
pub struct SimJournal {
    /// Journal uuid.
    pub uuid: [u8; 16],
    /// Journal block size.
    pub block_size: u32,
    /// Slot size in bytes.
    pub slot_bytes: u64,
    /// Journal devices: 1, or 2 (each holding both areas; records spread as `mode` says).
    pub devices: u32,
    /// How records spread over two devices.
    pub mode: JournalMode,
    /// Journal devices cache writes volatilely.
    pub volatile: bool,
    /// Hysteresis before clean stripes leave the record (one written again while listed).
    pub hysteresis_us: u64,
    /// Up to how long `hysteresis_us` stretches while the listed set leaves room
    /// ([`JournalConfig::roomy_hysteresis_us`]; 0: never).
    pub roomy_hysteresis_us: u64,
    /// Hysteresis of a stripe written once since it was listed (at most `hysteresis_us`).
    pub first_hysteresis_us: u64,
    /// Whether the volumes get the shorter first hysteresis (`first_hysteresis_us`); else
    /// every listed stripe stays for `hysteresis_us` from its last clean
    /// ([`JournalConfig::first_hysteresis_above`]).
    pub first_short: bool,
    /// Hysteresis in generations.
    pub hysteresis_generations: u64,
    /// Control: a replacement journal device is taken without waiting for the survivor to
    /// hold every durable record ([`JournalConfig::control_replace_early`]).
    pub control_replace_early: bool,
    /// Control: a mirrored pair's drop is not recorded before the survivor's records release
    /// their writers ([`JournalConfig::control_no_drop_record`]).
    pub control_no_drop_record: bool,
    /// The journal lives on the members (two devices, mirrored): journal device k is a
    /// reserved area of member k of the first volume, so the two fail and come back together
    /// ([`World::fail_member`], [`World::fail_member_transiently`]), and a replacement member
    /// brings a blank area ([`World::replace_member`]).
    /// How far ahead of a sequential stream of full-stripe writes stripes are listed
    /// (`JournalConfig::list_ahead`; the simulated volumes have tens of stripes, so a few).
    pub list_ahead: u64,
    pub on_members: bool,
}

impl SimJournal {
    /// The journal configuration this set-up implies.
    pub fn config(&self) -> JournalConfig {
        let slot_blocks = self.slot_bytes / self.block_size as u64;
        let base = crate::superblock::JOURNAL_SLOTS_OFFSET / self.block_size as u64;
        let slots = [(0, base), (0, base + slot_blocks)];
        let mut cfg = JournalConfig::new(self.uuid, self.block_size, self.slot_bytes, slots);
        cfg.devices = self.devices;
        cfg.mode = self.mode;
        cfg.volatile_cache = self.volatile;
        cfg.hysteresis_us = self.hysteresis_us;
        cfg.roomy_hysteresis_us = self.roomy_hysteresis_us;
        cfg.first_hysteresis_us = self.first_hysteresis_us;
        // The simulated volumes are small (tens to thousands of stripes): whether the drawn
        // first hysteresis applies to them is drawn too, whatever their size (a runtime's
        // volume gets it only when it has more stripes than the listed set holds).
        cfg.first_hysteresis_above = Some(if self.first_short { 0 } else { u64::MAX });
        cfg.hysteresis_generations = self.hysteresis_generations;
        cfg.list_ahead = self.list_ahead;
        cfg.control_replace_early = self.control_replace_early;
        cfg.control_no_drop_record = self.control_no_drop_record;
        cfg
    }

    /// Blocks a journal device needs.
    pub fn device_blocks(&self) -> u64 {
        (crate::superblock::JOURNAL_SLOTS_OFFSET + 2 * self.slot_bytes) / self.block_size as u64
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Master seed.
    pub seed: u64,
    /// Reactors (each has one channel per volume).
    pub reactors: u32,
    /// Volumes: (number, geometry).
    pub volumes: Vec<(u32, Geometry)>,
    /// Members cache writes volatilely.
    pub member_volatile: bool,
    /// The journal; `None` switches it off (comparison runs).
    pub journal: Option<SimJournal>,
    /// Device latency upper bound (µs).
    pub max_latency_us: u64,
    /// Chance that a member I/O fails and kills its member (at most one member per volume).
    pub error_rate: f64,
    /// Period of channel ticks (µs).
    pub tick_us: u64,
    /// The runtime records member failures in the surviving members' superblocks (here: a
    /// superblock write event after a device latency, lost if the power goes first), and
    /// writes wait for that record before they are acknowledged. Off only in the simulator's
    /// control run.
    pub record_failures: bool,
    /// Simulator control: writes go on before their mark is durable
    /// ([`crate::engine::Volume::set_control_writes_before_durable`]); loss must be found.
    pub writes_before_durable: bool,
}

/// How recovery reads the journal's areas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordRead {
    /// The newest chain, checkpoint and deltas ([`record::newest`]): what every runtime does.
    #[default]
    Chain,
    /// The simulator's control: only the newest chain's checkpoint, its deltas ignored (the
    /// stripes they added are not resynced).
    CheckpointOnly,
    /// The simulator's control: with a journal device missing, the survivor's newest record
    /// is trusted as complete (no full resync), though the newest generation may have been on
    /// the missing device alone.
    SurvivorTrusted,
}

/// The record writes a world issued, decoded as they were submitted: the simulator's own view
/// of what the journal wrote (how many checkpoints and deltas, how large), and a check of the
/// writer's side of the format (`malformed` counts breaches): every record decodes; a
/// checkpoint starts an area, the other one than the chain before it, with the next
/// generation; a delta lands right behind its chain, with its base and the next generation.
/// Deltas that remove a stripe the chain does not list, or add one it lists, are counted apart
/// (`odd_entries`: harmless to a reader, which applies them to a set).
#[derive(Debug, Default, Clone)]
pub struct JournalTrace {
    /// Record writes.
    pub records: u64,
    /// Checkpoints among them.
    pub checkpoints: u64,
    /// Checkpoints written behind a chain in the same run, because the next delta did not fit
    /// (the others start a run: the first record, the first after each restart).
    pub wraps: u64,
    /// Entries (adds and removes) of all deltas.
    pub delta_entries: u64,
    /// Removes among them.
    pub delta_removes: u64,
    /// Most entries in one delta.
    pub max_delta: u64,
    /// Most entries in one checkpoint.
    pub max_checkpoint: u64,
    /// Most stripes the records listed at once (a checkpoint's, with the deltas behind it
    /// applied).
    pub max_listed: u64,
    /// Record bytes written (padding included).
    pub bytes: u64,
    /// Record writes that did not decode, or broke the order above.
    pub malformed: u64,
    /// Deltas that removed a stripe the chain did not list, or added one it listed already.
    pub odd_entries: u64,
    /// First few problems.
    pub notes: Vec<String>,
    /// The chain written last.
    chain: Option<Chain>,
}

/// The chain a world wrote last, as [`JournalTrace`] follows it.
#[derive(Clone)]
struct Chain {
    area: usize,
    base: u64,
    generation: u64,
    /// Bytes of the area it occupies.
    used: u64,
    listed: HashSet<record::Entry>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain(area {}, base {}, generation {}, {} bytes, {} listed)",
            self.area,
            self.base,
            self.generation,
            self.used,
            self.listed.len()
        )
    }
}

impl JournalTrace {
    /// Deltas written.
    pub fn deltas(&self) -> u64 {
        self.records - self.checkpoints
    }

    /// Add `o`'s counts to these (the maxima of both).
    pub fn absorb(&mut self, o: &JournalTrace) {
        self.records += o.records;
        self.checkpoints += o.checkpoints;
        self.wraps += o.wraps;
        self.delta_entries += o.delta_entries;
        self.delta_removes += o.delta_removes;
        self.max_delta = self.max_delta.max(o.max_delta);
        self.max_checkpoint = self.max_checkpoint.max(o.max_checkpoint);
        self.max_listed = self.max_listed.max(o.max_listed);
        self.bytes += o.bytes;
        self.malformed += o.malformed;
        self.odd_entries += o.odd_entries;
        for n in &o.notes {
            self.note(n.clone());
        }
    }

    /// Add `o`'s findings (malformed or odd record writes, and their notes), not its counts.
    pub fn absorb_checks(&mut self, o: &JournalTrace) {
        self.malformed += o.malformed;
        self.odd_entries += o.odd_entries;
        for n in &o.notes {
            self.note(n.clone());
        }
    }

    /// These counts, leaving zeros behind (the chain followed goes on).
    pub fn split(&mut self) -> JournalTrace {
        let chain = self.chain.take();
        let counts = std::mem::take(self);
        self.chain = chain;
        counts
    }

    fn note(&mut self, n: String) {
        if self.notes.len() < 4 {
            self.notes.push(n);
        }
    }

    /// A record write of `data` to journal device `dev` at `lba`: one record, or with two
    /// journal devices the chain's records that device lacked followed by the new one. Records
    /// already seen (written to the other device before, or the same record mirrored) are
    /// skipped; returns the header of the newest one when it decoded.
    fn observe(
        &mut self,
        sj: &SimJournal,
        dev: u32,
        lba: u64,
        data: &[u8],
    ) -> Option<record::Header> {
        self.records += 1;
        self.bytes += data.len() as u64;
        let cfg = sj.config();
        let bs = u64::from(sj.block_size);
        let slot_blocks = sj.slot_bytes / bs;
        let found = (0..2).find(|&k| {
            let (d, first) = cfg.slots[k];
            (cfg.devices > 1 || d == dev) && lba >= first && lba < first + slot_blocks
        });
        let Some(area) = found else {
            self.malformed += 1;
            self.note(format!("record write at {dev}:{lba} outside both areas"));
            return None;
        };
        let mut offset = (lba - cfg.slots[area].1) * bs;
        let mut at = 0usize;
        let mut last = None;
        while at < data.len() {
            let rest = &data[at..];
            let rec = match record::decode(rest, area, &sj.uuid) {
                Ok(r) => r,
                Err(e) => {
                    self.malformed += 1;
                    self.note(format!("record write to area {area} does not decode: {e}"));
                    self.chain = None;
                    return None;
                }
            };
            let len = record::record_bytes(rec.adds.len() + rec.removes.len(), bs as usize);
            let seen = self.chain.as_ref().is_some_and(|c| {
                c.area == area && rec.header.generation <= c.generation && offset < c.used
            });
            if !seen {
                last = Some(self.observe_one(area, offset, len.min(rest.len()) as u64, rec));
            }
            at += len;
            offset += len as u64;
        }
        last
    }

    /// [`JournalTrace::observe`] of one decoded record `rec`, not seen before, of `len` bytes
    /// at `offset` of `area`.
    fn observe_one(
        &mut self,
        area: usize,
        offset: u64,
        len: u64,
        rec: record::Decoded,
    ) -> record::Header {
        use record::Kind;
        let g = rec.header.generation;
        let n = (rec.adds.len() + rec.removes.len()) as u64;
        match rec.header.kind {
            Kind::Checkpoint => {
                self.checkpoints += 1;
                self.max_checkpoint = self.max_checkpoint.max(n);
                let in_order = offset == 0
                    && self
                        .chain
                        .as_ref()
                        .is_none_or(|c| c.area != area && g == c.generation + 1);
                if !in_order {
                    self.malformed += 1;
                    self.note(format!(
                        "checkpoint {g} at offset {offset} of area {area} after {:?}",
                        self.chain
                    ));
                }
                if self.chain.is_some() {
                    self.wraps += 1;
                }
                let listed: HashSet<record::Entry> = rec.adds.iter().copied().collect();
                self.max_listed = self.max_listed.max(listed.len() as u64);
                self.chain = Some(Chain {
                    area,
                    base: g,
                    generation: g,
                    used: len,
                    listed,
                });
            }
            Kind::Delta => {
                self.delta_entries += n;
                self.delta_removes += rec.removes.len() as u64;
                self.max_delta = self.max_delta.max(n);
                let Some(mut c) = self.chain.take() else {
                    self.malformed += 1;
                    self.note(format!("delta {g} with no checkpoint before it"));
                    return rec.header;
                };
                if c.area != area
                    || rec.header.base != c.base
                    || g != c.generation + 1
                    || offset != c.used
                {
                    self.malformed += 1;
                    self.note(format!(
                        "delta {g} (base {}) at offset {offset} of area {area} behind {c:?}",
                        rec.header.base
                    ));
                }
                let (mut unlisted, mut relisted) = (Vec::new(), Vec::new());
                for e in &rec.removes {
                    if !c.listed.remove(e) {
                        unlisted.push((e.volume, e.stripe));
                    }
                }
                for e in &rec.adds {
                    if !c.listed.insert(*e) {
                        relisted.push((e.volume, e.stripe));
                    }
                }
                if !unlisted.is_empty() || !relisted.is_empty() {
                    self.odd_entries += (unlisted.len() + relisted.len()) as u64;
                    unlisted.truncate(4);
                    relisted.truncate(4);
                    self.note(format!(
                        "delta {g} removes unlisted {unlisted:?}, adds listed {relisted:?}"
                    ));
                }
                self.max_listed = self.max_listed.max(c.listed.len() as u64);
                c.generation = g;
                c.used += len;
                self.chain = Some(c);
            }
        }
        rec.header
    }
}

/// A volume in the world.
pub struct SimVolume {
    /// Shared volume state.
    pub vol: Arc<Volume>,
    /// Its journal state.
    pub jv: Option<Arc<JournalVolume>>,
    /// Member devices.
    pub disks: Vec<SimDisk>,
}

enum Event {
    Io {
        reactor: u32,
        vi: usize,
        io: DeviceIo,
        id: u64,
    },
    Msg {
        reactor: u32,
        vi: usize,
        msg: Msg,
    },
    Tick {
        reactor: u32,
    },
    /// The superblock write recording volume `vi`'s failed members (failure count `seq`) and
    /// the dropped journal devices (`dropped`, when they are to be recorded).
    Record {
        vi: usize,
        seq: Option<u64>,
        failed: Vec<u32>,
        dropped: Option<u8>,
    },
}

/// Device contents after a crash.
#[derive(Clone)]
pub struct CrashImage {
    /// Member devices per volume.
    pub volumes: Vec<Vec<SimDisk>>,
    /// Journal devices.
    pub journal: Vec<SimDisk>,
    /// When the power went (the recovered world's clock goes on from here).
    pub now: u64,
    /// The journal is lost and no new one is named yet (the member superblocks still name
    /// the lost one): recovery must resync every stripe onto a fresh journal.
    pub journal_lost: bool,
    /// The power went during a recovery that resyncs every stripe (a journal device was
    /// missing): the generation its journal had made durable by then. A restart that trusts
    /// the journal must find that one again (not the one durable before the first power
    /// loss, which may have lived on the missing device alone).
    pub full_resync_durable: Option<u64>,
}

/// The simulation.
pub struct World {
    /// Set-up.
    pub cfg: SimConfig,
    /// Clock (µs).
    pub now: u64,
    rng: Rng,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    /// Events other than ticks.
    busy: usize,
    /// Volumes.
    pub volumes: Vec<SimVolume>,
    /// Journal devices.
    pub journal_disks: Vec<SimDisk>,
    /// The shared journal.
    pub journal: Option<Arc<Journal>>,
    channels: Vec<Vec<Channel<SimPort>>>,
    done: Vec<(u32, usize, Completion)>,
    /// Writes in flight: id → (volume index or journal, device, lba, data).
    inflight: BTreeMap<u64, (Option<usize>, u32, u64, Vec<u8>)>,
    /// Direct reads in flight (a runtime's own member read for a user read the engine found
    /// healthy, see [`Channel::direct_read`]): I/O id → (user tag, lba, blocks, member).
    direct_reads: BTreeMap<u64, (u64, u64, u64, u32)>,
    /// Per volume: a failure record is being written.
    recording: Vec<bool>,
    /// Journal on the members: a replacement member's journal area waiting for the journal to
    /// take it ([`Journal::device_added`]).
    journal_area_waiting: Option<u32>,
    /// The journal is lost and no new one is named yet.
    pub journal_lost: bool,
    /// What the journal wrote in this world.
    pub trace: JournalTrace,
    /// Record writes issued from another reactor than the record write before them (the
    /// flusher role moving between reactors), and the reactor of the last one.
    pub flusher_moves: u64,
    last_flusher: Option<u32>,
    /// Record writes issued from each reactor (by reactor number).
    pub records_by_reactor: Vec<u64>,
    /// The I/O id and generation of a checkpoint write in flight.
    checkpoint_write: Option<(u64, u64)>,
    /// Per volume index: the crash recovery running (the world polls it as it steps; see
    /// [`World::recover_online`]).
    recoveries: Vec<Option<Recovery>>,
    /// Completions of recovery requests not yet handed to their recovery.
    recovery_done: Vec<(usize, Result<(), crate::engine::IoError>)>,
    /// Recovery requests sent so far (numbers their tags).
    recovery_sent: u64,
    /// How each recovery ended: (volume index, result), oldest first.
    pub recovery_ends: Vec<(usize, Result<crate::control::Outcome, RecoveryError>)>,
}

/// Block size of a channel's volume.
fn ch_block_size(ch: &Channel<SimPort>) -> u64 {
    u64::from(ch.volume().geo.block_size)
}

/// Tag bit of the requests a recovery sends (their completions go to it, not to the caller).
const RECOVERY_TAG: u64 = 1 << 61;

impl World {
    /// A fresh world with zeroed devices.
    pub fn new(cfg: SimConfig) -> World {
        let disks = cfg
            .volumes
            .iter()
            .map(|(_, g)| {
                (0..g.members)
                    .map(|_| {
                        SimDisk::new(
                            g.block_size as usize,
                            g.member_blocks_used(),
                            cfg.member_volatile,
                        )
                    })
                    .collect()
            })
            .collect();
        let journal = cfg.journal.as_ref().map(|j| {
            (0..j.devices)
                .map(|_| SimDisk::new(j.block_size as usize, j.device_blocks(), j.volatile))
                .collect()
        });
        let mut disks: Vec<Vec<SimDisk>> = disks;
        for (vi, (number, geo)) in cfg.volumes.iter().enumerate() {
            let uuids: Vec<[u8; 16]> = (0..geo.members)
                .map(|m| member_uuid(*number, m, 0))
                .collect();
            for (m, d) in disks[vi].iter_mut().enumerate() {
                d.sb = Some(MemberSuperblock {
                    volume_uuid: volume_uuid(*number),
                    journal_uuid: cfg.journal.as_ref().map_or([0; 16], |j| j.uuid),
                    volume_number: *number,
                    name: format!("sim{number}"),
                    members: geo.members,
                    member_index: m as u32,
                    strip_blocks: geo.strip_blocks,
                    block_size: geo.block_size,
                    stripes: geo.stripes,
                    seq: 1,
                    member_states: vec![MemberState::Active; geo.members as usize],
                    member_uuids: uuids.clone(),
                    journal_dropped: 0,
                    // The journal on the members is modelled as disks coupled to members 0
                    // and 1 (`SimJournal::on_members`), not as a byte range of the member disks.
                    journal_area: 0,
                    // Zeroed devices: parity matches (`World::uninitialise` plants a volume
                    // created over old contents instead).
                    init_stripes: geo.stripes,
                });
            }
        }
        World::from_image(
            cfg,
            CrashImage {
                volumes: disks,
                journal: journal.unwrap_or_default(),
                now: 0,
                journal_lost: false,
                full_resync_durable: None,
            },
            None,
        )
    }

    /// A world over existing device contents. `journal` is the journal to use (recovery builds it
    /// from the records on the devices); `None` makes a fresh one when the config has a journal.
    pub fn from_image(
        cfg: SimConfig,
        mut image: CrashImage,
        journal: Option<Arc<Journal>>,
    ) -> World {
        let rng = Rng::new(cfg.seed);
        let journal = match (&cfg.journal, journal) {
            (Some(_), Some(j)) => Some(j),
            (Some(sj), None) => Some(Arc::new(Journal::new(sj.config(), None))),
            (None, _) => None,
        };
        let mut volumes = Vec::new();
        for (i, (number, geo)) in cfg.volumes.iter().enumerate() {
            let jv = journal
                .as_ref()
                .map(|j| j.attach_volume(*number, geo.stripes, cfg.member_volatile).0);
            let vol = Arc::new(Volume::new(
                *number,
                *geo,
                cfg.member_volatile,
                journal.clone(),
            ));
            vol.set_records_failures(cfg.record_failures);
            vol.set_control_writes_before_durable(cfg.writes_before_durable);
            // Assembly as every runtime does it, from the superblocks of the disks that
            // answer (a dead disk's superblock cannot be read).
            let found: Vec<Option<&MemberSuperblock>> = image.volumes[i]
                .iter()
                .map(|d| d.sb.as_ref().filter(|_| !d.failed))
                .collect();
            if let Some(newest) = assembly::newest(found.iter().flatten().copied()) {
                for (m, u) in assembly::decide(newest, &found).iter().enumerate() {
                    if !u.in_service() {
                        vol.fail_member(m as u32);
                    }
                }
                // What the superblocks record of the journal's devices, as every runtime
                // tells its journal at assembly.
                if let Some(j) = &journal {
                    j.drops_found(*number, newest.journal_dropped);
                }
                vol.set_init_stripes(newest.init_stripes);
            }
            volumes.push(SimVolume {
                vol,
                jv,
                disks: std::mem::take(&mut image.volumes[i]),
            });
        }
        let channels = (0..cfg.reactors)
            .map(|r| {
                volumes
                    .iter()
                    .map(|v| {
                        let addr = Address {
                            reactor: u64::from(r),
                            volume: v.vol.number,
                        };
                        Channel::new(v.vol.clone(), v.jv.clone(), addr, SimPort::default())
                    })
                    .collect()
            })
            .collect();
        let nvol = volumes.len();
        let mut w = World {
            // Time 0 belongs to the initial contents in the model; after a crash the clock goes
            // on (the model's times stay ordered across power losses).
            now: image.now + 1,
            rng,
            seq: 0,
            events: BTreeMap::new(),
            busy: 0,
            volumes,
            journal_disks: image.journal,
            journal,
            channels,
            done: Vec::new(),
            inflight: BTreeMap::new(),
            direct_reads: BTreeMap::new(),
            recording: vec![false; nvol],
            journal_area_waiting: None,
            journal_lost: image.journal_lost,
            trace: JournalTrace::default(),
            flusher_moves: 0,
            last_flusher: None,
            records_by_reactor: vec![0; cfg.reactors as usize],
            checkpoint_write: None,
            recoveries: (0..nvol).map(|_| None).collect(),
            recovery_done: Vec::new(),
            recovery_sent: 0,
            recovery_ends: Vec::new(),
            cfg,
        };
        for r in 0..w.cfg.reactors {
            let t = w.rng.range(1, w.cfg.tick_us + 1);
            w.schedule(t, Event::Tick { reactor: r });
        }
        w
    }

    /// Volume index `vi` leaves the journal (it is deleted; its superblocks, and so a later
    /// re-assembly after a restart, survive), through the control plane's
    /// [`crate::control::detach::Detach`]: its members are flushed first. Nothing of the
    /// volume may be in flight. `skip_flush` is the simulator's control only.
    pub fn delete_volume(&mut self, vi: usize, skip_flush: bool) {
        use crate::control::detach::{Detach, DetachStep};
        let Some(journal) = self.journal.clone() else {
            return;
        };
        let mut d = Detach::new(self.volumes[vi].vol.number, skip_flush);
        loop {
            match d.poll(&journal) {
                DetachStep::FlushMembers => {
                    for disk in &mut self.volumes[vi].disks {
                        if !disk.failed {
                            disk.flush();
                        }
                    }
                    d.flushed(Ok(()));
                }
                DetachStep::Wait => unreachable!("the flush above is synchronous"),
                DetachStep::WriteRecord => {
                    let mut buf = Vec::new();
                    let Some(job) = journal.begin_flush(self.now, &mut buf) else {
                        // A record write of a channel is in flight: let it finish.
                        if !self.step() {
                            let t = self.cfg.tick_us;
                            self.advance(t);
                        }
                        continue;
                    };
                    let mut notify = Vec::new();
                    for w in job.writes() {
                        let bytes = &buf[w.start..w.end];
                        if let Some(sj) = &self.cfg.journal {
                            self.trace.observe(sj, w.dev, w.lba, bytes);
                        }
                        let disk = &mut self.journal_disks[w.dev as usize];
                        let ok = !disk.failed;
                        if ok {
                            disk.write(w.lba, bytes);
                            if job.flush_after {
                                disk.flush();
                            }
                        }
                        // A retry (one device lost) is written at the next poll.
                        journal.write_done(job.generation, w.dev, ok, &mut notify);
                    }
                    for a in notify {
                        // As a channel tells its waiters (they see a failed journal then).
                        let msg = Msg::Durable {
                            generation: job.generation,
                        };
                        let vi = self.vi(a.volume);
                        let reactor = u32::try_from(a.reactor).expect("simulated reactor index");
                        self.schedule(1, Event::Msg { reactor, vi, msg });
                    }
                }
                DetachStep::Done(_) => break,
            }
        }
    }

    /// Whether nothing of volume index `vi` is in flight on any reactor.
    pub fn volume_idle(&self, vi: usize) -> bool {
        self.channels.iter().all(|r| r[vi].idle())
    }

    /// The journal devices die (every record write fails from now on): the journal fails,
    /// writes are refused, reads go on. Until [`World::name_new_journal`], a restart must
    /// resync every stripe onto a fresh journal.
    pub fn lose_journal(&mut self) {
        for d in &mut self.journal_disks {
            d.failed = true;
        }
        self.journal_lost = true;
    }

    /// Journal device `k` dies: every I/O to it fails from now on (`transient`: until the next
    /// power loss, after which it is back with what it held). With `tell`, the journal hears
    /// of it at once (as a runtime's hot-remove tells it); else at its next record write there.
    pub fn lose_journal_device(&mut self, k: u32, transient: bool, tell: bool) {
        let d = &mut self.journal_disks[k as usize];
        d.failed = true;
        d.transient = transient;
        if let (true, Some(j)) = (tell, &self.journal) {
            j.device_gone(k);
        }
    }

    /// A fresh (zeroed) device takes the place of lost journal device `k` while running
    /// ([`Journal::device_added`], as `bdev_jraid_set_journal` on a degraded journal does).
    /// False, with nothing changed, while the journal cannot take it yet (a record write to
    /// the lost device still in flight) or cannot take it at all.
    pub fn replace_journal_device(&mut self, k: u32) -> bool {
        let Some(j) = &self.journal else {
            return false;
        };
        if !self.journal_disks[k as usize].failed {
            return false;
        }
        // The engine first (it refuses while the old device's write is in flight), then the
        // device, in the same step: no record goes to `k` in between.
        if !j.device_added(k) {
            return false;
        }
        let old = &self.journal_disks[k as usize];
        self.journal_disks[k as usize] = SimDisk::new(old.bs, old.blocks, old.volatile);
        true
    }

    /// After a full resync (flushed), a fresh journal on fresh journal devices becomes the
    /// volumes' journal, durably named (as the member superblocks do). False while a channel
    /// still depends on the old one.
    pub fn name_new_journal(&mut self) -> bool {
        let Some(sj) = self.cfg.journal.clone() else {
            return false;
        };
        let journal = Arc::new(Journal::new(sj.config(), None));
        if !self.replace_journal(journal) {
            return false;
        }
        self.journal_disks = (0..sj.devices)
            .map(|_| SimDisk::new(sj.block_size as usize, sj.device_blocks(), sj.volatile))
            .collect();
        self.journal_lost = false;
        true
    }

    /// Move every volume to `journal` (a new journal over the same journal devices, as
    /// `bdev_jraid_set_journal` does after the old one failed). False, with nothing changed,
    /// while some channel still depends on the old journal.
    pub fn replace_journal(&mut self, journal: Arc<Journal>) -> bool {
        if !self.channels.iter().flatten().all(|c| c.journal_quiet()) {
            return false;
        }
        let member_volatile = self.cfg.member_volatile;
        for (vi, v) in self.volumes.iter_mut().enumerate() {
            let (jv, _) = journal.attach_volume(v.vol.number, v.vol.geo.stripes, member_volatile);
            if let Some(old) = &self.journal {
                old.detach_volume(v.vol.number);
            }
            v.vol.set_journal(Some(journal.clone()));
            v.jv = Some(jv.clone());
            for r in self.channels.iter_mut() {
                assert!(r[vi].replace_journal(journal.clone(), jv.clone()));
            }
        }
        self.journal = Some(journal);
        // A new journal starts its own chain.
        self.trace.chain = None;
        true
    }

    fn schedule(&mut self, delay: u64, ev: Event) {
        if !matches!(ev, Event::Tick { .. }) {
            self.busy += 1;
        }
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    /// Index of volume `number`.
    pub(crate) fn vi(&self, number: u32) -> usize {
        self.volumes
            .iter()
            .position(|v| v.vol.number == number)
            .expect("known volume")
    }

    /// The channel of volume index `vi` on `reactor` (to ask it what it would do).
    pub fn channel(&self, reactor: u32, vi: usize) -> &Channel<SimPort> {
        &self.channels[reactor as usize][vi]
    }

    /// Submit a user request on `reactor` to volume index `vi`.
    #[allow(clippy::too_many_arguments)] // mirrors Channel::submit plus the routing pair
    pub fn submit(
        &mut self,
        reactor: u32,
        vi: usize,
        tag: u64,
        op: UserOp,
        lba: u64,
        blocks: u64,
        buf: Option<Buf>,
    ) -> Result<(), SubmitError> {
        let ch = &mut self.channels[reactor as usize][vi];
        ch.backend_mut().now = self.now;
        // Half the reads the engine finds healthy go straight to their member, as the SPDK
        // runtime sends them all; the other half take the engine's own path.
        let direct = match (op, &buf) {
            (UserOp::Read, Some(b))
                if b.is_writable() && b.len() as u64 == blocks * ch_block_size(ch) =>
            {
                ch.direct_read(lba, blocks)
            }
            _ => None,
        };
        if let Some((m, mlba)) = direct.filter(|_| self.rng.chance(0.5)) {
            self.seq += 1;
            let id = self.seq;
            self.direct_reads.insert(id, (tag, lba, blocks, m));
            let io = DeviceIo {
                dev: Device::Member(m),
                op: IoOp::Read,
                lba: mlba,
                blocks,
                buf,
                buf_offset: 0,
                tag: 0,
            };
            self.schedule_io(reactor, vi, io, id);
            return Ok(());
        }
        let ch = &mut self.channels[reactor as usize][vi];
        let r = ch.submit(tag, op, lba, blocks, buf);
        self.pump(reactor, vi);
        r
    }

    /// Device request `id` of the channel of volume index `vi` on `reactor` completes after a
    /// random latency.
    fn schedule_io(&mut self, reactor: u32, vi: usize, io: DeviceIo, id: u64) {
        let lat = self.rng.range(1, self.cfg.max_latency_us + 1);
        self.schedule(
            lat,
            Event::Io {
                reactor,
                vi,
                io,
                id,
            },
        );
    }

    /// Move a channel's requests, messages and completions into the world.
    fn pump(&mut self, reactor: u32, vi: usize) {
        let ch = &mut self.channels[reactor as usize][vi];
        let ios = std::mem::take(&mut ch.backend_mut().ios);
        let msgs = std::mem::take(&mut ch.backend_mut().msgs);
        let mut done = Vec::new();
        ch.drain_completions(&mut done);
        for c in done {
            if c.tag & RECOVERY_TAG != 0 {
                self.recovery_done.push((vi, c.result));
            } else {
                self.done.push((reactor, vi, c));
            }
        }
        for io in ios {
            self.seq += 1;
            let id = self.seq;
            if io.op == IoOp::Write {
                let (dev_vol, dev, bs) = match io.dev {
                    Device::Member(m) => {
                        (Some(vi), m, self.volumes[vi].vol.geo.block_size as usize)
                    }
                    Device::Journal(k) => (None, k, self.journal_disks[k as usize].bs),
                };
                let buf = io.buf.as_ref().expect("write has data");
                let len = io.blocks as usize * bs;
                let data = buf.as_slice()[io.buf_offset..io.buf_offset + len].to_vec();
                if let (None, Some(sj)) = (dev_vol, &self.cfg.journal) {
                    if self.last_flusher.is_some_and(|r| r != reactor) {
                        self.flusher_moves += 1;
                    }
                    self.last_flusher = Some(reactor);
                    self.records_by_reactor[reactor as usize] += 1;
                    let header = self.trace.observe(sj, dev, io.lba, &data);
                    if let Some(h) = header.filter(|h| h.kind == record::Kind::Checkpoint) {
                        self.checkpoint_write = Some((id, h.generation));
                    }
                }
                self.inflight.insert(id, (dev_vol, dev, io.lba, data));
            }
            self.schedule_io(reactor, vi, io, id);
        }
        for (to, msg) in msgs {
            let lat = self.rng.range(1, 10);
            let tvi = self.vi(to.volume);
            self.schedule(
                lat,
                Event::Msg {
                    reactor: u32::try_from(to.reactor).expect("simulated reactor index"),
                    vi: tvi,
                    msg,
                },
            );
        }
    }

    /// Run one event. False when only ticks remain, every channel is idle and no recovery
    /// runs (a recovery waiting for a record lets ticks pass).
    pub fn step(&mut self) -> bool {
        self.poll_recoveries();
        if self.busy == 0 && self.channels.iter().flatten().all(|c| c.idle()) {
            if self.recovering() {
                let t = self.cfg.tick_us;
                self.advance(t);
                return true;
            }
            return false;
        }
        self.run_next()
    }

    /// Whether a crash recovery still runs.
    pub fn recovering(&self) -> bool {
        self.recoveries.iter().any(Option::is_some)
    }

    /// Resyncs the recovery of volume index `vi` finished so far, and its total.
    pub fn recovery_progress(&self, vi: usize) -> Option<(u64, u64)> {
        self.recoveries[vi]
            .as_ref()
            .map(|r| (r.completed(), r.total()))
    }

    /// Hand recoveries their completions and let them submit what they want next, as a
    /// runtime's control plane does.
    fn poll_recoveries(&mut self) {
        if !self.recovering() {
            return;
        }
        let Some(journal) = self.journal.clone() else {
            return;
        };
        for (vi, result) in std::mem::take(&mut self.recovery_done) {
            if let Some(r) = self.recoveries[vi].as_mut() {
                r.complete(result);
            }
        }
        for vi in 0..self.recoveries.len() {
            let Some(mut rec) = self.recoveries[vi].take() else {
                continue;
            };
            let mut over = false;
            loop {
                match rec.poll(&journal, self.now) {
                    Step::Submit(list) => {
                        for s in list {
                            // Spread the resyncs over the reactors, as the runtimes may.
                            let r = (self.recovery_sent % self.cfg.reactors as u64) as u32;
                            self.recovery_sent += 1;
                            let tag = RECOVERY_TAG | self.recovery_sent;
                            if let Err(e) = self.submit(r, vi, tag, s.op, s.lba, s.blocks, None) {
                                rec.refused(e.error);
                            }
                        }
                        // Completions that came back at once.
                        for (v, result) in std::mem::take(&mut self.recovery_done) {
                            if v == vi {
                                rec.complete(result);
                            } else if let Some(r) = self.recoveries[v].as_mut() {
                                r.complete(result);
                            }
                        }
                    }
                    Step::Kick => {
                        self.channels[0][vi].message(Msg::JournalKick);
                        self.pump(0, vi);
                    }
                    Step::Wait => break,
                    Step::Done(result) => {
                        self.recovery_ends.push((vi, result));
                        over = true;
                        break;
                    }
                }
            }
            if !over {
                self.recoveries[vi] = Some(rec);
            }
        }
    }

    /// Let `us` microseconds pass, running every event due meanwhile (ticks included).
    pub fn advance(&mut self, us: u64) {
        let end = self.now + us;
        while self
            .events
            .first_key_value()
            .is_some_and(|(&(t, _), _)| t <= end)
        {
            self.run_next();
        }
        self.now = end;
    }

    /// Run the earliest event.
    fn run_next(&mut self) -> bool {
        let Some(((t, _), ev)) = self.events.pop_first() else {
            return false;
        };
        self.now = t;
        match ev {
            Event::Io {
                reactor,
                vi,
                mut io,
                id,
            } => {
                self.busy -= 1;
                if self.checkpoint_write.is_some_and(|c| c.0 == id) {
                    self.checkpoint_write = None;
                }
                let ok = self.run_io(vi, &mut io, id);
                let ch = &mut self.channels[reactor as usize][vi];
                ch.backend_mut().now = t;
                if let Some((tag, lba, blocks, m)) = self.direct_reads.remove(&id) {
                    // A direct read: done, or on an error handed to the engine as its own
                    // failed read (as SPDK's runtime does), which rebuilds what the member
                    // could not give and writes it back.
                    let buf = io.buf.take();
                    if ok {
                        ch.count_direct_read();
                        let c = Completion {
                            tag,
                            result: Ok(()),
                            buf,
                        };
                        self.done.push((reactor, vi, c));
                    } else if let Err(e) = match buf {
                        Some(b) => ch.submit_failed_direct_read(tag, lba, blocks, b, m),
                        None => ch.submit(tag, UserOp::Read, lba, blocks, None),
                    } {
                        let c = Completion {
                            tag,
                            result: Err(e.error),
                            buf: e.buf,
                        };
                        self.done.push((reactor, vi, c));
                    }
                } else {
                    ch.io_done(io.tag, ok, io.buf.take());
                }
                self.pump(reactor, vi);
            }
            Event::Msg { reactor, vi, msg } => {
                self.busy -= 1;
                let ch = &mut self.channels[reactor as usize][vi];
                ch.backend_mut().now = t;
                ch.message(msg);
                self.pump(reactor, vi);
            }
            Event::Record {
                vi,
                seq,
                failed,
                dropped,
            } => {
                self.busy -= 1;
                self.recording[vi] = false;
                self.write_member_states(vi, &failed, dropped);
                if let Some(seq) = seq {
                    self.volumes[vi].vol.failures_recorded(seq);
                }
                if let (Some(m), Some(j)) = (dropped, &self.journal) {
                    j.drops_recorded(self.volumes[vi].vol.number, m);
                }
            }
            Event::Tick { reactor } => {
                for vi in 0..self.volumes.len() {
                    let ch = &mut self.channels[reactor as usize][vi];
                    ch.backend_mut().now = t;
                    ch.tick();
                    self.pump(reactor, vi);
                }
                let p = self.cfg.tick_us;
                self.schedule(p, Event::Tick { reactor });
            }
        }
        self.record_failures();
        self.add_journal_area();
        true
    }

    /// Journal on the members: hand a replacement member's journal area to the journal once it
    /// takes it (as the runtime does when the rebuild starts).
    fn add_journal_area(&mut self) {
        let (Some(k), Some(j)) = (self.journal_area_waiting, &self.journal) else {
            return;
        };
        if j.device_added(k) {
            self.journal_area_waiting = None;
        }
    }

    /// Start recording member failures the engine made and nobody recorded yet, and journal
    /// devices the journal wants recorded as dropped ([`Journal::drops_to_record`]), as a
    /// runtime does (a superblock write to the surviving members).
    fn record_failures(&mut self) {
        for vi in 0..self.volumes.len() {
            if self.recording[vi] {
                continue;
            }
            let vol = &self.volumes[vi].vol;
            let seq = vol.unrecorded_failures();
            let dropped = self
                .journal
                .as_ref()
                .and_then(|j| j.drops_to_record(vol.number));
            if seq.is_none() && dropped.is_none() {
                continue;
            }
            let failed: Vec<u32> = (0..vol.geo.members)
                .filter(|&m| {
                    vol.health(m) == crate::engine::MemberHealth::Failed
                        && vol.rebuilding() != Some(m)
                })
                .collect();
            self.recording[vi] = true;
            let lat = self.rng.range(1, self.cfg.max_latency_us + 1);
            self.schedule(
                lat,
                Event::Record {
                    vi,
                    seq,
                    failed,
                    dropped,
                },
            );
        }
    }

    fn run_io(&mut self, vi: usize, io: &mut DeviceIo, id: u64) -> bool {
        self.inflight.remove(&id);
        let member_dev = matches!(io.dev, Device::Member(_));
        let can_fail = member_dev
            && self.cfg.error_rate > 0.0
            && self.volumes[vi].disks.iter().all(|d| !d.failed);
        let inject = can_fail && self.rng.chance(self.cfg.error_rate);
        let disk = match io.dev {
            Device::Member(m) => &mut self.volumes[vi].disks[m as usize],
            Device::Journal(k) => &mut self.journal_disks[k as usize],
        };
        if inject {
            disk.failed = true;
        }
        if disk.failed {
            return false;
        }
        if io.op == IoOp::Read && disk.unreadable(io.lba, io.blocks) {
            return false; // a read error; the device stays in service
        }
        let bs = disk.bs;
        let range = io.buf_offset..io.buf_offset + io.blocks as usize * bs;
        match io.op {
            IoOp::Read => disk.read(
                io.lba,
                &mut io.buf.as_mut().expect("read buffer").as_mut_slice()[range],
            ),
            IoOp::Write => disk.write(
                io.lba,
                &io.buf.as_ref().expect("write buffer").as_slice()[range],
            ),
            IoOp::Flush => disk.flush(),
        }
        true
    }

    /// Whether a checkpoint's write is in flight (a power loss now tears it).
    pub fn checkpoint_writing(&self) -> bool {
        self.checkpoint_write.is_some()
    }

    /// The generation of the checkpoint whose write is in flight.
    pub fn checkpoint_in_flight(&self) -> Option<u64> {
        self.checkpoint_write.map(|c| c.1)
    }

    /// Run until idle.
    pub fn run_until_idle(&mut self) {
        while self.step() {}
    }

    /// Run until at least one completion is available or the world is idle.
    pub fn run_until_completion(&mut self) {
        while self.done.is_empty() && self.step() {}
    }

    /// Finished user requests: (reactor, volume index, completion).
    pub fn take_completions(&mut self, out: &mut Vec<(u32, usize, Completion)>) {
        out.append(&mut self.done);
    }

    /// Kill member `m` of volume index `vi` (it fails every I/O; the engine learns on first use,
    /// or at once with `tell_engine`).
    pub fn fail_member(&mut self, vi: usize, m: u32, tell_engine: bool) {
        self.volumes[vi].disks[m as usize].failed = true;
        if self.journal_on_member(vi, m) {
            // Its journal area goes with it (the runtime drops the journal device with the
            // member).
            self.lose_journal_device(m, false, tell_engine);
        }
        if tell_engine {
            self.volumes[vi].vol.fail_member(m);
            self.record_failures();
        }
    }

    /// Whether member `m` of volume index `vi` holds a journal device (the journal on the
    /// members: device k on member k of the first volume).
    fn journal_on_member(&self, vi: usize, m: u32) -> bool {
        vi == 0 && m < 2 && self.cfg.journal.as_ref().is_some_and(|j| j.on_members)
    }

    /// Member `m` of volume index `vi` fails transiently: every I/O fails until the next power
    /// loss, after which it works again with the contents it had (the engine learns on first
    /// use). Only a recorded failure keeps it out of the volume then.
    pub fn fail_member_transiently(&mut self, vi: usize, m: u32) {
        let d = &mut self.volumes[vi].disks[m as usize];
        d.failed = true;
        d.transient = true;
        if self.journal_on_member(vi, m) {
            self.lose_journal_device(m, true, false);
        }
    }

    /// Make block `lba` of member `m` of volume index `vi` unreadable (a bad sector): reads
    /// touching it fail until it is written.
    pub fn plant_bad_block(&mut self, vi: usize, m: u32, lba: u64) {
        self.volumes[vi].disks[m as usize].bad.insert(lba);
    }

    /// Unreadable blocks left on the members of volume index `vi`.
    pub fn bad_blocks(&self, vi: usize) -> usize {
        self.volumes[vi].disks.iter().map(|d| d.bad.len()).sum()
    }

    /// Put a blank replacement (a new device identity) in place of failed member `m` of
    /// volume index `vi` and start rebuilding onto it: the superblocks say "rebuilding" (the
    /// replacement's too) before the first stripe lands. False when the engine refuses
    /// (member not failed, rebuild running).
    pub fn replace_member(&mut self, vi: usize, m: u32) -> bool {
        let v = &mut self.volumes[vi];
        let old = &v.disks[m as usize];
        let mut d = SimDisk::new(old.bs, old.blocks, old.volatile);
        let mut newest = newest_sb(&v.disks).expect("superblocks");
        newest.member_uuids[m as usize] = member_uuid(v.vol.number, m, newest.seq + 1);
        d.sb = Some(MemberSuperblock {
            member_index: m,
            ..newest.clone()
        });
        v.disks[m as usize] = d;
        if self.journal_on_member(vi, m) {
            // A blank journal area with it, taken by the journal when it can (the old one is
            // dropped first, as the runtime drops it with the member).
            if let Some(j) = &self.journal {
                j.device_gone(m);
            }
            let old = &self.journal_disks[m as usize];
            self.journal_disks[m as usize] = SimDisk::new(old.bs, old.blocks, old.volatile);
            self.journal_area_waiting = Some(m);
        }
        let v = &mut self.volumes[vi];
        // The new identity goes into every superblock with the states.
        for (i, disk) in v.disks.iter_mut().enumerate() {
            if let Some(sb) = disk.sb.as_mut() {
                sb.member_uuids = newest.member_uuids.clone();
                sb.member_index = i as u32;
            }
        }
        if !v.vol.start_rebuild(m) {
            return false;
        }
        self.write_member_states(vi, &[], None);
        true
    }

    /// The rebuild of member `m` of volume index `vi` is over (members flushed): it is
    /// active, and the superblocks say so.
    pub fn finish_rebuild(&mut self, vi: usize, m: u32) -> bool {
        if !self.volumes[vi].vol.finish_rebuild(m) {
            return false;
        }
        self.write_member_states(vi, &[], None);
        true
    }

    /// Write the volume's member states (as the engine has them, `failed` out of service too)
    /// into the superblocks of the members that answer, with the next seq: a superblock write
    /// and flush, durable at once.
    fn write_member_states(&mut self, vi: usize, failed: &[u32], dropped: Option<u8>) {
        let v = &mut self.volumes[vi];
        let Some(newest) = newest_sb(&v.disks) else {
            return;
        };
        let states: Vec<MemberState> = (0..v.vol.geo.members)
            .map(|m| {
                if v.vol.rebuilding() == Some(m) {
                    MemberState::Rebuilding
                } else if failed.contains(&m)
                    || v.vol.health(m) == crate::engine::MemberHealth::Failed
                {
                    MemberState::Failed
                } else {
                    MemberState::Active
                }
            })
            .collect();
        for (i, d) in v.disks.iter_mut().enumerate() {
            if d.failed || states[i] == MemberState::Failed {
                continue;
            }
            d.sb = Some(MemberSuperblock {
                member_index: i as u32,
                seq: newest.seq + 1,
                member_states: states.clone(),
                journal_dropped: dropped.unwrap_or(newest.journal_dropped),
                init_stripes: v.vol.init_stripes(),
                ..newest.clone()
            });
        }
    }

    /// Record volume index `vi`'s initialised stripes ([`Volume::init_stripes`]) in the
    /// superblocks of the members that answer (with the member states, next seq), as every
    /// runtime does while its initial parity pass runs.
    pub fn record_init(&mut self, vi: usize) {
        self.write_member_states(vi, &[], None);
    }

    /// Plant volume index `vi` as created over members that were not blank (assume nothing
    /// of them; call before any I/O): every data block holds the initial content the model
    /// knows (write 0, stamped for its volume block), every parity block noise from `seed`,
    /// and the volume and its superblocks say no stripe is initialised.
    pub fn uninitialise(&mut self, vi: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let geo = self.volumes[vi].vol.geo;
        let bs = geo.block_size as usize;
        let mut block = vec![0u8; bs];
        for stripe in 0..geo.stripes {
            for m in 0..geo.members {
                for b in 0..geo.strip_blocks {
                    if m == geo.parity_member(stripe) {
                        for x in block.iter_mut() {
                            *x = rng.range(0, 256) as u8;
                        }
                    } else {
                        let i = geo.data_index(stripe, m).expect("a data member");
                        let lba = stripe * geo.stripe_blocks() + i as u64 * geo.strip_blocks + b;
                        crate::sim::model::stamp(&mut block, 0, lba, vi as u64);
                    }
                    let at = geo.member_lba(stripe, b);
                    self.volumes[vi].disks[m as usize].write(at, &block);
                }
            }
        }
        for d in self.volumes[vi].disks.iter_mut() {
            d.flush();
            if let Some(sb) = d.sb.as_mut() {
                sb.init_stripes = 0;
            }
        }
        self.volumes[vi].vol.set_init_stripes(0);
    }

    /// Overwrite member blocks directly (bypassing the engine), to plant silent corruption.
    pub fn poke(&mut self, vi: usize, m: u32, lba: u64, data: &[u8]) {
        let d = &mut self.volumes[vi].disks[m as usize];
        d.write(lba, data);
        d.flush();
    }

    /// Current contents of a member block range (bypassing the engine).
    pub fn peek(&self, vi: usize, m: u32, lba: u64, out: &mut [u8]) {
        self.volumes[vi].disks[m as usize].read(lba, out);
    }

    /// Pool buffers allocated by every channel (warm-up only in steady state).
    pub fn pool_allocations(&self) -> u64 {
        self.channels
            .iter()
            .flatten()
            .map(|c| c.pool_allocations())
            .sum()
    }

    /// Power loss now: in-flight writes land torn (any subset of their blocks), cached writes
    /// survive or not block by block. Returns the durable contents.
    pub fn crash(mut self) -> CrashImage {
        let mut rng = self.rng.fork(0xC0A5);
        for (_, (vol, dev, lba, data)) in std::mem::take(&mut self.inflight) {
            let disk = match vol {
                Some(vi) => &mut self.volumes[vi].disks[dev as usize],
                None => &mut self.journal_disks[dev as usize],
            };
            if !disk.failed {
                disk.tear(lba, &data, &mut rng);
            }
        }
        let mut volumes = Vec::new();
        for v in &mut self.volumes {
            for d in &mut v.disks {
                d.crash(&mut rng);
            }
            volumes.push(std::mem::take(&mut v.disks));
        }
        for d in &mut self.journal_disks {
            d.crash(&mut rng);
        }
        CrashImage {
            volumes,
            journal: self.journal_disks,
            now: self.now,
            journal_lost: self.journal_lost,
            full_resync_durable: None,
        }
    }

    /// Recovery, as assembly runs it: read both journal slots, take the newest valid record,
    /// then run the control plane's recovery ([`crate::control::Recovery`]) for each volume:
    /// resync its listed stripes, flush its members, write a record with a higher generation
    /// that no longer lists them. Returns the stripes resynced per volume and those at risk (a
    /// member missing).
    pub fn recover(cfg: SimConfig, image: CrashImage) -> (World, RecoveryReport) {
        match World::recover_until(cfg, image, None, &RecoveryOptions::default()) {
            Ok(r) => r,
            Err(_) => unreachable!("no crash was asked for"),
        }
    }

    /// [`World::recover`] that loses power itself after `crash_after` events, when given and
    /// reached before recovery is over: `Err` holds the durable contents then.
    pub fn recover_until(
        cfg: SimConfig,
        image: CrashImage,
        crash_after: Option<u64>,
        opts: &RecoveryOptions,
    ) -> Result<(World, RecoveryReport), CrashImage> {
        World::recover_until_with(cfg, image, crash_after, opts, RecordRead::Chain)
    }

    /// Start each volume's crash recovery (from the record `journal` resumed from; every stripe
    /// onto a fresh journal when it was `lost`, or when the journal was not read whole: see
    /// [`crate::control::recovery::stripes_to_resync`]), guarded so that the volume may serve I/O
    /// meanwhile ([`Recovery::guard`]); the world runs them as it steps.
    fn start_recoveries(
        &mut self,
        journal: &Journal,
        lost: bool,
        read: JournalRead,
        opts: &RecoveryOptions,
        report: &mut RecoveryReport,
    ) {
        for vi in 0..self.volumes.len() {
            let number = self.volumes[vi].vol.number;
            // Whether this volume may trust the record read: what its superblocks record of
            // the journal's devices decides (mirror mode), as in every runtime.
            let dropped = newest_sb(&self.volumes[vi].disks).map_or(0, |s| s.journal_dropped);
            let journal_complete = read.trusted
                || crate::control::recovery::journal_complete(
                    journal.cfg.mode,
                    read.missing,
                    dropped,
                );
            report.resynced_all |= lost || !journal_complete;
            let stripes = journal.carried_stripes(number);
            let failed = self.volumes[vi].vol.failed_count() > 0;
            let opts = RecoveryOptions {
                window: 64,
                ..opts.clone()
            };
            let all = self.volumes[vi].vol.geo.stripes;
            let plan = if lost {
                Stripes::All(all)
            } else {
                crate::control::recovery::stripes_to_resync(journal_complete, stripes.clone(), all)
            };
            let rec = if let Stripes::All(all) = plan {
                // A lost journal (as bdev_jraid_set_journal on a held-back volume) or a missing
                // journal device: every member needed.
                assert!(!failed, "a full resync needs every member");
                report.resynced.push((number, (0..all).collect()));
                Recovery::new(number, plan, Vec::new(), opts)
            } else {
                let (resync, at_risk) = if failed {
                    report.at_risk.push((number, stripes.clone()));
                    (Vec::new(), stripes)
                } else {
                    report.resynced.push((number, stripes.clone()));
                    (stripes, Vec::new())
                };
                Recovery::new(number, Stripes::Listed(resync), at_risk, opts)
            };
            rec.guard(&self.volumes[vi].vol);
            self.recoveries[vi] = Some(rec);
        }
    }

    /// Power back after `image`: recovery starts and the volumes serve I/O at once while it
    /// resyncs in the background (the world runs it as it steps; [`World::recovering`],
    /// [`World::recovery_ends`]). The report names the stripes it will resync (or holds at
    /// risk). Not with a lost journal (that full resync runs before anything is served).
    pub fn recover_online(
        cfg: SimConfig,
        image: CrashImage,
        opts: &RecoveryOptions,
    ) -> (World, RecoveryReport) {
        assert!(!image.journal_lost, "online recovery needs the journal");
        let mut report = RecoveryReport::default();
        let Some(sj) = cfg.journal.clone() else {
            return (World::from_image(cfg, image, None), report);
        };
        let (last, missing) = newest_record(&sj, &image, RecordRead::Chain);
        assert!(missing == 0, "online recovery needs every journal device");
        report.generation = last.as_ref().map_or(0, |r| r.generation);
        let journal = Arc::new(Journal::new(sj.config(), last));
        let mut w = World::from_image(cfg, image, Some(journal.clone()));
        let read = JournalRead {
            missing: 0,
            trusted: false,
        };
        w.start_recoveries(&journal, false, read, opts, &mut report);
        (w, report)
    }

    /// [`World::recover_until`] reading the journal as `read` says (the simulator's controls
    /// read less than the chain).
    pub fn recover_until_with(
        cfg: SimConfig,
        image: CrashImage,
        crash_after: Option<u64>,
        opts: &RecoveryOptions,
        read: RecordRead,
    ) -> Result<(World, RecoveryReport), CrashImage> {
        let mut report = RecoveryReport::default();
        let Some(sj) = cfg.journal.clone() else {
            return Ok((World::from_image(cfg, image, None), report));
        };
        let jcfg = sj.config();
        let lost = image.journal_lost;
        let mut image = image;
        let (last, missing_mask) = if lost {
            // The journal is lost: a fresh one, and every stripe resynced onto it.
            image.journal = (0..sj.devices)
                .map(|_| SimDisk::new(sj.block_size as usize, sj.device_blocks(), sj.volatile))
                .collect();
            (None, 0)
        } else {
            newest_record(&sj, &image, read)
        };
        // A journal device is missing: the newest generation may have been on it alone
        // (alternate mode, or a mirror device recorded dropped). The journal goes on with the
        // survivor, and such a volume resyncs every stripe (all members there).
        let jread = JournalRead {
            missing: missing_mask,
            trusted: read == RecordRead::SurvivorTrusted,
        };
        let missing: Vec<u32> = (0..image.journal.len() as u32)
            .filter(|&k| image.journal[k as usize].failed)
            .collect();
        report.generation = last.as_ref().map_or(0, |r| r.generation);
        let journal = Arc::new(Journal::new(jcfg, last));
        for k in missing {
            journal.device_gone(k);
        }
        let mut w = World::from_image(cfg, image, Some(journal.clone()));
        w.start_recoveries(&journal, lost, jread, opts, &mut report);
        let mut events = 0u64;
        while w.recovering() {
            if crash_after.is_some_and(|c| events >= c) {
                let durable = journal.durable_generation();
                let mut image = w.crash();
                if report.resynced_all && !lost {
                    image.full_resync_durable = Some(durable);
                }
                return Err(image);
            }
            w.step();
            events += 1;
            assert!(events < 50_000_000, "recovery never finished");
        }
        for (_, result) in std::mem::take(&mut w.recovery_ends) {
            match result {
                Ok(_) => {}
                Err(RecoveryError::Resync { failed }) => report.resync_errors += failed,
                Err(_) => report.resync_errors += 1,
            }
        }
        w.run_until_idle();
        // The fresh journal is named only now, after the resync and its member flush.
        w.journal_lost = false;
        Ok((w, report))
    }
}

/// What a restart read of the journal's devices.
#[derive(Debug, Clone, Copy)]
struct JournalRead {
    /// The devices missing (bit k: device k).
    missing: u8,
    /// Control: the record read is trusted whatever is missing.
    trusted: bool,
}

/// The state recovery starts from: the newest record over the image's journal devices (a
/// failed one is missing), read as `read` says (anything but the chain is a control), and
/// the devices missing ([`record::Newest::missing`]).
fn newest_record(
    sj: &SimJournal,
    image: &CrashImage,
    read: RecordRead,
) -> (Option<record::Record>, u8) {
    let cfg = sj.config();
    let areas: Vec<Option<(Vec<u8>, Vec<u8>)>> = image
        .journal
        .iter()
        .map(|disk| {
            (!disk.failed).then(|| {
                let slot = |k: usize| {
                    let mut buf = vec![0u8; sj.slot_bytes as usize];
                    disk.read(cfg.slots[k].1, &mut buf);
                    buf
                };
                (slot(0), slot(1))
            })
        })
        .collect();
    let views: Vec<Option<(&[u8], &[u8])>> = areas
        .iter()
        .map(|a| a.as_ref().map(|(x, y)| (&x[..], &y[..])))
        .collect();
    let found = record::newest_of(&views, &sj.uuid, sj.block_size as usize)
        .expect("the simulator writes the current record format");
    let mut last = found.record;
    if let (Some(r), RecordRead::CheckpointOnly) = (last.as_mut(), read) {
        // The chain's checkpoint, on a device that holds it.
        let cp = views
            .iter()
            .flatten()
            .filter_map(|(a0, a1)| {
                let area = if r.area == 0 { a0 } else { a1 };
                record::decode(area, r.area, &sj.uuid)
                    .ok()
                    .filter(|d| d.header.generation == r.base)
            })
            .next()
            .expect("the chain's checkpoint");
        r.entries = cp.adds;
        r.entries.sort_unstable();
    }
    (last, found.missing)
}

/// What recovery did.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Generation of the record recovery started from (0: none valid).
    pub generation: u64,
    /// Every stripe was resynced (the journal, or one of its devices, was missing).
    pub resynced_all: bool,
    /// Per volume: stripes whose parity was recomputed.
    pub resynced: Vec<(u32, Vec<u64>)>,
    /// Per volume: listed stripes that could not be resynced because a member is missing.
    pub at_risk: Vec<(u32, Vec<u64>)>,
    /// Resyncs that failed.
    pub resync_errors: u64,
}

/// The identity of volume `number` in the simulation.
fn volume_uuid(number: u32) -> [u8; 16] {
    let mut u = [0x5Au8; 16];
    u[..4].copy_from_slice(&number.to_le_bytes());
    u
}

/// The identity of the device holding member `m` of volume `number` (`gen` tells a
/// replacement from the device it replaced).
fn member_uuid(number: u32, m: u32, gen: u64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..4].copy_from_slice(&number.to_le_bytes());
    u[4..8].copy_from_slice(&m.to_le_bytes());
    u[8..].copy_from_slice(&gen.to_le_bytes());
    u
}

/// The newest superblock among `disks` (any, readable or not: the simulator's own view).
fn newest_sb(disks: &[SimDisk]) -> Option<MemberSuperblock> {
    assembly::newest(disks.iter().filter_map(|d| d.sb.as_ref())).cloned()
}
