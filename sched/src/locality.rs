//! lblc and lblcr: locality-based least-connection, for cache clusters.
//! A request's destination address maps to a server (lblc) or a set of
//! servers (lblcr); a new address, or one whose server is overloaded, is
//! scheduled by wlc over all servers. Semantics of `ip_vs_lblc.c` and
//! `ip_vs_lblcr.c`, with their 24-hour expiry of unused entries.
//!
//! IPVS decides "overloaded" by scanning every server for one that is less
//! than half loaded; RVS keeps that count up to date as counts change, so
//! the check is O(1).

use crate::dest::DestState;
use crate::least::{Least, Order};
use core::net::IpAddr;
use std::collections::{HashMap, VecDeque};

const NS: u64 = 1_000_000_000;
/// Unused entries are forgotten after this long (IPVS's default).
pub(crate) const EXPIRATION: u64 = 24 * 60 * 60 * NS;

#[derive(Debug, Clone)]
struct Entry {
    /// lblc: one server; lblcr: the replica set.
    set: Vec<u32>,
    last_used: u64,
    last_modified: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Locality {
    replicated: bool,
    wlc: Least,
    table: HashMap<IpAddr, Entry>,
    /// Entries in insertion order with the time they were queued: expiry
    /// checks the front, so reclaiming is amortized O(1) per pick.
    expiry: VecDeque<(IpAddr, u64)>,
    /// Servers with `active * 2 < weight`.
    underloaded: usize,
    was_underloaded: Vec<bool>,
}

fn underloaded(d: &DestState) -> bool {
    !d.removed && u64::from(d.active) * 2 < u64::from(d.weight())
}

impl Locality {
    pub(crate) fn new(replicated: bool, dests: &[DestState]) -> Self {
        let was: Vec<bool> = dests.iter().map(underloaded).collect();
        Locality {
            replicated,
            wlc: Least::new(Order::Wlc, dests),
            table: HashMap::new(),
            expiry: VecDeque::new(),
            underloaded: was.iter().filter(|&&u| u).count(),
            was_underloaded: was,
        }
    }

    pub(crate) fn refresh(&mut self, dests: &[DestState], i: usize) {
        self.wlc.refresh(dests, i);
        if i >= self.was_underloaded.len() {
            self.was_underloaded.resize(i + 1, false);
        }
        let now = underloaded(&dests[i]);
        match (self.was_underloaded[i], now) {
            (false, true) => self.underloaded += 1,
            (true, false) => self.underloaded -= 1,
            _ => {}
        }
        self.was_underloaded[i] = now;
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(addr, queued)) = self.expiry.front() {
            if now.saturating_sub(queued) < EXPIRATION {
                break;
            }
            self.expiry.pop_front();
            if let Some(e) = self.table.get(&addr) {
                if now.saturating_sub(e.last_used) >= EXPIRATION {
                    self.table.remove(&addr);
                } else {
                    let last = e.last_used;
                    self.expiry.push_back((addr, last));
                }
            }
        }
    }

    pub(crate) fn pick(&mut self, dests: &[DestState], dst: IpAddr, now: u64) -> Option<usize> {
        self.expire(now);
        // ip_vs_lblc.c's is_overloaded: busier than its weight while some
        // server is less than half busy.
        let any_underloaded = self.underloaded > 0;
        let overloaded = |d: &DestState| d.active > d.weight() && any_underloaded;
        let Locality { replicated, wlc, table, expiry, .. } = self;
        let Some(e) = table.get_mut(&dst) else {
            let i = wlc.pick()?;
            table.insert(dst, Entry { set: vec![i as u32], last_used: now, last_modified: now });
            expiry.push_back((dst, now));
            return Some(i);
        };
        e.last_used = now;
        if !*replicated {
            let current = e.set[0] as usize;
            if dests[current].eligible() && !overloaded(&dests[current]) {
                return Some(current);
            }
            let i = wlc.pick()?;
            e.set[0] = i as u32;
            e.last_modified = now;
            return Some(i);
        }
        // As ip_vs_lblcr_schedule: choose the least loaded member, then
        // shrink a set untouched for a while by its busiest member.
        let choice = least_loaded(dests, &e.set).filter(|&i| !overloaded(&dests[i]));
        if e.set.len() > 1 && now.saturating_sub(e.last_modified) >= EXPIRATION {
            if let Some(k) = busiest(dests, &e.set) {
                e.set.remove(k);
            }
        }
        if let Some(i) = choice {
            return Some(i);
        }
        let i = wlc.pick()?;
        if !e.set.contains(&(i as u32)) {
            e.set.push(i as u32);
            e.last_modified = now;
        }
        Some(i)
    }

    /// Forgets a removed server in every set (IPVS drops its references).
    pub(crate) fn forget(&mut self, i: usize) {
        for e in self.table.values_mut() {
            e.set.retain(|&d| d as usize != i);
        }
        self.table.retain(|_, e| !e.set.is_empty());
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.table.len()
    }
}

/// `ip_vs_dest_set_min`: lowest overhead/weight among usable members.
fn least_loaded(dests: &[DestState], set: &[u32]) -> Option<usize> {
    set.iter().map(|&i| i as usize).filter(|&i| dests[i].eligible()).reduce(|a, b| if Order::Wlc.better(&dests[b], &dests[a]) { b } else { a })
}

/// `ip_vs_dest_set_max`: highest overhead/weight; position in the set.
fn busiest(dests: &[DestState], set: &[u32]) -> Option<usize> {
    (0..set.len()).reduce(|a, b| {
        let (da, db) = (&dests[set[a] as usize], &dests[set[b] as usize]);
        if Order::Wlc.better(da, db) {
            b
        } else {
            a
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::dest;
    use core::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
    }

    #[test]
    fn lblc_sticks_per_destination_until_overloaded() {
        let mut d = vec![dest(2), dest(2), dest(2)];
        let mut l = Locality::new(false, &d);
        let first = l.pick(&d, ip(1), 0).unwrap();
        assert_eq!(first, 0, "wlc over idle servers: the first");
        d[0].active = 1;
        l.refresh(&d, 0);
        // Another destination goes elsewhere (wlc), the first one stays.
        assert_eq!(l.pick(&d, ip(2), 1), Some(1));
        assert_eq!(l.pick(&d, ip(1), 2), Some(0));
        // Busier than its weight while others are idle: moved.
        d[0].active = 3;
        l.refresh(&d, 0);
        // (Server 1's entry for ip(2) did not add load: counts come from the pool.)
        assert_eq!(l.pick(&d, ip(1), 3), Some(1));
        assert_eq!(l.pick(&d, ip(1), 4), Some(1), "and it stays on the new one");
    }

    #[test]
    fn lblc_overload_needs_a_less_busy_server() {
        let mut d = vec![dest(1), dest(1)];
        let mut l = Locality::new(false, &d);
        assert_eq!(l.pick(&d, ip(1), 0), Some(0));
        for i in 0..2 {
            d[i].active = 5;
            l.refresh(&d, i);
        }
        // Everyone is busy: no point moving.
        assert_eq!(l.pick(&d, ip(1), 1), Some(0));
    }

    #[test]
    fn lblcr_grows_the_set_then_shrinks_it() {
        let mut d = vec![dest(1), dest(1), dest(1)];
        let mut l = Locality::new(true, &d);
        assert_eq!(l.pick(&d, ip(9), 0), Some(0));
        d[0].active = 4;
        l.refresh(&d, 0);
        // Member 0 is overloaded: a second member joins.
        assert_eq!(l.pick(&d, ip(9), 1), Some(1));
        d[1].active = 1;
        l.refresh(&d, 1);
        // The least loaded member of the set serves.
        assert_eq!(l.pick(&d, ip(9), 2), Some(1));
        // After the expiration without changes the busiest member leaves.
        d[0].active = 0;
        l.refresh(&d, 0);
        d[1].active = 3;
        l.refresh(&d, 1);
        assert_eq!(l.pick(&d, ip(9), EXPIRATION + 1), Some(0));
    }

    #[test]
    fn unused_entries_expire() {
        let d = vec![dest(1), dest(1)];
        let mut l = Locality::new(false, &d);
        for n in 0..10 {
            l.pick(&d, ip(n), 0);
        }
        l.pick(&d, ip(0), EXPIRATION / 2);
        assert_eq!(l.entries(), 10);
        l.pick(&d, ip(100), EXPIRATION + 1);
        assert_eq!(l.entries(), 2, "ip(0) was used recently, ip(100) is new");
        l.forget(0);
        l.forget(1);
        assert_eq!(l.entries(), 0);
    }
}
