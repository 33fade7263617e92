//! mh: Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted.
//!
//! Every server has a permutation of the table's M slots, from a hash of
//! its address and port: `h = fnv1a64(addr16 || port_be)`,
//! `offset = mix64(h ^ OFFSET_SEED) mod M`,
//! `skip = mix64(h ^ SKIP_SEED) mod (M - 1) + 1` (see [`crate::hash`]).
//! Servers take turns claiming their next free preferred slot until the
//! table is full; a server of weight w takes w/g turns per round (g = gcd of
//! the weights), scaled down if a round would exceed M/100 turns, so there
//! are at least 100 rounds and every share is within about 1% of its
//! weight. M is a prime, by default the smallest one at least 100 x the
//! larger of the number of servers and the turns per round (capped at
//! 65536), so with equal weights every server's share is within 1% of the
//! others'.
//! The same servers give the same table on every node and build.
//!
//! A flow's slot is `mix64(fold(src) << 16 | port ^ FLOW_SEED) mod M` (port
//! only with mh-port). With mh-fallback an unavailable server's flows are
//! rehashed with growing offsets, as IPVS does; without it they get no server.

use crate::dest::DestState;
use crate::hash::{endpoint_bytes, fnv1a64, fold, mix64};
use core::net::IpAddr;

const NONE: u32 = u32::MAX;
const OFFSET_SEED: u64 = 0x6d68_5f6f_6666_7365; // "mh_offse"
const SKIP_SEED: u64 = 0x6d68_5f73_6b69_7070; // "mh_skipp"
const FLOW_SEED: u64 = 0x6d68_5f66_6c6f_7773; // "mh_flows"
const MIN_SIZE: u32 = 251;

pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

fn next_prime(mut n: u32) -> u32 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Maglev {
    /// A fixed prime size from the configuration, or `None` for 100 x N.
    configured: Option<u32>,
    table: Vec<u32>,
    pub(crate) with_port: bool,
    pub(crate) fallback: bool,
}

impl Maglev {
    pub(crate) fn new(dests: &[DestState], configured: Option<u32>, with_port: bool, fallback: bool) -> Self {
        let mut m = Maglev { configured, table: Vec::new(), with_port, fallback };
        m.rebuild(dests);
        m
    }

    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.table.len()
    }

    /// Refills the table from the servers with a non-zero weight. Health
    /// and thresholds do not enter the table, so a server that comes back
    /// gets exactly its old flows back.
    pub(crate) fn rebuild(&mut self, dests: &[DestState]) {
        let live: Vec<usize> = (0..dests.len()).filter(|&i| dests[i].weight() > 0).collect();
        let g = live.iter().fold(0, |g, &i| gcd(g, u64::from(dests[i].weight()))).max(1);
        let mut turns: Vec<u64> = live.iter().map(|&i| u64::from(dests[i].weight()) / g).collect();
        let round: u64 = turns.iter().sum();
        let units = (live.len() as u64).max(round.min(65536));
        let m = self.configured.unwrap_or_else(|| next_prime(((100 * units) as u32).max(MIN_SIZE)));
        self.table.clear();
        self.table.resize(m as usize, NONE);
        if live.is_empty() {
            return;
        }
        let m64 = u64::from(m);
        let cap = (m64 / 100).max(live.len() as u64);
        if round > cap {
            for t in &mut turns {
                *t = (*t * cap / round).max(1);
            }
        }
        // Position in each server's permutation, and its step.
        let mut pos = Vec::with_capacity(live.len());
        let mut skip = Vec::with_capacity(live.len());
        for &i in &live {
            let c = &dests[i].config;
            let h = fnv1a64(&endpoint_bytes(c.addr, c.port));
            pos.push(mix64(h ^ OFFSET_SEED) % m64);
            skip.push(mix64(h ^ SKIP_SEED) % (m64 - 1) + 1);
        }
        let mut filled = 0u64;
        loop {
            for k in 0..live.len() {
                for _ in 0..turns[k] {
                    // m is prime and skip < m, so the walk visits every slot.
                    while self.table[pos[k] as usize] != NONE {
                        pos[k] = (pos[k] + skip[k]) % m64;
                    }
                    self.table[pos[k] as usize] = live[k] as u32;
                    filled += 1;
                    if filled == m64 {
                        return;
                    }
                }
            }
        }
    }

    #[inline]
    fn slot(&self, addr: IpAddr, port: u16, offset: u64) -> usize {
        let port = if self.with_port { u64::from(port) } else { 0 };
        let key = (u64::from(fold(addr)) << 16) | port;
        (mix64(key ^ FLOW_SEED ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % self.table.len() as u64) as usize
    }

    /// The server for a flow from `addr`:`port`.
    #[inline]
    pub(crate) fn pick(&self, dests: &[DestState], addr: IpAddr, port: u16) -> Option<usize> {
        let first = *self.table.get(self.slot(addr, port, 0))?;
        if first == NONE {
            return None;
        }
        if dests[first as usize].eligible() {
            return Some(first as usize);
        }
        if !self.fallback {
            return None;
        }
        for offset in 1..self.table.len() as u64 {
            let d = self.table[self.slot(addr, port, offset)];
            if dests[d as usize].eligible() {
                return Some(d as usize);
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn table(&self) -> &[u32] {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::{DestConfig, DestState};
    use core::net::Ipv4Addr;

    fn servers(n: u32, weight: u32) -> Vec<DestState> {
        (0..n).map(|k| DestState::new(DestConfig::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k)), 80, weight))).collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &d in table {
            c[d as usize] += 1;
        }
        c
    }

    #[test]
    fn size_is_a_prime_at_least_100_n() {
        assert_eq!(Maglev::new(&servers(1, 1), None, false, false).size(), 251);
        let m = Maglev::new(&servers(10, 1), None, false, false);
        assert_eq!(m.size(), 1009);
        assert!(is_prime(1009) && !is_prime(1001) && !is_prime(1));
        assert_eq!(Maglev::new(&servers(10, 1), Some(65521), false, false).size(), 65521);
    }

    #[test]
    fn equal_weights_balance_within_one_percent() {
        for n in [3u32, 10, 57, 100] {
            let m = Maglev::new(&servers(n, 1), None, false, false);
            let c = shares(m.table(), n as usize);
            let (min, max) = (*c.iter().min().unwrap(), *c.iter().max().unwrap());
            assert!(max as f64 / min as f64 <= 1.01, "n={n}: min {min} max {max}");
        }
    }

    #[test]
    fn weights_set_shares() {
        let mut d = servers(3, 1);
        d[1].config.weight = 2;
        d[2].config.weight = 3;
        let m = Maglev::new(&d, None, false, false);
        let c = shares(m.table(), 3);
        let total = m.size() as f64;
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            assert!((c[i] as f64 / total - want).abs() < 0.01, "{c:?}");
        }
    }

    #[test]
    fn the_table_is_pinned_across_builds() {
        // Any change to the hash or the fill order changes every node's
        // table: this fingerprint must only change on purpose. The values
        // were reproduced by an independent Python implementation of the
        // algorithm as the module documentation states it.
        let m = Maglev::new(&servers(5, 1), None, false, false);
        assert_eq!(m.size(), 503);
        let fp = m.table().iter().fold(0u64, |h, &d| mix64(h ^ u64::from(d)));
        assert_eq!(&m.table()[..12], &PINNED_PREFIX);
        assert_eq!(fp, PINNED_FINGERPRINT);
    }

    const PINNED_PREFIX: [u32; 12] = [1, 1, 0, 4, 4, 2, 4, 1, 2, 3, 0, 2];
    const PINNED_FINGERPRINT: u64 = 2_015_852_609_480_798_575;

    #[test]
    fn removing_one_server_moves_little_else() {
        let n = 100;
        let d = servers(n, 1);
        let before = Maglev::new(&d, Some(10007), false, false);
        let mut d2 = d.clone();
        d2[37].removed = true;
        let after = Maglev::new(&d2, Some(10007), false, false);
        let mut moved_needlessly = 0;
        for (b, a) in before.table().iter().zip(after.table()) {
            if *b != 37 && b != a {
                moved_needlessly += 1;
            }
        }
        let share = moved_needlessly as f64 / before.size() as f64;
        // The minimum is 0: only the removed server's ~1% must move.
        assert!(share < 0.02, "{moved_needlessly} slots of healthy servers moved ({share:.4})");
        assert!(!after.table().contains(&37));
    }

    #[test]
    fn unavailable_server_with_and_without_fallback() {
        let mut d = servers(4, 1);
        let plain = Maglev::new(&d, None, false, false);
        let fb = Maglev::new(&d, None, false, true);
        let ip = |n: u32| IpAddr::V4(Ipv4Addr::from(0xc612_0000 + n));
        let victim = (0..1000).find(|&n| plain.pick(&d, ip(n), 0) == Some(2)).unwrap();
        d[2].available = false;
        assert_eq!(plain.pick(&d, ip(victim), 0), None);
        let moved = fb.pick(&d, ip(victim), 0).unwrap();
        assert_ne!(moved, 2);
        for n in 0..1000 {
            let p = Maglev::new(&servers(4, 1), None, false, false).pick(&servers(4, 1), ip(n), 0);
            if p != Some(2) {
                assert_eq!(fb.pick(&d, ip(n), 0), p, "healthy servers keep their flows");
            }
        }
        d.iter_mut().for_each(|x| x.available = false);
        assert_eq!(fb.pick(&d, ip(1), 0), None);
    }

    #[test]
    fn mh_port_spreads_one_client() {
        let d = servers(8, 1);
        let m = Maglev::new(&d, None, true, false);
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
        let picks: std::collections::HashSet<_> = (1000..1200).map(|p| m.pick(&d, ip, p)).collect();
        assert_eq!(picks.len(), 8);
        let m = Maglev::new(&d, None, false, false);
        let picks: std::collections::HashSet<_> = (1000..1200).map(|p| m.pick(&d, ip, p)).collect();
        assert_eq!(picks.len(), 1);
    }
}
