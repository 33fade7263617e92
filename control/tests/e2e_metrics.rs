//! End to end, metrics: scraped during real traffic, the counters match
//! what the test sent, exactly; the text parses with an independent parser
//! (prometheus_client); bad requests get 4xx; a slow client delays no
//! other scrape; many concurrent scrapes do not disturb forwarding. Needs
//! root.

mod common;

use common::*;
use std::process::Command;

/// Sends `raw` to the endpoint and returns the status line.
fn raw_request(lab: &Lab, raw: &str) -> String {
    let py = format!("import socket;s=socket.create_connection(('127.0.0.1',9100));s.sendall({raw:?}.encode());print(s.recv(100).decode().splitlines()[0])");
    String::from_utf8_lossy(&run(lab.exec("lb").args(["python3", "-c", &py])).stdout).trim().to_string()
}

#[test]
fn metrics_match_the_traffic_and_the_endpoint_is_robust() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2emet", "nat");
    lab.start_real_servers_on(8080);
    let cfg = lab.config_file("nat.toml");
    let started = std::time::Instant::now();
    lab.start_rvsd(&cfg);

    // Exactly 50 UDP requests, each answered once: 50 in, 50 out.
    let answers = lab.client("udp", 50);
    assert_eq!(tally_from(&answers, lab.client_addr).values().sum::<usize>(), 50);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let m = lab.scrape();
    let udp = "service=udp/198.18.1.100:53";
    assert_eq!(sum(&m, "rvs_real_server_packets_total", &[udp, "direction=in"]), 50.0);
    assert_eq!(sum(&m, "rvs_real_server_packets_total", &[udp, "direction=out"]), 50.0);
    assert_eq!(sum(&m, "rvs_real_server_connections_total", &[udp]), 50.0);
    assert!(sum(&m, "rvs_real_server_bytes_total", &[udp, "direction=in"]) >= 50.0 * 14.0);
    assert_eq!(sum(&m, "rvs_real_server_weight", &[udp, "real=198.18.0.11:53"]), 1.0);
    assert!(sum(&m, "rvs_core_rx_packets_total", &[]) >= 100.0);
    assert!(sum(&m, "rvs_port_packets_total", &["port=clients", "direction=in"]) >= 50.0);
    assert_eq!(sum(&m, "rvs_port_link_up", &["port=clients"]), 1.0);
    assert_eq!(sum(&m, "rvs_port_link_up", &["port=servers"]), 1.0);
    // xstats: at least ethdev's generic ones, for every driver.
    assert!(sum(&m, "rvs_port_xstat", &["port=clients", "name=rx_good_packets"]) >= 50.0);
    assert!(sum(&m, "rvs_port_xstat", &["port=servers", "name=tx_good_packets"]) >= 50.0);
    assert_eq!(sum(&m, "rvs_core_drops_total", &["reason=malformed_frame"]), 0.0);
    assert_eq!(sum(&m, "rvs_config_reloads_total", &["result=ok"]), 0.0);
    assert!(sum(&m, "rvs_neighbors_resolved", &[]) >= 2.0);
    assert!(sum(&m, "rvs_mempool_mbufs", &[]) > 0.0);
    assert!(m.keys().any(|k| k.starts_with("rvs_core_polls_total{")));
    // The cores were busy for a while, and idle (sleeping between empty
    // polls) most of the time since rvsd started.
    let (busy, up) = (sum(&m, "rvs_core_busy_seconds_total", &[]), started.elapsed().as_secs_f64());
    assert!(busy > 0.0 && busy < up / 2.0, "busy {busy} s of {up} s");
    // Every metric the shipped Grafana dashboard queries exists.
    let dashboard = std::fs::read_to_string(repo().join("configs/grafana-rvs.json")).unwrap();
    let mut names: Vec<&str> = dashboard
        .match_indices("rvs_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            &rest[..rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(rest.len())]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for n in names {
        assert!(m.keys().any(|k| k.starts_with(&format!("{n}{{"))), "the dashboard uses {n}, which is not exported");
    }

    // Bad requests: 4xx, and the endpoint keeps serving.
    assert!(raw_request(&lab, "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw_request(&lab, "GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(raw_request(&lab, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(20000));
    assert!(raw_request(&lab, &huge).starts_with("HTTP/1.1 431"));

    // A slow client (half a request, then nothing) delays nobody: a scrape
    // made meanwhile is answered at once.
    let mut slow = lab
        .exec("lb")
        .args(["python3", "-c", "import socket,time;s=socket.create_connection(('127.0.0.1',9100));s.sendall(b'GET /metrics HTTP/1.1\\r\\n');time.sleep(5)"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // curl's own clock: a server that served one client at a time would
    // keep this one waiting for the slow one's 2 s read timeout.
    let out = run(lab.exec("lb").args(["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", "http://127.0.0.1:9100/metrics"]));
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("curl's time_total");
    assert!(secs < 1.5, "a scrape waited {secs} s behind a slow client");
    assert!(slow.try_wait().unwrap().is_none(), "the slow client was still connected");
    let _ = slow.kill();
    let _ = slow.wait();

    // 40 concurrent scrapes while requests flow: all served, no request fails.
    let ns = lab.ns_name("lb");
    let scrapes = std::thread::spawn(move || {
        // Each PID is kept at spawn (`jobs -p` would miss finished ones).
        let script = "pids=; for i in $(seq 40); do curl -sf -o /dev/null http://127.0.0.1:9100/metrics & pids=\"$pids $!\"; done; ok=0; for j in $pids; do wait $j && ok=$((ok+1)); done; echo $ok";
        let out = Command::new("ip").args(["netns", "exec", &ns, "bash", "-c", script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    let requests = lab.client("http", 100);
    assert_eq!(scrapes.join().unwrap(), "40", "every scrape answered");
    assert_eq!(tally_from(&requests, lab.client_addr).values().sum::<usize>(), 100);
    std::thread::sleep(std::time::Duration::from_millis(300)); // views refresh every 100 ms
    let m = lab.scrape();
    assert_eq!(sum(&m, "rvs_real_server_connections_total", &["service=tcp/198.18.1.100:80"]), 101.0, "100 + the start-up probe");
    lab.stop_rvsd();
}
