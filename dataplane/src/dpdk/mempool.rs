//! Packet buffer pools.

use super::DpdkError;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

/// A pool of packet buffers. Must outlive every port queue set up with it
/// and every mbuf taken from it.
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
    ///
    /// Where device addresses are virtual ones (IOVA as VA: every virtual
    /// device, and vfio), the buffers are packed back to back. DPDK's own
    /// `rte_pktmbuf_pool_create` keeps each buffer within one page, which
    /// without hugepages puts every 2.3 KiB buffer on a 4 KiB page of its
    /// own; the AF_XDP driver registers the pool with the kernel as one
    /// area of `count` x buffer size from its start, and the kernel
    /// rejects every buffer past that area (`tx_invalid_descs`: frames
    /// silently not sent). Under physical addresses buffers must not
    /// cross pages, and DPDK's layout stays.
    pub fn new(_eal: &super::Eal, name: &str, count: u32, cache: u32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("mempool name contains NUL", 22))?;
        let data_room = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
        // SAFETY: no preconditions once the EAL is initialised (we hold &Eal).
        let virtual_addresses = unsafe { dpdk_sys::rte_eal_iova_mode() } == dpdk_sys::rte_iova_mode_RTE_IOVA_VA;
        if virtual_addresses {
            return Self::packed(&cname, count, cache, data_room).map_err(|code| DpdkError::new(format!("creating mempool {name} ({count} mbufs)"), code));
        }
        // SAFETY: valid C string; the EAL is initialised (we hold &Eal).
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, dpdk_sys::rte_socket_id() as i32) };
        NonNull::new(raw).map(|ptr| Mempool { ptr }).ok_or_else(|| DpdkError::from_errno(format!("rte_pktmbuf_pool_create({name}, {count} mbufs)")))
    }

    /// What `rte_pktmbuf_pool_create` does, with buffers free to cross
    /// pages (`RTE_MEMPOOL_F_NO_IOVA_CONTIG`) in one memory zone whose
    /// device address is given to the pool: DPDK's own populate step
    /// would then leave the buffers without one (`RTE_BAD_IOVA`), which a
    /// NIC's DMA needs. Err: the errno.
    fn packed(name: &CStr, count: u32, cache: u32, data_room: u16) -> Result<Mempool, i32> {
        let elt_size = std::mem::size_of::<dpdk_sys::rte_mbuf>() as u32 + u32::from(data_room);
        let private = std::mem::size_of::<dpdk_sys::rte_pktmbuf_pool_private>() as u32;
        // SAFETY: no preconditions.
        let socket = unsafe { dpdk_sys::rte_socket_id() } as i32;
        // SAFETY: valid C string and sizes; the EAL is initialised.
        let raw = unsafe { dpdk_sys::rte_mempool_create_empty(name.as_ptr(), count, elt_size, cache, private, socket, dpdk_sys::RTE_MEMPOOL_F_NO_IOVA_CONTIG) };
        // SAFETY: reads this thread's rte_errno.
        let ptr = NonNull::new(raw).ok_or_else(|| unsafe { dpdk_sys::rvs_rte_errno() })?;
        // Owned from here: dropping it frees the pool (and the zone, once
        // populated) on every error below.
        let pool = Mempool { ptr };
        let mut info = dpdk_sys::rte_pktmbuf_pool_private { mbuf_data_room_size: data_room, ..Default::default() };
        // SAFETY: an empty pool of ours; the ops name is DPDK's static
        // string; `info` is read during the call only.
        unsafe {
            let rc = dpdk_sys::rte_mempool_set_ops_byname(raw, dpdk_sys::rte_mbuf_best_mempool_ops(), std::ptr::null_mut());
            if rc != 0 {
                return Err(rc);
            }
            dpdk_sys::rte_pktmbuf_pool_init(raw, (&raw mut info).cast());
        }
        // SAFETY: raw is a live pool; these fields are set by create_empty.
        let object = unsafe { u64::from((*raw).header_size) + u64::from((*raw).elt_size) + u64::from((*raw).trailer_size) };
        let len = usize::try_from(object * u64::from(count)).map_err(|_| libc::ENOMEM)?;
        let mut zone_name = b"rvs_".to_vec();
        zone_name.extend(name.to_bytes().iter().take(26));
        let zone_name = CString::new(zone_name).map_err(|_| libc::EINVAL)?;
        // SAFETY: valid C string; the EAL is initialised.
        let zone = unsafe { dpdk_sys::rte_memzone_reserve_aligned(zone_name.as_ptr(), len, socket, dpdk_sys::RTE_MEMZONE_IOVA_CONTIG, 64) };
        if zone.is_null() {
            // SAFETY: reads this thread's rte_errno.
            return Err(unsafe { dpdk_sys::rvs_rte_errno() });
        }
        // SAFETY: a live zone of `len` bytes or more, handed to the pool,
        // which frees it through `free_zone` when the pool is freed.
        let populated = unsafe {
            let z = &*zone;
            let rc = dpdk_sys::rte_mempool_populate_iova(raw, z.__bindgen_anon_1.addr.cast(), z.iova, z.len, Some(free_zone), zone.cast_mut().cast());
            if rc < 0 {
                dpdk_sys::rte_memzone_free(zone);
            }
            rc
        };
        if populated < 0 {
            return Err(populated);
        }
        if populated as u32 != count {
            return Err(libc::ENOMEM); // not all buffers found room
        }
        // SAFETY: every object of the populated pool, initialised as mbufs;
        // then the pool's flags, before any device has seen the pool.
        unsafe {
            dpdk_sys::rte_mempool_obj_iter(raw, Some(dpdk_sys::rte_pktmbuf_init), std::ptr::null_mut());
            // DPDK marks a pool made with NO_IOVA_CONTIG "not for device
            // IO", and drivers that register memory for DMA (mlx5) skip
            // such pools; this one has real device addresses.
            (*raw).flags &= !dpdk_sys::RTE_MEMPOOL_F_NON_IO;
        }
        Ok(pool)
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Whether devices may read and write the buffers (DMA): DPDK's
    /// `RTE_MEMPOOL_F_NON_IO` unset.
    pub fn for_device_io(&self) -> bool {
        // SAFETY: ptr is a live mempool; its flags are set at creation.
        unsafe { (*self.ptr.as_ptr()).flags & dpdk_sys::RTE_MEMPOOL_F_NON_IO == 0 }
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

/// Frees the memory zone a packed pool was populated from.
unsafe extern "C" fn free_zone(_chunk: *mut dpdk_sys::rte_mempool_memhdr, zone: *mut std::ffi::c_void) {
    // SAFETY: `zone` is the memzone `Mempool::packed` reserved for this
    // pool's only chunk; DPDK calls this once, when the pool is freed.
    unsafe { dpdk_sys::rte_memzone_free(zone.cast_const().cast()) };
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is no longer used: ports were closed and mbufs
        // freed by their owners before the pool is dropped.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
