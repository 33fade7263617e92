//! The RVS data plane.
//!
//! Two halves that never mix:
//! - the logic, sans-IO: [`pipeline::Pipeline`] takes a frame and the
//!   current time and says what to do with it; it owns the per-core
//!   connection table ([`conn`]) and neighbor cache ([`neighbor`]). No clock
//!   is read and no device touched inside, so tests drive it with crafted
//!   frames and a simulated clock.
//! - the DPDK glue ([`dpdk`]) and the worker loop ([`worker`]): EAL, ports,
//!   mempools, owned mbufs, lcore launch. Every FFI `unsafe` lives there;
//!   the only other `unsafe` is the cache prefetch hint ([`prefetch`]).

pub mod clock;
pub mod config;
pub mod conn;
pub mod counters;
pub mod dpdk;
pub mod health;
pub mod links;
pub mod local_ports;
pub mod neighbor;
pub mod pipeline;
pub mod prefetch;
pub mod published;
pub mod view;
pub mod worker;
