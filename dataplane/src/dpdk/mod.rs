//! A safe layer over DPDK. Every FFI call of the data plane is in this
//! module, each `unsafe` block with the reason it is sound.
//!
//! Ownership rules: an [`Mbuf`] owns one packet buffer and frees it on drop;
//! a [`Burst`] owns the mbufs in it; transmitting hands the sent prefix to
//! the driver and frees (and counts) the unsent tail, so no buffer is leaked
//! or freed twice.

mod eal;
mod huge_alloc;
mod mbuf;
mod mempool;
mod port;
mod ring;

pub use eal::{Eal, Lcore};
pub use huge_alloc::HugePageAlloc;
pub use mbuf::{Burst, Mbuf, MAX_BURST};
pub use mempool::Mempool;
pub use port::{LinkStatus, Port, PortStats};
pub use ring::Ring;

use core::fmt;

/// A failed DPDK call: what was attempted and DPDK's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    pub what: String,
    pub code: i32,
}

impl DpdkError {
    pub(crate) fn new(what: impl Into<String>, code: i32) -> Self {
        DpdkError { what: what.into(), code: code.abs() }
    }

    /// An error whose code is in `rte_errno`.
    pub(crate) fn from_errno(what: impl Into<String>) -> Self {
        // SAFETY: reads this thread's rte_errno; no preconditions.
        let code = unsafe { dpdk_sys::rvs_rte_errno() };
        Self::new(what, code)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = std::io::Error::from_raw_os_error(self.code);
        write!(f, "{} failed: {} (code {})", self.what, msg, self.code)
    }
}

impl std::error::Error for DpdkError {}
