//! A cache prefetch hint: start loading the line of a value that will be
//! read soon (the connection table's bucket and slab entry of the next
//! packets of a burst), so its cache miss overlaps other work.

/// Hints the processor to load the cache line holding `*v`.
#[inline(always)]
pub fn line<T>(v: &T) {
    line_at((v as *const T).cast::<u8>());
}

/// Bit `2k` (and `2k + 1`) set where `lanes[k] == tag`: eight 16-bit
/// compares in one SSE2 instruction.
#[inline(always)]
pub fn lanes_equal(lanes: &[u16; 8], tag: u16) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_cmpeq_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi16};
        // SAFETY: `lanes` is 16 readable bytes (an unaligned load is
        // allowed); SSE2 is part of x86_64.
        unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi16(v, _mm_set1_epi16(tag as i16))) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    lanes.iter().enumerate().fold(0, |m, (k, &t)| m | u32::from(t == tag) * (3 << (2 * k)))
}

/// Hints the processor to load the cache line holding address `p`, which
/// need not be valid (a prefetch never faults): for a line picked by
/// arithmetic rather than by a reference.
#[inline(always)]
pub fn line_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it never faults, whatever
    // the address, reads no value into the program and writes nothing.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
