#![allow(unsafe_code)]
//! The few system calls the standard library does not wrap: eventfd, fallocate and madvise.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// A new blocking eventfd (counter 0, close-on-exec), owned as a [`File`]: writing 8 bytes adds
/// to the counter, reading 8 bytes takes it and blocks (or parks an io_uring read) while it is 0.
pub fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; it only returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it; the File
    // becomes its only owner and closes it once.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Allocate `len` bytes of `file` on disk (so later O_DIRECT writes do not allocate). Returns
/// false when the filesystem cannot (the file then stays sparse, which is still correct).
pub fn preallocate(file: &File, len: u64) -> bool {
    let Ok(len) = libc::off_t::try_from(len) else {
        return false;
    };
    // SAFETY: fallocate takes a descriptor borrowed from a live File and two integers; no memory
    // is shared with the kernel.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    rc == 0
}

/// Ask for transparent huge pages over `len` bytes at `at` (the pages wholly inside it), where
/// the kernel lets a process ask (`transparent_hugepage=madvise`); a hint, errors ignored. For
/// [`crate::journal::JournalConfig::advise_state_memory`].
pub fn advise_huge_pages(at: *const u8, len: usize) {
    const PAGE: usize = 4096;
    let start = (at as usize).next_multiple_of(PAGE);
    let end = (at as usize).saturating_add(len) / PAGE * PAGE;
    if end > start {
        // SAFETY: madvise with MADV_HUGEPAGE changes no contents and no access rights: it only
        // lets the kernel back the range with huge pages. The range lies inside one live
        // allocation (the caller's), rounded inwards to page boundaries.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// A prefetch hint for the cache line at `at` (see [`crate::engine::Backend::prefetch`] and
/// [`crate::journal::JournalConfig::prefetch`]); never reads or writes through it.
pub fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults nor reads through the pointer (any
    // address is allowed), and SSE, which it needs, is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
