//! A backend the channel-level tests drive by hand.

use std::cell::Cell;
use std::collections::VecDeque;

use jraid::engine::{Address, Backend, DeviceIo, Msg};

/// Queues what the channel asks for (the test completes it, in order) and the messages it
/// sends (all to the one channel); its clock is `now`, set by the test, and its clock "a
/// moment ago" ([`Backend::recent_us`]) is `lag_us` behind it. Allocates nothing once its
/// queues have their room.
pub struct Port {
    pub ios: VecDeque<DeviceIo>,
    pub msgs: VecDeque<Msg>,
    pub now: Cell<u64>,
    pub lag_us: u64,
}

impl Port {
    /// A port at time `now` whose queues have room for `ios` requests and `msgs` messages.
    pub fn new(now: u64, lag_us: u64, ios: usize, msgs: usize) -> Port {
        Port {
            ios: VecDeque::with_capacity(ios),
            msgs: VecDeque::with_capacity(msgs),
            now: Cell::new(now),
            lag_us,
        }
    }
}

impl Backend for Port {
    fn submit(&mut self, io: DeviceIo) {
        self.ios.push_back(io);
    }
    fn send(&mut self, _to: Address, msg: Msg) {
        self.msgs.push_back(msg);
    }
    fn now_us(&self) -> u64 {
        self.now.get()
    }
    fn recent_us(&self) -> u64 {
        self.now.get() - self.lag_us
    }
}
