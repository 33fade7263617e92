//! Real-server health as the workers see it: one flag per real server of a
//! snapshot, written by the control plane's health checkers and read by
//! every worker. A worker compares the board's generation once per poll
//! loop (a plain load) and re-reads the flags only when it changed, so a
//! health transition costs the packet path nothing and needs no reload.
//!
//! Slots follow the snapshot: the real servers of service 0 first, then
//! those of service 1, and so on ([`slot_bases`]).

use crate::config::Service;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct HealthBoard {
    generation: AtomicU64,
    up: Box<[AtomicBool]>,
}

impl HealthBoard {
    /// A board with one slot per item of `up`.
    pub fn new(up: impl IntoIterator<Item = bool>) -> Self {
        HealthBoard { generation: AtomicU64::new(0), up: up.into_iter().map(AtomicBool::new).collect() }
    }

    /// A board for `services` with every real server up.
    pub fn all_up(services: &[Service]) -> Self {
        Self::new(services.iter().flat_map(|s| s.reals.iter()).map(|_| true))
    }

    pub fn len(&self) -> usize {
        self.up.len()
    }

    pub fn is_empty(&self) -> bool {
        self.up.is_empty()
    }

    /// Whether slot `slot` is up; a slot the board does not have is up
    /// (a board without checks marks nothing down).
    #[inline]
    pub fn is_up(&self, slot: usize) -> bool {
        self.up.get(slot).is_none_or(|u| u.load(Ordering::Relaxed))
    }

    /// Marks a slot; returns true when it changed. Control plane only.
    pub fn set(&self, slot: usize, up: bool) -> bool {
        let Some(u) = self.up.get(slot) else { return false };
        if u.swap(up, Ordering::Relaxed) == up {
            return false;
        }
        // Release: a worker that sees the new generation sees the flag.
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Bumps the generation so every worker re-reads the whole board.
    pub fn touch(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The first slot of each service's real servers.
pub fn slot_bases(services: &[Service]) -> Vec<u32> {
    let mut next = 0u32;
    services
        .iter()
        .map(|s| {
            let base = next;
            next = next.saturating_add(s.reals.len() as u32);
            base
        })
        .collect()
}

/// The board a snapshot carries. Two snapshots are equal only if they
/// share the same board.
#[derive(Debug, Clone, Default)]
pub struct Health(pub Arc<HealthBoard>);

impl PartialEq for Health {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Health {}

impl core::ops::Deref for Health {
    type Target = HealthBoard;
    fn deref(&self) -> &HealthBoard {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_changes_flags_and_generation_only_on_change() {
        let b = HealthBoard::new([true, true, false]);
        assert_eq!((b.is_up(0), b.is_up(2)), (true, false));
        let g = b.generation();
        assert!(!b.set(0, true), "already up");
        assert_eq!(b.generation(), g);
        assert!(b.set(0, false));
        assert!(!b.is_up(0));
        assert!(b.generation() > g);
        assert!(!b.set(7, false), "no such slot");
        assert!(b.is_up(7), "slots outside the board count as up");
    }

    #[test]
    fn slots_run_through_the_services_in_order() {
        use crate::config::{ForwardingMode, L4Proto, RealServer};
        let svc = |n: usize| Service {
            proto: L4Proto::Tcp,
            vip: "10.0.0.1".parse().unwrap(),
            port: 80,
            scheduler: sched::SchedulerSpec::parse("rr", &[], None).unwrap(),
            persistence: None,
            mode: ForwardingMode::DirectRoute,
            local_addrs: vec![],
            reals: (0..n).map(|i| RealServer::new(core::net::Ipv4Addr::new(10, 0, 1, i as u8), 1)).collect(),
        };
        let services = [svc(2), svc(0), svc(3)];
        assert_eq!(slot_bases(&services), vec![0, 2, 2]);
        assert_eq!(HealthBoard::all_up(&services).len(), 5);
    }
}
