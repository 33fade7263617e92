//! Owned packet buffers and fixed-size bursts of them.

use super::Mempool;
use dpdk_sys::rte_mbuf;
use std::ptr::NonNull;

/// Largest burst a [`Burst`] holds.
pub const MAX_BURST: usize = 64;

/// One packet buffer, owned: dropping it returns it to its pool.
#[derive(Debug)]
pub struct Mbuf {
    ptr: NonNull<rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it to another
// thread moves the ownership (DPDK frees to the pool from any thread).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid mbuf that nothing else owns or will free.
    pub(crate) unsafe fn from_raw(ptr: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf { ptr }
    }

    /// Gives up ownership without freeing (the driver took it).
    pub(crate) fn into_raw(self) -> *mut rte_mbuf {
        let p = self.ptr.as_ptr();
        std::mem::forget(self);
        p
    }

    /// A fresh, empty buffer from `pool`, or `None` when it is exhausted.
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: pool is a live mempool; the returned mbuf is ours alone.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(pool.as_ptr()) };
        // SAFETY: non-null result of alloc: a valid mbuf nobody else owns.
        NonNull::new(raw).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    fn m(&self) -> &rte_mbuf {
        // SAFETY: ptr is valid and exclusively ours for the life of self.
        unsafe { self.ptr.as_ref() }
    }

    /// Data length of the first segment.
    pub fn len(&self) -> usize {
        usize::from(self.m().data_len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the port checked this frame's IPv4 header checksum and
    /// found it right (receive checksum offload: see
    /// [`super::Port::checks_ip_checksums`]). False when it found it wrong,
    /// did not check, or does not offer to.
    #[inline]
    pub fn ip_checksum_good(&self) -> bool {
        self.m().ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK) == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD)
    }

    /// True when the packet is in one segment (all it holds is in [`Self::data`]).
    pub fn is_contiguous(&self) -> bool {
        self.m().nb_segs == 1 && self.m().pkt_len == u32::from(self.m().data_len)
    }

    /// Room after the data in the first segment.
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        usize::from(m.buf_len).saturating_sub(usize::from(m.data_off) + usize::from(m.data_len))
    }

    /// The first segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the buffer
        // DPDK gave us; we own it, so no one writes it meanwhile.
        unsafe { std::slice::from_raw_parts((m.buf_addr as *const u8).add(usize::from(m.data_off)), usize::from(m.data_len)) }
    }

    /// The device (IO) address of the first segment's data: where a NIC's
    /// DMA reads or writes it (`rte_mbuf_data_iova`).
    pub fn data_iova(&self) -> u64 {
        let m = self.m();
        m.buf_iova + u64::from(m.data_off)
    }

    /// The first segment's data, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; &mut self makes the access exclusive.
        unsafe {
            let m = self.ptr.as_mut();
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// The whole buffer and where the data starts in it: the headroom
    /// before and the tailroom after are what a frame may grow into.
    #[inline]
    pub fn buffer_mut(&mut self) -> (&mut [u8], usize) {
        // SAFETY: buf_addr .. buf_len is the buffer DPDK gave us, which we
        // own; &mut self makes the access exclusive.
        unsafe {
            let m = self.ptr.as_mut();
            (std::slice::from_raw_parts_mut(m.buf_addr as *mut u8, usize::from(m.buf_len)), usize::from(m.data_off))
        }
    }

    /// Makes `buffer[head..head + len]` the packet (single segment);
    /// `false` if that is not inside the buffer.
    pub fn set_bounds(&mut self, head: usize, len: usize) -> bool {
        let m = self.m();
        if head + len > usize::from(m.buf_len) || m.nb_segs != 1 {
            return false;
        }
        // SAFETY: exclusive access; the range is inside the buffer.
        unsafe {
            let m = self.ptr.as_mut();
            m.data_off = head as u16;
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
        true
    }

    /// Sets the packet length (single segment), growing or shrinking the
    /// data; `false` if `len` does not fit in the buffer.
    pub fn set_len(&mut self, len: usize) -> bool {
        let m = self.m();
        let room = usize::from(m.buf_len).saturating_sub(usize::from(m.data_off));
        if len > room || m.nb_segs != 1 {
            return false;
        }
        // SAFETY: exclusive access; len fits in the first segment.
        unsafe {
            let m = self.ptr.as_mut();
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
        true
    }

    /// The port the packet arrived on.
    pub fn port(&self) -> u16 {
        self.m().port
    }
}

impl AsMut<[u8]> for Mbuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (and its chained segments); freed once here.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.ptr.as_ptr()) };
    }
}

/// A fixed-capacity array of owned mbufs, on the stack: what rx fills and
/// tx drains. Dropping it frees whatever it still holds.
pub struct Burst {
    ptrs: [*mut rte_mbuf; MAX_BURST],
    /// Owned mbufs are `ptrs[head..len]`.
    head: usize,
    len: usize,
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Burst({} mbufs)", self.len - self.head)
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub fn new() -> Burst {
        Burst { ptrs: [std::ptr::null_mut(); MAX_BURST], head: 0, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len == self.head
    }

    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds an mbuf; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        // `>=`, not `==`: then the compiler knows the index below is in
        // bounds and checks once.
        if self.len >= MAX_BURST {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Calls `f` with the data of each mbuf in the burst, in order,
    /// leaving them in (a look ahead before they are taken out).
    pub fn for_each_data(&self, mut f: impl FnMut(&[u8])) {
        for &p in &self.ptrs[self.head..self.len] {
            // SAFETY: every pointer in head..len is an owned, valid mbuf,
            // and the slice is its first segment's data (as `Mbuf::data`);
            // `&self` keeps the burst, and so the mbuf, from changing
            // while `f` reads it.
            let data = unsafe {
                let m = &*p;
                std::slice::from_raw_parts((m.buf_addr as *const u8).add(usize::from(m.data_off)), usize::from(m.data_len))
            };
            f(data);
        }
    }

    /// Takes every mbuf out, in order: an iterator over them that frees
    /// whatever it has not handed out when dropped. The burst is empty
    /// from the start. (The worker takes a received burst apart with it:
    /// the iterator keeps its position in a register across the
    /// pipeline's calls, with no bounds checks; a position kept in the
    /// burst was stored and reloaded around every call, the driver having
    /// had the burst's address.)
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let (head, len) = (self.head, self.len);
        self.head = 0;
        self.len = 0;
        Drain { ptrs: self.ptrs[head..len].iter() }
    }

    /// Empty space for the driver to fill: (pointer to the first free slot,
    /// number of free slots). Call only on an empty burst.
    pub(crate) fn rx_slots(&mut self, max: usize) -> (*mut *mut rte_mbuf, u16) {
        debug_assert!(self.is_empty());
        self.head = 0;
        self.len = 0;
        (self.ptrs.as_mut_ptr(), max.min(MAX_BURST) as u16)
    }

    /// Records that the driver put `n` mbufs in the slots from `rx_slots`.
    pub(crate) fn rx_filled(&mut self, n: u16) {
        self.len = usize::from(n).min(MAX_BURST);
    }

    /// The owned mbufs for the driver to send: (pointer, count).
    pub(crate) fn tx_slots(&mut self) -> (*mut *mut rte_mbuf, u16) {
        // SAFETY: head <= len <= MAX_BURST, so the pointer stays in the array.
        (unsafe { self.ptrs.as_mut_ptr().add(self.head) }, (self.len - self.head) as u16)
    }

    /// The driver took the first `sent` mbufs; frees the rest. Returns how
    /// many were freed unsent.
    pub(crate) fn tx_done(&mut self, sent: u16) -> usize {
        self.head += usize::from(sent).min(self.len - self.head);
        let unsent = self.len - self.head;
        self.free_rest();
        unsent
    }

    fn free_rest(&mut self) {
        for i in self.head..self.len {
            // SAFETY: ptrs[head..len] are owned mbufs; each is freed once and
            // the range is emptied right after.
            unsafe { dpdk_sys::rte_pktmbuf_free(self.ptrs[i]) };
        }
        self.head = 0;
        self.len = 0;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_rest();
    }
}

/// The mbufs of a burst, taken out in order ([`Burst::drain`]).
pub struct Drain<'a> {
    /// Owned mbufs not handed out yet.
    ptrs: core::slice::Iter<'a, *mut rte_mbuf>,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        let &p = self.ptrs.next()?;
        // SAFETY: the pointers left in `ptrs` are owned, valid mbufs (put
        // in the burst by push or by the driver on rx); each leaves here once.
        NonNull::new(p).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ptrs.size_hint()
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for &p in self.ptrs.by_ref() {
            // SAFETY: owned mbufs not handed out; each freed once.
            unsafe { dpdk_sys::rte_pktmbuf_free(p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The port's verdict on the IPv4 header checksum, from the mbuf's
    /// flags: good only when it checked and found it right.
    #[test]
    fn only_a_checksum_the_port_found_right_counts_as_good() {
        for (flags, good) in [
            (dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD, true),
            (dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_BAD, false),
            (dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_NONE, false),
            (dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, false),
        ] {
            // Other flags set around it change nothing.
            for others in [0, !u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK)] {
                let mut raw = rte_mbuf { ol_flags: u64::from(flags) | others, ..Default::default() };
                // SAFETY: a valid mbuf header owned by this test, handed
                // back (never freed to a pool) before it goes.
                let m = unsafe { Mbuf::from_raw(NonNull::from(&mut raw)) };
                assert_eq!(m.ip_checksum_good(), good, "flags {flags:#x} with {others:#x}");
                m.into_raw();
            }
        }
    }
}
