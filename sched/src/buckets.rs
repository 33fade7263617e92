//! dh (destination hashing) and sh (source hashing): a table of buckets,
//! each naming a server, indexed by a hash of one address of the packet.
//!
//! The assignment and the hash are IPVS's (`ip_vs_dh.c`, `ip_vs_sh.c`):
//! dh gives every server one bucket per round; sh gives each server
//! `weight` consecutive buckets per round (at least one); both cycle through
//! the server list until the table is full. IPVS's table has 256 buckets,
//! which cannot spread load over more than 256 servers; RVS uses 256 while
//! the servers (dh) or the weights (sh) fit, and otherwise the next power of
//! two that holds them all (weights scaled down past 2^18 buckets).

use crate::dest::DestState;
use crate::hash::{fold, hash_32};
use core::net::IpAddr;

const IPVS_BITS: u32 = 8;
const MAX_BITS: u32 = 18;
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dh,
    Sh,
}

#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    kind: Kind,
    bits: u32,
    table: Vec<u32>,
    /// sh-port: hash the source port too.
    pub(crate) with_port: bool,
    /// sh-fallback: walk on to the next bucket's server when the first is
    /// unavailable.
    pub(crate) fallback: bool,
}

impl Buckets {
    pub(crate) fn new(kind: Kind, dests: &[DestState], with_port: bool, fallback: bool) -> Self {
        let mut b = Buckets { kind, bits: IPVS_BITS, table: Vec::new(), with_port, fallback };
        b.rebuild(dests);
        b
    }

    /// Reassigns every bucket (IPVS does so on any change to the list).
    pub(crate) fn rebuild(&mut self, dests: &[DestState]) {
        let live: Vec<usize> = (0..dests.len()).filter(|&i| !dests[i].removed).collect();
        let turns = |i: usize| -> u64 {
            match self.kind {
                Kind::Dh => 1,
                Kind::Sh => u64::from(dests[i].weight().max(1)),
            }
        };
        let need: u64 = live.iter().map(|&i| turns(i)).sum();
        let mut bits = IPVS_BITS;
        while (1u64 << bits) < need && bits < MAX_BITS {
            bits += 1;
        }
        let size = 1usize << bits;
        // Past the largest table, scale the turns so every server keeps a share.
        let scale = |t: u64| -> u64 {
            if need <= size as u64 {
                t
            } else {
                (t * size as u64 / need).max(1)
            }
        };
        self.bits = bits;
        self.table.clear();
        self.table.resize(size, NONE);
        if live.is_empty() {
            return;
        }
        let (mut k, mut count) = (0usize, 0u64);
        for slot in self.table.iter_mut() {
            let i = live[k];
            *slot = i as u32;
            count += 1;
            if count >= scale(turns(i)) {
                k = (k + 1) % live.len();
                count = 0;
            }
        }
    }

    #[inline]
    fn key(&self, addr: IpAddr, port: u16, offset: u32) -> usize {
        let port = if self.with_port { u32::from(port) } else { 0 };
        let mask = (1u32 << self.bits) - 1;
        let h = match self.kind {
            // ip_vs_dh_hashkey: (addr * 2654435761) & mask
            Kind::Dh => fold(addr).wrapping_mul(2_654_435_761),
            // ip_vs_sh_hashkey: (offset + hash_32(port + addr, bits)) & mask
            Kind::Sh => offset.wrapping_add(hash_32(port.wrapping_add(fold(addr)), self.bits)),
        };
        (h & mask) as usize
    }

    /// The server for `addr` (the destination for dh, the source for sh).
    #[inline]
    pub(crate) fn pick(&self, dests: &[DestState], addr: IpAddr, port: u16) -> Option<usize> {
        let first = self.table[self.key(addr, port, 0)];
        if first == NONE {
            return None;
        }
        if dests[first as usize].eligible() {
            return Some(first as usize);
        }
        if self.kind == Kind::Dh || !self.fallback {
            return None;
        }
        // ip_vs_sh_get_fallback: rehash with growing offsets from the first bucket.
        let ihash = self.key(addr, port, 0) as u32;
        let size = self.table.len() as u32;
        for offset in 0..size {
            let roffset = (offset + ihash) % size;
            let d = self.table[self.key(addr, port, roffset)];
            if d == NONE {
                return None;
            }
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
    use crate::tests::dest;
    use core::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 + n))
    }

    #[test]
    fn ipvs_bucket_assignment() {
        let d = [dest(1), dest(2), dest(0)];
        let dh = Buckets::new(Kind::Dh, &d, false, false);
        assert_eq!(&dh.table()[..6], &[0, 1, 2, 0, 1, 2]);
        let sh = Buckets::new(Kind::Sh, &d, false, false);
        // weight 1: one bucket; weight 2: two; weight 0: still one.
        assert_eq!(&sh.table()[..8], &[0, 1, 1, 2, 0, 1, 1, 2]);
        assert_eq!(sh.table().len(), 256);
    }

    #[test]
    fn sh_shares_follow_weights_and_are_stable() {
        let d = [dest(1), dest(3)];
        let sh = Buckets::new(Kind::Sh, &d, false, false);
        let mut counts = [0; 2];
        for n in 0..4000 {
            counts[sh.pick(&d, ip(n), 0).unwrap()] += 1;
            assert_eq!(sh.pick(&d, ip(n), 0), sh.pick(&d, ip(n), 0));
        }
        assert!(counts[1] > 2 * counts[0], "{counts:?}");
    }

    #[test]
    fn unavailable_server_without_and_with_fallback() {
        let mut d = [dest(1), dest(1), dest(1)];
        let sh = Buckets::new(Kind::Sh, &d, false, false);
        let victim = (0..100).find(|&n| sh.pick(&d, ip(n), 0) == Some(1)).unwrap();
        d[1].available = false;
        assert_eq!(sh.pick(&d, ip(victim), 0), None);
        let shf = Buckets::new(Kind::Sh, &d, false, true);
        let other = shf.pick(&d, ip(victim), 0).unwrap();
        assert_ne!(other, 1);
        // Flows of healthy servers do not move.
        for n in 0..500 {
            if let Some(p) = sh.pick(&d, ip(n), 0) {
                assert_eq!(shf.pick(&d, ip(n), 0), Some(p));
            }
        }
        let dh = Buckets::new(Kind::Dh, &d, false, true);
        let v = (0..100).find(|&n| dh.table()[dh.key(ip(n), 0, 0)] == 1).unwrap();
        assert_eq!(dh.pick(&d, ip(v), 0), None, "dh has no fallback");
    }

    #[test]
    fn sh_port_spreads_one_client_over_servers() {
        let d = [dest(1), dest(1), dest(1), dest(1)];
        let plain = Buckets::new(Kind::Sh, &d, false, false);
        let port = Buckets::new(Kind::Sh, &d, true, false);
        let by_addr: std::collections::HashSet<_> = (1000..1100).map(|p| plain.pick(&d, ip(7), p)).collect();
        let by_port: std::collections::HashSet<_> = (1000..1100).map(|p| port.pick(&d, ip(7), p)).collect();
        assert_eq!(by_addr.len(), 1);
        assert_eq!(by_port.len(), 4);
    }

    #[test]
    fn large_pools_get_larger_tables() {
        let d: Vec<_> = (0..10_000).map(|_| dest(1)).collect();
        let dh = Buckets::new(Kind::Dh, &d, false, false);
        assert_eq!(dh.table().len(), 16384);
        let used: std::collections::HashSet<_> = dh.table().iter().collect();
        assert_eq!(used.len(), 10_000, "every server owns a bucket");
        let heavy: Vec<_> = (0..10_000).map(|_| dest(100)).collect();
        let sh = Buckets::new(Kind::Sh, &heavy, false, false);
        assert_eq!(sh.table().len(), 1 << 18);
        let used: std::collections::HashSet<_> = sh.table().iter().collect();
        assert_eq!(used.len(), 10_000, "scaled weights keep every server in");
    }
}
