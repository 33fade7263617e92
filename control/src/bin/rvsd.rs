//! rvsd: the RVS daemon. Reads the config, brings up DPDK ports, launches
//! one worker per EAL worker lcore, and runs until SIGINT/SIGTERM.

use clap::Parser;
use control::admin::{AdminServer, ControlInfo, Neighbor};
use control::config::{self, Config};
use control::health::{self, HealthState, Monitor};
use control::{error, info};
use dataplane::config::Interface;
use dataplane::counters::CoreCounters;
use dataplane::dpdk::{Eal, Mempool, Port, Ring};
use dataplane::links::LinkBoard;
use dataplane::neighbor::SharedNeighbors;
use dataplane::pipeline::Pipeline;
use dataplane::published::Published;
use dataplane::view::Views;
use dataplane::worker::Worker;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The connection tables (hundreds of MB at millions of connections) on
/// transparent huge pages: fewer TLB misses per cold lookup.
#[global_allocator]
static ALLOC: dataplane::dpdk::HugePageAlloc = dataplane::dpdk::HugePageAlloc;

#[derive(Parser, Debug)]
#[command(name = "rvsd", version, about = "RVS: a DPDK layer-4 load balancer")]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["config", "check_config"])))]
struct Args {
    /// Run with this configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit (non-zero on errors).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Log the counters every N seconds (0 = only at exit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    stats_interval: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match config::load(&path) {
            Ok(c) => {
                let reals: usize = c.services.iter().map(|s| s.reals.len()).sum();
                println!("{}: OK ({} interfaces, {} services, {} real servers)", path.display(), c.interfaces.len(), c.services.len(), reals);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
    }
    let Some(path) = args.config else { return ExitCode::from(2) };
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match run(&path, &cfg, args.stats_interval) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn log_stats(counters: &[Arc<CoreCounters>], lcores: &[u32], ports: &[Port], cfg: &Config) {
    for (c, l) in counters.iter().zip(lcores) {
        info!("stats lcore={l} {}", c.summary());
    }
    for (p, i) in ports.iter().zip(&cfg.interfaces) {
        let s = p.stats();
        info!(
            "stats port={} ipackets={} opackets={} imissed={} ierrors={} oerrors={} rx_nombuf={}",
            i.name, s.ipackets, s.opackets, s.imissed, s.ierrors, s.oerrors, s.rx_nombuf
        );
    }
}

/// The settings a reload cannot change (the EAL, ports and workers are set
/// up once): the names of those that differ.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if new.eal_args != running.eal_args {
        v.push("dpdk.eal_args");
    }
    if (new.mbufs, new.mbuf_cache, new.rx_descriptors, new.tx_descriptors)
        != (running.mbufs, running.mbuf_cache, running.rx_descriptors, running.tx_descriptors)
    {
        v.push("dpdk.*");
    }
    if new.worker_count != running.worker_count || new.worker != running.worker {
        v.push("workers.*");
    }
    if new.connections_per_core != running.connections_per_core {
        v.push("limits.connections_per_core");
    }
    if new.interfaces != running.interfaces {
        v.push("interfaces");
    }
    v
}

/// The control thread's handles a reload needs.
struct Running<'a> {
    published: &'a Published,
    interfaces: &'a [Interface],
    workers: u32,
    health: &'a HealthState,
    monitor: &'a Monitor,
}

/// SIGHUP: parse and check the file, and publish it to the workers (and
/// its checks to the health monitor, its routes to the kernel), or change
/// nothing and say why.
fn reload(path: &Path, running: &Config, r: &Running<'_>) -> Result<Config, String> {
    let new = config::load(path).map_err(|e| e.to_string())?;
    let changed = restart_only_changes(running, &new);
    if !changed.is_empty() {
        return Err(format!("{} changed: that needs a restart of rvsd", changed.join(", ")));
    }
    let (snapshot, targets) = new.snapshot(r.interfaces, r.workers, r.health);
    let snapshot = Arc::new(snapshot);
    Pipeline::check(&snapshot).map_err(|e| e.to_string())?;
    let neighbors = Arc::new(Pipeline::neighbors_for_reload(&r.published.get().1, &snapshot));
    apply_static_neighbors(&neighbors, &new.neighbors);
    let board = snapshot.health.clone();
    r.published.publish(snapshot, neighbors);
    r.monitor.plan(targets, board);
    if new.routes != running.routes {
        for e in control::kernel::sync_routes(&running.routes, &new.routes, |via| kernel_dev_for(&new, via)) {
            error!("kernel route: {e}");
        }
    }
    Ok(new)
}

/// The TAP interface whose subnet holds `ip`, if that interface has one.
fn kernel_dev_for(cfg: &Config, ip: std::net::Ipv4Addr) -> Option<String> {
    cfg.interfaces.iter().find(|i| i.exception_path && dataplane::config::same_subnet(i.addr, i.prefix_len, ip)).map(|i| i.kernel_name.clone())
}

/// Pins the configured static neighbors; says which are no next hop.
fn apply_static_neighbors(table: &SharedNeighbors, entries: &[(std::net::Ipv4Addr, proto::MacAddr)]) {
    for (ip, mac) in entries {
        if table.set_static(*ip, *mac) {
            info!("static neighbor {ip} at {mac}");
        } else {
            error!("static neighbor {ip} is the next hop of no real server: ignored");
        }
    }
}

/// Marks each checked real server in `listing` up or down.
fn add_health(listing: &mut control::admin::Listing, state: &HealthState) {
    let statuses = state.snapshot();
    for s in &mut listing.services {
        let (Ok(vip), Some(proto)) = (s.vip.parse(), dataplane::config::L4Proto::from_name(&s.proto.to_lowercase())) else { continue };
        for r in &mut s.reals {
            let Ok(real) = r.addr.parse() else { continue };
            let key = health::TargetKey { proto, vip, port: s.port, real, real_port: r.port };
            if let Ok(i) = statuses.binary_search_by_key(&key, |(k, _)| *k) {
                let st = &statuses[i].1;
                r.health = Some(if st.up { "up" } else { "down" }.into());
                r.health_error = (!st.last_error.is_empty()).then(|| st.last_error.clone());
            }
        }
    }
}

/// Reads every port's link, logs each change and publishes it to the
/// workers.
fn watch_links(ports: &[Port], links: &LinkBoard, cfg: &Config) {
    for (i, (port, ic)) in ports.iter().zip(&cfg.interfaces).enumerate() {
        let link = port.link();
        if links.set(i, link.up) {
            if link.up {
                info!("interface {}: link up, {} Mb/s", ic.name, link.speed_mbps);
            } else {
                error!("interface {}: link down", ic.name);
            }
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn run(path: &Path, cfg: &Config, stats_interval: u64) -> Result<(), Box<dyn std::error::Error>> {
    // Signals first, so a Ctrl-C during start-up still stops us cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    let reload_flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload_flag))?;

    let eal = Eal::init(&cfg.eal_args)?;
    let mut lcores = eal.worker_lcores();
    if lcores.is_empty() {
        return Err("the EAL has no worker lcore: give eal_args at least two lcores (e.g. \"-l\", \"0-1\")".into());
    }
    if let Some(n) = cfg.worker_count {
        if n as usize > lcores.len() {
            return Err(format!("workers.count = {n} but the EAL has only {} worker lcores", lcores.len()).into());
        }
        lcores.truncate(n as usize);
    }
    let nworkers = lcores.len() as u16;
    if let Some(available) = control::memory::available() {
        control::memory::check_tables(cfg.connections_per_core, lcores.len(), available)?;
    }
    let pool = Arc::new(Mempool::new(&eal, "rvs_mbufs", cfg.mbufs, cfg.mbuf_cache)?);

    let mut ports = Vec::new();
    let mut taps = Vec::new();
    let mut interfaces = Vec::new();
    for (k, ic) in cfg.interfaces.iter().enumerate() {
        let mut port = Port::by_name(&eal, &ic.device)?;
        port.start(nworkers, cfg.rx_descriptors, cfg.tx_descriptors, &pool)?;
        let mac = port.mac()?;
        // The exception path: a kernel interface with the port's MAC and
        // address, for the traffic to us that is not load-balanced.
        let tap = if ic.exception_path {
            let mut tap = Port::create_tap(&eal, k, &ic.kernel_name, mac)?;
            tap.start(nworkers, cfg.rx_descriptors, cfg.tx_descriptors, &pool)?;
            control::kernel::configure(&ic.kernel_name, ic.addr, ic.prefix_len, ic.mtu).map_err(|e| format!("interface {}: {e}", ic.name))?;
            info!("interface {}: exception path to kernel interface {} ({}/{})", ic.name, ic.kernel_name, ic.addr, ic.prefix_len);
            Some(tap)
        } else {
            None
        };
        let link = port.link();
        info!(
            "interface {} on {} (port {}): {mac} {}/{} link {} {} Mb/s, {nworkers} queue(s), IPv4 header checksums checked {}",
            ic.name,
            ic.device,
            port.id(),
            ic.addr,
            ic.prefix_len,
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            if port.checks_ip_checksums() { "by the device" } else { "in software" }
        );
        interfaces.push(Interface { port: port.id(), mac, addr: ic.addr, prefix_len: ic.prefix_len, mtu: ic.mtu, kernel: tap.is_some() });
        ports.push(port);
        taps.push(tap);
    }
    for e in control::kernel::sync_routes(&[], &cfg.routes, |via| kernel_dev_for(cfg, via)) {
        error!("kernel route: {e}");
    }
    let health_state = Arc::new(HealthState::default());
    let (snapshot, targets) = cfg.snapshot(&interfaces, u32::from(nworkers), &health_state);
    let snapshot = Arc::new(snapshot);
    // The links as the control thread reads them (below, every pass of
    // its loop), for the workers: announcements wait for a link that is up.
    let links = Arc::new(LinkBoard::new(ports.iter().map(|p| p.link().up)));
    let ports = Arc::new(ports);
    let taps = Arc::new(taps);
    if !targets.is_empty() && !snapshot.interfaces.iter().any(|i| i.kernel) {
        error!("health checks are configured but no interface has an exception path: probes use whatever route the kernel has");
    }
    let monitor = Monitor::start(
        Arc::clone(&health_state),
        cfg.health_threads,
        Arc::clone(&stop),
        Box::new(|key, up, why| {
            if up {
                info!("health: {key} is UP");
            } else {
                error!("health: {key} is DOWN ({why})");
            }
        }),
    )?;
    monitor.plan(targets, snapshot.health.clone());

    // One neighbor table for all workers: an ARP reply lands on one queue
    // only, but every worker forwards to that server.
    let neighbors = Arc::new(SharedNeighbors::new(Pipeline::wanted_neighbors(&snapshot)));
    apply_static_neighbors(&neighbors, &cfg.neighbors);
    // Where SIGHUP publishes new configurations for the workers.
    let published = Arc::new(Published::new(Arc::clone(&snapshot), Arc::clone(&neighbors)));
    // What workers show operators, and the admin socket that serves it.
    let views = Arc::new(Views::new(lcores.len()));
    let info = Arc::new(Mutex::new(ControlInfo { timeouts: (cfg.timeouts.tcp, cfg.timeouts.tcp_fin, cfg.timeouts.udp), last_reload: None }));
    let admin = AdminServer::bind(&cfg.admin_socket).map_err(|e| format!("admin socket {}: {e}", cfg.admin_socket.display()))?;
    let reload_stats = Arc::new(Mutex::new(control::metrics::ReloadStats { ok: 0, failed: 0, last_ok: unix_now() }));
    let admin_thread = {
        let (views, info, stop) = (Arc::clone(&views), Arc::clone(&info), Arc::clone(&stop));
        let published = Arc::clone(&published);
        let health_state = Arc::clone(&health_state);
        let decorate = move |listing: &mut control::admin::Listing| {
            let (snapshot, table) = published.get();
            let now = dataplane::clock::now_ns();
            listing.neighbors = table.describe(now, snapshot.arp).into_iter().map(|(ip, port, mac, state)| Neighbor::new(ip, port, mac, state)).collect();
            add_health(listing, &health_state);
        };
        std::thread::Builder::new().name("rvsd-admin".into()).spawn(move || admin.serve(views, info, decorate, stop))?
    };
    // With several workers, a packet that reached a core other than the one
    // owning its connection travels there through that core's ring.
    let rings = if nworkers > 1 {
        let mut v = Vec::new();
        for q in 0..nworkers {
            v.push(Ring::new(&eal, &format!("rvs_redirect_{q}"), 4096)?);
        }
        Some(Arc::new(v))
    } else {
        None
    };
    let mut counters = Vec::new();
    let mut workers = Vec::new();
    for (q, _) in lcores.iter().enumerate() {
        let c = Arc::new(CoreCounters::default());
        let pipeline = Pipeline::with_neighbors(Arc::clone(&snapshot), Arc::clone(&c), Arc::clone(&neighbors))?.for_core(q as u32);
        counters.push(c);
        workers.push(Worker {
            pipeline,
            ports: Arc::clone(&ports),
            taps: Arc::clone(&taps),
            queue: q as u16,
            pool: Arc::clone(&pool),
            stop: Arc::clone(&stop),
            settings: cfg.worker,
            rings: rings.clone(),
            config: Some(Arc::clone(&published)),
            views: Some(Arc::clone(&views)),
            links: Some(Arc::clone(&links)),
        });
    }
    let metrics_thread = match cfg.metrics_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("metrics.listen {addr}: {e}"))?;
            let sources = Arc::new(control::metrics::Sources {
                views: Arc::clone(&views),
                cores: lcores.iter().map(|l| l.0).zip(counters.iter().cloned()).collect(),
                ports: Arc::clone(&ports),
                port_names: cfg.interfaces.iter().map(|i| i.name.clone()).collect(),
                pool: Arc::clone(&pool),
                pool_size: cfg.mbufs,
                published: Arc::clone(&published),
                reloads: Arc::clone(&reload_stats),
                health: Arc::clone(&health_state),
                links: Arc::clone(&links),
            });
            let registry = control::metrics::registry(sources).map_err(|e| format!("metrics: {e}"))?;
            let stop = Arc::clone(&stop);
            info!("metrics on http://{addr}/metrics");
            Some(std::thread::Builder::new().name("rvsd-metrics".into()).spawn(move || control::metrics::serve(listener, registry, stop))?)
        }
        None => None,
    };
    let mut launched = 0;
    let mut launch_error = None;
    for (worker, lcore) in workers.into_iter().zip(&lcores) {
        if let Err(e) = eal.launch(*lcore, move || worker.run()) {
            launch_error = Some(e);
            break;
        }
        launched += 1;
    }
    let lcore_ids: Vec<u32> = lcores.iter().map(|l| l.0).collect();
    if let Some(e) = launch_error {
        stop.store(true, Ordering::SeqCst);
        eal.wait_all();
        return Err(format!("{e} (after {launched} workers started)").into());
    }
    info!("running: {} worker(s) on lcores {:?}, {} service(s); pid {}", launched, lcore_ids, snapshot.services.len(), std::process::id());
    for s in &snapshot.services {
        let reals: Vec<String> = s.reals.iter().map(|r| format!("{}:{}(w{})", r.addr, r.port.unwrap_or(s.port), r.weight)).collect();
        let persist = s.persistence.map(|p| format!(" persistent {}s", p.timeout)).unwrap_or_default();
        info!("service {} {}:{} {}{persist} {} -> {}", s.proto.name(), s.vip, s.port, s.scheduler.kind, s.mode.name(), reals.join(" "));
    }

    // The main lcore is the control thread: it sleeps, so a worker sharing
    // the machine with clients and servers is not starved.
    let mut last_stats = Instant::now();
    let mut running = cfg.clone();
    let mut reloads = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        watch_links(&ports, &links, cfg);
        if reload_flag.swap(false, Ordering::Relaxed) {
            let r = Running { published: &published, interfaces: &snapshot.interfaces, workers: u32::from(nworkers), health: &health_state, monitor: &monitor };
            match reload(path, &running, &r) {
                Ok(new) => {
                    reloads += 1;
                    let reals: usize = new.services.iter().map(|s| s.reals.len()).sum();
                    info!("reload {reloads}: ok, {} service(s), {reals} real server(s)", new.services.len());
                    let mut i = info.lock().unwrap_or_else(|e| e.into_inner());
                    i.timeouts = (new.timeouts.tcp, new.timeouts.tcp_fin, new.timeouts.udp);
                    i.last_reload = Some(format!("reload {reloads} at {}: ok", control::log::timestamp()));
                    running = new;
                    let mut r = reload_stats.lock().unwrap_or_else(|e| e.into_inner());
                    r.ok += 1;
                    r.last_ok = unix_now();
                }
                Err(e) => {
                    for line in e.lines() {
                        error!("reload failed: {line}");
                    }
                    error!("reload failed: the running configuration is unchanged");
                    reload_stats.lock().unwrap_or_else(|e| e.into_inner()).failed += 1;
                    info.lock().unwrap_or_else(|e| e.into_inner()).last_reload =
                        Some(format!("reload at {} failed, running configuration unchanged: {}", control::log::timestamp(), e.replace('\n', "; ")));
                }
            }
        }
        if stats_interval > 0 && last_stats.elapsed() >= Duration::from_secs(stats_interval) {
            log_stats(&counters, &lcore_ids, &ports, cfg);
            last_stats = Instant::now();
        }
    }
    info!("stopping: waiting for workers");
    eal.wait_all();
    monitor.join();
    let _ = admin_thread.join();
    if let Some(t) = metrics_thread {
        let _ = t.join();
    }
    log_stats(&counters, &lcore_ids, &ports, cfg);
    // Order matters: ports (which reference the pool) before the pool,
    // both before the EAL.
    drop(ports);
    drop(taps);
    drop(rings);
    drop(pool);
    drop(eal);
    info!("stopped");
    Ok(())
}
