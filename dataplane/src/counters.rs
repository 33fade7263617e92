//! Per-core counters: one writer (the worker), read by anyone.
//!
//! Each counter is an `AtomicU64` updated with a relaxed load and store (a
//! plain add, no locked instruction): only the owning core writes, so no
//! update is lost, and readers on other threads see a value that is at most
//! a few packets old without undefined behaviour.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a frame was dropped. Every drop has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or spread over several mbufs.
    MalformedFrame,
    /// Unicast to another MAC address.
    NotOurMac,
    /// Not IPv4 or ARP (IPv6, VLAN-tagged, ...).
    UnsupportedEthertype,
    MalformedArp,
    /// ARP for an address we do not own, or an unsolicited reply.
    ArpNotForUs,
    MalformedIpv4,
    BadIpv4Checksum,
    Fragment,
    /// IPv4 to an address that is neither a VIP nor ours.
    NotForUs,
    /// To the LB's own address, and its interface has no exception path.
    LocalAddress,
    /// Not TCP or UDP.
    UnsupportedProtocol,
    MalformedL4,
    /// To a VIP, but no service on that protocol and port.
    NoService,
    /// TCP without SYN and no connection: not ours to start.
    TcpNoConnection,
    /// The scheduler found no eligible real server.
    NoRealServer,
    /// The real server's MAC is not known yet (an ARP request is on its way).
    NeighborUnresolved,
    /// The connection table is at capacity.
    ConnTableFull,
    /// The tx queue was full: the unsent tail of a burst.
    TxQueueFull,
    /// No mbuf could be allocated (generated frames only).
    NoMbuf,
    /// FullNAT: every local address and port of this core is in use.
    NoLocalPort,
    /// The owning core's redirect ring was full.
    RedirectRingFull,
    /// TUN: too big for the egress MTU once encapsulated, DF not set (RVS
    /// does not fragment).
    TooBig,
    /// TUN: no headroom in the buffer for the outer header.
    NoHeadroom,
    /// An ICMP error about no connection of ours (or a DR/TUN one, whose
    /// replies never pass here).
    IcmpNoConnection,
    /// The connection's real server was removed and `expire_nodest_conn`
    /// is on: the connection is dropped.
    DestRemoved,
    /// The kernel's TAP did not take a frame for it (its queue was full).
    KernelQueueFull,
    /// The port refused frames while its link was down.
    LinkDown,
}

impl DropReason {
    pub const COUNT: usize = 27;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::MalformedFrame,
        DropReason::NotOurMac,
        DropReason::UnsupportedEthertype,
        DropReason::MalformedArp,
        DropReason::ArpNotForUs,
        DropReason::MalformedIpv4,
        DropReason::BadIpv4Checksum,
        DropReason::Fragment,
        DropReason::NotForUs,
        DropReason::LocalAddress,
        DropReason::UnsupportedProtocol,
        DropReason::MalformedL4,
        DropReason::NoService,
        DropReason::TcpNoConnection,
        DropReason::NoRealServer,
        DropReason::NeighborUnresolved,
        DropReason::ConnTableFull,
        DropReason::TxQueueFull,
        DropReason::NoMbuf,
        DropReason::NoLocalPort,
        DropReason::RedirectRingFull,
        DropReason::TooBig,
        DropReason::NoHeadroom,
        DropReason::IcmpNoConnection,
        DropReason::DestRemoved,
        DropReason::KernelQueueFull,
        DropReason::LinkDown,
    ];

    /// The label used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::MalformedFrame => "malformed_frame",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::MalformedArp => "malformed_arp",
            DropReason::ArpNotForUs => "arp_not_for_us",
            DropReason::MalformedIpv4 => "malformed_ipv4",
            DropReason::BadIpv4Checksum => "bad_ipv4_checksum",
            DropReason::Fragment => "fragment",
            DropReason::NotForUs => "not_for_us",
            DropReason::LocalAddress => "local_address",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::MalformedL4 => "malformed_l4",
            DropReason::NoService => "no_service",
            DropReason::TcpNoConnection => "tcp_no_connection",
            DropReason::NoRealServer => "no_real_server",
            DropReason::NeighborUnresolved => "neighbor_unresolved",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::NoLocalPort => "no_local_port",
            DropReason::RedirectRingFull => "redirect_ring_full",
            DropReason::TooBig => "too_big",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::IcmpNoConnection => "icmp_no_connection",
            DropReason::DestRemoved => "dest_removed",
            DropReason::KernelQueueFull => "kernel_queue_full",
            DropReason::LinkDown => "link_down",
        }
    }
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning core may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Overwrites the value (a gauge). Only the owning core may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One worker core's counters, on their own cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CoreCounters {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
    pub forwarded: Counter,
    pub arp_replies_sent: Counter,
    pub arp_requests_sent: Counter,
    pub arp_learned: Counter,
    pub conns_created: Counter,
    pub conns_expired: Counter,
    pub conns_active: Counter,
    /// FullNAT: TOA options inserted, and segments that had no room for one.
    pub toa_inserted: Counter,
    pub toa_skipped: Counter,
    /// Packets handed to the core owning their connection, and received so.
    pub redirected: Counter,
    pub redirected_in: Counter,
    /// TUN: ICMP "fragmentation needed" sent to clients.
    pub icmp_frag_needed: Counter,
    /// ICMP errors about NAT/FullNAT connections, translated and forwarded.
    pub icmp_forwarded: Counter,
    /// Pings to VIPs and FullNAT local addresses answered.
    pub icmp_echo_replies: Counter,
    /// Gratuitous ARPs sent for our addresses.
    pub garp_sent: Counter,
    /// The exception path: frames handed to the kernel's TAP interfaces,
    /// and frames the kernel sent out through the data ports.
    pub to_kernel: Counter,
    pub from_kernel: Counter,
    /// Poll loop iterations that found packets, and that found none.
    pub polls_busy: Counter,
    pub polls_idle: Counter,
    /// Nanoseconds spent in the iterations that found packets: the share
    /// of the core's time its traffic takes (the rest it polled empty
    /// queues or slept), and the packets it forwarded over this time are
    /// what it can forward at most.
    pub busy_ns: Counter,
    /// Configurations applied by reload, and reloads this core refused.
    pub reloads: Counter,
    pub reload_errors: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl CoreCounters {
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    #[inline]
    pub fn drops_add(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }

    /// One line, `key=value` pairs, for logs and tests.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "rx={} tx={} forwarded={} arp_replies={} arp_requests={} arp_learned={} conns_created={} conns_expired={} conns_active={} toa_inserted={} toa_skipped={} redirected={} redirected_in={} icmp_frag_needed={} icmp_forwarded={} icmp_echo_replies={} garp_sent={} to_kernel={} from_kernel={} reloads={} reload_errors={} polls_busy={} polls_idle={} busy_ns={}",
            self.rx_packets.get(),
            self.tx_packets.get(),
            self.forwarded.get(),
            self.arp_replies_sent.get(),
            self.arp_requests_sent.get(),
            self.arp_learned.get(),
            self.conns_created.get(),
            self.conns_expired.get(),
            self.conns_active.get(),
            self.toa_inserted.get(),
            self.toa_skipped.get(),
            self.redirected.get(),
            self.redirected_in.get(),
            self.icmp_frag_needed.get(),
            self.icmp_forwarded.get(),
            self.icmp_echo_replies.get(),
            self.garp_sent.get(),
            self.to_kernel.get(),
            self.from_kernel.get(),
            self.reloads.get(),
            self.reload_errors.get(),
            self.polls_busy.get(),
            self.polls_idle.get(),
            self.busy_ns.get(),
        );
        for r in DropReason::ALL {
            let n = self.drops(r);
            if n > 0 {
                s.push_str(&format!(" drop_{}={n}", r.name()));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_reasons_are_listed_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn counts_and_summarises() {
        let c = CoreCounters::default();
        c.rx_packets.add(3);
        c.count_drop(DropReason::NoService);
        c.drops_add(DropReason::TxQueueFull, 2);
        assert_eq!(c.total_drops(), 3);
        let s = c.summary();
        assert!(s.starts_with("rx=3 tx=0"), "{s}");
        assert!(s.ends_with("drop_no_service=1 drop_tx_queue_full=2"), "{s}");
    }
}
