//! FullNAT local ports. Each worker core owns the ports `p` with
//! `p % cores == core` on every local address, so the destination port of
//! a real server's reply names the core that owns the connection, and no
//! two cores ever pick the same (address, port). Each core keeps a free
//! list per address: taking and returning a port is O(1), no retry loop.

use core::net::Ipv4Addr;

/// The lowest local port used (below are the well-known ports).
pub const FIRST_PORT: u16 = 1024;

#[derive(Debug, Clone)]
pub struct LocalPorts {
    addrs: Vec<Ipv4Addr>,
    free: Vec<Vec<u16>>,
    /// Next address to take a port from (round robin).
    next: usize,
}

impl LocalPorts {
    /// Ports of `core` (of `cores`) on each of `addrs`.
    pub fn new(addrs: &[Ipv4Addr], core: u32, cores: u32) -> Self {
        let cores = cores.max(1);
        let mine: Vec<u16> = (FIRST_PORT..=u16::MAX).rev().filter(|p| u32::from(*p) % cores == core % cores).collect();
        LocalPorts { addrs: addrs.to_vec(), free: addrs.iter().map(|_| mine.clone()).collect(), next: 0 }
    }

    /// Which core owns local port `port`.
    pub fn owner(port: u16, cores: u32) -> u32 {
        u32::from(port) % cores.max(1)
    }

    /// A free (address, port), or `None` when every address is exhausted.
    pub fn take(&mut self) -> Option<(Ipv4Addr, u16)> {
        let n = self.addrs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(p) = self.free[i].pop() {
                self.next = (i + 1) % n;
                return Some((self.addrs[i], p));
            }
        }
        None
    }

    /// Returns a port taken earlier.
    pub fn give_back(&mut self, (addr, port): (Ipv4Addr, u16)) {
        if let Some(i) = self.addrs.iter().position(|a| *a == addr) {
            self.free[i].push(port);
        }
    }

    pub fn available(&self) -> usize {
        self.free.iter().map(Vec::len).sum()
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

    #[test]
    fn exhaustion_and_reuse() {
        let mut c = LocalPorts::new(&[A], 0, 16384);
        let all: Vec<_> = std::iter::from_fn(|| c.take()).collect();
        assert_eq!(all.len(), 3, "16384, 32768 and 49152");
        assert_eq!(c.take(), None);
        c.give_back(all[0]);
        assert_eq!(c.take(), Some(all[0]));
    }
}
