//! Reload cost with 10,000 services (issue 6: under a second): the control
//! thread's part (parse and validate the file, check the snapshot, build
//! the neighbor table) and a worker's part (apply it in place), for a
//! reload that changes a weight in every service.
//! Run: `cargo run --release -p bench --bin reload_bench`.

use dataplane::config::{Interface, Snapshot};
use dataplane::pipeline::Pipeline;
use proto::MacAddr;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

const SERVICES: u32 = 10_000;

/// A config file with `SERVICES` TCP services (distinct VIPs), two real
/// servers each; `weight` for the second server.
fn config_text(weight: u32) -> String {
    let mut t = String::from("[dpdk]\neal_args = []\n\n[[interfaces]]\nname = \"lan\"\ndevice = \"net_null0\"\naddress = \"10.0.0.2/16\"\n");
    for s in 0..SERVICES {
        let vip = Ipv4Addr::from(0xc612_0000 + s);
        let _ = write!(
            t,
            "\n[[services]]\nprotocol = \"tcp\"\nvip = \"{vip}\"\nport = 80\nscheduler = \"wlc\"\nforwarding = \"nat\"\n  [[services.reals]]\n  address = \"10.0.{}.{}\"\n  [[services.reals]]\n  address = \"10.0.{}.{}\"\n  weight = {weight}\n",
            1 + s % 200,
            1 + s % 250,
            1 + (s + 1) % 200,
            1 + (s + 7) % 250,
        );
    }
    t
}

fn snapshot(text: &str) -> Arc<Snapshot> {
    let cfg = control::config::parse("bench.toml", text).expect("valid");
    Arc::new(Snapshot {
        routes: cfg.routes,
        timeouts: cfg.timeouts,
        arp: cfg.arp,
        max_connections_per_core: 1024,
        ..Snapshot::new(
            vec![Interface { port: 0, mac: MacAddr([2, 0, 0, 0, 0, 2]), addr: Ipv4Addr::new(10, 0, 0, 2), prefix_len: 16, mtu: 1500, kernel: false }],
            cfg.services,
        )
    })
}

fn main() {
    let (a, b) = (config_text(1), config_text(3));
    let first = snapshot(&a);
    let shared = Arc::new(dataplane::neighbor::SharedNeighbors::new(Pipeline::wanted_neighbors(&first)));
    let mut worker = Pipeline::with_neighbors(Arc::clone(&first), Arc::default(), Arc::clone(&shared)).expect("runs");
    let mut control_ms = Vec::new();
    let mut worker_ms = Vec::new();
    for round in 0..5 {
        let text = if round % 2 == 0 { &b } else { &a };
        let t = Instant::now();
        let next = snapshot(text);
        Pipeline::check(&next).expect("valid");
        let neighbors = Arc::new(Pipeline::neighbors_for_reload(&shared, &next));
        control_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        worker.apply(next, neighbors).expect("applies");
        worker_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    println!(
        "reload of {SERVICES} services ({} bytes of TOML, {} real servers): control {:.1} ms, worker apply {:.1} ms (medians of 5)",
        a.len(),
        2 * SERVICES,
        median(&mut control_ms),
        median(&mut worker_ms)
    );
}
