//! What the data plane needs to know of the configuration: an immutable
//! snapshot built by the control plane, shared by all workers.

use core::net::Ipv4Addr;
use proto::MacAddr;
use sched::{PersistenceConfig, SchedulerSpec};

/// L4 protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    Tcp,
    Udp,
    /// ICMP echo: a ping is a flow named by its identifier.
    Icmp,
}

impl L4Proto {
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => proto::ipv4::protocol::TCP,
            L4Proto::Udp => proto::ipv4::protocol::UDP,
            L4Proto::Icmp => proto::ipv4::protocol::ICMP,
        }
    }

    /// The protocol named `name` (as [`Self::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        [L4Proto::Tcp, L4Proto::Udp, L4Proto::Icmp].into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Icmp => "icmp",
        }
    }
}

/// How packets reach the real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingMode {
    /// MAC rewrite; replies bypass the load balancer.
    DirectRoute,
    /// DNAT in, SNAT of the replies (real servers route back through us).
    Nat,
    /// Both addresses rewritten: client -> local address, VIP -> real
    /// server; the client's address travels in a TOA option.
    FullNat,
    /// IPIP encapsulation to the real server; replies bypass us.
    Tun,
}

impl ForwardingMode {
    pub fn name(self) -> &'static str {
        match self {
            ForwardingMode::DirectRoute => "dr",
            ForwardingMode::Nat => "nat",
            ForwardingMode::FullNat => "fullnat",
            ForwardingMode::Tun => "tun",
        }
    }
}

/// One of the load balancer's own interfaces (a DPDK port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Index of the DPDK port the worker transmits on.
    pub port: u16,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// Largest IP packet the link carries (TUN checks encapsulated sizes).
    pub mtu: u16,
    /// The exception path: traffic to `addr` that is not load-balanced
    /// goes to a kernel TAP interface (else it is dropped and counted).
    pub kernel: bool,
}

impl Interface {
    /// True when `ip` is on this interface's connected subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        same_subnet(self.addr, self.prefix_len, ip)
    }
}

impl Snapshot {
    /// `interfaces` and `services` with everything else at its default:
    /// no routes, IPVS's timeouts, default ARP timers, 65,536 connections
    /// per core, one worker core, no `expire_nodest_conn`, and a health
    /// board with every server up. Change fields with struct update syntax.
    pub fn new(interfaces: Vec<Interface>, services: Vec<Service>) -> Self {
        Snapshot {
            interfaces,
            routes: Vec::new(),
            services,
            timeouts: Timeouts::default(),
            arp: ArpTimers::default(),
            max_connections_per_core: 65_536,
            worker_cores: 1,
            expire_nodest_conn: false,
            health: crate::health::Health::default(),
        }
    }

    /// The next hop towards `ip` and the port it is on: `ip` itself on a
    /// connected subnet, else the gateway of the longest matching route
    /// (itself on a connected subnet). `None`: unreachable.
    pub fn next_hop(&self, ip: Ipv4Addr) -> Option<(Ipv4Addr, u16)> {
        if let Some(i) = self.interfaces.iter().find(|i| i.on_link(ip)) {
            return Some((ip, i.port));
        }
        let route = self.routes.iter().filter(|r| same_subnet(r.prefix, r.prefix_len, ip)).max_by_key(|r| r.prefix_len)?;
        let i = self.interfaces.iter().find(|i| i.on_link(route.via))?;
        Some((route.via, i.port))
    }
}

/// True when `ip` is in the `prefix_len` subnet of `addr`.
pub fn same_subnet(addr: Ipv4Addr, prefix_len: u8, ip: Ipv4Addr) -> bool {
    let mask = prefix_mask(prefix_len);
    u32::from(ip) & mask == u32::from(addr) & mask
}

/// The netmask of a prefix length (0..=32; more counts as 32).
pub fn prefix_mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    pub addr: Ipv4Addr,
    /// The port on the real server; `None` = the service's port. Only NAT
    /// may map ports (DR and TUN cannot rewrite them).
    pub port: Option<u16>,
    /// 0..=65535; 0 is quiescent.
    pub weight: u32,
    /// Connection thresholds for the whole service (ipvsadm -x/-y); 0 =
    /// none. Each worker core enforces its share (rounded up).
    pub upper_threshold: u32,
    pub lower_threshold: u32,
}

impl RealServer {
    pub fn new(addr: Ipv4Addr, weight: u32) -> Self {
        RealServer { addr, port: None, weight, upper_threshold: 0, lower_threshold: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub proto: L4Proto,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub scheduler: SchedulerSpec,
    pub persistence: Option<PersistenceConfig>,
    pub mode: ForwardingMode,
    /// FullNAT: the local addresses connections to real servers come from.
    pub local_addrs: Vec<Ipv4Addr>,
    pub reals: Vec<RealServer>,
}

/// Idle timeouts, in seconds, as IPVS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: u64,
    pub tcp: u64,
    pub tcp_fin: u64,
    pub tcp_close: u64,
    pub udp: u64,
    /// ICMP echo flows (ping sessions).
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        // IPVS defaults: established 900 s, FIN_WAIT 120 s, UDP 300 s;
        // ICMP as DPVS: 60 s.
        Timeouts { tcp_syn: 60, tcp: 900, tcp_fin: 120, tcp_close: 10, udp: 300, icmp: 60 }
    }
}

/// Neighbor (ARP) cache timers, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpTimers {
    /// Age after which a resolved entry is re-requested (still used meanwhile).
    pub refresh: u64,
    /// Age after which an unconfirmed entry is forgotten.
    pub expire: u64,
    /// Minimum spacing of requests for one address.
    pub retry: u64,
}

impl Default for ArpTimers {
    fn default() -> Self {
        ArpTimers { refresh: 30, expire: 90, retry: 1 }
    }
}

/// A static route: real servers in `prefix` are reached through `via`
/// (a gateway on a connected subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub via: Ipv4Addr,
}

/// Everything a worker needs, immutable once built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub services: Vec<Service>,
    pub timeouts: Timeouts,
    pub arp: ArpTimers,
    /// Connection table capacity per worker core.
    pub max_connections_per_core: usize,
    /// Number of worker cores sharing the traffic (divides thresholds).
    pub worker_cores: u32,
    /// IPVS's `expire_nodest_conn`: a connection whose real server was
    /// removed is dropped at its next packet (else it runs on).
    pub expire_nodest_conn: bool,
    /// Health of every real server in `services` (slot order: see
    /// [`crate::health`]), updated in place by the health checkers.
    pub health: crate::health::Health,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_link_uses_the_prefix() {
        let i = Interface { port: 0, mac: MacAddr::ZERO, addr: Ipv4Addr::new(198, 18, 0, 2), prefix_len: 24, mtu: 1500, kernel: false };
        assert!(i.on_link(Ipv4Addr::new(198, 18, 0, 200)));
        assert!(!i.on_link(Ipv4Addr::new(198, 18, 1, 2)));
        let all = Interface { prefix_len: 0, ..i.clone() };
        assert_eq!(all.mtu, 1500);
        assert!(all.on_link(Ipv4Addr::new(1, 2, 3, 4)));
        let host = Interface { prefix_len: 32, ..i };
        assert!(!host.on_link(Ipv4Addr::new(198, 18, 0, 3)));
    }
}
