//! Health checks of real servers, from the control side.
//!
//! Each (service, real server) with a `health_check` is probed every
//! `interval` ([`probe`]); `fall` consecutive failures mark it down and
//! `rise` consecutive successes bring it back, as in keepalived and
//! haproxy. A server starts up (keepalived's default), so a restart of
//! rvsd does not empty the pools while the first checks run.
//!
//! A transition flips the server's flag on the running snapshot's health
//! board ([`dataplane::health`]): the workers stop (or resume) scheduling
//! it at their next poll loop, with no reload. Probes run on a small pool
//! of threads; one coordinator thread keeps the schedule and the state.

pub mod probe;

use core::net::Ipv4Addr;
use dataplane::config::{L4Proto, Service};
use dataplane::health::{slot_bases, Health};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP handshake.
    Tcp,
    /// `GET path` (HTTP/1.0), the status code in `expect_status`, and the
    /// body containing `expect_body` when given.
    Http { path: String, host: Option<String>, expect_status: Vec<u16>, expect_body: Option<String> },
}

/// A service's health check, applied to each of its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// The port probed; `None`: the real server's port.
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl HealthCheck {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            CheckKind::Tcp => "tcp",
            CheckKind::Http { .. } => "http",
        }
    }
}

/// Names one checked real server of one service; stable across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub proto: L4Proto,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub real: Ipv4Addr,
    pub real_port: u16,
}

impl core::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}:{} -> {}:{}", self.proto.name(), self.vip, self.port, self.real, self.real_port)
    }
}

/// One checked server's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub up: bool,
    /// Consecutive successes while down, failures while up.
    pub streak: u32,
    pub checks_ok: u64,
    pub checks_failed: u64,
    /// Up/down changes since rvsd started.
    pub transitions: u64,
    /// Unix time of the last transition (or of the first check config).
    pub since: f64,
    /// Why the last probe failed ("" after a success).
    pub last_error: String,
}

impl Status {
    pub fn new(now: f64) -> Self {
        Status { up: true, streak: 0, checks_ok: 0, checks_failed: 0, transitions: 0, since: now, last_error: String::new() }
    }

    /// Counts one probe result; returns the new state when it changed.
    pub fn record(&mut self, result: &Result<(), String>, rise: u32, fall: u32, now: f64) -> Option<bool> {
        match result {
            Ok(()) => {
                self.checks_ok += 1;
                self.last_error.clear();
            }
            Err(e) => {
                self.checks_failed += 1;
                self.last_error.clone_from(e);
            }
        }
        // The streak counts results that argue for a change.
        if result.is_ok() == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < if self.up { fall } else { rise }.max(1) {
            return None;
        }
        self.up = !self.up;
        self.streak = 0;
        self.transitions += 1;
        self.since = now;
        Some(self.up)
    }
}

/// Everything the checks know, shared with the metrics and admin threads.
#[derive(Debug, Default)]
pub struct HealthState {
    statuses: Mutex<HashMap<TargetKey, Status>>,
}

impl HealthState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TargetKey, Status>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every checked server's status, sorted.
    pub fn snapshot(&self) -> Vec<(TargetKey, Status)> {
        let mut v: Vec<_> = self.lock().iter().map(|(k, s)| (*k, s.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// One probe to run: a checked real server of the current plan.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: TargetKey,
    pub check: HealthCheck,
    /// Where the probe connects.
    pub addr: SocketAddrV4,
    /// The server's slot on the health board.
    pub slot: usize,
}

/// The checks a configuration asks for: `checks[i]` belongs to
/// `services[i]`. Slots follow [`slot_bases`].
pub fn targets(services: &[Service], checks: &[Option<HealthCheck>]) -> Vec<Target> {
    let mut v = Vec::new();
    for ((s, check), base) in services.iter().zip(checks).zip(slot_bases(services)) {
        let Some(check) = check else { continue };
        for (j, r) in s.reals.iter().enumerate() {
            let real_port = r.port.unwrap_or(s.port);
            v.push(Target {
                key: TargetKey { proto: s.proto, vip: s.vip, port: s.port, real: r.addr, real_port },
                check: check.clone(),
                addr: SocketAddrV4::new(r.addr, check.port.unwrap_or(real_port)),
                slot: base as usize + j,
            });
        }
    }
    v
}

/// The health board for a new snapshot of `services`: servers the checks
/// hold down start down, everything else up.
pub fn board_for(services: &[Service], targets: &[Target], state: &HealthState) -> Health {
    let n: usize = services.iter().map(|s| s.reals.len()).sum();
    let mut up = vec![true; n];
    let statuses = state.lock();
    for t in targets {
        if let (Some(s), Some(u)) = (statuses.get(&t.key), up.get_mut(t.slot)) {
            *u = s.up;
        }
    }
    Health(Arc::new(dataplane::health::HealthBoard::new(up)))
}

/// Called on every transition (logging, tests).
pub type OnTransition = Box<dyn Fn(&TargetKey, bool, &str) + Send>;

enum Event {
    /// A new configuration: these targets, on this board.
    Plan(Vec<Target>, Health),
    /// A probe finished.
    Done(TargetKey, Result<(), String>),
}

/// The running health checks.
pub struct Monitor {
    events: Sender<Event>,
    coordinator: Option<std::thread::JoinHandle<()>>,
    probers: Vec<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Starts `threads` probing threads and the coordinator; they stop when
    /// `stop` is set (within about 100 ms plus one probe's timeout).
    pub fn start(state: Arc<HealthState>, threads: usize, stop: Arc<AtomicBool>, on_transition: OnTransition) -> std::io::Result<Monitor> {
        let (events, inbox) = mpsc::channel::<Event>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<(TargetKey, HealthCheck, SocketAddrV4)>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut probers = Vec::new();
        for i in 0..threads.max(1) {
            let (jobs, done) = (Arc::clone(&jobs_rx), events.clone());
            probers.push(std::thread::Builder::new().name(format!("rvsd-health-{i}")).spawn(move || prober(&jobs, &done))?);
        }
        let coordinator = std::thread::Builder::new().name("rvsd-health".into()).spawn(move || coordinate(&inbox, &jobs_tx, &state, &stop, &*on_transition))?;
        Ok(Monitor { events, coordinator: Some(coordinator), probers })
    }

    /// Checks `targets` from now on, marking transitions on `board`.
    pub fn plan(&self, targets: Vec<Target>, board: Health) {
        let _ = self.events.send(Event::Plan(targets, board));
    }

    /// Waits for the coordinator (after `stop` was set). Probers end
    /// after their current probe (the coordinator dropped the job queue);
    /// they are not waited for, so a long probe timeout cannot hold up a
    /// shutdown, and finished ones are joined.
    pub fn join(mut self) {
        if let Some(c) = self.coordinator.take() {
            let _ = c.join();
        }
        for p in self.probers.drain(..) {
            if p.is_finished() {
                let _ = p.join();
            }
        }
    }
}

fn prober(jobs: &Mutex<Receiver<(TargetKey, HealthCheck, SocketAddrV4)>>, done: &Sender<Event>) {
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((key, check, addr)) = job else { return };
        if done.send(Event::Done(key, probe::probe(&check, addr))).is_err() {
            return;
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The schedule: each target is probed `interval` after its last probe
/// started, never twice at once.
fn coordinate(
    inbox: &Receiver<Event>,
    jobs: &Sender<(TargetKey, HealthCheck, SocketAddrV4)>,
    state: &HealthState,
    stop: &AtomicBool,
    on_transition: &dyn Fn(&TargetKey, bool, &str),
) {
    let mut targets: HashMap<TargetKey, Target> = HashMap::new();
    let mut board = Health::default();
    let mut in_flight: HashSet<TargetKey> = HashSet::new();
    // Min-heap of (due, key) via Reverse; `scheduled` = the keys in it.
    let mut due: BinaryHeap<core::cmp::Reverse<(Instant, TargetKey)>> = BinaryHeap::new();
    let mut scheduled: HashSet<TargetKey> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some(core::cmp::Reverse((at, key))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            let Some(t) = targets.get(&key) else {
                scheduled.remove(&key);
                continue;
            };
            let mut next = at + t.check.interval;
            if next <= now {
                // Late (a slow pool): keep the interval from now on.
                next = now + t.check.interval;
            }
            due.push(core::cmp::Reverse((next, key)));
            // A probe still running (a long timeout) skips its turn.
            if in_flight.insert(key) {
                let _ = jobs.send((key, t.check.clone(), t.addr));
            }
        }
        let wait = due.peek().map_or(Duration::from_millis(100), |r| r.0 .0.saturating_duration_since(now)).min(Duration::from_millis(100));
        match inbox.recv_timeout(wait) {
            Ok(Event::Plan(new, new_board)) => {
                let mut statuses = state.lock();
                let wall = unix_now();
                targets = new.into_iter().map(|t| (t.key, t)).collect();
                statuses.retain(|k, _| targets.contains_key(k));
                in_flight.retain(|k| targets.contains_key(k));
                for t in targets.values() {
                    let s = statuses.entry(t.key).or_insert_with(|| Status::new(wall));
                    // The new board starts from what the checks know now.
                    new_board.set(t.slot, s.up);
                    if scheduled.insert(t.key) {
                        due.push(core::cmp::Reverse((now, t.key)));
                    }
                }
                new_board.touch();
                board = new_board;
            }
            Ok(Event::Done(key, result)) => {
                in_flight.remove(&key);
                let Some(t) = targets.get(&key) else { continue };
                let mut statuses = state.lock();
                let Some(s) = statuses.get_mut(&key) else { continue };
                if let Some(up) = s.record(&result, t.check.rise, t.check.fall, unix_now()) {
                    board.set(t.slot, up);
                    let why = result.err().unwrap_or_default();
                    drop(statuses);
                    on_transition(&key, up, &why);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests;
