//! Per-packet cost of the worker pipeline, in-process (no port, no kernel).
//!
//!   pipeline_bench time                 ns/packet, established DR flows and new connections
//!   pipeline_bench count MODE PACKETS   process PACKETS frames and exit (for callgrind)
//!   pipeline_bench lookup [SIZES]       connection lookups at 1 thousand, 100 thousand, 1 million, 10 million connections
//!
//! MODE: `established` (64-byte UDP of 1,024 open DR connections, round
//! robin), `established-dr`, `-nat`, `-fullnat`, `-tun`
//! (the same, client to server, in that mode), `established-dr-tcp`,
//! `-nat-tcp`, `-fullnat-tcp`, `-tun-tcp` (the same for TCP: the ACKs of
//! established connections), `established-nat-reply`,
//! `-fullnat-reply` (the real servers' replies to those connections,
//! server to client), `established-dr-big`,
//! `-nat-big`, `-fullnat-big`, `-tun-big` (the same with 65,536
//! connections, each burst prefetched first as the worker does with a big
//! table), `established-dr-checked`, `-tun-checked` (DR and TUN with
//! the IPv4 header checksums checked by the port, as with a NIC's receive
//! checksum offload), or `new` (a SYN of a new flow every time: schedule
//! and create).
//! `bench/pipeline.sh` runs `count` under callgrind at two lengths and
//! reports instructions per packet (the difference, so setup cancels).

use bench::{median_ns_per_op, median_ns_per_op_after, Rng};
use dataplane::config::{ForwardingMode, Interface, L4Proto, RealServer, Service, Snapshot, Timeouts};
use dataplane::conn::{Binding, ConnTable, FlowKey, Hint, Lookup, TupleHash};
use dataplane::pipeline::{Action, Pipeline, Received};
use proto::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// As rvsd: big tables on transparent huge pages.
#[global_allocator]
static ALLOC: dataplane::dpdk::HugePageAlloc = dataplane::dpdk::HugePageAlloc;

const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const FLOWS: usize = 1024;

fn pipeline(max_conns: usize) -> Pipeline {
    pipeline_in(ForwardingMode::DirectRoute, max_conns)
}

/// Both services in `mode` (FullNAT from the local addresses 198.18.0.3
/// and .4: one has fewer ports than the big runs have flows).
fn pipeline_in(mode: ForwardingMode, max_conns: usize) -> Pipeline {
    let local_addrs = if mode == ForwardingMode::FullNat { vec![Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 4)] } else { vec![] };
    let reals: Vec<RealServer> = (11..=20).map(|k| RealServer::new(Ipv4Addr::new(198, 18, 0, k), 1 + u32::from(k % 3))).collect();
    let snapshot = Snapshot {
        max_connections_per_core: max_conns,
        ..Snapshot::new(
            vec![Interface { port: 0, mac: LB_MAC, addr: Ipv4Addr::new(198, 18, 0, 2), prefix_len: 24, mtu: 1500, kernel: false }],
            vec![
                Service {
                    proto: L4Proto::Udp,
                    vip: VIP,
                    port: 53,
                    scheduler: sched::SchedulerSpec::new(sched::SchedulerKind::Wrr),
                    persistence: None,
                    mode,
                    local_addrs: local_addrs.clone(),
                    reals: reals.clone(),
                },
                Service {
                    proto: L4Proto::Tcp,
                    vip: VIP,
                    port: 80,
                    scheduler: sched::SchedulerSpec::new(sched::SchedulerKind::Wlc),
                    persistence: None,
                    mode,
                    local_addrs: local_addrs.clone(),
                    reals: reals.clone(),
                },
            ],
        )
    };
    let mut p = Pipeline::new(Arc::new(snapshot), Arc::default()).expect("valid snapshot");
    for r in &reals {
        let mut f = vec![0u8; 60];
        let last = r.addr.octets()[3];
        proto::arp::write_request(&mut f, MacAddr([2, 0, 0, 0, 1, last]), r.addr, Ipv4Addr::new(198, 18, 0, 2)).expect("fits");
        f[0..6].copy_from_slice(&LB_MAC.0);
        f[21] = 2;
        assert_eq!(p.process(0, &mut f, 0), Action::Consumed);
    }
    p
}

/// A 64-byte UDP frame (the classic small-packet load) of flow `n`.
fn udp_frame(n: u32) -> Vec<u8> {
    let client = Ipv4Addr::from(0x6400_0000 + n / 60000);
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 10], LB_MAC.0)
        .ipv4(client.octets(), VIP.octets(), 64)
        .udp(1024 + (n % 60000) as u16, 53)
        .write(&mut f, &[0u8; 18])
        .expect("builds");
    f
}

fn tcp_frame(n: u32, syn: bool) -> Vec<u8> {
    let client = Ipv4Addr::from(0x6400_0000 + n / 60000);
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 10], LB_MAC.0).ipv4(client.octets(), VIP.octets(), 64);
    let b = b.tcp(1024 + (n % 60000) as u16, 80, 1, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut f = Vec::new();
    b.write(&mut f, &[]).expect("builds");
    f
}

/// Established: FLOWS open UDP connections, then their frames round robin.
fn established(packets: u64) -> u64 {
    let mut p = pipeline(1 << 20);
    let mut frames: Vec<Vec<u8>> = (0..FLOWS as u32).map(udp_frame).collect();
    for f in &mut frames {
        assert!(matches!(p.process(0, f, 1), Action::Transmit { .. }));
    }
    let mut sent = 0;
    for k in 0..packets {
        let f = &mut frames[(k as usize) % FLOWS];
        // DR rewrote the MACs last time: a received frame is addressed to us.
        f[0..6].copy_from_slice(&LB_MAC.0);
        if let Action::Transmit { .. } = p.process(0, f, 2 + k) {
            sent += 1;
        }
    }
    sent
}

/// Room in front of each frame (TUN's outer header goes there).
const HEADROOM: usize = 64;

/// Established in `mode`: FLOWS open UDP connections, then their frames
/// round robin, client to server. NAT, FullNAT and TUN rewrite more than
/// the MACs, so each frame is restored from its pristine copy first (one
/// 124-byte copy per packet, the same for every mode).
fn established_in(mode: ForwardingMode, packets: u64) -> u64 {
    Restoring::new(mode, FLOWS, false).run(0, packets)
}

/// As [`established_in`], the frames' IPv4 header checksums checked by
/// the port (as on a NIC with receive checksum offload).
fn established_checked(mode: ForwardingMode, packets: u64) -> u64 {
    let mut r = Restoring::new(mode, FLOWS, false);
    r.ip_checked = true;
    r.run(0, packets)
}

/// As [`established_in`] for TCP: FLOWS connections opened by a SYN each
/// and established by the client's ACK, then ACKs round robin (TCP's
/// state machine runs on every packet; UDP's flows have none).
fn established_tcp(mode: ForwardingMode, packets: u64) -> u64 {
    let mut r = Restoring::new(mode, 0, false);
    r.open_tcp(FLOWS);
    r.run(0, packets)
}

/// As [`established_in`] in the other direction: the real servers'
/// replies to FLOWS open NAT or FullNAT connections (SNAT back to the
/// client), round robin.
fn established_replies(mode: ForwardingMode, packets: u64) -> u64 {
    let mut r = Restoring::new(mode, FLOWS, false);
    r.turn_into_replies();
    r.run(0, packets)
}

/// Flows of the big-table runs: as many as `bench/throughput.py` sends,
/// past the worker's prefetch threshold (16,384 connections).
const BIG_FLOWS: usize = 65_536;

/// As [`established_in`] with BIG_FLOWS connections, each burst first
/// prefetched in the worker's two stages (what rvsd runs per packet in
/// the port benchmark, without the port).
fn established_big(mode: ForwardingMode, packets: u64) -> u64 {
    Restoring::new(mode, BIG_FLOWS, true).run(0, packets)
}

/// The harness of [`established_in`] and [`established_big`]: a pipeline
/// in one mode with a number of open connections. Frames are restored from their pristine copies a
/// burst at a time, then the burst runs through the pipeline: as in the
/// worker, whose rx burst has copied every frame before the first is
/// processed (restoring each just before it runs would have the pipeline
/// read what the copy is still storing, a stall the worker never has).
struct Restoring {
    p: Pipeline,
    pristine: Vec<Vec<u8>>,
    bufs: Vec<Vec<u8>>,
    /// Prefetch each burst's connections first, as the worker does when
    /// its table is big.
    prefetch: bool,
    /// Hand the frames over as ones whose IPv4 header checksum the port
    /// checked (receive checksum offload).
    ip_checked: bool,
}

impl Restoring {
    /// `flows` open connections in `mode`, `prefetch`ing bursts or not.
    fn new(mode: ForwardingMode, flows: usize, prefetch: bool) -> Self {
        let pristine = (0..flows as u32)
            .map(|n| {
                let mut b = vec![0u8; HEADROOM];
                b.extend(udp_frame(n));
                b
            })
            .collect();
        let mut r = Restoring { p: pipeline_in(mode, 1 << 20), pristine, bufs: vec![vec![0u8; HEADROOM + 128]; BURST], prefetch, ip_checked: false };
        for first in (0..flows as u64).step_by(BURST) {
            assert_eq!(r.burst(first, BURST, 1), BURST as u64, "every flow opens");
        }
        r
    }

    /// Opens `flows` TCP connections (SYN, then the handshake's ACK) and
    /// makes their ACKs the frames to run.
    fn open_tcp(&mut self, flows: usize) {
        let with_headroom = |f: Vec<u8>| [vec![0u8; HEADROOM], f].concat();
        for syn in [true, false] {
            self.pristine = (0..flows as u32).map(|n| with_headroom(tcp_frame(n, syn))).collect();
            for first in (0..flows as u64).step_by(BURST) {
                assert_eq!(self.burst(first, BURST, 1), BURST as u64, "every flow opens");
            }
        }
    }

    /// Replaces each flow's frame by the reply a real server sends to
    /// what the pipeline forwarded of it (addresses, ports and MACs
    /// swapped: from the server to the address the request came from).
    fn turn_into_replies(&mut self) {
        for n in 0..self.pristine.len() {
            self.restore(n as u64, 1);
            // A UDP request keeps its place and length (no TOA, no tunnel).
            let frame = &mut self.bufs[0][HEADROOM..self.pristine[n].len()];
            assert!(matches!(self.p.process(0, frame, 2), Action::Transmit { .. }), "every flow forwards");
            let sent = etherparse::SlicedPacket::from_ethernet(frame).expect("the pipeline sends what parses");
            let (Some(etherparse::LinkSlice::Ethernet2(eth)), Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(udp))) =
                (sent.link, sent.net, sent.transport)
            else {
                panic!("a UDP/IPv4 frame was sent");
            };
            let mut reply = vec![0u8; HEADROOM];
            etherparse::PacketBuilder::ethernet2(eth.destination(), LB_MAC.0)
                .ipv4(ip.header().destination(), ip.header().source(), 64)
                .udp(udp.destination_port(), udp.source_port())
                .write(&mut reply, &[0u8; 18])
                .expect("builds");
            self.pristine[n] = reply;
        }
    }

    /// Runs `packets` frames, from flow `first` on (round robin), a
    /// burst at a time; returns how many are to be sent.
    fn run(&mut self, first: u64, packets: u64) -> u64 {
        let mut sent = 0;
        for k in (first..first + packets).step_by(BURST) {
            sent += self.burst(k, (first + packets - k).min(BURST as u64) as usize, 2 + k);
        }
        sent
    }

    /// Restores the frames of flows `first..first + n` (round robin,
    /// `n` at most BURST), then runs them through the pipeline at `now`;
    /// returns how many are to be sent.
    #[inline]
    fn burst(&mut self, first: u64, n: usize, now: u64) -> u64 {
        self.restore(first, n);
        let mut hints = [Hint::NONE; BURST];
        if self.prefetch {
            prefetch_burst(&self.p, &self.bufs[..n], &mut hints);
        }
        let mut sent = 0;
        let flows = self.pristine.len();
        for ((buf, k), hint) in self.bufs[..n].iter_mut().zip(first..).zip(hints) {
            let (mut head, mut len) = (HEADROOM, self.pristine[(k as usize) % flows].len() - HEADROOM);
            sent += u64::from(matches!(
                self.p.process_hinted(0, buf, &mut head, &mut len, now, Received { hint, ip_checksum_good: self.ip_checked }),
                Action::Transmit { .. }
            ));
        }
        sent
    }

    /// The harness's own work for a burst: the copies, nothing else.
    #[inline]
    fn restore(&mut self, first: u64, n: usize) {
        let flows = self.pristine.len();
        for (buf, k) in self.bufs[..n].iter_mut().zip(first..) {
            let f = &self.pristine[(k as usize) % flows];
            buf[..f.len()].copy_from_slice(f);
        }
    }
}

/// The worker's two prefetch stages over a burst, leaving each frame's
/// hint in `hints` (not inlined, so that `bench/pipeline.sh` counts them
/// with the pipeline).
#[inline(never)]
fn prefetch_burst(p: &Pipeline, bufs: &[Vec<u8>], hints: &mut [Hint; BURST]) {
    let mut hashes = [TupleHash::default(); BURST];
    for (hash, b) in hashes.iter_mut().zip(bufs) {
        *hash = p.prefetch_index(&b[HEADROOM..]);
    }
    for (hint, &hash) in hints.iter_mut().zip(&hashes[..bufs.len()]) {
        *hint = p.prefetch_entry(hash);
    }
}

/// New: a TCP SYN of a never-seen flow each time. One frame is re-used:
/// its source port and address change per packet and the IP checksum is
/// patched incrementally (a few instructions of harness per packet).
fn new_connections(packets: u64) -> u64 {
    open_connections(&mut pipeline(packets as usize + 16), packets)
}

/// `packets` SYNs of new connections (each from another client port)
/// through `p`; returns how many were forwarded.
fn open_connections(p: &mut Pipeline, packets: u64) -> u64 {
    let mut f = tcp_frame(0, true);
    let mut sent = 0;
    for k in 0..packets {
        let (addr, port) = (0x6400_0000u32 + (k >> 16) as u32, k as u16);
        let old = u32::from_be_bytes([f[26], f[27], f[28], f[29]]);
        let check = proto::checksum::update32(u16::from_be_bytes([f[24], f[25]]), old, addr);
        f[24..26].copy_from_slice(&check.to_be_bytes());
        f[26..30].copy_from_slice(&addr.to_be_bytes());
        f[34..36].copy_from_slice(&port.to_be_bytes());
        f[0..6].copy_from_slice(&LB_MAC.0);
        if let Action::Transmit { .. } = p.process(0, &mut f, 1 + k) {
            sent += 1;
        }
    }
    sent
}

fn time() {
    let mut p = pipeline(1 << 20);
    let mut frames: Vec<Vec<u8>> = (0..FLOWS as u32).map(udp_frame).collect();
    for f in &mut frames {
        p.process(0, f, 1);
    }
    let mut k = 0usize;
    let mut forwarded = 0u64;
    let ns = median_ns_per_op(7, 2_000_000, |n| {
        for _ in 0..n {
            let f = &mut frames[k % FLOWS];
            k += 1;
            // DR rewrote the MACs last time: a received frame is addressed to us.
            f[0..6].copy_from_slice(&LB_MAC.0);
            if let Action::Transmit { .. } = std::hint::black_box(p.process(0, f, 2)) {
                forwarded += 1;
            }
        }
    });
    assert_eq!(forwarded, 7 * 2_000_000, "every timed packet must be forwarded");
    println!("established DR flow (64-byte UDP, {FLOWS} flows): {ns:.1} ns/packet (median of 7 x 2M)");
    // Each mode with its frames restored a burst at a time (what
    // `bench/pipeline.sh` counts as established-<mode>); the restore
    // alone is timed too, so the pipeline's share is the difference.
    // With many flows the pristine copies are read from further away.
    let copy_ns = [FLOWS, BIG_FLOWS].map(|flows| {
        let mut copy_only = Restoring::new(ForwardingMode::DirectRoute, flows, false);
        let mut k = 0;
        let ns = median_ns_per_op(7, 2_000_000, |n| {
            for _ in 0..n as usize / BURST {
                copy_only.restore(k, BURST);
                std::hint::black_box(&mut copy_only.bufs);
                k += BURST as u64;
            }
        });
        println!("restoring frames from their pristine copies (harness only), {flows} flows: {ns:.1} ns/packet (median of 7 x 2M)");
        ns
    });
    for (name, mode) in [("DR", ForwardingMode::DirectRoute), ("NAT", ForwardingMode::Nat), ("FullNAT", ForwardingMode::FullNat), ("TUN", ForwardingMode::Tun)]
    {
        for (flows, prefetch, copy_ns) in [(FLOWS, false, copy_ns[0]), (BIG_FLOWS, true, copy_ns[1])] {
            let mut bench = Restoring::new(mode, flows, prefetch);
            let (mut k, mut sent) = (0u64, 0u64);
            let ns = median_ns_per_op(7, 2_000_000, |n| {
                sent += bench.run(k, n);
                k += n;
            });
            assert_eq!(sent, k, "every timed packet must be forwarded");
            let how = if prefetch { ", bursts prefetched" } else { "" };
            println!(
                "established {name} flow, {flows} flows{how}, client to server, frames restored a burst at a time: {ns:.1} ns/packet, {:.1} without the restore (median of 7 x 2M)",
                ns - copy_ns
            );
        }
    }
    // A fresh table each run, made before the clock starts: what is timed
    // is the connections, not making the table.
    let ns = median_ns_per_op_after(
        5,
        200_000,
        || pipeline(200_016),
        |p, n| {
            std::hint::black_box(open_connections(p, n));
        },
    );
    println!("new TCP connection (SYN -> schedule wlc -> create), incl. frame building: {ns:.1} ns/packet (median of 5 x 200k, the table made beforehand)");
}

/// Lookups in bursts of this many (the worker's rx burst).
const BURST: usize = 32;

/// `sizes`: the table sizes to measure (all four by default).
fn lookup(sizes: &[usize]) {
    // Three kinds of traffic: a hot set of 1,024 flows (about as many as
    // the smallest table has connections: the same working set at every
    // size, so only the table's size changes), one of 4,096 (four times
    // that), and lookups spread uniformly over every connection.
    println!("| connections in the table | ns per hit, 1,024 recurring flows | 4,096 recurring flows | uniform over all | 1,024 recurring, bursts of {BURST} prefetched | 4,096 recurring, bursts | uniform, bursts | table bytes per connection |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        // Memory from before the table exists: its index is written when
        // it is made, the slab as connections come.
        let rss0 = rss_bytes();
        let mut t = ConnTable::new(n, Timeouts::default());
        let key = |i: u64| FlowKey { proto: 17, src: Ipv4Addr::from(0x6400_0000 + (i >> 16) as u32), dst: VIP, sport: i as u16, dport: 53 };
        for i in 0..n as u64 {
            let to = Binding { service: 0, dest: 0, real: VIP, real_port: 53, peer_mac: LB_MAC, peer_port: 0, local: None, nat: Default::default() };
            t.insert(key(i), None, L4Proto::Udp, 0, to, 0).expect("capacity");
        }
        let per_conn = (rss_bytes().saturating_sub(rss0)) as f64 / n as f64;
        let mut rng = Rng(42);
        // A hot set: `set` distinct connections (every one, in turn, in a
        // table with fewer), in random order.
        let mut hot_set = |set: usize| -> Vec<FlowKey> {
            let mut picked = std::collections::HashSet::new();
            let mut keys: Vec<FlowKey> = (0..set)
                .map(|i| if set <= n { std::iter::repeat_with(|| rng.next_u64() % n as u64).find(|&c| picked.insert(c)).unwrap_or(0) } else { (i % n) as u64 })
                .map(key)
                .collect();
            for i in (1..keys.len()).rev() {
                keys.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            keys
        };
        let (hot, warm) = (hot_set(1024), hot_set(4096));
        let uniform: Vec<FlowKey> = (0..1 << 20).map(|_| key(rng.next_u64() % n as u64)).collect();
        // One lookup at a time, each waiting for its own cache misses.
        let single = |t: &mut ConnTable, keys: &[FlowKey]| {
            let mut k = 0;
            median_ns_per_op(7, 1_000_000, |iters| {
                for _ in 0..iters {
                    let r = t.lookup(&keys[k & (keys.len() - 1)], L4Proto::Udp, 0, 1);
                    k += 1;
                    assert!(matches!(r, Lookup::Hit { .. }));
                }
            })
        };
        // As the worker does with a large table: for a burst, start
        // loading every key's index bucket, then every entry those name,
        // then look them up, each with the entry its bucket named as the
        // hint (the misses overlap instead of queueing).
        let burst = |t: &mut ConnTable, keys: &[FlowKey]| {
            let mut k = 0;
            median_ns_per_op(7, 1_000_000, |iters| {
                for _ in 0..iters as usize / BURST {
                    let b = &keys[k & (keys.len() - 1)..][..BURST];
                    k += BURST;
                    let mut hashes = [TupleHash::default(); BURST];
                    for (hash, key) in hashes.iter_mut().zip(b) {
                        *hash = t.prefetch_index(key.words());
                    }
                    let hints = hashes.map(|hash| t.prefetch_entry(hash));
                    for (key, hint) in b.iter().zip(hints) {
                        assert!(matches!(t.lookup_hinted(key.words(), hint, L4Proto::Udp, 0, 1), Lookup::Hit { .. }));
                    }
                }
            })
        };
        let (h1, w1, u1) = (single(&mut t, &hot), single(&mut t, &warm), single(&mut t, &uniform));
        let (h2, w2, u2) = (burst(&mut t, &hot), burst(&mut t, &warm), burst(&mut t, &uniform));
        println!("| {n} | {h1:.1} | {w1:.1} | {u1:.1} | {h2:.1} | {w2:.1} | {u2:.1} | {per_conn:.0} |");
    }
}

/// Resident set size from /proc/self/statm.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("time") | None => time(),
        Some("lookup") => {
            let sizes: Vec<usize> = args[2..].iter().filter_map(|a| a.parse().ok()).collect();
            lookup(if sizes.is_empty() { &[1_000, 100_000, 1_000_000, 10_000_000] } else { &sizes })
        }
        Some("count") => {
            let mode = args.get(2).map(String::as_str).unwrap_or("established");
            let n: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
            let sent = match mode {
                "established" => established(n),
                "established-dr" => established_in(ForwardingMode::DirectRoute, n),
                "established-nat" => established_in(ForwardingMode::Nat, n),
                "established-fullnat" => established_in(ForwardingMode::FullNat, n),
                "established-tun" => established_in(ForwardingMode::Tun, n),
                "established-dr-checked" => established_checked(ForwardingMode::DirectRoute, n),
                "established-tun-checked" => established_checked(ForwardingMode::Tun, n),
                "established-dr-tcp" => established_tcp(ForwardingMode::DirectRoute, n),
                "established-nat-tcp" => established_tcp(ForwardingMode::Nat, n),
                "established-fullnat-tcp" => established_tcp(ForwardingMode::FullNat, n),
                "established-tun-tcp" => established_tcp(ForwardingMode::Tun, n),
                "established-nat-reply" => established_replies(ForwardingMode::Nat, n),
                "established-fullnat-reply" => established_replies(ForwardingMode::FullNat, n),
                "established-dr-big" => established_big(ForwardingMode::DirectRoute, n),
                "established-nat-big" => established_big(ForwardingMode::Nat, n),
                "established-fullnat-big" => established_big(ForwardingMode::FullNat, n),
                "established-tun-big" => established_big(ForwardingMode::Tun, n),
                "new" => new_connections(n),
                other => {
                    eprintln!("unknown mode {other}");
                    std::process::exit(2);
                }
            };
            assert_eq!(sent, n, "every packet must be forwarded");
            println!("{mode}: forwarded {sent}");
        }
        Some(other) => {
            eprintln!("usage: pipeline_bench [time | lookup | count established|new PACKETS] (got {other})");
            std::process::exit(2);
        }
    }
}
