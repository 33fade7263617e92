//! End to end, the exception path and health checks (DR topology, real
//! kernel stacks): the load balancer's own address answers ping and TCP
//! through the kernel's TAP interface; an HTTP health check (run by rvsd's
//! kernel sockets, through that same path) takes a killed real server out
//! of the pool within interval x fall and brings it back after it restarts;
//! rvsadm and /metrics show the verdicts. Needs root.

mod common;

use common::*;
use std::time::{Duration, Instant};

const INTERVAL: f64 = 0.3;
const TIMEOUT: f64 = 0.5;
const FALL: u32 = 2;
const RISE: u32 = 2;
/// Label filters of the two servers' samples (labels come sorted: real, ..., service).
const RS1: &str = "real=198.18.0.11:80,";
const RS2: &str = "real=198.18.0.12:80,";

/// The demo's check, faster and stricter.
const DEMO_CHECK: &str = "  interval = 1\n  timeout = 1\n  rise = 2\n  fall = 2\n";

fn health_check() -> String {
    format!("  expect_status = [200]\n  expect_body = \"server=\"\n  interval = {INTERVAL}\n  timeout = {TIMEOUT}\n  rise = {RISE}\n  fall = {FALL}\n")
}

/// The real server (its `server=` name) that answered each request.
fn servers(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("server=")).map_or_else(|| format!("FAILED: {l}"), str::to_string)).collect()
}

#[test]
fn exception_path_and_health_checks() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up("rvse2ehealth");
    lab.start_real_server("rs1", 80);
    lab.start_real_server("rs2", 80);
    let path = lab.config((1, 1));
    let text = std::fs::read_to_string(&path).unwrap();
    // The demo's TCP service has an HTTP check; make it faster.
    assert!(text.contains("[services.health_check]") && text.contains(DEMO_CHECK), "{text}");
    let text = text.replacen(DEMO_CHECK, &health_check(), 1);
    std::fs::write(&path, text).unwrap();
    lab.start_rvsd(&path);
    assert!(lab.log().contains("exception path to kernel interface rvs-lan"), "{}", lab.log());

    // --- The exception path: the LB's own address is the kernel's.
    let addr = run(lab.exec("lb").args(["ip", "-4", "-o", "addr", "show", "dev", "rvs-lan"]));
    assert!(String::from_utf8_lossy(&addr.stdout).contains("198.18.0.2/24"), "{}", String::from_utf8_lossy(&addr.stdout));
    let ping = lab.exec("cl").args(["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"]).output().unwrap();
    assert!(ping.status.success(), "ping the LB: {}", String::from_utf8_lossy(&ping.stdout));
    assert!(!String::from_utf8_lossy(&ping.stdout).contains("duplicates"), "answered once: {}", String::from_utf8_lossy(&ping.stdout));
    // The VIP answers too: the data plane replies itself.
    let ping = lab.exec("cl").args(["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.100"]).output().unwrap();
    assert!(ping.status.success(), "ping the VIP: {}", String::from_utf8_lossy(&ping.stdout));
    // A TCP service of the kernel's (ssh would be one): a listener in the
    // LB namespace, a client in the client's.
    let mut listener = lab
        .exec("lb")
        .args([
            "python3",
            "-c",
            "import socket; s=socket.create_server(('198.18.0.2', 2222)); c,a=s.accept(); c.sendall(('hello ' + a[0] + '\\n').encode()); c.close()",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let hello = run(lab.exec("cl").args([
        "python3",
        "-c",
        "import socket; print(socket.create_connection(('198.18.0.2', 2222), timeout=5).recv(100).decode().strip())",
    ]));
    assert_eq!(String::from_utf8_lossy(&hello.stdout).trim(), "hello 198.18.0.10");
    listener.wait().unwrap();

    // --- Health checks: both servers up and probed.
    let t = Instant::now();
    while sum(&lab.scrape(), "rvs_real_server_health_checks_total", &[RS1, "result=ok"]) < 2.0 {
        assert!(t.elapsed() < Duration::from_secs(10), "no successful probes:\n{}", lab.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = lab.rvsadm(&["-Ln"]);
    assert!(list.contains("Health"), "{list}");
    assert_eq!(list.lines().filter(|l| l.contains("-> 198.18.0.1") && l.contains(":80 ") && l.trim_end().ends_with(" up")).count(), 2, "{list}");
    let before = servers(&lab.client("http", 20));
    assert!(before.iter().all(|s| s == "rs1" || s == "rs2"), "{before:?}");
    assert!(before.contains(&"rs1".to_string()) && before.contains(&"rs2".to_string()), "{before:?}");

    // --- Kill rs1's HTTP server: out of the pool within interval x fall
    // (plus one probe timeout, and slack for this busy machine).
    lab.kill_real_server("rs1");
    let killed = Instant::now();
    lab.wait_log("tcp 198.18.0.100:80 -> 198.18.0.11:80 is DOWN", Duration::from_secs(10));
    let took = killed.elapsed();
    let bound = Duration::from_secs_f64(INTERVAL * f64::from(FALL) + TIMEOUT + 1.5);
    assert!(took <= bound, "marked down after {took:?}, bound {bound:?}");
    // Workers apply it at their next poll loop: give them a moment.
    std::thread::sleep(Duration::from_millis(100));
    let after = servers(&lab.client("http", 30));
    assert!(after.iter().all(|s| s == "rs2"), "new connections must all go to rs2: {after:?}");
    let list = lab.rvsadm(&["-Ln"]);
    let rs1_line = list.lines().find(|l| l.contains("-> 198.18.0.11:80 ")).unwrap_or_else(|| panic!("{list}"));
    assert!(rs1_line.contains(" down (connect:"), "{list}");
    let json: serde_json::Value = serde_json::from_str(&lab.rvsadm(&["-Ln", "--json"])).unwrap();
    let reals = &json["services"][0]["reals"];
    assert_eq!((reals[0]["addr"].as_str(), reals[0]["health"].as_str()), (Some("198.18.0.11"), Some("down")), "{json}");
    assert_eq!(reals[1]["health"].as_str(), Some("up"), "{json}");
    let m = lab.scrape();
    assert_eq!(sum(&m, "rvs_real_server_up", &[RS1]), 0.0, "{m:?}");
    assert_eq!(sum(&m, "rvs_real_server_up", &[RS2]), 1.0, "{m:?}");
    assert_eq!(sum(&m, "rvs_real_server_health_transitions_total", &[RS1]), 1.0, "{m:?}");
    assert!(sum(&m, "rvs_real_server_health_checks_total", &[RS1, "result=failed"]) >= f64::from(FALL), "{m:?}");

    // --- Restart it: back after rise successes.
    lab.start_real_server("rs1", 80);
    let restarted = Instant::now();
    lab.wait_log("tcp 198.18.0.100:80 -> 198.18.0.11:80 is UP", Duration::from_secs(10));
    // Python needs a moment to listen; then rise probes, one interval apart.
    assert!(restarted.elapsed() <= Duration::from_secs_f64(INTERVAL * f64::from(RISE) + 3.0), "{:?}", restarted.elapsed());
    std::thread::sleep(Duration::from_millis(100));
    let back = servers(&lab.client("http", 20));
    assert!(back.iter().all(|s| s == "rs1" || s == "rs2"), "{back:?}");
    assert!(back.contains(&"rs1".to_string()), "rs1 takes connections again: {back:?}");
    assert_eq!(sum(&lab.scrape(), "rvs_real_server_health_transitions_total", &[RS1]), 2.0);

    // The probes and the ping really crossed the exception path.
    let log = lab.stop_rvsd();
    assert!(stat_all(&log, "to_kernel") > 10, "{log}");
    assert!(stat_all(&log, "from_kernel") > 10, "{log}");
    assert_eq!(stat_all(&log, "icmp_echo_replies"), 3, "{log}");
}
