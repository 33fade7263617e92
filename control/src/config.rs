//! The configuration file (TOML): schema, defaults and validation.
//!
//! Parsing keeps the byte span of every value that validation may reject,
//! so each error names `file:line:column`, the key, and the problem. All
//! errors are collected and reported together.

use crate::health::{CheckKind, HealthCheck, HealthState, Target};
use core::fmt;
use core::net::Ipv4Addr;
use dataplane::config::{same_subnet, ArpTimers, ForwardingMode, Interface, L4Proto, RealServer, Route, Service, Snapshot, Timeouts};
use dataplane::worker::WorkerSettings;
use sched::{PersistenceConfig, SchedulerSpec};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

// ---------- the file as written ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dpdk: DpdkSection,
    #[serde(default)]
    workers: WorkersSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    timeouts: TimeoutsSection,
    #[serde(default)]
    connections: ConnectionsSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    arp: ArpSection,
    #[serde(default)]
    health: HealthSection,
    #[serde(default)]
    interfaces: Vec<InterfaceSection>,
    #[serde(default)]
    routes: Vec<RouteSection>,
    #[serde(default)]
    neighbors: Vec<NeighborSection>,
    #[serde(default)]
    services: Vec<ServiceSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DpdkSection {
    eal_args: Vec<String>,
    #[serde(default = "defaults::mbufs")]
    mbufs: Spanned<u32>,
    #[serde(default = "defaults::mbuf_cache")]
    mbuf_cache: Spanned<u32>,
    #[serde(default = "defaults::descriptors")]
    rx_descriptors: u16,
    #[serde(default = "defaults::descriptors")]
    tx_descriptors: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkersSection {
    count: Option<Spanned<u32>>,
    #[serde(default = "defaults::burst")]
    burst: Spanned<u32>,
    #[serde(default = "defaults::idle_sleep_us")]
    idle_sleep_us: Spanned<u64>,
    #[serde(default = "defaults::idle_polls")]
    idle_polls: Spanned<u32>,
}

impl Default for WorkersSection {
    fn default() -> Self {
        WorkersSection { count: None, burst: defaults::burst(), idle_sleep_us: defaults::idle_sleep_us(), idle_polls: defaults::idle_polls() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    #[serde(default = "defaults::connections_per_core")]
    connections_per_core: Spanned<u32>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection { connections_per_core: defaults::connections_per_core() }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimeoutsSection {
    tcp_syn: Option<Spanned<u64>>,
    tcp: Option<Spanned<u64>>,
    tcp_fin: Option<Spanned<u64>>,
    tcp_close: Option<Spanned<u64>>,
    udp: Option<Spanned<u64>>,
    icmp: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    #[serde(default = "defaults::metrics_listen")]
    listen: Spanned<String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: defaults::metrics_listen() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    #[serde(default = "defaults::admin_socket")]
    socket: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection { socket: defaults::admin_socket() }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectionsSection {
    #[serde(default)]
    expire_nodest_conn: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ArpSection {
    refresh: Option<Spanned<u64>>,
    expire: Option<Spanned<u64>>,
    retry: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthSection {
    #[serde(default = "defaults::health_threads")]
    threads: Spanned<u32>,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection { threads: defaults::health_threads() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterfaceSection {
    name: Spanned<String>,
    device: Spanned<String>,
    address: Spanned<String>,
    #[serde(default = "defaults::mtu")]
    mtu: Spanned<u32>,
    #[serde(default = "defaults::yes")]
    exception_path: bool,
    kernel_name: Option<Spanned<String>>,
}

/// Seconds, whole or fractional (`2`, `0.5`).
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Seconds {
    Whole(i64),
    Fraction(f64),
}

impl Seconds {
    fn get(self) -> f64 {
        match self {
            Seconds::Whole(n) => n as f64,
            Seconds::Fraction(f) => f,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckSection {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    port: Option<Spanned<u32>>,
    interval: Option<Spanned<Seconds>>,
    timeout: Option<Spanned<Seconds>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    expect_status: Option<Vec<Spanned<u32>>>,
    expect_body: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighborSection {
    address: Spanned<String>,
    mac: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSection {
    prefix: Spanned<String>,
    via: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    protocol: Spanned<String>,
    vip: Spanned<String>,
    /// Required for tcp and udp; ICMP services have none.
    port: Option<Spanned<u32>>,
    scheduler: Spanned<String>,
    #[serde(default)]
    scheduler_flags: Vec<Spanned<String>>,
    mh_table_size: Option<Spanned<u32>>,
    #[serde(default = "defaults::forwarding")]
    forwarding: Spanned<String>,
    /// FullNAT: local addresses (on an interface's subnet).
    #[serde(default)]
    local_addresses: Vec<Spanned<String>>,
    /// Seconds; absent or 0 = not persistent.
    persistence_timeout: Option<Spanned<u64>>,
    persistence_netmask: Option<Spanned<String>>,
    persistence_prefix_v6: Option<Spanned<u8>>,
    #[serde(default)]
    expire_quiescent_template: bool,
    health_check: Option<HealthCheckSection>,
    #[serde(default)]
    reals: Vec<RealSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealSection {
    address: Spanned<String>,
    port: Option<Spanned<u32>>,
    #[serde(default = "defaults::weight")]
    weight: Spanned<i64>,
    #[serde(default)]
    upper_threshold: u32,
    lower_threshold: Option<Spanned<u32>>,
}

mod defaults {
    use toml::Spanned;
    fn s<T>(v: T) -> Spanned<T> {
        Spanned::new(0..0, v)
    }
    pub(super) fn mbufs() -> Spanned<u32> {
        s(16383)
    }
    pub(super) fn mbuf_cache() -> Spanned<u32> {
        s(256)
    }
    pub(super) fn descriptors() -> u16 {
        1024
    }
    pub(super) fn burst() -> Spanned<u32> {
        s(32)
    }
    pub(super) fn idle_sleep_us() -> Spanned<u64> {
        s(100)
    }
    pub(super) fn idle_polls() -> Spanned<u32> {
        s(256)
    }
    pub(super) fn connections_per_core() -> Spanned<u32> {
        s(262_144)
    }
    pub(super) fn forwarding() -> Spanned<String> {
        s("dr".to_string())
    }
    pub(super) fn metrics_listen() -> Spanned<String> {
        s("127.0.0.1:9100".to_string())
    }
    pub(super) fn admin_socket() -> String {
        crate::admin::DEFAULT_SOCKET.to_string()
    }
    pub(super) fn mtu() -> Spanned<u32> {
        s(1500)
    }
    pub(super) fn weight() -> Spanned<i64> {
        s(1)
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn health_threads() -> Spanned<u32> {
        s(8)
    }
}

/// Health check defaults (haproxy's: every 2 s, 2 up, 3 down).
pub mod health_defaults {
    pub const INTERVAL: f64 = 2.0;
    pub const TIMEOUT: f64 = 2.0;
    pub const RISE: u32 = 2;
    pub const FALL: u32 = 3;
    pub const PATH: &str = "/";
    pub const STATUS: u16 = 200;
}

// ---------- the validated result ----------

/// An interface as configured; its MAC and port id are learned at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub device: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u16,
    /// A kernel TAP interface named `kernel_name` gets the traffic to
    /// `addr` that is not load-balanced (and sends through this port).
    pub exception_path: bool,
    pub kernel_name: String,
}

/// A configuration that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub eal_args: Vec<String>,
    pub mbufs: u32,
    pub mbuf_cache: u32,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// `None`: one worker per EAL worker lcore.
    pub worker_count: Option<u32>,
    pub worker: WorkerSettings,
    pub connections_per_core: usize,
    /// Drop connections of removed real servers at their next packet.
    pub expire_nodest_conn: bool,
    /// Path of the admin socket (rvsadm).
    pub admin_socket: std::path::PathBuf,
    /// Where `/metrics` is served; `None`: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub timeouts: Timeouts,
    pub arp: ArpTimers,
    pub interfaces: Vec<InterfaceConfig>,
    pub routes: Vec<Route>,
    /// Static ARP entries: (address, MAC), never expiring.
    pub neighbors: Vec<(Ipv4Addr, proto::MacAddr)>,
    pub services: Vec<Service>,
    /// `checks[i]`: the health check of `services[i]`, if any.
    pub checks: Vec<Option<HealthCheck>>,
    /// Threads that run health probes.
    pub health_threads: usize,
}

impl Config {
    /// The data plane's snapshot of this configuration on the running
    /// `interfaces` and `workers`, with a health board that starts from
    /// what the checks know (`health`); and the checks to run.
    pub fn snapshot(&self, interfaces: &[Interface], workers: u32, health: &HealthState) -> (Snapshot, Vec<Target>) {
        let targets = crate::health::targets(&self.services, &self.checks);
        let board = crate::health::board_for(&self.services, &targets, health);
        let snapshot = Snapshot {
            interfaces: interfaces.to_vec(),
            routes: self.routes.clone(),
            services: self.services.clone(),
            timeouts: self.timeouts,
            arp: self.arp,
            max_connections_per_core: self.connections_per_core,
            worker_cores: workers,
            expire_nodest_conn: self.expire_nodest_conn,
            health: board,
        };
        (snapshot, targets)
    }
}

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the position is unknown.
    pub line: usize,
    pub column: usize,
    /// Dotted path of the key (`services[0].reals[1].weight`), if known.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one source text.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        if offset == 0 && self.text.is_empty() {
            return (1, 1);
        }
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn err_at(&mut self, span: core::ops::Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        // Defaults carry the empty span 0..0: no position in the file.
        let (line, column) = if span == (0..0) { (0, 0) } else { self.position(span.start) };
        self.errors.push(ConfigError { file: self.file.to_string(), line, column, key: key.into(), message: message.into() });
    }

    fn err<T>(&mut self, v: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        self.err_at(v.span(), key, message);
    }
}

/// The key assigned on `line` when the error column is after its `=`
/// (toml's type errors point at the value and do not name the key).
fn key_on_line(text: &str, line: usize, column: usize) -> String {
    let Some(l) = text.lines().nth(line.wrapping_sub(1)) else { return String::new() };
    match l.split_once('=') {
        Some((k, _)) if k.chars().count() < column && !l.trim_start().starts_with('[') => k.trim().trim_matches('"').to_string(),
        _ => String::new(),
    }
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX (e.g. \"198.18.0.2/24\")"))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
    let prefix: u8 = p.parse().ok().filter(|p| (1..=32).contains(p)).ok_or_else(|| format!("prefix {p:?} is not 1..32"))?;
    Ok((addr, prefix))
}

fn parse_mac(s: &str) -> Result<proto::MacAddr, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || format!("{s:?} is not a MAC address (e.g. \"02:00:00:00:00:11\")");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    let mac = proto::MacAddr(m);
    if mac.is_multicast() || mac == proto::MacAddr::ZERO {
        return Err(format!("{s} is not a unicast MAC address"));
    }
    Ok(mac)
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text),
        Err(e) => Err(ConfigErrors(vec![ConfigError { file, line: 0, column: 0, key: String::new(), message: format!("cannot read: {e}") }])),
    }
}

/// Parses and validates `text`; `file` names it in messages.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let mut c = Checker { file, text, errors: Vec::new() };
    let raw: FileConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let (line, column) = c.position(span.start);
            // The toml crate gives some errors (a control character in a
            // comment) no message at all.
            let message = match e.message().trim() {
                "" => "invalid TOML here (a control character?)".to_string(),
                m => m.replace('\n', "; "),
            };
            let key = key_on_line(text, line, column);
            return Err(ConfigErrors(vec![ConfigError { file: file.into(), line, column, key, message }]));
        }
    };
    let cfg = validate(&mut c, raw);
    if c.errors.is_empty() {
        Ok(cfg)
    } else {
        c.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(c.errors))
    }
}

/// The longest timeout accepted (365 days, in seconds). The data plane
/// keeps times in nanoseconds in 64 bits: without a bound, a timeout near
/// 2^64 / 10^9 seconds would wrap around when converted.
const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// A number of seconds in 1..=MAX_SECONDS; `default` after reporting an error.
fn positive(c: &mut Checker<'_>, v: &Option<Spanned<u64>>, key: &str, default: u64) -> u64 {
    match v {
        None => default,
        Some(s) if !(1..=MAX_SECONDS).contains(s.get_ref()) => {
            c.err(s, key, format!("must be 1..{MAX_SECONDS} (seconds, at most 365 days)"));
            default
        }
        Some(s) => *s.get_ref(),
    }
}

/// The scheduler, its flags and mh table size; errors at the offending key.
fn scheduler_spec(c: &mut Checker<'_>, s: &ServiceSection, key: &str) -> Option<SchedulerSpec> {
    let kind = match s.scheduler.get_ref().parse::<sched::SchedulerKind>() {
        Ok(k) => k,
        Err(e) => {
            c.err(&s.scheduler, format!("{key}.scheduler"), e.to_string());
            return None;
        }
    };
    let mut ok = true;
    for (j, f) in s.scheduler_flags.iter().enumerate() {
        if let Err(e) = SchedulerSpec::parse(kind.name(), &[f.get_ref().as_str()], None) {
            c.err(f, format!("{key}.scheduler_flags[{j}]"), e.to_string());
            ok = false;
        }
    }
    let size = s.mh_table_size.as_ref().map(|m| *m.get_ref());
    if let (Some(m), Err(e)) = (&s.mh_table_size, SchedulerSpec::parse(kind.name(), &[], size)) {
        c.err(m, format!("{key}.mh_table_size"), e.to_string());
        ok = false;
    }
    if !ok {
        return None;
    }
    let flags: Vec<&str> = s.scheduler_flags.iter().map(|f| f.get_ref().as_str()).collect();
    SchedulerSpec::parse(kind.name(), &flags, size).map_err(|e| c.err(&s.scheduler, format!("{key}.scheduler"), e.to_string())).ok()
}

/// `Some(None)`: valid, not persistent; `None`: an error was reported.
fn persistence(c: &mut Checker<'_>, s: &ServiceSection, key: &str) -> Option<Option<PersistenceConfig>> {
    let timeout = s.persistence_timeout.as_ref().map_or(0, |t| *t.get_ref());
    let mut ok = true;
    if timeout == 0 {
        for (set, name) in [
            (s.persistence_netmask.as_ref().map(|x| x.span()), "persistence_netmask"),
            (s.persistence_prefix_v6.as_ref().map(|x| x.span()), "persistence_prefix_v6"),
        ] {
            if let Some(span) = set {
                c.err_at(span, format!("{key}.{name}"), "needs persistence_timeout");
                ok = false;
            }
        }
        return ok.then_some(None);
    }
    if timeout > MAX_SECONDS {
        if let Some(t) = &s.persistence_timeout {
            c.err(t, format!("{key}.persistence_timeout"), format!("must be 0..{MAX_SECONDS} (seconds, at most 365 days; 0: not persistent)"));
        }
        return None;
    }
    let mut p = PersistenceConfig::new(timeout);
    p.expire_quiescent = s.expire_quiescent_template;
    if let Some(m) = &s.persistence_netmask {
        match m.get_ref().parse::<Ipv4Addr>() {
            Ok(mask) if u32::from(mask).leading_ones() + u32::from(mask).trailing_zeros() == 32 => p.netmask_v4 = mask,
            _ => {
                c.err(m, format!("{key}.persistence_netmask"), format!("{:?} is not an IPv4 netmask (e.g. \"255.255.255.0\")", m.get_ref()));
                ok = false;
            }
        }
    }
    if let Some(v) = &s.persistence_prefix_v6 {
        if *v.get_ref() > 128 {
            c.err(v, format!("{key}.persistence_prefix_v6"), "must be 0..128");
            ok = false;
        } else {
            p.prefix_v6 = *v.get_ref();
        }
    }
    ok.then_some(Some(p))
}

fn validate(c: &mut Checker<'_>, raw: FileConfig) -> Config {
    let d = &raw.dpdk;
    if *d.mbufs.get_ref() < 1024 {
        c.err(&d.mbufs, "dpdk.mbufs", "must be at least 1024");
    }
    if *d.mbuf_cache.get_ref() > 512 {
        c.err(&d.mbuf_cache, "dpdk.mbuf_cache", "must be at most 512 (RTE_MEMPOOL_CACHE_MAX_SIZE)");
    }

    let w = &raw.workers;
    if let Some(n) = &w.count {
        if *n.get_ref() == 0 {
            c.err(n, "workers.count", "must be at least 1");
        }
    }
    let burst = *w.burst.get_ref();
    if !(1..=dataplane::dpdk::MAX_BURST as u32).contains(&burst) {
        c.err(&w.burst, "workers.burst", format!("must be 1..{}", dataplane::dpdk::MAX_BURST));
    }
    // A worker asleep for longer would not even notice a stop or a reload.
    if *w.idle_sleep_us.get_ref() > 1_000_000 {
        c.err(&w.idle_sleep_us, "workers.idle_sleep_us", "must be 0..1000000 (microseconds; 0: poll without sleeping)");
    }
    if *w.idle_polls.get_ref() == 0 {
        c.err(&w.idle_polls, "workers.idle_polls", "must be at least 1");
    }
    let max_conns = dataplane::conn::ConnTable::MAX_CAPACITY;
    if !(1..=max_conns).contains(&(*raw.limits.connections_per_core.get_ref() as usize)) {
        c.err(&raw.limits.connections_per_core, "limits.connections_per_core", format!("must be 1..{max_conns}"));
    }

    let td = Timeouts::default();
    let t = &raw.timeouts;
    let timeouts = Timeouts {
        tcp_syn: positive(c, &t.tcp_syn, "timeouts.tcp_syn", td.tcp_syn),
        tcp: positive(c, &t.tcp, "timeouts.tcp", td.tcp),
        tcp_fin: positive(c, &t.tcp_fin, "timeouts.tcp_fin", td.tcp_fin),
        tcp_close: positive(c, &t.tcp_close, "timeouts.tcp_close", td.tcp_close),
        udp: positive(c, &t.udp, "timeouts.udp", td.udp),
        icmp: positive(c, &t.icmp, "timeouts.icmp", td.icmp),
    };
    let ad = ArpTimers::default();
    let arp = ArpTimers {
        refresh: positive(c, &raw.arp.refresh, "arp.refresh", ad.refresh),
        expire: positive(c, &raw.arp.expire, "arp.expire", ad.expire),
        retry: positive(c, &raw.arp.retry, "arp.retry", ad.retry),
    };
    if arp.expire <= arp.refresh {
        if let Some(e) = &raw.arp.expire {
            c.err(e, "arp.expire", format!("must be greater than arp.refresh ({})", arp.refresh));
        } else if let Some(r) = &raw.arp.refresh {
            c.err(r, "arp.refresh", format!("must be less than arp.expire ({})", arp.expire));
        }
    }

    let mut interfaces: Vec<InterfaceConfig> = Vec::new();
    if raw.interfaces.is_empty() {
        c.err_at(0..0, "interfaces", "at least one [[interfaces]] is required");
    }
    for (i, iface) in raw.interfaces.iter().enumerate() {
        let key = format!("interfaces[{i}]");
        if interfaces.iter().any(|x| &x.name == iface.name.get_ref()) {
            c.err(&iface.name, format!("{key}.name"), format!("duplicate interface name {:?}", iface.name.get_ref()));
        }
        if interfaces.iter().any(|x| &x.device == iface.device.get_ref()) {
            c.err(&iface.device, format!("{key}.device"), format!("device {:?} is used twice", iface.device.get_ref()));
        }
        let mtu = *iface.mtu.get_ref();
        if !(576..=9216).contains(&mtu) {
            c.err(&iface.mtu, format!("{key}.mtu"), format!("{mtu} is outside 576..9216"));
        }
        let kernel_name = match &iface.kernel_name {
            Some(k) => {
                if let Err(m) = check_ifname(k.get_ref()) {
                    c.err(k, format!("{key}.kernel_name"), m);
                }
                k.get_ref().clone()
            }
            // Linux interface names are at most 15 bytes.
            None => format!("rvs-{}", iface.name.get_ref()).chars().take(15).collect(),
        };
        if iface.exception_path && interfaces.iter().any(|x| x.exception_path && x.kernel_name == kernel_name) {
            let span = iface.kernel_name.as_ref().map_or(iface.name.span(), |k| k.span());
            c.err_at(span, format!("{key}.kernel_name"), format!("kernel interface name {kernel_name:?} is used twice"));
        }
        match parse_cidr(iface.address.get_ref()) {
            Ok((addr, prefix_len)) => interfaces.push(InterfaceConfig {
                name: iface.name.get_ref().clone(),
                device: iface.device.get_ref().clone(),
                addr,
                prefix_len,
                mtu: mtu.clamp(576, 9216) as u16,
                exception_path: iface.exception_path,
                kernel_name,
            }),
            Err(m) => c.err(&iface.address, format!("{key}.address"), m),
        }
    }

    let l = &raw.metrics.listen;
    let metrics_listen = if l.get_ref().is_empty() {
        None
    } else {
        l.get_ref()
            .parse::<std::net::SocketAddr>()
            .map_err(|_| c.err(l, "metrics.listen", format!("{:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9100\"), or \"\" for none", l.get_ref())))
            .ok()
    };

    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        let prefix = parse_cidr(r.prefix.get_ref()).map_err(|m| c.err(&r.prefix, format!("{key}.prefix"), m)).ok();
        let via = parse_ip(r.via.get_ref()).map_err(|m| c.err(&r.via, format!("{key}.via"), m)).ok();
        if let Some(v) = via {
            if !interfaces.is_empty() && !interfaces.iter().any(|x| same_subnet(x.addr, x.prefix_len, v)) {
                c.err(&r.via, format!("{key}.via"), format!("gateway {v} is on no interface's subnet"));
            }
        }
        if let (Some((prefix, prefix_len)), Some(via)) = (prefix, via) {
            routes.push(Route { prefix, prefix_len, via });
        }
    }
    let mut neighbors = Vec::new();
    for (i, n) in raw.neighbors.iter().enumerate() {
        let key = format!("neighbors[{i}]");
        let addr = parse_ip(n.address.get_ref()).map_err(|m| c.err(&n.address, format!("{key}.address"), m)).ok();
        let mac = parse_mac(n.mac.get_ref()).map_err(|m| c.err(&n.mac, format!("{key}.mac"), m)).ok();
        if let Some(a) = addr {
            if !interfaces.is_empty() && !interfaces.iter().any(|x| same_subnet(x.addr, x.prefix_len, a)) {
                c.err(&n.address, format!("{key}.address"), format!("{a} is on no interface's subnet"));
            }
        }
        if let (Some(a), Some(m)) = (addr, mac) {
            neighbors.push((a, m));
        }
    }
    let reachable =
        |a: Ipv4Addr| interfaces.iter().any(|x| same_subnet(x.addr, x.prefix_len, a)) || routes.iter().any(|r| same_subnet(r.prefix, r.prefix_len, a));

    let mut services: Vec<Service> = Vec::new();
    let mut checks: Vec<Option<HealthCheck>> = Vec::new();
    let mut service_keys = std::collections::HashSet::new();
    for (i, s) in raw.services.iter().enumerate() {
        let key = format!("services[{i}]");
        let proto = L4Proto::from_name(s.protocol.get_ref());
        if proto.is_none() {
            c.err(&s.protocol, format!("{key}.protocol"), format!("{:?} is not \"tcp\", \"udp\" or \"icmp\"", s.protocol.get_ref()));
        }
        let icmp = proto == Some(L4Proto::Icmp);
        let vip = parse_ip(s.vip.get_ref()).map_err(|m| c.err(&s.vip, format!("{key}.vip"), m)).ok();
        if let Some(v) = vip {
            if interfaces.iter().any(|x| x.addr == v) {
                c.err(&s.vip, format!("{key}.vip"), format!("{v} is an interface address, not a virtual one"));
            }
        }
        let port = match (&s.port, icmp) {
            (Some(p), true) => {
                c.err(p, format!("{key}.port"), "ICMP services have no port: omit it");
                0
            }
            (None, true) => 0,
            (Some(p), false) => {
                if !(1..=65535).contains(p.get_ref()) {
                    c.err(p, format!("{key}.port"), format!("{} is not a port (1..65535)", p.get_ref()));
                }
                *p.get_ref()
            }
            (None, false) => {
                c.err(&s.protocol, format!("{key}.port"), "a tcp or udp service needs a port");
                0
            }
        };
        let scheduler = scheduler_spec(c, s, &key);
        let persistence = persistence(c, s, &key);
        let mode = match s.forwarding.get_ref().as_str() {
            "dr" => Some(ForwardingMode::DirectRoute),
            "nat" => Some(ForwardingMode::Nat),
            "fullnat" => Some(ForwardingMode::FullNat),
            "tun" => Some(ForwardingMode::Tun),
            other => {
                c.err(&s.forwarding, format!("{key}.forwarding"), format!("{other:?} is not one of dr, nat, fullnat, tun"));
                None
            }
        };
        let mut reals: Vec<RealServer> = Vec::new();
        for (j, r) in s.reals.iter().enumerate() {
            let rkey = format!("{key}.reals[{j}]");
            let weight = *r.weight.get_ref();
            if !(0..=65535).contains(&weight) {
                c.err(&r.weight, format!("{rkey}.weight"), format!("{weight} is outside 0..65535"));
            }
            if let Some(l) = &r.lower_threshold {
                if r.upper_threshold == 0 {
                    c.err(l, format!("{rkey}.lower_threshold"), "needs an upper_threshold");
                } else if *l.get_ref() >= r.upper_threshold {
                    c.err(l, format!("{rkey}.lower_threshold"), format!("must be below upper_threshold ({})", r.upper_threshold));
                }
            }
            let mut real_port = None;
            if let Some(p) = &r.port {
                let rp = *p.get_ref();
                if icmp {
                    c.err(p, format!("{rkey}.port"), "ICMP services have no port: omit it");
                } else if !(1..=65535).contains(&rp) {
                    c.err(p, format!("{rkey}.port"), format!("{rp} is not a port (1..65535)"));
                } else if rp != port && !matches!(mode, Some(ForwardingMode::Nat | ForwardingMode::FullNat)) {
                    c.err(p, format!("{rkey}.port"), "only NAT and FullNAT can map ports: omit it or use the service's port");
                } else {
                    real_port = Some(rp as u16);
                }
            }
            let Ok(addr) = parse_ip(r.address.get_ref()).map_err(|m| c.err(&r.address, format!("{rkey}.address"), m)) else {
                continue;
            };
            if reals.iter().any(|x| x.addr == addr) {
                c.err(&r.address, format!("{rkey}.address"), format!("{addr} is listed twice in this service"));
            }
            let on_link = interfaces.iter().any(|x| same_subnet(x.addr, x.prefix_len, addr));
            if !interfaces.is_empty() && !on_link {
                if mode == Some(ForwardingMode::DirectRoute) {
                    c.err(&r.address, format!("{rkey}.address"), format!("{addr} is on no interface's subnet; DR needs real servers on the same L2"));
                } else if !reachable(addr) {
                    c.err(&r.address, format!("{rkey}.address"), format!("{addr} is on no interface's subnet and no route reaches it"));
                }
            }
            reals.push(RealServer {
                addr,
                port: real_port,
                weight: weight.clamp(0, 65535) as u32,
                upper_threshold: r.upper_threshold,
                lower_threshold: r.lower_threshold.as_ref().map_or(0, |l| *l.get_ref()),
            });
        }
        let mut local_addrs = Vec::new();
        for (j, l) in s.local_addresses.iter().enumerate() {
            let lkey = format!("{key}.local_addresses[{j}]");
            match parse_ip(l.get_ref()) {
                Ok(a) if !interfaces.iter().any(|x| same_subnet(x.addr, x.prefix_len, a)) => {
                    c.err(l, lkey, format!("{a} is on no interface's subnet"));
                }
                Ok(a) if interfaces.iter().any(|x| x.addr == a) => c.err(l, lkey, format!("{a} is an interface address")),
                Ok(a) => local_addrs.push(a),
                Err(m) => c.err(l, lkey, m),
            }
        }
        match mode {
            Some(ForwardingMode::FullNat) if s.local_addresses.is_empty() => {
                c.err(&s.forwarding, format!("{key}.local_addresses"), "FullNAT needs at least one local address");
            }
            Some(m) if m != ForwardingMode::FullNat && !s.local_addresses.is_empty() => {
                c.err(&s.local_addresses[0], format!("{key}.local_addresses"), "only FullNAT uses local addresses");
            }
            _ => {}
        }
        let check = match &s.health_check {
            Some(h) => {
                if icmp && h.port.is_none() {
                    c.err(&h.kind, format!("{key}.health_check.port"), "an ICMP service's check needs a port to probe");
                }
                health_check(c, h, &format!("{key}.health_check")).map(Some)
            }
            None => Some(None),
        };
        let (Some(proto), Some(vip), Some(scheduler), Some(mode), Some(persistence), Some(check)) = (proto, vip, scheduler, mode, persistence, check) else {
            continue;
        };
        if let Some(m) = &s.mh_table_size {
            if (*m.get_ref() as usize) < reals.len() {
                c.err(m, format!("{key}.mh_table_size"), format!("{} is smaller than the {} real servers", m.get_ref(), reals.len()));
            }
        }
        let port = port.clamp(0, 65535) as u16;
        if !service_keys.insert((proto, vip, port)) {
            c.err(&s.vip, key, format!("duplicate service {} {vip}:{port}", proto.name()));
            continue;
        }
        services.push(Service { proto, vip, port, scheduler, persistence, mode, local_addrs, reals });
        checks.push(check);
    }
    let health_threads = *raw.health.threads.get_ref();
    if !(1..=256).contains(&health_threads) {
        c.err(&raw.health.threads, "health.threads", "must be 1..256");
    }

    Config {
        eal_args: raw.dpdk.eal_args.clone(),
        mbufs: *d.mbufs.get_ref(),
        mbuf_cache: *d.mbuf_cache.get_ref(),
        rx_descriptors: d.rx_descriptors,
        tx_descriptors: d.tx_descriptors,
        worker_count: w.count.as_ref().map(|n| *n.get_ref()),
        worker: WorkerSettings {
            burst: burst.clamp(1, dataplane::dpdk::MAX_BURST as u32) as usize,
            idle_sleep: Duration::from_micros(*w.idle_sleep_us.get_ref()),
            idle_polls: *w.idle_polls.get_ref(),
            ..WorkerSettings::default()
        },
        connections_per_core: *raw.limits.connections_per_core.get_ref() as usize,
        expire_nodest_conn: raw.connections.expire_nodest_conn,
        admin_socket: raw.admin.socket.clone().into(),
        metrics_listen,
        timeouts,
        arp,
        interfaces,
        routes,
        neighbors,
        services,
        checks,
        health_threads: health_threads.clamp(1, 256) as usize,
    }
}

/// A Linux interface name: 1..15 bytes, no '/', ':' or whitespace.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?} is not 1..15 characters long (a Linux interface name)"));
    }
    if name == "." || name == ".." || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) {
        return Err(format!("{name:?} may only use letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// Seconds in (0, 3600] as a duration; `None` after reporting an error.
fn seconds(c: &mut Checker<'_>, v: &Option<Spanned<Seconds>>, key: &str, default: f64) -> Option<Duration> {
    let Some(v) = v else { return Some(Duration::from_secs_f64(default)) };
    let x = v.get_ref().get();
    if !(x > 0.0 && x <= 3600.0) {
        c.err(v, key, format!("{x} is not a number of seconds in (0, 3600] (e.g. 2 or 0.5)"));
        return None;
    }
    Some(Duration::from_secs_f64(x))
}

/// A service's `health_check` table; `None` after reporting errors.
fn health_check(c: &mut Checker<'_>, h: &HealthCheckSection, key: &str) -> Option<HealthCheck> {
    use health_defaults as d;
    let before = c.errors.len();
    let http_only = [
        (h.path.as_ref().map(|x| x.span()), "path"),
        (h.host.as_ref().map(|x| x.span()), "host"),
        (h.expect_status.as_ref().and_then(|v| v.first()).map(|x| x.span()), "expect_status"),
        (h.expect_body.as_ref().map(|x| x.span()), "expect_body"),
    ];
    let kind = match h.kind.get_ref().as_str() {
        "tcp" => {
            for (span, name) in http_only {
                if let Some(span) = span {
                    c.err_at(span, format!("{key}.{name}"), "only HTTP checks (type = \"http\") use it");
                }
            }
            Some(CheckKind::Tcp)
        }
        "http" => {
            let path = h.path.as_ref().map_or(d::PATH.to_string(), |p| p.get_ref().clone());
            if let Some(p) = &h.path {
                if !path.starts_with('/') || path.chars().any(|ch| ch.is_ascii_control() || ch == ' ') {
                    c.err(p, format!("{key}.path"), format!("{path:?} is not an absolute path without spaces (e.g. \"/healthz\")"));
                }
            }
            if let Some(host) = &h.host {
                if host.get_ref().is_empty() || host.get_ref().chars().any(|ch| ch.is_ascii_control() || ch == ' ') {
                    c.err(host, format!("{key}.host"), format!("{:?} is not a host name", host.get_ref()));
                }
            }
            let mut expect_status = Vec::new();
            for (j, st) in h.expect_status.iter().flatten().enumerate() {
                match u16::try_from(*st.get_ref()) {
                    Ok(code) if (100..=599).contains(&code) => expect_status.push(code),
                    _ => c.err(st, format!("{key}.expect_status[{j}]"), format!("{} is not an HTTP status code (100..599)", st.get_ref())),
                }
            }
            if h.expect_status.as_ref().is_some_and(Vec::is_empty) {
                c.err(&h.kind, format!("{key}.expect_status"), "must list at least one status code");
            }
            if expect_status.is_empty() {
                expect_status.push(d::STATUS);
            }
            Some(CheckKind::Http {
                path,
                host: h.host.as_ref().map(|x| x.get_ref().clone()),
                expect_status,
                expect_body: h.expect_body.as_ref().map(|x| x.get_ref().clone()),
            })
        }
        other => {
            c.err(&h.kind, format!("{key}.type"), format!("{other:?} is not \"tcp\" or \"http\""));
            None
        }
    };
    let port = match &h.port {
        Some(p) if !(1..=65535).contains(p.get_ref()) => {
            c.err(p, format!("{key}.port"), format!("{} is not a port (1..65535)", p.get_ref()));
            None
        }
        p => p.as_ref().map(|p| *p.get_ref() as u16),
    };
    let interval = seconds(c, &h.interval, &format!("{key}.interval"), d::INTERVAL);
    let timeout = seconds(c, &h.timeout, &format!("{key}.timeout"), d::TIMEOUT);
    let mut count = |v: &Option<Spanned<u32>>, name: &str, default: u32| match v {
        Some(n) if !(1..=100).contains(n.get_ref()) => {
            c.err(n, format!("{key}.{name}"), "must be 1..100");
            default
        }
        Some(n) => *n.get_ref(),
        None => default,
    };
    let rise = count(&h.rise, "rise", d::RISE);
    let fall = count(&h.fall, "fall", d::FALL);
    let (Some(kind), Some(interval), Some(timeout)) = (kind, interval, timeout) else { return None };
    (c.errors.len() == before).then_some(HealthCheck { kind, port, interval, timeout, rise, fall })
}

#[cfg(test)]
mod tests;
