//! DMA-able bounce buffers for devices that need memory the SPDK env can translate.
//!
//! The engine's [`crate::engine::Buf`]s are ordinary page-aligned heap memory. Malloc, AIO,
//! uring, delay, error and NVMe/TCP bdevs take any memory; a local NVMe PCIe controller (and
//! NVMe/RDMA) needs memory registered with the SPDK env (`spdk_vtophys` must translate it), and
//! the heap is not. Registering the heap with `spdk_mem_register` needs 2 MiB-aligned regions
//! (and, without an IOMMU, physically contiguous hugepages), which page-granular `Vec`s are not.
//! So, until the engine's pool can take its pages from an allocator we supply, I/O to such a
//! device goes through a bounce buffer from `spdk_dma_malloc`: writes copy in before the
//! submission, reads copy out at completion. Buffers the env can already translate (pinned or
//! registered memory) are used as they are, so a registering allocator turns bouncing off
//! without a change here.
//!
//! The engine's own buffers come from `spdk_dma_zmalloc` under SPDK ([`install_page_allocator`]),
//! so they need no bounce; what may need one is lent user memory and, when the env's memory
//! runs out, heap buffers. Which devices are checked: every bdev but those of modules known to
//! take any memory (malloc, null, aio, uring). `JRAID_DMA_BOUNCE=all` checks every device (for
//! tests on machines without NVMe), `JRAID_DMA_BOUNCE=off` none.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};
use std::ptr::NonNull;

use spdk_sys as sys;

use crate::engine::buf::PAGE;
use crate::engine::{set_page_allocator, RuntimePages};

/// A buffer from `spdk_dma_malloc` (pinned, translatable by the SPDK env).
pub(crate) struct DmaBuf {
    /// Start of the allocation.
    ptr: NonNull<u8>,
    /// Bytes allocated.
    cap: usize,
}

impl DmaBuf {
    /// `cap` bytes, page-aligned; `None` when the env's memory is exhausted.
    pub fn alloc(cap: usize) -> Option<DmaBuf> {
        // SAFETY: plain allocation; a NULL result is handled.
        let p = unsafe { sys::spdk_dma_malloc(cap, PAGE, std::ptr::null_mut()) };
        NonNull::new(p as *mut u8).map(|ptr| DmaBuf { ptr, cap })
    }

    /// `cap` bytes, page-aligned and zeroed; `None` when the env's memory is exhausted.
    pub fn alloc_zeroed(cap: usize) -> Option<DmaBuf> {
        // SAFETY: plain allocation; a NULL result is handled.
        let p = unsafe { sys::spdk_dma_zmalloc(cap, PAGE, std::ptr::null_mut()) };
        NonNull::new(p as *mut u8).map(|ptr| DmaBuf { ptr, cap })
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The start of the buffer, for an iovec SPDK reads or writes.
    pub fn as_mut_ptr(&mut self) -> *mut c_void {
        self.ptr.as_ptr() as *mut c_void
    }

    /// The first `len` bytes.
    pub fn slice(&self, len: usize) -> &[u8] {
        assert!(len <= self.cap, "bounce buffer too small");
        // SAFETY: `cap` bytes from spdk_dma_malloc, owned by self; no device I/O is writing
        // them while the caller holds the buffer (it is handed back only at completion).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) }
    }

    /// The first `len` bytes, writable.
    pub fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.cap, "bounce buffer too small");
        // SAFETY: as in `slice`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by spdk_dma_malloc, freed once; callable from any thread.
        unsafe { sys::spdk_dma_free(self.ptr.as_ptr() as *mut c_void) };
    }
}

// SAFETY: a plain owned allocation; spdk_dma_free may run on any thread.
unsafe impl Send for DmaBuf {}
// SAFETY: shared access only reads the bytes (`slice`); writing needs `&mut`.
unsafe impl Sync for DmaBuf {}

/// `pages` zeroed pages of the engine's memory from SPDK's DMA allocator.
fn dma_pages(pages: usize) -> Option<RuntimePages> {
    let b = std::mem::ManuallyDrop::new(DmaBuf::alloc_zeroed(pages * PAGE)?);
    // SAFETY: `cap` bytes from spdk_dma_zmalloc, page-aligned and zeroed; the DmaBuf is
    // forgotten, so the slice is the allocation's only handle until `free_dma_pages` frees it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(b.ptr.as_ptr(), b.cap) };
    Some(RuntimePages::new(bytes, free_dma_pages))
}

/// Give back memory of [`dma_pages`] (its buffer was dropped).
fn free_dma_pages(bytes: &'static mut [u8]) {
    // Rebuilt as the DmaBuf it was, whose drop frees it (once: the engine calls this once per
    // allocation and keeps no reference to it).
    let cap = bytes.len();
    drop(DmaBuf {
        ptr: NonNull::from(bytes).cast(),
        cap,
    });
}

/// From now on the engine's own buffers (parity, read-modify-write reads, journal records,
/// superblocks, copies) are DMA memory of the SPDK env, so any bdev stack can take them
/// (`JRAID_HEAP_BUFFERS=1` keeps them on the heap: for tests of the bounce path).
pub(crate) fn install_page_allocator() {
    if std::env::var("JRAID_HEAP_BUFFERS").as_deref() == Ok("1") {
        super::ffi::noticelog!("JRAID_HEAP_BUFFERS=1: engine buffers are heap memory");
        return;
    }
    set_page_allocator(dma_pages);
}

/// Bounce memory a channel keeps for reuse, per size class (the rest goes back to the env).
pub(crate) const DMA_KEEP_BYTES: usize = 4 << 20;

/// Free lists of bounce buffers by power-of-two page count (one per channel: no locking, and
/// the steady state allocates nothing).
#[derive(Default)]
pub(crate) struct DmaPool {
    /// `classes[k]` holds buffers of exactly `2^k` pages.
    classes: Vec<Vec<DmaBuf>>,
    /// Buffers allocated (warm-up; flat in steady state).
    pub allocations: u64,
}

impl DmaPool {
    fn class_of(len: usize) -> usize {
        len.div_ceil(PAGE)
            .max(1)
            .next_power_of_two()
            .trailing_zeros() as usize
    }

    /// A buffer of at least `len` bytes; `None` when the env's memory is exhausted.
    pub fn take(&mut self, len: usize) -> Option<DmaBuf> {
        if injected_failure() {
            return None;
        }
        let class = Self::class_of(len);
        if let Some(b) = self.classes.get_mut(class).and_then(|c| c.pop()) {
            return Some(b);
        }
        self.allocations += 1;
        DmaBuf::alloc((1usize << class) * PAGE)
    }

    /// Return a buffer for reuse; beyond [`DMA_KEEP_BYTES`] per size class it is freed, so a
    /// peak of bounced I/O does not pin its memory for good.
    pub fn give(&mut self, b: DmaBuf) {
        let pages = b.capacity() / PAGE;
        if !pages.is_power_of_two() {
            return;
        }
        let class = pages.trailing_zeros() as usize;
        if self.classes.len() <= class {
            self.classes.resize_with(class + 1, Vec::new);
        }
        let keep = (DMA_KEEP_BYTES / b.capacity()).max(4);
        if self.classes[class].len() < keep {
            self.classes[class].push(b);
        }
    }
}

/// Fault injection for tests: `JRAID_DMA_FAIL_EVERY=N` makes every Nth bounce-buffer request
/// fail as if the env's memory were exhausted (a transient shortage).
fn injected_failure() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static EVERY: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let every = *EVERY.get_or_init(|| {
        std::env::var("JRAID_DMA_FAIL_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    every > 0 && COUNT.fetch_add(1, Ordering::Relaxed) % every == every - 1
}

/// Whether I/O to `bdev` must use memory the SPDK env can translate.
///
/// # Safety
/// `bdev` is a live bdev (an open descriptor holds it).
pub(crate) unsafe fn device_needs_dma(bdev: *const sys::spdk_bdev) -> bool {
    match std::env::var("JRAID_DMA_BOUNCE").as_deref() {
        Ok("all") | Ok("1") => return true,
        Ok("off") | Ok("0") => return false,
        _ => {}
    }
    // Modules known to take any memory (they copy, or hand it to the kernel); every other
    // module (nvme, and virtual bdevs that pass I/O down to who knows what) gets memory the env
    // can translate: the engine's own buffers are (see `install_page_allocator`), lent memory
    // is checked per I/O.
    let m = sys::spdk_bdev_get_module_name(bdev);
    if m.is_null() {
        return true;
    }
    !matches!(
        CStr::from_ptr(m).to_bytes(),
        b"malloc" | b"null" | b"aio" | b"uring"
    )
}

/// Whether the SPDK env cannot translate all of the `len` bytes at `p` (so a device needing
/// DMA memory must get a bounce buffer instead). Walks the whole range, one translated region
/// at a time: lent user memory may span separately registered regions with a hole between.
pub(crate) fn untranslatable(p: *const u8, len: usize) -> bool {
    let mut off = 0usize;
    while off < len {
        let mut size = (len - off) as u64;
        // SAFETY: spdk_vtophys only looks the address up in the env's memory map; it shrinks
        // `size` to the length translated in one piece.
        let pa = unsafe { sys::spdk_vtophys(p.wrapping_add(off) as *const c_void, &mut size) };
        if pa == sys::SPDK_VTOPHYS_ERROR as u64 {
            return true;
        }
        off += (size as usize).max(1);
    }
    false
}
