//! A global allocator that asks for transparent huge pages under big
//! allocations: the connection table's slab and index are hundreds of
//! megabytes at millions of connections, and with 4 KiB pages nearly every
//! lookup of a cold connection also misses the TLB (a page walk on top of
//! the cache miss). Allocations of 2 MiB and more are 2 MiB-aligned and
//! marked `MADV_HUGEPAGE` (the kernel's THP mode is usually `madvise`);
//! everything else goes to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

const HUGE: usize = 2 << 20;

/// Install with `#[global_allocator] static A: HugePageAlloc = HugePageAlloc;`.
pub struct HugePageAlloc;

fn big(layout: Layout) -> Option<Layout> {
    (layout.size() >= HUGE).then(|| Layout::from_size_align(layout.size(), layout.align().max(HUGE)).ok()).flatten()
}

fn advise(p: *mut u8, size: usize) {
    if !p.is_null() {
        // SAFETY: `p` starts a live allocation of at least `size` bytes;
        // madvise only changes how the kernel backs those pages (and fails
        // harmlessly where THP is off).
        unsafe { libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE) };
    }
}

/// `System`'s `alloc` or `alloc_zeroed` (`with`) for `layout`, a big one
/// 2 MiB-aligned and advised onto huge pages.
///
/// # Safety
/// As `GlobalAlloc::alloc`: `layout` has a non-zero size.
unsafe fn allocate(layout: Layout, with: unsafe fn(&System, Layout) -> *mut u8) -> *mut u8 {
    match big(layout) {
        Some(l) => {
            // SAFETY: `l` is non-zero-sized (at least 2 MiB) and valid.
            let p = unsafe { with(&System, l) };
            advise(p, l.size());
            p
        }
        // SAFETY: forwarded as received.
        None => unsafe { with(&System, layout) },
    }
}

// SAFETY: every call is forwarded to `System` with a layout of at least the
// requested size and alignment, and freed with the same layout it was
// allocated with (`big` is a pure function of the caller's layout).
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under this impl's contract.
        unsafe { allocate(layout, <System as GlobalAlloc>::alloc) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { allocate(layout, <System as GlobalAlloc>::alloc_zeroed) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`alloc_zeroed` with this same
        // mapping of `layout`.
        unsafe { System.dealloc(ptr, big(layout).unwrap_or(layout)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_and_small_allocations_round_trip() {
        for (size, align) in [(16, 8), (4096, 64), (HUGE, 8), (3 * HUGE + 5, 16)] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero layout; the memory is written within bounds
            // and freed with the same layout.
            unsafe {
                let p = HugePageAlloc.alloc_zeroed(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                if size >= HUGE {
                    assert_eq!(p as usize % HUGE, 0, "big ones start a huge page");
                }
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0xab, size);
                HugePageAlloc.dealloc(p, l);
            }
        }
    }
}
