//! Real-server schedulers: given the destinations of a service, pick the one
//! a new connection goes to.
//!
//! Schedulers are plain state machines over a slice of [`Dest`]: no clock, no
//! randomness, no hashing of process-local seeds, so the same configuration
//! yields the same sequence of picks on every node. Each worker core owns its
//! own scheduler instance (no shared cursor, no atomics): with N cores the
//! global order is an interleaving of N per-core orders, and each core's
//! share still follows the weights exactly.
#![forbid(unsafe_code)]

mod rr;
mod wrr;

pub use rr::RoundRobin;
pub use wrr::WeightedRoundRobin;

use core::fmt;
use core::str::FromStr;

/// What a scheduler needs to know about one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// 0 = quiescent: no new connections, existing ones continue.
    pub weight: u32,
    /// Set by thresholds or health checks: the server takes no new connections.
    pub unavailable: bool,
}

impl Dest {
    pub fn new(weight: u32) -> Self {
        Dest { weight, unavailable: false }
    }

    /// May receive new connections.
    pub fn eligible(&self) -> bool {
        self.weight > 0 && !self.unavailable
    }
}

/// The scheduler names operators write (`ipvsadm -s NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Rr,
    Wrr,
}

impl SchedulerKind {
    pub const NAMES: &'static [&'static str] = &["rr", "wrr"];

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown scheduler name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScheduler(pub String);

impl fmt::Display for UnknownScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scheduler {:?} (known: {})", self.0, SchedulerKind::NAMES.join(", "))
    }
}

impl std::error::Error for UnknownScheduler {}

impl FromStr for SchedulerKind {
    type Err = UnknownScheduler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rr" => Ok(SchedulerKind::Rr),
            "wrr" => Ok(SchedulerKind::Wrr),
            other => Err(UnknownScheduler(other.to_string())),
        }
    }
}

/// One service's scheduler state.
#[derive(Debug, Clone)]
pub enum Scheduler {
    Rr(RoundRobin),
    Wrr(WeightedRoundRobin),
}

impl Scheduler {
    pub fn new(kind: SchedulerKind, dests: &[Dest]) -> Self {
        match kind {
            SchedulerKind::Rr => Scheduler::Rr(RoundRobin::new()),
            SchedulerKind::Wrr => Scheduler::Wrr(WeightedRoundRobin::new(dests)),
        }
    }

    /// Index into `dests` of the server for a new connection, or `None`
    /// when no server is eligible (the caller counts that drop).
    pub fn pick(&mut self, dests: &[Dest]) -> Option<usize> {
        match self {
            Scheduler::Rr(s) => s.pick(dests),
            Scheduler::Wrr(s) => s.pick(dests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for name in SchedulerKind::NAMES {
            assert_eq!(name.parse::<SchedulerKind>().unwrap().name(), *name);
        }
        let e = "wlcx".parse::<SchedulerKind>().unwrap_err();
        assert_eq!(e.to_string(), "unknown scheduler \"wlcx\" (known: rr, wrr)");
    }

    #[test]
    fn empty_and_all_quiescent_give_none() {
        for kind in [SchedulerKind::Rr, SchedulerKind::Wrr] {
            let mut s = Scheduler::new(kind, &[]);
            assert_eq!(s.pick(&[]), None);
            let dests = [Dest::new(0), Dest { weight: 3, unavailable: true }];
            let mut s = Scheduler::new(kind, &dests);
            assert_eq!(s.pick(&dests), None, "{kind}");
        }
    }
}
