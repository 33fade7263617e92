//! The leanest forwarder that still does a load balancer's per-packet job
//! in DR mode, on the same ports as the port-throughput benchmark
//! (`bench/throughput.py`): find the flow's entry in a table by its tuple
//! (adding it on a flow's first packet, real servers taken in turn) and
//! write the real server's Ethernet header. Nothing else: no checksum
//! check, no timers, no TCP state, no per-server counters, no drops
//! counted by reason. It is not a product: it measures how close to
//! testpmd's io-forward ceiling any L4 load balancer with a per-flow
//! lookup can come on these ports, so RVS's ratio has a yardstick (the
//! ports' own cost against the least a lookup adds).
//!
//! The table is as favourable as it gets: open addressing, 16-byte
//! entries (the tuple and the real server), at most half full, each
//! burst's entries prefetched before it is processed, so a lookup reads
//! one cache line.
//!
//!   leanfwd [--rx NAME] [--tx NAME] [--flows N] [--burst B] [--seconds S] -- EAL-ARGS...
//!     receives on device `--rx` (default net_memif0, the load generator's
//!     memif) and sends on `--tx` (default net_null0); room for N flows
//!     (default 65536); receives up to B frames at a time (default 32,
//!     at most 64); with `--seconds`, it stops S seconds after the
//!     first frame came in (or after a minute, if none came by then).
//!
//! Once a second it prints `leanfwd: fwd_pps=N fwd_total=N dropped=N`;
//! at the end `leanfwd: done fwd_total=N dropped=N flows=N polls=N
//! empty_polls=N` (its receive polls, and those that found no frame: a
//! forwarder that finds its ring empty most of the time is not what sets
//! the rate).

use dataplane::dpdk::{Burst, Eal, Mempool, Port, MAX_BURST};
use proto::MacAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames a receive takes at most, unless `--burst` says otherwise.
const DEFAULT_BURST: usize = 32;

/// With `--seconds`, how long to wait for a first frame before giving up
/// (under valgrind, a memif takes seconds to connect).
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(60);

/// The real servers' MACs (as the port benchmark's rvsd config has two).
const REALS: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 0, 0x11]), MacAddr([2, 0, 0, 0, 0, 0x12])];

/// One flow: its tuple (addresses, ports, protocol) and its real server
/// (`kind`: protocol << 16 | real server; `u32::MAX`: a free entry).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Entry {
    addrs: u64,
    ports: u32,
    kind: u32,
}

const FREE: Entry = Entry { addrs: 0, ports: 0, kind: u32::MAX };

/// Flows by tuple: open addressing with linear probing, at most half full.
struct FlowTable {
    entries: Vec<Entry>,
    mask: usize,
    /// 64 minus the bits of an entry's index: the hash's top bits pick it.
    shift: u32,
    len: usize,
    next_real: u32,
}

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Not IPv4 without options carrying TCP or UDP, or too short.
    NotPlain,
    /// A new flow, and the table holds as many as it was made for.
    Full,
}

impl FlowTable {
    fn new(flows: usize) -> Self {
        let n = (flows.max(1) * 2).next_power_of_two();
        FlowTable { entries: vec![FREE; n], mask: n - 1, shift: 64 - n.trailing_zeros(), len: 0, next_real: 0 }
    }

    /// Where the search for the tuple starts: Fibonacci hashing of both
    /// words, the product's top bits (every bit of the key reaches them;
    /// bits from the middle, as this first took, ignored the high bits
    /// of the client port: the generator's flows, which differ only
    /// there, piled up in long probe runs).
    #[inline(always)]
    fn home(&self, (addrs, ports, proto): Tuple) -> usize {
        ((addrs ^ (u64::from(ports) << 32 | u64::from(proto))).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Starts loading the entry a lookup of the tuple will read first.
    #[inline(always)]
    fn prefetch(&self, t: Tuple) {
        dataplane::prefetch::line(&self.entries[self.home(t)]);
    }

    /// The real server of the flow with this tuple; a new flow gets the next
    /// one in turn, unless the table is full.
    #[inline(always)]
    fn real_of(&mut self, t: Tuple) -> Result<u32, Refused> {
        let (addrs, ports, proto) = t;
        let mut i = self.home(t);
        loop {
            let e = &self.entries[i];
            if e.kind == u32::MAX {
                break;
            }
            if e.addrs == addrs && e.ports == ports && e.kind >> 16 == u32::from(proto) {
                return Ok(e.kind & 0xffff);
            }
            i = (i + 1) & self.mask;
        }
        // A free entry: the tuple is new. At most half full keeps probes short
        // and guarantees the search above meets a free entry.
        if self.len >= self.entries.len() / 2 {
            return Err(Refused::Full);
        }
        let real = self.next_real;
        self.next_real = (real + 1) % REALS.len() as u32;
        self.entries[i] = Entry { addrs, ports, kind: u32::from(proto) << 16 | real };
        self.len += 1;
        Ok(real)
    }
}

/// A flow's tuple as read from a frame: (addresses, ports, protocol).
type Tuple = (u64, u32, u8);

/// The tuple of an Ethernet frame carrying IPv4 without options and TCP or
/// UDP, read at fixed offsets.
#[inline(always)]
fn tuple(f: &[u8; 38]) -> Option<Tuple> {
    if f[12..14] != [0x08, 0x00] || f[14] != 0x45 || !(f[23] == 6 || f[23] == 17) {
        return None;
    }
    let addrs = u64::from_le_bytes([f[26], f[27], f[28], f[29], f[30], f[31], f[32], f[33]]);
    let ports = u32::from_le_bytes([f[34], f[35], f[36], f[37]]);
    Some((addrs, ports, f[23]))
}

/// Forwards one frame in place: the real server's MAC as destination, ours
/// as source.
#[inline(always)]
fn forward(table: &mut FlowTable, frame: &mut [u8], our_mac: MacAddr) -> Result<(), Refused> {
    let f: &mut [u8; 38] = frame.first_chunk_mut().ok_or(Refused::NotPlain)?;
    let real = table.real_of(tuple(f).ok_or(Refused::NotPlain)?)?;
    f[..6].copy_from_slice(&REALS[real as usize % REALS.len()].0);
    f[6..12].copy_from_slice(&our_mac.0);
    Ok(())
}

struct Options {
    rx: String,
    tx: String,
    flows: usize,
    /// Frames a receive takes at most.
    burst: usize,
    seconds: Option<u64>,
    eal: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let split = args.iter().position(|a| a == "--").ok_or("EAL arguments go after `--`")?;
    let (ours, eal) = (&args[..split], &args[split + 1..]);
    let mut o = Options { rx: "net_memif0".into(), tx: "net_null0".into(), flows: 65_536, burst: DEFAULT_BURST, seconds: None, eal: eal.to_vec() };
    let mut it = ours.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--rx" => o.rx = value.clone(),
            "--tx" => o.tx = value.clone(),
            "--flows" => o.flows = value.parse().ok().filter(|&n| n > 0 && n <= 1 << 26).ok_or_else(bad)?,
            "--burst" => o.burst = value.parse().ok().filter(|&n| (1..=MAX_BURST).contains(&n)).ok_or_else(bad)?,
            "--seconds" => o.seconds = Some(value.parse().map_err(|_| bad())?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn run(o: Options) -> Result<(), String> {
    let eal = Eal::init(&o.eal).map_err(|e| e.to_string())?;
    let pool = Mempool::new(&eal, "leanfwd", 16383, 256).map_err(|e| e.to_string())?;
    let mut ports = Vec::new();
    for name in [&o.rx, &o.tx] {
        let mut port = Port::by_name(&eal, name).map_err(|e| e.to_string())?;
        port.start(1, 1024, 1024, &pool).map_err(|e| e.to_string())?;
        ports.push(port);
    }
    let our_mac = ports[1].mac().map_err(|e| e.to_string())?;
    let table = FlowTable::new(o.flows);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    println!("leanfwd: running, {} -> {}", ports[0].name(), ports[1].name());
    // On the first worker lcore, as rvsd's worker and testpmd's forwarding
    // run (the main lcore shares a CPU with the generator in the benchmark).
    let (seconds, burst) = (o.seconds, o.burst);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let forwarding = move || {
        forward_loop(&ports[0], &ports[1], table, our_mac, &stop, seconds, burst);
        let _ = done_tx.send(());
    };
    match eal.worker_lcores().first() {
        Some(&lcore) => {
            eal.launch(lcore, forwarding).map_err(|e| e.to_string())?;
            // Asleep until the lcore is done: EAL's wait spins, and the main
            // lcore shares its CPU with the load generator in the benchmark.
            let _ = done_rx.recv();
            eal.wait_all();
        }
        None => forwarding(),
    }
    drop(pool);
    Ok(())
}

/// Waits for the first frames, then forwards until `stop` (or `seconds`
/// after the first frame).
fn forward_loop(rx_port: &Port, tx_port: &Port, table: FlowTable, our_mac: MacAddr, stop: &AtomicBool, seconds: Option<u64>, burst: usize) {
    let mut rx = Burst::new();
    let start = Instant::now();
    while rx_port.rx(0, &mut rx, burst) == 0 {
        if stop.load(Relaxed) || (seconds.is_some() && start.elapsed() >= FIRST_FRAME_WAIT) {
            println!("leanfwd: done fwd_total=0 dropped=0 flows=0");
            return;
        }
    }
    forwarding(rx_port, tx_port, table, our_mac, stop, seconds, burst, rx);
}

/// The forwarding proper, from the first received burst `rx` on, reporting
/// once a second. Never inlined: `bench/worker_profile.py` counts the
/// instructions in here only (the idle polls before the load generator
/// connects are no part of forwarding).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn forwarding(rx_port: &Port, tx_port: &Port, mut table: FlowTable, our_mac: MacAddr, stop: &AtomicBool, seconds: Option<u64>, burst: usize, mut rx: Burst) {
    let start = Instant::now();
    let (mut next_report, mut last_total) = (start + Duration::from_secs(1), 0u64);
    let (mut total, mut dropped) = (0u64, 0u64);
    let mut tx = Burst::new();
    let (mut polls, mut empty_polls) = (0u64, 0u64);
    loop {
        if rx.is_empty() {
            empty_polls += 1;
        } else {
            // Every entry of the burst on its way before the first lookup.
            rx.for_each_data(|f| {
                if let Some(t) = f.first_chunk().and_then(tuple) {
                    table.prefetch(t);
                }
            });
            for mut m in rx.drain() {
                match forward(&mut table, m.data_mut(), our_mac) {
                    // The burst has MAX_BURST slots, at least as many as rx gave.
                    Ok(()) => drop(tx.push(m)),
                    Err(_) => dropped += 1,
                }
            }
            let (sent, unsent) = tx_port.tx(0, &mut tx);
            total += sent as u64;
            dropped += unsent as u64;
        }
        // The clock once every 1,024 polls, not per burst.
        polls += 1;
        if polls.is_multiple_of(1024) {
            let now = Instant::now();
            if now >= next_report {
                println!("leanfwd: fwd_pps={} fwd_total={total} dropped={dropped}", total - last_total);
                last_total = total;
                next_report += Duration::from_secs(1);
                if seconds.is_some_and(|s| now.duration_since(start) >= Duration::from_secs(s)) {
                    break;
                }
            }
        }
        if stop.load(Relaxed) {
            break;
        }
        rx_port.rx(0, &mut rx, burst);
    }
    // Each pass took what the last one's receive (or, first, the caller's)
    // brought.
    println!("leanfwd: done fwd_total={total} dropped={dropped} flows={} polls={polls} empty_polls={empty_polls}", table.len);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leanfwd: {e}");
            eprintln!("usage: leanfwd [--rx NAME] [--tx NAME] [--flows N] [--burst B] [--seconds S] -- EAL-ARGS...");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn udp(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], OURS.0).ipv4(src, [198, 18, 0, 100], 64).udp(sport, 9).write(&mut out, &[0; 18]).expect("builds");
        out
    }

    #[test]
    fn flows_keep_their_real_server_and_new_ones_take_turns() {
        let mut t = FlowTable::new(1000);
        let reals: Vec<u32> = (0..1000u16).map(|p| t.real_of((0x0102_0304_0506_0708, u32::from(p), 17)).expect("room")).collect();
        assert_eq!(t.len, 1000);
        assert!(reals.iter().enumerate().all(|(i, &r)| r == i as u32 % 2), "in turn");
        for p in (0..1000u16).rev() {
            assert_eq!(t.real_of((0x0102_0304_0506_0708, u32::from(p), 17)), Ok(reals[usize::from(p)]), "flow {p} found again");
        }
        assert_eq!(t.len, 1000, "no flow added twice");
        // The same addresses and ports over TCP: another flow.
        assert_eq!(t.real_of((0x0102_0304_0506_0708, 0, 6)), Ok(0));
        assert_eq!(t.len, 1001);
    }

    /// The load generator's flows (one client address after another, each
    /// with up to 60,000 consecutive ports: `loadgen`'s `client`) spread
    /// like random ones: short probe runs at 1,024 flows and at 65,536.
    #[test]
    fn the_generators_flows_find_their_entries_in_a_probe_or_two() {
        for flows in [1024u32, 65_536] {
            let mut t = FlowTable::new(flows as usize);
            let tuple = |k: u32| {
                let (addr, port) = ((198u32 << 24 | 18 << 16 | 16 << 8) + k / 60_000, 1024 + (k % 60_000) as u16);
                let f = udp(addr.to_be_bytes(), port);
                tuple(f.first_chunk().expect("38 bytes")).expect("plain UDP")
            };
            for k in 0..flows {
                t.real_of(tuple(k)).expect("room");
            }
            // How far past its home each flow's entry lies.
            let displaced: Vec<usize> = (0..flows)
                .map(|k| {
                    let (addrs, ports, _) = tuple(k);
                    let home = t.home(tuple(k));
                    (0..t.entries.len()).find(|d| matches!(t.entries[(home + d) & t.mask], e if e.addrs == addrs && e.ports == ports)).expect("stored")
                })
                .collect();
            let mean = displaced.iter().sum::<usize>() as f64 / f64::from(flows);
            // Linear probing at half full: about 0.5 on average for random keys.
            assert!(mean < 1.0, "{flows} flows: {mean:.2} entries past home on average");
            assert!(displaced.iter().all(|&d| d < 64), "{flows} flows: a run of {:?}", displaced.iter().max());
        }
    }

    #[test]
    fn a_full_table_refuses_new_flows_and_keeps_serving_old_ones() {
        let mut t = FlowTable::new(4);
        let n = t.entries.len() / 2;
        for p in 0..n as u32 {
            assert!(t.real_of((7, p, 6)).is_ok());
        }
        assert_eq!(t.real_of((7, 1 << 20, 6)), Err(Refused::Full));
        assert_eq!(t.real_of((7, 0, 6)), Ok(0));
    }

    #[test]
    fn frames_get_the_real_servers_header_and_nothing_else_changes() {
        let mut t = FlowTable::new(16);
        for (k, sport) in [1000u16, 1001, 1000].into_iter().enumerate() {
            let before = udp([198, 18, 16, 1], sport);
            let mut f = before.clone();
            assert_eq!(forward(&mut t, &mut f, OURS), Ok(()));
            let want = REALS[if k == 1 { 1 } else { 0 }];
            assert_eq!(&f[..6], &want.0, "frame {k}: the flow's real server");
            assert_eq!(&f[6..12], &OURS.0);
            assert_eq!(f[12..], before[12..], "only the Ethernet addresses change");
            // Still a valid frame (etherparse as the oracle).
            etherparse::SlicedPacket::from_ethernet(&f).expect("parses");
        }
        assert_eq!(t.len, 2);
    }

    #[test]
    fn frames_that_are_not_plain_ipv4_tcp_or_udp_are_refused() {
        let mut t = FlowTable::new(16);
        let good = udp([10, 0, 0, 1], 5);
        let mut short = good[..37].to_vec();
        assert_eq!(forward(&mut t, &mut short, OURS), Err(Refused::NotPlain));
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(forward(&mut t, &mut arp, OURS), Err(Refused::NotPlain));
        let mut options = good.clone();
        options[14] = 0x46;
        assert_eq!(forward(&mut t, &mut options, OURS), Err(Refused::NotPlain));
        let mut icmp = good.clone();
        icmp[23] = 1;
        assert_eq!(forward(&mut t, &mut icmp, OURS), Err(Refused::NotPlain));
        assert_eq!(t.len, 0, "no flow from any of them");
    }

    #[test]
    fn options_are_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(parse_args(&args("-- -l 0")).is_ok());
        assert!(parse_args(&args("--flows 10")).is_err(), "no EAL separator");
        assert!(parse_args(&args("--flows 0 --")).is_err());
        assert!(parse_args(&args("--flows many --")).is_err());
        assert!(parse_args(&args("--speed 3 --")).is_err());
        let o = parse_args(&args("--flows 7 --seconds 3 -- -l 0 --no-pci")).expect("valid");
        assert_eq!((o.rx.as_str(), o.tx.as_str(), o.flows, o.seconds, o.eal.len()), ("net_memif0", "net_null0", 7, Some(3), 3));
        let o = parse_args(&args("--rx net_ring0 --tx net_ring1 --")).expect("valid");
        assert_eq!((o.rx.as_str(), o.tx.as_str(), o.burst), ("net_ring0", "net_ring1", DEFAULT_BURST));
        assert_eq!(parse_args(&args("--burst 64 --")).expect("valid").burst, 64);
        for bad in ["0", "65", "many"] {
            assert!(parse_args(&args(&format!("--burst {bad} --"))).is_err(), "burst {bad}: 1..=64 only");
        }
    }
}
