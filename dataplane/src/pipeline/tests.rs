use super::*;
use crate::config::{ArpTimers, Interface, RealServer, Service, Timeouts};
use proptest::prelude::*;
use proto::l4::tcp_flags::*;
use sched::{SchedulerKind, SchedulerSpec};

const SEC: u64 = 1_000_000_000;
const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 10]);
const RS1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 11]);
const RS2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 12]);
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const RS1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const RS2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn snapshot(scheduler: SchedulerKind, w1: u32, w2: u32, max_conns: usize) -> Arc<Snapshot> {
    let reals = vec![RealServer::new(RS1, w1), RealServer::new(RS2, w2)];
    let scheduler = SchedulerSpec::new(scheduler);
    Arc::new(Snapshot {
        max_connections_per_core: max_conns,
        ..Snapshot::new(
            vec![Interface { port: 0, mac: LB_MAC, addr: LB_IP, prefix_len: 24, mtu: 1500, kernel: false }],
            vec![
                Service {
                    proto: L4Proto::Tcp,
                    vip: VIP,
                    port: 80,
                    scheduler,
                    persistence: None,
                    mode: ForwardingMode::DirectRoute,
                    local_addrs: vec![],
                    reals: reals.clone(),
                },
                Service {
                    proto: L4Proto::Udp,
                    vip: VIP,
                    port: 53,
                    scheduler,
                    persistence: None,
                    mode: ForwardingMode::DirectRoute,
                    local_addrs: vec![],
                    reals,
                },
            ],
        )
    })
}

fn pipeline(scheduler: SchedulerKind, w1: u32, w2: u32) -> Pipeline {
    Pipeline::new(snapshot(scheduler, w1, w2, 1024), Arc::default()).unwrap()
}

fn arp_frame(op: u16, sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    arp::write_request(&mut f, sender_mac, sender_ip, target_ip).unwrap();
    f[20..22].copy_from_slice(&op.to_be_bytes());
    if op == arp::OP_REPLY {
        f[0..6].copy_from_slice(&LB_MAC.0);
        f[32..38].copy_from_slice(&LB_MAC.0);
    }
    f
}

fn resolved(scheduler: SchedulerKind, w1: u32, w2: u32) -> Pipeline {
    let mut p = pipeline(scheduler, w1, w2);
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        let mut f = arp_frame(arp::OP_REPLY, mac, ip, LB_IP);
        assert_eq!(p.process(0, &mut f, 0), Action::Consumed);
    }
    p
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    tcp_carrying(sport, dport, flags, b"hello")
}

/// A client's TCP segment to the VIP with `flags` (SYN, ACK, FIN, RST) and `data`.
fn tcp_carrying(sport: u16, dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC.0, LB_MAC.0).ipv4(CLIENT.octets(), VIP.octets(), 64);
    let mut b = b.tcp(sport, dport, 1000, 65535);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(1);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    udp_carrying(sport, dport, b"query")
}

fn udp_carrying(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC.0, LB_MAC.0).ipv4(CLIENT.octets(), VIP.octets(), 64).udp(sport, dport);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

/// The ARP frames one pass of [`Pipeline::arp_requests`] sends: (port,
/// sender address, target address); the sender is the target in an
/// announcement (gratuitous ARP).
fn arp_sent(p: &mut Pipeline) -> Vec<(u16, Ipv4Addr, Ipv4Addr)> {
    let mut sent = Vec::new();
    p.arp_requests(
        0,
        || Some(vec![0u8; 64]),
        |port, buf, len| {
            let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
            let a = ArpPacket::new_checked(eth.payload()).unwrap();
            sent.push((port, a.sender_ip(), a.target_ip()));
        },
    );
    sent
}

/// The ports one pass announced on, one entry per gratuitous ARP.
fn garps_by_port(p: &mut Pipeline) -> Vec<u16> {
    arp_sent(p).into_iter().filter(|&(_, sender, target)| sender == target).map(|(port, ..)| port).collect()
}

fn dst_mac(f: &[u8]) -> MacAddr {
    MacAddr(f[0..6].try_into().unwrap())
}

#[test]
fn answers_arp_for_vip_and_own_address_only() {
    let mut p = pipeline(SchedulerKind::Rr, 1, 1);
    for target in [VIP, LB_IP] {
        let mut f = arp_frame(arp::OP_REQUEST, CLIENT_MAC, CLIENT, target);
        assert_eq!(p.process(0, &mut f, 0), Action::Transmit { port: 0 });
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let a = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!((a.operation(), a.sender_ip(), a.sender_mac()), (arp::OP_REPLY, target, LB_MAC));
        assert_eq!((a.target_ip(), a.target_mac(), eth.dst()), (CLIENT, CLIENT_MAC, CLIENT_MAC));
    }
    let mut f = arp_frame(arp::OP_REQUEST, CLIENT_MAC, CLIENT, RS1);
    assert_eq!(p.process(0, &mut f, 0), Action::Drop(DropReason::ArpNotForUs));
    assert_eq!(p.counters().arp_replies_sent.get(), 2);
    assert_eq!(p.counters().drops(DropReason::ArpNotForUs), 1);
}

#[test]
fn gratuitous_arp_is_never_answered() {
    let mut p = pipeline(SchedulerKind::Rr, 1, 1);
    // Someone announcing the VIP (or our own announcement looped back).
    let mut f = vec![0u8; 60];
    arp::write_gratuitous(&mut f, CLIENT_MAC, VIP).unwrap();
    assert_eq!(p.process(0, &mut f, 0), Action::Drop(DropReason::ArpNotForUs));
    assert_eq!(p.counters().arp_replies_sent.get(), 0);
}

#[test]
fn resolves_real_servers_by_arp_before_forwarding() {
    let mut p = pipeline(SchedulerKind::Rr, 1, 1);
    let mut f = tcp(40000, 80, SYN);
    assert_eq!(p.process(0, &mut f, 0), Action::Drop(DropReason::NeighborUnresolved));
    let mut sent = Vec::new();
    p.arp_requests(0, || Some(vec![0u8; 64]), |port, buf, len| sent.push((port, buf[..len].to_vec())));
    // First the announcement of the VIP (sender = target), then the requests.
    let garp = sent.remove(0);
    let eth = EthernetFrame::new_checked(&garp.1[..]).unwrap();
    let a = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!((a.sender_ip(), a.target_ip(), a.sender_mac()), (VIP, VIP, LB_MAC));
    assert_eq!(p.counters().garp_sent.get(), 1);
    assert_eq!(sent.len(), 2);
    let mut targets: Vec<Ipv4Addr> = sent
        .iter()
        .map(|(_, f)| {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            assert!(eth.dst().is_broadcast());
            let a = ArpPacket::new_checked(eth.payload()).unwrap();
            assert_eq!((a.sender_ip(), a.sender_mac()), (LB_IP, LB_MAC));
            a.target_ip()
        })
        .collect();
    targets.sort();
    assert_eq!(targets, [RS1, RS2]);
    // Replies arrive: the retried SYN of the same flow now goes to its server.
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        let mut r = arp_frame(arp::OP_REPLY, mac, ip, LB_IP);
        assert_eq!(p.process(0, &mut r, SEC), Action::Consumed);
    }
    assert_eq!(p.counters().arp_learned.get(), 2);
    let mut f = tcp(40000, 80, SYN);
    assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
    assert_eq!(dst_mac(&f), RS1_MAC);
    // Out of buffers: counted, nothing sent (1 announcement + 2 requests).
    let mut p = pipeline(SchedulerKind::Rr, 1, 1);
    p.arp_requests(0, || None::<Vec<u8>>, |_, _, _| panic!("nothing to send"));
    assert_eq!(p.counters().drops(DropReason::NoMbuf), 3);
}

#[test]
fn dr_rewrites_only_the_macs() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let mut f = tcp(40000, 80, SYN);
    let before = f.clone();
    assert_eq!(p.process(0, &mut f, 0), Action::Transmit { port: 0 });
    assert_eq!(dst_mac(&f), RS1_MAC);
    assert_eq!(&f[6..12], &LB_MAC.0);
    assert_eq!(&f[12..], &before[12..], "IP packet untouched");
    assert_eq!(p.counters().forwarded.get(), 1);
    assert_eq!(p.counters().conns_created.get(), 1);
}

#[test]
fn a_connection_sticks_to_its_server() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let mut first = tcp(40000, 80, SYN);
    p.process(0, &mut first, 0);
    let other = if dst_mac(&first) == RS1_MAC { RS2_MAC } else { RS1_MAC };
    // Another connection in between moves the rr cursor.
    let mut f = tcp(40001, 80, SYN);
    p.process(0, &mut f, 0);
    assert_eq!(dst_mac(&f), other);
    for flags in [ACK, ACK | PSH, FIN | ACK, ACK] {
        let mut f = tcp(40000, 80, flags);
        assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
        assert_eq!(dst_mac(&f), dst_mac(&first));
    }
    assert_eq!(p.connections(), 2);
}

#[test]
fn wrr_one_to_two_over_new_connections() {
    let mut p = resolved(SchedulerKind::Wrr, 1, 2);
    let mut counts = [0; 2];
    for port in 0..300u16 {
        let mut f = tcp(10000 + port, 80, SYN);
        assert_eq!(p.process(0, &mut f, 0), Action::Transmit { port: 0 });
        counts[usize::from(dst_mac(&f) == RS2_MAC)] += 1;
    }
    assert_eq!(counts, [100, 200]);
}

#[test]
fn udp_flows_are_balanced_and_sticky() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let mut a = udp(5000, 53);
    let mut b = udp(5001, 53);
    p.process(0, &mut a, 0);
    p.process(0, &mut b, 0);
    assert_ne!(dst_mac(&a), dst_mac(&b));
    let mut a2 = udp(5000, 53);
    p.process(0, &mut a2, SEC);
    assert_eq!(dst_mac(&a2), dst_mac(&a));
}

#[test]
fn quiescent_server_gets_no_new_connections() {
    let mut p = resolved(SchedulerKind::Wrr, 0, 1);
    for port in 0..10u16 {
        let mut f = tcp(20000 + port, 80, SYN);
        p.process(0, &mut f, 0);
        assert_eq!(dst_mac(&f), RS2_MAC);
    }
    let mut p = resolved(SchedulerKind::Rr, 0, 0);
    let mut f = tcp(20000, 80, SYN);
    assert_eq!(p.process(0, &mut f, 0), Action::Drop(DropReason::NoRealServer));
}

#[test]
fn connections_expire_and_table_capacity_is_enforced() {
    let mut p = Pipeline::new(snapshot(SchedulerKind::Rr, 1, 1, 2), Arc::default()).unwrap();
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 0);
    }
    for port in [1u16, 2] {
        assert_eq!(p.process(0, &mut tcp(port, 80, SYN), 0), Action::Transmit { port: 0 });
    }
    assert_eq!(p.process(0, &mut tcp(3, 80, SYN), 0), Action::Drop(DropReason::ConnTableFull));
    // Established connections still work when full.
    assert_eq!(p.process(0, &mut tcp(1, 80, ACK), SEC), Action::Transmit { port: 0 });
    // Keep the neighbors alive, then let the SYN_RECV one (60 s) expire.
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 59 * SEC);
    }
    p.tick(61 * SEC);
    assert_eq!(p.connections(), 1);
    assert_eq!(p.counters().conns_expired.get(), 1);
    assert_eq!(p.counters().conns_active.get(), 1);
    assert_eq!(p.process(0, &mut tcp(3, 80, SYN), 61 * SEC), Action::Transmit { port: 0 });
}

#[test]
fn prefetching_is_a_hint_any_frame_will_do() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let mut f = udp(1, 53);
    assert_eq!(p.process(0, &mut f, 0), Action::Transmit { port: 0 });
    for f in [vec![], vec![0u8; 37], udp(1, 53), udp(2, 53), tcp(1, 80, SYN)] {
        let hint = p.prefetch_entry(p.prefetch_index(&f));
        // A hint for one frame, given with another, changes nothing.
        let mut g = udp(1, 53);
        let (mut head, mut len) = (0, g.len());
        assert_eq!(p.process_hinted(0, &mut g, &mut head, &mut len, SEC, Received { hint, ip_checksum_good: false }), Action::Transmit { port: 0 });
    }
    // Nothing changed: the connection is still the only one, still found.
    assert_eq!(p.connections(), 1);
    assert_eq!(p.process(0, &mut udp(1, 53), SEC), Action::Transmit { port: 0 });
    assert_eq!(p.counters().conns_created.get(), 1);
}

/// Refreshed a slice at a time (any budget), the view comes out as made
/// whole at once; refreshed again in place, it keeps its vectors (no
/// allocation), and a smaller budget only takes more calls.
#[test]
fn a_view_refreshed_in_slices_is_the_whole_view() {
    let mut p = resolved(SchedulerKind::Rr, 1, 2);
    for n in 0..10 {
        p.process(0, &mut tcp(40_000 + n, 80, SYN), 1);
        p.process(0, &mut udp(40_000 + n, 53), 1);
    }
    let whole = p.view(5);
    assert!(whole.services.len() >= 2 && whole.services.iter().all(|s| !s.dests.is_empty()), "services with servers: {whole:?}");
    assert!(whole.services.iter().flat_map(|s| &s.dests).any(|d| d.conns > 0), "counts copied");
    for budget in [0, 1, 2, 3, 100] {
        let mut view = crate::view::CoreView::default();
        let mut next = 0;
        let mut calls = 0;
        while !p.refresh_view(&mut view, &mut next, budget, 5) {
            calls += 1;
            assert!(calls < 100, "budget {budget}: never done");
        }
        assert_eq!(view, whole, "budget {budget}");
        assert_eq!(next, 0);
        if budget < 2 {
            assert!(calls >= whole.services.len() - 1, "budget {budget}: a service per call ({calls} calls)");
        }
        // Again, in place: the same vectors.
        let (outer, inner): (_, Vec<_>) = (view.services.as_ptr(), view.services.iter().map(|s| s.dests.as_ptr()).collect());
        while !p.refresh_view(&mut view, &mut next, budget, 6) {}
        assert_eq!(view.at, 6);
        assert_eq!(
            (view.services.as_ptr(), view.services.iter().map(|s| s.dests.as_ptr()).collect::<Vec<_>>()),
            (outer, inner),
            "budget {budget}: reallocated"
        );
    }
}

#[test]
fn bad_and_foreign_input_is_counted_not_forwarded() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let drop = |p: &mut Pipeline, mut f: Vec<u8>| p.process(0, &mut f, 0);

    assert_eq!(drop(&mut p, vec![0u8; 10]), Action::Drop(DropReason::MalformedFrame));
    let mut f = tcp(1, 80, SYN);
    f[0..6].copy_from_slice(&RS1_MAC.0);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::NotOurMac));
    let mut f = tcp(1, 80, SYN);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::UnsupportedEthertype));
    let mut f = tcp(1, 80, SYN);
    f[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::UnsupportedEthertype));
    let f = tcp(1, 80, SYN);
    assert_eq!(drop(&mut p, f[..30].to_vec()), Action::Drop(DropReason::MalformedIpv4));
    let mut f = tcp(1, 80, SYN);
    f[14 + 8] = 1; // TTL changed, checksum now wrong
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::BadIpv4Checksum));
    let mut f = tcp(1, 80, SYN);
    f[14 + 6] = 0x20; // MF
    fix_ip_checksum(&mut f);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::Fragment));
    let mut f = tcp(1, 80, SYN);
    f[14 + 19] = 99; // destination 198.18.0.99
    fix_ip_checksum(&mut f);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::NotForUs));
    let mut f = tcp(1, 80, SYN);
    f[14 + 19] = 2; // the LB's own address
    fix_ip_checksum(&mut f);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::LocalAddress));
    let mut f = tcp(1, 80, SYN);
    f[14 + 9] = protocol::ICMP;
    fix_ip_checksum(&mut f);
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::UnsupportedProtocol));
    let mut f = tcp(1, 80, SYN);
    f[14 + 20 + 12] = 0x20; // TCP data offset 2
    assert_eq!(drop(&mut p, f), Action::Drop(DropReason::MalformedL4));
    assert_eq!(drop(&mut p, tcp(1, 81, SYN)), Action::Drop(DropReason::NoService));
    assert_eq!(drop(&mut p, udp(1, 80)), Action::Drop(DropReason::NoService));
    assert_eq!(drop(&mut p, tcp(1, 80, ACK)), Action::Drop(DropReason::TcpNoConnection));
    assert_eq!(p.counters().total_drops(), 14);
    assert_eq!(p.counters().forwarded.get(), 0);
}

/// The DR snapshot with an exception path and a health board.
fn kernel_snapshot() -> (Arc<Snapshot>, Arc<crate::health::HealthBoard>) {
    let mut s = (*snapshot(SchedulerKind::Rr, 1, 1, 1024)).clone();
    s.interfaces[0].kernel = true;
    let board = Arc::new(crate::health::HealthBoard::all_up(&s.services));
    s.health = crate::health::Health(Arc::clone(&board));
    (Arc::new(s), board)
}

/// `f` sent to `dst` instead, checksum fixed.
fn to_addr(mut f: Vec<u8>, dst: Ipv4Addr) -> Vec<u8> {
    f[14 + 16..14 + 20].copy_from_slice(&dst.octets());
    fix_ip_checksum(&mut f);
    f
}

#[test]
fn the_exception_path_gets_what_is_ours_and_not_balanced() {
    let (s, _) = kernel_snapshot();
    let mut p = Pipeline::new(s, Arc::default()).unwrap();
    // TCP (any flags: the kernel's own connections), UDP, fragments, ICMP
    // and other protocols to the interface address: all the kernel's.
    for f in [tcp(22, 22, SYN), tcp(50000, 22, ACK), udp(5000, 161)] {
        assert_eq!(p.process(0, &mut to_addr(f, LB_IP), 0), Action::ToKernel);
    }
    let mut frag = to_addr(tcp(1, 80, SYN), LB_IP);
    frag[14 + 6] = 0x20;
    fix_ip_checksum(&mut frag);
    assert_eq!(p.process(0, &mut frag, 0), Action::ToKernel);
    let echo = etherparse::PacketBuilder::ethernet2(CLIENT_MAC.0, LB_MAC.0).ipv4(CLIENT.octets(), LB_IP.octets(), 64).icmpv4_echo_request(1, 1);
    let mut ping = Vec::new();
    echo.write(&mut ping, b"ping").unwrap();
    assert_eq!(p.process(0, &mut ping.clone(), 0), Action::ToKernel);
    let mut ospf = to_addr(tcp(1, 2, SYN), LB_IP);
    ospf[14 + 9] = 89;
    fix_ip_checksum(&mut ospf);
    assert_eq!(p.process(0, &mut ospf, 0), Action::ToKernel);
    // Not the kernel's: other addresses; and pings to the VIP, which the
    // data plane answers itself.
    assert_eq!(p.process(0, &mut to_addr(tcp(1, 22, SYN), Ipv4Addr::new(198, 18, 0, 99)), 0), Action::Drop(DropReason::NotForUs));
    let mut vip_ping = to_addr(ping, VIP);
    assert_eq!(p.process(0, &mut vip_ping, 0), Action::Transmit { port: 0 });
    assert_eq!((dst_mac(&vip_ping), vip_ping[14 + 20]), (CLIENT_MAC, proto::icmp::v4_type::ECHO_REPLY));
    assert_eq!((&vip_ping[14 + 12..14 + 16], &vip_ping[14 + 16..14 + 20]), (&VIP.octets()[..], &CLIENT.octets()[..]));
    assert_eq!(p.counters().icmp_echo_replies.get(), 1);
    // ARP: we answer requests for our address ourselves; replies to it are
    // learned AND given to the kernel, which may be resolving too.
    let mut req = arp_frame(arp::OP_REQUEST, CLIENT_MAC, CLIENT, LB_IP);
    assert_eq!(p.process(0, &mut req, 0), Action::Transmit { port: 0 });
    let mut reply = arp_frame(arp::OP_REPLY, RS1_MAC, RS1, LB_IP);
    assert_eq!(p.process(0, &mut reply, 0), Action::ToKernel);
    assert_eq!(p.neighbor(RS1, 0), Some(RS1_MAC));
    // Load-balanced traffic is untouched by all this.
    let mut reply = arp_frame(arp::OP_REPLY, RS2_MAC, RS2, LB_IP);
    p.process(0, &mut reply, 0);
    assert_eq!(p.process(0, &mut tcp(1000, 80, SYN), 0), Action::Transmit { port: 0 });
    assert_eq!(p.counters().total_drops(), 1);
}

#[test]
fn health_board_changes_scheduling_without_a_reload() {
    let (s, board) = kernel_snapshot();
    let shared = Arc::new(crate::neighbor::SharedNeighbors::new(Pipeline::wanted_neighbors(&s)));
    let mut p = Pipeline::with_neighbors(Arc::clone(&s), Arc::default(), Arc::clone(&shared)).unwrap();
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 0);
    }
    // A connection to RS1 exists before RS1 fails its checks.
    let mut first = tcp(30000, 80, SYN);
    p.process(0, &mut first, 0);
    let (rs_first, rs_other) = if dst_mac(&first) == RS1_MAC { (0usize, RS2_MAC) } else { (1, RS1_MAC) };
    // Slot of the TCP service's server that got it: service 0 -> slots 0, 1.
    assert!(board.set(rs_first, false));
    p.tick(SEC);
    for port in 0..10u16 {
        let mut f = tcp(31000 + port, 80, SYN);
        assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
        assert_eq!(dst_mac(&f), rs_other, "down servers get no new connections");
    }
    // Its existing connection carries on (as IPVS with a weight-0 server).
    let mut f = tcp(30000, 80, ACK);
    assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
    assert_eq!(dst_mac(&f), dst_mac(&first));
    // Once it closes, a new connection from the same client port is a
    // new connection: scheduled afresh, away from the down server.
    p.process(0, &mut tcp(30000, 80, FIN | ACK), SEC);
    let created = p.counters().conns_created.get();
    let mut again = tcp(30000, 80, SYN);
    assert_eq!(p.process(0, &mut again, SEC), Action::Transmit { port: 0 });
    assert_eq!(dst_mac(&again), rs_other, "a reused port is not tied to the old server");
    assert_eq!(p.counters().conns_created.get(), created + 1);
    // The UDP service's servers (slots 2, 3) are unaffected.
    let mut seen = hashbrown::HashSet::new();
    for port in 0..4u16 {
        let mut f = udp(6000 + port, 53);
        p.process(0, &mut f, SEC);
        seen.insert(dst_mac(&f));
    }
    assert_eq!(seen.len(), 2);
    // Both down: nothing to schedule, counted.
    board.set(1 - rs_first, false);
    p.tick(2 * SEC);
    assert_eq!(p.process(0, &mut tcp(32000, 80, SYN), 2 * SEC), Action::Drop(DropReason::NoRealServer));
    // Back up: scheduled again.
    board.set(rs_first, true);
    board.set(1 - rs_first, true);
    p.tick(3 * SEC);
    let mut macs = hashbrown::HashSet::new();
    for port in 0..4u16 {
        let mut f = tcp(33000 + port, 80, SYN);
        p.process(0, &mut f, 3 * SEC);
        macs.insert(dst_mac(&f));
    }
    assert_eq!(macs.len(), 2);

    // A reload brings its own board; a server down on it stays down, and
    // the old board no longer matters.
    let mut s2 = (*s).clone();
    let board2 = Arc::new(crate::health::HealthBoard::new([false, true, true, true]));
    s2.health = crate::health::Health(Arc::clone(&board2));
    let nb = Arc::new(Pipeline::neighbors_for_reload(&shared, &s2));
    p.apply(Arc::new(s2), nb).unwrap();
    board.set(1, false);
    p.tick(4 * SEC);
    for port in 0..4u16 {
        let mut f = tcp(34000 + port, 80, SYN);
        p.process(0, &mut f, 4 * SEC);
        assert_eq!(dst_mac(&f), RS2_MAC);
    }
}

/// A frame of the common shape whose IPv4 header checksum the port
/// checked and found right (receive checksum offload) is not checked
/// again: taken even with a wrong one (a corruption after the port's
/// check is not ours to find); from a port that did not check, the same
/// frame is a counted drop. (Frames of other shapes, such as a UDP
/// datagram too short for the one-pass parser, are checked anyway.)
#[test]
fn the_ports_checksum_verdict_is_taken() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    for (sport, checked) in [(41000, true), (41001, false)] {
        let mut f = udp_carrying(sport, 53, &[0; 18]);
        f[14 + 8] = 1; // TTL changed, checksum now wrong
        let (mut head, mut len) = (0, f.len());
        let got = p.process_hinted(0, &mut f, &mut head, &mut len, SEC, Received { hint: Hint::NONE, ip_checksum_good: checked });
        if checked {
            assert!(matches!(got, Action::Transmit { .. }), "{got:?}");
        } else {
            assert_eq!(got, Action::Drop(DropReason::BadIpv4Checksum));
        }
    }
    assert_eq!(p.counters().drops(DropReason::BadIpv4Checksum), 1);
    // A right checksum: the same either way.
    for (sport, checked) in [(42000, true), (42001, false)] {
        let mut f = udp_carrying(sport, 53, &[0; 18]);
        let (mut head, mut len) = (0, f.len());
        assert!(matches!(
            p.process_hinted(0, &mut f, &mut head, &mut len, SEC, Received { hint: Hint::NONE, ip_checksum_good: checked }),
            Action::Transmit { .. }
        ));
    }
}

fn fix_ip_checksum(f: &mut [u8]) {
    let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
    ip.fill_checksum();
}

#[test]
fn rejects_real_servers_off_link_and_duplicate_services() {
    let mut s = (*snapshot(SchedulerKind::Rr, 1, 1, 8)).clone();
    s.services[0].reals[0].addr = Ipv4Addr::new(203, 0, 113, 5);
    let e = Pipeline::new(Arc::new(s), Arc::default()).unwrap_err();
    assert!(e.0.contains("203.0.113.5"), "{e}");
    let mut s = (*snapshot(SchedulerKind::Rr, 1, 1, 8)).clone();
    s.services[1].proto = L4Proto::Tcp;
    s.services[1].port = 80;
    assert!(Pipeline::new(Arc::new(s), Arc::default()).unwrap_err().0.contains("duplicate"));
}

#[test]
fn scheduler_counts_follow_tcp_states_and_expiry() {
    let mut p = resolved(SchedulerKind::Lc, 1, 1);
    assert_eq!(p.process(0, &mut tcp(1, 80, SYN), 0), Action::Transmit { port: 0 });
    let d = |p: &Pipeline| (p.pool(0).dest(0).active, p.pool(0).dest(0).inactive);
    assert_eq!(d(&p), (0, 1), "SYN_RECV counts as inactive, as in IPVS");
    p.process(0, &mut tcp(1, 80, ACK), SEC);
    assert_eq!(d(&p), (1, 0), "ESTABLISHED is active");
    p.process(0, &mut tcp(1, 80, FIN | ACK), 2 * SEC);
    assert_eq!(d(&p), (0, 1));
    // FIN_WAIT lasts 120 s; after that the sweep releases the count.
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 100 * SEC);
    }
    p.tick(123 * SEC);
    assert_eq!(d(&p), (0, 0));
    // A connection refused by a full table releases its count too.
    let mut p = Pipeline::new(snapshot(SchedulerKind::Lc, 1, 1, 1), Arc::default()).unwrap();
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 0);
    }
    p.process(0, &mut udp(1, 53), 0);
    assert_eq!(p.process(0, &mut tcp(2, 80, SYN), 0), Action::Drop(DropReason::ConnTableFull));
    let total: u32 = p.pool(0).dests().iter().map(|d| d.active + d.inactive).sum();
    assert_eq!(total, 0, "the TCP service holds no phantom connection");
}

#[test]
fn persistent_service_keeps_a_client_on_one_server() {
    let mut s = (*snapshot(SchedulerKind::Rr, 1, 1, 1024)).clone();
    s.services[0].persistence = Some(sched::PersistenceConfig::new(300));
    let mut p = Pipeline::new(Arc::new(s), Arc::default()).unwrap();
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 0);
    }
    let mut first = tcp(40000, 80, SYN);
    p.process(0, &mut first, 0);
    for port in 40001..40020 {
        let mut f = tcp(port, 80, SYN);
        assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
        assert_eq!(dst_mac(&f), dst_mac(&first), "rr would alternate; persistence must not");
    }
    assert_eq!(p.pool(0).templates(), 1);
}

#[test]
fn thresholds_are_shared_among_cores() {
    let mut s = (*snapshot(SchedulerKind::Rr, 1, 1, 1024)).clone();
    s.worker_cores = 2;
    s.services[0].reals[0].upper_threshold = 5; // 3 per core (rounded up)
    let mut p = Pipeline::new(Arc::new(s), Arc::default()).unwrap();
    for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2)] {
        p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), 0);
    }
    let mut to_rs1 = 0;
    for port in 0..20u16 {
        let mut f = tcp(1000 + port, 80, SYN);
        p.process(0, &mut f, 0);
        to_rs1 += usize::from(dst_mac(&f) == RS1_MAC);
    }
    assert_eq!(to_rs1, 3);
}

proptest! {
    /// Any bytes: a decision, never a panic; whatever is transmitted is ours to send.
    #[test]
    fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = resolved(SchedulerKind::Wrr, 1, 2);
        let mut f = bytes;
        let _ = p.process(0, &mut f, 0);
    }

    /// Corrupting any one byte of a valid SYN: no panic, and if the frame is
    /// still forwarded it went to a real server with our source MAC.
    #[test]
    fn corrupted_frames_never_panic(at in 0usize..59, value in any::<u8>(), cut in 0usize..60) {
        let mut p = resolved(SchedulerKind::Rr, 1, 1);
        let mut f = tcp(40000, 80, SYN);
        let at = at % f.len();
        f[at] = value;
        f.truncate(f.len() - cut.min(f.len()));
        let hint = p.prefetch_entry(p.prefetch_index(&f));
        let (mut head, mut len) = (0, f.len());
        if let Action::Transmit { port } = p.process_hinted(0, &mut f, &mut head, &mut len, 0, Received { hint, ip_checksum_good: false }) {
            prop_assert_eq!(port, 0);
            prop_assert_eq!(&f[6..12], &LB_MAC.0[..]);
        }
    }
}

mod nat_mode {
    use super::*;

    const LB0: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]); // client side, port 0
    const LB1: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]); // server side, port 1
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
    const NAT_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

    /// An rr service on the NAT VIP in `mode` (FullNAT from `LIP`).
    fn service(proto: L4Proto, port: u16, mode: ForwardingMode, reals: Vec<RealServer>) -> Service {
        let local_addrs = if mode == ForwardingMode::FullNat { vec![LIP] } else { vec![] };
        Service { proto, vip: NAT_VIP, port, scheduler: SchedulerSpec::new(SchedulerKind::Rr), persistence: None, mode, local_addrs, reals }
    }

    /// Two arms, clients on port 0 and servers on port 1, serving
    /// `services`, with the `(MAC, address)` of each server in `resolved`
    /// learned from an ARP reply.
    fn two_armed(services: Vec<Service>, resolved: &[(MacAddr, Ipv4Addr)]) -> Pipeline {
        let interfaces = vec![
            Interface { port: 0, mac: LB0, addr: Ipv4Addr::new(198, 18, 1, 2), prefix_len: 24, mtu: 1500, kernel: false },
            Interface { port: 1, mac: LB1, addr: LB_IP, prefix_len: 24, mtu: 1500, kernel: false },
        ];
        let snapshot = Snapshot { max_connections_per_core: 64, ..Snapshot::new(interfaces, services) };
        let mut p = Pipeline::new(Arc::new(snapshot), Arc::default()).unwrap();
        for &(mac, ip) in resolved {
            let mut f = arp_frame(arp::OP_REPLY, mac, ip, LB_IP);
            f[0..6].copy_from_slice(&LB1.0);
            assert_eq!(p.process(1, &mut f, 0), Action::Consumed);
        }
        p
    }

    fn nat_pipeline() -> Pipeline {
        let mut rs1 = RealServer::new(RS1, 1);
        rs1.port = Some(8080);
        let services =
            vec![service(L4Proto::Tcp, 80, ForwardingMode::Nat, vec![rs1]), service(L4Proto::Udp, 53, ForwardingMode::Nat, vec![RealServer::new(RS1, 1)])];
        two_armed(services, &[(RS1_MAC, RS1)])
    }

    fn frame(src_mac: MacAddr, dst_mac: MacAddr, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), tcp_flags: Option<u8>) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0).ipv4(src.0.octets(), dst.0.octets(), 64);
        let mut f = Vec::new();
        match tcp_flags {
            Some(fl) => {
                let mut t = b.tcp(src.1, dst.1, 1, 1000);
                if fl & SYN != 0 {
                    t = t.syn();
                }
                if fl & ACK != 0 {
                    t = t.ack(1);
                }
                if fl & FIN != 0 {
                    t = t.fin();
                }
                t.write(&mut f, b"payload").unwrap()
            }
            None => b.udp(src.1, dst.1).write(&mut f, b"payload").unwrap(),
        }
        f
    }

    /// Parses with etherparse and checks every checksum; returns
    /// (src MAC, dst MAC, src, dst).
    fn check(f: &[u8]) -> (MacAddr, MacAddr, (Ipv4Addr, u16), (Ipv4Addr, u16)) {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else { panic!() };
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!() };
        let h = ip.header();
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        let (sp, dp) = match &p.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                assert_eq!(t.to_header().calc_checksum_ipv4(&h.to_header(), t.payload()).unwrap(), t.checksum());
                (t.source_port(), t.destination_port())
            }
            Some(etherparse::TransportSlice::Udp(u)) => {
                assert_eq!(u.to_header().calc_checksum_ipv4(&h.to_header(), u.payload()).unwrap(), u.checksum());
                (u.source_port(), u.destination_port())
            }
            _ => panic!("no L4"),
        };
        (MacAddr(eth.source()), MacAddr(eth.destination()), (h.source_addr(), sp), (h.destination_addr(), dp))
    }

    #[test]
    fn dnat_in_snat_out_with_port_mapping() {
        let mut p = nat_pipeline();
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(SYN));
        assert_eq!(p.process(0, &mut syn, 0), Action::Transmit { port: 1 });
        assert_eq!(check(&syn), (LB1, RS1_MAC, (CLIENT_IP, 40000), (RS1, 8080)), "the server sees the client");
        // The server's SYN-ACK comes back through us to the client's MAC.
        let mut synack = frame(RS1_MAC, LB1, (RS1, 8080), (CLIENT_IP, 40000), Some(SYN | ACK));
        assert_eq!(p.process(1, &mut synack, SEC), Action::Transmit { port: 0 });
        assert_eq!(check(&synack), (LB0, CLIENT_MAC, (NAT_VIP, 80), (CLIENT_IP, 40000)));
        let mut ack = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(ACK));
        assert_eq!(p.process(0, &mut ack, SEC), Action::Transmit { port: 1 });
        assert_eq!(p.pool(0).dest(0).active, 1, "established");
        // UDP: request and answer.
        let mut q = frame(CLIENT_MAC, LB0, (CLIENT_IP, 5353), (NAT_VIP, 53), None);
        assert_eq!(p.process(0, &mut q, SEC), Action::Transmit { port: 1 });
        assert_eq!(check(&q).3, (RS1, 53));
        let mut a = frame(RS1_MAC, LB1, (RS1, 53), (CLIENT_IP, 5353), None);
        assert_eq!(p.process(1, &mut a, SEC), Action::Transmit { port: 0 });
        assert_eq!(check(&a).2, (NAT_VIP, 53));
    }

    #[test]
    fn replies_of_unknown_connections_are_not_forwarded() {
        let mut p = nat_pipeline();
        let mut stray = frame(RS1_MAC, LB1, (RS1, 8080), (CLIENT_IP, 40001), Some(ACK));
        assert_eq!(p.process(1, &mut stray, 0), Action::Drop(DropReason::NotForUs));
        // A reply after the connection expired is dropped too, and the
        // expiry releases the server's count.
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40002), (NAT_VIP, 80), Some(SYN));
        p.process(0, &mut syn, 0);
        let mut late = frame(RS1_MAC, LB1, (RS1, 8080), (CLIENT_IP, 40002), Some(SYN | ACK));
        assert_eq!(p.process(1, &mut late, 61 * SEC), Action::Drop(DropReason::NotForUs));
        assert_eq!(p.pool(0).dest(0).inactive + p.pool(0).dest(0).active, 0);
    }

    /// An ICMP port unreachable frame from `from` to `to` quoting the IPv4
    /// packet of `quoted_frame` (header + 8 bytes), built by etherparse.
    fn unreachable(src_mac: MacAddr, dst_mac: MacAddr, from: Ipv4Addr, to: Ipv4Addr, quoted_frame: &[u8]) -> Vec<u8> {
        let ihl = usize::from(quoted_frame[14] & 0x0f) * 4;
        let t = etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv4(from.octets(), to.octets(), 64)
            .icmpv4(t)
            .write(&mut f, &quoted_frame[14..14 + ihl + 8])
            .unwrap();
        f
    }

    #[test]
    fn icmp_errors_about_nat_connections_are_translated_both_ways() {
        let mut p = nat_pipeline();
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(SYN));
        let client_sent = syn.clone();
        p.process(0, &mut syn, 0);
        // The server reports an error about what it received (client -> RS:8080).
        let mut err = unreachable(RS1_MAC, LB1, RS1, CLIENT_IP, &syn);
        assert_eq!(p.process(1, &mut err, SEC), Action::Transmit { port: 0 });
        // The client gets it from the VIP, quoting its own packet.
        assert_eq!(err, unreachable(LB0, CLIENT_MAC, NAT_VIP, CLIENT_IP, &client_sent));
        assert_eq!(p.counters().icmp_forwarded.get(), 1);

        // A router on the client's side reports an error about our reply.
        let router = Ipv4Addr::new(198, 18, 1, 1);
        let server_sent = frame(RS1_MAC, LB1, (RS1, 8080), (CLIENT_IP, 40000), Some(SYN | ACK));
        let mut reply = server_sent.clone();
        p.process(1, &mut reply, SEC);
        let mut err = unreachable(CLIENT_MAC, LB0, router, NAT_VIP, &reply);
        assert_eq!(p.process(0, &mut err, SEC), Action::Transmit { port: 1 });
        assert_eq!(err, unreachable(LB1, RS1_MAC, router, RS1, &server_sent));

        // About no connection of ours: a counted drop.
        let stray = frame(CLIENT_MAC, LB0, (CLIENT_IP, 1), (NAT_VIP, 80), Some(SYN));
        let mut err = unreachable(RS1_MAC, LB1, RS1, CLIENT_IP, &stray);
        assert_eq!(p.process(1, &mut err, SEC), Action::Drop(DropReason::IcmpNoConnection));
    }

    const LIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

    /// An ICMP service in `mode` over RS1 and RS2 (both resolved).
    fn icmp_pipeline(mode: ForwardingMode) -> Pipeline {
        let reals = vec![RealServer::new(RS1, 1), RealServer::new(RS2, 1)];
        two_armed(vec![service(L4Proto::Icmp, 0, mode, reals)], &[(RS1_MAC, RS1), (RS2_MAC, RS2)])
    }

    fn ping(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, request: bool, id: u16) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0).ipv4(src.octets(), dst.octets(), 64);
        let mut f = Vec::new();
        if request {
            b.icmpv4_echo_request(id, 7).write(&mut f, b"ping").unwrap();
        } else {
            b.icmpv4_echo_reply(id, 7).write(&mut f, b"ping").unwrap();
        }
        f
    }

    /// (dst MAC, src, dst, identifier) of an echo, every checksum checked.
    fn read_ping(f: &[u8]) -> (MacAddr, Ipv4Addr, Ipv4Addr, u16) {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else { panic!() };
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("not ICMP") };
        assert_eq!(icmp.checksum(), icmp.icmp_type().calc_checksum(icmp.payload()));
        let id = match icmp.icmp_type() {
            etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => e.id,
            other => panic!("not an echo: {other:?}"),
        };
        (MacAddr(eth.destination()), Ipv4Addr::from(h.source), Ipv4Addr::from(h.destination), id)
    }

    #[test]
    fn an_icmp_service_balances_pings_and_nats_the_replies() {
        let mut p = icmp_pipeline(ForwardingMode::Nat);
        let mut servers = Vec::new();
        for id in 1..=4u16 {
            let mut req = ping(CLIENT_MAC, LB0, CLIENT_IP, NAT_VIP, true, id);
            assert_eq!(p.process(0, &mut req, SEC), Action::Transmit { port: 1 });
            let (mac, src, dst, rid) = read_ping(&req);
            assert_eq!((src, rid), (CLIENT_IP, id), "the server sees the client and its identifier");
            servers.push(dst);
            assert_eq!(mac, if dst == RS1 { RS1_MAC } else { RS2_MAC });
            // The same ping session sticks to its server.
            let mut again = ping(CLIENT_MAC, LB0, CLIENT_IP, NAT_VIP, true, id);
            p.process(0, &mut again, 2 * SEC);
            assert_eq!(read_ping(&again).2, dst);
            // The reply goes back from the VIP.
            let mut reply = ping(if dst == RS1 { RS1_MAC } else { RS2_MAC }, LB1, dst, CLIENT_IP, false, id);
            assert_eq!(p.process(1, &mut reply, 2 * SEC), Action::Transmit { port: 0 });
            assert_eq!(read_ping(&reply), (CLIENT_MAC, NAT_VIP, CLIENT_IP, id));
        }
        assert_eq!(servers, vec![RS1, RS2, RS1, RS2], "rr over ping sessions");
        assert_eq!(p.connections(), 4);
        assert_eq!(p.counters().icmp_echo_replies.get(), 0, "balanced, not answered");
        // A stray reply does not open anything; sessions expire after the ICMP timeout (60 s).
        let mut stray = ping(RS1_MAC, LB1, RS1, NAT_VIP, false, 0);
        assert_eq!(p.process(1, &mut stray, 3 * SEC), Action::Drop(DropReason::IcmpNoConnection));
        p.tick(61 * SEC);
        assert_eq!(p.connections(), 4);
        p.tick(63 * SEC);
        assert_eq!(p.connections(), 0);
    }

    #[test]
    fn fullnat_pings_carry_a_local_identifier() {
        let mut p = icmp_pipeline(ForwardingMode::FullNat);
        let mut req = ping(CLIENT_MAC, LB0, CLIENT_IP, NAT_VIP, true, 4242);
        assert_eq!(p.process(0, &mut req, SEC), Action::Transmit { port: 1 });
        let (_, src, dst, lid) = read_ping(&req);
        assert_eq!((src, dst), (LIP, RS1));
        let mut reply = ping(RS1_MAC, LB1, RS1, LIP, false, lid);
        assert_eq!(p.process(1, &mut reply, SEC), Action::Transmit { port: 0 });
        assert_eq!(read_ping(&reply), (CLIENT_MAC, NAT_VIP, CLIENT_IP, 4242));
        // With an ICMP service, the VIP no longer answers pings itself.
        assert_eq!(p.counters().icmp_echo_replies.get(), 0);
    }

    fn fullnat_pipeline() -> Pipeline {
        let mut rs1 = RealServer::new(RS1, 1);
        rs1.port = Some(8080);
        two_armed(vec![service(L4Proto::Tcp, 80, ForwardingMode::FullNat, vec![rs1])], &[(RS1_MAC, RS1)])
    }

    fn tcp_opts(f: &[u8]) -> Vec<u8> {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!() };
        t.options().to_vec()
    }

    #[test]
    fn fullnat_rewrites_both_ends_clamps_mss_and_adds_toa_once() {
        let mut p = fullnat_pipeline();
        let free = p.local_ports_available(0).unwrap();
        // The LB answers ARP for its local address (the server replies to it).
        let mut who = arp_frame(arp::OP_REQUEST, RS1_MAC, RS1, LIP);
        assert_eq!(p.process(1, &mut who, 0), Action::Transmit { port: 1 });

        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(SYN));
        assert_eq!(p.process(0, &mut syn, 0), Action::Transmit { port: 1 });
        let (_, dmac, src, dst) = check(&syn);
        assert_eq!((dmac, src.0, dst), (RS1_MAC, LIP, (RS1, 8080)), "the server sees the local address");
        let lport = src.1;
        assert!(tcp_opts(&syn).iter().all(|&b| b != 254), "no TOA on the SYN");
        assert_eq!(p.local_ports_available(0), Some(free - 1));

        // SYN-ACK with MSS 1460: back to the client from the VIP, MSS - 8.
        let mut synack = Vec::new();
        etherparse::PacketBuilder::ethernet2(RS1_MAC.0, LB1.0)
            .ipv4(RS1.octets(), LIP.octets(), 64)
            .tcp(8080, lport, 5, 1000)
            .syn()
            .ack(2)
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut synack, &[])
            .unwrap();
        assert_eq!(p.process(1, &mut synack, SEC), Action::Transmit { port: 0 });
        assert_eq!(check(&synack), (LB0, CLIENT_MAC, (NAT_VIP, 80), (CLIENT_IP, 40000)));
        assert_eq!(&tcp_opts(&synack)[..4], &[2, 4, 0x05, 0xac], "1460 - 8");

        // The first ACK carries the TOA (client 198.18.1.10:40000), if there is room.
        let ack = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(ACK));
        let n = ack.len();
        let mut buf = ack.clone();
        buf.resize(n + 64, 0);
        let (mut head, mut len) = (0, n);
        assert_eq!(p.process_room(0, &mut buf, &mut head, &mut len, SEC), Action::Transmit { port: 1 });
        assert_eq!(len, n + 8);
        check(&buf[..len]);
        assert_eq!(&tcp_opts(&buf[..len])[..8], &[254, 8, 0x9c, 0x40, 198, 18, 1, 10]);
        assert_eq!(p.counters().toa_inserted.get(), 1);
        // Later segments go without.
        let mut data = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(ACK));
        p.process(0, &mut data, SEC);
        assert!(tcp_opts(&data).iter().all(|&b| b != 254));
        assert_eq!(p.counters().toa_inserted.get(), 1);

        // Expiry gives the local port back.
        p.tick(2000 * SEC);
        assert_eq!(p.local_ports_available(0), Some(free));
    }

    /// A client that reuses its port after the connection closed gets a
    /// new connection with the same local port: the server sees the same
    /// pair as before (its TIME_WAIT accepts the later sequence numbers).
    /// An expired connection hands its port on too; a packet that starts
    /// nothing gives it back.
    #[test]
    fn fullnat_a_reused_client_port_keeps_its_local_port() {
        let mut p = fullnat_pipeline();
        let free = p.local_ports_available(0).unwrap();
        let client = (CLIENT_IP, 40000);
        let local_port_of = |p: &mut Pipeline, flags: u8, now: u64| {
            let mut f = frame(CLIENT_MAC, LB0, client, (NAT_VIP, 80), Some(flags));
            assert_eq!(p.process(0, &mut f, now), Action::Transmit { port: 1 });
            check(&f).2 .1
        };
        let first = local_port_of(&mut p, SYN, 0);
        local_port_of(&mut p, ACK, SEC);
        local_port_of(&mut p, FIN | ACK, SEC);
        // A second connection from another client port takes another port.
        let mut other = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40001), (NAT_VIP, 80), Some(SYN));
        p.process(0, &mut other, SEC);
        assert_ne!(check(&other).2 .1, first);
        let created = p.counters().conns_created.get();
        assert_eq!(local_port_of(&mut p, SYN, 2 * SEC), first, "the same local port again");
        assert_eq!(p.counters().conns_created.get(), created + 1, "as a new connection");
        assert_eq!(p.local_ports_available(0), Some(free - 2));
        // Expired (a SYN_RECV lasts 60 s): the next SYN takes it on too.
        let mut arp = arp_frame(arp::OP_REPLY, RS1_MAC, RS1, LB_IP);
        arp[0..6].copy_from_slice(&LB1.0);
        p.process(1, &mut arp, 99 * SEC); // the server's MAC, fresh again
        assert_eq!(local_port_of(&mut p, SYN, 100 * SEC), first);
        // Expired again, and this packet starts nothing: the port goes back.
        let mut stray = frame(CLIENT_MAC, LB0, client, (NAT_VIP, 80), Some(ACK));
        assert_eq!(p.process(0, &mut stray, 200 * SEC), Action::Drop(DropReason::TcpNoConnection));
        p.tick(300 * SEC);
        assert_eq!(p.local_ports_available(0), Some(free));
    }

    #[test]
    fn fullnat_without_room_forwards_without_toa_and_counts_it() {
        let mut p = fullnat_pipeline();
        p.process(0, &mut frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(SYN)), 0);
        let mut ack = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(ACK));
        assert_eq!(p.process(0, &mut ack, SEC), Action::Transmit { port: 1 });
        check(&ack);
        assert_eq!((p.counters().toa_inserted.get(), p.counters().toa_skipped.get()), (0, 1));
    }

    /// Core 0 and core 1 of a two-worker load balancer, sharing neighbors.
    fn two_cores(mode: ForwardingMode) -> [Pipeline; 2] {
        let mut snap = Arc::try_unwrap(if mode == ForwardingMode::FullNat {
            let p = fullnat_pipeline();
            p.snapshot
        } else {
            let p = nat_pipeline();
            p.snapshot
        })
        .unwrap_or_else(|a| (*a).clone());
        snap.worker_cores = 2;
        snap.services.push(Service {
            proto: L4Proto::Udp,
            vip: VIP,
            port: 7,
            scheduler: SchedulerSpec::new(SchedulerKind::Rr),
            persistence: None,
            mode: ForwardingMode::DirectRoute,
            local_addrs: vec![],
            reals: vec![RealServer::new(RS1, 1)],
        });
        let snap = Arc::new(snap);
        let shared = Arc::new(crate::neighbor::SharedNeighbors::new(Pipeline::wanted_neighbors(&snap)));
        let mk = |core| Pipeline::with_neighbors(Arc::clone(&snap), Arc::default(), Arc::clone(&shared)).unwrap().for_core(core);
        let mut cores = [mk(0), mk(1)];
        let mut f = arp_frame(arp::OP_REPLY, RS1_MAC, RS1, LB_IP);
        f[0..6].copy_from_slice(&LB1.0);
        cores[0].process(1, &mut f, 0);
        cores
    }

    #[test]
    fn nat_packets_are_steered_to_the_owning_core_both_ways() {
        let mut cores = two_cores(ForwardingMode::Nat);
        // A client port owned by core 1 and one owned by core 0.
        let owned_by = |c: u32| (40000u16..).find(|&p| client_owner(CLIENT_IP, p, 2) == c).unwrap();
        let (p1, p0) = (owned_by(1), owned_by(0));
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, p1), (NAT_VIP, 80), Some(SYN));
        assert_eq!(cores[0].process(0, &mut syn.clone(), 0), Action::Redirect { core: 1 });
        assert_eq!(cores[1].process(0, &mut syn, 0), Action::Transmit { port: 1 });
        let mut reply = frame(RS1_MAC, LB1, (RS1, 8080), (CLIENT_IP, p1), Some(SYN | ACK));
        assert_eq!(cores[0].process(1, &mut reply.clone(), 0), Action::Redirect { core: 1 });
        assert_eq!(cores[1].process(1, &mut reply, 0), Action::Transmit { port: 0 });
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, p0), (NAT_VIP, 80), Some(SYN));
        assert_eq!(cores[0].process(0, &mut syn, 0), Action::Transmit { port: 1 });
        assert_eq!(cores[0].counters().redirected.get(), 2);
        // DR sees one direction only: never steered.
        let mut dr = udp(1234, 7);
        dr[0..6].copy_from_slice(&LB0.0);
        for core in &mut cores {
            assert!(!matches!(core.process(0, &mut dr.clone(), 0), Action::Redirect { .. }));
        }
    }

    #[test]
    fn fullnat_replies_go_to_the_core_their_local_port_names() {
        let mut cores = two_cores(ForwardingMode::FullNat);
        let owned_by = |c: u32| (40000u16..).find(|&p| client_owner(CLIENT_IP, p, 2) == c).unwrap();
        let port = owned_by(1);
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, port), (NAT_VIP, 80), Some(SYN));
        assert_eq!(cores[1].process(0, &mut syn, 0), Action::Transmit { port: 1 });
        let (_, _, (laddr, lport), _) = check(&syn);
        assert_eq!((laddr, crate::local_ports::LocalPorts::owner(lport, 2)), (LIP, 1), "core 1 uses its own ports");
        let reply = frame(RS1_MAC, LB1, (RS1, 8080), (LIP, lport), Some(SYN | ACK));
        assert_eq!(cores[0].process(1, &mut reply.clone(), 0), Action::Redirect { core: 1 });
        assert_eq!(cores[1].process(1, &mut reply.clone(), 0), Action::Transmit { port: 0 });
    }

    #[test]
    fn icmp_errors_about_fullnat_connections_reach_the_client() {
        let mut p = fullnat_pipeline();
        let mut syn = frame(CLIENT_MAC, LB0, (CLIENT_IP, 40000), (NAT_VIP, 80), Some(SYN));
        let client_sent = syn.clone();
        p.process(0, &mut syn, 0);
        // The server saw LIP:lport -> RS:8080 and reports it to LIP.
        let mut err = unreachable(RS1_MAC, LB1, RS1, LIP, &syn);
        assert_eq!(p.process(1, &mut err, SEC), Action::Transmit { port: 0 });
        assert_eq!(err, unreachable(LB0, CLIENT_MAC, NAT_VIP, CLIENT_IP, &client_sent));
    }
}

mod routes {
    use super::*;
    use crate::config::Route;

    const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const GW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const FAR_RS: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);

    fn routed(mode: ForwardingMode) -> Pipeline {
        Pipeline::new(Arc::new(routed_snapshot(mode)), Arc::default()).unwrap()
    }

    fn routed_snapshot(mode: ForwardingMode) -> Snapshot {
        Snapshot {
            interfaces: vec![Interface { port: 0, mac: LB_MAC, addr: LB_IP, prefix_len: 24, mtu: 1500, kernel: false }],
            routes: vec![Route { prefix: Ipv4Addr::new(198, 18, 2, 0), prefix_len: 24, via: GW }],
            services: vec![Service {
                proto: L4Proto::Tcp,
                vip: VIP,
                port: 80,
                scheduler: SchedulerSpec::new(SchedulerKind::Rr),
                persistence: None,
                mode,
                local_addrs: vec![],
                reals: vec![RealServer::new(FAR_RS, 1)],
            }],
            timeouts: Timeouts::default(),
            arp: ArpTimers::default(),
            max_connections_per_core: 64,
            worker_cores: 1,
            expire_nodest_conn: false,
            health: Default::default(),
        }
    }

    #[test]
    fn servers_behind_a_gateway_are_reached_through_its_mac() {
        for mode in [ForwardingMode::Nat, ForwardingMode::Tun] {
            let mut p = routed(mode);
            // The gateway is what gets resolved, not the server behind it.
            // Not the VIP's announcement (sender = target): the requests.
            let asked: Vec<Ipv4Addr> = arp_sent(&mut p).into_iter().filter(|&(_, sender, target)| sender != target).map(|(.., target)| target).collect();
            assert_eq!(asked, [GW], "{mode:?}");
            p.process(0, &mut arp_frame(arp::OP_REPLY, GW_MAC, GW, LB_IP), 0);
            let f = tcp(40000, 80, SYN);
            let mut buf = vec![0u8; 64];
            buf.extend_from_slice(&f);
            let (mut head, mut len) = (64, f.len());
            assert_eq!(p.process_room(0, &mut buf, &mut head, &mut len, 0), Action::Transmit { port: 0 }, "{mode:?}");
            let out = &buf[head..head + len];
            assert_eq!(dst_mac(out), GW_MAC, "{mode:?}: to the gateway's MAC");
            // The IP destination is the server: NAT's DNAT, TUN's outer header.
            let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
            assert_eq!(ip.dst(), FAR_RS, "{mode:?}");
        }
    }

    #[test]
    fn dr_refuses_servers_off_link() {
        let e = Pipeline::new(Arc::new(routed_snapshot(ForwardingMode::DirectRoute)), Arc::default()).unwrap_err();
        assert!(e.0.contains("DR needs the same L2"), "{e}");
    }
}

mod tun_mode {
    use super::*;

    fn tun_pipeline() -> Pipeline {
        let mut s = (*snapshot(SchedulerKind::Rr, 1, 0, 64)).clone();
        for svc in &mut s.services {
            svc.mode = ForwardingMode::Tun;
        }
        let mut p = Pipeline::new(Arc::new(s), Arc::default()).unwrap();
        p.process(0, &mut arp_frame(arp::OP_REPLY, RS1_MAC, RS1, LB_IP), 0);
        p
    }

    /// `frame` placed after `head` spare bytes.
    fn with_headroom(frame: &[u8], head: usize) -> Vec<u8> {
        let mut b = vec![0u8; head];
        b.extend_from_slice(frame);
        b
    }

    #[test]
    fn encapsulates_into_the_headroom() {
        let mut p = tun_pipeline();
        let f = tcp(40000, 80, SYN);
        let mut buf = with_headroom(&f, 64);
        let (mut head, mut len) = (64, f.len());
        assert_eq!(p.process_room(0, &mut buf, &mut head, &mut len, 0), Action::Transmit { port: 0 });
        assert_eq!((head, len), (44, f.len() + 20));
        let out = &buf[head..head + len];
        assert_eq!((dst_mac(out), MacAddr(out[6..12].try_into().unwrap())), (RS1_MAC, LB_MAC));
        let parsed = etherparse::SlicedPacket::from_ethernet(out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(outer)) = parsed.net else { panic!() };
        assert_eq!(outer.header().protocol(), etherparse::IpNumber::IPV4);
        assert_eq!((outer.header().source_addr(), outer.header().destination_addr()), (LB_IP, RS1));
        assert_eq!(outer.header().to_header().calc_header_checksum(), outer.header().header_checksum());
        assert_eq!(outer.payload().payload, &f[14..], "the client's packet, untouched");
        // Counted for the server as received, without the outer header.
        let d = &p.view(0).services[0].dests[0];
        assert_eq!((d.addr, d.conns, d.pkts_in, d.bytes_in), (RS1, 1, 1, f.len() as u64));
    }

    #[test]
    fn too_big_with_df_gets_fragmentation_needed_back() {
        let mut p = tun_pipeline();
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(CLIENT_MAC.0, LB_MAC.0).ipv4(CLIENT.octets(), VIP.octets(), 64).udp(5000, 53).write(&mut f, &[7u8; 1472]).unwrap(); // IP length 1500, DF set
        let mut buf = with_headroom(&f, 64);
        let (mut head, mut len) = (64, f.len());
        assert_eq!(p.process_room(0, &mut buf, &mut head, &mut len, 0), Action::Transmit { port: 0 });
        let out = &buf[head..head + len];
        assert_eq!(dst_mac(out), CLIENT_MAC, "back to the sender");
        let parsed = etherparse::SlicedPacket::from_ethernet(out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &parsed.net else { panic!() };
        assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (LB_IP, CLIENT));
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = parsed.transport else { panic!("not ICMP") };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1480 })
        );
        assert_eq!(p.counters().icmp_frag_needed.get(), 1);
    }

    #[test]
    fn no_headroom_is_a_counted_drop() {
        let mut p = tun_pipeline();
        assert_eq!(p.process(0, &mut tcp(40000, 80, SYN), 0), Action::Drop(DropReason::NoHeadroom));
        assert_eq!(p.counters().drops(DropReason::NoHeadroom), 1);
    }
}

mod reload {
    use super::*;

    /// The default snapshot with the TCP service's servers and scheduler replaced.
    fn with_reals(reals: &[(Ipv4Addr, u32)], scheduler: SchedulerKind, expire_nodest: bool) -> Arc<Snapshot> {
        let mut s = (*snapshot(SchedulerKind::Rr, 1, 1, 1024)).clone();
        s.services[0].reals = reals.iter().map(|&(a, w)| RealServer::new(a, w)).collect();
        s.services[0].scheduler = SchedulerSpec::new(scheduler);
        s.expire_nodest_conn = expire_nodest;
        Arc::new(s)
    }

    const RS3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 13);
    const RS3_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 13]);

    /// A pipeline plus its neighbor table, reloaded the way rvsd does it.
    struct Lb {
        p: Pipeline,
        shared: Arc<crate::neighbor::SharedNeighbors>,
    }

    impl Lb {
        fn new(s: Arc<Snapshot>) -> Lb {
            let shared = Arc::new(crate::neighbor::SharedNeighbors::new(Pipeline::wanted_neighbors(&s)));
            let p = Pipeline::with_neighbors(s, Arc::default(), Arc::clone(&shared)).unwrap();
            Lb { p, shared }
        }

        fn reload(&mut self, s: Arc<Snapshot>) -> Result<(), crate::pipeline::SnapshotError> {
            let shared = Arc::new(Pipeline::neighbors_for_reload(&self.shared, &s));
            self.p.apply(s, Arc::clone(&shared))?;
            self.shared = shared;
            Ok(())
        }
    }

    fn learn_all(p: &mut Pipeline, now: u64) {
        for (mac, ip) in [(RS1_MAC, RS1), (RS2_MAC, RS2), (RS3_MAC, RS3)] {
            p.process(0, &mut arp_frame(arp::OP_REPLY, mac, ip, LB_IP), now);
        }
    }

    #[test]
    fn connections_survive_adding_reweighting_and_removing_servers() {
        let first = with_reals(&[(RS1, 1), (RS2, 1)], SchedulerKind::Rr, false);
        let mut lb = Lb::new(first);
        let p = &mut lb.p;
        learn_all(p, 0);
        let mut a = tcp(1, 80, SYN);
        p.process(0, &mut a, 0);
        let server_of_a = dst_mac(&a);

        // Reload: RS3 added, RS2 reweighted to 0 (quiescent), scheduler wrr.
        let second = with_reals(&[(RS1, 1), (RS2, 0), (RS3, 2)], SchedulerKind::Wrr, false);
        lb.reload(second).unwrap();
        let p = &mut lb.p;
        // Only RS3 is new: its MAC must be learned; the others are kept.
        p.process(0, &mut arp_frame(arp::OP_REPLY, RS3_MAC, RS3, LB_IP), SEC);
        // The connection opened before the reload still goes where it went.
        let mut again = tcp(1, 80, ACK);
        assert_eq!(p.process(0, &mut again, SEC), Action::Transmit { port: 0 });
        assert_eq!(dst_mac(&again), server_of_a);
        // New connections: RS3 twice as often as RS1, never quiescent RS2.
        let mut seen = std::collections::HashMap::new();
        for port in 100..130 {
            let mut f = tcp(port, 80, SYN);
            p.process(0, &mut f, SEC);
            *seen.entry(dst_mac(&f)).or_insert(0) += 1;
        }
        assert_eq!((seen.get(&RS1_MAC), seen.get(&RS3_MAC), seen.get(&RS2_MAC)), (Some(&10), Some(&20), None));

        // Reload: RS1 removed. Its connections run on (no expire_nodest_conn).
        let third = with_reals(&[(RS3, 1)], SchedulerKind::Wrr, false);
        lb.reload(third).unwrap();
        let p = &mut lb.p;
        let mut f = tcp(1, 80, ACK);
        assert_eq!(p.process(0, &mut f, 2 * SEC), Action::Transmit { port: 0 });
        assert_eq!(dst_mac(&f), server_of_a, "still to its removed server, whose MAC is kept");
        let mut n = tcp(200, 80, SYN);
        p.process(0, &mut n, 2 * SEC);
        assert_eq!(dst_mac(&n), RS3_MAC);
    }

    #[test]
    fn a_reload_announces_the_addresses_again() {
        let mut lb = Lb::new(with_reals(&[(RS1, 1)], SchedulerKind::Rr, false));
        let garps = |p: &mut Pipeline| garps_by_port(p).len();
        assert_eq!(garps(&mut lb.p), 1, "at start");
        assert_eq!(garps(&mut lb.p), 0, "once");
        lb.reload(with_reals(&[(RS1, 2)], SchedulerKind::Rr, false)).unwrap();
        assert_eq!(garps(&mut lb.p), 1, "after a reload");
    }

    #[test]
    fn announcements_wait_for_the_link_and_follow_it_coming_back() {
        let mut lb = Lb::new(with_reals(&[(RS1, 1)], SchedulerKind::Rr, false));
        let p = &mut lb.p;
        // Down from the start (a memif port before its peer connects).
        p.set_link(0, false);
        assert_eq!(garps_by_port(p), [0u16; 0], "not on a down link");
        assert_eq!(garps_by_port(p), [0u16; 0], "still not");
        assert_eq!(p.counters().garp_sent.get(), 0);
        p.set_link(0, true);
        assert_eq!(garps_by_port(p), [0], "once the link is up");
        assert_eq!(garps_by_port(p), [0u16; 0], "once");
        // Seen up again (no change): nothing new.
        p.set_link(0, true);
        assert_eq!(garps_by_port(p), [0u16; 0]);
        // A flap: announced again when the link is back, not while down.
        p.set_link(0, false);
        assert_eq!(garps_by_port(p), [0u16; 0]);
        p.set_link(0, true);
        assert_eq!(garps_by_port(p), [0], "after the link came back");
        // A reload while the link is down waits for it too.
        p.set_link(0, false);
        lb.reload(with_reals(&[(RS1, 2)], SchedulerKind::Rr, false)).unwrap();
        assert_eq!(garps_by_port(&mut lb.p), [0u16; 0]);
        lb.p.set_link(0, true);
        assert_eq!(garps_by_port(&mut lb.p), [0], "the reload's announcement, once");
        assert_eq!(garps_by_port(&mut lb.p), [0u16; 0]);
        // A port that is not an interface's announces nothing.
        lb.p.set_link(9, false);
        lb.p.set_link(9, true);
        assert_eq!(garps_by_port(&mut lb.p), [0u16; 0]);
    }

    #[test]
    fn expire_nodest_conn_drops_connections_of_removed_servers() {
        let first = with_reals(&[(RS1, 1)], SchedulerKind::Rr, true);
        let mut lb = Lb::new(first);
        learn_all(&mut lb.p, 0);
        lb.p.process(0, &mut tcp(1, 80, SYN), 0);
        lb.reload(with_reals(&[(RS2, 1)], SchedulerKind::Rr, true)).unwrap();
        let p = &mut lb.p;
        assert_eq!(p.process(0, &mut tcp(1, 80, ACK), SEC), Action::Drop(DropReason::DestRemoved));
        assert_eq!(p.connections(), 0);
        // Its next SYN is a new connection, to the remaining server.
        learn_all(p, SEC);
        let mut f = tcp(1, 80, SYN);
        assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
        assert_eq!(dst_mac(&f), RS2_MAC);
    }

    #[test]
    fn removed_services_keep_their_connections_but_take_no_new_ones() {
        let first = with_reals(&[(RS1, 1)], SchedulerKind::Rr, false);
        let mut lb = Lb::new(Arc::clone(&first));
        learn_all(&mut lb.p, 0);
        lb.p.process(0, &mut udp(5000, 53), 0);
        let mut second = (*first).clone();
        second.services.remove(1); // the UDP service goes
        lb.reload(Arc::new(second.clone())).unwrap();
        let p = &mut lb.p;
        assert_eq!(p.process(0, &mut udp(5000, 53), SEC), Action::Transmit { port: 0 }, "existing flow");
        assert_eq!(p.process(0, &mut udp(5001, 53), SEC), Action::Drop(DropReason::NoService), "no new ones");
        // Interfaces cannot change by reload.
        let mut third = second;
        third.interfaces[0].addr = Ipv4Addr::new(198, 18, 0, 3);
        assert!(lb.reload(Arc::new(third)).unwrap_err().0.contains("restart"));
    }
}

#[test]
fn lists_connections_with_state_expiry_and_a_cap() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let mut f = tcp(40000, 80, SYN);
    assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
    let mut f = tcp(40000, 80, ACK);
    assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });
    let mut f = udp(40001, 53);
    assert_eq!(p.process(0, &mut f, SEC), Action::Transmit { port: 0 });

    let (mut rows, truncated) = p.list_connections(2 * SEC, 10);
    assert!(!truncated);
    rows.sort_by_key(|r| r.client.1);
    assert_eq!(rows.len(), 2);
    let t = Timeouts::default();
    assert_eq!((rows[0].proto, rows[0].client, rows[0].virt, rows[0].state), (L4Proto::Tcp, (CLIENT, 40000), (VIP, 80), "ESTABLISHED"));
    assert_eq!(rows[0].expires_in_s, t.tcp - 1);
    assert_eq!((rows[1].proto, rows[1].state, rows[1].expires_in_s), (L4Proto::Udp, "UDP", t.udp - 1));
    assert!([RS1, RS2].contains(&rows[0].real.0) && rows[0].real.1 == 80);

    let (rows, truncated) = p.list_connections(2 * SEC, 1);
    assert_eq!((rows.len(), truncated), (1, true));
    // Past the UDP timeout, the UDP entry is no longer listed even before the wheel removes it.
    let (rows, _) = p.list_connections((t.udp + 2) * SEC, 10);
    assert_eq!(rows.iter().map(|r| r.state).collect::<Vec<_>>(), ["ESTABLISHED"]);
}

/// A listing made in slices of any size, with nothing changing between
/// them, is the listing made at once, rows and cap alike.
#[test]
fn connection_listings_in_slices_equal_the_whole() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    for k in 0..20 {
        let mut f = if k % 3 == 0 { udp(41000 + k, 53) } else { tcp(41000 + k, 80, SYN) };
        assert!(matches!(p.process(0, &mut f, SEC), Action::Transmit { .. }));
    }
    for max in [0, 1, 7, 20, 100] {
        let whole = p.list_connections(2 * SEC, max);
        assert_eq!(whole.0.len(), max.min(20));
        assert_eq!(whole.1, max < 20, "truncated exactly when some were left out");
        for slots in [1, 2, 3, 7, 64] {
            let mut listing = crate::view::ConnListing::default();
            let mut slices = 1;
            while !p.list_connections_slice(&mut listing, 2 * SEC, slots, max) {
                slices += 1;
                assert!(slices <= 20 + 1, "a listing ends");
            }
            assert_eq!((&listing.rows, listing.truncated), (&whole.0, whole.1), "max {max}, slices of {slots}");
        }
    }
}

/// Connections that come and go between the slices do not disturb the
/// ones that live throughout: each of those is listed exactly once.
#[test]
fn a_listing_in_slices_lists_each_lasting_connection_once() {
    let mut p = resolved(SchedulerKind::Rr, 1, 1);
    let lasting: Vec<u16> = (42000..42010).collect();
    for &port in &lasting {
        assert!(matches!(p.process(0, &mut tcp(port, 80, SYN), SEC), Action::Transmit { .. }));
    }
    let mut listing = crate::view::ConnListing::default();
    let mut newcomer = 43000;
    let mut slices = 1;
    while !p.list_connections_slice(&mut listing, 2 * SEC, 2, 1000) {
        slices += 1;
        if slices <= 4 {
            // A UDP flow and a TCP connection after each of slices 1 to 3:
            // 16 slots in all, listed in 8 slices of 2.
            assert!(matches!(p.process(0, &mut udp(newcomer, 53), 2 * SEC), Action::Transmit { .. }));
            assert!(matches!(p.process(0, &mut tcp(newcomer + 1, 80, SYN), 2 * SEC), Action::Transmit { .. }));
            newcomer += 2;
        }
    }
    assert_eq!((slices, p.connections()), (8, 16), "the listing went on over the newcomers' slots");
    for port in lasting {
        assert_eq!(listing.rows.iter().filter(|r| r.client.1 == port).count(), 1, "port {port}");
    }
    let mut ports: Vec<u16> = listing.rows.iter().map(|r| r.client.1).collect();
    let n = ports.len();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), n, "nothing listed twice");
}

mod fast_parse_oracle {
    use super::*;

    /// `fast_parse`'s answer, its tuple words as the key they stand for.
    fn fast(f: &[u8]) -> Option<(FlowKey, L4Proto, u8)> {
        let (words, proto, flags) = fast_parse(f, false)?;
        let key = FlowKey::from_words(words);
        assert_eq!(key.words(), words, "the words are a key's");
        Some((key, proto, flags))
    }

    /// The general path's reading of a frame, through the views: what
    /// `fast_parse` must agree with whenever it accepts a frame.
    fn by_views(f: &[u8]) -> Option<(FlowKey, L4Proto, u8)> {
        let eth = EthernetFrame::new_checked(f).ok()?;
        if eth.ethertype() != ethertype::IPV4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if !ip.verify_checksum() || ip.is_fragment() {
            return None;
        }
        let (proto, sport, dport, flags) = match ip.protocol() {
            protocol::TCP => TcpSegment::new_checked(ip.payload()).ok().map(|t| (L4Proto::Tcp, t.src_port(), t.dst_port(), t.flags()))?,
            protocol::UDP => UdpDatagram::new_checked(ip.payload()).ok().map(|u| (L4Proto::Udp, u.src_port(), u.dst_port(), 0))?,
            _ => return None,
        };
        Some((FlowKey { proto: proto.number(), src: ip.src(), dst: ip.dst(), sport, dport }, proto, flags))
    }

    fn frame(tcp_proto: bool, sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
        let data = vec![7u8; payload];
        if tcp_proto {
            tcp_carrying(sport, dport, flags, &data)
        } else {
            udp_carrying(sport, dport, &data)
        }
    }

    #[test]
    fn accepts_the_common_shapes() {
        for (tcp_proto, payload) in [(true, 0), (true, 100), (false, 12), (false, 200)] {
            let f = frame(tcp_proto, 1234, 80, SYN | ACK, payload);
            assert!(fast_parse(&f, false).is_some(), "tcp={tcp_proto} payload={payload}");
            assert_eq!(fast(&f), by_views(&f));
        }
        // Runts, options, fragments, other protocols: left to the views.
        let udp_runt = frame(false, 1, 2, 0, 0);
        assert_eq!((udp_runt.len(), fast(&udp_runt)), (42, None));
        let mut opts = frame(true, 1, 80, SYN, 20);
        opts[14] = 0x46;
        assert_eq!(fast(&opts), None);
    }

    proptest! {
        /// Whatever the bytes, an accepted frame reads exactly as the views
        /// read it; frames with a padded tail and corrupted bytes included.
        #[test]
        fn never_disagrees_with_the_views(
            tcp_proto in any::<bool>(),
            sport in any::<u16>(), dport in any::<u16>(), flags in any::<u8>(),
            payload in 0usize..80, pad in 0usize..8,
            corrupt in proptest::collection::vec((0usize..140, any::<u8>()), 0..4),
            fix_checksum in any::<bool>(),
        ) {
            let mut f = frame(tcp_proto, sport, dport, flags & (SYN | ACK | FIN), payload);
            f.extend(std::iter::repeat_n(0u8, pad));
            for (at, v) in corrupt {
                if let Some(b) = f.get_mut(at) {
                    *b = v;
                }
            }
            if fix_checksum && f.len() >= 34 && f[14] >> 4 == 4 && usize::from(f[14] & 15) * 4 + 14 <= f.len() && f[14] & 15 >= 5 {
                let hl = usize::from(f[14] & 15) * 4;
                f[24] = 0;
                f[25] = 0;
                let c = proto::checksum::checksum(&f[14..14 + hl]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
            // The pipeline parses only what classify found to be IPv4.
            let ipv4 = f.get(12..14) == Some(&[0x08, 0x00][..]);
            if let (true, Some(p)) = (ipv4, fast(&f)) {
                prop_assert_eq!(Some(p), by_views(&f));
            }
        }
    }
}

proptest! {
    /// The fast header check agrees with the views' checksum verification.
    #[test]
    fn header_sum_matches_the_views(mut header in proptest::collection::vec(any::<u8>(), 20), fix in any::<bool>()) {
        header[0] = 0x45;
        header[2..4].copy_from_slice(&20u16.to_be_bytes());
        if fix {
            header[10] = 0;
            header[11] = 0;
            let c = proto::checksum::checksum(&header);
            header[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let views = Ipv4Packet::new_checked(&header[..]).unwrap().verify_checksum();
        let sum_ok = |h: &[u8]| proto::checksum::header20(h.try_into().unwrap()) == 0;
        prop_assert_eq!(sum_ok(&header), views);
        if fix {
            prop_assert!(sum_ok(&header));
        }
    }
}
