//! Packet buffer pools.

use super::DpdkError;
use std::ffi::CString;
use std::ptr::NonNull;

/// A pool of packet buffers (`rte_pktmbuf_pool_create`). Must outlive every
/// port queue set up with it and every mbuf taken from it.
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; per-lcore
// caches are indexed by the calling lcore, and non-EAL threads bypass them.
unsafe impl Send for Mempool {}
// SAFETY: as above: all operations through &Mempool are thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `count` buffers (best as 2^k - 1) of the default 2 KiB data room,
    /// with a per-lcore cache of `cache` buffers.
    pub fn new(_eal: &super::Eal, name: &str, count: u32, cache: u32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("mempool name contains NUL", 22))?;
        // SAFETY: valid C string; the EAL is initialised (we hold &Eal).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16, dpdk_sys::rte_socket_id() as i32)
        };
        NonNull::new(raw).map(|ptr| Mempool { ptr }).ok_or_else(|| DpdkError::from_errno(format!("rte_pktmbuf_pool_create({name}, {count} mbufs)")))
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Buffers currently free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: ptr is a live mempool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Buffers currently taken out of the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: ptr is a live mempool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is no longer used: ports were closed and mbufs
        // freed by their owners before the pool is dropped.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
