//! A RAID-5 volume driven through the [`Backend`] trait: I/O splitting, write planning, stripe
//! locks, degraded mode, the journal protocol, resync.

pub mod backend;
pub mod buf;
pub mod channel;
pub mod lock;
pub mod plan;
pub mod volume;

pub use backend::{Address, Backend, Device, DeviceIo, IoOp, Msg, ReactorId};
pub use buf::{set_page_allocator, Buf, BufPool, Lent, PageAllocator, RuntimePages};
pub use channel::{Channel, ChannelStats, Completion, IoError, SubmitError, UserOp};
pub use volume::{MemberHealth, Volume};
