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
    // What a worker pauses forwarding for to keep its view for operators
    // (every 100 ms): made whole at once, as it first was, and in the
    // slices `Worker::run` makes it in, published by a swap.
    let views = dataplane::view::Views::new(1);
    let mut whole_ms = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        views.set(0, worker.view(1));
        whole_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut view = dataplane::view::CoreView::default();
    let (mut next, mut slices, mut longest_us) = (0, 0, Vec::new());
    for _ in 0..21 {
        let mut longest = 0f64;
        loop {
            let t = Instant::now();
            let done = worker.refresh_view(&mut view, &mut next, dataplane::view::VIEW_SLICE, 1) && views.publish(0, &mut view);
            longest = longest.max(t.elapsed().as_secs_f64() * 1e6);
            slices += 1;
            if done {
                break;
            }
        }
        longest_us.push(longest);
    }
    println!(
        "a worker's view of {SERVICES} services for operators: made whole {:.2} ms (median of 21); in slices of {} servers, the longest slice {:.0} us (median of 21 refreshes, {} slices each)",
        median(&mut whole_ms),
        dataplane::view::VIEW_SLICE,
        median(&mut longest_us),
        slices / 21
    );
}
