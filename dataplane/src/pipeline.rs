//! The per-core packet pipeline, sans-IO: a frame and the time in, a
//! decision out. The frame is rewritten in place when it is to be sent.

use crate::config::{ForwardingMode, L4Proto, Service, Snapshot};
use crate::conn::{Binding, Conn, ConnTable, Dir, FlowKey, Hint, Lookup, TupleHash, TupleWords};
use crate::counters::{CoreCounters, DropReason};
use crate::local_ports::LocalPorts;
use crate::neighbor::{NeighborTable, SharedNeighbors};
use core::net::Ipv4Addr;
use hashbrown::HashMap;
use proto::arp::{self, ArpPacket};
use proto::ethernet::{self, ethertype, EthernetFrame};
use proto::ipv4::{protocol, Ipv4Packet};
use proto::l4::{TcpSegment, UdpDatagram};
use proto::rewrite::nat::Delta4;
use proto::rewrite::{icmp_error, nat, toa, tunnel, Endpoint};
use proto::MacAddr;
use sched::{DestConfig, Flow, Pool};
use std::sync::Arc;

const SWEEP_INTERVAL: u64 = 1_000_000_000;

/// What the worker knows of a received frame besides its bytes, for
/// [`Pipeline::process_hinted`]: one small value (a register, where two
/// arguments would be a stack slot more for every packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The entry the prefetch stages expect its lookup to find
    /// ([`Pipeline::prefetch_entry`]), checked before it is trusted.
    pub hint: Hint,
    /// The port checked its IPv4 header checksum and found it right
    /// (receive checksum offload): the pipeline does not check it again.
    pub ip_checksum_good: bool,
}

impl Received {
    /// No hint, no checksum checked.
    pub const NOTHING: Received = Received { hint: Hint::NONE, ip_checksum_good: false };
}

/// What to do with a frame after [`Pipeline::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame on this port.
    Transmit { port: u16 },
    /// Used up without a reply (an ARP reply we learned from): free it.
    Consumed,
    /// The connection belongs to another worker core: hand the frame to it.
    Redirect { core: u32 },
    /// For the load balancer's own kernel stack (the exception path): hand
    /// it, unchanged, to the TAP interface of the port it arrived on.
    ToKernel,
    /// Free it; the reason has been counted.
    Drop(DropReason),
}

/// Why a snapshot cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl core::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotError {}

/// A service as the worker sees it: scheduler state and real servers.
#[derive(Debug)]
struct ServiceState {
    /// Protocol, VIP and port packed ([`service_key`]).
    key: u64,
    vip: Ipv4Addr,
    /// Removed or replaced by a reload: no new connections; its existing
    /// ones keep running as before.
    retired: bool,
    proto: L4Proto,
    mode: ForwardingMode,
    /// Real servers, their counts on this core, and the scheduler.
    pool: Pool,
    /// Per real server (the pool's index): what forwarding needs and this
    /// core's counts, in one record (one bounds check, one cache line).
    dests: Vec<Dest>,
    /// FullNAT: the local addresses, and this core's ports on them.
    local_addrs: Vec<Ipv4Addr>,
    local_ports: Option<LocalPorts>,
}

/// One real server of a service, on one core.
#[derive(Debug, Clone, Copy)]
struct Dest {
    addr: Ipv4Addr,
    /// Its port (NAT may map ports).
    port: u16,
    /// Its next hop's slot in the neighbor table (`u32::MAX`: none), the
    /// port that next hop is on and our MAC there with IPv4's EtherType,
    /// as `proto::rewrite::direct_route_ipv4` writes them (fixed per slot:
    /// kept here so a packet does not look them up).
    neighbor_slot: u32,
    out_port: u16,
    out_src_word: u64,
    /// The MTU of `out_port`'s interface, and TUN's outer header template
    /// from that interface's address to this server.
    out_mtu: u16,
    tunnel: tunnel::Outer,
    /// Its slot on the snapshot's health board (`u32::MAX`: none, e.g.
    /// removed by a reload).
    health_slot: u32,
    /// Connections and traffic (plain integers: only this core touches
    /// them; views copy them out).
    traffic: Traffic,
}

/// One real server's connections and traffic on one core.
#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    conns: u64,
    pkts_in: u64,
    pkts_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// This core's share of a service-wide threshold (rounded up; 0 stays 0).
fn share(threshold: u32, cores: u32) -> u32 {
    threshold.div_ceil(cores.max(1))
}

/// Key of the service map: protocol, VIP, port packed in a u64.
#[inline]
fn service_key(proto: u8, vip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(proto) << 48) | (u64::from(u32::from(vip)) << 16) | u64::from(port)
}

#[derive(Debug)]
pub struct Pipeline {
    snapshot: Arc<Snapshot>,
    services: Vec<ServiceState>,
    by_key: HashMap<u64, u32>,
    /// Addresses we answer ARP for: the VIPs (on every port).
    vips: hashbrown::HashSet<Ipv4Addr>,
    /// FullNAT local addresses: answered for too (the servers reply to them).
    local_addrs: hashbrown::HashSet<Ipv4Addr>,
    /// Interface index by DPDK port id (`u8::MAX`: not ours).
    iface_of_port: Vec<u8>,
    /// Our MAC on each DPDK port as a number (`proto::rewrite::mac_word`;
    /// `u64::MAX`, which no MAC is: not ours): the first check every frame
    /// meets.
    port_mac: Vec<u64>,
    /// The same with IPv4's EtherType (`proto::rewrite::with_ipv4_type`;
    /// 0: not ours), the source word of frames sent to clients: made once
    /// here rather than per packet (3 instructions a reply).
    port_src_word: Vec<u64>,
    /// Egress port of each real server address.
    neighbors: NeighborTable,
    conns: ConnTable,
    counters: Arc<CoreCounters>,
    next_sweep: u64,
    /// This pipeline's worker core, and how many there are.
    core: u32,
    cores: u32,
    /// Several cores and a NAT or FullNAT service: packets are steered to
    /// the core that owns their connection.
    steering: bool,
    /// IP identification of the outer headers this core writes (TUN).
    ip_ident: u16,
    /// The ports on whose interfaces a gratuitous ARP for the VIPs and
    /// local addresses is due: every one at start and after a reload, one
    /// whose link came back up; sent once the link is up. Core 0's only:
    /// one core announces for all.
    announce: Vec<u16>,
    /// The ports whose link the worker last saw down ([`Self::set_link`]).
    links_down: Vec<u16>,
    /// The health board generation last applied to the pools.
    health_seen: u64,
    /// The snapshot's flag, kept here: every packet of a connection reads it.
    expire_nodest_conn: bool,
}

/// The NAT rewrite of a connection's IP packet `ip`, with the checksum
/// change worked out when the connection was made. `shape`: `Some(udp)`
/// when the fast parser found the packet plain (IPv4 without options, not
/// a fragment, TCP or UDP, 40 bytes or more), so nothing is checked again;
/// packets of other shapes (IP options, ICMP echoes) through the general
/// rewrite. False: malformed.
#[inline(always)]
fn nat_rewrite(ip: &mut [u8], src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>, delta: Delta4, shape: Option<bool>) -> bool {
    if let (Some(udp), Some(h)) = (shape, ip.first_chunk_mut::<40>()) {
        nat::rewrite_v4_known_shape(h, udp, src, dst, delta);
        return true;
    }
    let endpoint = |e: Option<(Ipv4Addr, u16)>| e.map(|(a, p)| Endpoint::v4(a, p));
    nat::rewrite_v4_known(ip, src, dst, delta).is_some() || nat::rewrite(ip, endpoint(src), endpoint(dst)).is_ok()
}

/// What a packet that may start a connection brings: its tuple, protocol,
/// TCP flags, the MAC and port it came from, and when.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    key: FlowKey,
    proto: L4Proto,
    flags: u8,
    src_mac: MacAddr,
    port: u16,
    now: u64,
}

/// A FullNAT local port kept from a connection that ended because its
/// client reused the tuple (or it expired) for the connection that packet
/// starts. The real server then sees the same local address and port as
/// before, with the client's later sequence numbers, which its TIME_WAIT
/// for that pair accepts; a fresh port may meet another TIME_WAIT the
/// server keeps (from before a restart), whose sequence numbers the new
/// SYN need not exceed, costing the client a 1 s retransmission.
#[derive(Debug, Clone, Copy)]
struct Carried {
    service: u32,
    local: (Ipv4Addr, u16),
}

/// The source MAC of a frame of at least 14 bytes (parsed ones are): only
/// a connection's first packet needs it, so it is read there.
fn src_mac(frame: &[u8]) -> MacAddr {
    MacAddr(frame.get(6..12).and_then(|m| m.try_into().ok()).unwrap_or_default())
}

/// The core that owns a connection of the client `addr`:`port`. Both
/// directions of NAT carry the client's tuple, so both find the same core.
#[inline]
pub fn client_owner(addr: Ipv4Addr, port: u16, cores: u32) -> u32 {
    let h = (u64::from(u32::from(addr)) << 16 | u64::from(port)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) % u64::from(cores.max(1))) as u32
}

impl Pipeline {
    /// The addresses a snapshot needs resolved, for [`SharedNeighbors::new`]:
    /// the next hop of every real server (itself, or its gateway), with the
    /// port it is on.
    pub fn wanted_neighbors(snapshot: &Snapshot) -> Vec<(Ipv4Addr, u16)> {
        snapshot.services.iter().flat_map(|s| s.reals.iter()).filter_map(|r| snapshot.next_hop(r.addr)).collect()
    }

    /// The neighbor table after a reload to `new`: every address `old`
    /// resolved stays (connections to servers a reload removed keep their
    /// MAC), the new next hops join, and what was learned is kept.
    pub fn neighbors_for_reload(old: &SharedNeighbors, new: &Snapshot) -> SharedNeighbors {
        let mut wanted = old.wanted().to_vec();
        for w in Self::wanted_neighbors(new) {
            if !wanted.iter().any(|(ip, _)| *ip == w.0) {
                wanted.push(w);
            }
        }
        SharedNeighbors::carry_over(old, wanted)
    }

    /// Checks that a snapshot can run (what [`Self::new`] would refuse),
    /// without building a connection table.
    pub fn check(snapshot: &Snapshot) -> Result<(), SnapshotError> {
        validate(snapshot)?;
        for s in &snapshot.services {
            build_service(s, snapshot.worker_cores, 0, u32::MAX)?;
        }
        Ok(())
    }

    /// A pipeline with a neighbor table of its own (one worker).
    pub fn new(snapshot: Arc<Snapshot>, counters: Arc<CoreCounters>) -> Result<Self, SnapshotError> {
        let neighbors = Arc::new(SharedNeighbors::new(Self::wanted_neighbors(&snapshot)));
        Self::with_neighbors(snapshot, counters, neighbors)
    }

    /// A pipeline sharing `neighbors` with the other workers.
    pub fn with_neighbors(snapshot: Arc<Snapshot>, counters: Arc<CoreCounters>, neighbors: Arc<SharedNeighbors>) -> Result<Self, SnapshotError> {
        validate(&snapshot)?;
        let bases = crate::health::slot_bases(&snapshot.services);
        let services = snapshot.services.iter().zip(bases).map(|(s, base)| build_service(s, snapshot.worker_cores, 0, base)).collect::<Result<Vec<_>, _>>()?;
        let max_port = snapshot.interfaces.iter().map(|i| usize::from(i.port)).max().unwrap_or(0);
        let mut iface_of_port = vec![u8::MAX; max_port + 1];
        for (k, i) in snapshot.interfaces.iter().enumerate() {
            iface_of_port[usize::from(i.port)] = u8::try_from(k).map_err(|_| SnapshotError("more than 254 interfaces".into()))?;
        }
        let port_mac: Vec<u64> =
            iface_of_port.iter().map(|&k| if k == u8::MAX { u64::MAX } else { proto::rewrite::mac_word(snapshot.interfaces[usize::from(k)].mac) }).collect();
        let mut p = Pipeline {
            port_src_word: port_mac.iter().map(|&m| if m == u64::MAX { 0 } else { proto::rewrite::with_ipv4_type(m) }).collect(),
            port_mac,
            iface_of_port,
            neighbors: NeighborTable::new(neighbors, snapshot.arp),
            conns: ConnTable::new(snapshot.max_connections_per_core, snapshot.timeouts),
            cores: snapshot.worker_cores.max(1),
            snapshot,
            services,
            by_key: HashMap::new(),
            vips: hashbrown::HashSet::new(),
            local_addrs: hashbrown::HashSet::new(),
            counters,
            next_sweep: 0,
            core: 0,
            steering: false,
            ip_ident: 0,
            announce: Vec::new(),
            links_down: Vec::new(),
            health_seen: 0,
            expire_nodest_conn: false,
        };
        p.reindex();
        p.refresh_health();
        p.announce_all();
        Ok(p)
    }

    /// Rebuilds what is derived from the services: the lookup maps, the
    /// addresses answered for, steering, and each server's neighbor slot.
    fn reindex(&mut self) {
        self.expire_nodest_conn = self.snapshot.expire_nodest_conn;
        self.by_key.clear();
        self.vips.clear();
        self.local_addrs.clear();
        for (i, s) in self.services.iter_mut().enumerate() {
            if !s.retired {
                self.by_key.insert(s.key, i as u32);
                self.vips.insert(s.vip);
            }
            // Retired FullNAT services still get their replies.
            self.local_addrs.extend(s.local_addrs.iter().copied());
            for d in &mut s.dests {
                let slot = self.snapshot.next_hop(d.addr).and_then(|(hop, _)| self.neighbors.slot_of(hop));
                let port = slot.and_then(|i| self.neighbors.port_of_slot(i));
                let iface = port.and_then(|p| self.iface_of_port.get(usize::from(p))).filter(|&&k| k != u8::MAX);
                match (slot, port, iface) {
                    (Some(slot), Some(port), Some(&k)) => {
                        let iface = &self.snapshot.interfaces[usize::from(k)];
                        (d.neighbor_slot, d.out_port) = (slot as u32, port);
                        d.out_src_word = proto::rewrite::src_ipv4_word(iface.mac);
                        (d.out_mtu, d.tunnel) = (iface.mtu, tunnel::Outer::new(iface.addr, d.addr));
                    }
                    _ => d.neighbor_slot = u32::MAX,
                }
            }
        }
        self.steering = self.cores > 1 && self.services.iter().any(|s| matches!(s.mode, ForwardingMode::Nat | ForwardingMode::FullNat));
    }

    /// Applies a new configuration (a reload) without losing a connection:
    /// a service that stays (same protocol, VIP and port, same mode and
    /// local addresses) keeps its scheduler state and connections, its
    /// servers are added, reweighted or removed in place (removed ones keep
    /// their connections unless `expire_nodest_conn`); a service that goes,
    /// or changes mode, is retired: no new connections, existing ones run
    /// on as before. Interfaces and the table size need a restart.
    pub fn apply(&mut self, new: Arc<Snapshot>, neighbors: Arc<SharedNeighbors>) -> Result<(), SnapshotError> {
        validate(&new)?;
        if new.interfaces != self.snapshot.interfaces {
            return Err(SnapshotError("interfaces changed: restart rvsd to apply that".into()));
        }
        if new.max_connections_per_core != self.snapshot.max_connections_per_core || new.worker_cores != self.snapshot.worker_cores {
            return Err(SnapshotError("the connection table size or the worker count changed: restart rvsd to apply that".into()));
        }
        let cores = new.worker_cores;
        let known = self.services.len();
        let mut kept = vec![false; known];
        for (s, base) in new.services.iter().zip(crate::health::slot_bases(&new.services)) {
            let key = service_key(s.proto.number(), s.vip, s.port);
            // by_key holds exactly the live services.
            match self.by_key.get(&key).map(|&i| i as usize) {
                Some(i) if self.services[i].mode == s.mode && self.services[i].local_addrs == s.local_addrs => {
                    kept[i] = true;
                    update_service(&mut self.services[i], s, cores, base)?;
                }
                found => {
                    if let Some(i) = found {
                        // Same address, new mode: a new service beside the old one.
                        self.services[i].retired = true;
                        kept[i] = true;
                    }
                    self.services.push(build_service(s, cores, self.core, base)?);
                }
            }
        }
        for (s, k) in self.services.iter_mut().zip(&kept) {
            if !k {
                s.retired = true;
            }
            if s.retired {
                s.dests.iter_mut().for_each(|d| d.health_slot = u32::MAX);
            }
        }
        self.conns.set_timeouts(new.timeouts);
        self.neighbors = NeighborTable::new(neighbors, new.arp);
        self.snapshot = new;
        self.reindex();
        self.refresh_health();
        self.announce_all();
        Ok(())
    }

    /// Every interface's addresses are to be announced (by core 0).
    fn announce_all(&mut self) {
        self.announce.clear();
        if self.core == 0 {
            self.announce.extend(self.snapshot.interfaces.iter().map(|i| i.port));
        }
    }

    /// The worker saw port `port`'s link go up or down. Announcements wait
    /// for a link that is up: sent on a down one they are lost (a memif
    /// port before its peer connects, a NIC before its cable is in). A
    /// link that comes back up is announced again: the switch on the
    /// other side may have forgotten where our addresses are; and the
    /// next hops behind it are asked for at once.
    pub fn set_link(&mut self, port: u16, up: bool) {
        let was_down = self.links_down.contains(&port);
        if up && was_down {
            self.links_down.retain(|&p| p != port);
            self.neighbors.link_up(port);
            if self.core == 0 && !self.announce.contains(&port) {
                self.announce.push(port);
            }
        } else if !up && !was_down {
            self.links_down.push(port);
        }
    }

    /// Marks each real server available or not as the health board says.
    fn refresh_health(&mut self) {
        let board = &self.snapshot.health;
        self.health_seen = board.generation();
        for s in &mut self.services {
            for (i, d) in s.dests.iter().enumerate() {
                if d.health_slot != u32::MAX {
                    s.pool.set_available(i, board.is_up(d.health_slot as usize));
                }
            }
        }
    }

    /// This pipeline serves worker core `core` (of the snapshot's
    /// `worker_cores`): it takes FullNAT local ports from that core's share.
    pub fn for_core(mut self, core: u32) -> Self {
        let cores = self.snapshot.worker_cores;
        self.core = core;
        self.announce_all();
        for s in &mut self.services {
            if s.local_ports.is_some() {
                s.local_ports = Some(LocalPorts::new(&s.local_addrs, core, cores));
            }
        }
        self
    }

    pub fn counters(&self) -> &Arc<CoreCounters> {
        &self.counters
    }

    pub fn neighbors(&self) -> &NeighborTable {
        &self.neighbors
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Housekeeping, called once per poll loop: expires connections.
    pub fn tick(&mut self, now: u64) {
        if self.snapshot.health.generation() != self.health_seen {
            self.refresh_health();
        }
        if now >= self.next_sweep {
            let services = &mut self.services;
            let n = self.conns.sweep(now, |_, c| release(services, c, now));
            self.counters.conns_expired.add(n as u64);
            self.counters.conns_active.set(self.conns.len() as u64);
            self.next_sweep = now + SWEEP_INTERVAL;
        }
    }

    /// Writes the ARP requests that are due into buffers from `alloc`
    /// (which returns `None` when out of buffers) and hands each to `send`.
    pub fn arp_requests<B: AsMut<[u8]>>(&mut self, now: u64, mut alloc: impl FnMut() -> Option<B>, mut send: impl FnMut(u16, B, usize)) {
        let ifaces = &self.snapshot.interfaces;
        let counters = &self.counters;
        // Only when one is due on a link that is up: while a link stays
        // down its announcement waits, and every pass checks (two short
        // lists) without gathering the addresses.
        if self.announce.iter().any(|p| !self.links_down.contains(p)) {
            // Every address we answer for, on every interface whose link
            // is up: clients and switches learn (or relearn, after a
            // failover) where they are. A down link's turn waits.
            let mut addrs: Vec<Ipv4Addr> = self.vips.iter().chain(self.local_addrs.iter()).copied().collect();
            addrs.sort_unstable();
            let links_down = &self.links_down;
            self.announce.retain(|&port| {
                if links_down.contains(&port) {
                    return true;
                }
                for iface in ifaces.iter().filter(|i| i.port == port) {
                    for &ip in &addrs {
                        let Some(mut buf) = alloc() else {
                            counters.count_drop(DropReason::NoMbuf);
                            continue;
                        };
                        if let Ok(len) = arp::write_gratuitous(buf.as_mut(), iface.mac, ip) {
                            counters.garp_sent.inc();
                            send(iface.port, buf, len);
                        }
                    }
                }
                false
            });
        }
        self.neighbors.due_requests(now, |port, target| {
            let Some(iface) = ifaces.iter().find(|i| i.port == port) else { return false };
            let Some(mut buf) = alloc() else {
                counters.count_drop(DropReason::NoMbuf);
                return false;
            };
            match arp::write_request(buf.as_mut(), iface.mac, iface.addr, target) {
                Ok(len) => {
                    counters.arp_requests_sent.inc();
                    send(port, buf, len);
                    true
                }
                Err(_) => false,
            }
        });
    }

    /// The first of the two stages that start loading what a burst's
    /// lookups will read: `frame`'s index bucket. Returns the tuple's
    /// hash for the second stage ([`Self::prefetch_entry`]), run a burst
    /// later. A guess only: the tuple is read at the offsets of IPv4
    /// without options; other frames cost a useless prefetch.
    #[inline]
    pub fn prefetch_index(&self, frame: &[u8]) -> TupleHash {
        // A frame too short for a tuple gets no prefetch (and a hash that
        // is as good a guess as any): hashing stand-in words instead made
        // the compiler shuffle registers around the join, every packet.
        match frame.first_chunk::<38>() {
            Some(f) => self.conns.prefetch_index(tuple_words_at(f, f[23])),
            None => TupleHash::default(),
        }
    }

    /// The second stage: starts loading the table entry the bucket names,
    /// and returns it as a hint for the frame's lookup
    /// ([`Self::process_hinted`]), which checks it before relying on it.
    #[inline]
    pub fn prefetch_entry(&self, hash: TupleHash) -> Hint {
        self.conns.prefetch_entry(hash)
    }

    /// Decides the fate of one frame received on `port` at time `now` (ns).
    /// The frame keeps its length (a FullNAT TOA needs room: see
    /// [`Self::process_room`]).
    #[inline]
    pub fn process(&mut self, port: u16, frame: &mut [u8], now: u64) -> Action {
        let (mut head, mut len) = (0, frame.len());
        self.process_room(port, frame, &mut head, &mut len, now)
    }

    /// As [`Self::process`] for the frame `buf[*head..*head + *len]`: the
    /// bytes around it are room it may grow into (a TOA at the tail, an
    /// IPIP header at the front); `*head` and `*len` are updated.
    #[inline]
    pub fn process_room(&mut self, port: u16, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64) -> Action {
        self.process_hinted(port, buf, head, len, now, Received::NOTHING)
    }

    /// As [`Self::process_room`], with what the worker knows of the frame
    /// besides its bytes ([`Received`]).
    #[inline]
    pub fn process_hinted(&mut self, port: u16, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64, rx: Received) -> Action {
        let action = self.classify(port, buf, head, len, now, rx);
        if let Action::Drop(reason) = action {
            self.counters.count_drop(reason);
        }
        action
    }

    /// Everything the pipeline does with a frame. Never inlined: it is
    /// where `bench/pipeline.sh` counts the pipeline's instructions.
    #[inline(never)]
    fn classify(&mut self, port: u16, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64, rx: Received) -> Action {
        let Some(frame) = buf.get_mut(*head..head.saturating_add(*len)) else {
            return Action::Drop(DropReason::MalformedFrame);
        };
        // The common case first: IPv4 to our MAC on this port.
        if let (Some(&ours), Some(h)) = (self.port_mac.get(usize::from(port)), frame.first_chunk::<{ ethernet::HEADER_LEN }>()) {
            if proto::rewrite::mac_word(MacAddr(h[..6].try_into().unwrap_or_default())) == ours && h[12..14] == [0x08, 0x00] {
                return self.ipv4(port, buf, head, len, now, rx);
            }
        }
        self.classify_other(port, frame, now)
    }

    /// The rest of [`Self::classify`]: ARP, broadcasts, frames not for us.
    fn classify_other(&mut self, port: u16, frame: &mut [u8], now: u64) -> Action {
        let iface_idx = match self.iface_of_port.get(usize::from(port)) {
            Some(&k) if k != u8::MAX => usize::from(k),
            _ => return Action::Drop(DropReason::NotOurMac),
        };
        let our_mac = self.snapshot.interfaces[iface_idx].mac;
        let (dst_mac, ethertype) = match EthernetFrame::new_checked(&*frame) {
            Ok(eth) => (eth.dst(), eth.ethertype()),
            Err(_) => return Action::Drop(DropReason::MalformedFrame),
        };
        if dst_mac != our_mac && !dst_mac.is_broadcast() {
            return Action::Drop(DropReason::NotOurMac);
        }
        match ethertype {
            // IPv4 to our own MAC never gets here.
            ethertype::IPV4 => Action::Drop(DropReason::NotOurMac),
            ethertype::ARP => self.arp(iface_idx, frame, now),
            _ => Action::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn arp(&mut self, iface_idx: usize, frame: &mut [u8], now: u64) -> Action {
        let iface = &self.snapshot.interfaces[iface_idx];
        let (op, sender_ip, sender_mac, target_ip) = {
            let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
                return Action::Drop(DropReason::MalformedFrame);
            };
            match ArpPacket::new_checked(eth.payload()) {
                Ok(a) => (a.operation(), a.sender_ip(), a.sender_mac(), a.target_ip()),
                Err(_) => return Action::Drop(DropReason::MalformedArp),
            }
        };
        // Any ARP from a wanted neighbor refreshes its entry (RFC 826's merge).
        let learned = self.neighbors.learn(sender_ip, sender_mac, now);
        if learned {
            self.counters.arp_learned.inc();
        }
        // A gratuitous ARP (sender = target) announces; it is never answered.
        let gratuitous = sender_ip == target_ip;
        let ours = !gratuitous && (target_ip == iface.addr || self.vips.contains(&target_ip) || self.local_addrs.contains(&target_ip));
        match op {
            arp::OP_REQUEST if ours => {
                let mac = iface.mac;
                match arp::reply_in_place(frame, mac) {
                    Ok(_) => {
                        self.counters.arp_replies_sent.inc();
                        Action::Transmit { port: iface.port }
                    }
                    Err(_) => Action::Drop(DropReason::MalformedArp),
                }
            }
            // Replies to our address: the kernel may be waiting for one too
            // (its own connections, e.g. health checks).
            arp::OP_REPLY if target_ip == iface.addr && iface.kernel => Action::ToKernel,
            arp::OP_REPLY if learned => Action::Consumed,
            arp::OP_REQUEST | arp::OP_REPLY => Action::Drop(DropReason::ArpNotForUs),
            _ => Action::Drop(DropReason::MalformedArp),
        }
    }

    fn ipv4(&mut self, port: u16, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64, rx: Received) -> Action {
        // The very range `classify` checked, written the same way: the
        // compiler then knows it is in bounds (about 7 instructions).
        let frame = &mut buf[*head..head.saturating_add(*len)];
        // Nearly every packet has the common shape: read it in one pass.
        // Anything else goes through the views, which explain the drops.
        // The tuple travels as its two words (what the lookup takes); the
        // few paths that need its fields rebuild the key from them.
        let ((words, proto, flags), frame, plain) = match fast_parse(frame, rx.ip_checksum_good) {
            Some(p) => (p, frame, true),
            None => match self.parse_slow(port, buf, head, len, now) {
                Ok((key, proto, flags)) => ((key.words(), proto, flags), &mut buf[*head..*head + *len], false),
                Err(action) => return action,
            },
        };

        if self.steering {
            if let Some(owner) = self.owner(&FlowKey::from_words(words)) {
                if owner != self.core {
                    self.counters.redirected.inc();
                    return Action::Redirect { core: owner };
                }
            }
        }

        let (slot, dir, service, dest) = match self.conns.lookup_hinted(words, rx.hint, proto, flags, now) {
            Lookup::Hit { slot, dir, service, dest, turned } => {
                if let Some(active) = turned {
                    self.services[service as usize].pool.set_active(dest as usize, active);
                }
                if self.expire_nodest_conn && self.services[service as usize].pool.dest(dest as usize).removed {
                    return self.expire_nodest(&FlowKey::from_words(words), now);
                }
                (slot, dir, service, dest)
            }
            Lookup::Expired { slot } => {
                match self.reopen(slot, Arrival { key: FlowKey::from_words(words), proto, flags, src_mac: src_mac(frame), port, now }) {
                    Ok(c) => c,
                    Err(action) => return action,
                }
            }
            Lookup::Miss => match self.first_packet(Arrival { key: FlowKey::from_words(words), proto, flags, src_mac: src_mac(frame), port, now }, None) {
                Ok(c) => c,
                Err(action) => return action,
            },
        };
        // Each mode in its own function: this one stays small, and each
        // reads only what it needs from the entry. `shape`: what the NAT
        // rewrites need not check again (see `nat_rewrite`); made here,
        // not before the lookup, which it would have to outlast.
        let shape = || plain.then_some(proto == L4Proto::Udp);
        match (self.services[service as usize].mode, dir) {
            (ForwardingMode::DirectRoute, Dir::In) => self.send_to_real(service, dest, frame, now),
            (ForwardingMode::Nat, Dir::In) => self.nat_in(slot, service, dest, frame, shape(), now),
            (ForwardingMode::Nat, Dir::Out) => self.nat_out(slot, service, dest, frame, shape()),
            (ForwardingMode::FullNat, Dir::In) => self.fullnat_in(slot, service, dest, flags, shape(), buf, head, len, now),
            (ForwardingMode::FullNat, Dir::Out) => self.fullnat_out(slot, service, dest, flags, shape(), frame),
            (ForwardingMode::Tun, Dir::In) => self.tunnel_to_real(service, dest, plain, port, buf, head, len, now),
            // DR and TUN connections have no reply tuple.
            (ForwardingMode::DirectRoute | ForwardingMode::Tun, Dir::Out) => Action::Drop(DropReason::NotForUs),
        }
    }

    /// A packet whose tuple's connection the lookup found over: counts its
    /// end and opens the new one ([`Self::first_packet`]), which keeps the
    /// old FullNAT local port ([`Carried`]). Out of line: the hot path
    /// only calls it.
    #[cold]
    #[inline(never)]
    fn reopen(&mut self, ended: u32, a: Arrival) -> Result<(u32, Dir, u32, u32), Action> {
        let c = *self.conns.get(ended);
        let s = &mut self.services[c.service as usize];
        s.pool.closed(c.dest as usize, c.is_active(), c.client.src.into(), a.now);
        self.counters.conns_expired.inc();
        let carried = c.local.map(|local| Carried { service: c.service, local });
        self.first_packet(a, carried)
    }

    /// A packet that matched no live connection: opens a new connection
    /// (or says why not), with the local port `carried` over from the
    /// connection its tuple had, if any (given back if not used). Returns
    /// the new entry's slot, direction, service and real server.
    fn first_packet(&mut self, a: Arrival, mut carried: Option<Carried>) -> Result<(u32, Dir, u32, u32), Action> {
        let made = self.new_connection(&a, &mut carried);
        if let Some(Carried { service, local }) = carried {
            if let Some(lp) = self.services[service as usize].local_ports.as_mut() {
                lp.give_back(local);
            }
        }
        match made {
            Ok(slot) => {
                let c = self.conns.get(slot);
                Ok((slot, Dir::In, c.service, c.dest))
            }
            Err(None) => Err(self.not_ours(a.port, a.key.dst)),
            Err(Some(reason)) => Err(Action::Drop(reason)),
        }
    }

    /// NAT, client to server: DNAT to the real server.
    fn nat_in(&mut self, slot: u32, service: u32, dest: u32, frame: &mut [u8], shape: Option<bool>, now: u64) -> Action {
        let c = self.conns.get(slot);
        let (real, delta) = ((c.real, c.real_port), c.nat[0]);
        if !nat_rewrite(&mut frame[ethernet::HEADER_LEN..], None, Some(real), delta, shape) {
            return Action::Drop(DropReason::MalformedL4);
        }
        self.send_to_real(service, dest, frame, now)
    }

    /// NAT, server to client: SNAT back to the VIP.
    fn nat_out(&mut self, slot: u32, service: u32, dest: u32, frame: &mut [u8], shape: Option<bool>) -> Action {
        let c = self.conns.get(slot);
        let (client, peer, delta) = (c.client, (c.peer_port, c.peer_mac), c.nat[1]);
        if !nat_rewrite(&mut frame[ethernet::HEADER_LEN..], Some((client.dst, client.dport)), None, delta, shape) {
            return Action::Drop(DropReason::MalformedL4);
        }
        self.send_to_client(service, dest, peer, frame)
    }

    /// FullNAT, client to server: from the local address to the real
    /// server, with the client's address in a TOA on the first segment
    /// after the SYN (it may grow the frame into `buf`'s tail room).
    #[allow(clippy::too_many_arguments)]
    fn fullnat_in(
        &mut self,
        slot: u32,
        service: u32,
        dest: u32,
        flags: u8,
        shape: Option<bool>,
        buf: &mut [u8],
        head: &mut usize,
        len: &mut usize,
        now: u64,
    ) -> Action {
        let c = self.conns.get(slot);
        let (local, real, toa_pending, delta) = (c.local, (c.real, c.real_port), c.toa_pending, c.nat[0]);
        let Some(local) = local else {
            return Action::Drop(DropReason::NoLocalPort);
        };
        let frame = &mut buf[*head..head.saturating_add(*len)];
        if !nat_rewrite(&mut frame[ethernet::HEADER_LEN..], Some(local), Some(real), delta, shape) {
            return Action::Drop(DropReason::MalformedL4);
        }
        if toa_pending && flags & proto::l4::tcp_flags::SYN == 0 {
            self.add_toa(slot, buf, *head, len);
            return self.send_to_real(service, dest, &mut buf[*head..*head + *len], now);
        }
        self.send_to_real(service, dest, frame, now)
    }

    /// Puts the client's address in a TOA on the FullNAT segment at
    /// `buf[head..]` (`*len` grows), once per connection.
    #[cold]
    #[inline(never)]
    fn add_toa(&mut self, slot: u32, buf: &mut [u8], head: usize, len: &mut usize) {
        let client = self.conns.get(slot).client;
        self.conns.toa_sent(slot);
        let ip_len = *len - ethernet::HEADER_LEN;
        match toa::insert_toa(&mut buf[head + ethernet::HEADER_LEN..], ip_len, Endpoint::v4(client.src, client.sport)) {
            Ok(toa::Toa::Inserted { len: n }) => {
                *len = n + ethernet::HEADER_LEN;
                self.counters.toa_inserted.inc();
            }
            Ok(_) | Err(_) => self.counters.toa_skipped.inc(),
        }
    }

    /// FullNAT, server to client: back from the VIP to the client.
    fn fullnat_out(&mut self, slot: u32, service: u32, dest: u32, flags: u8, shape: Option<bool>, frame: &mut [u8]) -> Action {
        let c = self.conns.get(slot);
        let (client, peer, delta) = (c.client, (c.peer_port, c.peer_mac), c.nat[1]);
        let ip = &mut frame[ethernet::HEADER_LEN..];
        // The client's segments must still fit once a TOA is added.
        if flags & proto::l4::tcp_flags::SYN != 0 {
            let _ = toa::clamp_mss(ip, toa::toa_len(client.src.into()) as u16);
        }
        if !nat_rewrite(ip, Some((client.dst, client.dport)), Some((client.src, client.sport)), delta, shape) {
            return Action::Drop(DropReason::MalformedL4);
        }
        self.send_to_client(service, dest, peer, frame)
    }

    /// The general parser, through the views, for what [`fast_parse`]
    /// leaves: IP options, fragments, ICMP, malformed frames. `Err`: the
    /// frame's fate is decided here (a drop that names its reason, an ICMP
    /// error forwarded, a ping answered, the kernel's). Out of line: the
    /// hot path stays small.
    #[cold]
    #[inline(never)]
    fn parse_slow(&mut self, port: u16, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64) -> Result<(FlowKey, L4Proto, u8), Action> {
        let frame = &mut buf[*head..*head + *len];
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Err(Action::Drop(DropReason::MalformedFrame));
        };
        let ip = match Ipv4Packet::new_checked(eth.payload()) {
            Ok(ip) => ip,
            Err(_) => return Err(Action::Drop(DropReason::MalformedIpv4)),
        };
        if !ip.verify_checksum() {
            return Err(Action::Drop(DropReason::BadIpv4Checksum));
        }
        let dst = ip.dst();
        if ip.is_fragment() {
            return Err(if self.vips.contains(&dst) { Action::Drop(DropReason::Fragment) } else { self.not_ours(port, dst) });
        }
        let (proto, sport, dport, flags) = match ip.protocol() {
            protocol::TCP => match TcpSegment::new_checked(ip.payload()) {
                Ok(t) => (L4Proto::Tcp, t.src_port(), t.dst_port(), t.flags()),
                Err(_) => return Err(Action::Drop(DropReason::MalformedL4)),
            },
            protocol::UDP => match UdpDatagram::new_checked(ip.payload()) {
                Ok(u) => (L4Proto::Udp, u.src_port(), u.dst_port(), 0),
                Err(_) => return Err(Action::Drop(DropReason::MalformedL4)),
            },
            protocol::ICMP => {
                if let Some(key) = Self::icmp_error_key(ip.payload()) {
                    let src = ip.src();
                    return Err(match self.icmp_error(key, src, buf, head, len, now) {
                        // An error about one of the kernel's own connections.
                        Action::Drop(DropReason::IcmpNoConnection) => self.not_ours_or(port, dst, DropReason::IcmpNoConnection),
                        a => a,
                    });
                }
                // Echoes are flows like UDP datagrams (an "icmp" service
                // balances them), except pings to our own addresses
                // when no service wants them: those are answered here.
                match echo_ports(ip.payload()) {
                    Some((sport, dport, request)) if !(request && self.answers_pings(dst)) => (L4Proto::Icmp, sport, dport, u8::from(request)),
                    _ => return Err(self.icmp_to_us(port, dst, frame)),
                }
            }
            _ => return Err(self.not_ours_or(port, dst, DropReason::UnsupportedProtocol)),
        };
        Ok((FlowKey { proto: proto.number(), src: ip.src(), dst, sport, dport }, proto, flags))
    }

    /// IPVS's `expire_nodest_conn`: a packet of a connection whose real
    /// server was removed ends the connection.
    #[cold]
    #[inline(never)]
    fn expire_nodest(&mut self, key: &FlowKey, now: u64) -> Action {
        if let Some(c) = self.conns.remove_key(key) {
            release(&mut self.services, &c, now);
            self.counters.conns_expired.inc();
        }
        Action::Drop(DropReason::DestRemoved)
    }

    /// Schedules a new connection for `key` and records it; returns its
    /// slot in the connection table. `Err(None)`: not to a VIP at all
    /// (perhaps to us: see [`Self::not_ours`]). A FullNAT connection takes
    /// the `carried` local port (leaving `None`) when it is its service's.
    #[inline(never)]
    fn new_connection(&mut self, a: &Arrival, carried: &mut Option<Carried>) -> Result<u32, Option<DropReason>> {
        let Arrival { key, proto, flags, src_mac, port, now } = *a;
        let Some(&svc) = self.by_key.get(&service_key(key.proto, key.dst, key.dport)) else {
            // Established traffic never gets here: the VIP check is
            // only paid by packets that match no connection.
            return Err(self.vips.contains(&key.dst).then_some(DropReason::NoService));
        };
        // Only a SYN starts a TCP connection (as IPVS without sloppy_tcp),
        // only an echo request an ICMP one.
        if proto == L4Proto::Tcp && flags & proto::l4::tcp_flags::SYN == 0 {
            return Err(Some(DropReason::TcpNoConnection));
        }
        if proto == L4Proto::Icmp && flags == 0 {
            return Err(Some(DropReason::IcmpNoConnection));
        }
        let s = &mut self.services[svc as usize];
        debug_assert_eq!(s.proto, proto);
        let flow = Flow { src: key.src.into(), src_port: key.sport, dst: key.dst.into(), dst_port: key.dport };
        let active = ConnTable::starts_active(proto, flags);
        let Some(i) = s.pool.schedule(&flow, active, now) else {
            return Err(Some(DropReason::NoRealServer));
        };
        let real = s.dests[i].addr;
        let reused = carried.take_if(|c| c.service == svc).map(|c| c.local);
        let local = match s.local_ports.as_mut() {
            Some(_) if reused.is_some() => reused,
            Some(lp) => match lp.take() {
                Some(l) => Some(l),
                None => {
                    s.pool.closed(i, active, flow.src, now);
                    return Err(Some(DropReason::NoLocalPort));
                }
            },
            None => None,
        };
        // Replies come back as real:rport -> client:cport (NAT) or
        // real:rport -> local:lport (FullNAT).
        let rport = s.dests[i].port;
        let out = match (s.mode, local) {
            (ForwardingMode::Nat, _) => Some(FlowKey { proto: key.proto, src: real, dst: key.src, sport: rport, dport: key.sport }),
            (ForwardingMode::FullNat, Some((laddr, lport))) => Some(FlowKey { proto: key.proto, src: real, dst: laddr, sport: rport, dport: lport }),
            _ => None,
        };
        // Each direction's rewrite, from the tuple its packets carry.
        let (client, vip, server) = ((key.src, key.sport), (key.dst, key.dport), (real, rport));
        let nat = match (s.mode, local) {
            (ForwardingMode::Nat, _) => [Delta4::new([client, vip], [None, Some(server)]), Delta4::new([server, client], [Some(vip), None])],
            (ForwardingMode::FullNat, Some(l)) => [Delta4::new([client, vip], [Some(l), Some(server)]), Delta4::new([server, l], [Some(vip), Some(client)])],
            _ => Default::default(),
        };
        let to = Binding { service: svc, dest: i as u32, real, real_port: rport, peer_mac: src_mac, peer_port: port, local, nat };
        let Some(conn) = self.conns.insert(key, out, proto, flags, to, now) else {
            s.pool.closed(i, active, flow.src, now);
            if let (Some(lp), Some(l)) = (s.local_ports.as_mut(), local) {
                lp.give_back(l);
            }
            return Err(Some(DropReason::ConnTableFull));
        };
        self.counters.conns_created.inc();
        self.counters.conns_active.set(self.conns.len() as u64);
        self.services[svc as usize].dests[i].traffic.conns += 1;
        Ok(conn)
    }

    /// Sends the frame to the connection's real server (L2 only).
    #[inline(always)]
    fn send_to_real(&mut self, service: u32, dest: u32, frame: &mut [u8], now: u64) -> Action {
        let d = &mut self.services[service as usize].dests[dest as usize];
        d.traffic.pkts_in += 1;
        d.traffic.bytes_in += frame.len() as u64;
        let Some(real_mac) = self.neighbors.mac_word_of_slot(d.neighbor_slot as usize, now) else {
            self.neighbors.request_soon_slot(d.neighbor_slot as usize, now);
            return Action::Drop(DropReason::NeighborUnresolved);
        };
        // Read after the neighbor lookup (see `tunnel_to_real`).
        let (out_port, src) = (d.out_port, d.out_src_word);
        self.send_words(out_port, src, real_mac, frame)
    }

    /// The connection key an ICMPv4 error is about: its embedded packet is
    /// one we sent, so the reversed tuple is that connection's own key.
    fn icmp_error_key(icmp: &[u8]) -> Option<FlowKey> {
        let m = proto::icmp::IcmpPacket::new_checked(icmp).ok()?;
        if !m.is_v4_error() {
            return None;
        }
        let f = proto::icmp::embedded_flow(m.payload()).ok()?;
        let (core::net::IpAddr::V4(src), core::net::IpAddr::V4(dst)) = (f.src, f.dst) else { return None };
        Some(FlowKey { proto: f.protocol, src: dst, dst: src, sport: f.dst_port, dport: f.src_port })
    }

    /// Whether a ping to `dst` is answered by the data plane: a VIP or a
    /// FullNAT local address that has no ICMP service.
    fn answers_pings(&self, dst: Ipv4Addr) -> bool {
        (self.vips.contains(&dst) || self.local_addrs.contains(&dst)) && !self.by_key.contains_key(&service_key(protocol::ICMP, dst, 0))
    }

    /// ICMP that is not an error, to `dst`: pings to a VIP or a FullNAT
    /// local address are answered here (the kernel answers for interface
    /// addresses, through the exception path).
    #[cold]
    #[inline(never)]
    fn icmp_to_us(&mut self, port: u16, dst: Ipv4Addr, frame: &mut [u8]) -> Action {
        if !self.vips.contains(&dst) && !self.local_addrs.contains(&dst) {
            return self.not_ours_or(port, dst, DropReason::UnsupportedProtocol);
        }
        let Some(mac) = self.iface_of_port.get(usize::from(port)).and_then(|&k| self.snapshot.interfaces.get(usize::from(k))).map(|i| i.mac) else {
            return Action::Drop(DropReason::NotOurMac);
        };
        match proto::rewrite::echo::reply_in_place(frame, mac) {
            Ok(()) => {
                self.counters.icmp_echo_replies.inc();
                Action::Transmit { port }
            }
            // Other ICMP (timestamps, a bad checksum): not served.
            Err(_) => Action::Drop(DropReason::UnsupportedProtocol),
        }
    }

    /// Forwards an ICMP error about a NAT or FullNAT connection to the
    /// other side, translated so that side's stack recognises its packet.
    #[cold]
    #[inline(never)]
    fn icmp_error(&mut self, key: FlowKey, icmp_src: Ipv4Addr, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64) -> Action {
        if self.steering {
            if let Some(owner) = self.owner(&key) {
                if owner != self.core {
                    self.counters.redirected.inc();
                    return Action::Redirect { core: owner };
                }
            }
        }
        let Some((conn, dir)) = self.conns.peek(&key, now) else {
            return Action::Drop(DropReason::IcmpNoConnection);
        };
        let s = &self.services[conn.service as usize];
        let real = Endpoint::v4(conn.real, conn.real_port);
        let client = Endpoint::v4(conn.client.src, conn.client.sport);
        let vip = Endpoint::v4(conn.client.dst, conn.client.dport);
        let ip = &mut buf[*head + ethernet::HEADER_LEN..*head + *len];
        let translated = match (s.mode, dir, conn.local) {
            // From the server's side, about what we sent it: to the client,
            // from the VIP, quoting what the client sent.
            (ForwardingMode::Nat | ForwardingMode::FullNat, Dir::Out, _) => {
                icmp_error::translate_icmp_v4(ip, conn.client.dst, conn.client.src, client, vip).map(|()| true)
            }
            // From the client's side, about a reply we sent: to the server,
            // quoting the reply as the server sent it.
            (ForwardingMode::Nat, Dir::In, _) => icmp_error::translate_icmp_v4(ip, icmp_src, conn.real, real, client).map(|()| false),
            (ForwardingMode::FullNat, Dir::In, Some((laddr, lport))) => {
                icmp_error::translate_icmp_v4(ip, laddr, conn.real, real, Endpoint::v4(laddr, lport)).map(|()| false)
            }
            _ => return Action::Drop(DropReason::IcmpNoConnection),
        };
        match translated {
            Ok(to_client) => {
                self.counters.icmp_forwarded.inc();
                let frame = &mut buf[*head..*head + *len];
                if to_client {
                    self.send_to_client(conn.service, conn.dest, (conn.peer_port, conn.peer_mac), frame)
                } else {
                    self.send_to_real(conn.service, conn.dest, frame, now)
                }
            }
            Err(_) => Action::Drop(DropReason::MalformedL4),
        }
    }

    /// TUN: wraps the client's packet in IPIP from our address on the
    /// server's subnet to the server, using the buffer's headroom.
    /// `plain`: the parser found a 20-byte IPv4 header that fits the frame.
    #[allow(clippy::too_many_arguments)]
    fn tunnel_to_real(&mut self, service: u32, dest: u32, plain: bool, in_port: u16, buf: &mut [u8], head: &mut usize, len: &mut usize, now: u64) -> Action {
        let d = &mut self.services[service as usize].dests[dest as usize];
        // Counted as received (as IPVS), without the outer header.
        d.traffic.pkts_in += 1;
        d.traffic.bytes_in += *len as u64;
        let Some(real_mac) = self.neighbors.mac_word_of_slot(d.neighbor_slot as usize, now) else {
            self.neighbors.request_soon_slot(d.neighbor_slot as usize, now);
            return Action::Drop(DropReason::NeighborUnresolved);
        };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        // The record's fields are read where they are used, through `d`:
        // copied out before the neighbor lookup, they were spilled to the
        // stack and read back (8 instructions a packet). The hop is made
        // where it is used: the general path is out of line, and a hop
        // shared with it would have to be built in memory.
        let ident = self.ip_ident;
        let to = || tunnel::Hop { outer: &d.tunnel, ident, mtu: d.out_mtu, src_ipv4: d.out_src_word, dst: real_mac };
        // Each way matched on its own: one result for both would be made
        // in memory.
        let encapsulated = if plain {
            match tunnel::ipip_encapsulate_plain(buf, *head, &to()) {
                Ok(new_head) => new_head,
                Err(e) => return self.tunnel_failed(e, in_port, buf, *head, len),
            }
        } else {
            match tunnel::ipip_encapsulate(buf, *head, *len, &to()) {
                Ok(new_head) => new_head,
                Err(e) => return self.tunnel_failed(e, in_port, buf, *head, len),
            }
        };
        let port = d.out_port;
        *head = encapsulated;
        *len += tunnel::OVERHEAD;
        self.counters.forwarded.inc();
        Action::Transmit { port }
    }

    #[cold]
    #[inline(never)]
    fn tunnel_failed(&mut self, e: tunnel::EncapError, in_port: u16, buf: &mut [u8], head: usize, len: &mut usize) -> Action {
        match e {
            tunnel::EncapError::NeedsFragmentation { mtu } => self.frag_needed_reply(in_port, &mut buf[head..], len, mtu),
            tunnel::EncapError::TooBig => Action::Drop(DropReason::TooBig),
            tunnel::EncapError::NoHeadroom => Action::Drop(DropReason::NoHeadroom),
            tunnel::EncapError::Invalid(_) => Action::Drop(DropReason::MalformedIpv4),
        }
    }

    /// Turns the frame at the start of `frame` (`*len` bytes), in place,
    /// into an ICMP "fragmentation needed" advising `mtu`, back to where
    /// it came from.
    #[cold]
    #[inline(never)]
    fn frag_needed_reply(&mut self, port: u16, frame: &mut [u8], len: &mut usize, mtu: u16) -> Action {
        let from = match self.iface_of_port.get(usize::from(port)) {
            Some(&k) if k != u8::MAX => self.snapshot.interfaces[usize::from(k)].addr,
            _ => return Action::Drop(DropReason::NotOurMac),
        };
        // The original packet is quoted from a copy: the reply overwrites it.
        let ip_len = *len - ethernet::HEADER_LEN;
        let mut original = [0u8; 2048];
        if ip_len > original.len() {
            return Action::Drop(DropReason::TooBig);
        }
        original[..ip_len].copy_from_slice(&frame[ethernet::HEADER_LEN..*len]);
        let mut sender = [0u8; 6];
        sender.copy_from_slice(&frame[6..12]);
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let Ok(n) = tunnel::frag_needed(&mut frame[ethernet::HEADER_LEN..], &original[..ip_len], from, mtu, self.ip_ident) else {
            return Action::Drop(DropReason::MalformedIpv4);
        };
        *len = ethernet::HEADER_LEN + n;
        self.counters.icmp_frag_needed.inc();
        self.send(port, MacAddr(sender), &mut frame[..*len])
    }

    /// Sends a reply back where the client's packets came from.
    /// `peer`: the port and MAC the client's packets come from.
    fn send_to_client(&mut self, service: u32, dest: u32, peer: (u16, MacAddr), frame: &mut [u8]) -> Action {
        let t = &mut self.services[service as usize].dests[dest as usize].traffic;
        t.pkts_out += 1;
        t.bytes_out += frame.len() as u64;
        self.send(peer.0, peer.1, frame)
    }

    /// Sends the IPv4 `frame` out of `port`, from our MAC there, to `dst`.
    fn send(&mut self, port: u16, dst: MacAddr, frame: &mut [u8]) -> Action {
        let src = match self.port_src_word.get(usize::from(port)) {
            Some(&w) if w != 0 => w,
            _ => return Action::Drop(DropReason::NeighborUnresolved),
        };
        self.send_words(port, src, proto::rewrite::mac_word(dst), frame)
    }

    /// Sends the IPv4 `frame` out of `port` with the Ethernet addresses
    /// as `proto::rewrite::direct_route_ipv4` takes them.
    #[inline(always)]
    fn send_words(&mut self, port: u16, src_ipv4: u64, dst: u64, frame: &mut [u8]) -> Action {
        let Some(h) = frame.first_chunk_mut::<{ ethernet::HEADER_LEN }>() else {
            return Action::Drop(DropReason::MalformedFrame);
        };
        proto::rewrite::direct_route_ipv4(h, dst, src_ipv4);
        self.counters.forwarded.inc();
        Action::Transmit { port }
    }

    /// Which core owns `key`'s connection, when that is not simply the
    /// core it arrived on: FullNAT replies name it in their local port; NAT
    /// and FullNAT requests, and NAT replies, by their client's tuple. DR
    /// sees one direction only and is never steered.
    fn owner(&self, key: &FlowKey) -> Option<u32> {
        if self.local_addrs.contains(&key.dst) {
            return Some(LocalPorts::owner(key.dport, self.cores));
        }
        if self.vips.contains(&key.dst) {
            let svc = *self.by_key.get(&service_key(key.proto, key.dst, key.dport))?;
            return matches!(self.services[svc as usize].mode, ForwardingMode::Nat | ForwardingMode::FullNat)
                .then(|| client_owner(key.src, key.sport, self.cores));
        }
        // Possibly a NAT reply: the client is its destination.
        Some(client_owner(key.dst, key.dport, self.cores))
    }

    /// A copy of this core's services, servers and counts, for operators.
    pub fn view(&self, now: u64) -> crate::view::CoreView {
        let mut view = crate::view::CoreView::default();
        let mut next = 0;
        self.refresh_view(&mut view, &mut next, usize::MAX, now);
        view
    }

    /// Brings `view` up to date with this core's services from service
    /// `*next` on, about `budget` real servers' worth (at least one
    /// service), and moves `*next` past them; returns true when that
    /// finished the services (`*next` is 0 again, and the view's time
    /// and totals are set). The worker refreshes its view this way a
    /// slice per poll: made whole at once, the view of 10,000 services
    /// paused forwarding for about a millisecond (`reload_bench`), more
    /// than a receive ring holds at full rate. A view refreshed in place
    /// keeps its vectors: one of the same shape allocates nothing.
    pub fn refresh_view(&self, view: &mut crate::view::CoreView, next: &mut usize, budget: usize, now: u64) -> bool {
        use crate::view::{DestView, ServiceView};
        let mut spent = 0usize;
        while let Some(s) = self.services.get(*next) {
            if spent > 0 && spent.saturating_add(s.pool.len()) > budget {
                return false;
            }
            let header = ServiceView {
                proto: s.proto,
                vip: s.vip,
                port: (s.key & 0xffff) as u16,
                scheduler: s.pool.spec().kind,
                mode: s.mode,
                persistence: s.pool.persistence_timeout(),
                retired: s.retired,
                dests: Vec::new(),
            };
            // The service's entry, keeping its servers' vector (cleared
            // and refilled below: no allocation when it has the room).
            let sv = match view.services.get_mut(*next) {
                Some(sv) => {
                    *sv = ServiceView { dests: std::mem::take(&mut sv.dests), ..header };
                    sv
                }
                None => {
                    view.services.push(header);
                    view.services.last_mut().expect("just pushed")
                }
            };
            sv.dests.clear();
            sv.dests.extend((0..s.pool.len()).map(|d| {
                let (p, x) = (s.pool.dest(d), s.dests[d]);
                let t = x.traffic;
                DestView {
                    addr: x.addr,
                    port: x.port,
                    weight: p.weight(),
                    active: p.active,
                    inactive: p.inactive,
                    removed: p.removed,
                    overloaded: p.overloaded,
                    conns: t.conns,
                    pkts_in: t.pkts_in,
                    pkts_out: t.pkts_out,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                }
            }));
            spent += s.pool.len().max(1);
            *next += 1;
        }
        view.services.truncate(self.services.len());
        (view.at, view.connections, view.capacity) = (now, self.conns.len(), self.snapshot.max_connections_per_core);
        *next = 0;
        true
    }

    /// Up to `max` of this core's connections for `rvsadm -c`, and whether
    /// there were more, all at once (a worker lists in slices instead:
    /// [`Self::list_connections_slice`]).
    pub fn list_connections(&self, now: u64, max: usize) -> (Vec<crate::view::ConnView>, bool) {
        let mut listing = crate::view::ConnListing::default();
        while !self.list_connections_slice(&mut listing, now, usize::MAX, max) {}
        (listing.rows, listing.truncated)
    }

    /// Goes on with `listing` of this core's connections for `rvsadm -c`
    /// over the next `slots` slots of the table, up to `max` rows in all;
    /// true when it is complete. Expired connections the wheel has not
    /// reached are left out. Between slices the table may change: a
    /// connection that lives throughout is listed once, one that comes or
    /// goes meanwhile may or may not be (as `ipvsadm -c` reading a table
    /// the kernel changes).
    pub fn list_connections_slice(&self, listing: &mut crate::view::ConnListing, now: u64, slots: usize, max: usize) -> bool {
        use crate::conn::TcpState;
        let start = listing.next_slot;
        if start == 0 {
            // Room for all at once: growing by doubling copied the rows
            // made so far in one slice (3.6 MB at 65,536 rows).
            listing.rows.reserve(self.conns.len().min(max));
        }
        let end = start.saturating_add(slots).min(self.conns.slots_used());
        for c in self.conns.live_in(start..end).filter(|c| c.expires > now) {
            if listing.rows.len() >= max {
                listing.truncated = true;
                return true;
            }
            let Some(s) = self.services.get(c.service as usize) else { continue };
            let state = match c.tcp {
                None => "UDP",
                Some(TcpState::SynRecv) => "SYN_RECV",
                Some(TcpState::Established) => "ESTABLISHED",
                Some(TcpState::FinWait) => "FIN_WAIT",
                Some(TcpState::Close) => "CLOSE",
            };
            listing.rows.push(crate::view::ConnView {
                proto: s.proto,
                client: (c.client.src, c.client.sport),
                virt: (c.client.dst, c.client.dport),
                real: (c.real, c.real_port),
                local: c.local,
                state,
                expires_in_s: (c.expires - now).div_ceil(1_000_000_000),
            });
        }
        listing.next_slot = end;
        end >= self.conns.slots_used()
    }

    /// Free local ports left on this core for service `i` (FullNAT).
    pub fn local_ports_available(&self, i: usize) -> Option<usize> {
        self.services[i].local_ports.as_ref().map(LocalPorts::available)
    }

    /// Why an IPv4 packet to an address that is no VIP is dropped.
    /// A packet to no VIP and no connection: for the kernel when it is to
    /// one of our interface addresses and the interface it arrived on has
    /// an exception path, else dropped.
    fn not_ours(&self, port: u16, dst: Ipv4Addr) -> Action {
        self.not_ours_or(port, dst, DropReason::NotForUs)
    }

    /// As [`Self::not_ours`], dropped for `otherwise` when not to us.
    #[cold]
    #[inline(never)]
    fn not_ours_or(&self, port: u16, dst: Ipv4Addr, otherwise: DropReason) -> Action {
        if !self.snapshot.interfaces.iter().any(|i| i.addr == dst) {
            return Action::Drop(otherwise);
        }
        match self.iface_of_port.get(usize::from(port)) {
            Some(&k) if k != u8::MAX && self.snapshot.interfaces[usize::from(k)].kernel => Action::ToKernel,
            _ => Action::Drop(DropReason::LocalAddress),
        }
    }

    /// Service `i`'s pool on this core (counts, weights, health).
    pub fn pool(&self, i: usize) -> &Pool {
        &self.services[i].pool
    }

    /// The MAC a real server resolved to, for display and tests.
    pub fn neighbor(&self, ip: Ipv4Addr, now: u64) -> Option<MacAddr> {
        self.neighbors.lookup(ip, now)
    }
}

/// An ICMP echo's ports, as the connection table names them: (source,
/// destination, is a request). The identifier is the port of the side
/// that sent the request: a request's source port, a reply's destination
/// port; the other side's port is 0 (an ICMP service's port).
fn echo_ports(icmp: &[u8]) -> Option<(u16, u16, bool)> {
    use proto::icmp::v4_type::{ECHO_REPLY, ECHO_REQUEST};
    let m = proto::icmp::IcmpPacket::new_checked(icmp).ok()?;
    let [a, b, _, _] = m.rest();
    let id = u16::from_be_bytes([a, b]);
    match (m.msg_type(), m.code()) {
        (ECHO_REQUEST, 0) => Some((id, 0, true)),
        (ECHO_REPLY, 0) => Some((0, id, false)),
        _ => None,
    }
}

/// The flow of an Ethernet frame carrying IPv4 without options, not a
/// fragment, with a valid header checksum (or one the port found right:
/// `checksum_good`) and a complete TCP or UDP header: (the tuple's words,
/// protocol, TCP flags). `None` for every other frame (the general parser
/// then decides); never accepts a frame the general parser would refuse
/// but for the checksum the port vouched for, and reads the same fields
/// (tested).
#[inline]
fn fast_parse(f: &[u8], checksum_good: bool) -> Option<(TupleWords, L4Proto, u8)> {
    const IP: usize = ethernet::HEADER_LEN;
    const L4: usize = IP + 20;
    // Ethernet, IPv4 and a TCP header without options: 54 bytes. Shorter
    // frames (a runt UDP datagram) take the general path.
    let h: &[u8; L4 + 20] = f.get(..L4 + 20)?.try_into().ok()?;
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    if h[IP] != 0x45 || be16(IP + 6) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(be16(IP + 2));
    let header: &[u8; 20] = h[IP..L4].try_into().ok()?;
    if IP + total > f.len() || !(checksum_good || proto::checksum::header20_valid(header)) {
        return None;
    }
    let l4_len = total.checked_sub(20)?;
    let (proto, flags) = match h[IP + 9] {
        protocol::TCP => {
            let off = usize::from(h[L4 + 12] >> 4) * 4;
            if off < 20 || off > l4_len {
                return None;
            }
            (L4Proto::Tcp, h[L4 + 13])
        }
        protocol::UDP => {
            let ulen = usize::from(be16(L4 + 4));
            if ulen < 8 || ulen > l4_len {
                return None;
            }
            (L4Proto::Udp, 0)
        }
        _ => return None,
    };
    Some((tuple_words_at(h, proto.number()), proto, flags))
}

/// [`FlowKey::words`] of the tuple of an Ethernet frame carrying IPv4
/// without options (its first `N` >= 38 bytes), with protocol `proto`,
/// read at its fixed offsets: the addresses in one load.
#[inline(always)]
fn tuple_words_at<const N: usize>(f: &[u8; N], proto: u8) -> TupleWords {
    const { assert!(N >= 38) };
    let addrs = u64::from_le_bytes([f[26], f[27], f[28], f[29], f[30], f[31], f[32], f[33]]);
    // Both ports in one load: big-endian, that is sport << 16 | dport;
    // rotated, dport << 16 | sport, as the words have them.
    let ports = u32::from_be_bytes([f[34], f[35], f[36], f[37]]).rotate_left(16);
    (addrs, u64::from(ports) | u64::from(proto) << 32)
}

/// Checks what a snapshot promises the data plane.
fn validate(snapshot: &Snapshot) -> Result<(), SnapshotError> {
    if snapshot.interfaces.is_empty() {
        return Err(SnapshotError("no interface".into()));
    }
    let mut keys = hashbrown::HashSet::new();
    for s in &snapshot.services {
        if !keys.insert(service_key(s.proto.number(), s.vip, s.port)) {
            return Err(SnapshotError(format!("duplicate service {} {}:{}", s.proto.name(), s.vip, s.port)));
        }
        if s.mode == ForwardingMode::FullNat && s.local_addrs.is_empty() {
            return Err(SnapshotError(format!("FullNAT service {}:{} has no local address", s.vip, s.port)));
        }
        for r in &s.reals {
            // DR reaches a real server only on a connected subnet.
            let on_link = snapshot.interfaces.iter().any(|i| i.on_link(r.addr));
            if !on_link && s.mode == ForwardingMode::DirectRoute {
                return Err(SnapshotError(format!("real server {} of {}:{} is on no interface's subnet (DR needs the same L2)", r.addr, s.vip, s.port)));
            }
            if snapshot.next_hop(r.addr).is_none() {
                return Err(SnapshotError(format!("real server {} of {}:{} is on no interface's subnet and no route reaches it", r.addr, s.vip, s.port)));
            }
            if r.port.is_some_and(|p| p != s.port) && s.mode == ForwardingMode::DirectRoute {
                return Err(SnapshotError(format!("real server {} of {}:{}: DR cannot map ports", r.addr, s.vip, s.port)));
            }
        }
    }
    Ok(())
}

fn dest_config(s: &Service, r: &crate::config::RealServer, cores: u32) -> DestConfig {
    DestConfig {
        addr: r.addr.into(),
        port: r.port.unwrap_or(s.port),
        weight: r.weight,
        upper_threshold: share(r.upper_threshold, cores),
        lower_threshold: share(r.lower_threshold, cores),
    }
}

impl Dest {
    /// A real server as configured; its neighbor slot is set by `reindex`.
    fn new(addr: Ipv4Addr, port: u16, health_slot: u32) -> Self {
        Dest {
            addr,
            port,
            neighbor_slot: u32::MAX,
            out_port: 0,
            out_src_word: 0,
            out_mtu: 0,
            tunnel: tunnel::Outer::new(Ipv4Addr::UNSPECIFIED, addr),
            health_slot,
            traffic: Traffic::default(),
        }
    }
}

/// A service's state on one core; its real servers' health slots start at
/// `health_base` (`u32::MAX`: no health board).
fn build_service(s: &Service, cores: u32, core: u32, health_base: u32) -> Result<ServiceState, SnapshotError> {
    let dests: Vec<DestConfig> = s.reals.iter().map(|r| dest_config(s, r, cores)).collect();
    let pool = Pool::new(s.scheduler, &dests, s.persistence).map_err(|e| SnapshotError(format!("service {} {}:{}: {e}", s.proto.name(), s.vip, s.port)))?;
    Ok(ServiceState {
        key: service_key(s.proto.number(), s.vip, s.port),
        vip: s.vip,
        retired: false,
        proto: s.proto,
        mode: s.mode,
        pool,
        dests: s.reals.iter().zip(0..).map(|(r, j)| Dest::new(r.addr, r.port.unwrap_or(s.port), health_base.saturating_add(j))).collect(),
        local_addrs: s.local_addrs.clone(),
        local_ports: (s.mode == ForwardingMode::FullNat).then(|| LocalPorts::new(&s.local_addrs, core, cores)),
    })
}

/// A reload of a service that stays: scheduler and persistence changed in
/// place, servers added, reweighted or removed (indices never reused).
fn update_service(st: &mut ServiceState, s: &Service, cores: u32, health_base: u32) -> Result<(), SnapshotError> {
    let err = |e: sched::SchedError| SnapshotError(format!("service {} {}:{}: {e}", s.proto.name(), s.vip, s.port));
    st.pool.reconfigure(s.scheduler, s.persistence).map_err(err)?;
    let mut keep = vec![false; st.pool.len()];
    // Removed servers have no slot on the new board.
    st.dests.iter_mut().for_each(|d| d.health_slot = u32::MAX);
    for (j, r) in s.reals.iter().enumerate() {
        let cfg = dest_config(s, r, cores);
        let slot = health_base.saturating_add(j as u32);
        match st.pool.find(cfg.addr, cfg.port) {
            Some(d) => {
                st.dests[d].health_slot = slot;
                keep[d] = true;
                st.pool.set_weight(d, cfg.weight).map_err(err)?;
                st.pool.set_thresholds(d, cfg.upper_threshold, cfg.lower_threshold).map_err(err)?;
            }
            None => {
                st.pool.add(cfg).map_err(err)?;
                st.dests.push(Dest::new(r.addr, cfg.port, slot));
                keep.push(true);
            }
        }
    }
    for (d, k) in keep.iter().enumerate() {
        if !k && !st.pool.dest(d).removed {
            st.pool.remove(d);
        }
    }
    Ok(())
}

/// A connection ended: its server's count, persistence and local port go back.
fn release(services: &mut [ServiceState], c: &Conn, now: u64) {
    let s = &mut services[c.service as usize];
    s.pool.closed(c.dest as usize, c.is_active(), c.client.src.into(), now);
    if let (Some(lp), Some(l)) = (s.local_ports.as_mut(), c.local) {
        lp.give_back(l);
    }
}

#[cfg(test)]
mod tests;
