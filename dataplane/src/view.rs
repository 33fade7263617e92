//! What an operator sees of the data plane (rvsadm, metrics): every worker
//! copies its services, real servers and their counts into a view every
//! 100 ms, behind a per-core lock taken only at that rate; readers merge
//! the cores' views. Nothing here runs per packet.

use crate::config::{ForwardingMode, L4Proto};
use core::net::Ipv4Addr;
use sched::SchedulerKind;
use std::sync::{Mutex, MutexGuard};

/// One real server of one service, as one core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestView {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
    pub active: u32,
    pub inactive: u32,
    pub removed: bool,
    pub overloaded: bool,
    /// Connections scheduled to it, and traffic both ways.
    pub conns: u64,
    pub pkts_in: u64,
    pub pkts_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub proto: L4Proto,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub scheduler: SchedulerKind,
    pub mode: ForwardingMode,
    /// Seconds, when persistent.
    pub persistence: Option<u64>,
    /// Removed by a reload; still listed while it has connections.
    pub retired: bool,
    pub dests: Vec<DestView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreView {
    /// When it was taken (the data plane's clock, ns).
    pub at: u64,
    pub services: Vec<ServiceView>,
    pub connections: usize,
    pub capacity: usize,
}

/// One view per worker core.
#[derive(Debug)]
pub struct Views {
    cores: Vec<Mutex<CoreView>>,
}

impl Views {
    pub fn new(cores: usize) -> Self {
        Views { cores: (0..cores).map(|_| Mutex::new(CoreView::default())).collect() }
    }

    pub fn set(&self, core: usize, view: CoreView) {
        if let Some(m) = self.cores.get(core) {
            *lock(m) = view;
        }
    }

    /// Every core's latest view.
    pub fn all(&self) -> Vec<CoreView> {
        self.cores.iter().map(|m| lock(m).clone()).collect()
    }
}

fn lock(m: &Mutex<CoreView>) -> MutexGuard<'_, CoreView> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
