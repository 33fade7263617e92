//! The per-core connection table: a connection is found by the tuple of
//! its client's packets (in) and, for NAT, by the tuple of the real
//! server's replies (out), with IPVS-like idle timeouts per TCP state.
//!
//! Connections live in a slab reserved up front for `capacity` entries and
//! an index from tuples to slots, so inserting never allocates; a full
//! table refuses new connections (counted by the caller) while existing
//! ones keep working.
//!
//! Expiry is a timer wheel of one-second buckets threaded through the slab
//! (no allocation): [`ConnTable::sweep`] visits only the buckets whose
//! second has come. A connection whose timeout was refreshed is not moved
//! when its packets arrive; when its bucket comes due it is filed again
//! under its current expiry, so a busy connection costs one visit per
//! timeout period: amortized O(1) per packet. When the expiry moves
//! earlier (FIN shortens 900 s to 120 s) it is refiled at once.

mod index;

use crate::config::{L4Proto, Timeouts};
use core::net::Ipv4Addr;
use index::TupleIndex;
use proto::l4::tcp_flags;
use proto::rewrite::nat::Delta4;
use proto::MacAddr;

const SEC: u64 = 1_000_000_000;
/// Buckets of the timer wheel (seconds it spans before wrapping).
const WHEEL: usize = 1024;
const NIL: u32 = u32::MAX;
/// Index entries a connection may take: its client's tuple and, with NAT,
/// its reply's. The index is sized for that many per connection, so they
/// always fit.
const INDEX_ENTRIES_PER_CONN: usize = 2;
/// Entries of the memo of recent finds (see [`ConnTable::find_remembered`]):
/// 8,192 index entries, 32 KiB, which stay in a core's first-level cache.
const RECENT_BITS: u32 = 13;
/// Lookups consult the memo while a table holds fewer connections than
/// this, a quarter of its entries: with that many, about one tuple
/// in five shares its entry with another and misses there when the other
/// was looked up since. With more, the misses, and the mispredicted branch
/// between the memo and the index, would cost more than the hits save
/// (and a table that big is searched with the worker's prefetch stages).
const RECENT_UNTIL: usize = 1 << (RECENT_BITS - 2);

/// `v` with its spare capacity written (with zeros, still unused): each
/// page faulted in now, when the table is made, not while a worker
/// forwards and the table grows onto it (with huge pages, the kernel
/// zeroing 2 MiB: longer than a receive ring lasts at full rate).
fn touched<T>(mut v: Vec<T>) -> Vec<T> {
    let spare = v.spare_capacity_mut();
    // SAFETY: writes only the vector's own spare capacity, which stays
    // outside its length (uninitialized as far as the vector knows).
    unsafe { core::ptr::write_bytes(spare.as_mut_ptr(), 0, spare.len()) };
    // The writes are the point: keep them from being optimized away as
    // stores nothing reads.
    core::hint::black_box(v.as_ptr());
    v
}

/// Timer classes: UDP, ICMP, and one per TCP state.
const TIMER_CLASSES: usize = 8;

/// The timer class of a connection of `proto` in `tcp` state (index into
/// the table's timeouts; `lookup` masks it with 7, so it stays below 8).
fn timer_class(proto: L4Proto, tcp: Option<TcpState>) -> u8 {
    match (proto, tcp) {
        (L4Proto::Udp, _) => 0,
        (L4Proto::Icmp, _) => 1,
        (L4Proto::Tcp, Some(TcpState::SynRecv) | None) => 2,
        (L4Proto::Tcp, Some(TcpState::Established)) => 3,
        (L4Proto::Tcp, Some(TcpState::FinWait)) => 4,
        (L4Proto::Tcp, Some(TcpState::Close)) => 5,
    }
}

/// The TCP flags that send a segment of a connection in state `tcp`
/// through the state machine ([`ConnTable::tcp_segment`]): none for UDP
/// and ICMP; for an established connection SYN, FIN and RST (its data
/// and ACKs, nearly all of its segments, change nothing); in any other
/// state those and ACK. A segment with none of the four (PSH or URG
/// alone, or no flag at all) changes no state, as in IPVS.
fn watched_flags(tcp: Option<TcpState>) -> u8 {
    const CHANGE: u8 = tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST;
    match tcp {
        None => 0,
        Some(TcpState::Established) => CHANGE,
        Some(_) => CHANGE | tcp_flags::ACK,
    }
}

/// A connection's tuple. Laid out as in a packet (addresses, then ports,
/// then the protocol), so that a stored key's [`FlowKey::words`] are two
/// loads.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct FlowKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// A tuple as two integers (see [`FlowKey::words`]).
pub type TupleWords = (u64, u64);

impl FlowKey {
    /// The tuple as two integers: the addresses as their 8 bytes lie in a
    /// packet (little-endian), and the ports and the protocol. Equal
    /// tuples, equal words; the hash and the comparison take these, not
    /// five fields. (A parser can read the first from the frame with one
    /// load: see the pipeline's `tuple_words_at`.)
    #[inline(always)]
    pub fn words(&self) -> TupleWords {
        let addrs = u64::from(u32::from_le_bytes(self.src.octets())) | u64::from(u32::from_le_bytes(self.dst.octets())) << 32;
        let rest = u64::from(self.sport) | u64::from(self.dport) << 16 | u64::from(self.proto) << 32;
        (addrs, rest)
    }

    /// The tuple whose [`Self::words`] these are (the hot path carries
    /// only the words; the few paths that need fields rebuild them).
    #[inline]
    pub fn from_words((addrs, rest): TupleWords) -> Self {
        FlowKey {
            src: Ipv4Addr::from((addrs as u32).to_le_bytes()),
            dst: Ipv4Addr::from(((addrs >> 32) as u32).to_le_bytes()),
            sport: rest as u16,
            dport: (rest >> 16) as u16,
            proto: (rest >> 32) as u8,
        }
    }
}

impl PartialEq for FlowKey {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.words() == other.words()
    }
}

impl Eq for FlowKey {}

/// Hashed as two words (the derived impl would feed each address as a
/// length-prefixed slice: several times the work per packet).
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let (a, b) = self.words();
        state.write_u64(a);
        state.write_u64(b);
    }
}

/// Which side a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to real server.
    In,
    /// Real server to client (NAT replies).
    Out,
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

/// One connection. `repr(C)`, in this order: the fields every packet's
/// lookup reads come first, so that with [`Slot`]'s own they fill the
/// slot's first cache line (a test checks); what only some modes read
/// (the rewrite, the reply's way back) follows, in the second line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Conn {
    /// The client's tuple (VIP and virtual port are its destination).
    pub client: FlowKey,
    pub tcp: Option<TcpState>,
    /// FullNAT TCP: the TOA still has to go on the next client segment.
    pub toa_pending: bool,
    pub service: u32,
    /// Index of the real server in the service's pool.
    pub dest: u32,
    pub expires: u64,
    /// The real server's address and port (the port as of the server's
    /// record; kept here so NAT needs nothing else per packet).
    pub real: Ipv4Addr,
    pub real_port: u16,
    /// Where the client's first packet came from: replies go back to that
    /// MAC (the client's, or its router's) on that port.
    pub peer_mac: MacAddr,
    pub peer_port: u16,
    /// FullNAT: the local address and port the connection uses.
    pub local: Option<(Ipv4Addr, u16)>,
    /// NAT and FullNAT: the checksum change of the rewrite of each
    /// direction (in, out), worked out once.
    pub nat: [Delta4; 2],
}

/// Where a new connection goes: its service and real server, and where
/// its client's packets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub service: u32,
    pub dest: u32,
    pub real: Ipv4Addr,
    pub real_port: u16,
    pub peer_mac: MacAddr,
    pub peer_port: u16,
    pub local: Option<(Ipv4Addr, u16)>,
    /// See [`Conn::nat`].
    pub nat: [Delta4; 2],
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
    /// Live: the connection's slot (read it with [`ConnTable::get`]; it
    /// is not copied out, a hit being the common case), the packet's
    /// direction, what every packet needs of the entry (its service and
    /// real server), and whether it is active now if this packet changed
    /// that (`None`: it did not; one value rather than before and after,
    /// which the hot path kept in two registers and compared).
    Hit {
        slot: u32,
        dir: Dir,
        service: u32,
        dest: u32,
        turned: Option<bool>,
    },
    /// Found but over (expired, or its client port reused for a new
    /// connection): removed now. Its last state is still in `slot` (read
    /// it with [`ConnTable::get`] to release its counts) until the next
    /// insert. A slot, not a copy: the answer stays small enough for
    /// registers on the hot path.
    Expired {
        slot: u32,
    },
    Miss,
}

/// A table entry: two cache lines, aligned. The first holds everything a
/// hit reads in either direction (the reply tuple, the timer, the
/// connection's tuple, state, service, server and expiry), so a lookup
/// in a big table costs its index bucket and one line of the slab; NAT's
/// and FullNAT's rewrites read the second (prefetched with the first for
/// their connections only: [`Ref::rewrites`]).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// The reply tuple, when the connection has one (NAT).
    out: Option<FlowKey>,
    /// The start (ns) of the second the slot is filed under on the wheel.
    filed_at: u64,
    /// Which of the table's timeouts applies now (see [`timer_class`]):
    /// set when the state changes, so a packet refreshes with one load.
    timer: u8,
    live: bool,
    /// The TCP flags that make a segment matter to the state machine
    /// ([`watched_flags`]), set with the state: a packet tests its flags
    /// against it, one load and one test, instead of matching the state.
    watch: u8,
    conn: Conn,
    /// Timer wheel links.
    prev: u32,
    next: u32,
}

/// An index entry: slot number, direction, and whether hits read the
/// slot's second line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ref {
    slot: u32,
    dir: Dir,
    /// A NAT or FullNAT connection (one with a reply tuple): its packets
    /// read the rewrite in the slot's second line, so the prefetch stage
    /// loads that line too; a DR or TUN hit reads only the first, and
    /// loading the second for it would spend a memory access per packet
    /// on nothing.
    rewrites: bool,
}

impl Ref {
    /// As the index stores it: the slot, then one bit for `rewrites` and
    /// one for the direction (a slot fits in 30 bits:
    /// [`ConnTable::MAX_CAPACITY`]).
    fn packed(self) -> u32 {
        self.slot << 2 | u32::from(self.rewrites) << 1 | u32::from(self.dir == Dir::Out)
    }

    fn unpack(r: u32) -> Self {
        Ref { slot: r >> 2, dir: if r & 1 == 0 { Dir::In } else { Dir::Out }, rewrites: r & 2 != 0 }
    }

    /// The entries of the connection in `slot`: its client's tuple's and,
    /// if it has a reply tuple, that one's.
    fn of(slot: u32, has_reply: bool) -> [Ref; 2] {
        [Dir::In, Dir::Out].map(|dir| Ref { slot, dir, rewrites: has_reply })
    }
}

impl Slot {
    /// Whether this entry's tuple in direction `dir` has these `words`.
    #[inline(always)]
    fn has(&self, dir: Dir, words: TupleWords) -> bool {
        match dir {
            Dir::In => self.conn.client.words() == words,
            Dir::Out => self.out.is_some_and(|o| o.words() == words),
        }
    }
}

/// A tuple's hash, from the first prefetch stage to the second.
#[derive(Debug, Clone, Copy, Default)]
pub struct TupleHash(u64);

/// The entry the prefetch stages expect a packet's lookup to find (an
/// index entry as the index stores it), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint(u32);

impl Hint {
    pub const NONE: Hint = Hint(NIL);
}

#[derive(Debug)]
pub struct ConnTable {
    index: TupleIndex,
    /// By a tuple's [`Self::memo_entry`], the index entry (slot and
    /// direction, packed as the index keeps them) a lookup of that tuple
    /// found last (`NIL`: none), checked before it is used.
    recent: Box<[u32; 1 << RECENT_BITS]>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    capacity: usize,
    /// In nanoseconds, by timer class.
    timeouts: [u64; TIMER_CLASSES],
    /// First slot of each wheel bucket.
    wheel: Vec<u32>,
    /// The next second the wheel has not processed yet.
    wheel_pos: u64,
}

impl ConnTable {
    /// The most connections a table can hold: the index keeps a slot
    /// number in 30 bits (see [`Ref::packed`]), and the highest names
    /// none (`NIL`'s).
    pub const MAX_CAPACITY: usize = (1 << 30) - 1;

    /// A table for at most `capacity` connections (at most
    /// [`Self::MAX_CAPACITY`]).
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        let capacity = capacity.min(Self::MAX_CAPACITY);
        ConnTable {
            index: TupleIndex::with_capacity(capacity * INDEX_ENTRIES_PER_CONN),
            recent: Box::new([NIL; 1 << RECENT_BITS]),
            slots: touched(Vec::with_capacity(capacity)),
            free: touched(Vec::with_capacity(capacity)),
            len: 0,
            capacity,
            timeouts: Self::in_ns(timeouts),
            wheel: vec![NIL; WHEEL],
            wheel_pos: 0,
        }
    }

    /// The bytes a table for `capacity` connections takes: its index, memo,
    /// slab and free list, all written when the table is made (see
    /// [`touched`]). What an operator must have memory for.
    pub fn reserved_bytes(capacity: usize) -> usize {
        let capacity = capacity.min(Self::MAX_CAPACITY);
        let memo = (1 << RECENT_BITS) * core::mem::size_of::<u32>();
        TupleIndex::bytes_for(capacity * INDEX_ENTRIES_PER_CONN) + memo + capacity * (core::mem::size_of::<Slot>() + core::mem::size_of::<u32>())
    }

    /// Files slot `n` under its expiry second (never one already processed).
    fn link(&mut self, n: u32) {
        let second = (self.slots[n as usize].conn.expires / SEC).max(self.wheel_pos);
        let b = (second % WHEEL as u64) as usize;
        let head = self.wheel[b];
        let s = &mut self.slots[n as usize];
        s.filed_at = second * SEC;
        s.prev = NIL;
        s.next = head;
        if head != NIL {
            self.slots[head as usize].prev = n;
        }
        self.wheel[b] = n;
    }

    fn unlink(&mut self, n: u32) {
        let (prev, next, filed) = {
            let s = &self.slots[n as usize];
            (s.prev, s.next, s.filed_at / SEC)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else {
            let b = (filed % WHEEL as u64) as usize;
            if self.wheel[b] == n {
                self.wheel[b] = next;
            }
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[n as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The connections in the table, in slot order (for listing them to an
    /// operator; expired ones the wheel has not reached yet included).
    pub fn live(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.slots.iter().filter(|s| s.live).map(|s| &s.conn)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots ever used (live or free): where a listing in slices
    /// ([`Self::live_in`]) ends.
    pub fn slots_used(&self) -> usize {
        self.slots.len()
    }

    /// The connections in slots `range` (clamped to [`Self::slots_used`]),
    /// in slot order. A connection keeps its slot while it lives, so
    /// slices listed one after the other, with packets between them, list
    /// every connection that lived throughout exactly once.
    pub fn live_in(&self, range: core::ops::Range<usize>) -> impl Iterator<Item = &Conn> + '_ {
        let end = range.end.min(self.slots.len());
        self.slots[range.start.min(end)..end].iter().filter(|s| s.live).map(|s| &s.conn)
    }

    /// A segment with `flags` in direction `dir` of the TCP connection in
    /// `slot`, now in state `s`: advances the state (and the timer class
    /// with it). Returns whether the connection turned active or inactive,
    /// if it did; `None` when the segment ends the connection instead: a
    /// client that reuses the port of a connection that is closing starts
    /// a new one (IPVS's conn_reuse_mode=1), scheduled afresh, not tied to
    /// the old server, which may have left meanwhile. Out of line: an
    /// established connection's ordinary segments never come here.
    #[cold]
    #[inline(never)]
    fn tcp_segment(slot: &mut Slot, dir: Dir, s: TcpState, flags: u8, proto: L4Proto) -> Option<Option<bool>> {
        if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN && matches!(s, TcpState::FinWait | TcpState::Close) && dir == Dir::In {
            return None;
        }
        let next = Self::tcp_next(Some(s), flags);
        if next != s {
            slot.conn.tcp = Some(next);
            slot.timer = timer_class(proto, Some(next));
            slot.watch = watched_flags(Some(next));
        }
        Some((s.is_active() != next.is_active()).then_some(next.is_active()))
    }

    fn tcp_next(current: Option<TcpState>, flags: u8) -> TcpState {
        if flags & tcp_flags::RST != 0 {
            TcpState::Close
        } else if flags & tcp_flags::FIN != 0 {
            TcpState::FinWait
        } else if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
            match current {
                // A retransmitted or stray SYN does not reopen anything.
                Some(s @ (TcpState::Established | TcpState::FinWait | TcpState::Close)) => s,
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

    /// Timeouts in nanoseconds by timer class: the per-packet refresh
    /// adds, no multiply, no match.
    fn in_ns(t: Timeouts) -> [u64; TIMER_CLASSES] {
        let mut ns = [0; TIMER_CLASSES];
        for (proto, tcp, secs) in [
            (L4Proto::Udp, None, t.udp),
            (L4Proto::Icmp, None, t.icmp),
            (L4Proto::Tcp, Some(TcpState::SynRecv), t.tcp_syn),
            (L4Proto::Tcp, Some(TcpState::Established), t.tcp),
            (L4Proto::Tcp, Some(TcpState::FinWait), t.tcp_fin),
            (L4Proto::Tcp, Some(TcpState::Close), t.tcp_close),
        ] {
            ns[usize::from(timer_class(proto, tcp))] = secs * SEC;
        }
        ns
    }

    /// Finds the live connection of `key` (either direction), advancing
    /// its state with this packet's TCP `flags` and refreshing its timeout.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, proto: L4Proto, flags: u8, now: u64) -> Lookup {
        self.lookup_hinted(key.words(), Hint::NONE, proto, flags, now)
    }

    /// As [`Self::lookup`], for a tuple given as its words (a parser that
    /// read them from the frame: a key it wrote field by field and then
    /// read back whole would stall on the store-to-load forwarding),
    /// trying first the entry the prefetch stages named
    /// ([`Self::prefetch_entry`]), if any: a right hint spares hashing the
    /// tuple and searching its bucket again; a wrong or stale one (the
    /// bucket held another tuple's tag, or the burst's earlier packets
    /// changed the table) costs one compare and the usual search.
    #[inline]
    pub fn lookup_hinted(&mut self, words: TupleWords, hint: Hint, proto: L4Proto, flags: u8, now: u64) -> Lookup {
        let Some(r) = self.find_remembered(words, hint) else { return Lookup::Miss };
        let slot = &mut self.slots[r.slot as usize];
        if slot.conn.expires <= now {
            self.remove(r.slot);
            return Lookup::Expired { slot: r.slot };
        }
        // UDP and ICMP flows are always active; a TCP one as its state,
        // which only a segment with a watched flag can change.
        let mut turned = None;
        if flags & slot.watch != 0 {
            // Only TCP connections watch flags.
            let s = slot.conn.tcp.unwrap_or(TcpState::Established);
            match Self::tcp_segment(slot, r.dir, s, flags, proto) {
                Some(t) => turned = t,
                None => {
                    self.remove(r.slot);
                    return Lookup::Expired { slot: r.slot };
                }
            }
        }
        let expires = now + self.timeouts[usize::from(slot.timer & 7)];
        slot.conn.expires = expires;
        let (service, dest) = (slot.conn.service, slot.conn.dest);
        if expires < slot.filed_at {
            // A shorter timeout (closing): refile now, or it would linger.
            self.unlink(r.slot);
            self.link(r.slot);
        }
        Lookup::Hit { slot: r.slot, dir: r.dir, service, dest, turned }
    }

    /// [`Self::find`], unless `hint` names a live entry of this tuple, or
    /// (in a small table) the memo does: the index holds each tuple once,
    /// so such an entry is the one it would find. The memo spares a small
    /// table's lookups the keyed hash and the bucket search: a multiply
    /// and a load from a 32 KiB array instead (about 35 instructions fewer
    /// a packet). It remembers both directions: a NAT reply's lookup saves
    /// as much (30 fewer), for 2 to 4 more on every client's lookup, which
    /// checks the entry's direction.
    #[inline(always)]
    fn find_remembered(&mut self, words: TupleWords, hint: Hint) -> Option<Ref> {
        if hint != Hint::NONE {
            let r = Ref::unpack(hint.0);
            if self.slots.get(r.slot as usize).is_some_and(|s| s.live && s.has(r.dir, words)) {
                return Some(r);
            }
        }
        if self.len >= RECENT_UNTIL {
            return self.find(words);
        }
        let memo = Self::memo_entry(words);
        let r = Ref::unpack(self.recent[memo]);
        // `NIL` names no slot (a table has at most `MAX_CAPACITY`).
        if self.slots.get(r.slot as usize).is_some_and(|s| s.live && s.has(r.dir, words)) {
            return Some(r);
        }
        let r = self.find(words)?;
        self.recent[memo] = r.packed();
        Some(r)
    }

    /// The memo entry of the tuple with these `words`: the top bits of a
    /// product (Fibonacci hashing), which depend on every bit of the
    /// tuple. Not keyed like the index's hash, and needing no such
    /// thing: tuples made to share an entry only miss the memo, and are
    /// found in the index as without one.
    #[inline(always)]
    fn memo_entry((addrs, rest): TupleWords) -> usize {
        ((addrs ^ rest.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - RECENT_BITS)) as usize
    }

    /// The index entry of the tuple whose words are `words`, if a live or
    /// not yet swept connection has that tuple.
    #[inline(always)]
    fn find(&self, words: TupleWords) -> Option<Ref> {
        let slots = &self.slots;
        let r = self.index.find(self.index.hash(words), move |r| {
            let Ref { slot, dir, .. } = Ref::unpack(r);
            slots.get(slot as usize).is_some_and(|s| s.has(dir, words))
        })?;
        Some(Ref::unpack(r))
    }

    /// The first of two prefetch stages for a burst of packets (tuples
    /// about to be looked up, a few at a time): starts loading the index
    /// bucket of the tuple with these `words`, and returns the tuple's
    /// hash for the second stage.
    #[inline]
    pub fn prefetch_index(&self, words: TupleWords) -> TupleHash {
        let hash = self.index.hash(words);
        self.index.prefetch(hash);
        TupleHash(hash)
    }

    /// The second stage, once the bucket has had time to arrive: starts
    /// loading the slab entry it most likely names, and returns that
    /// entry as the lookup's [`Hint`].
    #[inline]
    pub fn prefetch_entry(&self, hash: TupleHash) -> Hint {
        let Some(r) = self.index.candidate(hash.0) else { return Hint::NONE };
        let entry = Ref::unpack(r);
        if let Some(s) = self.slots.get(entry.slot as usize) {
            // The first line; a NAT or FullNAT hit reads the second too.
            // Without a branch (services of both kinds may share a burst):
            // for DR and TUN the second prefetch names the first line again,
            // a line already on its way, which costs no memory access.
            crate::prefetch::line(s);
            crate::prefetch::line_at((s as *const Slot).cast::<u8>().wrapping_add(64 * usize::from(entry.rewrites)));
        }
        Hint(r)
    }

    /// The connection in `slot` (from [`Lookup::Hit`], or the last state
    /// of the one a [`Lookup::Expired`] ended).
    #[inline]
    pub fn get(&self, slot: u32) -> &Conn {
        &self.slots[slot as usize].conn
    }

    /// The live connection of `key` and the direction `key` stands for,
    /// without touching its state or timer (for ICMP errors about it).
    pub fn peek(&self, key: &FlowKey, now: u64) -> Option<(Conn, Dir)> {
        let r = self.find(key.words())?;
        let c = self.slots[r.slot as usize].conn;
        (c.expires > now).then_some((c, r.dir))
    }

    /// New timeouts (a reload) for every later packet.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = Self::in_ns(timeouts);
    }

    /// Removes `key`'s connection now; returns it.
    pub fn remove_key(&mut self, key: &FlowKey) -> Option<Conn> {
        let r = self.find(key.words())?;
        let c = self.slots[r.slot as usize].conn;
        self.remove(r.slot);
        Some(c)
    }

    /// Marks the TOA of the connection in `slot` as sent.
    pub fn toa_sent(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.conn.toa_pending = false;
        }
    }

    fn remove(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.live {
            return;
        }
        s.live = false;
        let (client, out) = (s.conn.client, s.out);
        self.unlink(slot);
        let [r_in, r_out] = Ref::of(slot, out.is_some());
        self.index.remove(self.index.hash(client.words()), r_in.packed());
        if let Some(out) = out {
            self.index.remove(self.index.hash(out.words()), r_out.packed());
        }
        self.free.push(slot);
        self.len -= 1;
    }

    /// Adds a connection found by `to`'s client tuple `key` and, if given,
    /// by its reply tuple `out`; returns its slot (see [`Self::get`]).
    /// `None` when the table is full or a tuple is already taken.
    #[inline]
    pub fn insert(&mut self, key: FlowKey, out: Option<FlowKey>, proto: L4Proto, flags: u8, to: Binding, now: u64) -> Option<u32> {
        if self.len >= self.capacity || self.find(key.words()).is_some() || out.is_some_and(|o| self.find(o.words()).is_some()) {
            return None;
        }
        let tcp = (proto == L4Proto::Tcp).then(|| Self::tcp_next(None, flags));
        let conn = Conn {
            service: to.service,
            dest: to.dest,
            real: to.real,
            real_port: to.real_port,
            client: key,
            peer_mac: to.peer_mac,
            peer_port: to.peer_port,
            local: to.local,
            nat: to.nat,
            toa_pending: to.local.is_some() && proto == L4Proto::Tcp,
            tcp,
            expires: now + self.timeouts[usize::from(timer_class(proto, tcp))],
        };
        let slot = Slot { conn, out, live: true, timer: timer_class(proto, tcp), watch: watched_flags(tcp), prev: NIL, next: NIL, filed_at: 0 };
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = slot;
                n
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.link(n);
        // Cannot fail: the index has room for two entries per connection.
        let [r_in, r_out] = Ref::of(n, out.is_some());
        let placed = self.index.insert(self.index.hash(key.words()), r_in.packed());
        debug_assert!(placed);
        if let Some(o) = out {
            let placed = self.index.insert(self.index.hash(o.words()), r_out.packed());
            debug_assert!(placed);
        }
        self.len += 1;
        Some(n)
    }

    /// Whether a new connection of this kind starts active.
    pub fn starts_active(proto: L4Proto, flags: u8) -> bool {
        proto != L4Proto::Tcp || Self::tcp_next(None, flags).is_active()
    }

    /// Removes every connection that expired before the current second of
    /// `now` began, handing each to `gone`; returns how many. Visits only
    /// the wheel buckets of the seconds fully elapsed since the last call
    /// (all of them, once, after a long gap): everything filed under such a
    /// second has expired unless its timeout was refreshed. Connections
    /// expiring within the current second go at the next sweep, or at
    /// their next packet ([`ConnTable::lookup`] checks exactly).
    pub fn sweep(&mut self, now: u64, mut gone: impl FnMut(&FlowKey, &Conn)) -> usize {
        let target = now / SEC;
        if target <= self.wheel_pos {
            return 0;
        }
        let steps = (target - self.wheel_pos).min(WHEEL as u64);
        // Detach the due buckets first: what is refiled below lands in the
        // emptied buckets and is not visited again in this call.
        let mut due = [NIL; WHEEL];
        for k in 0..steps {
            let b = ((self.wheel_pos + k) % WHEEL as u64) as usize;
            due[k as usize] = std::mem::replace(&mut self.wheel[b], NIL);
        }
        self.wheel_pos = target;
        let mut removed = 0;
        for &first in &due[..steps as usize] {
            let mut n = first;
            while n != NIL {
                let next = self.slots[n as usize].next;
                let s = &mut self.slots[n as usize];
                s.prev = NIL;
                s.next = NIL;
                // Exactly "expired before this second began", wherever filed.
                if s.live && s.conn.expires < target * SEC {
                    let conn = s.conn;
                    gone(&conn.client, &conn);
                    // Already off the wheel: keep `remove` from unlinking.
                    self.slots[n as usize].filed_at = u64::MAX;
                    self.remove(n);
                    removed += 1;
                } else if s.live {
                    self.link(n);
                }
                n = next;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_flags::*;

    const RS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);

    fn key(sport: u16) -> FlowKey {
        FlowKey { proto: 6, src: Ipv4Addr::new(198, 18, 0, 10), dst: Ipv4Addr::new(198, 18, 0, 100), sport, dport: 80 }
    }

    /// The reply tuple of `key(sport)` after DNAT to RS:8080.
    fn reply(sport: u16) -> FlowKey {
        FlowKey { proto: 6, src: RS, dst: Ipv4Addr::new(198, 18, 0, 10), sport: 8080, dport: sport }
    }

    fn b(service: u32, dest: u32) -> Binding {
        Binding { service, dest, real: RS, real_port: 8080, peer_mac: MacAddr([2, 0, 0, 0, 0, 10]), peer_port: 0, local: None, nat: Default::default() }
    }

    /// Runs a lookup that must hit; returns a copy of the connection.
    fn hit_of(t: &mut ConnTable, lookup: impl FnOnce(&mut ConnTable) -> Lookup) -> (Conn, Dir, bool) {
        match lookup(t) {
            Lookup::Hit { slot, dir, service, dest, turned } => {
                let c = *t.get(slot);
                assert_eq!((service, dest), (c.service, c.dest));
                assert!(turned.is_none_or(|now| now == c.is_active()), "turned to what it is");
                (c, dir, turned.map_or(c.is_active(), |now| !now))
            }
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    /// What a full table takes: the index of its two tuples per
    /// connection, a two-line slot and a free-list entry per connection
    /// (155-172 bytes a connection, as `pipeline_bench lookup` measures),
    /// the memo (33 bytes a connection more at 1,000, nothing that shows
    /// from 100,000), and no overflow for any capacity asked for.
    #[test]
    fn reserved_bytes_are_index_slab_and_free_list() {
        assert_eq!(core::mem::size_of::<Slot>(), 128);
        // 1,000 connections: 2,000 index entries in 512 buckets of 64
        // bytes, and the memo's 8,192 index entries.
        assert_eq!(ConnTable::reserved_bytes(1000), 512 * 64 + 8192 * 4 + 1000 * (128 + 4));
        for n in [100_000, 1_000_000, 10_000_000] {
            let per = ConnTable::reserved_bytes(n) / n;
            assert!((150..=180).contains(&per), "{n}: {per} bytes a connection");
        }
        let max = ConnTable::reserved_bytes(ConnTable::MAX_CAPACITY);
        assert_eq!(ConnTable::reserved_bytes(usize::MAX), max, "capped as the table is");
        assert!(max > 100 << 30, "a billion connections: over 100 GiB ({max})");
    }

    /// Minor page faults the calling thread has taken so far.
    fn minor_faults() -> i64 {
        // SAFETY: rusage is plain integers, for which zeros are valid.
        let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
        // SAFETY: getrusage writes only the struct it is given.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
        usage.ru_minflt
    }

    /// Filling a table, emptying it and filling it again touches no memory
    /// for the first time: a worker never stops forwarding for a page
    /// fault (with huge pages, the kernel zeroing 2 MiB) because its table
    /// grew. (100,000 slots are 12.8 MB of slab: 7 huge pages or 3,125
    /// small ones if they were faulted in as connections came.)
    #[test]
    fn filling_a_table_takes_no_page_faults() {
        let n = 100_000u32;
        let mut t = ConnTable::new(n as usize, Timeouts::default());
        let keys: Vec<FlowKey> = (0..n).map(|i| FlowKey { proto: 17, src: Ipv4Addr::from(0x6400_0000 + i), dst: RS, sport: 1000, dport: 53 }).collect();
        let before = minor_faults();
        for _ in 0..2 {
            for k in &keys {
                assert!(t.insert(*k, None, L4Proto::Udp, 0, b(0, 0), 0).is_some());
            }
            for k in &keys {
                assert!(t.remove_key(k).is_some());
            }
        }
        let faults = minor_faults() - before;
        assert!(faults <= 2, "{faults} page faults");
    }

    #[test]
    fn tcp_states_set_timeouts() {
        let mut t = ConnTable::new(8, Timeouts::default());
        let slot = t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        let c = *t.get(slot);
        assert_eq!((c.tcp, c.expires, c.is_active()), (Some(TcpState::SynRecv), 60 * SEC, false));
        let (c, dir, was_active) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, ACK, SEC));
        assert_eq!((c.tcp, c.expires, dir, was_active, c.is_active()), (Some(TcpState::Established), 901 * SEC, Dir::In, false, true));
        let (c, _, was_active) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, FIN | ACK, 2 * SEC));
        assert_eq!((c.tcp, c.expires, was_active), (Some(TcpState::FinWait), 122 * SEC, true));
        // A late data packet does not reopen a closing connection.
        let (c, _, _) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, ACK, 3 * SEC));
        assert_eq!(c.tcp, Some(TcpState::FinWait));
        let (c, _, _) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, RST, 4 * SEC));
        assert_eq!((c.tcp, c.expires), (Some(TcpState::Close), 14 * SEC));
        assert!(matches!(t.lookup(&key(1), L4Proto::Tcp, ACK, 14 * SEC), Lookup::Expired { slot } if t.get(slot).tcp == Some(TcpState::Close)));
        assert_eq!(t.lookup(&key(1), L4Proto::Tcp, ACK, 14 * SEC), Lookup::Miss);
        assert!(t.is_empty());
    }

    /// A segment without SYN, FIN, RST or ACK (PSH, URG = 0x20, or no flag)
    /// changes no state, as in IPVS, but keeps the connection alive.
    #[test]
    fn a_segment_without_state_flags_changes_no_state() {
        let mut t = ConnTable::new(8, Timeouts::default());
        t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        for (flags, at) in [(0, 1), (PSH, 2), (0x20 | PSH, 3)] {
            let (c, _, was_active) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, flags, at * SEC));
            assert_eq!((c.tcp, c.expires, was_active), (Some(TcpState::SynRecv), (at + 60) * SEC, false), "flags {flags:#x}");
        }
        let (c, _, _) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, ACK, 4 * SEC));
        assert_eq!(c.tcp, Some(TcpState::Established));
    }

    /// The watched flags skip the state machine only for segments it
    /// would leave as they are: for every state and every flags byte with
    /// SYN, FIN, RST or ACK, an unwatched segment keeps the state and
    /// would not end the connection.
    #[test]
    fn only_segments_that_change_nothing_go_unwatched() {
        let state_flags = SYN | FIN | RST | ACK;
        for s in [TcpState::SynRecv, TcpState::Established, TcpState::FinWait, TcpState::Close] {
            let watch = watched_flags(Some(s));
            for flags in 0..=u8::MAX {
                if flags & state_flags == 0 || flags & watch != 0 {
                    continue;
                }
                assert_eq!(ConnTable::tcp_next(Some(s), flags), s, "{s:?} {flags:#x}");
                let mut t = ConnTable::new(1, Timeouts::default());
                let n = t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap() as usize;
                t.slots[n].conn.tcp = Some(s);
                assert!(ConnTable::tcp_segment(&mut t.slots[n], Dir::In, s, flags, L4Proto::Tcp).is_some(), "{s:?} {flags:#x} would end it");
            }
        }
        assert_eq!(watched_flags(None), 0, "UDP and ICMP watch nothing");
    }

    #[test]
    fn a_new_syn_on_a_closing_connection_ends_it() {
        for closing in [FIN | ACK, RST] {
            let mut t = ConnTable::new(8, Timeouts::default());
            t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
            t.lookup(&key(1), L4Proto::Tcp, ACK, SEC);
            // A retransmitted SYN of a live connection keeps it.
            let (c, _, _) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, SYN, SEC));
            assert_eq!(c.tcp, Some(TcpState::Established));
            t.lookup(&key(1), L4Proto::Tcp, closing, 2 * SEC);
            // Only the client's SYN (not a SYN-ACK, not from the server side) starts over.
            hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, SYN | ACK, 3 * SEC));
            hit_of(&mut t, |t| t.lookup(&reply(1), L4Proto::Tcp, SYN, 3 * SEC));
            assert!(matches!(t.lookup(&key(1), L4Proto::Tcp, SYN, 3 * SEC), Lookup::Expired { slot } if t.get(slot).client == key(1)));
            assert_eq!(t.lookup(&reply(1), L4Proto::Tcp, ACK, 3 * SEC), Lookup::Miss, "both index entries gone");
            assert!(t.is_empty());
        }
    }

    #[test]
    fn nat_connections_are_found_from_both_sides_and_removed_whole() {
        let mut t = ConnTable::new(8, Timeouts::default());
        t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(2, 1), 0).unwrap();
        let (c, dir, _) = hit_of(&mut t, |t| t.lookup(&reply(1), L4Proto::Tcp, SYN | ACK, SEC));
        assert_eq!((dir, c.service, c.dest, c.client, c.peer_mac), (Dir::Out, 2, 1, key(1), MacAddr([2, 0, 0, 0, 0, 10])));
        let (_, dir, _) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, ACK, SEC));
        assert_eq!(dir, Dir::In);
        // Both directions advance one state machine.
        t.lookup(&reply(1), L4Proto::Tcp, RST, 2 * SEC);
        let (c, _, _) = hit_of(&mut t, |t| t.lookup(&key(1), L4Proto::Tcp, ACK, 2 * SEC));
        assert_eq!(c.tcp, Some(TcpState::Close));
        // Expiry removes both index entries; the slot is reused.
        assert_eq!(t.sweep(100 * SEC, |k, _| assert_eq!(*k, key(1))), 1);
        assert_eq!(t.lookup(&reply(1), L4Proto::Tcp, ACK, 100 * SEC), Lookup::Miss);
        assert_eq!(t.lookup(&key(1), L4Proto::Tcp, ACK, 100 * SEC), Lookup::Miss);
        t.insert(key(2), Some(reply(2)), L4Proto::Tcp, SYN, b(0, 0), 100 * SEC).unwrap();
        assert_eq!(t.slots.len(), 1, "the freed slot was reused");
    }

    #[test]
    fn taken_tuples_are_refused() {
        let mut t = ConnTable::new(8, Timeouts::default());
        t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        assert!(t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).is_none());
        // Another client whose reply tuple would collide.
        let mut other = key(1);
        other.src = Ipv4Addr::new(198, 18, 0, 99);
        assert!(t.insert(other, Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn udp_uses_its_timeout() {
        let mut t = ConnTable::new(8, Timeouts::default());
        let mut k = key(7);
        k.proto = 17;
        let slot = t.insert(k, None, L4Proto::Udp, 0, b(3, 1), 5).unwrap();
        let c = *t.get(slot);
        assert_eq!((c.tcp, c.service, c.dest, c.expires, c.is_active()), (None, 3, 1, 5 + 300 * SEC, true));
        assert!(ConnTable::starts_active(L4Proto::Udp, 0));
        assert!(!ConnTable::starts_active(L4Proto::Tcp, SYN));
    }

    /// Full of NAT connections (two index entries each): every one is
    /// found from both sides, and removing them all empties the index.
    #[test]
    fn a_full_table_of_nat_connections_finds_every_tuple() {
        let n = 5000u16;
        let mut t = ConnTable::new(usize::from(n), Timeouts::default());
        for p in 0..n {
            t.insert(key(p), Some(reply(p)), L4Proto::Tcp, SYN, b(0, 0), 0).expect("room for capacity connections");
        }
        assert!(t.insert(key(n), None, L4Proto::Tcp, SYN, b(0, 0), 0).is_none(), "full");
        for p in 0..n {
            assert_eq!(hit_of(&mut t, |t| t.lookup(&key(p), L4Proto::Tcp, ACK, SEC)).1, Dir::In);
            assert_eq!(hit_of(&mut t, |t| t.lookup(&reply(p), L4Proto::Tcp, ACK, SEC)).1, Dir::Out);
        }
        for p in 0..n {
            assert!(t.remove_key(&key(p)).is_some());
        }
        assert!(t.is_empty());
        assert_eq!(t.lookup(&reply(7), L4Proto::Tcp, ACK, SEC), Lookup::Miss);
    }

    #[test]
    fn full_table_refuses_new_but_serves_existing() {
        let mut t = ConnTable::new(2, Timeouts::default());
        t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        t.insert(key(2), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        assert!(t.insert(key(3), None, L4Proto::Tcp, SYN, b(0, 0), 0).is_none());
        assert!(matches!(t.lookup(&key(1), L4Proto::Tcp, ACK, 1), Lookup::Hit { .. }));
    }

    #[test]
    fn sweep_removes_only_expired() {
        let mut t = ConnTable::new(8, Timeouts::default());
        t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        t.insert(key(2), None, L4Proto::Tcp, SYN, b(0, 0), 30 * SEC).unwrap();
        let mut gone = Vec::new();
        // Expiring at 60.000 s: gone once second 60 is over.
        assert_eq!(t.sweep(60 * SEC, |k, _| gone.push(k.sport)), 0);
        assert_eq!(t.sweep(61 * SEC, |k, _| gone.push(k.sport)), 1);
        assert_eq!(gone, [1]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.sweep(91 * SEC, |_, _| {}), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_closing_connection_expires_on_its_shorter_timeout() {
        let mut t = ConnTable::new(8, Timeouts::default());
        t.insert(key(1), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        t.lookup(&key(1), L4Proto::Tcp, ACK, SEC); // established: 901 s
        t.lookup(&key(1), L4Proto::Tcp, FIN | ACK, 2 * SEC); // fin: 122 s
        assert_eq!(t.sweep(122 * SEC, |_, _| {}), 0, "expires during second 122");
        assert_eq!(t.sweep(123 * SEC, |_, _| {}), 1, "gone once second 122 is over, not at 901 s");
    }

    /// What a hit reads lies in the slot's first cache line; a slot is
    /// two lines, aligned (the layout `Slot`'s comment promises).
    #[test]
    fn a_hit_reads_one_cache_line() {
        use core::mem::{offset_of, size_of, size_of_val};
        assert_eq!((size_of::<Slot>(), core::mem::align_of::<Slot>()), (128, 64));
        let mut t = ConnTable::new(1, Timeouts::default());
        let slot = t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).expect("room");
        let s = t.slots[slot as usize];
        let c = &s.conn;
        let hot = [
            (offset_of!(Slot, out), size_of_val(&s.out)),
            (offset_of!(Slot, filed_at), size_of_val(&s.filed_at)),
            (offset_of!(Slot, timer), size_of_val(&s.timer)),
            (offset_of!(Slot, live), size_of_val(&s.live)),
            (offset_of!(Slot, watch), size_of_val(&s.watch)),
            (offset_of!(Slot, conn.client), size_of_val(&c.client)),
            (offset_of!(Slot, conn.tcp), size_of_val(&c.tcp)),
            (offset_of!(Slot, conn.toa_pending), size_of_val(&c.toa_pending)),
            (offset_of!(Slot, conn.service), size_of_val(&c.service)),
            (offset_of!(Slot, conn.dest), size_of_val(&c.dest)),
            (offset_of!(Slot, conn.expires), size_of_val(&c.expires)),
        ];
        for (at, len) in hot {
            assert!(at + len <= 64, "a hot field at {at}..{} leaves the first line", at + len);
        }
        // What only NAT and FullNAT read is the second line, which their
        // connections' prefetch adds (at 64 bytes from the slot).
        for at in [
            offset_of!(Slot, conn.real),
            offset_of!(Slot, conn.real_port),
            offset_of!(Slot, conn.peer_mac),
            offset_of!(Slot, conn.local),
            offset_of!(Slot, conn.nat),
        ] {
            assert!(at >= 64, "a rewrite field at {at} is in the first line: move it or the prefetch");
        }
    }

    /// The index entries, and so the prefetch stages' hints, say whether
    /// a connection's packets read the slot's second line: those with a
    /// reply tuple (NAT, FullNAT) do, DR's and TUN's do not; and the
    /// packing keeps every field, up to the largest slot.
    #[test]
    fn entries_say_which_connections_read_the_second_line() {
        let mut t = ConnTable::new(8, Timeouts::default());
        let nat = t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        let dr = t.insert(key(2), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        for (tuple, slot, dir, rewrites) in [(key(1), nat, Dir::In, true), (reply(1), nat, Dir::Out, true), (key(2), dr, Dir::In, false)] {
            assert_eq!(t.find(tuple.words()), Some(Ref { slot, dir, rewrites }));
            let hint = hint_for(&t, tuple);
            // The stages name the tuple's own entry but for a tag collision.
            assert!(hint == Hint::NONE || Ref::unpack(hint.0) == Ref { slot, dir, rewrites } || Ref::unpack(hint.0).slot != slot);
        }
        for slot in [0, 1, ConnTable::MAX_CAPACITY as u32 - 1] {
            for (dir, rewrites) in [(Dir::In, false), (Dir::In, true), (Dir::Out, true)] {
                let r = Ref { slot, dir, rewrites };
                assert_eq!(Ref::unpack(r.packed()), r);
                assert_ne!(r.packed(), NIL, "no entry is NIL");
            }
        }
        assert!(Ref::unpack(NIL).slot as usize >= ConnTable::MAX_CAPACITY, "NIL names no slot");
    }

    #[test]
    fn a_long_gap_between_sweeps_is_handled() {
        let mut t = ConnTable::new(8, Timeouts { udp: 5000, ..Timeouts::default() });
        let mut k = key(1);
        k.proto = 17;
        t.insert(k, None, L4Proto::Udp, 0, b(0, 0), 0).unwrap();
        t.insert(key(2), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        // 5000 s is past the 1024-second wheel: it survives the rounds.
        assert_eq!(t.sweep(3000 * SEC, |k, _| assert_eq!(k.sport, 2)), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.sweep(5000 * SEC, |_, _| {}), 0);
        assert_eq!(t.sweep(5001 * SEC, |_, _| {}), 1);
    }

    proptest::proptest! {
        /// Two tuples compare equal exactly when every field does: the
        /// two words lose nothing.
        #[test]
        fn tuples_are_equal_exactly_when_their_fields_are(
            a in proptest::prelude::any::<(u8, u32, u32, u16, u16)>(),
            flip in 0usize..6,
            bit in 0u32..32,
        ) {
            let key = |(proto, src, dst, sport, dport): (u8, u32, u32, u16, u16)| FlowKey { proto, src: src.into(), dst: dst.into(), sport, dport };
            let mut b = a;
            match flip {
                0 => b.0 ^= 1 << (bit % 8),
                1 => b.1 ^= 1 << bit,
                2 => b.2 ^= 1 << bit,
                3 => b.3 ^= 1 << (bit % 16),
                4 => b.4 ^= 1 << (bit % 16),
                _ => {}
            }
            proptest::prop_assert_eq!(key(a) == key(b), a == b);
            proptest::prop_assert_eq!(key(a).words() == key(b).words(), a == b);
            let back = FlowKey::from_words(key(a).words());
            proptest::prop_assert_eq!((back.proto, back.src, back.dst, back.sport, back.dport), (a.0, a.1.into(), a.2.into(), a.3, a.4));
        }
    }

    proptest::proptest! {
        /// Against a brute-force model: after every sweep, exactly the
        /// connections whose expiry has passed are gone, whatever the mix
        /// of inserts, refreshes, state changes and time jumps.
        #[test]
        fn wheel_expires_exactly_like_a_full_scan(
            ops in proptest::collection::vec((0u8..4, 0u16..24, 0u64..3000), 1..200),
        ) {
            let timeouts = Timeouts { tcp_syn: 7, tcp: 40, tcp_fin: 3, tcp_close: 1, udp: 1500, icmp: 20 };
            let mut t = ConnTable::new(64, timeouts);
            let mut model: std::collections::HashMap<u16, (L4Proto, u64, Option<TcpState>)> = Default::default();
            let mut now = 0u64;
            for (op, port, dt) in ops {
                now += dt * SEC / 100;
                let udp = port % 2 == 0;
                let proto = if udp { L4Proto::Udp } else { L4Proto::Tcp };
                let mut k = key(port);
                k.proto = proto.number();
                match op {
                    0 => {
                        // The model's own view of whether the entry is live.
                        let live = model.get(&port).is_some_and(|m| m.1 > now);
                        let r = t.insert(k, None, proto, SYN, b(0, 0), now);
                        if !live && !model.contains_key(&port) {
                            let c = *t.get(r.unwrap());
                            model.insert(port, (proto, c.expires, c.tcp));
                        }
                    }
                    1 | 2 => {
                        let flags = if op == 1 { ACK } else { FIN | ACK };
                        match t.lookup(&k, proto, flags, now) {
                            Lookup::Hit { slot, .. } => {
                                let conn = *t.get(slot);
                                let m = model.get(&port).copied();
                                proptest::prop_assert!(m.is_some_and(|m| m.1 > now));
                                model.insert(port, (proto, conn.expires, conn.tcp));
                            }
                            Lookup::Expired { .. } | Lookup::Miss => {
                                proptest::prop_assert!(model.get(&port).is_none_or(|m| m.1 <= now));
                                model.remove(&port);
                            }
                        }
                    }
                    _ => {
                        // A sweep removes what expired before this second began.
                        let second_start = now / SEC * SEC;
                        let mut gone = Vec::new();
                        t.sweep(now, |k, _| gone.push(k.sport));
                        let mut want: Vec<u16> = model.iter().filter(|(_, m)| m.1 < second_start).map(|(p, _)| *p).collect();
                        model.retain(|_, m| m.1 >= second_start);
                        gone.sort_unstable();
                        want.sort_unstable();
                        proptest::prop_assert_eq!(gone, want);
                        proptest::prop_assert_eq!(t.len(), model.len());
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// The memo never changes an answer: two tables given the same
        /// inserts (with and without reply tuples), removals, lookups from
        /// either side with any flags, time jumps and sweeps agree in
        /// everything, one consulting its memo and one not (its memo is
        /// emptied before every lookup, so every lookup goes through the
        /// index, as without a memo). Now and then every entry of the
        /// first one's memo is overwritten with one index entry (of a live
        /// connection or a gone one, either direction, or none), as if all
        /// tuples shared one entry that another wrote last.
        #[test]
        fn the_memo_never_changes_an_answer(
            ops in proptest::collection::vec((0u8..6, 0u16..12, proptest::bool::ANY, 0u8..4, 0u64..400), 1..300),
        ) {
            let timeouts = Timeouts { tcp_syn: 7, tcp: 40, tcp_fin: 3, tcp_close: 1, udp: 20, icmp: 20 };
            let (mut memo, mut plain) = (ConnTable::new(8, timeouts), ConnTable::new(8, timeouts));
            let tuple = |p: u16, out: bool| if out { reply(p) } else { key(p) };
            let mut now = 0;
            for (op, p, out, f, dt) in ops {
                now += dt * SEC / 100;
                let flags = [SYN, ACK, FIN | ACK, RST][usize::from(f)];
                match op {
                    0 => proptest::prop_assert_eq!(
                        memo.insert(key(p), out.then(|| reply(p)), L4Proto::Tcp, flags, b(0, 0), now),
                        plain.insert(key(p), out.then(|| reply(p)), L4Proto::Tcp, flags, b(0, 0), now)
                    ),
                    1 => proptest::prop_assert_eq!(memo.remove_key(&tuple(p, out)), plain.remove_key(&tuple(p, out))),
                    2 => proptest::prop_assert_eq!(memo.sweep(now, |_, _| {}), plain.sweep(now, |_, _| {})),
                    3 => memo.recent.fill(if p < 10 { u32::from(p) } else { NIL }),
                    _ => {
                        let got = memo.lookup(&tuple(p, out), L4Proto::Tcp, flags, now);
                        plain.recent.fill(NIL);
                        proptest::prop_assert_eq!(got, plain.lookup(&tuple(p, out), L4Proto::Tcp, flags, now));
                        if let Lookup::Hit { slot, .. } | Lookup::Expired { slot } = got {
                            proptest::prop_assert_eq!(memo.get(slot), plain.get(slot));
                        }
                    }
                }
            }
        }
    }

    /// A small table's tuples, both directions, are found through the
    /// memo (a test that it is used, not only that it is right), and a
    /// big one's not.
    #[test]
    fn a_small_table_remembers_its_tuples() {
        let mut t = ConnTable::new(RECENT_UNTIL, Timeouts::default());
        let slot = t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        let [client, server] = Ref::of(slot, true).map(Ref::packed);
        let remembered = |t: &ConnTable, r: u32| t.recent.iter().filter(|&&e| e == r).count();
        assert_eq!((remembered(&t, client), remembered(&t, server)), (0, 0), "nothing before a lookup");
        t.lookup(&reply(1), L4Proto::Tcp, ACK, SEC);
        assert_eq!((remembered(&t, client), remembered(&t, server)), (0, 1), "the reply's tuple");
        t.lookup(&key(1), L4Proto::Tcp, ACK, SEC);
        assert_eq!((remembered(&t, client), remembered(&t, server)), (1, 1), "and the client's");
        // Found through the memo: with their index entries taken away (a
        // state no table gets into by itself), the lookups still find them.
        for (tuple, r) in [(key(1), client), (reply(1), server)] {
            t.index.remove(t.index.hash(tuple.words()), r);
        }
        assert!(matches!(t.lookup(&key(1), L4Proto::Tcp, ACK, SEC), Lookup::Hit { slot: s, dir: Dir::In, .. } if s == slot));
        assert!(matches!(t.lookup(&reply(1), L4Proto::Tcp, ACK, SEC), Lookup::Hit { slot: s, dir: Dir::Out, .. } if s == slot));
        // With RECENT_UNTIL connections, lookups go to the index only.
        for p in 2..=RECENT_UNTIL as u16 {
            t.insert(key(p), None, L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        }
        assert_eq!(t.lookup(&key(1), L4Proto::Tcp, ACK, SEC), Lookup::Miss, "not through the memo");
        let before = t.recent.clone();
        t.lookup(&key(2), L4Proto::Tcp, ACK, SEC);
        assert_eq!(t.recent, before, "nothing remembered");
    }

    /// The prefetch stages' hint for `tuple`, as the worker takes it.
    fn hint_for(t: &ConnTable, tuple: FlowKey) -> Hint {
        t.prefetch_entry(t.prefetch_index(tuple.words()))
    }

    #[test]
    fn a_hint_is_checked_before_it_is_trusted() {
        let mut t = ConnTable::new(8, Timeouts::default());
        let slot = t.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
        let hint = |slot, dir| Hint(Ref { slot, dir, rewrites: true }.packed());
        let (hint_in, hint_out) = (hint(slot, Dir::In), hint(slot, Dir::Out));
        // The stages name an entry whose tag matches in the tuple's home
        // bucket: its own, or (tags colliding) another's, or none.
        for tuple in [key(1), reply(1), key(2)] {
            assert!([Hint::NONE, hint_in, hint_out].contains(&hint_for(&t, tuple)));
        }
        // Its own, but for a one-in-many-thousands tag collision (each
        // table hashes with its own seed, so a few tables settle it).
        let own = (0..4).any(|_| {
            let mut u = ConnTable::new(8, Timeouts::default());
            let s = u.insert(key(1), Some(reply(1)), L4Proto::Tcp, SYN, b(0, 0), 0).unwrap();
            hint_for(&u, key(1)) == hint(s, Dir::In)
        });
        assert!(own, "the stages name the tuple's own entry");
        let hit = |t: &mut ConnTable, tuple: FlowKey, hint| match t.lookup_hinted(tuple.words(), hint, L4Proto::Tcp, ACK, SEC) {
            Lookup::Hit { slot, dir, .. } => Some((slot, dir)),
            _ => None,
        };
        // Right, and each direction's hint given for the other's tuple.
        assert_eq!(hit(&mut t, key(1), hint_in), Some((slot, Dir::In)));
        assert_eq!(hit(&mut t, key(1), hint_out), Some((slot, Dir::In)));
        assert_eq!(hit(&mut t, reply(1), hint_in), Some((slot, Dir::Out)));
        // Stale: the connection ended; its slot still holds the tuple.
        t.remove_key(&key(1)).unwrap();
        assert_eq!(t.lookup_hinted(key(1).words(), hint_in, L4Proto::Tcp, ACK, SEC), Lookup::Miss);
        // Stale: the slot now holds another connection, which the hint
        // names rightly for its own tuple only.
        assert_eq!(t.insert(key(2), Some(reply(2)), L4Proto::Tcp, SYN, b(0, 0), SEC), Some(slot));
        assert_eq!(t.lookup_hinted(key(1).words(), hint_in, L4Proto::Tcp, ACK, SEC), Lookup::Miss);
        assert_eq!(t.lookup_hinted(reply(1).words(), hint_out, L4Proto::Tcp, ACK, SEC), Lookup::Miss);
        assert_eq!(hit(&mut t, key(2), hint_in), Some((slot, Dir::In)));
        assert_eq!(hit(&mut t, reply(2), hint_in), Some((slot, Dir::Out)));
    }

    proptest::proptest! {
        /// Whatever the hint (right, another tuple's, or stale by the
        /// time it is used), a lookup answers as one without: two tables
        /// given the same inserts, removals and lookups agree, one looked
        /// up with hints its prefetch stages gave at random earlier
        /// moments for random tuples.
        #[test]
        fn hints_never_change_an_answer(
            ops in proptest::collection::vec((0u8..4, 0u16..12, 0u16..12, proptest::bool::ANY), 1..300),
        ) {
            let (mut hinted, mut plain) = (ConnTable::new(8, Timeouts::default()), ConnTable::new(8, Timeouts::default()));
            let tuple = |p: u16, out: bool| if out { reply(p) } else { key(p) };
            let mut hints = [Hint::NONE; 24];
            for (op, p, q, out) in ops {
                match op {
                    0 => proptest::prop_assert_eq!(
                        hinted.insert(key(p), Some(reply(p)), L4Proto::Tcp, SYN, b(0, 0), 0),
                        plain.insert(key(p), Some(reply(p)), L4Proto::Tcp, SYN, b(0, 0), 0)
                    ),
                    1 => proptest::prop_assert_eq!(hinted.remove_key(&tuple(p, out)).is_some(), plain.remove_key(&tuple(p, out)).is_some()),
                    2 => hints[usize::from(q) * 2 + usize::from(out)] = hint_for(&hinted, tuple(q, out)),
                    _ => {
                        let hint = hints[usize::from(q) * 2 + usize::from(out)];
                        let got = hinted.lookup_hinted(tuple(p, out).words(), hint, L4Proto::Tcp, ACK, SEC);
                        proptest::prop_assert_eq!(got, plain.lookup(&tuple(p, out), L4Proto::Tcp, ACK, SEC));
                    }
                }
            }
        }
    }
}
