//! The worker pipeline (sans-IO) over arbitrary frames, after the real
//! servers are resolved, with an exception path and health flips mixed
//! in: every frame gets a decision, none panics.
#![no_main]

use dataplane::config::{ForwardingMode, Interface, L4Proto, RealServer, Service, Snapshot};
use dataplane::conn::Hint;
use dataplane::health::{Health, HealthBoard};
use dataplane::pipeline::{Action, Pipeline, Received};
use libfuzzer_sys::fuzz_target;
use proto::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

fn pipeline() -> (Pipeline, Arc<HealthBoard>) {
    let reals = vec![RealServer::new(Ipv4Addr::new(198, 18, 0, 11), 1), RealServer::new(Ipv4Addr::new(198, 18, 0, 12), 2)];
    let svc = |proto, port, kind| Service {
        proto,
        vip: Ipv4Addr::new(198, 18, 0, 100),
        port,
        scheduler: sched::SchedulerSpec::new(kind),
        persistence: None,
        mode: ForwardingMode::DirectRoute,
        local_addrs: vec![],
        reals: reals.clone(),
    };
    let snapshot = Snapshot {
        max_connections_per_core: 64,
        ..Snapshot::new(
            vec![Interface { port: 0, mac: LB_MAC, addr: Ipv4Addr::new(198, 18, 0, 2), prefix_len: 24, mtu: 1500, kernel: true }],
            vec![
                svc(L4Proto::Tcp, 80, sched::SchedulerKind::Wlc),
                svc(L4Proto::Udp, 53, sched::SchedulerKind::Mh),
                svc(L4Proto::Icmp, 0, sched::SchedulerKind::Rr),
            ],
        )
    };
    let board = Arc::new(HealthBoard::all_up(&snapshot.services));
    let snapshot = Snapshot { health: Health(Arc::clone(&board)), ..snapshot };
    let mut p = Pipeline::new(Arc::new(snapshot), Arc::default()).expect("valid snapshot");
    for (last, mac) in [(11u8, 0x11u8), (12, 0x12)] {
        let mut f = vec![0u8; 60];
        proto::arp::write_request(&mut f, MacAddr([2, 0, 0, 0, 0, mac]), Ipv4Addr::new(198, 18, 0, last), Ipv4Addr::new(198, 18, 0, 2)).unwrap();
        f[0..6].copy_from_slice(&LB_MAC.0);
        f[21] = 2; // reply
                   // Learned, and handed to the kernel too (it is a reply to us).
        assert_eq!(p.process(0, &mut f, 0), Action::ToKernel);
    }
    (p, board)
}

fuzz_target!(|data: &[u8]| {
    let (mut p, board) = pipeline();
    // Several frames per input, so state (connections) carries over.
    let mut stale = Hint::NONE;
    for (k, chunk) in data.split(|&b| b == 0xa5).enumerate() {
        // A chunk starting 0x5a flips a real server's health instead.
        if let [0x5a, slot, up, ..] = chunk {
            board.set(usize::from(*slot % 7), up & 1 == 1);
            continue;
        }
        let mut f = chunk.to_vec();
        // Most interesting frames are addressed to us.
        if f.len() >= 6 && k % 2 == 0 {
            f[0..6].copy_from_slice(&LB_MAC.0);
        }
        let now = k as u64 * 1_000_000_000;
        // The burst look ahead reads any frame; its hint goes with the
        // frame, or now and then the hint an earlier frame left (stale by
        // now, or another tuple's).
        let fresh = p.prefetch_entry(p.prefetch_index(&f));
        let hint = if k % 3 == 2 { stale } else { fresh };
        stale = fresh;
        // Now and then as from a port that checks IPv4 header checksums
        // and vouched for this one, whatever it holds.
        let ip_checksum_good = k % 4 == 1;
        let (mut head, mut len) = (0, f.len());
        if let Action::Transmit { port } = p.process_hinted(0, &mut f, &mut head, &mut len, now, Received { hint, ip_checksum_good }) {
            assert_eq!(port, 0);
        }
        p.tick(now);
    }
});
