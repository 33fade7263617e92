//! End to end, DR mode: real kernel TCP/UDP stacks in network namespaces,
//! rvsd on `net_af_packet`. Needs root.

mod common;

use common::*;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

const VIP: &str = "198.18.0.100";

#[test]
fn dr_tcp_wrr_one_to_two_over_300_connections() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = "rvse2ea";
    {
        let mut lab = Lab::serving(prefix, (1, 2), "wrr", 1);
        // Data towards the servers crosses the load balancer in DR: uploads.
        let up = lab.client_args("upload", 12, &["1048576", "4"]);
        assert_eq!(tally(&up).values().sum::<usize>(), 12, "{up:?}");
        let lines = lab.client("http", 300);
        assert_eq!(lines.len(), 300);
        let by_server = tally(&lines);
        let (rs1, rs2) = (by_server["rs1"] as f64, by_server["rs2"] as f64);
        let ratio = rs2 / rs1;
        assert!((ratio - 2.0).abs() <= 0.2, "rs2/rs1 = {ratio:.3} ({by_server:?}), want 2 within 10%");
        let log = lab.stop_rvsd();
        // 300 + 12 + the start-up probes, each a new TCP connection via the VIP.
        assert!(stat(&log, "conns_created") >= 312, "{log}");
        assert!(stat(&log, "forwarded") >= 300 * 4, "{log}");
        for bad in ["drop_malformed_frame", "drop_malformed_ipv4", "drop_neighbor_unresolved", "drop_tx_queue_full"] {
            assert_eq!(stat(&log, bad), 0, "{bad} in {log}");
        }
        assert_eq!(namespaces_with(prefix), 5);
    }
    assert_eq!(namespaces_with(prefix), 0, "topology torn down");
}

#[test]
fn dr_udp_rr_and_garbage_frames_are_counted_drops() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::serving("rvse2eb", (1, 1), "wrr", 1);

    let lines = lab.client("udp", 100);
    let by_server = tally(&lines);
    assert_eq!(by_server.values().sum::<usize>(), 100);
    assert_eq!((by_server["rs1"], by_server["rs2"]), (50, 50), "rr over new UDP flows");

    // The LB's MAC, as the client resolved it for the VIP.
    let out = run(lab.exec("cl").args(["ip", "neigh", "show", VIP]));
    let neigh = String::from_utf8_lossy(&out.stdout).to_string();
    let mac = neigh.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).expect("VIP resolved").to_string();
    let garbage = run(lab.exec("cl").args(["python3", script("garbage.py").to_str().unwrap(), "eth0", &mac, lab.client_addr, lab.vip, "1100"]));
    assert!(String::from_utf8_lossy(&garbage.stdout).contains("sent 1100"));
    std::thread::sleep(Duration::from_millis(500));

    // Still serving after the garbage.
    let lines = lab.client("http", 20);
    assert_eq!(tally(&lines).values().sum::<usize>(), 20);
    let log = lab.stop_rvsd();
    let dropped: u64 = [
        "drop_malformed_frame",
        "drop_unsupported_ethertype",
        "drop_malformed_arp",
        "drop_malformed_ipv4",
        "drop_fragment",
        "drop_unsupported_protocol",
        "drop_malformed_l4",
        "drop_bad_ipv4_checksum",
        "drop_not_our_mac",
    ]
    .iter()
    .map(|k| stat(&log, k))
    .sum();
    // 100 frames of each of 11 kinds. The 100 lone fragments never reach
    // rvsd here: DPDK's af_packet PMD joins a PACKET_FANOUT group with
    // PACKET_FANOUT_FLAG_DEFRAG, so the kernel holds them for reassembly
    // (the pipeline tests cover the fragment drop). Every other frame must
    // be a counted drop.
    assert!(dropped >= 1000, "only {dropped} garbage drops counted:\n{log}");
    for k in ["drop_malformed_ipv4", "drop_malformed_arp", "drop_malformed_l4", "drop_unsupported_ethertype", "drop_unsupported_protocol"] {
        assert!(stat(&log, k) >= 100, "{k} in {log}");
    }
}

#[test]
fn dr_source_hashing_keeps_a_client_on_one_server() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::serving("rvse2ec", (1, 1), "sh", 1);
    let by_server = tally(&lab.client("http", 60));
    assert_eq!(by_server.len(), 1, "sh sends one client to one server: {by_server:?}");
    assert_eq!(by_server.values().sum::<usize>(), 60);
    lab.stop_rvsd();
}

#[test]
fn dr_a_reused_client_port_is_scheduled_afresh() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::serving("rvse2ere", (1, 1), "wrr", 1);
    // 20 connections one after the other on one 4-tuple: each finds the
    // last one closing in the table and must be a new connection (IPVS's
    // conn_reuse_mode), so rr alternates instead of pinning them all.
    let by_server = tally(&lab.client_args("sameport", 20, &["45000"]));
    assert_eq!(by_server.values().sum::<usize>(), 20);
    assert!(by_server.get("rs1").copied().unwrap_or(0).abs_diff(by_server.get("rs2").copied().unwrap_or(0)) <= 2, "{by_server:?}");
    let log = lab.stop_rvsd();
    assert!(stat(&log, "conns_created") >= 20, "{log}");
}

#[test]
fn dr_two_workers_each_with_a_queue() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::serving("rvse2ed", (1, 1), "rr", 2);
    assert!(lab.log().contains("running: 2 worker(s) on lcores [1, 2]"), "{}", lab.log());
    let by_server = tally(&lab.client("http", 200));
    assert_eq!(by_server.values().sum::<usize>(), 200);
    // Each core runs its own rr: together still close to even.
    assert!(by_server["rs1"].abs_diff(by_server["rs2"]) <= 20, "{by_server:?}");
    let log = lab.stop_rvsd();
    let per_core: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("stats lcore="))
        .map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("conns_created=")).unwrap().parse().unwrap())
        .collect();
    assert_eq!(per_core.len(), 2, "{log}");
    assert!(per_core.iter().all(|&n| n > 0), "the kernel's fanout must feed both queues: {per_core:?}");
    assert!(per_core.iter().sum::<u64>() >= 200);
}

#[test]
fn bad_config_fails_fast_with_position_and_starts_nothing() {
    let dir = std::env::temp_dir().join(format!("rvs-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(repo().join("configs/demo.toml")).unwrap().replace("scheduler = \"wrr\"", "scheduler = \"wrrr\"");
    std::fs::File::create(&bad).unwrap().write_all(text.as_bytes()).unwrap();
    for flag in ["--config", "--check-config"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rvsd")).arg(flag).arg(&bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        let want = format!("error: {}:28:13: services[0].scheduler: unknown scheduler \"wrrr\"", bad.display());
        assert!(err.starts_with(&want), "{flag}: {err}");
        assert!(!err.contains("interface"), "nothing may start: {err}");
    }
    let good = run(Command::new(env!("CARGO_BIN_EXE_rvsd")).arg("--check-config").arg(repo().join("configs/demo.toml")));
    assert!(String::from_utf8_lossy(&good.stdout).contains("OK (1 interfaces, 2 services, 4 real servers)"));
    let none = Command::new(env!("CARGO_BIN_EXE_rvsd")).output().unwrap();
    assert!(!none.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A connection capacity this machine could not hold when full is refused
/// at start (not found out by the kernel's OOM killer on a busy day).
#[test]
fn a_table_bigger_than_the_memory_is_refused_at_start() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("rvse2em");
    let cfg = lab.config((1, 1));
    let most = dataplane::conn::ConnTable::MAX_CAPACITY;
    let need = dataplane::conn::ConnTable::reserved_bytes(most) as u64;
    let available = control::memory::available().expect("/proc/meminfo");
    assert!(need > available, "this test needs a machine with less than {need} bytes available (it has {available})");
    let text = std::fs::read_to_string(&cfg).unwrap() + &format!("\n[limits]\nconnections_per_core = {most}\n");
    std::fs::write(&cfg, text).unwrap();
    let out = lab.exec("lb").arg(env!("CARGO_BIN_EXE_rvsd")).arg("--config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("limits.connections_per_core = {most}: the connection tables of 1 worker(s) take up to ");
    assert!(err.contains(&want) && err.contains("GiB of memory available; lower it"), "{err}");
    assert!(!err.contains("interface") && !err.contains("running:"), "nothing may start: {err}");
}

#[test]
fn dr_announces_the_vip_by_gratuitous_arp_at_start() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up("rvse2eg");
    // The client accepts unsolicited announcements (arp_accept).
    run(lab.exec("cl").args(["sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1"]));
    let cfg = lab.config((1, 1));
    lab.start_rvsd_quiet(&cfg);
    std::thread::sleep(Duration::from_millis(500));
    // Before the client sent anything, it knows where the VIP is.
    let neigh = String::from_utf8_lossy(&run(lab.exec("cl").args(["ip", "neigh", "show", VIP])).stdout).to_string();
    let link = String::from_utf8_lossy(&run(lab.exec("lb").args(["ip", "link", "show", "eth0"])).stdout).to_string();
    let lb_mac = link.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("LB MAC").to_string();
    assert!(neigh.contains(&format!("lladdr {lb_mac}")), "client neighbor entry {neigh:?}, LB eth0 {lb_mac}");
    let log = lab.stop_rvsd();
    assert!(stat(&log, "garp_sent") >= 1, "{log}");
}
