//! What an operator sees of the data plane (rvsadm, metrics): every worker
//! copies its services, real servers and their counts into a view every
//! 100 ms (a slice per poll: [`VIEW_SLICE`]) and swaps it in behind a
//! per-core lock it never waits for; readers merge the cores' views.
//! Nothing here runs per packet.

use crate::config::{ForwardingMode, L4Proto};
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, Ordering};
use sched::SchedulerKind;
use std::sync::{Mutex, MutexGuard};

/// Most connections one core lists per request: the copies are made on
/// the worker and kept until the admin thread takes them.
pub const MAX_LISTED_PER_CORE: usize = 100_000;

/// Connection slots a worker looks at per poll while it lists its
/// connections (see `Pipeline::list_connections_slice`): tens of
/// microseconds between bursts, where a listing of 100,000 connections
/// made at once paused forwarding for milliseconds (`reload_bench`
/// times both).
pub const LIST_SLICE: usize = 1024;

/// Real servers' worth of its view a worker refreshes per poll (see
/// `Pipeline::refresh_view`): microseconds, not the millisecond a view of
/// 10,000 services made at once took (`reload_bench` times both).
pub const VIEW_SLICE: usize = 256;

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

/// One connection, as `rvsadm -c` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnView {
    pub proto: L4Proto,
    pub client: (Ipv4Addr, u16),
    pub virt: (Ipv4Addr, u16),
    pub real: (Ipv4Addr, u16),
    /// FullNAT: the local address and port it uses.
    pub local: Option<(Ipv4Addr, u16)>,
    /// ESTABLISHED, SYN_RECV, FIN_WAIT, CLOSE, or UDP.
    pub state: &'static str,
    pub expires_in_s: u64,
}

/// A listing of one core's connections being made, a slice per poll.
#[derive(Debug, Clone, Default)]
pub struct ConnListing {
    /// The first slot not looked at yet.
    pub next_slot: usize,
    pub rows: Vec<ConnView>,
    /// It stopped at its cap with connections left.
    pub truncated: bool,
}

/// One core's answer to a connection-listing request.
#[derive(Debug, Clone, Default)]
struct ConnList {
    /// The request it answers.
    generation: u64,
    conns: Vec<ConnView>,
    truncated: bool,
}

/// One view per worker core, and connection listings on request.
#[derive(Debug)]
pub struct Views {
    cores: Vec<Mutex<CoreView>>,
    /// Bumped by each listing request; workers answer when they see it move.
    wanted: AtomicU64,
    lists: Vec<Mutex<ConnList>>,
}

impl Views {
    pub fn new(cores: usize) -> Self {
        Views {
            cores: (0..cores).map(|_| Mutex::new(CoreView::default())).collect(),
            wanted: AtomicU64::new(0),
            lists: (0..cores).map(|_| Mutex::new(ConnList::default())).collect(),
        }
    }

    /// Asks every worker for its connections; returns the request's number.
    pub fn request_connections(&self) -> u64 {
        self.wanted.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The latest request number (workers compare it with what they answered).
    pub fn connections_wanted(&self) -> u64 {
        self.wanted.load(Ordering::Relaxed)
    }

    /// A worker's answer to request `generation`.
    pub fn set_connections(&self, core: usize, generation: u64, conns: Vec<ConnView>, truncated: bool) {
        if let Some(m) = self.lists.get(core) {
            *m.lock().unwrap_or_else(|e| e.into_inner()) = ConnList { generation, conns, truncated };
        }
    }

    /// Every core's connections once all have answered request
    /// `generation` or later, and whether some core listed only part of
    /// its table. `None` while some core has not answered.
    pub fn connections(&self, generation: u64) -> Option<(Vec<ConnView>, bool)> {
        let mut all = Vec::new();
        let mut truncated = false;
        for m in &self.lists {
            let l = m.lock().unwrap_or_else(|e| e.into_inner());
            if l.generation < generation {
                return None;
            }
            all.extend(l.conns.iter().cloned());
            truncated |= l.truncated;
        }
        Some((all, truncated))
    }

    pub fn set(&self, core: usize, view: CoreView) {
        if let Some(m) = self.cores.get(core) {
            *lock(m) = view;
        }
    }

    /// A worker's way to [`Self::set`]: swaps `view` with core `core`'s
    /// published one (so `view` gets the older one back, to refresh in
    /// place) unless a reader holds it, which a worker does not wait
    /// for (a reader clones every service under the lock); false then,
    /// and nothing changed: try again later.
    pub fn publish(&self, core: usize, view: &mut CoreView) -> bool {
        let Some(m) = self.cores.get(core) else { return false };
        let mut published = match m.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        std::mem::swap(&mut *published, view);
        true
    }

    /// Every core's latest view.
    pub fn all(&self) -> Vec<CoreView> {
        self.cores.iter().map(|m| lock(m).clone()).collect()
    }
}

fn lock(m: &Mutex<CoreView>) -> MutexGuard<'_, CoreView> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(at: u64) -> CoreView {
        CoreView { at, ..CoreView::default() }
    }

    /// Publishing swaps: readers see the new view, the worker gets the
    /// old one back; while a reader holds the core's view, nothing changes
    /// and the worker is told to try later instead of waiting.
    #[test]
    fn publish_swaps_unless_a_reader_holds_the_view() {
        let views = Views::new(2);
        let mut mine = view(7);
        assert!(views.publish(1, &mut mine));
        assert_eq!((views.all()[1].at, mine.at), (7, 0));
        let held = views.cores[1].lock().unwrap();
        let mut next = view(9);
        assert!(!views.publish(1, &mut next), "a reader holds it");
        assert_eq!(next.at, 9, "nothing swapped");
        drop(held);
        assert!(views.publish(1, &mut next));
        assert_eq!((views.all()[1].at, next.at), (9, 7));
        assert!(!views.publish(2, &mut next), "no such core");
    }
}
