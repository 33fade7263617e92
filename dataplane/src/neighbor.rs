//! The neighbor (ARP) cache of one worker.
//!
//! Only addresses the configuration needs (real servers) are resolved and
//! learned, so stray ARP traffic cannot fill the table. A resolved entry is
//! used until `expire`; after `refresh` it is re-requested in the background,
//! so a live server's entry never lapses while traffic flows.

use crate::config::ArpTimers;
use core::net::Ipv4Addr;
use hashbrown::HashMap;
use proto::MacAddr;

const SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone)]
struct Entry {
    /// Port the address is reached through.
    port: u16,
    mac: Option<MacAddr>,
    confirmed_at: u64,
    /// When the last request went out; `None` = never.
    requested_at: Option<u64>,
}

#[derive(Debug)]
pub struct NeighborTable {
    entries: HashMap<Ipv4Addr, Entry>,
    timers: ArpTimers,
}

impl NeighborTable {
    /// `wanted`: the addresses to resolve and the port each is reached through.
    pub fn new(wanted: impl IntoIterator<Item = (Ipv4Addr, u16)>, timers: ArpTimers) -> Self {
        let entries = wanted
            .into_iter()
            .map(|(ip, port)| (ip, Entry { port, mac: None, confirmed_at: 0, requested_at: None }))
            .collect();
        NeighborTable { entries, timers }
    }

    /// The MAC for `ip` if it is resolved and not expired.
    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr, now: u64) -> Option<MacAddr> {
        let e = self.entries.get(&ip)?;
        let mac = e.mac?;
        (now.saturating_sub(e.confirmed_at) < self.timers.expire * SEC).then_some(mac)
    }

    /// Records that `ip` is at `mac`; ignored unless `ip` is wanted.
    /// Returns whether anything was learned.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, now: u64) -> bool {
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return false;
        }
        match self.entries.get_mut(&ip) {
            Some(e) => {
                e.mac = Some(mac);
                e.confirmed_at = now;
                true
            }
            None => false,
        }
    }

    /// Forgets the request time of `ip` so the next [`Self::due_requests`]
    /// asks again at once (after a packet found it unresolved).
    pub fn request_soon(&mut self, ip: Ipv4Addr, now: u64) {
        if let Some(e) = self.entries.get_mut(&ip) {
            if e.requested_at.is_some_and(|t| now.saturating_sub(t) >= self.timers.retry * SEC) {
                e.requested_at = None;
            }
        }
    }

    /// Calls `send(port, ip)` for every address that needs an ARP request
    /// now (unresolved, or resolved but older than `refresh`), at most once
    /// per `retry` interval each.
    pub fn due_requests(&mut self, now: u64, mut send: impl FnMut(u16, Ipv4Addr) -> bool) {
        let t = self.timers;
        for (ip, e) in self.entries.iter_mut() {
            let fresh = e.mac.is_some() && now.saturating_sub(e.confirmed_at) < t.refresh * SEC;
            let recently_asked = e.requested_at.is_some_and(|r| now.saturating_sub(r) < t.retry * SEC);
            if fresh || recently_asked {
                continue;
            }
            if send(e.port, *ip) {
                e.requested_at = Some(now);
            }
            if e.mac.is_some() && now.saturating_sub(e.confirmed_at) >= t.expire * SEC {
                e.mac = None;
            }
        }
    }

    /// (address, MAC if resolved) for display.
    pub fn entries(&self) -> impl Iterator<Item = (Ipv4Addr, Option<MacAddr>)> + '_ {
        self.entries.iter().map(|(ip, e)| (*ip, e.mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 11]);

    fn table() -> NeighborTable {
        NeighborTable::new([(RS, 0)], ArpTimers { refresh: 30, expire: 90, retry: 1 })
    }

    fn due(t: &mut NeighborTable, now: u64) -> Vec<(u16, Ipv4Addr)> {
        let mut v = Vec::new();
        t.due_requests(now, |p, ip| {
            v.push((p, ip));
            true
        });
        v
    }

    #[test]
    fn requests_until_resolved_then_refreshes_then_expires() {
        let mut t = table();
        assert_eq!(due(&mut t, 0), [(0, RS)]);
        assert!(due(&mut t, SEC / 2).is_empty(), "retry spacing");
        assert_eq!(due(&mut t, SEC), [(0, RS)]);
        assert!(t.learn(RS, MAC, SEC + 1));
        assert_eq!(t.lookup(RS, SEC + 2), Some(MAC));
        assert!(due(&mut t, 10 * SEC).is_empty(), "fresh entry");
        // Past refresh: asked again, still usable.
        assert_eq!(due(&mut t, 32 * SEC), [(0, RS)]);
        assert_eq!(t.lookup(RS, 32 * SEC), Some(MAC));
        // Past expire without confirmation: unusable.
        assert_eq!(t.lookup(RS, 92 * SEC), None);
    }

    #[test]
    fn learns_only_wanted_unicast_addresses() {
        let mut t = table();
        assert!(!t.learn(Ipv4Addr::new(198, 18, 0, 99), MAC, 0));
        assert!(!t.learn(RS, MacAddr::BROADCAST, 0));
        assert!(!t.learn(RS, MacAddr::ZERO, 0));
        assert_eq!(t.lookup(RS, 0), None);
        assert_eq!(t.entries().count(), 1);
    }

    #[test]
    fn request_soon_skips_the_wait_only_after_retry() {
        let mut t = table();
        assert_eq!(due(&mut t, 0).len(), 1);
        t.request_soon(RS, SEC / 10);
        assert!(due(&mut t, SEC / 10).is_empty());
        t.request_soon(RS, 2 * SEC);
        assert_eq!(due(&mut t, 2 * SEC).len(), 1);
    }
}
