//! Rings between worker cores: how a packet that reached the wrong core
//! travels to the core that owns its connection. Many producers (any
//! worker), one consumer (the owner), lock-free (`rte_ring`).

use super::{Burst, DpdkError};
use dpdk_sys::rte_ring;
use std::ffi::{c_void, CString};
use std::ptr::NonNull;

/// A ring of mbufs addressed to one worker.
#[derive(Debug)]
pub struct Ring {
    ptr: NonNull<rte_ring>,
}

// SAFETY: rte_ring is multi-producer safe; the single consumer is the
// owning worker (documented contract of `dequeue`).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring for `size - 1` mbufs (`size` a power of two).
    pub fn new(_eal: &super::Eal, name: &str, size: u32) -> Result<Ring, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::new("ring name contains NUL", 22))?;
        // SAFETY: valid C string; EAL initialised (we hold &Eal).
        let raw = unsafe { dpdk_sys::rte_ring_create(c.as_ptr(), size, dpdk_sys::rte_socket_id() as i32, dpdk_sys::RING_F_SC_DEQ) };
        NonNull::new(raw).map(|ptr| Ring { ptr }).ok_or_else(|| DpdkError::from_errno(format!("rte_ring_create({name}, {size})")))
    }

    /// Hands the mbufs of `burst` to the ring; what does not fit is freed.
    /// Returns (enqueued, freed); the burst is empty afterwards.
    pub fn enqueue(&self, burst: &mut Burst) -> (usize, usize) {
        let (slots, n) = burst.tx_slots();
        if n == 0 {
            return (0, 0);
        }
        // SAFETY: slots holds n owned mbufs; the ring takes ownership of the
        // first `sent`, which the burst then forgets.
        let sent = unsafe { dpdk_sys::rte_ring_enqueue_burst(self.ptr.as_ptr(), slots as *const *mut c_void, u32::from(n), std::ptr::null_mut()) };
        let unsent = burst.tx_done(sent as u16);
        (sent as usize, unsent)
    }

    /// Takes up to `max` mbufs into the (empty) `burst`. Only the worker the
    /// ring belongs to may call this (single consumer).
    pub fn dequeue(&self, burst: &mut Burst, max: usize) -> usize {
        let (slots, n) = burst.rx_slots(max);
        // SAFETY: slots has room for n pointers; each dequeued mbuf becomes
        // owned by the burst; single consumer by contract.
        let got = unsafe { dpdk_sys::rte_ring_dequeue_burst(self.ptr.as_ptr(), slots as *mut *mut c_void, u32::from(n), std::ptr::null_mut()) };
        burst.rx_filled(got as u16);
        got as usize
    }

    /// Mbufs waiting in the ring.
    pub fn len(&self) -> usize {
        // SAFETY: valid ring; a relaxed read of its indices.
        unsafe { dpdk_sys::rte_ring_count(self.ptr.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Free whatever is still queued, then the ring.
        let mut b = Burst::new();
        while self.dequeue(&mut b, super::MAX_BURST) > 0 {
            drop(std::mem::take(&mut b));
        }
        // SAFETY: no worker uses the ring any more (they hold Arcs to it
        // and have returned); it is empty.
        unsafe { dpdk_sys::rte_ring_free(self.ptr.as_ptr()) };
    }
}
