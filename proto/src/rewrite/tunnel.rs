//! TUN mode: IPIP encapsulation (RFC 2003). The client's packet travels
//! unchanged inside an outer IPv4 header from the load balancer to the real
//! server, which decapsulates it and answers the client directly.
//!
//! The outer header goes between the Ethernet header and the packet, using
//! headroom before the frame (an mbuf has 128 bytes of it): the 14 Ethernet
//! bytes move 20 bytes to the front, nothing else moves. DF, TOS and TTL are
//! copied from the inner header. When the result would exceed the egress
//! MTU and DF is set, the packet cannot go: [`frag_needed`] builds the ICMP
//! "fragmentation needed" for the client, with the MTU it must use.

use crate::checksum;
use crate::error::{Error, Result};
use crate::ethernet::{self, EthernetFrame};
use crate::ipv4::{protocol, Ipv4Packet, MIN_HEADER_LEN};
use core::net::Ipv4Addr;

/// Bytes the outer header adds.
pub const OVERHEAD: usize = MIN_HEADER_LEN;

/// Why a frame could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapError {
    /// Less than [`OVERHEAD`] bytes before the frame.
    NoHeadroom,
    /// Too big for the MTU with DF set: tell the client to use `mtu`.
    NeedsFragmentation {
        mtu: u16,
    },
    /// Too big for the MTU without DF: RVS does not fragment; drop it.
    TooBig,
    Invalid(Error),
}

impl From<Error> for EncapError {
    fn from(e: Error) -> Self {
        EncapError::Invalid(e)
    }
}

/// Encapsulates the Ethernet frame at `buf[start..start + len]` (IPv4
/// inside) in IPIP from `outer_src` to `outer_dst`, with IP id `ident`, for
/// an egress `mtu` (IP bytes). Returns the new start; the frame grew by
/// [`OVERHEAD`]. On error nothing was changed.
#[inline]
pub fn ipip_encapsulate(
    buf: &mut [u8],
    start: usize,
    len: usize,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    ident: u16,
    mtu: u16,
) -> core::result::Result<usize, EncapError> {
    let frame = buf.get(start..start + len).ok_or(Error::Truncated)?;
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ethernet::ethertype::IPV4 {
        return Err(Error::Malformed("not IPv4").into());
    }
    let inner = Ipv4Packet::new_checked(eth.payload())?;
    let outer_len = inner.total_len() + OVERHEAD;
    if outer_len > usize::from(mtu) {
        return Err(if inner.dont_fragment() { EncapError::NeedsFragmentation { mtu: mtu.saturating_sub(OVERHEAD as u16) } } else { EncapError::TooBig });
    }
    if outer_len > usize::from(u16::MAX) {
        return Err(Error::Malformed("too long to encapsulate").into());
    }
    if start < OVERHEAD {
        return Err(EncapError::NoHeadroom);
    }
    let (tos, ttl, df) = (inner.tos(), inner.ttl(), inner.dont_fragment());
    let new_start = start - OVERHEAD;
    // The Ethernet header moves to the front (a fixed-size copy, no call).
    let eth: [u8; ethernet::HEADER_LEN] = buf[start..start + ethernet::HEADER_LEN].try_into().map_err(|_| Error::Truncated)?;
    buf[new_start..new_start + ethernet::HEADER_LEN].copy_from_slice(&eth);
    let h: &mut [u8; MIN_HEADER_LEN] = (&mut buf[new_start + ethernet::HEADER_LEN..start + ethernet::HEADER_LEN]).try_into().map_err(|_| Error::Truncated)?;
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    h[8] = ttl;
    h[9] = protocol::IPIP;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&outer_src.octets());
    h[16..20].copy_from_slice(&outer_dst.octets());
    let c = checksum::header20(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    Ok(new_start)
}

/// Writes into `out` the IPv4 packet of an ICMP "fragmentation needed"
/// (type 3, code 4) from `from` to the source of `original` (the IPv4
/// packet that was too big), advising `mtu`. Returns its length.
pub fn frag_needed(out: &mut [u8], original: &[u8], from: Ipv4Addr, mtu: u16, ident: u16) -> Result<usize> {
    let orig = Ipv4Packet::new_checked(original)?;
    // The original header plus 8 bytes of what followed it (RFC 792).
    let quote = (orig.header_len() + 8).min(orig.total_len());
    let len = MIN_HEADER_LEN + 8 + quote;
    if out.len() < len {
        return Err(Error::Truncated);
    }
    let to = orig.src();
    let out = &mut out[..len];
    out[..MIN_HEADER_LEN].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol::ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..6].copy_from_slice(&ident.to_be_bytes());
    out[12..16].copy_from_slice(&from.octets());
    out[16..20].copy_from_slice(&to.octets());
    let c = checksum::checksum(&out[..MIN_HEADER_LEN]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut out[MIN_HEADER_LEN..];
    icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&original[..quote]);
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: usize, df: bool) -> Vec<u8> {
        let mut f = Vec::new();
        // etherparse sets DF; it is cleared below when not wanted.
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([198, 51, 100, 7], [198, 18, 0, 100], 61);
        b.tcp(40000, 80, 1, 100).write(&mut f, &vec![0xab; payload_len]).unwrap();
        if !df {
            f[14 + 6] = 0;
            let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
            ip.fill_checksum();
        }
        f
    }

    #[test]
    fn encapsulates_in_place_using_headroom() {
        let f = frame(100, true);
        let mut buf = vec![0u8; 64];
        buf.extend_from_slice(&f);
        let start = ipip_encapsulate(&mut buf, 64, f.len(), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), 7, 1500).unwrap();
        assert_eq!(start, 44);
        let out = &buf[start..];
        assert_eq!(out.len(), f.len() + 20);
        assert_eq!(&out[..14], &f[..14], "Ethernet header moved intact");
        assert_eq!(&out[34..], &f[14..], "inner packet untouched");
        let outer = etherparse::Ipv4HeaderSlice::from_slice(&out[14..]).unwrap();
        assert_eq!(outer.protocol(), etherparse::IpNumber::IPV4);
        assert_eq!((outer.source(), outer.destination()), ([10, 0, 0, 2], [10, 0, 0, 11]));
        assert_eq!(outer.total_len() as usize, f.len() - 14 + 20);
        assert!(outer.dont_fragment());
        assert_eq!((outer.ttl(), outer.identification()), (61, 7));
        assert_eq!(outer.to_header().calc_header_checksum(), outer.header_checksum());
    }

    #[test]
    fn too_big_with_df_asks_for_a_smaller_mtu_and_changes_nothing() {
        let f = frame(1460, true); // inner IP 1500 bytes
        let mut buf = vec![0u8; 64];
        buf.extend_from_slice(&f);
        let before = buf.clone();
        let e = ipip_encapsulate(&mut buf, 64, f.len(), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), 1, 1500);
        assert_eq!(e, Err(EncapError::NeedsFragmentation { mtu: 1480 }));
        assert_eq!(buf, before);
        // The ICMP the client gets.
        let mut out = [0u8; 128];
        let n = frag_needed(&mut out, &f[14..], Ipv4Addr::new(198, 18, 0, 100), 1480, 9).unwrap();
        assert_eq!(n, 20 + 8 + 28);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&out[..n]).unwrap();
        assert_eq!((ip.source(), ip.destination()), ([198, 18, 0, 100], [198, 51, 100, 7]));
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
        let icmp = etherparse::Icmpv4Slice::from_slice(&out[20..n]).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1480 })
        );
        assert_eq!(etherparse::Icmpv4Header::with_checksum(icmp.icmp_type(), icmp.payload()).checksum, icmp.checksum());
        assert_eq!(&out[28..n], &f[14..42], "original header and 8 bytes quoted");
    }

    proptest::proptest! {
        /// Any frame: encapsulated frames parse (etherparse) as Ethernet /
        /// IPv4 (IPIP, valid checksum, DF and TTL copied) / the untouched
        /// inner packet; frames past the MTU are refused by their DF bit.
        #[test]
        fn encapsulation_of_any_frame(payload_len in 0usize..1600, df in proptest::bool::ANY, mtu in 576u16..1600, ident in proptest::num::u16::ANY) {
            let f = frame(payload_len, df);
            let mut buf = vec![0u8; 32];
            buf.extend_from_slice(&f);
            let r = ipip_encapsulate(&mut buf, 32, f.len(), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), ident, mtu);
            let inner_len = f.len() - 14;
            if inner_len + 20 > usize::from(mtu) {
                proptest::prop_assert_eq!(r, Err(if df { EncapError::NeedsFragmentation { mtu: mtu - 20 } } else { EncapError::TooBig }));
            } else {
                let start = r.unwrap();
                let out = &buf[start..];
                let p = etherparse::SlicedPacket::from_ethernet(out).unwrap();
                let Some(etherparse::NetSlice::Ipv4(outer)) = p.net else { panic!("no outer IPv4") };
                let h = outer.header();
                proptest::prop_assert_eq!(h.protocol(), etherparse::IpNumber::IPV4);
                proptest::prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
                proptest::prop_assert_eq!((h.dont_fragment(), h.ttl(), h.identification()), (df, 61, ident));
                proptest::prop_assert_eq!(outer.payload().payload, &f[14..]);
            }
        }
    }

    #[test]
    fn headroom_and_input_errors() {
        let f = frame(10, true);
        let mut buf = f.clone();
        assert_eq!(ipip_encapsulate(&mut buf, 0, f.len(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500), Err(EncapError::NoHeadroom));
        assert_eq!(buf, f);
        let mut arp = vec![0u8; 80];
        arp[20 + 12] = 0x08;
        arp[20 + 13] = 0x06;
        assert!(matches!(ipip_encapsulate(&mut arp, 20, 60, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500), Err(EncapError::Invalid(_))));
        assert!(ipip_encapsulate(&mut [0u8; 10], 5, 50, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500).is_err());
        let f = frame(1460, false);
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(&f);
        assert_eq!(ipip_encapsulate(&mut buf, 20, f.len(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500), Err(EncapError::TooBig));
        assert!(frag_needed(&mut [0u8; 20], &f[14..], Ipv4Addr::LOCALHOST, 1480, 0).is_err());
    }
}
