//! End to end, NAT mode: the client on one subnet, real servers on another
//! routing their replies through the load balancer, rvsd translating both
//! ways (with the virtual port 80 mapped to the servers' 8080). Real kernel
//! TCP/UDP stacks in namespaces; needs root.

mod common;

use common::*;

#[test]
fn nat_downloads_are_intact_and_servers_see_the_client() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2en", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file("nat.toml");
    lab.start_rvsd(&cfg);
    assert!(lab.log().contains("service tcp 198.18.1.100:80 wlc nat -> 198.18.0.11:8080(w1) 198.18.0.12:8080(w1)"), "{}", lab.log());

    // 40 downloads of 1 MiB, 4 at a time, every byte checked by the client.
    let lines = lab.client_args("download", 40, &["1048576", "4"]);
    assert_eq!(lines.len(), 40);
    let by_server = tally_from(&lines, lab.client_addr);
    assert_eq!(by_server.values().sum::<usize>(), 40, "{lines:?}");
    assert_eq!(by_server.len(), 2, "wlc uses both servers: {by_server:?}");

    // And 1 MiB uploads, every byte checked by the server.
    let up = lab.client_args("upload", 12, &["1048576", "4"]);
    assert_eq!(tally_from(&up, lab.client_addr).values().sum::<usize>(), 12, "{up:?}");

    // Plain requests and UDP both ways.
    let by_server = tally_from(&lab.client("http", 50), lab.client_addr);
    assert_eq!(by_server.values().sum::<usize>(), 50);
    let by_server = tally_from(&lab.client("udp", 60), lab.client_addr);
    assert_eq!((by_server["rs1"], by_server["rs2"]), (30, 30), "rr over new UDP flows");

    let log = lab.stop_rvsd();
    for bad in FORWARDING_DROPS {
        assert_eq!(stat(&log, bad), 0, "{bad} in {log}");
    }
    // Replies went through us: far more forwarded than the client's share.
    assert!(stat(&log, "forwarded") > 40 * 700, "1 MiB each is over 700 segments: {log}");
}

/// The same service on DPDK's AF_XDP driver (what bench/realtcp.sh runs
/// RVS on): XDP sockets on the veths instead of af_packet.
#[test]
fn nat_over_af_xdp_downloads_are_intact() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2enx", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file_af_xdp("nat.toml");
    lab.start_rvsd(&cfg);
    assert!(lab.log().contains("interface servers on net_af_xdp1"), "{}", lab.log());

    let lines = lab.client_args("download", 20, &["1048576", "4"]);
    assert_eq!(tally_from(&lines, lab.client_addr).values().sum::<usize>(), 20, "{lines:?}");
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, lab.client_addr).values().sum::<usize>(), 8, "{up:?}");
    let by_server = tally_from(&lab.client("udp", 40), lab.client_addr);
    assert_eq!((by_server["rs1"], by_server["rs2"]), (20, 20), "rr over new UDP flows");

    let log = lab.stop_rvsd();
    for bad in FORWARDING_DROPS {
        assert_eq!(stat(&log, bad), 0, "{bad} in {log}");
    }
    assert!(stat(&log, "forwarded") > 20 * 700, "1 MiB each is over 700 segments: {log}");
}

#[test]
fn nat_with_two_workers_steers_replies_to_the_owning_core() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2en2", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file_workers("nat.toml", 2);
    lab.start_rvsd(&cfg);
    assert!(lab.log().contains("running: 2 worker(s)"), "{}", lab.log());
    let lines = lab.client_args("download", 24, &["1048576", "4"]);
    assert_eq!(tally_from(&lines, lab.client_addr).values().sum::<usize>(), 24, "{lines:?}");
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, lab.client_addr).values().sum::<usize>(), 8, "{up:?}");
    assert_eq!(tally_from(&lab.client("udp", 40), lab.client_addr).values().sum::<usize>(), 40);
    let log = lab.stop_rvsd();
    // The kernel's fanout hashes a request and its NATed reply independently:
    // some packets must have reached the other core and been handed over.
    let (out, inn) = (stat_all(&log, "redirected"), stat_all(&log, "redirected_in"));
    assert!(out > 0 && out == inn, "redirected {out}, received {inn}: {log}");
    assert_eq!(stat_all(&log, "drop_redirect_ring_full"), 0, "{log}");
    assert_eq!(stat_all(&log, "drop_not_for_us"), 0, "no reply may miss its connection: {log}");
}

/// A UDP service on a port where the real servers listen to nothing.
pub(crate) fn closed_port_service(forwarding: &str, extra: &str) -> String {
    format!(
        "\n[[services]]\nprotocol = \"udp\"\nvip = \"198.18.1.100\"\nport = 9999\nscheduler = \"rr\"\nforwarding = \"{forwarding}\"\n{extra}\n  [[services.reals]]\n  address = \"198.18.0.11\"\n"
    )
}

#[test]
fn nat_icmp_port_unreachable_reaches_the_clients_socket() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2eni", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file_plus("nat.toml", &closed_port_service("nat", ""));
    lab.start_rvsd(&cfg);
    // The server's ICMP quotes client -> server:9999; translated, it quotes
    // client -> VIP:9999, which the client's socket recognises.
    assert_eq!(lab.client("udpclosed", 5), vec!["refused"; 5]);
    let log = lab.stop_rvsd();
    assert!(stat(&log, "icmp_forwarded") >= 5, "{log}");
}

/// An ICMP service on the NAT VIP, in `forwarding` mode.
fn icmp_service(forwarding: &str, extra: &str) -> String {
    format!(
        "\n[[services]]\nprotocol = \"icmp\"\nvip = \"198.18.1.100\"\nscheduler = \"rr\"\nforwarding = \"{forwarding}\"\n{extra}\n  [[services.reals]]\n  address = \"198.18.0.11\"\n\n  [[services.reals]]\n  address = \"198.18.0.12\"\n"
    )
}

/// Four ping sessions from the client to the VIP; each must get every reply.
fn ping_sessions(lab: &Lab) {
    for _ in 0..4 {
        let out = lab.exec("cl").args(["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.1.100"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("3 received"), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Connections of the ICMP service per real server, from rvsadm --json.
fn icmp_conns(lab: &Lab) -> Vec<u64> {
    std::thread::sleep(std::time::Duration::from_millis(300)); // views refresh every 100 ms
    let v: serde_json::Value = serde_json::from_str(&lab.rvsadm(&["-Ln", "--json"])).unwrap();
    let svc = v["services"].as_array().unwrap().iter().find(|s| s["proto"] == "ICMP").unwrap_or_else(|| panic!("{v}"));
    svc["reals"].as_array().unwrap().iter().map(|r| r["conns"].as_u64().unwrap()).collect()
}

#[test]
fn pings_to_an_icmp_service_are_balanced_in_nat_and_fullnat() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2enp", "nat");
    lab.start_real_servers_on(8080);
    // NAT: the servers answer the client's pings through us.
    let cfg = lab.config_file_plus("nat.toml", &icmp_service("nat", ""));
    lab.start_rvsd(&cfg);
    ping_sessions(&lab);
    assert_eq!(icmp_conns(&lab), vec![2, 2], "rr over four ping sessions");
    let log = lab.stop_rvsd();
    assert_eq!(stat(&log, "icmp_echo_replies"), 0, "balanced, not answered by the LB: {log}");

    // FullNAT: the servers see the local address and its identifiers.
    let cfg = lab.config_file_plus("nat.toml", &icmp_service("fullnat", "local_addresses = [\"198.18.0.3\"]"));
    lab.start_rvsd(&cfg);
    ping_sessions(&lab);
    assert_eq!(icmp_conns(&lab), vec![2, 2]);
    lab.stop_rvsd();
}
