//! How a new configuration reaches the workers: the control thread
//! publishes a snapshot (and the neighbor table that goes with it) and
//! bumps a generation counter; each worker compares the counter once per
//! poll loop (a plain load) and takes the lock only when it changed, never
//! per packet.

use crate::config::Snapshot;
use crate::neighbor::SharedNeighbors;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Current = (Arc<Snapshot>, Arc<SharedNeighbors>);

#[derive(Debug)]
pub struct Published {
    generation: AtomicU64,
    current: Mutex<Current>,
}

impl Published {
    pub fn new(snapshot: Arc<Snapshot>, neighbors: Arc<SharedNeighbors>) -> Self {
        Published { generation: AtomicU64::new(0), current: Mutex::new((snapshot, neighbors)) }
    }

    /// Makes `snapshot` the configuration every worker applies next.
    pub fn publish(&self, snapshot: Arc<Snapshot>, neighbors: Arc<SharedNeighbors>) {
        *self.lock() = (snapshot, neighbors);
        // Release: a worker that sees the new generation sees the new value.
        self.generation.fetch_add(1, Ordering::Release);
    }

    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self) -> Current {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding it aborts the process (panic = abort in
        // release), so a poisoned lock only happens in tests: take it anyway.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_bumps_the_generation() {
        let s = Arc::new(Snapshot { max_connections_per_core: 1, ..Snapshot::new(vec![], vec![]) });
        let n = Arc::new(SharedNeighbors::new([]));
        let p = Published::new(Arc::clone(&s), Arc::clone(&n));
        assert_eq!(p.generation(), 0);
        let mut s2 = (*s).clone();
        s2.max_connections_per_core = 2;
        p.publish(Arc::new(s2), n);
        assert_eq!(p.generation(), 1);
        assert_eq!(p.get().0.max_connections_per_core, 2);
    }
}
