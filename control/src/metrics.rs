//! The Prometheus endpoint: `GET /metrics` in the text exposition format
//! (version 0.0.4), from the workers' per-core counters and views, summed at
//! scrape time: the data plane does no extra work for it.
//!
//! One custom collector of the `prometheus` crate (built without protobuf)
//! reads everything at scrape time into metric families; the crate's
//! registry sorts them and its text encoder writes them. The tests check
//! the result with an independent parser. Each scrape is served on its own
//! short-lived thread (at most 16 at once), with a read timeout, so a slow
//! or broken client delays nobody else.

use crate::admin::{merge, Listing};
use dataplane::counters::{CoreCounters, DropReason};
use dataplane::dpdk::{Mempool, Port};
use dataplane::published::Published;
use dataplane::view::Views;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest request head accepted.
const MAX_REQUEST: usize = 8192;
/// Scrapes served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;

/// Reload outcomes, kept by the control thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadStats {
    pub ok: u64,
    pub failed: u64,
    /// Unix time of the last successful reload (or of the start).
    pub last_ok: f64,
}

/// Everything a scrape reads.
pub struct Sources {
    pub views: Arc<Views>,
    /// (lcore id, its counters)
    pub cores: Vec<(u32, Arc<CoreCounters>)>,
    pub ports: Arc<Vec<Port>>,
    pub port_names: Vec<String>,
    pub pool: Arc<Mempool>,
    pub pool_size: u32,
    pub published: Arc<Published>,
    pub reloads: Arc<Mutex<ReloadStats>>,
    pub health: Arc<crate::health::HealthState>,
    /// The ports' links (same order as `ports`).
    pub links: Arc<dataplane::links::LinkBoard>,
}

/// Collects families and their samples (each sample belongs to the
/// family opened last).
struct Families(Vec<MetricFamily>);

impl Families {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        debug_assert!(kind == "counter" || kind == "gauge", "{kind}");
        f.set_field_type(if kind == "counter" { MetricType::COUNTER } else { MetricType::GAUGE });
        self.0.push(f);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(f) = self.0.last_mut() else { return };
        debug_assert_eq!(f.name(), name, "a sample outside its family");
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).to_string());
                    l.set_value((*v).to_string());
                    l
                })
                .collect(),
        );
        if f.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        f.mut_metric().push(m);
    }
}

/// The `prometheus` collector: reads everything at scrape time.
struct RvsCollector {
    sources: Arc<Sources>,
    descs: Vec<Desc>,
}

impl Collector for RvsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&self.sources)
    }
}

/// A registry holding RVS's collector. Its descriptors (names, help) come
/// from a first collection: every family is emitted on every scrape, with
/// or without samples.
pub fn registry(sources: Arc<Sources>) -> Result<Registry, prometheus::Error> {
    let descs = families(&sources)
        .iter()
        .map(|f| Desc::new(f.name().to_string(), f.help().to_string(), Vec::new(), Default::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let registry = Registry::new();
    registry.register(Box::new(RvsCollector { sources, descs }))?;
    Ok(registry)
}

/// The exposition text of one scrape.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        return format!("# error encoding the metrics: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Every family with its samples, read now.
fn families(s: &Sources) -> Vec<MetricFamily> {
    let listing: Listing = merge(&s.views.all());
    let mut t = Families(Vec::new());

    type Field = fn(&crate::admin::Real) -> u64;
    let per_real: [(&str, &str, &str, Field); 4] = [
        ("rvs_real_server_connections_total", "counter", "Connections scheduled to the real server.", |r| r.conns),
        ("rvs_real_server_active_connections", "gauge", "Established connections to the real server.", |r| r.active),
        ("rvs_real_server_inactive_connections", "gauge", "Other connections (opening, closing) to the real server.", |r| r.inactive),
        ("rvs_real_server_weight", "gauge", "The real server's weight (0 = quiescent).", |r| u64::from(r.weight)),
    ];
    for (name, kind, help, f) in per_real {
        t.family(name, kind, help);
        for svc in &listing.services {
            let service = format!("{}/{}:{}", svc.proto.to_lowercase(), svc.vip, svc.port);
            for r in &svc.reals {
                let real = format!("{}:{}", r.addr, r.port);
                t.sample(name, &[("service", &service), ("real", &real)], f(r) as f64);
            }
        }
    }
    for (name, help, unit) in [
        ("rvs_real_server_packets_total", "Packets to (in) and from (out) the real server through the load balancer.", "packets"),
        ("rvs_real_server_bytes_total", "Bytes to (in) and from (out) the real server through the load balancer.", "bytes"),
    ] {
        t.family(name, "counter", help);
        for svc in &listing.services {
            let service = format!("{}/{}:{}", svc.proto.to_lowercase(), svc.vip, svc.port);
            for r in &svc.reals {
                let real = format!("{}:{}", r.addr, r.port);
                let (i, o) = if unit == "packets" { (r.pkts_in, r.pkts_out) } else { (r.bytes_in, r.bytes_out) };
                t.sample(name, &[("service", &service), ("real", &real), ("direction", "in")], i as f64);
                t.sample(name, &[("service", &service), ("real", &real), ("direction", "out")], o as f64);
            }
        }
    }

    let health = s.health.snapshot();
    type HealthField = fn(&crate::health::Status) -> f64;
    let per_check: [(&str, &str, &str, HealthField); 2] = [
        ("rvs_real_server_up", "gauge", "Health check verdict: 1 = up, 0 = down (checked servers only).", |st| if st.up { 1.0 } else { 0.0 }),
        ("rvs_real_server_health_transitions_total", "counter", "Up/down changes of the health check verdict.", |st| st.transitions as f64),
    ];
    for (name, kind, help, f) in per_check {
        t.family(name, kind, help);
        for (k, st) in &health {
            let (service, real) = (format!("{}/{}:{}", k.proto.name(), k.vip, k.port), format!("{}:{}", k.real, k.real_port));
            t.sample(name, &[("service", &service), ("real", &real)], f(st));
        }
    }
    t.family("rvs_real_server_health_checks_total", "counter", "Health probes, by result.");
    for (k, st) in &health {
        let (service, real) = (format!("{}/{}:{}", k.proto.name(), k.vip, k.port), format!("{}:{}", k.real, k.real_port));
        t.sample("rvs_real_server_health_checks_total", &[("service", &service), ("real", &real), ("result", "ok")], st.checks_ok as f64);
        t.sample("rvs_real_server_health_checks_total", &[("service", &service), ("real", &real), ("result", "failed")], st.checks_failed as f64);
    }

    type CoreField = fn(&CoreCounters) -> u64;
    let per_core: [(&str, &str, &str, CoreField); 7] = [
        ("rvs_core_rx_packets_total", "counter", "Packets received from the ports by the worker core.", |c| c.rx_packets.get()),
        ("rvs_core_tx_packets_total", "counter", "Packets handed to the ports by the worker core.", |c| c.tx_packets.get()),
        ("rvs_core_connections", "gauge", "Connections in the core's table.", |c| c.conns_active.get()),
        ("rvs_core_connections_created_total", "counter", "Connections the core created.", |c| c.conns_created.get()),
        ("rvs_core_toa_inserted_total", "counter", "FullNAT TOA options inserted.", |c| c.toa_inserted.get()),
        ("rvs_core_icmp_forwarded_total", "counter", "ICMP errors about connections translated and forwarded.", |c| c.icmp_forwarded.get()),
        ("rvs_core_icmp_echo_replies_total", "counter", "Pings to VIPs and FullNAT local addresses answered.", |c| c.icmp_echo_replies.get()),
    ];
    // Seconds, not a count: apart from the integer counters.
    t.family("rvs_core_busy_seconds_total", "counter", "Time the core spent in poll loop iterations that found packets.");
    for (lcore, c) in &s.cores {
        t.sample("rvs_core_busy_seconds_total", &[("core", &lcore.to_string())], c.busy_ns.get() as f64 / 1e9);
    }
    for (name, kind, help, f) in per_core {
        t.family(name, kind, help);
        for (lcore, c) in &s.cores {
            t.sample(name, &[("core", &lcore.to_string())], f(c) as f64);
        }
    }
    // Per-core counters split by one more label: (family, help, label, its values).
    type Split = (&'static str, &'static str, &'static str, [(&'static str, CoreField); 2]);
    let split: [Split; 3] = [
        (
            "rvs_core_redirected_packets_total",
            "Packets handed to (out) or received from (in) the core owning their connection.",
            "direction",
            [("out", |c| c.redirected.get()), ("in", |c| c.redirected_in.get())],
        ),
        (
            "rvs_core_exception_packets_total",
            "Frames handed to the kernel's TAP interfaces (to_kernel) and sent for it (from_kernel).",
            "direction",
            [("to_kernel", |c| c.to_kernel.get()), ("from_kernel", |c| c.from_kernel.get())],
        ),
        (
            "rvs_core_polls_total",
            "Poll loop iterations that found packets (busy) or none (idle).",
            "state",
            [("busy", |c| c.polls_busy.get()), ("idle", |c| c.polls_idle.get())],
        ),
    ];
    for (name, help, label, values) in split {
        t.family(name, "counter", help);
        for (lcore, c) in &s.cores {
            let core = lcore.to_string();
            for (value, f) in values {
                t.sample(name, &[("core", &core), (label, value)], f(c) as f64);
            }
        }
    }
    t.family("rvs_core_arp_sent_total", "counter", "ARP frames the core sent: replies, requests for next hops, announcements.");
    for (lcore, c) in &s.cores {
        let core = lcore.to_string();
        for (kind, n) in [("reply", c.arp_replies_sent.get()), ("request", c.arp_requests_sent.get()), ("announcement", c.garp_sent.get())] {
            t.sample("rvs_core_arp_sent_total", &[("core", &core), ("kind", kind)], n as f64);
        }
    }
    t.family("rvs_core_drops_total", "counter", "Frames dropped by the worker core, by reason.");
    for (lcore, c) in &s.cores {
        let core = lcore.to_string();
        for r in DropReason::ALL {
            t.sample("rvs_core_drops_total", &[("core", &core), ("reason", r.name())], c.drops(r) as f64);
        }
    }
    t.family("rvs_connection_table_capacity", "gauge", "Connections the tables of all cores can hold.");
    t.sample("rvs_connection_table_capacity", &[], listing.capacity as f64);
    t.family("rvs_neighbors_resolved", "gauge", "Next hops (real servers, gateways) with a known MAC address.");
    t.sample("rvs_neighbors_resolved", &[], s.published.get().1.resolved() as f64);

    let r = *s.reloads.lock().unwrap_or_else(|e| e.into_inner());
    t.family("rvs_config_reloads_total", "counter", "Configuration reloads, by outcome.");
    t.sample("rvs_config_reloads_total", &[("result", "ok")], r.ok as f64);
    t.sample("rvs_config_reloads_total", &[("result", "error")], r.failed as f64);
    t.family("rvs_config_last_reload_success_timestamp_seconds", "gauge", "When the running configuration was loaded (Unix time).");
    t.sample("rvs_config_last_reload_success_timestamp_seconds", &[], r.last_ok);

    let stats: Vec<_> = s.ports.iter().map(Port::stats).collect();
    for (name, help, pick) in [
        ("rvs_port_packets_total", "Packets received (in) and sent (out) by the port, from its driver.", 0),
        ("rvs_port_bytes_total", "Bytes received (in) and sent (out) by the port, from its driver.", 1),
        ("rvs_port_errors_total", "Receive (in) and transmit (out) errors of the port, from its driver.", 2),
    ] {
        t.family(name, "counter", help);
        for (st, pname) in stats.iter().zip(&s.port_names) {
            let (i, o) = match pick {
                0 => (st.ipackets, st.opackets),
                1 => (st.ibytes, st.obytes),
                _ => (st.ierrors, st.oerrors),
            };
            t.sample(name, &[("port", pname), ("direction", "in")], i as f64);
            t.sample(name, &[("port", pname), ("direction", "out")], o as f64);
        }
    }
    t.family("rvs_port_link_up", "gauge", "1 while the port's link is up (as last read, at most 50 ms ago), 0 while it is down.");
    for (i, pname) in s.port_names.iter().enumerate() {
        t.sample("rvs_port_link_up", &[("port", pname)], if s.links.is_up(i) { 1.0 } else { 0.0 });
    }
    t.family("rvs_port_missed_total", "counter", "Packets the port dropped because its receive queue was full.");
    for (st, pname) in stats.iter().zip(&s.port_names) {
        t.sample("rvs_port_missed_total", &[("port", pname)], (st.imissed + st.rx_nombuf) as f64);
    }
    // Whatever else the driver counts, under its own names. Most are
    // counters, but DPDK does not say which, and the crate has deprecated
    // "untyped": exported as gauges (rate() still works on them).
    t.family("rvs_port_xstat", "gauge", "The port driver's extended statistics (rte_eth xstats), by DPDK's name.");
    for (port, pname) in s.ports.iter().zip(&s.port_names) {
        for (name, value) in port.xstats() {
            t.sample("rvs_port_xstat", &[("port", pname), ("name", &name)], value as f64);
        }
    }
    t.family("rvs_mempool_mbufs_in_use", "gauge", "Packet buffers taken from the pool.");
    t.sample("rvs_mempool_mbufs_in_use", &[], f64::from(s.pool.in_use()));
    t.family("rvs_mempool_mbufs", "gauge", "Packet buffers in the pool.");
    t.sample("rvs_mempool_mbufs", &[], f64::from(s.pool_size));
    t.0
}

/// Serves `/metrics` until `stop`.
pub fn serve(listener: TcpListener, registry: Registry, stop: Arc<AtomicBool>) {
    let sources = Arc::new(registry);
    let _ = listener.set_nonblocking(true);
    let busy = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        // At the limit, stop accepting for a moment: further clients wait
        // in the kernel's listen backlog instead of being turned away.
        if busy.load(Ordering::Acquire) >= MAX_CLIENTS {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                busy.fetch_add(1, Ordering::AcqRel);
                let (sources, slot) = (Arc::clone(&sources), Arc::clone(&busy));
                let spawned = std::thread::Builder::new().name("rvsd-scrape".into()).spawn(move || {
                    handle(stream, &sources);
                    slot.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    // The closure is gone with the error: give its slot back.
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn respond(mut stream: &TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let kind = if status.starts_with("200") { "text/plain; version=0.0.4; charset=utf-8" } else { "text/plain; charset=utf-8" };
    // One write: a response in fragments would reach the client in pieces.
    let response = format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(response.as_bytes())
}

/// One scrape: a bounded, time-limited request head, one answer.
fn handle(stream: TcpStream, sources: &Registry) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let complete = loop {
        match (&stream).read(&mut buf) {
            Ok(0) | Err(_) => break false,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                    break true;
                }
                if head.len() > MAX_REQUEST {
                    let _ = respond(&stream, "431 Request Header Fields Too Large", "request too large\n");
                    return;
                }
            }
        }
    };
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, path, version) = (first.next(), first.next(), first.next());
    let result = match (complete, method, path, version) {
        (true, Some("GET"), Some("/metrics"), Some(v)) if v.starts_with("HTTP/1.") => respond(&stream, "200 OK", &render(sources)),
        (true, Some("GET"), Some(_), Some(v)) if v.starts_with("HTTP/1.") => respond(&stream, "404 Not Found", "only /metrics is here\n"),
        (true, Some(m), Some(_), Some(v)) if v.starts_with("HTTP/1.") && m != "GET" => respond(&stream, "405 Method Not Allowed", "GET only\n"),
        _ => respond(&stream, "400 Bad Request", "malformed request\n"),
    };
    let _ = result;
}
