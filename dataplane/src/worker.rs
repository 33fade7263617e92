//! The worker loop: one per lcore, run to completion. Poll rx on every
//! port, run each frame through the pipeline, batch the output per port,
//! transmit. Nothing here allocates or locks per packet.

use crate::counters::{CoreCounters, DropReason};
use crate::dpdk::{Burst, Mbuf, Mempool, Port};
use crate::pipeline::{Action, Pipeline};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Minimum Ethernet frame (without FCS): generated frames are padded to it.
const MIN_FRAME: usize = 60;

/// Poll-loop tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Packets per rx burst (at most [`crate::dpdk::MAX_BURST`]).
    pub burst: usize,
    /// Sleep this long when `idle_polls` consecutive polls found nothing;
    /// zero = busy-poll always (a dedicated core).
    pub idle_sleep: Duration,
    pub idle_polls: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings { burst: 32, idle_sleep: Duration::from_micros(100), idle_polls: 256 }
    }
}

/// Everything one worker lcore owns.
pub struct Worker {
    pub pipeline: Pipeline,
    pub ports: Arc<Vec<Port>>,
    /// The rx and tx queue index this worker uses on every port.
    pub queue: u16,
    pub pool: Arc<Mempool>,
    pub stop: Arc<AtomicBool>,
    pub settings: WorkerSettings,
}

fn flush(port: &Port, queue: u16, burst: &mut Burst, counters: &CoreCounters) {
    let (sent, unsent) = port.tx(queue, burst);
    counters.tx_packets.add(sent as u64);
    if unsent > 0 {
        counters.drops_add(DropReason::TxQueueFull, unsent as u64);
    }
}

impl Worker {
    /// Runs until `stop` is set.
    pub fn run(mut self) {
        let counters = Arc::clone(self.pipeline.counters());
        let ports = Arc::clone(&self.ports);
        let nports = ports.len();
        let queue = self.queue;
        let mut rx = Burst::new();
        // One pending tx burst per port, allocated once, before the loop.
        let mut tx: Vec<Burst> = (0..nports).map(|_| Burst::new()).collect();
        let mut idle_polls = 0u32;

        while !self.stop.load(Relaxed) {
            let now = crate::clock::now_ns();
            self.pipeline.tick(now);
            self.send_arp_requests(now, &mut tx, &counters);

            let mut got = 0;
            for port in ports.iter() {
                let n = port.rx(queue, &mut rx, self.settings.burst);
                got += n;
                counters.rx_packets.add(n as u64);
                while let Some(mut m) = rx.pop() {
                    if !m.is_contiguous() {
                        counters.count_drop(DropReason::MalformedFrame);
                        continue; // dropping `m` frees it
                    }
                    let mut len = m.len();
                    let action = self.pipeline.process_room(port.id(), m.room_mut(), &mut len, now);
                    if len != m.len() && !m.set_len(len) {
                        counters.count_drop(DropReason::MalformedFrame);
                        continue;
                    }
                    if let Action::Transmit { port: out } = action {
                        let Some(oi) = ports.iter().position(|p| p.id() == out) else { continue };
                        if let Err(m) = tx[oi].push(m) {
                            flush(&ports[oi], queue, &mut tx[oi], &counters);
                            let _ = tx[oi].push(m);
                        }
                    }
                }
            }
            for (port, burst) in ports.iter().zip(tx.iter_mut()) {
                flush(port, queue, burst, &counters);
            }

            if got == 0 {
                idle_polls = idle_polls.saturating_add(1);
                if idle_polls >= self.settings.idle_polls && !self.settings.idle_sleep.is_zero() {
                    std::thread::sleep(self.settings.idle_sleep);
                }
            } else {
                idle_polls = 0;
            }
        }
    }

    fn send_arp_requests(&mut self, now: u64, tx: &mut [Burst], counters: &CoreCounters) {
        let pool = &self.pool;
        let ports = &self.ports;
        let queue = self.queue;
        self.pipeline.arp_requests(
            now,
            || {
                let mut m = Mbuf::alloc(pool)?;
                if !m.set_len(MIN_FRAME) {
                    return None;
                }
                m.data_mut().fill(0);
                Some(m)
            },
            |out, m, _len| {
                let Some(oi) = ports.iter().position(|p| p.id() == out) else { return };
                if let Err(m) = tx[oi].push(m) {
                    flush(&ports[oi], queue, &mut tx[oi], counters);
                    let _ = tx[oi].push(m);
                }
            },
        );
    }
}
