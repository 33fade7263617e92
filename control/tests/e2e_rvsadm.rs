//! End to end, rvsadm: its listing matches what actually happened
//! (services, weights, connection and traffic counts), and it says so
//! clearly when rvsd is not running or is asked nonsense. Needs root.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn rvsadm(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    let out = lab.rvsadm_output(args);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn rvsadm_shows_the_real_state() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2eadm", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file("nat.toml");
    // Not running yet: a clear error.
    let (code, _, err) = rvsadm(&lab, &["-Ln"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach rvsd") && err.contains("is rvsd running?"), "{err}");

    lab.start_rvsd(&cfg);
    // The socket is root's only.
    let mode = std::fs::metadata(lab.admin_socket()).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);

    // 40 connections (plus the start-up probe) with known traffic.
    let lines = lab.client("http", 40);
    assert_eq!(tally_from(&lines, lab.client_addr).values().sum::<usize>(), 40);
    std::thread::sleep(Duration::from_millis(300)); // views refresh every 100 ms

    let (code, list, _) = rvsadm(&lab, &["-Ln"]);
    assert_eq!(code, 0);
    assert!(list.contains("TCP  198.18.1.100:80 wlc"), "{list}");
    assert!(list.contains("UDP  198.18.1.100:53 rr"), "{list}");
    let real_lines: Vec<&str> = list.lines().filter(|l| l.contains("-> 198.18.0.1") && l.contains(":8080")).collect();
    assert_eq!(real_lines.len(), 2, "{list}");
    for l in &real_lines {
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!((cols[2], cols[3]), ("Masq", "1"), "forward and weight: {l}");
    }

    // --json: the counts add up to what the client did.
    let (_, json, _) = rvsadm(&lab, &["-Ln", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tcp = v["services"].as_array().unwrap().iter().find(|s| s["proto"] == "TCP").unwrap();
    let conns: u64 = tcp["reals"].as_array().unwrap().iter().map(|r| r["conns"].as_u64().unwrap()).sum();
    assert_eq!(conns, 41, "40 requests + the start-up probe: {json}");
    let pkts_in: u64 = tcp["reals"].as_array().unwrap().iter().map(|r| r["pkts_in"].as_u64().unwrap()).sum();
    let pkts_out: u64 = tcp["reals"].as_array().unwrap().iter().map(|r| r["pkts_out"].as_u64().unwrap()).sum();
    assert!(pkts_in >= 41 * 4 && pkts_out >= 41 * 4, "at least SYN, ACK, request, FIN each way: {pkts_in} {pkts_out}");

    let (_, stats, _) = rvsadm(&lab, &["-Ln", "--stats"]);
    let row = stats.lines().find(|l| l.starts_with("TCP")).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("41"), "{stats}");
    let (_, rate, _) = rvsadm(&lab, &["-Ln", "--rate"]);
    assert!(rate.contains("CPS") && rate.lines().any(|l| l.starts_with("TCP")), "{rate}");
    // --neighbors: both servers resolved by ARP, at their real MACs.
    let (code, neigh, _) = rvsadm(&lab, &["--neighbors"]);
    assert_eq!(code, 0);
    for (rs, ip) in [("rs1", "198.18.0.11"), ("rs2", "198.18.0.12")] {
        let mac = run(lab.exec(rs).args(["cat", "/sys/class/net/eth0/address"]));
        let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
        let row = neigh.lines().find(|l| l.starts_with(ip)).unwrap_or_else(|| panic!("{ip} missing: {neigh}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((cols[2], cols[3]), (mac.as_str(), "reachable"), "{neigh}");
    }
    // -c: each of the 41 connections, from the client to a server.
    let (code, conns, _) = rvsadm(&lab, &["-Lnc"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = conns.lines().filter(|l| l.starts_with("TCP")).collect();
    assert_eq!(rows.len(), 41, "{conns}");
    for r in rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        assert!(cols[3].starts_with("198.18.1.10:") && cols[4] == "198.18.1.100:80", "{r}");
        assert!(cols[5].starts_with("198.18.0.1") && cols[5].ends_with(":8080"), "{r}");
    }
    let (_, t, _) = rvsadm(&lab, &["--timeout"]);
    assert_eq!(t.trim(), "Timeout (tcp tcpfin udp): 900 120 300");

    // Malformed requests get an error reply and change nothing.
    for junk in ["nonsense\n", "{\"cmd\":\"reboot\"}\n", "{\n"] {
        let mut s = std::os::unix::net::UnixStream::connect(lab.admin_socket()).unwrap();
        s.write_all(junk.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("\"ok\":false"), "{junk:?} -> {answer}");
    }
    // A client that sends nothing does not block the next one.
    let _silent = std::os::unix::net::UnixStream::connect(lab.admin_socket()).unwrap();
    let (code, _, _) = rvsadm(&lab, &["-Ln"]);
    assert_eq!(code, 0);
    lab.stop_rvsd();
}
