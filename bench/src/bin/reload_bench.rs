//! Reload cost with 10,000 services (issue 6: under a second): the control
//! thread's part (parse and validate the file, check the snapshot, build
//! the neighbor table) and a worker's part (apply it in place), for a
//! reload that changes a weight in every service. Then what a worker
//! pauses forwarding for to keep its view for operators (10,000 services)
//! and to answer a connection listing (`rvsadm -c`, 100,000 connections):
//! made whole at once, and in the slices the worker makes them in.
//! Run: `cargo run --release -p bench --bin reload_bench`.

use dataplane::config::{ForwardingMode, Interface, L4Proto, RealServer, Service, Snapshot};
use dataplane::pipeline::{Action, Pipeline};
use proto::MacAddr;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

const SERVICES: u32 = 10_000;

/// A config file with `SERVICES` TCP services (distinct VIPs), two real
/// servers each; `weight` for the second server; forwarding `mode`
/// ("nat", or "fullnat" from one local address).
fn config_text(weight: u32, mode: &str) -> String {
    let local = if mode == "fullnat" { "local_addresses = [\"10.0.0.3\"]\n" } else { "" };
    let mut t = String::from("[dpdk]\neal_args = []\n\n[[interfaces]]\nname = \"lan\"\ndevice = \"net_null0\"\naddress = \"10.0.0.2/16\"\n");
    for s in 0..SERVICES {
        let vip = Ipv4Addr::from(0xc612_0000 + s);
        let _ = write!(
            t,
            "\n[[services]]\nprotocol = \"tcp\"\nvip = \"{vip}\"\nport = 80\nscheduler = \"wlc\"\nforwarding = \"{mode}\"\n{local}  [[services.reals]]\n  address = \"10.0.{}.{}\"\n  [[services.reals]]\n  address = \"10.0.{}.{}\"\n  weight = {weight}\n",
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

/// The system allocator, counting the bytes allocated and not yet freed
/// (what a worker's start holds, whatever the allocator reuses).
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// count is only read.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, std::sync::atomic::Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated and not freed.
fn live() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|x, y| x.total_cmp(y));
    v[v.len() / 2]
}

/// A worker started on `SERVICES` services forwarded in `mode`, and five
/// reloads changing a weight in every one; prints the start's time and
/// memory and the reloads' medians, and returns the worker.
fn start_and_reload(mode: &str) -> Pipeline {
    let (a, b) = (config_text(1, mode), config_text(3, mode));
    let first = snapshot(&a);
    let shared = Arc::new(dataplane::neighbor::SharedNeighbors::new(Pipeline::wanted_neighbors(&first)));
    let (memory, t) = (live(), Instant::now());
    let mut worker = Pipeline::with_neighbors(Arc::clone(&first), Arc::default(), Arc::clone(&shared)).expect("runs");
    let (start_ms, start_mib) = (t.elapsed().as_secs_f64() * 1e3, live().saturating_sub(memory) as f64 / f64::from(1 << 20));
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
    println!(
        "reload of {SERVICES} {mode} services ({} bytes of TOML, {} real servers): control {:.1} ms, worker apply {:.1} ms (medians of 5); the worker's start {start_ms:.1} ms, {start_mib:.1} MiB allocated",
        a.len(),
        2 * SERVICES,
        median(&mut control_ms),
        median(&mut worker_ms)
    );
    worker
}

fn main() {
    let worker = start_and_reload("nat");
    // FullNAT services also keep local ports per core.
    drop(start_and_reload("fullnat"));
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
    listing_pause();
}

/// Connections in the listing benchmark's table: more than a core lists.
const LISTED_CONNECTIONS: u32 = 150_000;

/// A worker's pause to answer `rvsadm -c` with a table of
/// `LISTED_CONNECTIONS` DR connections: the listing made whole at once
/// (as it first was) against the longest of the slices `Worker::run`
/// makes it in, each up to `MAX_LISTED_PER_CORE` rows.
fn listing_pause() {
    const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    let (vip, real) = (Ipv4Addr::new(198, 18, 0, 100), Ipv4Addr::new(198, 18, 0, 11));
    let service = Service {
        proto: L4Proto::Tcp,
        vip,
        port: 80,
        scheduler: sched::SchedulerSpec::new(sched::SchedulerKind::Rr),
        persistence: None,
        mode: ForwardingMode::DirectRoute,
        local_addrs: vec![],
        reals: vec![RealServer::new(real, 1)],
    };
    let interface = Interface { port: 0, mac: LB_MAC, addr: Ipv4Addr::new(198, 18, 0, 2), prefix_len: 24, mtu: 1500, kernel: false };
    let snapshot = Snapshot { max_connections_per_core: 1 << 18, ..Snapshot::new(vec![interface], vec![service]) };
    let mut p = Pipeline::new(Arc::new(snapshot), Arc::default()).expect("valid snapshot");
    // The real server answers ARP, then clients open connections.
    let mut f = vec![0u8; 60];
    proto::arp::write_request(&mut f, MacAddr([2, 0, 0, 0, 1, 11]), real, Ipv4Addr::new(198, 18, 0, 2)).expect("fits");
    f[0..6].copy_from_slice(&LB_MAC.0);
    f[21] = 2;
    assert_eq!(p.process(0, &mut f, 0), Action::Consumed);
    for k in 0..LISTED_CONNECTIONS {
        let client = Ipv4Addr::from(0x6400_0000 + k / 50_000);
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 10], LB_MAC.0)
            .ipv4(client.octets(), vip.octets(), 64)
            .tcp(1024 + (k % 50_000) as u16, 80, 1, 65535)
            .syn()
            .write(&mut f, &[])
            .expect("builds");
        assert!(matches!(p.process(0, &mut f, 1), Action::Transmit { .. }), "connection {k} opens");
    }
    let max = dataplane::view::MAX_LISTED_PER_CORE;
    let mut whole_ms = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let (rows, truncated) = p.list_connections(2, max);
        whole_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!((rows.len(), truncated), (max, true));
    }
    let (mut longest_us, mut slices) = (Vec::new(), 0);
    for _ in 0..11 {
        let mut listing = dataplane::view::ConnListing::default();
        let mut longest = 0f64;
        loop {
            let t = Instant::now();
            let done = p.list_connections_slice(&mut listing, 2, dataplane::view::LIST_SLICE, max);
            longest = longest.max(t.elapsed().as_secs_f64() * 1e6);
            slices += 1;
            if done {
                break;
            }
        }
        assert_eq!((listing.rows.len(), listing.truncated), (max, true));
        longest_us.push(longest);
    }
    println!(
        "a worker's listing of {max} of its {LISTED_CONNECTIONS} connections (rvsadm -c): made whole {:.2} ms (median of 11); in slices of {} slots, the longest slice {:.0} us (median of 11 listings, {} slices each)",
        median(&mut whole_ms),
        dataplane::view::LIST_SLICE,
        median(&mut longest_us),
        slices / 11
    );
}
