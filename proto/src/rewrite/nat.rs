//! Address and port rewrites for NAT and FullNAT, over IPv4 or IPv6
//! carrying TCP or UDP (or, over IPv4, an ICMP echo request or reply),
//! with every checksum updated incrementally (RFC 1624): no pass over the
//! payload.
//!
//! An ICMP echo's identifier stands for the port of the side that sent
//! the request: the source "port" of a request, the destination "port" of
//! a reply (so NAT of pings reads like NAT of UDP). Its checksum covers no
//! pseudo-header: address changes leave it alone.
//!
//! - NAT in: [`rewrite`] with a new destination (DNAT); NAT out: a new
//!   source (SNAT).
//! - FullNAT in: new source (local address and port) and destination (real
//!   server); out: the reverse.
//!
//! UDP over IPv4 with checksum 0 carries no checksum and keeps none; a
//! computed UDP checksum of 0 is sent as 0xffff (RFC 768).

use crate::checksum::{update16, update32, updated_without_pseudo_header};
use crate::error::{Error, Result};
use crate::ipv4::{protocol, Ipv4Packet};
use crate::ipv6::Ipv6Packet;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn v4(addr: Ipv4Addr, port: u16) -> Self {
        Endpoint { addr: IpAddr::V4(addr), port }
    }
}

fn update128(mut check: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    let (o, n) = (old.octets(), new.octets());
    for k in 0..8 {
        check = update16(check, u16::from_be_bytes([o[2 * k], o[2 * k + 1]]), u16::from_be_bytes([n[2 * k], n[2 * k + 1]]));
    }
    check
}

/// Where the L4 checksum and ports are, after the IP header.
struct L4 {
    /// Offset of the checksum field within the L4 header.
    check_at: usize,
    udp: bool,
    /// Whether the checksum covers the addresses (a pseudo-header).
    pseudo: bool,
    /// Offsets of the source and destination "ports" (`None`: the packet
    /// has none on that side; a new one is ignored).
    ports_at: [Option<usize>; 2],
}

fn l4_layout(proto: u8, l4: &[u8]) -> Result<L4> {
    use crate::icmp::v4_type::{ECHO_REPLY, ECHO_REQUEST};
    match proto {
        protocol::TCP if l4.len() >= crate::l4::TCP_MIN_HEADER_LEN => Ok(L4 { check_at: 16, udp: false, pseudo: true, ports_at: [Some(0), Some(2)] }),
        protocol::UDP if l4.len() >= crate::l4::UDP_HEADER_LEN => Ok(L4 { check_at: 6, udp: true, pseudo: true, ports_at: [Some(0), Some(2)] }),
        protocol::ICMP if l4.len() >= crate::icmp::HEADER_LEN && l4[1] == 0 => match l4[0] {
            ECHO_REQUEST => Ok(L4 { check_at: 2, udp: false, pseudo: false, ports_at: [Some(4), None] }),
            ECHO_REPLY => Ok(L4 { check_at: 2, udp: false, pseudo: false, ports_at: [None, Some(4)] }),
            _ => Err(Error::Malformed("ICMP other than an echo")),
        },
        protocol::TCP | protocol::UDP | protocol::ICMP => Err(Error::Truncated),
        _ => Err(Error::Malformed("not TCP, UDP or an ICMP echo")),
    }
}

/// Applies `f` (which updates a checksum for the address changes) and the
/// port changes to the L4 header in `l4`.
fn fix_l4(l4: &mut [u8], layout: &L4, src_port: Option<u16>, dst_port: Option<u16>, addr_delta: impl Fn(u16) -> u16) {
    let at = layout.check_at;
    let old_check = u16::from_be_bytes([l4[at], l4[at + 1]]);
    let keep_zero = layout.udp && old_check == 0;
    let mut check = old_check;
    if !keep_zero && layout.pseudo {
        check = addr_delta(check);
    }
    for (pos, new) in [(layout.ports_at[0], src_port), (layout.ports_at[1], dst_port)] {
        if let (Some(pos), Some(new)) = (pos, new) {
            let old = u16::from_be_bytes([l4[pos], l4[pos + 1]]);
            if !keep_zero {
                check = update16(check, old, new);
            }
            l4[pos..pos + 2].copy_from_slice(&new.to_be_bytes());
        }
    }
    if !keep_zero {
        // A UDP checksum of 0 would read as none (RFC 768).
        if layout.udp && check == 0 {
            check = 0xffff;
        }
        if !layout.pseudo {
            check = updated_without_pseudo_header(check, l4, at);
        }
        l4[at..at + 2].copy_from_slice(&check.to_be_bytes());
    }
}

/// Rewrites the source and/or destination of the IP packet in `packet`
/// (starting at the IP header). The new addresses must be of the packet's
/// family. Fragments other than the first have no L4 header: rejected.
#[inline(always)]
pub fn rewrite(packet: &mut [u8], src: Option<Endpoint>, dst: Option<Endpoint>) -> Result<()> {
    // The common case inline (it is most of NAT's per-packet work); the
    // general path out of line.
    if let (Ok(s), Ok(d)) = (v4(src), v4(dst)) {
        if rewrite_v4_plain(packet, s, d).is_some() {
            return Ok(());
        }
    }
    rewrite_general(packet, src, dst)
}

/// The checksum change of one IPv4 TCP/UDP rewrite, worked out once: a
/// connection's packets in one direction all carry the same tuple and
/// get the same new one, so the change to their checksums is the same
/// (RFC 1624: the sum of ~old + new over the changed words).
///
/// Both are kept as the two bytes lie in a packet, read in native order:
/// a one's complement sum is the same sum whichever byte of each word is
/// the high one (RFC 1071, 2.B), so the checksums are updated as they lie
/// in the packet, without swapping them in and out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta4 {
    /// For the IP header checksum (the addresses).
    ip: u16,
    /// For the TCP/UDP checksum (the addresses, through the
    /// pseudo-header, and the ports).
    l4: u16,
}

impl Delta4 {
    /// The change from the tuple `old` (source, destination) to `new`
    /// (`None`: that side unchanged).
    pub fn new(old: [(Ipv4Addr, u16); 2], new: [Option<(Ipv4Addr, u16)>; 2]) -> Self {
        let (mut addr, mut port) = (0u32, 0u32);
        for ((old_addr, old_port), new) in old.into_iter().zip(new) {
            if let Some((a, p)) = new {
                addr += halves(!u32::from(old_addr)) + halves(u32::from(a));
                port += u32::from(!old_port) + u32::from(p);
            }
        }
        let wire = |sum: u32| u16::from_ne_bytes(crate::checksum::fold(sum).to_be_bytes());
        Delta4 { ip: wire(addr), l4: wire(addr + port) }
    }
}

/// A 16-bit field of `h` as a number.
#[inline(always)]
fn be16(h: &[u8; 40], at: usize) -> u32 {
    u32::from(u16::from_be_bytes([h[at], h[at + 1]]))
}

/// The shape both one-pass rewrites handle: IPv4 without options, not a
/// fragment, a complete TCP or UDP header within the first 40 bytes
/// (shorter packets take the general path). Returns those bytes and
/// whether it is UDP.
#[inline(always)]
fn plain_v4(p: &mut [u8]) -> Option<(&mut [u8; 40], bool)> {
    let len = p.len();
    let h: &mut [u8; 40] = p.get_mut(..40)?.try_into().ok()?;
    let total = be16(h, 2) as usize;
    if h[0] != 0x45 || be16(h, 6) & 0x3fff != 0 || total > len {
        return None;
    }
    let udp = match h[9] {
        protocol::TCP if total >= 40 => false,
        protocol::UDP if total >= 28 => true,
        _ => return None,
    };
    Some((h, udp))
}

/// As [`rewrite`] for an IPv4 TCP or UDP packet whose current tuple is the
/// `old` that `delta` was made from (a connection's packet, found by its
/// tuple): no old value is read, no change summed. `None`: not the plain
/// shape (IP options, a fragment, not TCP/UDP, short); nothing written,
/// use [`rewrite`].
#[inline(always)]
pub fn rewrite_v4_known(p: &mut [u8], src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>, delta: Delta4) -> Option<()> {
    let (h, udp) = plain_v4(p)?;
    rewrite_v4_known_shape(h, udp, src, dst, delta);
    Some(())
}

/// As [`rewrite_v4_known`] for the first 40 bytes `h` of a packet the
/// caller has already found to be of the plain shape (IPv4 without
/// options, not a fragment, a complete UDP header when `udp`, else TCP's):
/// nothing is checked again. On a packet of another shape it writes the
/// wrong places (within `h`).
#[inline(always)]
pub fn rewrite_v4_known_shape(h: &mut [u8; 40], udp: bool, src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>, delta: Delta4) {
    let check_at = if udp { 26 } else { 36 };
    for (new, addr_at, port_at) in [(src, 12, 20), (dst, 16, 22)] {
        if let Some((a, port)) = new {
            h[addr_at..addr_at + 4].copy_from_slice(&a.octets());
            h[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
        }
    }
    // Native order, as the deltas (see [`Delta4`]): 0 and 0xffff read
    // the same either way.
    let ne16 = |h: &[u8; 40], at: usize| u32::from(u16::from_ne_bytes([h[at], h[at + 1]]));
    let ip_check = !crate::checksum::fold((!ne16(h, 10) & 0xffff) + u32::from(delta.ip));
    h[10..12].copy_from_slice(&ip_check.to_ne_bytes());
    let old = ne16(h, check_at);
    // UDP over IPv4 with checksum 0 carries none, and keeps none.
    if !(udp && old == 0) {
        let mut c = !crate::checksum::fold((!old & 0xffff) + u32::from(delta.l4));
        if udp && c == 0 {
            c = 0xffff;
        }
        h[check_at..check_at + 2].copy_from_slice(&c.to_ne_bytes());
    }
}

#[inline(never)]
fn rewrite_general(packet: &mut [u8], src: Option<Endpoint>, dst: Option<Endpoint>) -> Result<()> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => rewrite_v4(packet, src, dst),
        Some(6) => rewrite_v6(packet, src, dst),
        Some(_) => Err(Error::Malformed("not an IP packet")),
        None => Err(Error::Truncated),
    }
}

#[inline]
fn v4(e: Option<Endpoint>) -> Result<Option<(Ipv4Addr, u16)>> {
    match e {
        None => Ok(None),
        Some(Endpoint { addr: IpAddr::V4(a), port }) => Ok(Some((a, port))),
        Some(_) => Err(Error::Malformed("IPv6 address for an IPv4 packet")),
    }
}

fn v6(e: Option<Endpoint>) -> Result<Option<(Ipv6Addr, u16)>> {
    match e {
        None => Ok(None),
        Some(Endpoint { addr: IpAddr::V6(a), port }) => Ok(Some((a, port))),
        Some(_) => Err(Error::Malformed("IPv4 address for an IPv6 packet")),
    }
}

/// The sum of the 16-bit halves of `x`, for one's complement deltas.
#[inline]
fn halves(x: u32) -> u32 {
    (x >> 16) + (x & 0xffff)
}

/// The common case in one pass: IPv4 without options, not a fragment,
/// carrying a complete TCP or UDP header. The change of the tuple it
/// carries is worked out ([`Delta4`]) and applied to both checksums at
/// once. `None`: not that shape, nothing written (the general path
/// decides).
#[inline(always)]
fn rewrite_v4_plain(p: &mut [u8], src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>) -> Option<()> {
    let (h, udp) = plain_v4(p)?;
    let at = |a: usize, port: usize| (Ipv4Addr::new(h[a], h[a + 1], h[a + 2], h[a + 3]), be16(h, port) as u16);
    let delta = Delta4::new([at(12, 20), at(16, 22)], [src, dst]);
    rewrite_v4_known_shape(h, udp, src, dst, delta);
    Some(())
}

fn rewrite_v4(packet: &mut [u8], src: Option<Endpoint>, dst: Option<Endpoint>) -> Result<()> {
    let (src, dst) = (v4(src)?, v4(dst)?);
    let mut ip = Ipv4Packet::new_checked(&mut *packet)?;
    let frag_offset = ip.is_fragment() && !ip.is_first_fragment();
    if frag_offset {
        return Err(Error::Malformed("non-first fragment has no ports"));
    }
    let (old_src, old_dst, proto, hl) = (ip.src(), ip.dst(), ip.protocol(), ip.header_len());
    let layout = l4_layout(proto, ip.payload())?;
    let mut ip_check = ip.header_checksum();
    if let Some((a, _)) = src {
        ip_check = update32(ip_check, u32::from(old_src), u32::from(a));
        ip.set_src(a);
    }
    if let Some((a, _)) = dst {
        ip_check = update32(ip_check, u32::from(old_dst), u32::from(a));
        ip.set_dst(a);
    }
    ip.set_header_checksum(ip_check);
    let total = ip.total_len();
    let l4 = &mut packet[hl..total];
    fix_l4(l4, &layout, src.map(|s| s.1), dst.map(|d| d.1), |mut c| {
        if let Some((a, _)) = src {
            c = update32(c, u32::from(old_src), u32::from(a));
        }
        if let Some((a, _)) = dst {
            c = update32(c, u32::from(old_dst), u32::from(a));
        }
        c
    });
    Ok(())
}

fn rewrite_v6(packet: &mut [u8], src: Option<Endpoint>, dst: Option<Endpoint>) -> Result<()> {
    let (src, dst) = (v6(src)?, v6(dst)?);
    let mut ip = Ipv6Packet::new_checked(&mut *packet)?;
    let (old_src, old_dst, proto, len) = (ip.src(), ip.dst(), ip.next_header(), ip.payload_len());
    let layout = l4_layout(proto, ip.payload())?;
    if let Some((a, _)) = src {
        ip.set_src(a);
    }
    if let Some((a, _)) = dst {
        ip.set_dst(a);
    }
    let l4 = &mut packet[crate::ipv6::HEADER_LEN..crate::ipv6::HEADER_LEN + len];
    // IPv6 UDP checksums are mandatory: a zero is not "none" here.
    let layout = L4 { udp: false, ..layout };
    fix_l4(l4, &layout, src.map(|s| s.1), dst.map(|d| d.1), |mut c| {
        if let Some((a, _)) = src {
            c = update128(c, old_src, a);
        }
        if let Some((a, _)) = dst {
            c = update128(c, old_dst, a);
        }
        c
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    /// An IP packet (no Ethernet) built and checksummed by etherparse.
    fn build(v6: bool, tcp: bool, src: Endpoint, dst: Endpoint, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let ip = match (src.addr, dst.addr) {
            (IpAddr::V4(s), IpAddr::V4(d)) if !v6 => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) if v6 => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("family mismatch"),
        };
        if tcp {
            ip.tcp(src.port, dst.port, 12345, 4096).ack(777).write(&mut out, payload).unwrap();
        } else {
            ip.udp(src.port, dst.port).write(&mut out, payload).unwrap();
        }
        out
    }

    fn ep4(a: [u8; 4], port: u16) -> Endpoint {
        Endpoint::v4(Ipv4Addr::from(a), port)
    }

    #[test]
    fn dnat_snat_and_fullnat_are_byte_exact() {
        let client = ep4([198, 51, 100, 7], 40000);
        let vip = ep4([198, 18, 0, 100], 80);
        let rs = ep4([10, 1, 0, 11], 8080);
        let lip = ep4([10, 1, 0, 2], 5001);
        for tcp in [true, false] {
            let mut p = build(false, tcp, client, vip, b"GET / HTTP/1.1\r\n\r\n");
            rewrite(&mut p, None, Some(rs)).unwrap();
            assert_eq!(p, build(false, tcp, client, rs, b"GET / HTTP/1.1\r\n\r\n"), "DNAT tcp={tcp}");
            let mut r = build(false, tcp, rs, client, b"HTTP/1.1 200 OK\r\n");
            rewrite(&mut r, Some(vip), None).unwrap();
            assert_eq!(r, build(false, tcp, vip, client, b"HTTP/1.1 200 OK\r\n"), "SNAT tcp={tcp}");
            let mut f = build(false, tcp, client, vip, b"x");
            rewrite(&mut f, Some(lip), Some(rs)).unwrap();
            assert_eq!(f, build(false, tcp, lip, rs, b"x"), "FullNAT in tcp={tcp}");
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_zero_result_becomes_ffff() {
        let mut p = build(false, false, ep4([1, 2, 3, 4], 1000), ep4([5, 6, 7, 8], 53), b"abc");
        p[26] = 0;
        p[27] = 0;
        rewrite(&mut p, None, Some(ep4([9, 9, 9, 9], 5353))).unwrap();
        assert_eq!((p[26], p[27]), (0, 0), "no checksum stays no checksum");
        assert_eq!(&p[16..20], &[9, 9, 9, 9]);
        // Find a destination port that makes the checksum compute to 0.
        let base = build(false, false, ep4([1, 2, 3, 4], 1000), ep4([5, 6, 7, 8], 53), b"abc");
        let hit = (0..=u16::MAX).find_map(|port| {
            let mut q = base.clone();
            rewrite(&mut q, None, Some(ep4([5, 6, 7, 8], port))).unwrap();
            let mut z = q.clone();
            z[26] = 0;
            z[27] = 0;
            let ph = crate::checksum::pseudo_header_v4([1, 2, 3, 4], [5, 6, 7, 8], 17, 11);
            (crate::checksum::l4_checksum(ph, &z[20..]) == 0).then_some(q)
        });
        // The port enters the checksum linearly: some port must give 0.
        let q = hit.expect("a port whose checksum computes to 0");
        assert_eq!((q[26], q[27]), (0xff, 0xff));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut p = build(false, true, ep4([1, 2, 3, 4], 1), ep4([5, 6, 7, 8], 2), b"");
        let v6 = Endpoint { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), port: 1 };
        assert!(rewrite(&mut p, Some(v6), None).is_err());
        p[9] = 1; // ICMP
        assert!(rewrite(&mut p, None, Some(ep4([1, 1, 1, 1], 1))).is_err());
        assert!(rewrite(&mut [], None, None).is_err());
        assert!(rewrite(&mut [0x45; 10], None, None).is_err());
        let mut p = build(false, true, ep4([1, 2, 3, 4], 1), ep4([5, 6, 7, 8], 2), b"");
        p[6] = 0;
        p[7] = 1; // fragment offset 8
        assert!(rewrite(&mut p, None, Some(ep4([1, 1, 1, 1], 1))).is_err());
        let mut short = build(false, true, ep4([1, 2, 3, 4], 1), ep4([5, 6, 7, 8], 2), b"");
        short.truncate(30);
        short[3] = 30;
        assert_eq!(rewrite(&mut short, None, Some(ep4([1, 1, 1, 1], 1))), Err(Error::Truncated));
    }

    fn endpoint(v6: bool) -> impl Strategy<Value = Endpoint> {
        (any::<[u8; 16]>(), any::<u16>()).prop_map(move |(a, port)| {
            let addr = if v6 { IpAddr::V6(Ipv6Addr::from(a)) } else { IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])) };
            Endpoint { addr, port }
        })
    }

    fn case() -> impl Strategy<Value = (bool, bool, [Endpoint; 4], Vec<u8>)> {
        (any::<bool>(), any::<bool>()).prop_flat_map(|(v6, tcp)| {
            (Just(v6), Just(tcp), [endpoint(v6), endpoint(v6), endpoint(v6), endpoint(v6)], proptest::collection::vec(any::<u8>(), 0..300))
        })
    }

    /// Every checksum in `p` (an IP packet) verifies, by etherparse's math.
    fn checksums_ok(p: &[u8]) -> bool {
        let s = etherparse::SlicedPacket::from_ip(p).unwrap();
        let ip_ok = match &s.net {
            Some(etherparse::NetSlice::Ipv4(i)) => i.header().to_header().calc_header_checksum() == i.header().header_checksum(),
            _ => true,
        };
        let l4_ok = match (&s.net, &s.transport) {
            (Some(etherparse::NetSlice::Ipv4(i)), Some(etherparse::TransportSlice::Tcp(t))) => {
                t.to_header().calc_checksum_ipv4(&i.header().to_header(), t.payload()).unwrap() == t.checksum()
            }
            (Some(etherparse::NetSlice::Ipv6(i)), Some(etherparse::TransportSlice::Tcp(t))) => {
                t.to_header().calc_checksum_ipv6(&i.header().to_header(), t.payload()).unwrap() == t.checksum()
            }
            (Some(etherparse::NetSlice::Ipv4(i)), Some(etherparse::TransportSlice::Udp(u))) => {
                u.checksum() == 0 || u.to_header().calc_checksum_ipv4(&i.header().to_header(), u.payload()).unwrap() == u.checksum()
            }
            (Some(etherparse::NetSlice::Ipv6(i)), Some(etherparse::TransportSlice::Udp(u))) => {
                u.to_header().calc_checksum_ipv6(&i.header().to_header(), u.payload()).unwrap() == u.checksum()
            }
            _ => false,
        };
        ip_ok && l4_ok
    }

    proptest! {
        /// Any TCP/UDP packet, any rewrite: etherparse parses the result,
        /// every checksum verifies, the fields are exactly the new ones, and
        /// FullNAT in followed by the reverse restores the original bytes.
        #[test]
        fn rewrites_keep_checksums_and_round_trip((v6, tcp, [c, v, l, r], payload) in case()) {
            let original = build(v6, tcp, c, v, &payload);
            // DNAT: the result equals the packet built with the new destination.
            let mut d = original.clone();
            rewrite(&mut d, None, Some(r)).unwrap();
            prop_assert!(checksums_ok(&d));
            prop_assert_eq!(&d, &build(v6, tcp, c, r, &payload));
            // FullNAT in, then out with the roles swapped back.
            let mut f = original.clone();
            rewrite(&mut f, Some(l), Some(r)).unwrap();
            prop_assert!(checksums_ok(&f));
            prop_assert_eq!(&f, &build(v6, tcp, l, r, &payload));
            rewrite(&mut f, Some(c), Some(v)).unwrap();
            prop_assert_eq!(&f, &original);
        }
    }

    proptest! {
        /// With a delta made from the packet's own tuple, the known-tuple
        /// rewrite writes exactly what the general one does, UDP checksum 0
        /// included; other shapes are left to the general one, untouched.
        #[test]
        fn known_tuple_rewrite_equals_the_general_one((_, tcp, [c, v, l, r], payload) in case().prop_filter("v4", |(v6, ..)| !v6), zero_udp in any::<bool>(), options in any::<bool>()) {
            let four = |e: Endpoint| match e.addr { IpAddr::V4(a) => (a, e.port), IpAddr::V6(_) => unreachable!() };
            let mut original = build(false, tcp, c, v, &payload);
            if zero_udp && !tcp {
                original[26..28].fill(0);
            }
            if options {
                original[0] = 0x46; // claims an option: not the plain shape
            }
            for (src, dst) in [(None, Some(r)), (Some(l), None), (Some(l), Some(r))] {
                let delta = Delta4::new([four(c), four(v)], [src.map(four), dst.map(four)]);
                let mut known = original.clone();
                let done = rewrite_v4_known(&mut known, src.map(four), dst.map(four), delta);
                if options || original.len() < 40 {
                    // IP options, or shorter than the 40 bytes it reads.
                    prop_assert!(done.is_none());
                    prop_assert_eq!(&known, &original);
                    continue;
                }
                prop_assert!(done.is_some());
                let mut general = original.clone();
                rewrite(&mut general, src, dst).unwrap();
                prop_assert_eq!(&known, &general);
            }
        }
    }

    /// An ICMP echo (request or reply) from `src` to `dst` with `id`.
    fn echo(request: bool, src: [u8; 4], dst: [u8; 4], id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64);
        let mut out = Vec::new();
        if request {
            b.icmpv4_echo_request(id, seq).write(&mut out, data).unwrap();
        } else {
            b.icmpv4_echo_reply(id, seq).write(&mut out, data).unwrap();
        }
        out
    }

    /// (type, id, seq, checksum right, IP checksum right, src, dst) as etherparse reads them.
    fn read_echo(p: &[u8]) -> (etherparse::Icmpv4Type, bool, bool, [u8; 4], [u8; 4]) {
        let s = etherparse::SlicedPacket::from_ip(p).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else { panic!("ipv4") };
        let h = ip.header().to_header();
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = s.transport else { panic!("icmp") };
        let good = icmp.checksum() == icmp.icmp_type().calc_checksum(icmp.payload());
        (icmp.icmp_type(), good, h.header_checksum == h.calc_header_checksum(), h.source, h.destination)
    }

    proptest! {
        /// FullNAT of a ping both ways: the request leaves from the local
        /// address with the local "port" as identifier, the reply returns
        /// to the client with its own identifier; checksums stay right.
        #[test]
        fn icmp_echo_fullnat_round_trip(id in any::<u16>(), lport in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            use etherparse::{IcmpEchoHeader, Icmpv4Type};
            let (client, vip, laddr, rs) = ([198, 51, 100, 7], [198, 18, 0, 100], [10, 1, 0, 3], [10, 1, 0, 11]);
            let mut req = echo(true, client, vip, id, seq, &data);
            rewrite(&mut req, Some(ep4(laddr, lport)), Some(ep4(rs, 0))).unwrap();
            prop_assert_eq!(read_echo(&req), (Icmpv4Type::EchoRequest(IcmpEchoHeader { id: lport, seq }), true, true, laddr, rs));
            let mut reply = echo(false, rs, laddr, lport, seq, &data);
            rewrite(&mut reply, Some(ep4(vip, 0)), Some(ep4(client, id))).unwrap();
            prop_assert_eq!(read_echo(&reply), (Icmpv4Type::EchoReply(IcmpEchoHeader { id, seq }), true, true, vip, client));
            // NAT: addresses only; the identifier stays.
            let mut req = echo(true, client, vip, id, seq, &data);
            rewrite(&mut req, None, Some(ep4(rs, 0))).unwrap();
            prop_assert_eq!(read_echo(&req), (Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }), true, true, client, rs));
        }
    }

    /// An echo reply that sums to zero (identifier, sequence and data 0)
    /// needs the checksum 0xffff, where the update gave 0 (found by the
    /// modes fuzz target: a FullNAT ping's reply back to a client that
    /// used identifier 0).
    #[test]
    fn an_echo_reply_that_sums_to_zero_gets_0xffff() {
        use etherparse::{IcmpEchoHeader, Icmpv4Type};
        let (client, vip, laddr, rs) = ([198, 51, 100, 7], [198, 18, 0, 100], [10, 1, 0, 3], [10, 1, 0, 11]);
        let mut reply = echo(false, rs, laddr, 4321, 0, &[0; 13]);
        rewrite(&mut reply, Some(ep4(vip, 0)), Some(ep4(client, 0))).unwrap();
        assert_eq!(&reply[22..24], &[0xff, 0xff]);
        assert_eq!(read_echo(&reply), (Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0, seq: 0 }), true, true, vip, client));
        // Summing to a multiple of 0xffff but not to zero: 0, as computed.
        let mut reply = echo(false, rs, laddr, 4321, 0, &[0xff, 0xff]);
        rewrite(&mut reply, Some(ep4(vip, 0)), Some(ep4(client, 0))).unwrap();
        assert_eq!(&reply[22..24], &[0, 0]);
        assert!(read_echo(&reply).1, "the checksum verifies");
    }

    #[test]
    fn other_icmp_is_refused() {
        let mut p = echo(true, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b"x");
        p[20] = crate::icmp::v4_type::TIME_EXCEEDED;
        assert!(rewrite(&mut p, None, Some(ep4([3, 3, 3, 3], 0))).is_err());
    }

    proptest! {
        /// The one-pass IPv4 path and the general one write the same bytes
        /// (both checksums included), TCP and UDP, any change of either end.
        #[test]
        fn plain_ipv4_path_matches_the_general_one(
            tcp in any::<bool>(), sport in any::<u16>(), dport in any::<u16>(),
            new_src in proptest::option::of((any::<[u8; 4]>(), any::<u16>())),
            new_dst in proptest::option::of((any::<[u8; 4]>(), any::<u16>())),
            payload in proptest::collection::vec(any::<u8>(), 0..60),
            zero_udp_checksum in any::<bool>(),
        ) {
            let mut p = build(false, tcp, ep4([198, 51, 100, 7], sport), ep4([198, 18, 0, 100], dport), &payload);
            if !tcp && zero_udp_checksum {
                p[26] = 0;
                p[27] = 0;
            }
            let (src, dst) = (new_src.map(|(a, port)| ep4(a, port)), new_dst.map(|(a, port)| ep4(a, port)));
            let mut general = p.clone();
            // The general path, forced: what the plain one must reproduce.
            {
                let (s4, d4) = (v4(src).unwrap(), v4(dst).unwrap());
                let mut ip = Ipv4Packet::new_checked(&mut general[..]).unwrap();
                let (old_src, old_dst, hl) = (ip.src(), ip.dst(), ip.header_len());
                let layout = l4_layout(ip.protocol(), ip.payload()).unwrap();
                let mut c = ip.header_checksum();
                if let Some((a, _)) = s4 { c = update32(c, u32::from(old_src), u32::from(a)); ip.set_src(a); }
                if let Some((a, _)) = d4 { c = update32(c, u32::from(old_dst), u32::from(a)); ip.set_dst(a); }
                ip.set_header_checksum(c);
                let total = ip.total_len();
                fix_l4(&mut general[hl..total], &layout, s4.map(|s| s.1), d4.map(|d| d.1), |mut c| {
                    if let Some((a, _)) = s4 { c = update32(c, u32::from(old_src), u32::from(a)); }
                    if let Some((a, _)) = d4 { c = update32(c, u32::from(old_dst), u32::from(a)); }
                    c
                });
            }
            let mut plain = p.clone();
            prop_assert!(rewrite_v4_plain(&mut plain, v4(src).unwrap(), v4(dst).unwrap()).is_some() || plain.len() < 40);
            if plain.len() >= 40 {
                prop_assert_eq!(plain, general);
            }
        }
    }
}
