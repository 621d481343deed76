//! I/O buffers: 4 KiB-aligned (fit for O_DIRECT and DMA-style backends) and pooled, so the steady
//! state allocates nothing.

use bytemuck::{Pod, Zeroable};

/// Alignment and allocation unit of every buffer.
pub const PAGE: usize = 4096;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// An owned, page-aligned byte buffer with a logical length.
pub struct Buf {
    /// Backing pages; their count is the capacity.
    pages: Vec<Page>,
    /// Bytes in use.
    len: usize,
}

impl Buf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> Buf {
        let pages = vec![Page([0; PAGE]); len.div_ceil(PAGE).max(1)];
        Buf { pages, len }
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

    /// Bytes the buffer can hold without reallocation.
    pub fn capacity(&self) -> usize {
        self.pages.len() * PAGE
    }

    /// Change the length (contents beyond the old length are whatever was there).
    /// Panics if `len` exceeds the capacity: that is a bug in the caller.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "buffer length beyond capacity");
        self.len = len;
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.pages)[..self.len]
    }

    /// The bytes in use, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.pages)[..self.len]
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
            b.set_len(len);
            return b;
        }
        self.allocations += 1;
        let mut b = Buf::new((1usize << class) * PAGE);
        b.set_len(len);
        b
    }

    /// Return a buffer for reuse.
    pub fn give(&mut self, buf: Buf) {
        let pages = buf.pages.len();
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
}
