//! ICMP errors about load-balanced flows. When a real server (or a router
//! between) reports a problem with a packet RVS rewrote, the error carries
//! the rewritten packet; before it goes on, both its outer addresses and
//! the embedded packet's addresses and ports are turned back into what the
//! other end knows, or its stack ignores the error.
//!
//! Example, FullNAT: the real server answers the LB's local address with
//! "port unreachable" quoting `LIP:lport -> RS:rport`; the client must get
//! it from the VIP, quoting `client:cport -> VIP:vport`.

use super::nat::Endpoint;
use crate::checksum::{self, update16, update32};
use crate::error::{Error, Result};
use crate::icmp::{embedded_flow, IcmpPacket};
use crate::ipv4::{protocol, Ipv4Packet};
use crate::ipv6::{self, Ipv6Packet};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ICMPv6's protocol number (next header).
const ICMPV6: u8 = 58;

fn v4(e: Endpoint) -> Result<(Ipv4Addr, u16)> {
    match e.addr {
        IpAddr::V4(a) => Ok((a, e.port)),
        IpAddr::V6(_) => Err(Error::Malformed("IPv6 endpoint for an ICMPv4 error")),
    }
}

/// Rewrites the ICMPv4 error in the IPv4 packet `packet`: outer addresses
/// to `outer_src -> outer_dst`; embedded packet to `inner_src -> inner_dst`.
/// Fixes the outer and embedded IP checksums, the embedded UDP (or TCP,
/// when quoted) checksum and the ICMP checksum.
pub fn translate_icmp_v4(packet: &mut [u8], outer_src: Ipv4Addr, outer_dst: Ipv4Addr, inner_src: Endpoint, inner_dst: Endpoint) -> Result<()> {
    let (isrc, idst) = (v4(inner_src)?, v4(inner_dst)?);
    let mut ip = Ipv4Packet::new_checked(&mut *packet)?;
    if ip.protocol() != protocol::ICMP || ip.is_fragment() {
        return Err(Error::Malformed("not an unfragmented ICMP packet"));
    }
    let icmp = IcmpPacket::new_checked(ip.payload())?;
    if !icmp.is_v4_error() {
        return Err(Error::Malformed("not an ICMP error"));
    }
    let flow = embedded_flow(icmp.payload())?;
    let (IpAddr::V4(old_src), IpAddr::V4(old_dst)) = (flow.src, flow.dst) else {
        return Err(Error::Malformed("ICMPv4 error quoting IPv6"));
    };
    ip.set_src(outer_src);
    ip.set_dst(outer_dst);
    ip.fill_checksum();

    let hl = ip.header_len();
    let total = ip.total_len();
    let msg = &mut packet[hl..total];
    {
        let quoted = &mut msg[crate::icmp::HEADER_LEN..];
        // Embedded IP header: addresses, then its checksum from scratch.
        quoted[12..16].copy_from_slice(&isrc.0.octets());
        quoted[16..20].copy_from_slice(&idst.0.octets());
        quoted[10] = 0;
        quoted[11] = 0;
        let c = checksum::checksum(&quoted[..flow.ip_len]);
        quoted[10..12].copy_from_slice(&c.to_be_bytes());
        // Embedded L4: ports, and its checksum if it was quoted.
        let addrs = |c: u16| update32(update32(c, u32::from(old_src), u32::from(isrc.0)), u32::from(old_dst), u32::from(idst.0));
        fix_quoted_l4(&mut quoted[flow.ip_len..], flow.protocol, [(flow.src_port, isrc.1), (flow.dst_port, idst.1)], addrs, true);
    }
    IcmpPacket::new_checked(msg)?.fill_checksum(0);
    Ok(())
}

/// Rewrites the ports (old -> new, source then destination) of a quoted L4
/// header and, when the quote reaches it, its checksum incrementally:
/// `addrs` applies the address changes of the pseudo-header. With
/// `udp_zero_is_none`, a UDP checksum of 0 (IPv4: none) stays 0 and a
/// computed 0 is written as 0xffff.
fn fix_quoted_l4(l4: &mut [u8], proto: u8, ports: [(u16, u16); 2], addrs: impl Fn(u16) -> u16, udp_zero_is_none: bool) {
    l4[0..2].copy_from_slice(&ports[0].1.to_be_bytes());
    l4[2..4].copy_from_slice(&ports[1].1.to_be_bytes());
    let udp = proto == protocol::UDP;
    let at = if udp { 6 } else { 16 };
    if l4.len() < at + 2 {
        return;
    }
    let old = u16::from_be_bytes([l4[at], l4[at + 1]]);
    if udp && udp_zero_is_none && old == 0 {
        return;
    }
    let mut c = update16(update16(addrs(old), ports[0].0, ports[0].1), ports[1].0, ports[1].1);
    if udp && udp_zero_is_none && c == 0 {
        c = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn v6(e: Endpoint) -> Result<(Ipv6Addr, u16)> {
    match e.addr {
        IpAddr::V6(a) => Ok((a, e.port)),
        IpAddr::V4(_) => Err(Error::Malformed("IPv4 endpoint for an ICMPv6 error")),
    }
}

fn update128(mut c: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    let (o, n) = (old.segments(), new.segments());
    for k in 0..8 {
        c = update16(c, o[k], n[k]);
    }
    c
}

/// As [`translate_icmp_v4`] for an ICMPv6 error in the IPv6 packet
/// `packet` (no extension headers). The ICMPv6 checksum covers the
/// pseudo-header, so it is recomputed after the outer addresses change.
pub fn translate_icmp_v6(packet: &mut [u8], outer_src: Ipv6Addr, outer_dst: Ipv6Addr, inner_src: Endpoint, inner_dst: Endpoint) -> Result<()> {
    let (isrc, idst) = (v6(inner_src)?, v6(inner_dst)?);
    let mut ip = Ipv6Packet::new_checked(&mut *packet)?;
    if ip.next_header() != ICMPV6 {
        return Err(Error::Malformed("not ICMPv6"));
    }
    let icmp = IcmpPacket::new_checked(ip.payload())?;
    if !icmp.is_v6_error() {
        return Err(Error::Malformed("not an ICMPv6 error"));
    }
    let flow = embedded_flow(icmp.payload())?;
    let (IpAddr::V6(old_src), IpAddr::V6(old_dst)) = (flow.src, flow.dst) else {
        return Err(Error::Malformed("ICMPv6 error quoting IPv4"));
    };
    ip.set_src(outer_src);
    ip.set_dst(outer_dst);
    let len = ip.payload_len();
    let msg = &mut packet[ipv6::HEADER_LEN..ipv6::HEADER_LEN + len];
    {
        let quoted = &mut msg[crate::icmp::HEADER_LEN..];
        quoted[8..24].copy_from_slice(&isrc.0.octets());
        quoted[24..40].copy_from_slice(&idst.0.octets());
        // IPv6 UDP checksums are mandatory: no zero rule.
        let addrs = |c: u16| update128(update128(c, old_src, isrc.0), old_dst, idst.0);
        fix_quoted_l4(&mut quoted[flow.ip_len..], flow.protocol, [(flow.src_port, isrc.1), (flow.dst_port, idst.1)], addrs, false);
    }
    let pseudo = checksum::pseudo_header_v6(outer_src.octets(), outer_dst.octets(), ICMPV6, len as u32);
    IcmpPacket::new_checked(msg)?.fill_checksum(pseudo);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const CLIENT: [u8; 4] = [198, 51, 100, 7];
    const VIP: [u8; 4] = [198, 18, 0, 100];
    const LIP: [u8; 4] = [10, 1, 0, 2];
    const RS: [u8; 4] = [10, 1, 0, 11];

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = Vec::new();
        PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut p, b"query").unwrap();
        p
    }

    /// An ICMP port-unreachable IPv4 packet from `from` to `to` quoting `quoted`.
    fn unreachable(from: [u8; 4], to: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let icmp = etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
        PacketBuilder::ipv4(from, to, 64).icmpv4(icmp).write(&mut out, quoted).unwrap();
        out
    }

    #[test]
    fn fullnat_port_unreachable_reaches_the_client_byte_exact() {
        // What the real server saw and quotes (header + 8 bytes).
        let seen = udp(LIP, 5001, RS, 53);
        let mut err = unreachable(RS, LIP, &seen[..28]);
        translate_icmp_v4(&mut err, Ipv4Addr::from(VIP), Ipv4Addr::from(CLIENT), Endpoint::v4(CLIENT.into(), 40000), Endpoint::v4(VIP.into(), 53)).unwrap();
        // What the client sent, quoted the same way, from the VIP.
        let sent = udp(CLIENT, 40000, VIP, 53);
        assert_eq!(err, unreachable(VIP, CLIENT, &sent[..28]));
    }

    #[test]
    fn quoted_tcp_checksum_is_fixed_when_present() {
        let mut seen = Vec::new();
        PacketBuilder::ipv4(LIP, RS, 64).tcp(5001, 8080, 1, 100).write(&mut seen, b"").unwrap();
        let mut err = unreachable(RS, LIP, &seen);
        translate_icmp_v4(&mut err, Ipv4Addr::from(VIP), Ipv4Addr::from(CLIENT), Endpoint::v4(CLIENT.into(), 40000), Endpoint::v4(VIP.into(), 80)).unwrap();
        let mut sent = Vec::new();
        PacketBuilder::ipv4(CLIENT, VIP, 64).tcp(40000, 80, 1, 100).write(&mut sent, b"").unwrap();
        assert_eq!(err, unreachable(VIP, CLIENT, &sent));
    }

    #[test]
    fn icmpv6_port_unreachable_byte_exact() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let (client, vip, lip, rs) = (a("2001:db8::7"), a("2001:db8:f::100"), a("fd00::2"), a("fd00::11"));
        let udp6 = |src: Ipv6Addr, sport, dst: Ipv6Addr, dport| {
            let mut p = Vec::new();
            PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(sport, dport).write(&mut p, b"query").unwrap();
            p
        };
        let unreachable6 = |from: Ipv6Addr, to: Ipv6Addr, quoted: &[u8]| {
            let mut out = Vec::new();
            let t = etherparse::Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port);
            PacketBuilder::ipv6(from.octets(), to.octets(), 64).icmpv6(t).write(&mut out, quoted).unwrap();
            out
        };
        let seen = udp6(lip, 5001, rs, 53);
        let mut err = unreachable6(rs, lip, &seen);
        let ep = |addr: Ipv6Addr, port| Endpoint { addr: IpAddr::V6(addr), port };
        translate_icmp_v6(&mut err, vip, client, ep(client, 40000), ep(vip, 53)).unwrap();
        assert_eq!(err, unreachable6(vip, client, &udp6(client, 40000, vip, 53)));
        // Not an error, or the wrong family: refused.
        let mut echo = Vec::new();
        PacketBuilder::ipv6(rs.octets(), lip.octets(), 64).icmpv6_echo_request(1, 1).write(&mut echo, &seen).unwrap();
        assert!(translate_icmp_v6(&mut echo, vip, client, ep(client, 1), ep(vip, 2)).is_err());
        let mut err = unreachable6(rs, lip, &seen);
        assert!(translate_icmp_v6(&mut err, vip, client, Endpoint::v4(Ipv4Addr::LOCALHOST, 1), ep(vip, 2)).is_err());
    }

    proptest::proptest! {
        /// Any UDP/TCP packet quoted in full or truncated to 8 L4 bytes:
        /// the translated error equals the error the client would get for
        /// its own packet, byte for byte.
        #[test]
        fn translation_equals_the_clients_own_error(
            tcp in proptest::bool::ANY,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            ports in proptest::array::uniform4(1u16..),
            truncate in proptest::bool::ANY,
        ) {
            let build = |src: [u8; 4], sport, dst: [u8; 4], dport| {
                let mut p = Vec::new();
                let b = PacketBuilder::ipv4(src, dst, 64);
                if tcp { b.tcp(sport, dport, 9, 99).write(&mut p, &payload).unwrap() } else { b.udp(sport, dport).write(&mut p, &payload).unwrap() }
                if truncate { p.truncate(28) }
                p
            };
            let seen = build(LIP, ports[0], RS, ports[1]);
            let mut err = unreachable(RS, LIP, &seen);
            translate_icmp_v4(&mut err, Ipv4Addr::from(VIP), Ipv4Addr::from(CLIENT), Endpoint::v4(CLIENT.into(), ports[2]), Endpoint::v4(VIP.into(), ports[3])).unwrap();
            proptest::prop_assert_eq!(err, unreachable(VIP, CLIENT, &build(CLIENT, ports[2], VIP, ports[3])));
        }
    }

    #[test]
    fn refuses_what_is_not_an_icmp_error() {
        let e = |p: &mut Vec<u8>| {
            translate_icmp_v4(p, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, Endpoint::v4(Ipv4Addr::LOCALHOST, 1), Endpoint::v4(Ipv4Addr::LOCALHOST, 2))
        };
        assert!(e(&mut udp(CLIENT, 1, VIP, 2)).is_err());
        let mut echo = Vec::new();
        PacketBuilder::ipv4(CLIENT, VIP, 64).icmpv4_echo_request(1, 1).write(&mut echo, &[0; 28]).unwrap();
        assert!(e(&mut echo).is_err());
        let seen = udp(LIP, 5001, RS, 53);
        let mut short = unreachable(RS, LIP, &seen[..24]);
        assert!(e(&mut short).is_err(), "embedded L4 bytes missing");
        let mut v6 = Endpoint::v4(Ipv4Addr::LOCALHOST, 1);
        v6.addr = IpAddr::V6(core::net::Ipv6Addr::LOCALHOST);
        let mut ok = unreachable(RS, LIP, &seen[..28]);
        assert!(translate_icmp_v4(&mut ok, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, v6, v6).is_err());
    }
}
