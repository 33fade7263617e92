//! The port-throughput benchmark's load generator (`bench/throughput.py`):
//! 64-byte UDP frames of many flows, sent on one DPDK port as fast as one
//! lcore can, through the same `dataplane::dpdk` layer rvsd uses.
//!
//!   loadgen [OPTIONS] -- EAL-ARGS...
//!     --device NAME    the DPDK device to send on (default net_memif0)
//!     --dst-mac MAC    where frames go: the device under test (required)
//!     --dst IP:PORT    the destination (default 198.18.0.100:9)
//!     --flows N        distinct flows, client address and port varying
//!                      (default 65536)
//!     --order ORDER    `in-turn` (default): flow 0, 1, ... N-1, 0, ...;
//!                      `random`: each frame's flow drawn at random, so
//!                      the device's table is read in no order it could
//!                      have laid out (in turn, every pass repeats the
//!                      order the connections were created in)
//!     --seconds S      stop after S seconds of sending, counted from when
//!                      the link is up (default: at SIGINT/SIGTERM)
//!     --linger S       then keep the port open S seconds, sending nothing,
//!                      before closing it (default 0): a memif peer that
//!                      stops polling in that time never polls across the
//!                      disconnect, where DPDK 22.11's memif driver can read
//!                      the rings the closing side has just unmapped
//!
//! Once a second it prints `loadgen: tx_pps=N tx_total=N tx_refused=N`
//! (refused: frames the port did not take, freed unsent).

use dataplane::dpdk::{Burst, Eal, Mbuf, Mempool, Port, MAX_BURST};
use proto::MacAddr;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frame length without the FCS, as testpmd's txonly sends by default.
const FRAME_LEN: usize = 64;
const BURST: usize = 32;
/// The clients' first address; flow k is client (k / PORTS, k % PORTS).
const CLIENT_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 16, 0);
const PORTS: u32 = 60_000;
const FIRST_PORT: u16 = 1024;

struct Options {
    device: Option<String>,
    dst_mac: MacAddr,
    dst: (Ipv4Addr, u16),
    flows: u32,
    random: bool,
    seconds: Option<u64>,
    linger: u64,
    eal: Vec<String>,
}

fn parse_mac(s: &str) -> Option<MacAddr> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>().ok()?;
    Some(MacAddr(parts.try_into().ok()?))
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let split = args.iter().position(|a| a == "--").ok_or("EAL arguments go after `--`")?;
    let (ours, eal) = (&args[..split], &args[split + 1..]);
    let mut o = Options {
        device: None,
        dst_mac: MacAddr::ZERO,
        dst: (Ipv4Addr::new(198, 18, 0, 100), 9),
        flows: 65_536,
        random: false,
        seconds: None,
        linger: 0,
        eal: eal.to_vec(),
    };
    let mut mac_given = false;
    let mut it = ours.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--device" => o.device = Some(value.clone()),
            "--dst-mac" => {
                o.dst_mac = parse_mac(value).ok_or_else(bad)?;
                mac_given = true;
            }
            "--dst" => {
                let (ip, port) = value.rsplit_once(':').ok_or_else(bad)?;
                o.dst = (ip.parse().map_err(|_| bad())?, port.parse().map_err(|_| bad())?);
            }
            "--flows" => o.flows = value.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?,
            "--order" => {
                o.random = match value.as_str() {
                    "in-turn" => false,
                    "random" => true,
                    _ => return Err(bad()),
                }
            }
            "--seconds" => o.seconds = Some(value.parse().map_err(|_| bad())?),
            "--linger" => o.linger = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !mac_given {
        return Err("--dst-mac is required".into());
    }
    Ok(o)
}

/// Flow `k`'s client address and port.
fn client(k: u32) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from(u32::from(CLIENT_BASE) + k / PORTS), FIRST_PORT + (k % PORTS) as u16)
}

/// A frame template and what a flow changes in it: the client address
/// (with the IPv4 checksum) and port. No UDP checksum (0: none, allowed
/// over IPv4), so only the IPv4 header's changes with the flow.
struct Frames {
    template: [u8; FRAME_LEN],
    /// One's complement sum of the IPv4 header without the client address.
    partial_sum: u32,
}

impl Frames {
    fn new(src_mac: MacAddr, dst_mac: MacAddr, dst: (Ipv4Addr, u16)) -> Self {
        let mut t = [0u8; FRAME_LEN];
        t[..6].copy_from_slice(&dst_mac.0);
        t[6..12].copy_from_slice(&src_mac.0);
        t[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (FRAME_LEN - 14) as u16;
        let ip = &mut t[14..34];
        ip[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[16..20].copy_from_slice(&dst.0.octets());
        let udp = &mut t[34..42];
        udp[2..4].copy_from_slice(&dst.1.to_be_bytes());
        udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        let partial_sum = t[14..34].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        Frames { template: t, partial_sum }
    }

    /// Writes flow `k`'s frame into `out`.
    #[inline]
    fn write(&self, out: &mut [u8; FRAME_LEN], k: u32) {
        let (addr, port) = client(k);
        let a = u32::from(addr);
        let mut sum = self.partial_sum + (a >> 16) + (a & 0xffff);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        *out = self.template;
        out[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        out[26..30].copy_from_slice(&addr.octets());
        out[34..36].copy_from_slice(&port.to_be_bytes());
    }
}

/// How long to wait for the link before sending.
const LINK_WAIT: Duration = Duration::from_secs(120);

fn run(o: Options) -> Result<(), String> {
    let eal = Eal::init(&o.eal).map_err(|e| e.to_string())?;
    let pool = Mempool::new(&eal, "loadgen", 8191, 256).map_err(|e| e.to_string())?;
    let mut port = Port::by_name(&eal, o.device.as_deref().unwrap_or("net_memif0")).map_err(|e| e.to_string())?;
    port.start(1, 1024, 1024, &pool).map_err(|e| e.to_string())?;
    let frames = Frames::new(port.mac().map_err(|e| e.to_string())?, o.dst_mac, o.dst);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    // The clock starts once the link is up: a memif peer slow to answer
    // the connection (rvsd under callgrind, where its control thread waits
    // on the polling worker) would otherwise use up a timed run.
    let waiting = Instant::now();
    while !port.link().up && !stop.load(Relaxed) {
        if waiting.elapsed() >= LINK_WAIT {
            return Err(format!("the link did not come up within {} s", LINK_WAIT.as_secs()));
        }
        // Often: the receive below should come before the other side's
        // first frames (see there).
        std::thread::sleep(Duration::from_millis(1));
    }
    // One receive posts the buffers of the ring toward us (a memif server
    // sends only into buffers its client has handed it by receiving):
    // what the device under test sends us, its gratuitous ARP once the
    // link is up, is then taken and dropped here, not refused and counted
    // as a drop there. Nothing else is ever read. (A race: a memif
    // server's link is up a message before its client's, and what it
    // sends in between is refused.)
    let mut received = Burst::new();
    port.rx(0, &mut received, MAX_BURST);
    drop(received);
    let start = Instant::now();
    let (mut next_report, mut last_total) = (start + Duration::from_secs(1), 0u64);
    let (mut total, mut refused, mut k) = (0u64, 0u64, 0u32);
    // xorshift64: a few instructions a frame.
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut burst = Burst::new();
    while !stop.load(Relaxed) {
        for _ in 0..BURST {
            let Some(mut m) = Mbuf::alloc(&pool) else { break };
            if !m.set_len(FRAME_LEN) {
                return Err("mbufs too small for a frame".into());
            }
            if let Some(out) = m.data_mut().first_chunk_mut::<FRAME_LEN>() {
                frames.write(out, k);
            }
            k = if o.random {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // The high half of rng * flows: uniform in 0..flows, no division.
                ((u128::from(rng) * u128::from(o.flows)) >> 64) as u32
            } else if k + 1 == o.flows {
                0
            } else {
                k + 1
            };
            if burst.push(m).is_err() {
                break;
            }
        }
        let (sent, unsent) = port.tx(0, &mut burst);
        total += sent as u64;
        refused += unsent as u64;
        let now = Instant::now();
        if now >= next_report {
            println!("loadgen: tx_pps={} tx_total={total} tx_refused={refused}", total - last_total);
            last_total = total;
            next_report += Duration::from_secs(1);
            if o.seconds.is_some_and(|s| now.duration_since(start) >= Duration::from_secs(s)) {
                break;
            }
        }
    }
    println!("loadgen: done tx_total={total} tx_refused={refused}");
    let quiet_until = Instant::now() + Duration::from_secs(o.linger);
    while Instant::now() < quiet_until && !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            eprintln!(
                "usage: loadgen --dst-mac MAC [--device NAME] [--dst IP:PORT] [--flows N] [--order in-turn|random] [--seconds S] [--linger S] -- EAL-ARGS..."
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame the generator writes is a valid UDP/IPv4 frame (checked
    /// by etherparse, header checksum included) of its flow.
    #[test]
    fn frames_are_valid_and_carry_their_flow() {
        let f = Frames::new(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]), (Ipv4Addr::new(198, 18, 0, 100), 9));
        for k in [0, 1, 59_999, 60_000, 123_456, 4_000_000] {
            let mut out = [0u8; FRAME_LEN];
            f.write(&mut out, k);
            let p = etherparse::SlicedPacket::from_ethernet(&out).expect("parses");
            let Some(etherparse::InternetSlice::Ipv4(ip)) = p.net else { panic!("IPv4") };
            let h = ip.header();
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum(), "flow {k}: header checksum");
            assert_eq!(h.source_addr(), client(k).0);
            assert_eq!(h.destination_addr(), Ipv4Addr::new(198, 18, 0, 100));
            let Some(etherparse::TransportSlice::Udp(u)) = p.transport else { panic!("UDP") };
            assert_eq!((u.source_port(), u.destination_port()), (client(k).1, 9));
        }
        // Distinct flows, distinct tuples.
        assert_ne!(client(0), client(PORTS));
        assert_ne!(client(1), client(PORTS + 1));
    }

    #[test]
    fn options_are_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02 -- -l 0")).is_ok());
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02")).is_err(), "no EAL separator");
        assert!(parse_args(&args("-- -l 0")).is_err(), "no MAC");
        assert!(parse_args(&args("--dst-mac 02:00:00 -- -l 0")).is_err(), "short MAC");
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02 --flows 0 --")).is_err(), "no flows");
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02 --order sideways --")).is_err(), "no such order");
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02 --order random --")).expect("valid").random);
        assert!(!parse_args(&args("--dst-mac 02:00:00:00:00:02 --order in-turn --")).expect("valid").random);
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02 --dst 1.2.3.4 --")).is_err(), "no port");
        assert!(parse_args(&args("--dst-mac 02:00:00:00:00:02 --linger soon --")).is_err(), "linger takes seconds");
        let o = parse_args(&args("--dst-mac 02:00:00:00:00:02 --dst 10.0.0.1:53 --flows 7 --seconds 3 --linger 2 -- -l 0 --no-pci")).expect("valid");
        assert_eq!((o.dst, o.flows, o.seconds, o.linger, o.eal.len()), ((Ipv4Addr::new(10, 0, 0, 1), 53), 7, Some(3), 2, 3));
    }
}
