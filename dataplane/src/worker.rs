//! The worker loop: one per lcore, run to completion. Poll rx on every
//! port, run each frame through the pipeline, batch the output per port,
//! transmit. Nothing here allocates or locks per packet.

use crate::conn::{Hint, TupleHash};
use crate::counters::{CoreCounters, DropReason};
use crate::dpdk::{Burst, Mbuf, Mempool, Port, Ring, MAX_BURST};
use crate::links::LinkBoard;
use crate::pipeline::{Action, Pipeline, Received};
use crate::published::Published;
use crate::view::Views;
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
    /// Connections on this core from which each rx burst's table entries
    /// are prefetched before it is processed (`Pipeline::prefetch`):
    /// below, the table fits the caches and the look ahead only adds work.
    pub prefetch_from: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        // 16,384 connections: about where the table outgrows a core's L2
        // (bench/RESULTS.md: bursts win from 100,000, lose at 1,000).
        WorkerSettings { burst: 32, idle_sleep: Duration::from_micros(100), idle_polls: 256, prefetch_from: 1 << 14 }
    }
}

/// Everything one worker lcore owns.
pub struct Worker {
    pub pipeline: Pipeline,
    pub ports: Arc<Vec<Port>>,
    /// The exception path: the kernel TAP port of each of `ports` (same
    /// index), if it has one. Same queue index as on `ports`.
    pub taps: Arc<Vec<Option<Port>>>,
    /// The rx and tx queue index this worker uses on every port.
    pub queue: u16,
    pub pool: Arc<Mempool>,
    pub stop: Arc<AtomicBool>,
    pub settings: WorkerSettings,
    /// One ring per worker core, indexed by core; `None` with one worker.
    /// This worker consumes `rings[queue]`.
    pub rings: Option<Arc<Vec<Ring>>>,
    /// Where reloaded configurations appear; `None`: never reloaded.
    pub config: Option<Arc<Published>>,
    /// Where this worker's view for operators goes (`views[queue]`).
    pub views: Option<Arc<Views>>,
    /// The links of `ports` (same index) as the control thread reads them;
    /// `None`: every link taken to be up.
    pub links: Option<Arc<LinkBoard>>,
}

/// How often a worker refreshes its view for operators.
const VIEW_INTERVAL: u64 = 100_000_000;

/// How often a worker reads its TAP queues while the kernel sends nothing:
/// a TAP receive is a system call even when empty (about 3.7 µs on the
/// project's VM: read every 50 µs, as it first was, the empty reads took
/// 7% of a busy DR worker's time, `perf record -e cpu-clock`, session 12),
/// and the kernel's own traffic (health checks, ssh, routing) does not
/// need microseconds. While reads find frames, every pass reads again.
const KERNEL_IDLE_POLL_INTERVAL: u64 = 500_000;

/// When a worker next reads its TAP queues (see
/// [`KERNEL_IDLE_POLL_INTERVAL`]).
#[derive(Debug, Default)]
struct KernelPolls {
    next: u64,
}

impl KernelPolls {
    /// Whether the queues are to be read at `now`.
    #[inline(always)]
    fn due(&self, now: u64) -> bool {
        now >= self.next
    }

    /// A read at `now` found `frames`: the kernel is sending, read again
    /// on the next pass; or it is quiet, wait the interval.
    fn read(&mut self, now: u64, frames: usize) {
        self.next = if frames > 0 { now } else { now + KERNEL_IDLE_POLL_INTERVAL };
    }
}

/// The time of the passes that found packets: each pass runs from its
/// clock read to the next pass's, so the time is had without reading the
/// clock again.
#[derive(Debug, Default)]
struct BusyTime {
    /// When the last pass began, and whether it found packets.
    started: u64,
    busy: bool,
}

impl BusyTime {
    /// A pass begins at `now`: the nanoseconds the last one took if it
    /// found packets (0 if not).
    #[inline(always)]
    fn begin(&mut self, now: u64) -> u64 {
        let last = if self.busy { now.saturating_sub(self.started) } else { 0 };
        self.started = now;
        last
    }

    /// The pass that began last found packets, or not.
    #[inline(always)]
    fn end(&mut self, busy: bool) {
        self.busy = busy;
    }
}

/// Output batches of one poll pass: per port, per core to redirect to,
/// and per port's TAP (the kernel).
struct Outputs {
    tx: Vec<Burst>,
    redirect: Vec<Burst>,
    kernel: Vec<Burst>,
    /// By DPDK port id, that port's place in the worker's ports (and in
    /// `tx` and `kernel`), or `NOT_OURS`: one load per packet, no search.
    place_of_port: Vec<u8>,
    /// By place, whether the port's link was down when last seen: what a
    /// port refuses then is counted as `link_down`, not as a full queue.
    down: Vec<bool>,
}

const NOT_OURS: u8 = u8::MAX;

impl Outputs {
    /// `place_of_port` for ports with these DPDK ids, in the worker's order.
    fn place_table(ids: impl Iterator<Item = u16> + Clone) -> Vec<u8> {
        let len = ids.clone().map(|id| usize::from(id) + 1).max().unwrap_or(0);
        let mut table = vec![NOT_OURS; len];
        for (i, id) in ids.enumerate().take(usize::from(NOT_OURS)) {
            table[usize::from(id)] = i as u8;
        }
        table
    }

    /// Where port `id` is among the worker's ports.
    #[inline(always)]
    fn place(&self, id: u16) -> Option<usize> {
        match self.place_of_port.get(usize::from(id)) {
            Some(&i) if i != NOT_OURS => Some(usize::from(i)),
            _ => None,
        }
    }
}

/// Sends `burst` on `port`; `down`: whether its link was down when last
/// seen (read only when the port refused frames).
fn flush(port: &Port, down: &bool, queue: u16, burst: &mut Burst, counters: &CoreCounters) {
    let (sent, unsent) = port.tx(queue, burst);
    counters.tx_packets.add(sent as u64);
    if unsent > 0 {
        counters.drops_add(refused(*down), unsent as u64);
    }
}

/// Why a port refused frames: its link was down, or its queue was full.
fn refused(link_down: bool) -> DropReason {
    if link_down {
        DropReason::LinkDown
    } else {
        DropReason::TxQueueFull
    }
}

/// Queues `m` in `burst` for `ports[i]`, sending the burst first when full
/// (the port is looked up only then: not per packet).
#[inline(always)]
fn push_or_flush(ports: &[Port], down: &[bool], i: usize, queue: u16, burst: &mut Burst, m: Mbuf, counters: &CoreCounters) {
    if let Err(m) = burst.push(m) {
        flush(&ports[i], &down[i], queue, burst, counters);
        let _ = burst.push(m);
    }
}

fn flush_kernel(tap: &Port, queue: u16, burst: &mut Burst, counters: &CoreCounters) {
    let (sent, unsent) = tap.tx(queue, burst);
    counters.to_kernel.add(sent as u64);
    if unsent > 0 {
        counters.drops_add(DropReason::KernelQueueFull, unsent as u64);
    }
}

impl Worker {
    /// Runs until `stop` is set.
    pub fn run(mut self) {
        let counters = Arc::clone(self.pipeline.counters());
        let ports = Arc::clone(&self.ports);
        let rings = self.rings.clone();
        let queue = self.queue;
        let mut rx = Burst::new();
        // The prefetch stages' results, by position in the rx burst.
        let mut hashes = [TupleHash::default(); MAX_BURST];
        let mut hints = [Hint::NONE; MAX_BURST];
        // Output batches, allocated once, before the loop.
        let ncores = rings.as_ref().map_or(0, |r| r.len());
        let taps = Arc::clone(&self.taps);
        let has_taps = taps.iter().any(Option::is_some);
        let mut out = Outputs {
            tx: (0..ports.len()).map(|_| Burst::new()).collect(),
            redirect: (0..ncores).map(|_| Burst::new()).collect(),
            kernel: (0..ports.len()).map(|_| Burst::new()).collect(),
            place_of_port: Outputs::place_table(ports.iter().map(Port::id)),
            down: vec![false; ports.len()],
        };
        // The links as the control thread last saw them (none: all up).
        let mut links_seen = u64::MAX;
        let mut kernel_polls = KernelPolls::default();
        let mut busy_time = BusyTime::default();
        let mut idle_polls = 0u32;
        let mut generation = self.config.as_ref().map_or(0, |c| c.generation());
        let mut next_view = 0u64;
        // The view being refreshed, a slice per pass, and where it is at;
        // `view_done`: refreshed, waiting to be published.
        let mut view = crate::view::CoreView::default();
        let (mut view_next, mut view_done) = (0usize, false);
        // The last connection-listing request this worker answered, and
        // the one it is answering, a slice per pass.
        let mut listed = 0u64;
        let mut listing: Option<(u64, crate::view::ConnListing)> = None;

        while !self.stop.load(Relaxed) {
            // A reload: apply it between bursts (one load per loop otherwise).
            if let Some(config) = &self.config {
                let g = config.generation();
                if g != generation {
                    generation = g;
                    let (snapshot, neighbors) = config.get();
                    match self.pipeline.apply(snapshot, neighbors) {
                        Ok(()) => counters.reloads.inc(),
                        Err(_) => counters.reload_errors.inc(),
                    }
                    // A view begun before the reload starts over.
                    (view_next, view_done) = (0, false);
                }
            }
            if let Some(board) = &self.links {
                let g = board.generation();
                if g != links_seen {
                    links_seen = g;
                    for (i, port) in ports.iter().enumerate() {
                        let up = board.is_up(i);
                        out.down[i] = !up;
                        self.pipeline.set_link(port.id(), up);
                    }
                }
            }
            let now = crate::clock::now_ns();
            let busy_ns = busy_time.begin(now);
            if busy_ns > 0 {
                counters.busy_ns.add(busy_ns);
            }
            self.pipeline.tick(now);
            if now >= next_view {
                if let Some(views) = &self.views {
                    // In slices, one per pass, until published; then not
                    // again for VIEW_INTERVAL.
                    if !view_done {
                        view_done = self.pipeline.refresh_view(&mut view, &mut view_next, crate::view::VIEW_SLICE, now);
                    }
                    if view_done && views.publish(usize::from(queue), &mut view) {
                        view_done = false;
                        next_view = now + VIEW_INTERVAL;
                    }
                } else {
                    next_view = now + VIEW_INTERVAL;
                }
            }
            if let Some(views) = &self.views {
                if listing.is_none() {
                    let wanted = views.connections_wanted();
                    if wanted > listed {
                        listing = Some((wanted, crate::view::ConnListing::default()));
                    }
                }
                if let Some((wanted, l)) = &mut listing {
                    if self.pipeline.list_connections_slice(l, now, crate::view::LIST_SLICE, crate::view::MAX_LISTED_PER_CORE) {
                        views.set_connections(usize::from(queue), *wanted, std::mem::take(&mut l.rows), l.truncated);
                        listed = *wanted;
                        listing = None;
                    }
                }
            }
            self.send_arp_requests(now, &mut out, &counters);

            let mut got = 0;
            // First what other cores handed us: those packets waited already.
            if let Some(rings) = &rings {
                let n = rings[usize::from(queue)].dequeue(&mut rx, self.settings.burst);
                got += n;
                counters.redirected_in.add(n as u64);
                for m in rx.drain() {
                    let port = m.port();
                    self.handle(port, m, now, Hint::NONE, &mut out, &counters);
                }
            }
            for port in ports.iter() {
                let n = port.rx(queue, &mut rx, self.settings.burst);
                got += n;
                counters.rx_packets.add(n as u64);
                if n > 1 && self.pipeline.connections() >= self.settings.prefetch_from {
                    // Every frame's cache misses at once, not one by one;
                    // what the stages found spares each lookup its search.
                    let mut k = 0;
                    rx.for_each_data(|f| {
                        hashes[k] = self.pipeline.prefetch_index(f);
                        k += 1;
                    });
                    for (hint, &hash) in hints.iter_mut().zip(&hashes[..k]) {
                        *hint = self.pipeline.prefetch_entry(hash);
                    }
                } else {
                    hints[..n.min(MAX_BURST)].fill(Hint::NONE);
                }
                // Read once: the pipeline's calls could, for all the
                // compiler knows, change the port.
                let id = port.id();
                for (m, &hint) in rx.drain().zip(&hints) {
                    self.handle(id, m, now, hint, &mut out, &counters);
                }
            }
            // What the kernel sends leaves through its data port unchanged.
            if has_taps && kernel_polls.due(now) {
                let mut from_kernel = 0;
                for (i, tap) in taps.iter().enumerate() {
                    let Some(tap) = tap else { continue };
                    let n = tap.rx(queue, &mut rx, self.settings.burst);
                    from_kernel += n;
                    counters.from_kernel.add(n as u64);
                    for m in rx.drain() {
                        push_or_flush(&ports, &out.down, i, queue, &mut out.tx[i], m, &counters);
                    }
                }
                got += from_kernel;
                kernel_polls.read(now, from_kernel);
            }
            for ((port, burst), down) in ports.iter().zip(out.tx.iter_mut()).zip(&out.down) {
                flush(port, down, queue, burst, &counters);
            }
            if has_taps {
                for (tap, burst) in taps.iter().zip(out.kernel.iter_mut()) {
                    if let Some(tap) = tap {
                        flush_kernel(tap, queue, burst, &counters);
                    }
                }
            }
            if let Some(rings) = &rings {
                for (ring, burst) in rings.iter().zip(out.redirect.iter_mut()) {
                    let (_, unsent) = ring.enqueue(burst);
                    counters.drops_add(DropReason::RedirectRingFull, unsent as u64);
                }
            }

            busy_time.end(got > 0);
            if got == 0 {
                counters.polls_idle.inc();
                idle_polls = idle_polls.saturating_add(1);
                if idle_polls >= self.settings.idle_polls && !self.settings.idle_sleep.is_zero() {
                    std::thread::sleep(self.settings.idle_sleep);
                }
            } else {
                counters.polls_busy.inc();
                idle_polls = 0;
            }
        }
    }

    /// One received (or redirected) frame through the pipeline, into the
    /// right output batch; dropping `m` frees it. Always inlined: as a
    /// call it cost 20 instructions a packet (callgrind, whole worker).
    #[inline(always)]
    fn handle(&mut self, port: u16, mut m: Mbuf, now: u64, hint: Hint, out: &mut Outputs, counters: &CoreCounters) {
        if !m.is_contiguous() {
            counters.count_drop(DropReason::MalformedFrame);
            return;
        }
        let (len0, mut len) = (m.len(), m.len());
        let checked = m.ip_checksum_good();
        let (buf, head0) = m.buffer_mut();
        let mut head = head0;
        let action = self.pipeline.process_hinted(port, buf, &mut head, &mut len, now, Received { hint, ip_checksum_good: checked });
        if (head, len) != (head0, len0) && !m.set_bounds(head, len) {
            counters.count_drop(DropReason::MalformedFrame);
            return;
        }
        match action {
            Action::Transmit { port: to } => {
                let Some(oi) = out.place(to) else { return };
                push_or_flush(&self.ports, &out.down, oi, self.queue, &mut out.tx[oi], m, counters);
            }
            Action::Redirect { core } => {
                let (Some(rings), Some(burst)) = (&self.rings, out.redirect.get_mut(core as usize)) else {
                    counters.count_drop(DropReason::RedirectRingFull);
                    return;
                };
                if let Err(m) = burst.push(m) {
                    let (_, unsent) = rings[core as usize].enqueue(burst);
                    counters.drops_add(DropReason::RedirectRingFull, unsent as u64);
                    let _ = burst.push(m);
                }
            }
            Action::ToKernel => {
                let Some(i) = out.place(port) else { return };
                let Some(tap) = &self.taps.get(i).and_then(Option::as_ref) else {
                    counters.count_drop(DropReason::LocalAddress);
                    return;
                };
                if let Err(m) = out.kernel[i].push(m) {
                    flush_kernel(tap, self.queue, &mut out.kernel[i], counters);
                    let _ = out.kernel[i].push(m);
                }
            }
            Action::Consumed | Action::Drop(_) => {}
        }
    }

    fn send_arp_requests(&mut self, now: u64, out: &mut Outputs, counters: &CoreCounters) {
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
            |to, m, _len| {
                let Some(oi) = out.place(to) else { return };
                push_or_flush(ports, &out.down, oi, queue, &mut out.tx[oi], m, counters);
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(ids: &[u16]) -> Outputs {
        Outputs { tx: vec![], redirect: vec![], kernel: vec![], place_of_port: Outputs::place_table(ids.iter().copied()), down: vec![] }
    }

    #[test]
    fn what_a_down_link_refuses_is_not_a_full_queue() {
        assert_eq!(refused(true), DropReason::LinkDown);
        assert_eq!(refused(false), DropReason::TxQueueFull);
    }

    /// Only the passes that found packets count, each from its beginning
    /// to the next pass's; the idle passes (and the sleeps after them)
    /// between do not.
    #[test]
    fn busy_time_counts_the_passes_that_found_packets() {
        let mut t = BusyTime::default();
        let mut total = 0;
        // (when the pass begins, whether it finds packets)
        for (now, busy) in [(100, true), (130, true), (200, false), (1_000, false), (5_000, true), (5_040, false), (9_000, true)] {
            total += t.begin(now);
            t.end(busy);
        }
        assert_eq!(total, 30 + 70 + 40, "100..130, 130..200 and 5,000..5,040");
        assert_eq!(t.begin(9_025), 25, "the last one, when the next begins");
        assert_eq!(BusyTime::default().begin(7), 0, "nothing before the first pass");
    }

    /// The TAP queues are read on the first pass, then, while the kernel
    /// is quiet, once per interval; while reads find frames, on every pass.
    #[test]
    fn tap_queues_are_read_often_only_while_the_kernel_sends() {
        let mut polls = KernelPolls::default();
        assert!(polls.due(0), "read at start");
        polls.read(1_000, 0);
        assert!(!polls.due(1_001) && !polls.due(1_000 + KERNEL_IDLE_POLL_INTERVAL - 1), "quiet: not before the interval");
        assert!(polls.due(1_000 + KERNEL_IDLE_POLL_INTERVAL));
        polls.read(2_000_000, 3);
        assert!(polls.due(2_000_000), "frames came: read again on the next pass");
        polls.read(2_000_100, 0);
        assert!(!polls.due(2_000_200), "quiet again: back to the interval");
    }

    #[test]
    fn ports_are_found_by_id_and_others_are_not() {
        let out = outputs(&[3, 0, 7]);
        assert_eq!([0, 3, 7].map(|id| out.place(id)), [Some(1), Some(0), Some(2)]);
        for id in [1, 2, 4, 6, 8, 255, 1000, u16::MAX] {
            assert_eq!(out.place(id), None, "port {id} is not the worker's");
        }
        assert_eq!(outputs(&[]).place(0), None);
    }
}
