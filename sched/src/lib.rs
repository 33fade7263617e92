//! Real-server schedulers, thresholds and persistence: every scheduler an
//! LVS user can name (`ipvsadm -s`), with IPVS's semantics.
//!
//! A [`Pool`] is one service's servers on one worker core: their weights,
//! connection counts, thresholds and health, plus the scheduler's state.
//! Everything is deterministic (no clock is read: time is passed in; no
//! process-seeded hashing), so the same configuration yields the same picks
//! on every node.
//!
//! Per-core design: each worker core owns its pools and counts only its own
//! connections. lc/wlc/sed/nq/ovf/lblc/twos therefore balance each core's
//! share of the traffic; with RSS spreading flows evenly, per-core minima
//! track the global ones without any cross-core traffic per packet. A
//! threshold given to a pool applies to that core's connections: the data
//! plane gives each core its share of the configured threshold.
//!
//! Costs: rr and the hashing schedulers (dh, sh, mh) pick in O(1) (wrr
//! amortized O(1) per pick); lc, wlc, sed, nq, fo, ovf pick in O(1) from a
//! tournament tree and pay O(log n) when a count changes; twos is O(log n);
//! lblc/lblcr are a hash lookup plus the wlc tree.
#![forbid(unsafe_code)]

mod buckets;
mod dest;
mod hash;
mod least;
mod locality;
mod maglev;
mod persist;
mod rr;
mod tournament;
mod twos;
mod wrr;

pub use dest::{DestConfig, DestState, MAX_WEIGHT};
pub use persist::PersistenceConfig;

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

/// The scheduler names operators write (`ipvsadm -s NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Mh,
    Fo,
    Ovf,
    Twos,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Mh,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Twos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Twos => "twos",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchedulerKind::ALL.iter().copied().find(|k| k.name() == s).ok_or_else(|| SchedError::UnknownScheduler(s.to_string()))
    }
}

/// Scheduler flags (`ipvsadm -b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedFlags {
    /// sh-port / mh-port: hash the source port too.
    pub port: bool,
    /// sh-fallback / mh-fallback: move an unavailable server's flows to
    /// another server instead of dropping them.
    pub fallback: bool,
}

/// A scheduler with its options, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSpec {
    pub kind: SchedulerKind,
    pub flags: SchedFlags,
    /// mh only: the lookup table size (a prime); `None` = smallest prime
    /// at least 100 x the number of servers.
    pub mh_table_size: Option<u32>,
}

impl SchedulerSpec {
    pub fn new(kind: SchedulerKind) -> Self {
        SchedulerSpec { kind, flags: SchedFlags::default(), mh_table_size: None }
    }

    /// Parses a name and ipvsadm-style flag names (`sh-port`,
    /// `sh-fallback`, `mh-port`, `mh-fallback`), checking they fit.
    pub fn parse(name: &str, flags: &[&str], mh_table_size: Option<u32>) -> Result<Self, SchedError> {
        let kind: SchedulerKind = name.parse()?;
        let mut spec = SchedulerSpec::new(kind);
        for &f in flags {
            let (owner, which) = match f {
                "sh-port" => (SchedulerKind::Sh, &mut spec.flags.port),
                "sh-fallback" => (SchedulerKind::Sh, &mut spec.flags.fallback),
                "mh-port" => (SchedulerKind::Mh, &mut spec.flags.port),
                "mh-fallback" => (SchedulerKind::Mh, &mut spec.flags.fallback),
                other => return Err(SchedError::UnknownFlag(other.to_string())),
            };
            if owner != kind {
                return Err(SchedError::FlagNotForScheduler { flag: f.to_string(), scheduler: kind });
            }
            *which = true;
        }
        if let Some(m) = mh_table_size {
            if kind != SchedulerKind::Mh {
                return Err(SchedError::TableSizeNotForScheduler(kind));
            }
            if !maglev::is_prime(m) || !(MIN_MH_TABLE..=MAX_MH_TABLE).contains(&m) {
                return Err(SchedError::TableSizeInvalid(m));
            }
        }
        spec.mh_table_size = mh_table_size;
        Ok(spec)
    }
}

/// The mh lookup table sizes an operator may set. Above the largest, a
/// table (4 bytes an entry, one per service per core, filled at every
/// weight change) would be hundreds of megabytes and take seconds to fill;
/// sized by the scheduler itself it stays below 6.6 million entries.
const MIN_MH_TABLE: u32 = 101;
const MAX_MH_TABLE: u32 = 1 << 23;

/// A configuration mistake, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedError {
    UnknownScheduler(String),
    UnknownFlag(String),
    FlagNotForScheduler { flag: String, scheduler: SchedulerKind },
    TableSizeNotForScheduler(SchedulerKind),
    TableSizeInvalid(u32),
    TableSizeTooSmall { size: u32, servers: usize },
    WeightTooLarge(u32),
    LowerAboveUpper { lower: u32, upper: u32 },
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::UnknownScheduler(s) => {
                let known: Vec<_> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
                write!(f, "unknown scheduler {s:?} (known: {})", known.join(", "))
            }
            SchedError::UnknownFlag(s) => {
                write!(f, "unknown scheduler flag {s:?} (known: sh-port, sh-fallback, mh-port, mh-fallback)")
            }
            SchedError::FlagNotForScheduler { flag, scheduler } => {
                write!(f, "flag {flag:?} does not apply to scheduler {scheduler}")
            }
            SchedError::TableSizeNotForScheduler(k) => write!(f, "a table size applies only to mh, not {k}"),
            SchedError::TableSizeInvalid(m) => write!(f, "mh table size {m} must be a prime from {MIN_MH_TABLE} to {MAX_MH_TABLE}"),
            SchedError::TableSizeTooSmall { size, servers } => {
                write!(f, "mh table size {size} is smaller than the {servers} servers")
            }
            SchedError::WeightTooLarge(w) => write!(f, "weight {w} is above {MAX_WEIGHT}"),
            SchedError::LowerAboveUpper { lower, upper } => {
                write!(f, "lower threshold {lower} is not below the upper threshold {upper}")
            }
        }
    }
}

impl std::error::Error for SchedError {}

/// What the hashing schedulers look at in a new connection's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

#[derive(Debug, Clone)]
enum Algo {
    Rr(rr::RoundRobin),
    Wrr(wrr::WeightedRoundRobin),
    Least(least::Least),
    Buckets(buckets::Buckets),
    Maglev(maglev::Maglev),
    Locality(locality::Locality),
    Twos(twos::Twos),
}

fn check(cfg: &DestConfig) -> Result<(), SchedError> {
    if cfg.weight > MAX_WEIGHT {
        return Err(SchedError::WeightTooLarge(cfg.weight));
    }
    if cfg.upper_threshold != 0 && cfg.lower_threshold >= cfg.upper_threshold {
        return Err(SchedError::LowerAboveUpper { lower: cfg.lower_threshold, upper: cfg.upper_threshold });
    }
    Ok(())
}

/// One service's servers and scheduler on one core.
#[derive(Debug, Clone)]
pub struct Pool {
    spec: SchedulerSpec,
    dests: Vec<DestState>,
    algo: Algo,
    persistence: Option<persist::Persistence>,
}

impl Pool {
    pub fn new(spec: SchedulerSpec, configs: &[DestConfig], persistence: Option<PersistenceConfig>) -> Result<Pool, SchedError> {
        for c in configs {
            check(c)?;
        }
        if let Some(m) = spec.mh_table_size {
            if (m as usize) < configs.len() {
                return Err(SchedError::TableSizeTooSmall { size: m, servers: configs.len() });
            }
        }
        let dests: Vec<DestState> = configs.iter().map(|&c| DestState::new(c)).collect();
        let algo = Self::build(&spec, &dests);
        Ok(Pool { spec, dests, algo, persistence: persistence.map(persist::Persistence::new) })
    }

    fn build(spec: &SchedulerSpec, dests: &[DestState]) -> Algo {
        use least::Order;
        let f = spec.flags;
        match spec.kind {
            SchedulerKind::Rr => Algo::Rr(rr::RoundRobin::new()),
            SchedulerKind::Wrr => Algo::Wrr(wrr::WeightedRoundRobin::new(dests)),
            SchedulerKind::Lc => Algo::Least(least::Least::new(Order::Lc, dests)),
            SchedulerKind::Wlc => Algo::Least(least::Least::new(Order::Wlc, dests)),
            SchedulerKind::Sed => Algo::Least(least::Least::new(Order::Sed, dests)),
            SchedulerKind::Nq => Algo::Least(least::Least::new(Order::Nq, dests)),
            SchedulerKind::Fo => Algo::Least(least::Least::new(Order::Fo, dests)),
            SchedulerKind::Ovf => Algo::Least(least::Least::new(Order::Ovf, dests)),
            SchedulerKind::Dh => Algo::Buckets(buckets::Buckets::new(buckets::Kind::Dh, dests, false, false)),
            SchedulerKind::Sh => Algo::Buckets(buckets::Buckets::new(buckets::Kind::Sh, dests, f.port, f.fallback)),
            SchedulerKind::Mh => Algo::Maglev(maglev::Maglev::new(dests, spec.mh_table_size, f.port, f.fallback)),
            SchedulerKind::Lblc => Algo::Locality(locality::Locality::new(false, dests)),
            SchedulerKind::Lblcr => Algo::Locality(locality::Locality::new(true, dests)),
            SchedulerKind::Twos => Algo::Twos(twos::Twos::new(dests, 0x7477_6f73)),
        }
    }

    pub fn spec(&self) -> &SchedulerSpec {
        &self.spec
    }

    pub fn len(&self) -> usize {
        self.dests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }

    pub fn dest(&self, i: usize) -> &DestState {
        &self.dests[i]
    }

    pub fn dests(&self) -> &[DestState] {
        &self.dests
    }

    /// The persistence timeout in seconds, when the service is persistent.
    pub fn persistence_timeout(&self) -> Option<u64> {
        self.persistence.as_ref().map(|p| p.config().timeout)
    }

    /// Live persistence templates.
    pub fn templates(&self) -> usize {
        self.persistence.as_ref().map_or(0, persist::Persistence::templates)
    }

    /// Picks the server for a new connection and counts it as opened
    /// (`active` or not). `None`: no server may take it; the caller counts
    /// the drop. If the caller then cannot create the connection it must
    /// call [`Pool::closed`].
    pub fn schedule(&mut self, flow: &Flow, active: bool, now: u64) -> Option<usize> {
        let persisted = match &mut self.persistence {
            Some(p) => p.lookup(flow.src, &self.dests, now),
            None => None,
        };
        let i = match persisted {
            Some(i) => i,
            None => self.pick(flow, now)?,
        };
        if let Some(p) = &mut self.persistence {
            p.bind(flow.src, i, now);
        }
        let d = &mut self.dests[i];
        if active {
            d.active += 1;
        } else {
            d.inactive += 1;
        }
        self.counted(i);
        Some(i)
    }

    fn pick(&mut self, flow: &Flow, now: u64) -> Option<usize> {
        let d = &self.dests;
        match &mut self.algo {
            Algo::Rr(s) => s.pick(d),
            Algo::Wrr(s) => s.pick(d),
            Algo::Least(s) => s.pick(),
            // dh hashes the destination address, sh the source.
            Algo::Buckets(b) if self.spec.kind == SchedulerKind::Dh => b.pick(d, flow.dst, 0),
            Algo::Buckets(b) => b.pick(d, flow.src, flow.src_port),
            Algo::Maglev(m) => m.pick(d, flow.src, flow.src_port),
            Algo::Locality(l) => l.pick(d, flow.dst, now),
            Algo::Twos(t) => t.pick(d),
        }
    }

    /// A connection on `i` went from active to inactive or back
    /// (TCP leaving or entering ESTABLISHED).
    pub fn set_active(&mut self, i: usize, active: bool) {
        let d = &mut self.dests[i];
        if active && d.inactive > 0 {
            d.inactive -= 1;
            d.active += 1;
        } else if !active && d.active > 0 {
            d.active -= 1;
            d.inactive += 1;
        } else {
            return;
        }
        self.counted(i);
    }

    /// A connection on `i` ended (closed or expired).
    pub fn closed(&mut self, i: usize, active: bool, client: IpAddr, now: u64) {
        let d = &mut self.dests[i];
        if active {
            d.active = d.active.saturating_sub(1);
        } else {
            d.inactive = d.inactive.saturating_sub(1);
        }
        if let Some(p) = &mut self.persistence {
            p.release(client, i, now);
        }
        self.counted(i);
    }

    /// Sets a server's weight (0 = quiescent).
    pub fn set_weight(&mut self, i: usize, weight: u32) -> Result<(), SchedError> {
        let mut c = self.dests[i].config;
        c.weight = weight;
        check(&c)?;
        if self.dests[i].config.weight == weight {
            return Ok(());
        }
        self.dests[i].config.weight = weight;
        self.reweighted(i);
        Ok(())
    }

    /// Changes the scheduler and persistence (a reload), keeping every
    /// server with its index and connection counts; only the scheduler's
    /// own state (cursor, tables) and the persistence templates start over.
    pub fn reconfigure(&mut self, spec: SchedulerSpec, persistence: Option<PersistenceConfig>) -> Result<(), SchedError> {
        if let Some(m) = spec.mh_table_size {
            if (m as usize) < self.dests.len() {
                return Err(SchedError::TableSizeTooSmall { size: m, servers: self.dests.len() });
            }
        }
        if spec != self.spec {
            self.spec = spec;
            self.algo = Self::build(&self.spec, &self.dests);
        }
        let same = match (&self.persistence, persistence) {
            (Some(p), Some(c)) => p.config() == c,
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.persistence = persistence.map(persist::Persistence::new);
        }
        Ok(())
    }

    /// Changes a server's thresholds (0 = none; lower 0 = 3/4 of upper).
    pub fn set_thresholds(&mut self, i: usize, upper: u32, lower: u32) -> Result<(), SchedError> {
        let mut c = self.dests[i].config;
        c.upper_threshold = upper;
        c.lower_threshold = lower;
        check(&c)?;
        self.dests[i].config = c;
        self.changed(i);
        Ok(())
    }

    /// The index of the live (not removed) server at `addr`:`port`.
    pub fn find(&self, addr: IpAddr, port: u16) -> Option<usize> {
        self.dests.iter().position(|d| !d.removed && d.config.addr == addr && d.config.port == port)
    }

    /// Health: an unavailable server takes no new connections.
    pub fn set_available(&mut self, i: usize, available: bool) {
        if self.dests[i].available != available {
            self.dests[i].available = available;
            self.changed(i);
        }
    }

    /// Adds a server; returns its index.
    pub fn add(&mut self, cfg: DestConfig) -> Result<usize, SchedError> {
        check(&cfg)?;
        self.dests.push(DestState::new(cfg));
        let i = self.dests.len() - 1;
        self.reweighted(i);
        Ok(i)
    }

    /// Removes a server from scheduling. Its index stays reserved (and its
    /// counts kept) so the connections that name it stay valid.
    pub fn remove(&mut self, i: usize) {
        if self.dests[i].removed {
            return;
        }
        self.dests[i].removed = true;
        if let Algo::Locality(l) = &mut self.algo {
            l.forget(i);
        }
        self.reweighted(i);
    }

    /// Only the connection counts of `i` changed.
    fn counted(&mut self, i: usize) {
        self.dests[i].update_overload();
        let d = &self.dests;
        match &mut self.algo {
            Algo::Least(s) => s.counts_changed(d, i),
            Algo::Locality(l) => l.refresh(d, i),
            Algo::Twos(t) => t.refresh(d, i),
            Algo::Rr(_) | Algo::Wrr(_) | Algo::Buckets(_) | Algo::Maglev(_) => {}
        }
    }

    /// Counts, health or threshold of `i` changed.
    fn changed(&mut self, i: usize) {
        self.dests[i].update_overload();
        let d = &self.dests;
        match &mut self.algo {
            Algo::Least(s) => s.refresh(d, i),
            Algo::Locality(l) => l.refresh(d, i),
            Algo::Twos(t) => t.refresh(d, i),
            Algo::Rr(_) | Algo::Wrr(_) | Algo::Buckets(_) | Algo::Maglev(_) => {}
        }
    }

    /// Membership or weight of `i` changed: what depends on weights is
    /// updated; only the hash tables (dh, sh, mh) are refilled, as IPVS does.
    fn reweighted(&mut self, i: usize) {
        self.changed(i);
        let d = &self.dests;
        match &mut self.algo {
            Algo::Wrr(s) => s.update(d),
            Algo::Buckets(b) => b.rebuild(d),
            Algo::Maglev(m) => m.rebuild(d),
            Algo::Rr(_) | Algo::Least(_) | Algo::Locality(_) | Algo::Twos(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
