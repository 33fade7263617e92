//! A simple per-core connection table: flow 5-tuple -> chosen real server,
//! with IPVS-like idle timeouts. It keeps a TCP connection on one server.
//!
//! Memory is reserved up front for `capacity` entries, so inserting never
//! allocates; a full table refuses new connections (counted by the caller)
//! while existing ones keep working. Expired entries are reclaimed on lookup
//! and by [`ConnTable::sweep`], a periodic full scan: adequate for the
//! foundation, to be replaced by a timer wheel (amortized O(1)).

use crate::config::{L4Proto, Timeouts};
use core::net::Ipv4Addr;
use hashbrown::HashMap;
use proto::l4::tcp_flags;

const SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Hashed as two words (the derived impl would feed each address as a
/// length-prefixed slice: several times the work per packet).
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst)));
        state.write_u64((u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | u64::from(self.proto));
    }
}

/// TCP as seen from one direction (DR sees only client -> server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    SynRecv,
    Established,
    FinWait,
    Close,
}

impl TcpState {
    /// IPVS counts only ESTABLISHED connections as active.
    pub fn is_active(self) -> bool {
        self == TcpState::Established
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub service: u32,
    /// Index of the real server in the service's pool.
    pub dest: u32,
    pub real: Ipv4Addr,
    pub tcp: Option<TcpState>,
    pub expires: u64,
}

/// Where a new connection goes: its service and real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub service: u32,
    pub dest: u32,
    pub real: Ipv4Addr,
}

impl Conn {
    /// Counts as an active connection for the schedulers (UDP always).
    pub fn is_active(&self) -> bool {
        self.tcp.is_none_or(TcpState::is_active)
    }
}

/// Result of looking a packet up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Live: the connection after this packet, and whether it was active before.
    Hit { conn: Conn, was_active: bool },
    /// Found but expired: removed now (release its counts).
    Expired(Conn),
    Miss,
}

#[derive(Debug)]
pub struct ConnTable {
    map: HashMap<FlowKey, Conn>,
    capacity: usize,
    timeouts: Timeouts,
}

impl ConnTable {
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        ConnTable { map: HashMap::with_capacity(capacity), capacity, timeouts }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn tcp_next(current: Option<TcpState>, flags: u8) -> TcpState {
        if flags & tcp_flags::RST != 0 {
            TcpState::Close
        } else if flags & tcp_flags::FIN != 0 {
            TcpState::FinWait
        } else if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
            match current {
                Some(s @ (TcpState::Established | TcpState::FinWait)) => s,
                _ => TcpState::SynRecv,
            }
        } else {
            match current {
                Some(TcpState::FinWait) => TcpState::FinWait,
                Some(TcpState::Close) => TcpState::Close,
                _ => TcpState::Established,
            }
        }
    }

    fn timeout(&self, proto: L4Proto, tcp: Option<TcpState>) -> u64 {
        Self::timeout_of(&self.timeouts, proto, tcp)
    }

    #[inline]
    fn timeout_of(t: &Timeouts, proto: L4Proto, tcp: Option<TcpState>) -> u64 {
        let s = match (proto, tcp) {
            (L4Proto::Udp, _) => t.udp,
            (L4Proto::Tcp, Some(TcpState::SynRecv) | None) => t.tcp_syn,
            (L4Proto::Tcp, Some(TcpState::Established)) => t.tcp,
            (L4Proto::Tcp, Some(TcpState::FinWait)) => t.tcp_fin,
            (L4Proto::Tcp, Some(TcpState::Close)) => t.tcp_close,
        };
        s * SEC
    }

    /// Finds the live connection of `key`, advancing its state with this
    /// packet's TCP `flags` and refreshing its timeout.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, proto: L4Proto, flags: u8, now: u64) -> Lookup {
        let timeouts = self.timeouts;
        let Some(slot) = self.map.get_mut(key) else { return Lookup::Miss };
        let old = *slot;
        if old.expires <= now {
            self.map.remove(key);
            return Lookup::Expired(old);
        }
        let tcp = old.tcp.map(|s| Self::tcp_next(Some(s), flags));
        slot.tcp = tcp;
        slot.expires = now + Self::timeout_of(&timeouts, proto, tcp);
        Lookup::Hit { conn: *slot, was_active: old.is_active() }
    }

    /// Adds a connection; `None` when the table is full.
    #[inline]
    pub fn insert(&mut self, key: FlowKey, proto: L4Proto, flags: u8, to: Binding, now: u64) -> Option<Conn> {
        if self.map.len() >= self.capacity {
            return None;
        }
        let tcp = (proto == L4Proto::Tcp).then(|| Self::tcp_next(None, flags));
        let c = Conn { service: to.service, dest: to.dest, real: to.real, tcp, expires: now + self.timeout(proto, tcp) };
        self.map.insert(key, c);
        Some(c)
    }

    /// Whether a new connection of this kind starts active.
    pub fn starts_active(proto: L4Proto, flags: u8) -> bool {
        proto == L4Proto::Udp || Self::tcp_next(None, flags).is_active()
    }

    /// Removes every expired connection, handing each to `gone`; returns how many.
    pub fn sweep(&mut self, now: u64, mut gone: impl FnMut(&FlowKey, &Conn)) -> usize {
        let before = self.map.len();
        self.map.retain(|k, c| {
            let keep = c.expires > now;
            if !keep {
                gone(k, c);
            }
            keep
        });
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_flags::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey { proto: 6, src: Ipv4Addr::new(198, 18, 0, 10), dst: Ipv4Addr::new(198, 18, 0, 100), sport, dport: 80 }
    }
    const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);

    fn b(service: u32, dest: u32) -> Binding {
        Binding { service, dest, real: RS }
    }

    #[test]
    fn tcp_states_set_timeouts() {
        let mut t = ConnTable::new(8, Timeouts::default());
        let c = t.insert(key(1), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        assert_eq!((c.tcp, c.expires, c.is_active()), (Some(TcpState::SynRecv), 60 * SEC, false));
        let Lookup::Hit { conn: c, was_active } = t.lookup(&key(1), L4Proto::Tcp, ACK, SEC) else { panic!() };
        assert_eq!((c.tcp, c.expires, was_active, c.is_active()), (Some(TcpState::Established), 901 * SEC, false, true));
        let Lookup::Hit { conn: c, was_active } = t.lookup(&key(1), L4Proto::Tcp, FIN | ACK, 2 * SEC) else { panic!() };
        assert_eq!((c.tcp, c.expires, was_active), (Some(TcpState::FinWait), 122 * SEC, true));
        // A late data packet does not reopen a closing connection.
        let Lookup::Hit { conn: c, .. } = t.lookup(&key(1), L4Proto::Tcp, ACK, 3 * SEC) else { panic!() };
        assert_eq!(c.tcp, Some(TcpState::FinWait));
        let Lookup::Hit { conn: c, .. } = t.lookup(&key(1), L4Proto::Tcp, RST, 4 * SEC) else { panic!() };
        assert_eq!((c.tcp, c.expires), (Some(TcpState::Close), 14 * SEC));
        assert!(matches!(t.lookup(&key(1), L4Proto::Tcp, ACK, 14 * SEC), Lookup::Expired(c) if c.tcp == Some(TcpState::Close)));
        assert_eq!(t.lookup(&key(1), L4Proto::Tcp, ACK, 14 * SEC), Lookup::Miss);
        assert!(t.is_empty());
    }

    #[test]
    fn udp_uses_its_timeout() {
        let mut t = ConnTable::new(8, Timeouts::default());
        let mut k = key(7);
        k.proto = 17;
        let c = t.insert(k, L4Proto::Udp, 0, b(3, 1), 5).unwrap();
        assert_eq!((c.tcp, c.service, c.dest, c.expires, c.is_active()), (None, 3, 1, 5 + 300 * SEC, true));
        assert!(ConnTable::starts_active(L4Proto::Udp, 0));
        assert!(!ConnTable::starts_active(L4Proto::Tcp, SYN));
    }

    #[test]
    fn full_table_refuses_new_but_serves_existing() {
        let mut t = ConnTable::new(2, Timeouts::default());
        t.insert(key(1), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        t.insert(key(2), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        assert!(t.insert(key(3), L4Proto::Tcp, SYN, b(0, 0), 0).is_none());
        assert!(matches!(t.lookup(&key(1), L4Proto::Tcp, ACK, 1), Lookup::Hit { .. }));
    }

    #[test]
    fn sweep_removes_only_expired() {
        let mut t = ConnTable::new(8, Timeouts::default());
        t.insert(key(1), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        t.insert(key(2), L4Proto::Tcp, SYN, b(0, 0), 30 * SEC).unwrap();
        let mut gone = Vec::new();
        assert_eq!(t.sweep(60 * SEC, |k, _| gone.push(k.sport)), 1);
        assert_eq!(gone, [1]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.sweep(90 * SEC, |_, _| {}), 1);
    }
}
