//! Packet formats as typed views over byte buffers, and the rewrite
//! primitives the data plane applies to them.
//!
//! Every view is built with `new_checked`, which validates all lengths once;
//! after that no accessor can panic, whatever bytes the buffer holds. Setters
//! exist only where the buffer is mutable. Nothing here allocates.
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod rewrite;

mod bytes;
mod error;
pub use error::Error;
pub use ethernet::MacAddr;
