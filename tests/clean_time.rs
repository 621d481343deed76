//! The time a write's clean stamps on its stripe, where members cache writes volatilely: read
//! after the writes completed (`Backend::now_us`), never the runtime's cheaper clock "a moment
//! ago" (`Backend::recent_us`), which the engine takes on members without such caches. A member
//! flush that started between that earlier reading and the clean would otherwise count as
//! covering writes it may not have flushed, and the stripe would leave the record while its
//! data and parity might still sit in a member's cache.
//!
//! The test's backend (`common::Port`) gives `recent_us` a lag of 1 ms. A write completes at 10 ms,
//! and a user flush is submitted at that same instant (it started before the clean, or with it:
//! it does not cover the write). A second later the flusher looks at the stripe: it must stay
//! listed until a member flush that started after the clean completes. Control: the same run with
//! members without volatile caches, where the clean takes the lagging clock and nothing waits for a
//! flush, shows the stripe leaving at that look, so the look does happen.

use std::sync::Arc;

use jraid::engine::{Address, Buf, Channel, Completion, Device, DeviceIo, IoOp, UserOp, Volume};
use jraid::journal::{Journal, JournalConfig, JournalVolume};
use jraid::layout::Geometry;

mod common;
use common::Port;

const LAG_US: u64 = 1_000;

const BS: u64 = 4096;

fn channel(volatile: bool) -> (Channel<Port>, Arc<JournalVolume>) {
    let strip_blocks = 16;
    let reserved = jraid::layout::RESERVED_BYTES / BS;
    let geo = Geometry::new(
        4,
        strip_blocks * BS,
        BS as u32,
        reserved + 64 * strip_blocks,
    )
    .unwrap();
    let area = 1 << 20;
    let mut cfg = JournalConfig::new([5; 16], BS as u32, area, [(0, 256), (0, 256 + area / BS)]);
    cfg.volatile_cache = false;
    let journal = Arc::new(Journal::new(cfg, None));
    let (jv, _) = journal.attach_volume(0, geo.stripes, volatile);
    let vol = Arc::new(Volume::new(0, geo, volatile, Some(journal)));
    let port = Port::new(10_000, LAG_US, 64, 64);
    let addr = Address {
        reactor: 0,
        volume: 0,
    };
    (Channel::new(vol, Some(jv.clone()), addr, port), jv)
}

/// Complete every device request (member flushes go to `held` instead when it is given) and
/// the messages they cause, without moving the clock; the finished user requests.
fn settle(ch: &mut Channel<Port>, mut held: Option<&mut Vec<DeviceIo>>) -> Vec<Completion> {
    let mut done = Vec::new();
    while let Some(io) = ch.backend_mut().ios.pop_front() {
        let member_flush = io.op == IoOp::Flush && matches!(io.dev, Device::Member(_));
        if let Some(held) = held.as_mut().filter(|_| member_flush) {
            held.push(io);
            continue;
        }
        ch.io_done(io.tag, true, io.buf);
        while let Some(m) = ch.backend_mut().msgs.pop_front() {
            ch.message(m);
        }
    }
    ch.drain_completions(&mut done);
    done
}

/// Write one block of stripe 0 at t = 10 ms, flush at the same instant, then let a second
/// pass with member flushes held: whether stripe 0 is still listed.
fn listed_after_a_second(volatile: bool) -> bool {
    let (mut ch, jv) = channel(volatile);
    ch.submit(1, UserOp::Write, 0, 1, Some(Buf::new(BS as usize)))
        .expect("write accepted");
    let done = settle(&mut ch, None);
    assert!(done.iter().any(|c| c.tag == 1 && c.result.is_ok()));
    assert!(jv.listed(0), "the write's stripe is listed");
    ch.submit(2, UserOp::Flush, 0, 0, None)
        .expect("flush accepted");
    let done = settle(&mut ch, None);
    assert!(done.iter().any(|c| c.tag == 2 && c.result.is_ok()));
    // A second later, past every hysteresis: the timer's look at the listed stripes, and the
    // record it writes; member flushes it asks for do not complete.
    let mut held = Vec::new();
    for _ in 0..5 {
        let t = ch.backend().now.get();
        ch.backend().now.set(t + 1_000_000);
        ch.tick();
        settle(&mut ch, Some(&mut held));
    }
    jv.listed(0)
}

#[test]
fn a_clean_on_volatile_members_is_timed_after_its_writes() {
    assert!(
        listed_after_a_second(true),
        "a flush that started no later than the clean was taken to cover its write"
    );
}

#[test]
fn control_without_volatile_caches_the_stripe_leaves() {
    assert!(
        !listed_after_a_second(false),
        "the stripe stayed listed: the look this test relies on never happened"
    );
}
