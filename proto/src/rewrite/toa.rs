//! TOA (TCP Option for Address): in FullNAT the real server sees the load
//! balancer's local address, so the client's address and port travel in a
//! TCP option, kind 254, right after the fixed TCP header:
//!
//! ```text
//! IPv4 client: 254 | 8  | port (2, network order) | address (4)
//! IPv6 client: 254 | 20 | port (2, network order) | address (16)
//! ```
//!
//! It goes on the first ACK or data segment of a connection, never on the
//! SYN. When the 40 bytes of option space cannot take it, NOPs and SACK
//! blocks are dropped (advisory; timestamps are not: RFC 7323 lets a
//! receiver discard segments without them); if there is still no room the
//! segment goes without TOA ([`Toa::NoOptionSpace`], the caller counts it).
//! So that an inserted option never pushes a segment past the MTU, the
//! server's SYN-ACK has its MSS lowered by the option's length
//! ([`clamp_mss`]).

use super::nat::Endpoint;
use crate::checksum::{l4_checksum, pseudo_header_v4, pseudo_header_v6, update16};
use crate::error::{Error, Result};
use crate::ipv4::{protocol, Ipv4Packet};
use crate::ipv6::{self, Ipv6Packet};
use crate::l4::{tcp_flags, tcp_option, TcpSegment, TCP_MIN_HEADER_LEN};
use core::net::IpAddr;

/// Most option bytes a TCP header can carry.
const MAX_OPTIONS: usize = 40;

/// What [`insert_toa`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toa {
    /// Inserted; the packet is now `len` bytes.
    Inserted { len: usize },
    /// No room in the options even after dropping NOPs and SACK blocks;
    /// the packet is unchanged.
    NoOptionSpace,
    /// The buffer has no room for the longer packet; unchanged.
    NoTailroom,
}

/// The TOA option's length for a client address.
pub fn toa_len(client: IpAddr) -> usize {
    match client {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 20,
    }
}

/// IP header facts TOA needs: where TCP starts and how long it is.
struct IpInfo {
    l4_start: usize,
    l4_len: usize,
    v6: bool,
}

fn ip_info(packet: &[u8]) -> Result<IpInfo> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(packet)?;
            if ip.protocol() != protocol::TCP {
                return Err(Error::Malformed("not TCP"));
            }
            if ip.is_fragment() {
                return Err(Error::Malformed("fragment"));
            }
            Ok(IpInfo { l4_start: ip.header_len(), l4_len: ip.total_len() - ip.header_len(), v6: false })
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(packet)?;
            if ip.next_header() != protocol::TCP {
                return Err(Error::Malformed("not TCP"));
            }
            Ok(IpInfo { l4_start: ipv6::HEADER_LEN, l4_len: ip.payload_len(), v6: true })
        }
        Some(_) => Err(Error::Malformed("not an IP packet")),
        None => Err(Error::Truncated),
    }
}

/// Recomputes the TCP checksum of `packet` (IP header first) from scratch.
fn refill_tcp_checksum(packet: &mut [u8], info: &IpInfo) {
    let (s, e) = (info.l4_start, info.l4_start + info.l4_len);
    packet[s + 16] = 0;
    packet[s + 17] = 0;
    let ph = if info.v6 {
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        src.copy_from_slice(&packet[8..24]);
        dst.copy_from_slice(&packet[24..40]);
        pseudo_header_v6(src, dst, protocol::TCP, info.l4_len as u32)
    } else {
        let (mut src, mut dst) = ([0u8; 4], [0u8; 4]);
        src.copy_from_slice(&packet[12..16]);
        dst.copy_from_slice(&packet[16..20]);
        pseudo_header_v4(src, dst, protocol::TCP, info.l4_len as u16)
    };
    let c = l4_checksum(ph, &packet[s..e]);
    packet[s + 16..s + 18].copy_from_slice(&c.to_be_bytes());
}

/// Inserts the TOA for `client` into the TCP segment of the IP packet
/// `buf[..len]`; `buf` may extend past `len` (tailroom). Fixes the data
/// offset, the IP length and both checksums.
pub fn insert_toa(buf: &mut [u8], len: usize, client: Endpoint) -> Result<Toa> {
    let packet = buf.get(..len).ok_or(Error::Truncated)?;
    let info = ip_info(packet)?;
    let tcp = TcpSegment::new_checked(&packet[info.l4_start..info.l4_start + info.l4_len])?;
    if tcp.flags() & tcp_flags::SYN != 0 {
        return Err(Error::Malformed("TOA does not go on a SYN"));
    }
    let old_doff = tcp.header_len();
    let old_options = tcp.options();
    let toa = toa_len(client.addr);

    // The options that will follow the TOA.
    let mut kept = [0u8; MAX_OPTIONS];
    let mut kept_len;
    if old_options.len() + toa <= MAX_OPTIONS {
        kept[..old_options.len()].copy_from_slice(old_options);
        kept_len = old_options.len();
    } else {
        kept_len = 0;
        for o in tcp.option_iter() {
            let o = o?;
            if o.kind == tcp_option::NOP || o.kind == tcp_option::SACK {
                continue;
            }
            kept[kept_len..kept_len + o.len()].copy_from_slice(&old_options[o.offset..o.offset + o.len()]);
            kept_len += o.len();
        }
        while !kept_len.is_multiple_of(4) {
            kept[kept_len] = tcp_option::NOP;
            kept_len += 1;
        }
        if kept_len + toa > MAX_OPTIONS {
            return Ok(Toa::NoOptionSpace);
        }
    }
    let new_doff = TCP_MIN_HEADER_LEN + toa + kept_len;
    // The packet's new true length (link padding past the IP length, if
    // any, is left behind).
    let new_l4_len = info.l4_len - old_doff + new_doff;
    let new_len = info.l4_start + new_l4_len;
    if new_len > buf.len() {
        return Ok(Toa::NoTailroom);
    }
    if new_len > usize::from(u16::MAX) {
        return Ok(Toa::NoOptionSpace);
    }

    // Move the payload, then write TOA + kept options after the fixed header.
    let tcp_at = info.l4_start;
    let payload_end = info.l4_start + info.l4_len;
    buf.copy_within(tcp_at + old_doff..payload_end, tcp_at + new_doff);
    let opts = &mut buf[tcp_at + TCP_MIN_HEADER_LEN..tcp_at + new_doff];
    opts[0] = tcp_option::TOA;
    opts[1] = toa as u8;
    opts[2..4].copy_from_slice(&client.port.to_be_bytes());
    match client.addr {
        IpAddr::V4(a) => opts[4..8].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => opts[4..20].copy_from_slice(&a.octets()),
    }
    opts[toa..].copy_from_slice(&kept[..kept_len]);
    buf[tcp_at + 12] = ((new_doff / 4) as u8) << 4 | (buf[tcp_at + 12] & 0x0f);

    // IP length fields are written as bytes first: the views check them.
    if info.v6 {
        buf[4..6].copy_from_slice(&(new_l4_len as u16).to_be_bytes());
    } else {
        buf[2..4].copy_from_slice(&(new_len as u16).to_be_bytes());
        Ipv4Packet::new_checked(&mut buf[..new_len])?.fill_checksum();
    }
    refill_tcp_checksum(&mut buf[..new_len], &IpInfo { l4_len: new_l4_len, ..info });
    Ok(Toa::Inserted { len: new_len })
}

/// Lowers the MSS option of the TCP SYN (or SYN-ACK) in the IP packet by
/// `by` bytes (never below 64), updating the checksum incrementally.
/// Returns whether an MSS option was found and changed.
pub fn clamp_mss(packet: &mut [u8], by: u16) -> Result<bool> {
    let info = ip_info(packet)?;
    let (at, old) = {
        let tcp = TcpSegment::new_checked(&packet[info.l4_start..info.l4_start + info.l4_len])?;
        if tcp.flags() & tcp_flags::SYN == 0 {
            return Ok(false);
        }
        let found = tcp.option_iter().find_map(|o| match o {
            Ok(o) if o.kind == tcp_option::MSS && o.data.len() == 2 => Some((o.offset, u16::from_be_bytes([o.data[0], o.data[1]]))),
            _ => None,
        });
        match found {
            Some(f) => f,
            None => return Ok(false),
        }
    };
    // Lower only: an MSS already under the floor stays as it is.
    let new = old.saturating_sub(by).max(64).min(old);
    if new == old {
        return Ok(false);
    }
    let tcp = info.l4_start;
    let field = tcp + TCP_MIN_HEADER_LEN + at + 2;
    packet[field..field + 2].copy_from_slice(&new.to_be_bytes());
    let check = u16::from_be_bytes([packet[tcp + 16], packet[tcp + 17]]);
    let check = update16(check, old, new);
    packet[tcp + 16..tcp + 18].copy_from_slice(&check.to_be_bytes());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use etherparse::{PacketBuilder, TcpHeader};
    use proptest::prelude::*;

    const CLIENT: Endpoint = Endpoint { addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), port: 40000 };

    /// A TCP/IPv4 (or v6) packet with raw `options`, plus `room` spare bytes.
    fn packet(v6: bool, flags_syn: bool, options: &[u8], payload: &[u8], room: usize) -> (Vec<u8>, usize) {
        let mut h = TcpHeader::new(5001, 8080, 1000, 65535);
        h.ack = !flags_syn;
        h.syn = flags_syn;
        h.acknowledgment_number = 2000;
        h.set_options_raw(options).unwrap();
        let b = if v6 {
            PacketBuilder::ipv6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11], 64)
        } else {
            PacketBuilder::ipv4([10, 1, 0, 2], [10, 1, 0, 11], 64)
        };
        let mut out = Vec::new();
        b.tcp_header(h).write(&mut out, payload).unwrap();
        let len = out.len();
        out.resize(len + room, 0);
        (out, len)
    }

    /// Parses with etherparse, checks every checksum; returns (options, payload).
    fn parsed(p: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let s = etherparse::SlicedPacket::from_ip(p).expect("etherparse parses the result");
        let Some(etherparse::TransportSlice::Tcp(t)) = &s.transport else { panic!("not TCP") };
        let ok = match &s.net {
            Some(etherparse::NetSlice::Ipv4(i)) => {
                assert_eq!(i.header().to_header().calc_header_checksum(), i.header().header_checksum(), "IP checksum");
                t.to_header().calc_checksum_ipv4(&i.header().to_header(), t.payload()).unwrap()
            }
            Some(etherparse::NetSlice::Ipv6(i)) => t.to_header().calc_checksum_ipv6(&i.header().to_header(), t.payload()).unwrap(),
            _ => panic!("no IP"),
        };
        assert_eq!(ok, t.checksum(), "TCP checksum");
        (t.options().to_vec(), t.payload().to_vec())
    }

    #[test]
    fn inserts_right_after_the_fixed_header() {
        // Timestamps (NOP NOP TS): 12 bytes; with TOA 20: fits.
        let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let (mut p, len) = packet(false, false, &ts, b"hello", 64);
        let r = insert_toa(&mut p, len, CLIENT).unwrap();
        assert_eq!(r, Toa::Inserted { len: len + 8 });
        let (opts, payload) = parsed(&p[..len + 8]);
        assert_eq!(&opts[..8], &[254, 8, 0x9c, 0x40, 198, 51, 100, 7]);
        assert_eq!(&opts[8..], &ts);
        assert_eq!(payload, b"hello");
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, len + 8);
    }

    #[test]
    fn drops_nops_and_sack_to_make_room_but_nothing_else() {
        // NOP NOP TS(10) + NOP NOP SACK with 3 blocks (26) = 40 bytes.
        let mut o = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 5, 26];
        o.extend_from_slice(&[7; 24]);
        let (mut p, len) = packet(false, false, &o, b"data", 64);
        let Toa::Inserted { len: n } = insert_toa(&mut p, len, CLIENT).unwrap() else { panic!() };
        let (opts, payload) = parsed(&p[..n]);
        // TOA, then TS (10) padded with NOPs to 12: header 20 + 8 + 12.
        assert_eq!(opts, [&[254, 8, 0x9c, 0x40, 198, 51, 100, 7][..], &[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1]].concat());
        assert_eq!(payload, b"data");
        assert_eq!(n, len - 40 + 20);
    }

    #[test]
    fn no_room_and_no_tailroom_leave_the_packet_untouched() {
        // 36 bytes of an option that must stay (TS 10 + MD5-sig-like kind 19 len 18 + unknown 30 len 8).
        let mut o = vec![8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 19, 18];
        o.extend_from_slice(&[0; 16]);
        o.extend_from_slice(&[30, 8, 1, 2, 3, 4, 5, 6]);
        o.extend_from_slice(&[0; 4]);
        let (mut p, len) = packet(false, false, &o, b"x", 64);
        let before = p.clone();
        assert_eq!(insert_toa(&mut p, len, CLIENT).unwrap(), Toa::NoOptionSpace);
        assert_eq!(p, before);
        let (mut p, len) = packet(false, false, &[], b"x", 7);
        let before = p.clone();
        assert_eq!(insert_toa(&mut p, len, CLIENT).unwrap(), Toa::NoTailroom);
        assert_eq!(p, before);
    }

    #[test]
    fn never_on_a_syn_and_only_on_tcp() {
        let (mut p, len) = packet(false, true, &[2, 4, 5, 0xb4], b"", 64);
        assert!(insert_toa(&mut p, len, CLIENT).is_err());
        let mut u = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).udp(1, 2).write(&mut u, b"x").unwrap();
        let n = u.len();
        u.resize(n + 40, 0);
        assert!(insert_toa(&mut u, n, CLIENT).is_err());
        assert!(insert_toa(&mut [0u8; 10], 10, CLIENT).is_err());
        assert!(insert_toa(&mut [0u8; 10], 11, CLIENT).is_err());
    }

    #[test]
    fn ipv6_client_form_over_ipv6() {
        let client = Endpoint { addr: IpAddr::V6("2001:db8::7".parse::<Ipv6Addr>().unwrap()), port: 443 };
        let (mut p, len) = packet(true, false, &[], b"payload", 64);
        assert_eq!(insert_toa(&mut p, len, client).unwrap(), Toa::Inserted { len: len + 20 });
        let (opts, payload) = parsed(&p[..len + 20]);
        assert_eq!(&opts[..4], &[254, 20, 1, 187]);
        assert_eq!(&opts[4..20], &"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(payload, b"payload");
    }

    #[test]
    fn mss_is_clamped_on_syn_only() {
        let (mut p, len) = packet(false, true, &[2, 4, 0x05, 0xb4, 1, 3, 3, 7], b"", 0);
        assert!(clamp_mss(&mut p[..len], 8).unwrap());
        let (opts, _) = parsed(&p[..len]);
        assert_eq!(&opts[..4], &[2, 4, 0x05, 0xac]); // 1460 - 8 = 1452
        let (mut p, len) = packet(false, false, &[2, 4, 0x05, 0xb4], b"", 0);
        assert!(!clamp_mss(&mut p[..len], 8).unwrap(), "not a SYN");
        let (mut p, len) = packet(false, true, &[1, 1, 1, 1], b"", 0);
        assert!(!clamp_mss(&mut p[..len], 8).unwrap(), "no MSS option");
        let (mut p, len) = packet(false, true, &[2, 4, 0, 60], b"", 0);
        assert!(!clamp_mss(&mut p[..len], 8).unwrap(), "already at the floor");
    }

    /// Random well-formed option lists.
    fn options() -> impl Strategy<Value = Vec<u8>> {
        let one = prop_oneof![
            Just(vec![1u8]),
            Just(vec![2u8, 4, 5, 0xb4]),
            Just(vec![3u8, 3, 7]),
            Just(vec![4u8, 2]),
            Just(vec![8u8, 10, 1, 2, 3, 4, 5, 6, 7, 8]),
            (1usize..4).prop_map(|n| {
                let mut v = vec![5u8, (2 + 8 * n) as u8];
                v.extend(std::iter::repeat_n(9u8, 8 * n));
                v
            }),
        ];
        proptest::collection::vec(one, 0..6).prop_map(|parts| {
            let mut v: Vec<u8> = parts.concat();
            v.truncate(40);
            // Cut at an option boundary by re-walking, then pad to 4.
            let mut ok = 0;
            let mut i = 0;
            while i < v.len() {
                let l = if v[i] == 1 {
                    1
                } else if i + 1 < v.len() {
                    v[i + 1] as usize
                } else {
                    99
                };
                if i + l > v.len() {
                    break;
                }
                i += l;
                ok = i;
            }
            v.truncate(ok);
            while !v.len().is_multiple_of(4) {
                v.push(1);
            }
            v
        })
    }

    proptest! {
        #[test]
        fn toa_on_any_segment(v6 in any::<bool>(), opts in options(), payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (mut p, len) = packet(v6, false, &opts, &payload, 64);
            match insert_toa(&mut p, len, CLIENT).unwrap() {
                Toa::Inserted { len: n } => {
                    let (new_opts, new_payload) = parsed(&p[..n]);
                    prop_assert_eq!(&new_opts[..8], &[254, 8, 0x9c, 0x40, 198, 51, 100, 7][..]);
                    prop_assert_eq!(new_payload, payload);
                    // Every option but NOP and SACK survives, in order.
                    let keep = |o: &[u8]| -> Vec<Vec<u8>> {
                        let mut out = Vec::new();
                        let mut i = 0;
                        while i < o.len() {
                            if o[i] == 1 { i += 1; continue; }
                            let l = o[i + 1] as usize;
                            if o[i] != 5 && o[i] != 254 { out.push(o[i..i + l].to_vec()); }
                            i += l;
                        }
                        out
                    };
                    prop_assert_eq!(keep(&new_opts), keep(&opts));
                }
                Toa::NoOptionSpace => prop_assert!(opts.len() + 8 > 40),
                Toa::NoTailroom => prop_assert!(false, "64 bytes of room is always enough"),
            }
        }
    }
}
