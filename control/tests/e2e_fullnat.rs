//! End to end, FullNAT: the real servers see the load balancer's local
//! address, and the client's address and port reach them in a TOA option
//! (kind 254) on the first segment after the SYN, checked in a capture
//! taken on a real server. Real kernel stacks in namespaces; needs root.

mod common;

use common::*;
use proto::ethernet::EthernetFrame;
use proto::ipv4::Ipv4Packet;
use proto::l4::{tcp_flags, TcpSegment};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIP: &str = "198.18.0.3";

/// One captured segment: (flags, TOA option data if present).
type Segment = (u8, Option<Vec<u8>>);

/// TCP segments from a classic pcap file (Ethernet), as
/// (source port, flags, TOA option bytes if present).
fn segments_from(pcap: &[u8]) -> Vec<(u16, u8, Option<Vec<u8>>)> {
    assert!(pcap.len() >= 24 && pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + incl) else { break };
        at += 16 + incl;
        let Ok(eth) = EthernetFrame::new_checked(frame) else { continue };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { continue };
        let Ok(tcp) = TcpSegment::new_checked(ip.payload()) else { continue };
        let toa = tcp.option_iter().flatten().find(|o| o.kind == 254).map(|o| o.data.to_vec());
        out.push((tcp.src_port(), tcp.flags(), toa));
    }
    out
}

#[test]
fn fullnat_servers_see_the_local_address_and_get_the_client_in_toa() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2ef", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file("fullnat.toml");
    lab.start_rvsd(&cfg);

    // Capture what rs1 receives from the local address.
    let pcap = lab.dir.join("rs1.pcap");
    let mut tcpdump = lab
        .exec("rs1")
        .args(["tcpdump", "-i", "eth0", "-nn", "-U", "-s", "128", "-w"])
        .arg(&pcap)
        .args(["tcp and src host", LIP])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (apt-get install tcpdump)");
    std::thread::sleep(Duration::from_millis(1500));

    let lines = lab.client_args("download", 20, &["1048576", "4"]);
    let by_server = tally_from(&lines, LIP);
    assert_eq!(by_server.values().sum::<usize>(), 20, "{lines:?}");
    assert_eq!(by_server.len(), 2);
    let by_server = tally_from(&lab.client("udp", 20), LIP);
    assert_eq!(by_server.values().sum::<usize>(), 20);
    // Uploads: the TOA makes the first data segment 8 bytes longer, which
    // the MSS clamp on the SYN-ACK left room for.
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, LIP).values().sum::<usize>(), 8, "{up:?}");

    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-INT", &tcpdump.id().to_string()]).status();
    let _ = tcpdump.wait();
    let segments = segments_from(&std::fs::read(&pcap).expect("capture written"));

    // Per connection (local port): the first segment after the SYN has the TOA.
    let mut by_conn: BTreeMap<u16, Vec<Segment>> = BTreeMap::new();
    for (sport, flags, toa) in segments {
        by_conn.entry(sport).or_default().push((flags, toa));
    }
    let conns: Vec<_> = by_conn.values().filter(|s| s[0].0 & tcp_flags::SYN != 0).collect();
    assert!(!conns.is_empty(), "rs1 got connections from the local address");
    for segs in conns {
        // A loaded machine may retransmit a SYN: the TOA goes on the first
        // segment after the SYNs.
        let syns = segs.iter().take_while(|s| s.0 & tcp_flags::SYN != 0).count();
        assert!(segs[..syns].iter().all(|s| s.1.is_none()), "no TOA on a SYN: {segs:?}");
        let toa = segs.get(syns).and_then(|s| s.1.as_ref()).unwrap_or_else(|| panic!("TOA on the first segment after the SYN: {segs:?}"));
        assert_eq!(toa.len(), 6, "kind 254, length 8: port + IPv4");
        assert_eq!(&toa[2..6], &[198, 18, 1, 10], "the client's address");
        assert!(u16::from_be_bytes([toa[0], toa[1]]) >= 1024, "the client's port");
        assert!(segs[syns + 1..].iter().all(|s| s.1.is_none()), "only once per connection: {segs:?}");
    }
    let log = lab.stop_rvsd();
    assert!(stat(&log, "toa_inserted") >= 20, "{log}");
    assert_eq!(stat(&log, "toa_skipped"), 0, "{log}");
}

/// The same service on DPDK's AF_XDP driver (what bench/realtcp.sh runs
/// RVS on): frames that grow by the TOA go out through the XDP socket.
#[test]
fn fullnat_over_af_xdp_downloads_and_uploads_are_intact() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2efx", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file_af_xdp("fullnat.toml");
    lab.start_rvsd(&cfg);
    assert!(lab.log().contains("interface servers on net_af_xdp1"), "{}", lab.log());
    let lines = lab.client_args("download", 16, &["1048576", "4"]);
    assert_eq!(tally_from(&lines, LIP).values().sum::<usize>(), 16, "{lines:?}");
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, LIP).values().sum::<usize>(), 8, "{up:?}");
    assert_eq!(tally_from(&lab.client("udp", 20), LIP).values().sum::<usize>(), 20);
    let log = lab.stop_rvsd();
    assert!(stat(&log, "toa_inserted") >= 24, "{log}");
    assert_eq!(stat(&log, "toa_skipped"), 0, "{log}");
    for bad in FORWARDING_DROPS {
        assert_eq!(stat(&log, bad), 0, "{bad} in {log}");
    }
}

#[test]
fn fullnat_with_two_workers() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2ef2", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file_workers("fullnat.toml", 2);
    lab.start_rvsd(&cfg);
    let lines = lab.client_args("download", 24, &["1048576", "4"]);
    assert_eq!(tally_from(&lines, LIP).values().sum::<usize>(), 24, "{lines:?}");
    let up = lab.client_args("upload", 8, &["1048576", "4"]);
    assert_eq!(tally_from(&up, LIP).values().sum::<usize>(), 8, "{up:?}");
    assert_eq!(tally_from(&lab.client("udp", 40), LIP).values().sum::<usize>(), 40);

    // rvsadm -c gathers both workers' connections: as many as the tables
    // hold, each scheduled one listed once, with its local address.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let v: serde_json::Value = serde_json::from_str(&lab.rvsadm(&["-Lnc", "--json"])).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len() as u64, v["connections"].as_u64().unwrap(), "{v}");
    for proto in ["TCP", "UDP"] {
        let svc = v["services"].as_array().unwrap().iter().find(|s| s["proto"] == proto).unwrap();
        let scheduled: u64 = svc["reals"].as_array().unwrap().iter().map(|r| r["conns"].as_u64().unwrap()).sum();
        let listed = entries.iter().filter(|e| e["proto"] == proto).count() as u64;
        assert_eq!(listed, scheduled, "{proto}: {v}");
    }
    assert!(entries.len() >= 32 + 40, "{v}");
    for e in entries {
        assert!(e["client"].as_str().unwrap().starts_with("198.18.1.10:"), "{e}");
        assert!(e["local"].as_str().unwrap().starts_with(&format!("{LIP}:")), "{e}");
    }
    let text = lab.rvsadm(&["-Lnc"]);
    assert_eq!(text.lines().filter(|l| l.contains(LIP)).count(), entries.len(), "{text}");

    // The exception path on both interfaces, with two workers: the kernel
    // answers pings to its addresses, and its health probes (from
    // 198.18.0.2, through whichever worker) find both servers up.
    for (from, to) in [("cl", "198.18.1.2"), ("rs1", "198.18.0.2")] {
        let ping = lab.exec(from).args(["ping", "-c", "2", "-i", "0.2", "-W", "2", to]).output().unwrap();
        assert!(ping.status.success(), "ping {to} from {from}: {}", String::from_utf8_lossy(&ping.stdout));
    }
    let tcp = v["services"].as_array().unwrap().iter().find(|s| s["proto"] == "TCP").unwrap();
    for r in tcp["reals"].as_array().unwrap() {
        assert_eq!(r["health"].as_str(), Some("up"), "{r}");
    }
    let m = lab.scrape();
    for real in ["real=198.18.0.11:8080,", "real=198.18.0.12:8080,"] {
        assert!(sum(&m, "rvs_real_server_health_checks_total", &[real, "result=ok"]) >= 1.0, "{m:?}");
        assert_eq!(sum(&m, "rvs_real_server_health_checks_total", &[real, "result=failed"]), 0.0, "{m:?}");
    }

    let log = lab.stop_rvsd();
    let (out, inn) = (stat_all(&log, "redirected"), stat_all(&log, "redirected_in"));
    assert!(out > 0 && out == inn, "redirected {out}, received {inn}: {log}");
    assert!(stat_all(&log, "toa_inserted") >= 24, "{log}");
    assert_eq!(stat_all(&log, "drop_not_for_us"), 0, "{log}");
}

#[test]
fn fullnat_icmp_port_unreachable_reaches_the_clients_socket() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2efi", "nat");
    lab.start_real_servers_on(8080);
    let extra = "\n[[services]]\nprotocol = \"udp\"\nvip = \"198.18.1.100\"\nport = 9999\nscheduler = \"rr\"\nforwarding = \"fullnat\"\nlocal_addresses = [\"198.18.0.3\"]\n\n  [[services.reals]]\n  address = \"198.18.0.11\"\n";
    let cfg = lab.config_file_plus("fullnat.toml", extra);
    lab.start_rvsd(&cfg);
    assert_eq!(lab.client("udpclosed", 5), vec!["refused"; 5]);
    let log = lab.stop_rvsd();
    assert!(stat(&log, "icmp_forwarded") >= 5, "{log}");
}
