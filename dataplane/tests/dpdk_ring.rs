//! DPDK in-process, on `net_ring` (a loopback port: what is sent is received
//! back). The EAL can be initialised once per process, so this file holds
//! one test that runs its checks in order.

use dataplane::config::{ForwardingMode, Interface, L4Proto, RealServer, Service, Snapshot};
use dataplane::counters::CoreCounters;
use dataplane::dpdk::{Burst, Eal, Mbuf, Mempool, Port, Ring, MAX_BURST};
use dataplane::links::LinkBoard;
use dataplane::pipeline::Pipeline;
use dataplane::worker::{Worker, WorkerSettings};
use proto::MacAddr;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::RuntimeDir;

fn eal(dir: &RuntimeDir) -> Eal {
    let args: Vec<String> = ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level", "error", "--vdev=net_ring0"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--file-prefix".to_string(), dir.prefix().to_string()])
        .collect();
    Eal::init(&args).expect("EAL init (is DPDK installed? run as root)")
}

/// The real server's MAC, which it announces to the worker.
const REAL_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 11]);
/// Frames of the worker test's UDP flows: more than a burst.
const FLOW_FRAMES: u16 = 100;

fn frame(m: &mut Mbuf, tag: u8) {
    assert!(m.set_len(60));
    let d = m.data_mut();
    d.fill(0);
    d[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    d[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    d[14] = tag;
}

#[test]
fn dpdk_ownership_and_worker_on_net_ring() {
    let dir = RuntimeDir::new("test");
    let eal = eal(&dir);
    assert!(Eal::init(&[]).is_err(), "a second EAL init is refused");
    let pool = Arc::new(Mempool::new(&eal, "test_pool", 2047, 0).unwrap());
    // 0. The buffers lie back to back, also without hugepages: the AF_XDP
    //    driver registers the pool with the kernel as one area of count x
    //    buffer size, and a buffer beyond it is never sent.
    let all: Vec<Mbuf> = (0..2047).map(|_| Mbuf::alloc(&pool).expect("the whole pool")).collect();
    let mut at: Vec<usize> = all.iter().map(|m| m.data().as_ptr() as usize).collect();
    at.sort_unstable();
    let stride = at[1] - at[0];
    assert!(stride < 4096 && at.windows(2).all(|w| w[1] - w[0] == stride), "buffers not packed: {stride} bytes apart, {} in all", at[2046] - at[0]);
    // ... and keep their device addresses (what a NIC's DMA uses): with
    // IOVA as VA, the virtual ones.
    assert!(pool.for_device_io(), "a packet pool drivers may DMA into");
    for m in &all {
        assert_eq!(m.data_iova(), m.data().as_ptr() as u64, "a buffer's device address");
    }
    drop(all);
    assert_eq!(pool.in_use(), 0);
    let mut port = Port::by_name(&eal, "net_ring0").unwrap();
    assert!(Port::by_name(&eal, "net_nonexistent9").is_err());
    port.start(1, 256, 256, &pool).unwrap();
    assert_eq!(pool.in_use(), 0, "net_ring does not pre-fill rx");
    assert!(!port.checks_ip_checksums(), "net_ring offers no receive checksum offload: frames are checked in software");
    // A TAP device offers it (computed in its driver), but nobody reads its
    // verdict (the kernel's frames go out unchanged): not enabled there.
    let mut tap = Port::create_tap(&eal, 9, &format!("rvschk{}", std::process::id() % 100_000), MacAddr([2, 0, 0, 0, 0, 0x77])).unwrap();
    tap.start(1, 256, 256, &pool).unwrap();
    assert!(!tap.checks_ip_checksums(), "not enabled on a TAP");
    drop(tap);

    // 1. Mbufs sent come back intact; dropping them returns them to the pool.
    let mut b = Burst::new();
    for tag in 0..10 {
        let mut m = Mbuf::alloc(&pool).unwrap();
        frame(&mut m, tag);
        b.push(m).unwrap();
    }
    assert_eq!(pool.in_use(), 10);
    assert_eq!(port.tx(0, &mut b), (10, 0));
    assert!(b.is_empty());
    assert_eq!(pool.in_use(), 10, "sent mbufs sit in the ring, owned by the driver");
    let mut rx = Burst::new();
    assert_eq!(port.rx(0, &mut rx, 32), 10);
    // The look ahead (the worker's prefetch pass) sees every frame in
    // order and leaves them in the burst.
    let mut seen = Vec::new();
    rx.for_each_data(|d| seen.push((d.len(), d[14])));
    assert_eq!(seen, (0..10).map(|t| (60, t)).collect::<Vec<_>>());
    assert_eq!(rx.len(), 10);
    let mut got = rx.drain();
    for tag in 0..10 {
        let m = got.next().unwrap();
        assert!(m.is_contiguous());
        assert_eq!((m.len(), m.data()[14]), (60, tag));
    }
    assert!(got.next().is_none());
    drop(got);
    assert_eq!(pool.in_use(), 0, "received mbufs freed on drop");

    // 2. A dropped burst frees what it holds.
    let mut b = Burst::new();
    for _ in 0..5 {
        b.push(Mbuf::alloc(&pool).unwrap()).unwrap();
    }
    drop(b);
    assert_eq!(pool.in_use(), 0);

    // A drained burst hands its mbufs out in order and is empty at once;
    // a drain dropped half-way frees the rest.
    let mut b = Burst::new();
    for tag in 0..6 {
        let mut m = Mbuf::alloc(&pool).unwrap();
        frame(&mut m, tag);
        b.push(m).unwrap();
    }
    let mut drain = b.drain();
    let first: Vec<Mbuf> = drain.by_ref().take(2).collect();
    assert_eq!(first.iter().map(|m| m.data()[14]).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(drain.next().map(|m| m.data()[14]), Some(2));
    drop(drain);
    assert!(b.is_empty());
    assert_eq!(pool.in_use(), 2, "only the two kept are out of the pool");
    drop(first);
    assert_eq!(pool.in_use(), 0);

    // 3. A full burst hands the extra mbuf back instead of losing it.
    let mut b = Burst::new();
    for _ in 0..MAX_BURST {
        b.push(Mbuf::alloc(&pool).unwrap()).unwrap();
    }
    let extra = b.push(Mbuf::alloc(&pool).unwrap()).unwrap_err();
    drop(extra);
    drop(b);
    assert_eq!(pool.in_use(), 0);

    // 4. Overfill the ring: the driver takes what fits, the unsent tail is
    //    freed and reported, nothing leaks.
    let (mut sent, mut unsent) = (0, 0);
    for _ in 0..20 {
        let mut b = Burst::new();
        for _ in 0..MAX_BURST {
            let mut m = Mbuf::alloc(&pool).unwrap();
            frame(&mut m, 0);
            b.push(m).unwrap();
        }
        let (s, u) = port.tx(0, &mut b);
        sent += s;
        unsent += u;
    }
    assert_eq!(sent + unsent, 20 * MAX_BURST);
    assert!(unsent > 0, "the ring must have filled up (sent {sent})");
    assert_eq!(pool.in_use() as usize, sent, "only the mbufs in the ring are out of the pool");
    let mut drained = 0;
    loop {
        let n = port.rx(0, &mut rx, 32);
        if n == 0 {
            break;
        }
        drained += n;
        rx.drain().for_each(drop);
    }
    assert_eq!(drained, sent);
    assert_eq!(pool.in_use(), 0);

    // 5. Redirect rings: what is enqueued belongs to the ring until
    //    dequeued; what does not fit is freed; a dropped ring frees the rest.
    let ring = Ring::new(&eal, "test_ring", 64).unwrap();
    let mut b = Burst::new();
    for tag in 0..10 {
        let mut m = Mbuf::alloc(&pool).unwrap();
        frame(&mut m, tag);
        b.push(m).unwrap();
    }
    assert_eq!(ring.enqueue(&mut b), (10, 0));
    assert_eq!((ring.len(), pool.in_use()), (10, 10));
    let mut out = Burst::new();
    assert_eq!(ring.dequeue(&mut out, 32), 10);
    assert_eq!(out.drain().next().unwrap().data()[14], 0, "in order");
    drop(out);
    assert_eq!(pool.in_use(), 0);
    let (mut sent, mut unsent) = (0, 0);
    for _ in 0..2 {
        let mut b = Burst::new();
        for _ in 0..MAX_BURST {
            b.push(Mbuf::alloc(&pool).unwrap()).unwrap();
        }
        let (s, u) = ring.enqueue(&mut b);
        sent += s;
        unsent += u;
    }
    assert_eq!((sent, unsent), (63, 2 * MAX_BURST - 63), "a 64-slot ring holds 63");
    assert_eq!(pool.in_use(), 63);
    drop(ring);
    assert_eq!(pool.in_use(), 0, "a dropped ring frees what it held");

    // 6. A worker answers ARP for its VIP and asks for its real servers.
    let mac = port.mac().unwrap();
    let snapshot = Arc::new(Snapshot {
        max_connections_per_core: 1024,
        ..Snapshot::new(
            vec![Interface { port: port.id(), mac, addr: Ipv4Addr::new(198, 18, 0, 2), prefix_len: 24, mtu: 1500, kernel: false }],
            [(L4Proto::Tcp, 80), (L4Proto::Udp, 53)]
                .map(|(proto, port)| Service {
                    proto,
                    vip: Ipv4Addr::new(198, 18, 0, 100),
                    port,
                    scheduler: sched::SchedulerSpec::new(sched::SchedulerKind::Rr),
                    persistence: None,
                    mode: ForwardingMode::DirectRoute,
                    local_addrs: vec![],
                    reals: vec![RealServer::new(Ipv4Addr::new(198, 18, 0, 11), 1)],
                })
                .to_vec(),
        )
    });
    let counters = Arc::new(CoreCounters::default());
    let pipeline = Pipeline::new(Arc::clone(&snapshot), Arc::clone(&counters)).unwrap();
    // Queue the client's ARP request before the worker starts.
    let mut m = Mbuf::alloc(&pool).unwrap();
    assert!(m.set_len(60));
    m.data_mut().fill(0);
    proto::arp::write_request(m.data_mut(), MacAddr([2, 0, 0, 0, 0, 10]), Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 100)).unwrap();
    let mut b = Burst::new();
    b.push(m).unwrap();
    // And a frame for nobody, so the first burst has two: the worker's
    // prefetch pass (asked for at any table size below) runs on it.
    let mut other = Mbuf::alloc(&pool).unwrap();
    frame(&mut other, 7);
    b.push(other).unwrap();
    // The real server makes itself known, then four UDP flows send
    // FLOW_FRAMES frames round robin: the first burst opens them, the
    // next finds them through the prefetch stages' hints.
    let mut m = Mbuf::alloc(&pool).unwrap();
    assert!(m.set_len(60));
    m.data_mut().fill(0);
    proto::arp::write_request(m.data_mut(), REAL_MAC, Ipv4Addr::new(198, 18, 0, 11), Ipv4Addr::new(198, 18, 0, 2)).unwrap();
    m.data_mut()[0..6].copy_from_slice(&mac.0);
    m.data_mut()[21] = 2; // a reply
    b.push(m).unwrap();
    assert_eq!(port.tx(0, &mut b), (3, 0));
    for n in 0..FLOW_FRAMES {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 10], mac.0)
            .ipv4([198, 18, 1, 10], [198, 18, 0, 100], 64)
            .udp(5000 + n % 4, 53)
            .write(&mut f, b"query")
            .unwrap();
        let mut m = Mbuf::alloc(&pool).unwrap();
        assert!(m.set_len(f.len()));
        m.data_mut().copy_from_slice(&f);
        b.push(m).unwrap();
        if b.len() == MAX_BURST || n + 1 == FLOW_FRAMES {
            let queued = b.len();
            assert_eq!(port.tx(0, &mut b), (queued, 0));
        }
    }

    let ports = Arc::new(vec![port]);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        pipeline,
        ports: Arc::clone(&ports),
        taps: Arc::new(vec![None]),
        queue: 0,
        pool: Arc::clone(&pool),
        stop: Arc::clone(&stop),
        settings: WorkerSettings { idle_sleep: Duration::from_micros(50), prefetch_from: 0, ..WorkerSettings::default() },
        rings: None,
        config: None,
        views: None,
        links: None,
    };
    let handle = std::thread::spawn(move || worker.run());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();

    assert_eq!(counters.arp_replies_sent.get(), 1, "{}", counters.summary());
    assert!(counters.arp_requests_sent.get() >= 1, "{}", counters.summary());
    // The reply and the request loop back and are seen (and dropped) too.
    assert!(counters.rx_packets.get() >= 4, "{}", counters.summary());
    // Every flow frame forwarded to the real server, on four connections.
    assert_eq!(counters.arp_learned.get(), 1, "{}", counters.summary());
    assert_eq!((counters.conns_created.get(), counters.forwarded.get()), (4, u64::from(FLOW_FRAMES)), "{}", counters.summary());
    // The frame for nobody, the ARP reply (to the client's MAC) and the
    // forwarded frames (to the real server's) looping back.
    assert_eq!(counters.drops(dataplane::counters::DropReason::NotOurMac), 2 + u64::from(FLOW_FRAMES), "{}", counters.summary());
    assert_eq!(counters.garp_sent.get(), 1, "the VIP announced at start");
    assert_eq!(
        counters.tx_packets.get(),
        counters.arp_replies_sent.get() + counters.arp_requests_sent.get() + counters.garp_sent.get() + u64::from(FLOW_FRAMES)
    );
    let mut leftover = 0;
    while ports[0].rx(0, &mut rx, 32) > 0 {
        leftover += rx.drain().count();
    }
    assert!(leftover <= 1);
    assert_eq!(pool.in_use(), 0, "the worker leaked no mbuf: {}", counters.summary());

    // 7. A worker whose port's link is down announces its VIP only once
    //    the link is up (and the control thread has seen it).
    ports[0].set_link(false).unwrap();
    assert!(!ports[0].link().up);
    let links = Arc::new(LinkBoard::new([ports[0].link().up]));
    let counters = Arc::new(CoreCounters::default());
    let worker = Worker {
        pipeline: Pipeline::new(snapshot, Arc::clone(&counters)).unwrap(),
        ports: Arc::clone(&ports),
        taps: Arc::new(vec![None]),
        queue: 0,
        pool: Arc::clone(&pool),
        stop: Arc::clone(&stop),
        settings: WorkerSettings { idle_sleep: Duration::from_micros(50), ..WorkerSettings::default() },
        rings: None,
        config: None,
        views: None,
        links: Some(Arc::clone(&links)),
    };
    stop.store(false, Ordering::Relaxed);
    let handle = std::thread::spawn(move || worker.run());
    std::thread::sleep(Duration::from_millis(200));
    assert!(counters.polls_idle.get() > 0, "the worker runs: {}", counters.summary());
    assert_eq!(counters.garp_sent.get(), 0, "not while the link is down: {}", counters.summary());
    ports[0].set_link(true).unwrap();
    assert!(ports[0].link().up);
    assert!(links.set(0, true));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counters.garp_sent.get() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(counters.garp_sent.get(), 1, "announced once the link came up: {}", counters.summary());
    // Sent (the loopback ring takes everything; the worker reads its own
    // frames back), so nothing was refused.
    assert!(counters.tx_packets.get() >= 1, "{}", counters.summary());
    assert_eq!(counters.drops(dataplane::counters::DropReason::LinkDown), 0);
    while ports[0].rx(0, &mut rx, 32) > 0 {
        rx.drain().for_each(drop);
    }
    assert_eq!(pool.in_use(), 0, "the worker leaked no mbuf: {}", counters.summary());
    drop(ports);
}
