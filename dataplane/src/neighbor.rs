//! The neighbor (ARP) cache.
//!
//! Only addresses the configuration needs (real servers) are resolved and
//! learned, so stray ARP traffic cannot fill the table. A resolved entry is
//! used until `expire`; after `refresh` it is re-requested in the
//! background, so a live server's entry never lapses while traffic flows.
//!
//! The facts (MAC, when confirmed) live in [`SharedNeighbors`], one table
//! for all workers: an ARP reply reaches only the queue the device hashes
//! it to, but every worker needs the answer. Each slot is two `AtomicU64`s
//! written with plain stores (several workers storing the same fact is
//! harmless) and read with plain loads: no lock, no read-modify-write. When
//! to send requests stays per worker ([`NeighborTable`]). All workers must
//! pass times from the same clock ([`crate::clock`]).

use crate::config::ArpTimers;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use hashbrown::HashMap;
use proto::MacAddr;
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
/// Set in a slot's `mac` word when it holds a MAC.
const VALID: u64 = 1 << 63;
/// `confirmed_at` of a static entry: always fresh (ages saturate at 0).
/// Far in the future (about 146 years of uptime) rather than `u64::MAX`,
/// so that adding an expiry (at most a year, as the configuration bounds
/// it) cannot overflow: the packet path compares with a sum.
const STATIC: u64 = u64::MAX / 2;

#[derive(Debug, Default)]
struct Slot {
    /// VALID | 48-bit MAC, or 0.
    mac: AtomicU64,
    confirmed_at: AtomicU64,
}

/// The MAC in the word's low six bytes in memory order (so unpacking is
/// a plain store of them), and the valid bit at the top.
fn pack(mac: MacAddr) -> u64 {
    let b = mac.0;
    VALID | u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
}

fn unpack(word: u64) -> Option<MacAddr> {
    if word & VALID == 0 {
        return None;
    }
    let b = word.to_le_bytes();
    Some(MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]))
}

/// The resolved addresses, shared by every worker.
#[derive(Debug)]
pub struct SharedNeighbors {
    index: HashMap<Ipv4Addr, usize>,
    addrs: Vec<(Ipv4Addr, u16)>,
    slots: Vec<Slot>,
}

impl SharedNeighbors {
    /// `wanted`: the addresses to resolve and the port each is reached through.
    pub fn new(wanted: impl IntoIterator<Item = (Ipv4Addr, u16)>) -> Self {
        let mut index = HashMap::new();
        let mut addrs = Vec::new();
        for (ip, port) in wanted {
            if !index.contains_key(&ip) {
                index.insert(ip, addrs.len());
                addrs.push((ip, port));
            }
        }
        let slots = addrs.iter().map(|_| Slot::default()).collect();
        SharedNeighbors { index, addrs, slots }
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    fn get(&self, i: usize) -> (Option<MacAddr>, u64) {
        match self.slots.get(i) {
            Some(s) => (unpack(s.mac.load(Relaxed)), s.confirmed_at.load(Relaxed)),
            None => (None, 0),
        }
    }

    /// Pins `ip` to `mac` for good (a static entry from the configuration):
    /// never expires, never re-requested, not overwritten by ARP. Returns
    /// false when `ip` is not an address this table resolves.
    pub fn set_static(&self, ip: Ipv4Addr, mac: MacAddr) -> bool {
        let Some(&i) = self.index.get(&ip) else { return false };
        self.slots[i].confirmed_at.store(STATIC, Relaxed);
        self.slots[i].mac.store(pack(mac), Relaxed);
        true
    }

    /// A table for `wanted` that keeps what `old` learned about the
    /// addresses it also wants (a reload must not forget MACs in use).
    pub fn carry_over(old: &SharedNeighbors, wanted: impl IntoIterator<Item = (Ipv4Addr, u16)>) -> Self {
        let new = SharedNeighbors::new(wanted);
        for (ip, &i) in &new.index {
            if let Some(&j) = old.index.get(ip) {
                new.slots[i].confirmed_at.store(old.slots[j].confirmed_at.load(Relaxed), Relaxed);
                new.slots[i].mac.store(old.slots[j].mac.load(Relaxed), Relaxed);
            }
        }
        new
    }

    /// How many addresses currently have a MAC (expired or not).
    pub fn resolved(&self) -> usize {
        self.slots.iter().filter(|s| s.mac.load(Relaxed) & VALID != 0).count()
    }

    /// The addresses this table resolves, with their ports.
    pub fn wanted(&self) -> &[(Ipv4Addr, u16)] {
        &self.addrs
    }
}

/// What an operator is shown of one address (`rvsadm --neighbors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborState {
    /// Configured in `[[neighbors]]`.
    Static,
    /// Learned `age_s` seconds ago, still in use.
    Reachable { age_s: u64 },
    /// Learned, but older than `expire`: not used until ARP answers again.
    Expired { age_s: u64 },
    /// Never answered.
    Incomplete,
}

impl SharedNeighbors {
    /// Every wanted address: (address, port, MAC if any, state) at `now`.
    pub fn describe(&self, now: u64, timers: ArpTimers) -> Vec<(Ipv4Addr, u16, Option<MacAddr>, NeighborState)> {
        (0..self.addrs.len())
            .map(|i| {
                let (ip, port) = self.addrs[i];
                let (mac, confirmed) = self.get(i);
                let age_s = now.saturating_sub(confirmed) / SEC;
                let state = match mac {
                    None => NeighborState::Incomplete,
                    Some(_) if confirmed == STATIC => NeighborState::Static,
                    Some(_) if age_s < timers.expire => NeighborState::Reachable { age_s },
                    Some(_) => NeighborState::Expired { age_s },
                };
                (ip, port, mac, state)
            })
            .collect()
    }
}

/// One worker's view: the shared facts plus its own request timers.
#[derive(Debug)]
pub struct NeighborTable {
    shared: Arc<SharedNeighbors>,
    /// When this worker last asked for each slot; `None` = never.
    requested_at: Vec<Option<u64>>,
    timers: ArpTimers,
    /// `timers.expire` in nanoseconds (read per forwarded packet).
    expire_ns: u64,
    /// Before this time (ns) no address can need a request, so
    /// [`Self::due_requests`], called every poll, returns at once: a scan
    /// of every address each poll cost about 15 instructions per real
    /// server per poll (with a thousand servers, more than forwarding a
    /// burst). Another worker's ARP news only ever makes an address due
    /// later than this worker computed, never earlier; `request_soon`
    /// forgets only requests whose retry spacing is over, of addresses
    /// already due.
    next_scan: u64,
}

impl NeighborTable {
    pub fn new(shared: Arc<SharedNeighbors>, timers: ArpTimers) -> Self {
        NeighborTable { requested_at: vec![None; shared.len()], shared, timers, expire_ns: timers.expire * SEC, next_scan: 0 }
    }

    /// The MAC for `ip` if it is resolved and not expired.
    #[inline]
    pub fn lookup(&self, ip: Ipv4Addr, now: u64) -> Option<MacAddr> {
        self.resolve(ip, now).map(|(mac, _)| mac)
    }

    /// The MAC for `ip` and the port it is reached through.
    #[inline]
    pub fn resolve(&self, ip: Ipv4Addr, now: u64) -> Option<(MacAddr, u16)> {
        self.resolve_slot(self.slot_of(ip)?, now)
    }

    /// The slot of a wanted address: a stable index for [`Self::resolve_slot`],
    /// so the packet path indexes an array instead of hashing an address.
    pub fn slot_of(&self, ip: Ipv4Addr) -> Option<usize> {
        self.shared.index.get(&ip).copied()
    }

    /// As [`Self::resolve`], by slot.
    #[inline]
    pub fn resolve_slot(&self, i: usize, now: u64) -> Option<(MacAddr, u16)> {
        Some((self.mac_of_slot(i, now)?, self.port_of_slot(i)?))
    }

    /// The MAC of slot `i`, if known and not expired.
    #[inline]
    pub fn mac_of_slot(&self, i: usize, now: u64) -> Option<MacAddr> {
        self.mac_word_of_slot(i, now).and_then(unpack)
    }

    /// As [`Self::mac_of_slot`], the MAC as a word: its six bytes the
    /// word's low ones, little-endian (what
    /// `proto::rewrite::direct_route_ipv4` stores; the top two bytes are
    /// not the MAC's).
    #[inline]
    pub fn mac_word_of_slot(&self, i: usize, now: u64) -> Option<u64> {
        let s = self.shared.slots.get(i)?;
        let word = s.mac.load(Relaxed);
        // `now - confirmed < expire`, as a sum: an add where a saturating
        // subtract took three instructions (a time another core confirmed
        // after this one's `now` counts as fresh either way).
        (word & VALID != 0 && now < s.confirmed_at.load(Relaxed) + self.expire_ns).then_some(word)
    }

    /// The port slot `i`'s address is reached on (fixed for the slot).
    pub fn port_of_slot(&self, i: usize) -> Option<u16> {
        Some(self.shared.addrs.get(i)?.1)
    }

    /// Records that `ip` is at `mac`; ignored unless `ip` is wanted.
    /// Returns whether anything was learned.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, now: u64) -> bool {
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return false;
        }
        let Some(&i) = self.shared.index.get(&ip) else { return false };
        let slot = &self.shared.slots[i];
        if slot.confirmed_at.load(Relaxed) == STATIC {
            return false; // configured: ARP does not change it
        }
        // Time first: a reader that sees the new MAC also sees a fresh time
        // or, at worst, an older one (and re-requests early).
        slot.confirmed_at.store(now, Relaxed);
        slot.mac.store(pack(mac), Relaxed);
        true
    }

    /// Lets the next [`Self::due_requests`] ask again at once (after a
    /// packet found `ip` unresolved), if the last request is `retry` old.
    pub fn request_soon(&mut self, ip: Ipv4Addr, now: u64) {
        if let Some(&i) = self.shared.index.get(&ip) {
            if self.requested_at[i].is_some_and(|t| now.saturating_sub(t) >= self.timers.retry * SEC) {
                self.requested_at[i] = None;
            }
        }
    }

    /// As [`Self::request_soon`], by slot.
    pub fn request_soon_slot(&mut self, i: usize, now: u64) {
        if self.requested_at.get(i).copied().flatten().is_some_and(|t| now.saturating_sub(t) >= self.timers.retry * SEC) {
            self.requested_at[i] = None;
        }
    }

    /// Port `port`'s link came back up: the addresses reached through it
    /// that need a request get it at the next [`Self::due_requests`], not
    /// a retry interval later (the requests made while the link was down
    /// were refused), so traffic to them resumes at once.
    pub fn link_up(&mut self, port: u16) {
        for (asked, &(_, p)) in self.requested_at.iter_mut().zip(&self.shared.addrs) {
            if p == port {
                *asked = None;
            }
        }
        self.next_scan = 0;
    }

    /// Calls `send(port, ip)` for every address that needs an ARP request
    /// now (unresolved, or resolved but older than `refresh`), at most once
    /// per `retry` interval each from this worker.
    pub fn due_requests(&mut self, now: u64, mut send: impl FnMut(u16, Ipv4Addr) -> bool) {
        if now < self.next_scan {
            return;
        }
        let t = self.timers;
        let mut next = u64::MAX;
        for (i, &(ip, port)) in self.shared.addrs.iter().enumerate() {
            let (mac, confirmed) = self.shared.get(i);
            // Asked for when both are over: its freshness (refresh after
            // it was confirmed; a static entry's never ends) and this
            // worker's last request's retry spacing.
            let fresh_until = if mac.is_some() { confirmed.saturating_add(t.refresh * SEC) } else { 0 };
            let mut due_at = fresh_until.max(self.requested_at[i].map_or(0, |r| r.saturating_add(t.retry * SEC)));
            if due_at <= now && send(port, ip) {
                self.requested_at[i] = Some(now);
                due_at = fresh_until.max(now.saturating_add(t.retry * SEC));
            }
            next = next.min(due_at);
        }
        self.next_scan = next;
    }

    /// (address, MAC if resolved and not expired); operators see [`SharedNeighbors::describe`].
    #[cfg(test)]
    pub fn entries(&self, now: u64) -> impl Iterator<Item = (Ipv4Addr, Option<MacAddr>)> + '_ {
        self.shared.addrs.iter().map(move |&(ip, _)| (ip, self.lookup(ip, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0xab, 0, 11]);

    fn timers() -> ArpTimers {
        ArpTimers { refresh: 30, expire: 90, retry: 1 }
    }

    fn table() -> NeighborTable {
        NeighborTable::new(Arc::new(SharedNeighbors::new([(RS, 0)])), timers())
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

    /// Skipping the scans changes no request: through learning, time,
    /// failed sends, `request_soon` and `link_up`, with several addresses (a static
    /// one among them), every call asks for exactly what a scan of every
    /// address at every call asks for (how it first worked, modelled here).
    #[test]
    fn skipping_scans_changes_no_request() {
        let addrs: Vec<(Ipv4Addr, u16)> = (0..6u8).map(|k| (Ipv4Addr::new(198, 18, 0, 20 + k), u16::from(k % 2))).collect();
        let shared = Arc::new(SharedNeighbors::new(addrs.clone()));
        assert!(shared.set_static(addrs[5].0, MAC));
        let mut t = NeighborTable::new(Arc::clone(&shared), timers());
        let tm = timers();
        let mut asked: Vec<Option<u64>> = vec![None; addrs.len()];
        let (mut rng, mut now) = (0x9e37_79b9_u64, 0u64);
        let mut requests = 0;
        for step in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            now += rng % (SEC / 2);
            let i = (rng >> 32) as usize % addrs.len();
            match (rng >> 40) % 16 {
                0..=2 => {
                    t.learn(addrs[i].0, MAC, now);
                }
                3 => {
                    t.request_soon(addrs[i].0, now);
                    if asked[i].is_some_and(|r| now - r >= tm.retry * SEC) {
                        asked[i] = None;
                    }
                }
                4 => {
                    let port = addrs[i].1;
                    t.link_up(port);
                    for (k, &(_, p)) in addrs.iter().enumerate() {
                        if p == port {
                            asked[k] = None;
                        }
                    }
                }
                _ => {}
            }
            let fails = (rng >> 48) % 5 == 0;
            let mut got = Vec::new();
            t.due_requests(now, |_, ip| {
                got.push(ip);
                !fails
            });
            let mut want = Vec::new();
            for (k, &(ip, _)) in addrs.iter().enumerate() {
                let (mac, confirmed) = shared.get(k);
                let fresh = mac.is_some() && now.saturating_sub(confirmed) < tm.refresh * SEC;
                let recently_asked = asked[k].is_some_and(|r| now - r < tm.retry * SEC);
                if !fresh && !recently_asked {
                    want.push(ip);
                    if !fails {
                        asked[k] = Some(now);
                    }
                }
            }
            assert_eq!(got, want, "step {step} at {now} ns");
            requests += got.len();
        }
        assert!(requests > 500, "the sequence must make requests ({requests})");
    }

    #[test]
    fn a_link_coming_back_up_asks_again_at_once() {
        let other = Ipv4Addr::new(198, 18, 9, 11);
        let mut t = NeighborTable::new(Arc::new(SharedNeighbors::new([(RS, 0), (other, 1)])), timers());
        assert_eq!(due(&mut t, 0), [(0, RS), (1, other)]);
        assert!(due(&mut t, SEC / 2).is_empty(), "retry spacing");
        t.link_up(0);
        assert_eq!(due(&mut t, SEC / 2), [(0, RS)], "only what port 0 reaches");
        assert!(due(&mut t, SEC / 2 + 1).is_empty(), "then the spacing again");
        // A fresh entry is not asked for because its link came back.
        assert!(t.learn(RS, MAC, SEC));
        t.link_up(0);
        assert!(due(&mut t, 2 * SEC).iter().all(|&(_, ip)| ip != RS));
    }

    #[test]
    fn learns_only_wanted_unicast_addresses() {
        let mut t = table();
        assert!(!t.learn(Ipv4Addr::new(198, 18, 0, 99), MAC, 0));
        assert!(!t.learn(RS, MacAddr::BROADCAST, 0));
        assert!(!t.learn(RS, MacAddr::ZERO, 0));
        assert_eq!(t.lookup(RS, 0), None);
        assert_eq!(t.entries(0).collect::<Vec<_>>(), [(RS, None)]);
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

    #[test]
    fn what_one_worker_learns_every_worker_knows() {
        let shared = Arc::new(SharedNeighbors::new([(RS, 0), (RS, 0)]));
        assert_eq!(shared.len(), 1, "duplicates collapse");
        let mut a = NeighborTable::new(Arc::clone(&shared), timers());
        let mut b = NeighborTable::new(Arc::clone(&shared), timers());
        assert_eq!(due(&mut b, 0).len(), 1);
        a.learn(RS, MAC, SEC);
        assert_eq!(b.lookup(RS, SEC), Some(MAC));
        assert!(due(&mut b, 2 * SEC).is_empty(), "b stops asking once a learned it");
        // Learning from another thread, too.
        let mut c = NeighborTable::new(Arc::clone(&shared), timers());
        let other = MacAddr([2, 0, 0, 0, 0, 0x77]);
        std::thread::spawn(move || c.learn(RS, other, 3 * SEC)).join().unwrap();
        assert_eq!(a.lookup(RS, 3 * SEC), Some(other));
    }

    #[test]
    fn describe_tells_static_reachable_expired_and_incomplete_apart() {
        let other = Ipv4Addr::new(198, 18, 0, 12);
        let third = Ipv4Addr::new(198, 18, 0, 13);
        let shared = Arc::new(SharedNeighbors::new([(RS, 0), (other, 1), (third, 0)]));
        let mut t = NeighborTable::new(Arc::clone(&shared), timers());
        assert!(t.learn(RS, MAC, 5 * SEC));
        assert!(shared.set_static(other, MAC));
        let d = shared.describe(20 * SEC, timers());
        assert_eq!(d[0], (RS, 0, Some(MAC), NeighborState::Reachable { age_s: 15 }));
        assert_eq!(d[1], (other, 1, Some(MAC), NeighborState::Static));
        assert_eq!(d[2], (third, 0, None, NeighborState::Incomplete));
        let later = shared.describe(200 * SEC, timers());
        assert_eq!(later[0].3, NeighborState::Expired { age_s: 195 });
        assert_eq!(later[1].3, NeighborState::Static, "static entries never age");
    }

    #[test]
    fn static_entries_never_expire_nor_get_requested_nor_overwritten() {
        let shared = Arc::new(SharedNeighbors::new([(RS, 0)]));
        assert!(shared.set_static(RS, MAC));
        assert!(!shared.set_static(Ipv4Addr::new(1, 2, 3, 4), MAC), "only wanted addresses");
        let mut t = NeighborTable::new(Arc::clone(&shared), timers());
        assert_eq!(t.lookup(RS, 1_000_000 * SEC), Some(MAC));
        assert!(due(&mut t, 1_000_000 * SEC).is_empty());
        assert!(!t.learn(RS, MacAddr([2, 0, 0, 0, 0, 0x66]), SEC));
        assert_eq!(t.lookup(RS, SEC), Some(MAC));
        // A reload keeps it static.
        let again = SharedNeighbors::carry_over(&shared, [(RS, 0)]);
        assert_eq!(NeighborTable::new(Arc::new(again), timers()).lookup(RS, u64::MAX / 2), Some(MAC));
    }

    #[test]
    fn mac_packing_round_trips() {
        for m in [MAC, MacAddr([0xff, 0xfe, 0, 1, 2, 3]), MacAddr::ZERO] {
            assert_eq!(unpack(pack(m)), Some(m));
        }
        assert_eq!(unpack(0), None);
    }
}
