//! The admin socket: rvsadm asks, rvsd answers, one JSON request and one
//! JSON answer per connection, over a Unix socket only root can open
//! (mode 0600). The answer is built from the workers' views (merged over
//! cores) and what the control thread knows (timeouts, the last reload).

use dataplane::neighbor::NeighborState;
use dataplane::view::{ConnView, CoreView, Views};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default path of the admin socket.
pub const DEFAULT_SOCKET: &str = "/run/rvsd.sock";
/// What rvsadm may ask.
const COMMANDS: [&str; 3] = ["list", "timeout", "connections"];
/// Longest request accepted.
const MAX_REQUEST: u64 = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// "list" (services, servers, counts, rates), "timeout", or
    /// "connections" (the list plus every connection, `rvsadm -c`).
    pub cmd: String,
}

/// Per-second rates over the last second.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    pub cps: f64,
    pub in_pps: f64,
    pub out_pps: f64,
    pub in_bps: f64,
    pub out_bps: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Real {
    pub addr: String,
    pub port: u16,
    pub weight: u32,
    pub active: u64,
    pub inactive: u64,
    pub removed: bool,
    pub overloaded: bool,
    pub conns: u64,
    pub pkts_in: u64,
    pub pkts_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rates: Rates,
    /// Health check verdict ("up" or "down"); `None`: not checked.
    #[serde(default)]
    pub health: Option<String>,
    /// Why the last health probe failed, if it did.
    #[serde(default)]
    pub health_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub proto: String,
    pub vip: String,
    pub port: u16,
    pub scheduler: String,
    /// ipvsadm's word: Route, Masq, Tunnel, or FullNat.
    pub forward: String,
    pub persistent: Option<u64>,
    pub retired: bool,
    pub reals: Vec<Real>,
    pub rates: Rates,
}

impl Service {
    pub fn totals(&self) -> (u64, u64, u64, u64, u64) {
        self.reals.iter().fold((0, 0, 0, 0, 0), |t, r| (t.0 + r.conns, t.1 + r.pkts_in, t.2 + r.pkts_out, t.3 + r.bytes_in, t.4 + r.bytes_out))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Listing {
    pub services: Vec<Service>,
    pub connections: u64,
    pub capacity: u64,
    /// Seconds: tcp, tcp_fin, udp (ipvsadm --timeout).
    pub timeouts: (u64, u64, u64),
    pub last_reload: Option<String>,
    /// The neighbor (ARP) entries of the next hops (`rvsadm --neighbors`).
    #[serde(default)]
    pub neighbors: Vec<Neighbor>,
    /// The connections, when asked for (`rvsadm -c`).
    #[serde(default)]
    pub entries: Vec<Connection>,
    /// Some worker had more than it lists (`MAX_LISTED_PER_CORE`).
    #[serde(default)]
    pub entries_truncated: bool,
}

/// One connection (`rvsadm -c`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Connection {
    pub proto: String,
    pub client: String,
    pub virt: String,
    pub real: String,
    /// FullNAT: the local address:port it uses.
    pub local: Option<String>,
    pub state: String,
    /// Seconds until it expires unless more packets come.
    pub expires: u64,
}

impl From<&ConnView> for Connection {
    fn from(c: &ConnView) -> Connection {
        let ep = |(a, p): (std::net::Ipv4Addr, u16)| format!("{a}:{p}");
        Connection {
            proto: c.proto.name().to_uppercase(),
            client: ep(c.client),
            virt: ep(c.virt),
            real: ep(c.real),
            local: c.local.map(ep),
            state: c.state.into(),
            expires: c.expires_in_s,
        }
    }
}

/// One next hop the data plane resolves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Neighbor {
    pub addr: String,
    /// The data-plane port it is reached through.
    pub port: u16,
    pub mac: Option<String>,
    /// static, reachable, expired or incomplete.
    pub state: String,
    /// Seconds since ARP last confirmed it (learned entries only).
    pub age: Option<u64>,
}

impl Neighbor {
    pub fn new(ip: std::net::Ipv4Addr, port: u16, mac: Option<proto::MacAddr>, state: NeighborState) -> Neighbor {
        let (state, age) = match state {
            NeighborState::Static => ("static", None),
            NeighborState::Reachable { age_s } => ("reachable", Some(age_s)),
            NeighborState::Expired { age_s } => ("expired", Some(age_s)),
            NeighborState::Incomplete => ("incomplete", None),
        };
        Neighbor { addr: ip.to_string(), port, mac: mac.map(|m| m.to_string()), state: state.into(), age }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    pub error: Option<String>,
    pub listing: Option<Listing>,
}

fn forward_word(m: dataplane::config::ForwardingMode) -> &'static str {
    use dataplane::config::ForwardingMode::*;
    match m {
        DirectRoute => "Route",
        Nat => "Masq",
        FullNat => "FullNat",
        Tun => "Tunnel",
    }
}

/// Sums the cores' views: services by protocol, VIP and port (and
/// whether retired), servers by address and port.
pub fn merge(cores: &[CoreView]) -> Listing {
    let mut services: Vec<Service> = Vec::new();
    let mut index: HashMap<(String, String, u16, bool), usize> = HashMap::new();
    // By service, where each server is among its reals: found by address
    // and port, not searched (a search, with the address written out for
    // each compare, made a merge quadratic in a service's servers: 40
    // million instructions for 240, every second).
    let mut real_index: Vec<HashMap<(std::net::Ipv4Addr, u16), usize>> = Vec::new();
    let mut listing = Listing::default();
    for core in cores {
        listing.connections += core.connections as u64;
        listing.capacity += core.capacity as u64;
        for s in &core.services {
            let key = (s.proto.name().to_string(), s.vip.to_string(), s.port, s.retired);
            let i = *index.entry(key).or_insert_with(|| {
                services.push(Service {
                    proto: s.proto.name().to_uppercase(),
                    vip: s.vip.to_string(),
                    port: s.port,
                    scheduler: s.scheduler.name().to_string(),
                    forward: forward_word(s.mode).to_string(),
                    persistent: s.persistence,
                    retired: s.retired,
                    ..Service::default()
                });
                real_index.push(HashMap::new());
                services.len() - 1
            });
            for d in &s.dests {
                let svc = &mut services[i];
                let k = *real_index[i].entry((d.addr, d.port)).or_insert_with(|| {
                    svc.reals.push(Real { addr: d.addr.to_string(), port: d.port, ..Real::default() });
                    svc.reals.len() - 1
                });
                let r = &mut svc.reals[k];
                r.weight = d.weight;
                r.removed = d.removed;
                r.overloaded |= d.overloaded;
                r.active += u64::from(d.active);
                r.inactive += u64::from(d.inactive);
                r.conns += d.conns;
                r.pkts_in += d.pkts_in;
                r.pkts_out += d.pkts_out;
                r.bytes_in += d.bytes_in;
                r.bytes_out += d.bytes_out;
            }
        }
    }
    // Servers removed by a reload are listed while they have connections.
    for s in &mut services {
        s.reals.retain(|r| !r.removed || r.active + r.inactive > 0);
    }
    services.retain(|s| !s.retired || s.reals.iter().any(|r| r.active + r.inactive > 0));
    listing.services = services;
    listing
}

/// Fills in per-second rates from an earlier listing taken `dt` before.
pub fn add_rates(now: &mut Listing, before: &Listing, dt: f64) {
    if dt <= 0.0 {
        return;
    }
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
    let old_services = ServiceIndex::of(before);
    for s in &mut now.services {
        let old = old_services.get(s);
        let old_reals = old.map(RealIndex::of);
        for r in &mut s.reals {
            let Some(o) = old_reals.as_ref().and_then(|reals| reals.get(r)) else { continue };
            r.rates = Rates {
                cps: rate(r.conns, o.conns),
                in_pps: rate(r.pkts_in, o.pkts_in),
                out_pps: rate(r.pkts_out, o.pkts_out),
                in_bps: rate(r.bytes_in, o.bytes_in),
                out_bps: rate(r.bytes_out, o.bytes_out),
            };
        }
        s.rates = s.reals.iter().fold(Rates::default(), |a, r| Rates {
            cps: a.cps + r.rates.cps,
            in_pps: a.in_pps + r.rates.in_pps,
            out_pps: a.out_pps + r.rates.out_pps,
            in_bps: a.in_bps + r.rates.in_bps,
            out_bps: a.out_bps + r.rates.out_bps,
        });
    }
}

/// What the control thread tells the admin socket.
#[derive(Debug, Clone, Default)]
pub struct ControlInfo {
    pub timeouts: (u64, u64, u64),
    pub last_reload: Option<String>,
}

/// The admin socket server, on its own thread until `stop`.
pub struct AdminServer {
    path: PathBuf,
    listener: UnixListener,
}

impl AdminServer {
    /// Binds `path` (replacing a stale socket) with mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<AdminServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(AdminServer { path: path.to_path_buf(), listener })
    }

    /// Serves until `stop`. Once a second it samples the views: rates are
    /// those of the last completed one-second window. `decorate` adds what
    /// the control side knows (neighbor table, health) to each answer.
    pub fn serve(self, views: Arc<Views>, info: Arc<Mutex<ControlInfo>>, decorate: impl Fn(&mut Listing), stop: Arc<AtomicBool>) {
        let mut sample = (Instant::now(), merge(&views.all()));
        let mut window = Listing::default();
        while !stop.load(Ordering::Relaxed) {
            if sample.0.elapsed() >= Duration::from_secs(1) {
                let now = (Instant::now(), merge(&views.all()));
                window = now.1.clone();
                add_rates(&mut window, &sample.1, now.0.duration_since(sample.0).as_secs_f64());
                sample = now;
            }
            match self.listener.accept() {
                Ok((stream, _)) => handle(stream, |cmd| {
                    let mut listing = merge(&views.all());
                    copy_rates(&window, &mut listing);
                    let i = info.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    listing.timeouts = i.timeouts;
                    listing.last_reload = i.last_reload;
                    decorate(&mut listing);
                    if cmd == "connections" {
                        let (entries, truncated) = collect_connections(&views).ok_or("the workers did not answer within a second")?;
                        listing.entries = entries;
                        listing.entries_truncated = truncated;
                    }
                    Ok(listing)
                }),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies the rates of matching services and servers from `from`.
fn copy_rates(from: &Listing, to: &mut Listing) {
    let services = ServiceIndex::of(from);
    for s in &mut to.services {
        let Some(f) = services.get(s) else { continue };
        s.rates = f.rates;
        let reals = RealIndex::of(f);
        for r in &mut s.reals {
            if let Some(fr) = reals.get(r) {
                r.rates = fr.rates;
            }
        }
    }
}

/// A listing's services by protocol, VIP, port and whether retired: one
/// listing's matched to another's without a search per service (with
/// thousands of services, searches made each second's rates quadratic).
struct ServiceIndex<'a>(HashMap<(&'a str, &'a str, u16, bool), &'a Service>);

impl<'a> ServiceIndex<'a> {
    fn of(listing: &'a Listing) -> Self {
        ServiceIndex(listing.services.iter().map(|s| ((s.proto.as_str(), s.vip.as_str(), s.port, s.retired), s)).collect())
    }

    /// The service that is `s` in the indexed listing.
    fn get(&self, s: &Service) -> Option<&'a Service> {
        self.0.get(&(s.proto.as_str(), s.vip.as_str(), s.port, s.retired)).copied()
    }
}

/// A service's reals by address and port (as [`ServiceIndex`]).
struct RealIndex<'a>(HashMap<(&'a str, u16), &'a Real>);

impl<'a> RealIndex<'a> {
    fn of(service: &'a Service) -> Self {
        RealIndex(service.reals.iter().map(|r| ((r.addr.as_str(), r.port), r)).collect())
    }

    /// The real that is `r` in the indexed service.
    fn get(&self, r: &Real) -> Option<&'a Real> {
        self.0.get(&(r.addr.as_str(), r.port)).copied()
    }
}

/// Asks every worker for its connections and waits (at most a second)
/// for all to answer: they do between bursts, every 100 ms.
fn collect_connections(views: &Views) -> Option<(Vec<Connection>, bool)> {
    let generation = views.request_connections();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some((conns, truncated)) = views.connections(generation) {
            return Some((conns.iter().map(Connection::from).collect(), truncated));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One client: a bounded, time-limited request line, one answer.
/// `answer` builds the listing for a known command.
fn handle(stream: UnixStream, answer: impl FnOnce(&str) -> Result<Listing, &'static str>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
    let failed = |e: String| Response { ok: false, error: Some(e), listing: None };
    let response = match read {
        Err(e) => failed(format!("could not read the request: {e}")),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(r) if COMMANDS.contains(&r.cmd.as_str()) => match answer(&r.cmd) {
                Ok(listing) => Response { ok: true, error: None, listing: Some(listing) },
                Err(e) => failed(e.to_string()),
            },
            Ok(r) => failed(format!("unknown command {:?} (known: {})", r.cmd, COMMANDS.join(", "))),
            Err(e) => failed(format!("malformed request: {e}")),
        },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_else(|_| "{\"ok\":false}".into());
    out.push('\n');
    let _ = (&stream).write_all(out.as_bytes());
}

/// rvsadm's side: sends `cmd`, returns the answer or a message for humans.
pub fn ask(path: &Path, cmd: &str) -> Result<Listing, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("cannot reach rvsd at {}: {e} (is rvsd running?)", path.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = serde_json::to_string(&Request { cmd: cmd.to_string() }).map_err(|e| e.to_string())? + "\n";
    s.write_all(req.as_bytes()).map_err(|e| format!("sending to rvsd: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| format!("reading rvsd's answer: {e}"))?;
    let r: Response = serde_json::from_str(answer.trim()).map_err(|e| format!("rvsd's answer is not understood: {e}"))?;
    match (r.ok, r.listing, r.error) {
        (true, Some(l), _) => Ok(l),
        (_, _, Some(e)) => Err(format!("rvsd: {e}")),
        _ => Err("rvsd gave no answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::config::{ForwardingMode, L4Proto};
    use dataplane::view::{DestView, ServiceView};
    use std::net::Ipv4Addr;

    fn dest(last: u8, port: u16, conns: u64) -> DestView {
        DestView {
            addr: Ipv4Addr::new(10, 0, 0, last),
            port,
            weight: 1,
            active: conns as u32,
            inactive: 0,
            removed: false,
            overloaded: false,
            conns,
            pkts_in: 10 * conns,
            pkts_out: 0,
            bytes_in: 1000 * conns,
            bytes_out: 0,
        }
    }

    fn service(port: u16, dests: Vec<DestView>) -> ServiceView {
        ServiceView {
            proto: L4Proto::Tcp,
            vip: Ipv4Addr::new(198, 18, 0, 100),
            port,
            scheduler: sched::SchedulerKind::Wlc,
            mode: ForwardingMode::DirectRoute,
            persistence: None,
            retired: false,
            dests,
        }
    }

    fn core(services: Vec<ServiceView>) -> CoreView {
        CoreView { at: 0, services, connections: 1, capacity: 10 }
    }

    /// The cores' counts are summed per service and per server (address
    /// and port both: two servers on one address are two), servers listed
    /// in the order they first appear.
    #[test]
    fn merge_sums_each_server_over_the_cores() {
        let a = core(vec![service(80, vec![dest(11, 80, 1), dest(12, 80, 2)]), service(443, vec![dest(11, 443, 5)])]);
        let b = core(vec![service(80, vec![dest(12, 80, 3), dest(11, 80, 4), dest(11, 8080, 7)])]);
        let l = merge(&[a, b]);
        assert_eq!((l.connections, l.capacity), (2, 20));
        // (service port, [(address, port, connections, packets in)]).
        type Seen = (u16, Vec<(String, u16, u64, u64)>);
        let got: Vec<Seen> = l.services.iter().map(|s| (s.port, s.reals.iter().map(|r| (r.addr.clone(), r.port, r.conns, r.pkts_in)).collect())).collect();
        assert_eq!(
            got,
            [
                (80, vec![("10.0.0.11".into(), 80, 5, 50), ("10.0.0.12".into(), 80, 5, 50), ("10.0.0.11".into(), 8080, 7, 70)]),
                (443, vec![("10.0.0.11".into(), 443, 5, 50)]),
            ]
        );
    }

    /// A service of thousands of servers on two cores merges into one
    /// entry per server with both cores' counts (the index, not a search).
    #[test]
    fn merge_handles_big_pools() {
        let dests = |per: u64| (0..4000u16).map(|k| DestView { addr: Ipv4Addr::from(0x0a00_0000 + u32::from(k)), ..dest(0, 80, per) }).collect::<Vec<_>>();
        let l = merge(&[core(vec![service(80, dests(1))]), core(vec![service(80, dests(2))])]);
        assert_eq!(l.services.len(), 1);
        assert_eq!(l.services[0].reals.len(), 4000);
        assert!(l.services[0].reals.iter().all(|r| r.conns == 3 && r.active == 3));
    }

    /// Rates: each server's counts' growth over the window, each service's
    /// the sum of its servers'; servers and services new since the earlier
    /// listing get none; `copy_rates` carries them to a fresh listing.
    #[test]
    fn rates_are_growth_per_second_matched_by_service_and_server() {
        let before = merge(&[core(vec![service(80, vec![dest(11, 80, 1), dest(12, 80, 2)])])]);
        let mut now = merge(&[core(vec![service(80, vec![dest(12, 80, 6), dest(11, 80, 3), dest(13, 80, 9)]), service(443, vec![dest(11, 443, 4)])])]);
        add_rates(&mut now, &before, 2.0);
        let rates: Vec<Vec<f64>> = now.services.iter().map(|s| s.reals.iter().map(|r| r.rates.cps).collect()).collect();
        assert_eq!(rates, [vec![2.0, 1.0, 0.0], vec![0.0]]);
        assert_eq!((now.services[0].rates.cps, now.services[0].rates.in_pps, now.services[1].rates.cps), (3.0, 30.0, 0.0));
        let mut fresh = merge(&[core(vec![service(443, vec![dest(11, 443, 4)]), service(80, vec![dest(11, 80, 3)])])]);
        copy_rates(&now, &mut fresh);
        assert_eq!((fresh.services[1].rates.cps, fresh.services[1].reals[0].rates.cps, fresh.services[0].rates.cps), (3.0, 1.0, 0.0));
    }
}
