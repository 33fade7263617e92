//! Persistence: connections from one client (or one client network, by
//! netmask) go to the same server for `timeout` seconds after its last
//! connection ends, through a template per client, as IPVS's persistent
//! services do (`ipvsadm -p TIMEOUT -M NETMASK`).

use crate::dest::DestState;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::{HashMap, VecDeque};

const NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistenceConfig {
    /// Seconds a template outlives its last connection.
    pub timeout: u64,
    /// IPv4 client granularity (`-M 255.255.255.0` groups a /24).
    pub netmask_v4: Ipv4Addr,
    /// IPv6 client granularity as a prefix length.
    pub prefix_v6: u8,
    /// `expire_quiescent_template`: a template whose server became
    /// quiescent (weight 0) is dropped at the next connection, which is
    /// then scheduled anew. Off: the client stays on the quiescent server.
    pub expire_quiescent: bool,
}

impl PersistenceConfig {
    pub fn new(timeout: u64) -> Self {
        PersistenceConfig { timeout, netmask_v4: Ipv4Addr::BROADCAST, prefix_v6: 128, expire_quiescent: false }
    }
}

#[derive(Debug, Clone, Copy)]
struct Template {
    dest: u32,
    expires: u64,
    /// Open connections scheduled through this template; it cannot expire
    /// while any remain.
    controlled: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Persistence {
    cfg: PersistenceConfig,
    table: HashMap<IpAddr, Template>,
    /// (client, expiry when queued), oldest first: amortized O(1) expiry.
    queue: VecDeque<(IpAddr, u64)>,
}

impl Persistence {
    pub(crate) fn new(cfg: PersistenceConfig) -> Self {
        Persistence { cfg, table: HashMap::new(), queue: VecDeque::new() }
    }

    pub(crate) fn config(&self) -> PersistenceConfig {
        self.cfg
    }

    pub(crate) fn key(&self, client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(self.cfg.netmask_v4))),
            IpAddr::V6(a) => {
                let p = u32::from(self.cfg.prefix_v6.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(client, at)) = self.queue.front() {
            if at > now {
                break;
            }
            self.queue.pop_front();
            if let Some(t) = self.table.get(&client) {
                if t.controlled == 0 && t.expires <= now {
                    self.table.remove(&client);
                } else {
                    let next = t.expires.max(now + self.cfg.timeout * NS);
                    self.queue.push_back((client, next));
                }
            }
        }
    }

    /// The server this client is bound to, if its template is alive and
    /// the server may still take it.
    pub(crate) fn lookup(&mut self, client: IpAddr, dests: &[DestState], now: u64) -> Option<usize> {
        self.expire(now);
        let key = self.key(client);
        let t = *self.table.get(&key)?;
        let d = &dests[t.dest as usize];
        let usable = !d.removed && d.available && !(self.cfg.expire_quiescent && d.weight() == 0);
        if !usable {
            if t.controlled == 0 {
                self.table.remove(&key);
            }
            return None;
        }
        Some(t.dest as usize)
    }

    /// A connection from `client` was opened on `dest`.
    pub(crate) fn bind(&mut self, client: IpAddr, dest: usize, now: u64) {
        let key = self.key(client);
        let expires = now + self.cfg.timeout * NS;
        match self.table.get_mut(&key) {
            Some(t) if t.dest as usize == dest => {
                t.controlled += 1;
                t.expires = t.expires.max(expires);
            }
            _ => {
                self.table.insert(key, Template { dest: dest as u32, expires, controlled: 1 });
                self.queue.push_back((key, expires));
            }
        }
    }

    /// A connection from `client` on `dest` ended.
    pub(crate) fn release(&mut self, client: IpAddr, dest: usize, now: u64) {
        let key = self.key(client);
        if let Some(t) = self.table.get_mut(&key) {
            if t.dest as usize == dest {
                t.controlled = t.controlled.saturating_sub(1);
                t.expires = t.expires.max(now + self.cfg.timeout * NS);
            }
        }
    }

    pub(crate) fn templates(&self) -> usize {
        self.table.len()
    }
}
