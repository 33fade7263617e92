//! FullNAT local ports. Each worker core owns the ports `p` with
//! `p % cores == core` on every local address, so the destination port of
//! a real server's reply names the core that owns the connection, and no
//! two cores ever pick the same (address, port). Each core counts out its
//! never-used ports and keeps a queue of returned ones per address: taking
//! and returning a port is O(1), no retry loop.
//!
//! Ports are reused in FIFO order, and each start begins at a random place
//! in the range. A real server keeps a closed connection in TIME_WAIT for
//! 60 s; a SYN from the same (local address, port) during that time may be
//! answered with an ACK instead of a SYN-ACK, costing the client a
//! retransmission (1 s). Reusing the port returned longest ago, and not
//! replaying the previous run's ports after a restart, keeps that rare
//! while the port space lasts. Measured: a restart that replayed the same
//! ports cut the connection rate by 40% (bench/RESULTS.md).

use core::net::Ipv4Addr;
use std::collections::VecDeque;

/// The lowest local port used (below are the well-known ports).
pub const FIRST_PORT: u16 = 1024;

#[derive(Debug, Clone)]
pub struct LocalPorts {
    addrs: Vec<LocalAddr>,
    /// The core's ports are `first`, `first + step`, ... (`count` of
    /// them); never-used ones are handed out from the `start`-th on,
    /// wrapping round, before any returned one.
    first: u32,
    step: u32,
    count: u32,
    start: u32,
    /// Next address to take a port from (round robin).
    next: usize,
}

/// One local address's ports on this core. Counted out lazily like this,
/// a FullNAT service costs its core a few words per address, not a queue
/// of every port (128 KiB each, built at every start and reload).
#[derive(Debug, Clone)]
struct LocalAddr {
    addr: Ipv4Addr,
    /// How many never-used ports have been handed out.
    fresh_taken: u32,
    /// The returned ports, the longest-free first.
    returned: VecDeque<u16>,
}

impl LocalPorts {
    /// Ports of `core` (of `cores`) on each of `addrs`, starting at a
    /// random place.
    pub fn new(addrs: &[Ipv4Addr], core: u32, cores: u32) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self::starting_at(addrs, core, cores, random)
    }

    /// As [`Self::new`], the first port taken being the `start`-th (modulo
    /// their number) of the core's ports.
    pub fn starting_at(addrs: &[Ipv4Addr], core: u32, cores: u32, start: u64) -> Self {
        let step = cores.max(1);
        // The first port `p` from FIRST_PORT on with `p % cores == core % cores`.
        let first = u32::from(FIRST_PORT) + (core % step + step - u32::from(FIRST_PORT) % step) % step;
        let count = if first > u32::from(u16::MAX) { 0 } else { (u32::from(u16::MAX) - first) / step + 1 };
        let start = if count == 0 { 0 } else { (start % u64::from(count)) as u32 };
        let addrs = addrs.iter().map(|&addr| LocalAddr { addr, fresh_taken: 0, returned: VecDeque::new() }).collect();
        LocalPorts { addrs, first, step, count, start, next: 0 }
    }

    /// Which core owns local port `port`.
    pub fn owner(port: u16, cores: u32) -> u32 {
        u32::from(port) % cores.max(1)
    }

    /// A free port on address `i`: a never-used one while there are any,
    /// else the one returned longest ago.
    fn take_on(&mut self, i: usize) -> Option<u16> {
        let a = &mut self.addrs[i];
        if a.fresh_taken < self.count {
            // Both below `count`: one subtraction wraps, no division.
            let k = self.start + a.fresh_taken;
            let k = if k >= self.count { k - self.count } else { k };
            a.fresh_taken += 1;
            return Some((self.first + k * self.step) as u16);
        }
        a.returned.pop_front()
    }

    /// A free (address, port), or `None` when every address is exhausted.
    pub fn take(&mut self) -> Option<(Ipv4Addr, u16)> {
        let n = self.addrs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(p) = self.take_on(i) {
                self.next = (i + 1) % n;
                return Some((self.addrs[i].addr, p));
            }
        }
        None
    }

    /// Returns a port taken earlier.
    pub fn give_back(&mut self, (addr, port): (Ipv4Addr, u16)) {
        if let Some(a) = self.addrs.iter_mut().find(|a| a.addr == addr) {
            a.returned.push_back(port);
        }
    }

    pub fn available(&self) -> usize {
        self.addrs.iter().map(|a| (self.count - a.fresh_taken) as usize + a.returned.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);

    #[test]
    fn cores_own_disjoint_ports_and_addresses_alternate() {
        let mut c0 = LocalPorts::new(&[A, B], 0, 2);
        let mut c1 = LocalPorts::new(&[A, B], 1, 2);
        let (a0, p0) = c0.take().unwrap();
        let (b0, _) = c0.take().unwrap();
        assert_eq!((a0, b0), (A, B), "round robin over local addresses");
        let (_, p1) = c1.take().unwrap();
        assert_eq!((LocalPorts::owner(p0, 2), LocalPorts::owner(p1, 2)), (0, 1));
        assert!(p0 >= FIRST_PORT);
        assert_eq!(c0.available() + 2, 2 * (65536 - 1024) / 2);
    }

    /// Each core owns exactly the ports from FIRST_PORT up that are its
    /// number modulo the cores (counted out without testing every port).
    #[test]
    fn each_core_owns_the_ports_of_its_residue() {
        for cores in [1u32, 2, 3, 7, 16384, 70_000] {
            for core in [0, 1, 2, cores - 1, cores + 1] {
                let mut c = LocalPorts::starting_at(&[A], core, cores, 0);
                let mut got: Vec<u16> = std::iter::from_fn(|| c.take()).map(|(_, p)| p).collect();
                got.sort_unstable();
                let want: Vec<u16> = (FIRST_PORT..=u16::MAX).filter(|&p| u32::from(p) % cores == core % cores).collect();
                assert_eq!(got, want, "core {core} of {cores}");
            }
        }
    }

    #[test]
    fn exhaustion_and_reuse() {
        let mut c = LocalPorts::new(&[A], 0, 16384);
        let all: Vec<_> = std::iter::from_fn(|| c.take()).collect();
        assert_eq!(all.len(), 3, "16384, 32768 and 49152");
        assert_eq!(c.take(), None);
        c.give_back(all[0]);
        assert_eq!(c.take(), Some(all[0]));
    }

    #[test]
    fn reuses_the_port_freed_longest_ago() {
        let mut c = LocalPorts::starting_at(&[A], 0, 1, 0);
        let first = c.take().unwrap();
        assert_eq!(first, (A, FIRST_PORT));
        let second = c.take().unwrap();
        c.give_back(second);
        c.give_back(first);
        // Every never-used port comes before the returned ones, which come
        // back in the order they were returned.
        let rest: Vec<_> = std::iter::from_fn(|| c.take()).collect();
        assert_eq!(rest.len(), 65536 - 1024);
        assert_eq!(rest[rest.len() - 2..], [second, first]);
    }

    #[test]
    fn starts_at_the_given_place_and_wraps() {
        let mut c = LocalPorts::starting_at(&[A], 1, 2, 3);
        // Core 1 of 2 owns the odd ports: 1025, 1027, 1029, 1031, ...
        assert_eq!(c.take(), Some((A, 1031)));
        let all: Vec<_> = std::iter::from_fn(|| c.take()).collect();
        assert_eq!(all.last(), Some(&(A, 1029)), "wrapped round to the ports before the start");
        // Starts differ from run to run.
        let starts: std::collections::HashSet<_> = (0..8).map(|_| LocalPorts::new(&[A], 0, 1).take()).collect();
        assert!(starts.len() > 1, "{starts:?}");
    }
}
