//! End to end, TUN: rvsd wraps the client's packets in IPIP to the real
//! servers, whose user-space decapsulator (scripts/ipip_decap.py) hands
//! them to their kernel; replies go straight to the client. Needs root.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn tun_carries_connections_and_answers_oversized_df_packets() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up("rvse2et");
    lab.start_real_servers();
    lab.start_decapsulators();
    std::thread::sleep(Duration::from_millis(500));
    let cfg = lab.config_file("tun.toml");
    lab.start_rvsd(&cfg);
    assert!(lab.log().contains("wrr tun ->"), "{}", lab.log());

    // Real TCP through the tunnel: every request answered, the servers see
    // the client's own address, wrr 1:2.
    let by_server = tally_from(&lab.client("http", 150), lab.client_addr);
    assert_eq!(by_server.values().sum::<usize>(), 150);
    let ratio = by_server["rs2"] as f64 / by_server["rs1"] as f64;
    assert!((ratio - 2.0).abs() <= 0.2, "{by_server:?}");
    let by_server = tally_from(&lab.client("udp", 20), lab.client_addr);
    assert_eq!(by_server.values().sum::<usize>(), 20);

    // A 1500-byte packet with DF cannot be tunnelled over a 1500 MTU: the
    // client's kernel is told to use 1480, and then refuses the size itself.
    let first = lab.client("bigudp", 1);
    assert_eq!(first, ["sent 1472"]);
    std::thread::sleep(Duration::from_millis(300));
    let route = run(lab.exec("cl").args(["ip", "route", "get", lab.vip]));
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    assert!(route.contains("mtu 1480"), "the client learned the path MTU: {route}");
    assert_eq!(lab.client("bigudp", 1), ["refused 90"], "EMSGSIZE");

    // 1 MiB uploads cross the tunnel too: full-size TCP segments do not fit
    // once wrapped; the path MTU learned from our ICMP shrinks them.
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, lab.client_addr).values().sum::<usize>(), 8, "{up:?}");

    let log = lab.stop_rvsd();
    assert!(stat(&log, "icmp_frag_needed") >= 1, "{log}");
    for bad in ["drop_malformed_frame", "drop_malformed_ipv4", "drop_no_headroom", "drop_neighbor_unresolved"] {
        assert_eq!(stat(&log, bad), 0, "{bad} in {log}");
    }
}

#[test]
fn tun_with_two_workers() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up("rvse2et2");
    lab.start_real_servers();
    lab.start_decapsulators();
    std::thread::sleep(Duration::from_millis(500));
    let cfg = lab.config_file_workers("tun.toml", 2);
    lab.start_rvsd(&cfg);
    assert!(lab.log().contains("running: 2 worker(s)"), "{}", lab.log());
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, lab.client_addr).values().sum::<usize>(), 8, "{up:?}");
    assert_eq!(tally_from(&lab.client("http", 100), lab.client_addr).values().sum::<usize>(), 100);
    let log = lab.stop_rvsd();
    assert_eq!(stat_all(&log, "redirected"), 0, "TUN sees one direction: never redirected");
    let per_core: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("stats lcore="))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("conns_created=")).map(|v| v.parse().unwrap()))
        .collect();
    assert!(per_core.len() == 2 && per_core.iter().all(|&n| n > 0), "both cores served: {per_core:?}");
}
