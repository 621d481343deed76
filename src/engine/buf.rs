//! I/O buffers: 4 KiB-aligned (fit for O_DIRECT and DMA-style backends) and pooled, so the steady
//! state allocates nothing.

use std::any::Any;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

/// Alignment and allocation unit of every buffer.
pub const PAGE: usize = 4096;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Memory a caller lends the engine for one request: the data of a write, which the engine then
/// sends to the members without copying it, or the destination of a read, which members may
/// read into directly. Implementations (in the adapters) keep the memory valid — and a write's
/// data unchanged — for as long as they live; the engine lets go of every reference before it
/// completes the request.
pub trait Lent: Any + Send + Sync {
    /// The lent bytes.
    fn bytes(&self) -> &[u8];

    /// The lent bytes, writable (a read's destination); `None` for read-only memory.
    fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    /// Whether [`Lent::bytes_mut`] gives the bytes.
    fn writable(&self) -> bool {
        false
    }
}

/// Page memory a runtime supplies for the engine's own buffers (see [`set_page_allocator`]):
/// under SPDK, memory the SPDK env can translate for DMA, so that no bdev stack ever receives
/// heap memory. The buffer keeps the bytes themselves (not a handle to ask for them), so that
/// reaching a buffer's bytes on the I/O path is one load, with no dynamic call and no line of
/// the runtime's own.
pub struct RuntimePages {
    /// The memory: page-aligned, zeroed when handed out, a whole number of pages, used by
    /// nothing else until `free` gets it back.
    bytes: &'static mut [u8],
    /// Gives the memory back to the runtime (called once, when the buffer is dropped).
    free: fn(&'static mut [u8]),
}

impl RuntimePages {
    /// Memory `bytes` of the runtime, given back to `free` when the buffer is dropped. The
    /// runtime promises `bytes` is page-aligned, zeroed, a whole number of pages and nobody
    /// else's until then.
    pub fn new(bytes: &'static mut [u8], free: fn(&'static mut [u8])) -> RuntimePages {
        RuntimePages { bytes, free }
    }
}

impl Drop for RuntimePages {
    fn drop(&mut self) {
        (self.free)(std::mem::take(&mut self.bytes));
    }
}

/// Allocates `pages` zeroed pages of runtime memory; `None` when there is none left (the buffer
/// then comes from the heap).
pub type PageAllocator = fn(pages: usize) -> Option<RuntimePages>;

static PAGE_ALLOCATOR: std::sync::OnceLock<PageAllocator> = std::sync::OnceLock::new();

/// Make every engine buffer created from now on come from `alloc` (once per process; later
/// calls are ignored and return false). Without it buffers are heap memory.
pub fn set_page_allocator(alloc: PageAllocator) -> bool {
    PAGE_ALLOCATOR.set(alloc).is_ok()
}

/// The engine's own memory.
enum PageMem {
    /// Heap pages.
    Heap(Vec<Page>),
    /// Pages from the runtime's allocator.
    Runtime(RuntimePages),
}

impl PageMem {
    fn new(pages: usize) -> PageMem {
        if let Some(m) = PAGE_ALLOCATOR.get().and_then(|alloc| alloc(pages)) {
            if m.bytes.len() == pages * PAGE && (m.bytes.as_ptr() as usize).is_multiple_of(PAGE) {
                return PageMem::Runtime(m);
            }
        }
        PageMem::Heap(vec![Page([0; PAGE]); pages])
    }

    fn bytes(&self) -> &[u8] {
        match self {
            PageMem::Heap(p) => bytemuck::cast_slice::<Page, u8>(p),
            PageMem::Runtime(m) => m.bytes,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            PageMem::Heap(p) => bytemuck::cast_slice_mut::<Page, u8>(p),
            PageMem::Runtime(m) => m.bytes,
        }
    }

    fn pages(&self) -> usize {
        match self {
            PageMem::Heap(p) => p.len(),
            PageMem::Runtime(m) => m.bytes.len() / PAGE,
        }
    }
}

enum Store {
    /// Pages of the engine's own; their count is the capacity of the owning buffer.
    Pages(Arc<PageMem>),
    /// A caller's memory.
    Lent(Arc<dyn Lent>),
}

/// A page-aligned byte buffer with a logical length (or a caller's lent memory).
///
/// A buffer may lend read-only views of parts of itself ([`Buf::share`]) — a write request's
/// data goes to the members straight from the request's buffer instead of through a copy. While
/// views live, the buffer is read-only too ([`Buf::as_mut_slice`] panics: that is a bug in the
/// caller); once they are dropped it is writable and poolable again.
pub struct Buf {
    /// Backing memory.
    store: Store,
    /// Byte offset of this buffer (or view) in the pages.
    off: usize,
    /// Bytes in use.
    len: usize,
}

impl Buf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> Buf {
        let pages = Arc::new(PageMem::new(len.div_ceil(PAGE).max(1)));
        Buf {
            store: Store::Pages(pages),
            off: 0,
            len,
        }
    }

    /// A read-only buffer over a caller's memory (see [`Lent`]).
    pub fn lent(memory: Arc<dyn Lent>) -> Buf {
        let len = memory.bytes().len();
        Buf {
            store: Store::Lent(memory),
            off: 0,
            len,
        }
    }

    /// True when [`Buf::as_mut_slice`] may be called: the engine's own buffer with no view
    /// alive, or writable lent memory not shared.
    pub fn is_writable(&self) -> bool {
        match &self.store {
            Store::Pages(_) => !self.is_view(),
            Store::Lent(l) => self.off == 0 && Arc::strong_count(l) == 1 && l.writable(),
        }
    }

    /// True for the engine's own buffer whose pages came from the runtime's allocator (see
    /// [`set_page_allocator`]).
    pub fn is_runtime_memory(&self) -> bool {
        matches!(&self.store, Store::Pages(p) if matches!(**p, PageMem::Runtime(..)))
    }

    /// True for a buffer over a caller's lent memory.
    pub fn is_lent(&self) -> bool {
        matches!(self.store, Store::Lent(_))
    }

    /// The caller's memory back from a buffer made by [`Buf::lent`] (the holder can then be
    /// reused once no view of it lives); `None` for the engine's own buffers.
    pub fn into_lent(self) -> Option<Arc<dyn Lent>> {
        match self.store {
            Store::Lent(l) => Some(l),
            Store::Pages(_) => None,
        }
    }

    /// Lent memory as `Any`, to get the adapter's own type back.
    pub fn lent_any(l: Arc<dyn Lent>) -> Arc<dyn Any + Send + Sync> {
        l
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> Buf {
        let mut b = Buf::new(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no byte is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buffer can hold without reallocation (a view: its length).
    pub fn capacity(&self) -> usize {
        match &self.store {
            Store::Pages(p) if !self.is_view() => p.pages() * PAGE,
            _ => self.len,
        }
    }

    /// Change the length (contents beyond the old length are whatever was there).
    /// Panics if `len` exceeds the capacity: that is a bug in the caller.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "buffer length beyond capacity");
        self.len = len;
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        let range = self.off..self.off + self.len;
        match &self.store {
            Store::Pages(p) => &p.bytes()[range],
            Store::Lent(l) => &l.bytes()[range],
        }
    }

    /// The bytes in use, writable. Panics while views of the buffer live, or on a view.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let (off, len) = (self.off, self.len);
        match &mut self.store {
            Store::Pages(p) => {
                let pages = Arc::get_mut(p).expect("a shared buffer is read-only");
                &mut pages.bytes_mut()[off..off + len]
            }
            Store::Lent(l) => {
                let bytes = Arc::get_mut(l)
                    .and_then(|l| l.bytes_mut())
                    .expect("lent memory is read-only");
                &mut bytes[off..off + len]
            }
        }
    }

    /// A read-only view of bytes `off..off + len` of this buffer (sharing its memory).
    pub fn share(&self, off: usize, len: usize) -> Buf {
        assert!(off + len <= self.len, "view beyond the buffer");
        let store = match &self.store {
            Store::Pages(p) => Store::Pages(p.clone()),
            Store::Lent(l) => Store::Lent(l.clone()),
        };
        Buf {
            store,
            off: self.off + off,
            len,
        }
    }

    /// True for a view made by [`Buf::share`] (or a buffer whose views live) and for lent
    /// memory: buffers the pool must not keep.
    pub fn is_view(&self) -> bool {
        match &self.store {
            Store::Pages(p) => self.off != 0 || Arc::strong_count(p) > 1,
            Store::Lent(_) => true,
        }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf({} bytes)", self.len)
    }
}

/// Free lists of buffers by power-of-two page count.
#[derive(Default)]
pub struct BufPool {
    /// `classes[k]` holds buffers of exactly `2^k` pages.
    classes: Vec<Vec<Buf>>,
    /// Buffers created because a free list was empty (warm-up cost; flat in steady state).
    pub allocations: u64,
}

impl BufPool {
    /// An empty pool.
    pub fn new() -> BufPool {
        BufPool::default()
    }

    fn class_of(len: usize) -> usize {
        let pages = len.div_ceil(PAGE).max(1);
        pages.next_power_of_two().trailing_zeros() as usize
    }

    /// A buffer of `len` bytes (contents unspecified).
    pub fn take(&mut self, len: usize) -> Buf {
        let class = Self::class_of(len);
        if let Some(mut b) = self.classes.get_mut(class).and_then(|c| c.pop()) {
            // A pooled buffer is no view and holds exactly 2^class pages (see `give`), at
            // least `len` bytes: set the length without asking its pages (a load of a line of
            // their own on every I/O).
            debug_assert!(len <= b.capacity());
            b.len = len;
            return b;
        }
        self.allocations += 1;
        let mut b = Buf::new((1usize << class) * PAGE);
        b.set_len(len);
        b
    }

    /// Return a buffer for reuse (views, and buffers whose views still live, are just dropped).
    pub fn give(&mut self, buf: Buf) {
        if buf.is_view() {
            return;
        }
        let Store::Pages(p) = &buf.store else {
            return;
        };
        let pages = p.pages();
        if !pages.is_power_of_two() {
            return; // not one of ours; let it go
        }
        let class = pages.trailing_zeros() as usize;
        if self.classes.len() <= class {
            self.classes.resize_with(class + 1, Vec::new);
        }
        self.classes[class].push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_reused() {
        let mut pool = BufPool::new();
        let b = pool.take(5000);
        assert_eq!(b.len(), 5000);
        assert_eq!(b.as_slice().as_ptr() as usize % PAGE, 0);
        pool.give(b);
        let b = pool.take(8192);
        assert_eq!(pool.allocations, 1);
        pool.give(b);
        let _ = pool.take(100);
        assert_eq!(pool.allocations, 2);
    }

    #[test]
    fn views_share_and_block_writes_until_dropped() {
        let mut b = Buf::from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let v = b.share(2, 4);
        assert_eq!(v.as_slice(), &[3, 4, 5, 6]);
        assert!(v.is_view() && b.is_view());
        let w = v.share(1, 2);
        assert_eq!(w.as_slice(), &[4, 5]);
        let mut pool = BufPool::new();
        pool.give(w);
        assert!(
            pool.classes.iter().all(|c| c.is_empty()),
            "a view went into the pool"
        );
        drop(v);
        assert!(!b.is_view());
        b.as_mut_slice()[0] = 9;
        assert_eq!(b.as_slice()[0], 9);
    }

    struct Memory(Vec<u8>);

    impl Lent for Memory {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }

    #[test]
    fn lent_memory_is_read_and_shared_never_pooled() {
        let m: Arc<dyn Lent> = Arc::new(Memory((0..16).collect()));
        let b = Buf::lent(m);
        assert_eq!(b.len(), 16);
        let v = b.share(4, 4);
        assert_eq!(v.as_slice(), &[4, 5, 6, 7]);
        let mut pool = BufPool::new();
        pool.give(v);
        assert!(pool.classes.iter().all(|c| c.is_empty()));
        let l = b.into_lent().expect("lent memory");
        let Ok(m) = Buf::lent_any(l).downcast::<Memory>() else {
            panic!("not the adapter's type");
        };
        assert_eq!(Arc::strong_count(&m), 1, "views were dropped");
    }

    struct Dest(Vec<u8>);

    impl Lent for Dest {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn bytes_mut(&mut self) -> Option<&mut [u8]> {
            Some(&mut self.0)
        }
        fn writable(&self) -> bool {
            true
        }
    }

    #[test]
    fn writable_lent_memory_takes_writes_until_shared() {
        let d: Arc<dyn Lent> = Arc::new(Dest(vec![0; 8]));
        let mut b = Buf::lent(d);
        assert!(b.is_writable());
        b.as_mut_slice()[3] = 7;
        let v = b.share(2, 2);
        assert!(!b.is_writable());
        assert_eq!(v.as_slice(), &[0, 7]);
        drop(v);
        assert!(b.is_writable());
        let ro: Arc<dyn Lent> = Arc::new(Memory(vec![0; 8]));
        assert!(!Buf::lent(ro).is_writable());
    }

    #[test]
    #[should_panic(expected = "read-only")]
    fn writing_lent_memory_panics() {
        let m: Arc<dyn Lent> = Arc::new(Memory(vec![0; 8]));
        Buf::lent(m).as_mut_slice()[0] = 1;
    }

    #[test]
    #[should_panic(expected = "read-only")]
    fn writing_a_shared_buffer_panics() {
        let mut b = Buf::new(4096);
        let _v = b.share(0, 512);
        b.as_mut_slice()[0] = 1;
    }
}
