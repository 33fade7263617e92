//! Every forwarding mode's data path, over frames built from the input:
//! clients opening and continuing connections to DR, NAT, FullNAT and TUN
//! services (TCP and UDP, with IP and TCP options; one FullNAT service
//! with two local addresses, taken in turn), the real servers'
//! replies to what was forwarded to them, ICMP errors about it, pings,
//! ARP and raw bytes; each frame then made a fragment now and then,
//! corrupted, cut short or padded, with any room before and after it. Health flips, reloads (servers removed
//! or made quiescent, a service removed or turned from NAT to FullNAT),
//! links going down and up, and time passing between.
//!
//! Every frame gets a decision and none panics; and what goes out is well
//! formed whenever what came in was: a frame sent on carries a right IPv4
//! header checksum (outer and inner, for IPIP) and a total length within
//! the frame, a TCP, UDP or ICMP checksum that was right stays right, a
//! UDP checksum that was absent (0) stays absent and one present never
//! becomes 0; a frame handed to the kernel is unchanged; a NAT or FullNAT
//! server's TCP or UDP reply goes back to its client as the reverse of
//! what the client sent. Two worker
//! cores: a frame one hands to the other (the connection is the other's)
//! is processed there, and never handed on again. Gratuitous ARPs go out
//! from core 0 only, never on a down link, and on every interface whose
//! announcement is due (at start, after a reload, after its link came
//! back up) at the first chance its link is up.
#![no_main]

use dataplane::config::{ForwardingMode, Interface, L4Proto, RealServer, Service, Snapshot};
use dataplane::health::{Health, HealthBoard};
use dataplane::neighbor::SharedNeighbors;
use dataplane::pipeline::{Action, Pipeline, Received};
use libfuzzer_sys::fuzz_target;
use proto::checksum::{fold, pseudo_header_v4, sum};
use proto::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

const LB0: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]); // clients' side, port 0
const LB1: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]); // servers' side, port 1
const LB1_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// The second local address of the persistent FullNAT service.
const LIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// A VIP with ICMP services (pings to `VIP` are answered by the pipeline).
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 101);
const REALS: [(Ipv4Addr, MacAddr); 2] =
    [(Ipv4Addr::new(198, 18, 0, 11), MacAddr([2, 0, 0, 0, 0, 11])), (Ipv4Addr::new(198, 18, 0, 12), MacAddr([2, 0, 0, 0, 0, 12]))];
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// (protocol, VIP port, mode, persistent): one service each, on `VIP`.
const SERVICES: [(L4Proto, u16, ForwardingMode, bool); 9] = [
    (L4Proto::Tcp, 80, ForwardingMode::DirectRoute, false),
    (L4Proto::Tcp, 81, ForwardingMode::Nat, false),
    (L4Proto::Tcp, 82, ForwardingMode::FullNat, false),
    (L4Proto::Tcp, 83, ForwardingMode::Tun, false),
    (L4Proto::Udp, 53, ForwardingMode::DirectRoute, false),
    (L4Proto::Udp, 54, ForwardingMode::Nat, true),
    (L4Proto::Udp, 55, ForwardingMode::FullNat, false),
    (L4Proto::Udp, 56, ForwardingMode::Tun, false),
    (L4Proto::Tcp, 84, ForwardingMode::FullNat, true),
];

/// The configuration: every service of `SERVICES` and the ICMP one, as
/// `change` (0: none) alters it for a reload: bit 0 removes the second
/// server everywhere, bit 1 makes the first quiescent (weight 0), bit 2
/// removes a service and bit 3 turns another's NAT into FullNAT (both by
/// the high bits), bit 4 sets `expire_nodest_conn`.
fn snapshot(change: u8) -> Snapshot {
    let k = usize::from(change >> 5);
    let services = SERVICES
        .iter()
        .enumerate()
        .filter(|&(i, _)| change & 4 == 0 || i != k)
        .map(|(i, &(proto, port, mode, persistent))| {
            let mode = if change & 8 != 0 && i == k + 1 && mode == ForwardingMode::Nat { ForwardingMode::FullNat } else { mode };
            Service {
                proto,
                vip: VIP,
                port,
                scheduler: sched::SchedulerSpec::new(sched::SchedulerKind::Rr),
                persistence: persistent.then(|| sched::PersistenceConfig::new(300)),
                mode,
                local_addrs: match (mode, persistent) {
                    (ForwardingMode::FullNat, true) => vec![LIP, LIP2],
                    (ForwardingMode::FullNat, false) => vec![LIP],
                    _ => vec![],
                },
                reals: reals(change, matches!(mode, ForwardingMode::Nat | ForwardingMode::FullNat)),
            }
        })
        .chain([Service {
            proto: L4Proto::Icmp,
            vip: VIP2,
            port: 0,
            scheduler: sched::SchedulerSpec::new(sched::SchedulerKind::Rr),
            persistence: None,
            mode: ForwardingMode::FullNat,
            local_addrs: vec![LIP],
            reals: reals(change, false),
        }])
        .collect::<Vec<_>>();
    let interfaces = vec![
        Interface { port: 0, mac: LB0, addr: Ipv4Addr::new(198, 18, 1, 2), prefix_len: 24, mtu: 1500, kernel: true },
        Interface { port: 1, mac: LB1, addr: LB1_IP, prefix_len: 24, mtu: 1500, kernel: false },
    ];
    Snapshot { max_connections_per_core: 16, worker_cores: 2, expire_nodest_conn: change & 16 != 0, ..Snapshot::new(interfaces, services) }
}

/// A service's real servers as `change` (see [`snapshot`]) has them;
/// `translated` (NAT, FullNAT): the first on another port than the VIP's.
fn reals(change: u8, translated: bool) -> Vec<RealServer> {
    let mut reals: Vec<RealServer> = REALS.iter().map(|&(addr, _)| RealServer::new(addr, 1)).collect();
    reals[0].port = translated.then_some(8080);
    if change & 2 != 0 {
        reals[0].weight = 0;
    }
    if change & 1 != 0 {
        reals.truncate(1);
    }
    reals
}

/// Two worker cores and what they share, as rvsd has them.
struct Lab {
    cores: [Pipeline; 2],
    /// The health board the current snapshot's servers are read from.
    board: Arc<HealthBoard>,
    neighbors: Arc<SharedNeighbors>,
}

impl Lab {
    /// The pipelines of two worker cores over the unchanged snapshot, the
    /// real servers resolved.
    fn new() -> Lab {
        let (snapshot, board) = with_health(snapshot(0));
        let neighbors = Arc::new(SharedNeighbors::new(Pipeline::wanted_neighbors(&snapshot)));
        let core = |c: u32| {
            let mut p = Pipeline::with_neighbors(Arc::clone(&snapshot), Arc::default(), Arc::clone(&neighbors)).expect("valid snapshot").for_core(c);
            for (ip, mac) in REALS {
                let mut f = vec![0u8; 60];
                proto::arp::write_request(&mut f, mac, ip, LB1_IP).expect("room for ARP");
                f[0..6].copy_from_slice(&LB1.0);
                f[21] = 2; // a reply
                assert_eq!(p.process(1, &mut f, 0), Action::Consumed);
            }
            p
        };
        Lab { cores: [core(0), core(1)], board, neighbors }
    }

    /// Both cores reload to the snapshot `change` makes (as rvsd on
    /// SIGHUP: the neighbors carried over, a new health board).
    fn reload(&mut self, change: u8) {
        let (next, board) = with_health(snapshot(change));
        Pipeline::check(&next).expect("a valid snapshot");
        self.neighbors = Arc::new(Pipeline::neighbors_for_reload(&self.neighbors, &next));
        for p in &mut self.cores {
            p.apply(Arc::clone(&next), Arc::clone(&self.neighbors)).expect("applies");
        }
        self.board = board;
    }
}

/// `snapshot` reading its servers' health from a new board, all up.
fn with_health(snapshot: Snapshot) -> (Arc<Snapshot>, Arc<HealthBoard>) {
    let board = Arc::new(HealthBoard::all_up(&snapshot.services));
    (Arc::new(Snapshot { health: Health(Arc::clone(&board)), ..snapshot }), board)
}

/// The input, a byte at a time (zeros once it is used up).
struct Input<'a>(&'a [u8]);

impl Tuple {
    /// The tuple of a packet going the other way.
    fn reversed(self) -> Tuple {
        Tuple { src: self.dst, dst: self.src, proto: self.proto, sport: self.dport, dport: self.sport }
    }
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    /// Up to `max - 1` bytes, as many as the next byte says.
    fn some(&mut self, max: u8) -> Vec<u8> {
        let n = self.byte() % max;
        self.bytes(usize::from(n))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An IPv4 packet's addresses, protocol and ports (0 where none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tuple {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
}

/// An Ethernet frame with IPv4 (`ip_options` after a 20-byte header)
/// carrying `l4`, every checksum right; `l4`'s checksum field, if it has
/// one, is filled in.
fn ipv4_frame(src_mac: MacAddr, dst_mac: MacAddr, t: Tuple, ip_options: &[u8], mut l4: Vec<u8>) -> Vec<u8> {
    let hl = 20 + ip_options.len();
    let total = (hl + l4.len()) as u16;
    let l4_len = l4.len() as u16;
    let at = match t.proto {
        TCP if l4.len() >= 20 => Some(16),
        UDP if l4.len() >= 8 => Some(6),
        ICMP if l4.len() >= 4 => Some(2),
        _ => None,
    };
    if let Some(at) = at {
        l4[at..at + 2].fill(0);
        let pseudo = if t.proto == ICMP { 0 } else { pseudo_header_v4(t.src.octets(), t.dst.octets(), t.proto, l4_len) };
        let mut c = !fold(sum(&l4, pseudo));
        if t.proto == UDP && c == 0 {
            c = 0xffff;
        }
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut f = Vec::with_capacity(14 + usize::from(total));
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.push(0x40 | (hl / 4) as u8);
    f.push(0);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, t.proto, 0, 0]);
    f.extend_from_slice(&t.src.octets());
    f.extend_from_slice(&t.dst.octets());
    f.extend_from_slice(ip_options);
    let c = proto::checksum::checksum(&f[14..14 + hl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&l4);
    f
}

/// A TCP segment (checksum left 0) with these flags, options (padded to
/// whole words) and payload; or a UDP datagram with this payload; or an
/// ICMP echo (a request if `flags` is even) with the identifier `t.sport`
/// and the sequence number `t.dport`.
fn l4(t: Tuple, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    if t.proto == ICMP {
        s.extend_from_slice(&[if flags & 1 == 0 { 8 } else { 0 }, 0, 0, 0]);
        s.extend_from_slice(&t.sport.to_be_bytes());
        s.extend_from_slice(&t.dport.to_be_bytes());
        s.extend_from_slice(payload);
        return s;
    }
    s.extend_from_slice(&t.sport.to_be_bytes());
    s.extend_from_slice(&t.dport.to_be_bytes());
    if t.proto == TCP {
        let words = options.len().div_ceil(4).min(10);
        s.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0x20, 0]);
        s.push(((5 + words) as u8) << 4);
        s.push(flags);
        s.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        let mut o = options[..options.len().min(40)].to_vec();
        o.resize(words * 4, 0);
        s.extend_from_slice(&o);
    } else {
        s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        s.extend_from_slice(&[0, 0]);
    }
    s.extend_from_slice(payload);
    s
}

/// The IPv4 packet after the Ethernet header, if the frame says IPv4.
fn ip_of(f: &[u8]) -> Option<&[u8]> {
    (f.get(12..14)? == [0x08, 0x00]).then(|| &f[14..])
}

/// The header length and total length of a well-formed IPv4 header at
/// the start of `ip` (version 4, lengths consistent and within `ip`, a
/// right checksum), else `None`.
fn header_ok(ip: &[u8]) -> Option<(usize, usize)> {
    let (&vi, _) = ip.split_first()?;
    let hl = usize::from(vi & 15) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let ok = vi >> 4 == 4 && hl >= 20 && hl <= total && total <= ip.len() && fold(sum(&ip[..hl], 0)) == 0xffff;
    ok.then_some((hl, total))
}

/// The transport checksum of a well-formed IPv4 packet `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4Sum {
    /// A TCP, UDP or ICMP checksum that is right.
    Right,
    /// A UDP datagram without one.
    Absent,
    /// Wrong, or not to be checked (a fragment, another protocol).
    Other,
}

fn l4_sum(ip: &[u8]) -> L4Sum {
    let Some((hl, total)) = header_ok(ip) else { return L4Sum::Other };
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let (proto, seg) = (ip[9], &ip[hl..total]);
    if fragment {
        return L4Sum::Other;
    }
    let pseudo = || pseudo_header_v4(ip[12..16].try_into().unwrap(), ip[16..20].try_into().unwrap(), proto, seg.len() as u16);
    let right = match proto {
        TCP if seg.len() >= 20 => fold(sum(seg, pseudo())) == 0xffff,
        UDP if seg.len() >= 8 && seg[6..8] == [0, 0] => return L4Sum::Absent,
        UDP if seg.len() >= 8 => fold(sum(seg, pseudo())) == 0xffff,
        ICMP if seg.len() >= 4 => fold(sum(seg, 0)) == 0xffff,
        _ => false,
    };
    if right {
        L4Sum::Right
    } else {
        L4Sum::Other
    }
}

/// The innermost IPv4 packet of `ip` (the inner one of IPIP), if every
/// header on the way is well formed.
fn innermost(ip: &[u8]) -> Option<&[u8]> {
    let (hl, total) = header_ok(ip)?;
    if ip[9] == 4 {
        let inner = &ip[hl..total];
        header_ok(inner)?;
        return Some(inner);
    }
    Some(&ip[..total])
}

/// The tuple of a well-formed IPv4 packet.
fn tuple_of(ip: &[u8]) -> Option<Tuple> {
    let (hl, total) = header_ok(ip)?;
    let seg = &ip[hl..total];
    let port = |at: usize| seg.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    // An ICMP echo's identifier stands for both ports.
    let (sport, dport) = if ip[9] == ICMP { (port(4), port(4)) } else { (port(0), port(2)) };
    Some(Tuple { src: addr(12), dst: addr(16), proto: ip[9], sport, dport })
}

/// Checks what the pipeline sent against what it was given.
fn check_sent(given: &[u8], sent: &[u8]) {
    let given_sum = ip_of(given).map(l4_sum);
    let Some(ip) = ip_of(sent) else { return };
    let Some((_, total)) = header_ok(ip) else { panic!("sent an IPv4 frame with a bad header: {sent:02x?}\ngiven {given:02x?}") };
    assert!(total <= sent.len() - 14);
    let inner = innermost(ip).unwrap_or_else(|| panic!("sent IPIP with a bad inner header: {sent:02x?}"));
    let sent_sum = l4_sum(inner);
    // An ICMP error the pipeline translated may be about a packet whose
    // checksum it also had to translate; its own checksum must be right.
    match given_sum {
        Some(L4Sum::Right) => assert_eq!(sent_sum, L4Sum::Right, "a right checksum went wrong: {sent:02x?}\ngiven {given:02x?}"),
        Some(L4Sum::Absent) => assert_eq!(sent_sum, L4Sum::Absent, "an absent UDP checksum appeared: {sent:02x?}\ngiven {given:02x?}"),
        _ => {}
    }
}

/// Makes the IPv4 packet in `f` (if it has a whole header) a fragment as
/// the input says, now and then: the first (more to come), a middle or
/// the last one; its header checksum stays right.
fn fragment(input: &mut Input, f: &mut [u8]) {
    let field: u16 = match input.byte() % 16 {
        0 => 0x2000,
        1 => 0x2000 | u16::from(input.byte()),
        2 => u16::from(input.byte()),
        _ => return,
    };
    let Some(hl) = f.get(14).map(|&vi| usize::from(vi & 15) * 4) else { return };
    if ip_of(f).is_none() || hl < 20 || f.len() < 14 + hl {
        return;
    }
    f[20..22].copy_from_slice(&field.to_be_bytes());
    f[24..26].fill(0);
    let c = proto::checksum::checksum(&f[14..14 + hl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Corrupts, cuts or pads `f` as the input says.
fn mangle(input: &mut Input, f: &mut Vec<u8>) {
    for _ in 0..input.byte() % 4 {
        let (at, value) = (usize::from(input.byte()), input.byte());
        if !f.is_empty() {
            let i = at % f.len();
            f[i] = value;
        }
    }
    match input.byte() % 8 {
        0 => {
            let cut = usize::from(input.byte()) % (f.len() + 1);
            f.truncate(f.len() - cut);
        }
        // Ethernet's padding: bytes after the IP packet.
        1 => f.resize(f.len().max(60) + usize::from(input.byte() % 8), 0),
        _ => {}
    }
}

/// One frame through one core, with the hint its prefetch stages give.
/// The ports' links as the workers were told (`down`), and the ports
/// whose announcement is due (`due`): the model of what core 0 announces.
#[derive(Default)]
struct Links {
    down: [bool; 2],
    due: [bool; 2],
}

impl Links {
    /// Both cores are told port `port`'s link is `up` or down, as the
    /// worker tells its pipeline.
    fn set(&mut self, lab: &mut Lab, port: usize, up: bool) {
        if up && self.down[port] {
            self.due[port] = true;
        }
        self.down[port] = !up;
        lab.cores.iter_mut().for_each(|p| p.set_link(port as u16, up));
    }

    /// Each core's ARP pass: what it sends is ARP, announcements only from
    /// core 0, each due interface announced once its link is up.
    fn pass(&mut self, lab: &mut Lab, now: u64) {
        for (core, p) in lab.cores.iter_mut().enumerate() {
            let mut garps = [0usize; 2];
            p.arp_requests(
                now,
                || Some(vec![0u8; 60]),
                |port, buf: Vec<u8>, len| {
                    assert!(port < 2 && len <= buf.len(), "to port {port}, {len} bytes");
                    let f = &buf[..len];
                    assert_eq!(f[12..14], [8, 6], "ARP");
                    if f[28..32] == f[38..42] {
                        garps[usize::from(port)] += 1;
                    }
                },
            );
            for port in 0..2 {
                if core != 0 || self.down[port] {
                    assert_eq!(garps[port], 0, "core {core} announced on port {port} (link down: {})", self.down[port]);
                } else if self.due[port] {
                    assert!(garps[port] > 0, "port {port}'s announcement is due and its link is up");
                    self.due[port] = false;
                } else {
                    assert_eq!(garps[port], 0, "port {port} announced again, not due");
                }
            }
        }
    }
}

fn run(p: &mut Pipeline, port: u16, buf: &mut [u8], at: &mut usize, len: &mut usize, now: u64, received: Received) -> Action {
    let hint = p.prefetch_entry(p.prefetch_index(&buf[*at..*at + *len]));
    p.process_hinted(port, buf, at, len, now, Received { hint, ..received })
}

fuzz_target!(|data: &[u8]| {
    let mut lab = Lab::new();
    let mut input = Input(data);
    let mut now = 1_000_000_000u64;
    // What clients sent (to continue) and what went to the servers (to
    // answer, or to be the subject of an ICMP error).
    let mut clients: Vec<Tuple> = Vec::new();
    let mut to_servers: Vec<(Tuple, Vec<u8>)> = Vec::new();
    // NAT and FullNAT connections as seen on the wire: by the tuple of
    // their server's replies, the tuple their client sent.
    let mut nat: std::collections::HashMap<Tuple, Tuple> = Default::default();
    let client_mac = MacAddr([2, 0, 0, 0, 1, 10]);
    let mut links = Links { down: [false; 2], due: [true; 2] };
    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        now += u64::from(input.byte()) * 10_000_000;
        let (port, mut f) = match input.byte() % 8 {
            0 | 1 => {
                let (proto, vport, ..) = SERVICES[usize::from(input.byte()) % SERVICES.len()];
                let proto = if proto == L4Proto::Tcp { TCP } else { UDP };
                let t = Tuple { src: Ipv4Addr::new(198, 18, 1, 10 + input.byte() % 4), dst: VIP, proto, sport: input.u16(), dport: vport };
                let (flags, ip_opts, tcp_opts) = (input.byte(), usize::from(input.byte() % 4) * 4, usize::from(input.byte() % 11) * 4);
                let (ip_opts, tcp_opts) = (input.bytes(ip_opts), input.bytes(tcp_opts));
                let payload = input.some(48);
                clients.push(t);
                (0, ipv4_frame(client_mac, LB0, t, &ip_opts, l4(t, flags, &tcp_opts, &payload)))
            }
            2 if !clients.is_empty() => {
                let t = clients[usize::from(input.byte()) % clients.len()];
                let flags = input.byte();
                let payload = input.some(48);
                (0, ipv4_frame(client_mac, LB0, t, &[], l4(t, flags, &[], &payload)))
            }
            3 if !to_servers.is_empty() => {
                let (t, _) = to_servers[usize::from(input.byte()) % to_servers.len()];
                let back = t.reversed();
                let flags = input.byte();
                let payload = input.some(48);
                (1, ipv4_frame(REALS[0].1, LB1, back, &[], l4(back, flags, &[], &payload)))
            }
            4 if !to_servers.is_empty() => {
                // An ICMP error about a packet sent to a server, from the
                // server or a router on its side.
                let (t, sent) = &to_servers[usize::from(input.byte()) % to_servers.len()];
                let quoted = &sent[..sent.len().min(20 + usize::from(input.byte() % 32))];
                let mut icmp = vec![3, input.byte() % 16, 0, 0, 0, 0, 0x05, 0xdc];
                icmp.extend_from_slice(quoted);
                let from = if input.byte() & 1 == 0 { t.dst } else { Ipv4Addr::new(198, 18, 0, 254) };
                let e = Tuple { src: from, dst: t.src, proto: ICMP, sport: 0, dport: 0 };
                (1, ipv4_frame(REALS[0].1, LB1, e, &[], icmp))
            }
            5 => {
                // A ping: to the VIP or the local address (answered
                // here), or to the ICMP service's VIP (forwarded).
                let (port, mac, dst) = [(0, LB0, VIP), (1, LB1, LIP), (0, LB0, VIP2)][usize::from(input.byte() % 3)];
                let t = Tuple { src: Ipv4Addr::new(198, 18, 1, 10 + input.byte() % 4), dst, proto: ICMP, sport: input.u16(), dport: input.u16() };
                let (flags, payload) = (input.byte(), input.some(16));
                if dst == VIP2 {
                    clients.push(t);
                }
                (port, ipv4_frame(client_mac, mac, t, &[], l4(t, flags, &[], &payload)))
            }
            6 => {
                let port = u16::from(input.byte() & 1);
                let len = usize::from(input.byte() % 96);
                (port, input.bytes(len))
            }
            _ => {
                // A health flip, or now and then a reload or a link
                // going down or up; then each core's housekeeping.
                match input.byte() {
                    b if b < 16 => {
                        lab.reload(input.byte());
                        links.due = [true; 2];
                    }
                    b if b < 40 => links.set(&mut lab, usize::from(b & 1), b & 2 != 0),
                    b => {
                        let _ = lab.board.set(usize::from(b) % ((SERVICES.len() + 1) * REALS.len()), input.byte() & 1 == 1);
                    }
                }
                lab.cores.iter_mut().for_each(|p| p.tick(now));
                links.pass(&mut lab, now);
                continue;
            }
        };
        fragment(&mut input, &mut f);
        mangle(&mut input, &mut f);
        // As a port that checks IPv4 header checksums would vouch: only
        // for a right one.
        let vouched = input.byte() & 1 == 1 && ip_of(&f).and_then(header_ok).is_some();
        let (head, tail) = (usize::from(input.byte() % 72), usize::from(input.byte() % 48));
        let mut buf = vec![0u8; head + f.len() + tail];
        buf[head..head + f.len()].copy_from_slice(&f);
        // The core the port's receive queue feeds; a redirect goes to the
        // other, the frame untouched (a ring between cores carries it as is).
        let core = usize::from(input.byte() & 1);
        let (mut at, mut len) = (head, f.len());
        let received = Received { ip_checksum_good: vouched, ..Received::NOTHING };
        let mut action = run(&mut lab.cores[core], port, &mut buf, &mut at, &mut len, now, received);
        if let Action::Redirect { core: to } = action {
            assert!(to as usize != core && (to as usize) < lab.cores.len(), "core {core} redirected to core {to}");
            assert_eq!((at, len, &buf[at..at + len]), (head, f.len(), &f[..]), "a redirected frame is unchanged");
            action = run(&mut lab.cores[to as usize], port, &mut buf, &mut at, &mut len, now, received);
            assert!(!matches!(action, Action::Redirect { .. }), "redirected twice");
        }
        let out = buf.get(at..at + len).expect("the frame's bounds stay in its buffer");
        match action {
            Action::Transmit { port: to } => {
                assert!(to <= 1, "sent on port {to}");
                check_sent(&f, out);
                let (given, sent) = (ip_of(&f).and_then(tuple_of), ip_of(out).and_then(tuple_of));
                if let (1, Some(t)) = (to, sent) {
                    // As sent: for TUN the IPIP packet, which is what an
                    // ICMP error about it quotes.
                    to_servers.push((t, ip_of(out).unwrap().to_vec()));
                }
                match (port, to, given, sent) {
                    // A client's packet, translated (not DR: the VIP
                    // stays; not TUN: an IPIP packet).
                    (0, 1, Some(c), Some(t)) if t.proto != 4 && t.dst != c.dst => {
                        nat.insert(t.reversed(), c);
                    }
                    // A TCP or UDP reply of a connection seen above goes
                    // back to the tuple its client sent, reversed. (ICMP:
                    // an error's bytes where an echo has its identifier
                    // are not one.)
                    (1, 0, Some(r), Some(t)) if r.proto != ICMP => {
                        if let Some(&c) = nat.get(&r) {
                            assert_eq!(t, c.reversed(), "a reply to {c:?} sent as {t:?}");
                        }
                    }
                    _ => {}
                }
            }
            Action::ToKernel => assert_eq!(out, &f[..], "the kernel gets the frame as it came"),
            Action::Consumed | Action::Drop(_) | Action::Redirect { .. } => {}
        }
        lab.cores.iter_mut().for_each(|p| p.tick(now));
    }
});
