//! TUN mode: IPIP encapsulation (RFC 2003). The client's packet travels
//! unchanged inside an outer IPv4 header from the load balancer to the real
//! server, which decapsulates it and answers the client directly.
//!
//! The outer header goes between the Ethernet header and the packet, using
//! headroom before the frame (an mbuf has 128 bytes of it): a new Ethernet
//! header for the hop to the server is written 20 bytes further to the
//! front, nothing else moves. DF, TOS and TTL are copied from the inner
//! header; the outer addresses and their part of the checksum come from a
//! per-server template ([`Outer`]). When the result would exceed the egress
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

/// One tunnel's fixed part: the outer addresses and their share of the
/// outer header's checksum, worked out once per real server instead of
/// once per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Source then destination, as the header's bytes 12 to 20 hold them.
    addrs: [u8; 8],
    /// One's complement sum (unfolded) of the fields that never change
    /// but the version and header length: the addresses and the protocol.
    fixed_sum: u32,
}

impl Outer {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        let (s, d) = (u32::from(src), u32::from(dst));
        let fixed_sum = (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol::IPIP);
        let [s0, s1, s2, s3] = src.octets();
        let [d0, d1, d2, d3] = dst.octets();
        Outer { addrs: [s0, s1, s2, s3, d0, d1, d2, d3], fixed_sum }
    }
}

/// Where an encapsulated frame goes: through `outer`, with IP id `ident`,
/// out of an interface of `mtu` (IP bytes), from our MAC to the hop's,
/// as the words [`super::direct_route_ipv4`] writes (`src_ipv4`: see
/// [`super::src_ipv4_word`]; `dst`: [`super::mac_word`]).
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub outer: &'a Outer,
    pub ident: u16,
    pub mtu: u16,
    pub src_ipv4: u64,
    pub dst: u64,
}

/// Encapsulates the Ethernet frame at `buf[start..start + len]` (IPv4
/// inside) in IPIP for the hop `to`, and writes the hop's Ethernet
/// addresses. Returns the new start; the frame grew by [`OVERHEAD`]. On
/// error nothing was changed.
pub fn ipip_encapsulate(buf: &mut [u8], start: usize, len: usize, to: &Hop) -> core::result::Result<usize, EncapError> {
    let frame = buf.get(start..start + len).ok_or(Error::Truncated)?;
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ethernet::ethertype::IPV4 {
        return Err(Error::Malformed("not IPv4").into());
    }
    let inner = Ipv4Packet::new_checked(eth.payload())?;
    let outer_len = fits(inner.total_len(), inner.dont_fragment(), to.mtu)?;
    let new_start = start.checked_sub(OVERHEAD).ok_or(EncapError::NoHeadroom)?;
    let (first, ttl) = (first_word(eth.payload())?, inner.ttl());
    let head = buf.get_mut(new_start..start + ethernet::HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(Error::Truncated)?;
    write_head(head, first, ttl, outer_len, to);
    Ok(new_start)
}

/// As [`ipip_encapsulate`] for the frame at `buf[start..]` whose parser
/// already found IPv4 with a 20-byte header and a total length within the
/// frame (TUN's per-packet path: nothing is checked again). Only the first
/// 34 bytes of the frame are read.
#[inline]
pub fn ipip_encapsulate_plain(buf: &mut [u8], start: usize, to: &Hop) -> core::result::Result<usize, EncapError> {
    const ETH: usize = ethernet::HEADER_LEN;
    // One window, one bounds check: the headroom the outer header takes,
    // the Ethernet header, and the inner IPv4 header.
    let window = start.checked_sub(OVERHEAD).and_then(|s| buf.get_mut(s..));
    let Some(w) = window.and_then(|w| w.first_chunk_mut::<{ OVERHEAD + ETH + MIN_HEADER_LEN }>()) else {
        return Err(plain_refused(buf, start, to.mtu));
    };
    let (head, inner) = w.split_at_mut(ETH + MIN_HEADER_LEN);
    let first = first_word(inner)?;
    let outer_len = fits(usize::from((first >> 32) as u16), first & DF != 0, to.mtu)?;
    write_head(head.try_into().map_err(|_| Error::Truncated)?, first, inner[8], outer_len, to);
    Ok(start - OVERHEAD)
}

/// Why [`ipip_encapsulate_plain`] could not take the window it needs:
/// the error the general path gives (the MTU is judged first).
#[cold]
fn plain_refused(buf: &[u8], start: usize, mtu: u16) -> EncapError {
    let ip = start + ethernet::HEADER_LEN;
    let Some(inner) = buf.get(ip..ip + MIN_HEADER_LEN) else {
        return Error::Truncated.into();
    };
    match fits(usize::from(u16::from_be_bytes([inner[2], inner[3]])), inner[6] & 0x40 != 0, mtu) {
        Err(e) => e,
        Ok(_) => EncapError::NoHeadroom,
    }
}

/// The DF bit in an IPv4 header's first 8 bytes read as a big-endian
/// word (see [`write_head`]).
const DF: u64 = 0x4000;

/// An IPv4 header's first 8 bytes as one big-endian word: version and
/// header length, TOS, total length, identification, flags and fragment
/// offset, from the top byte down.
fn first_word(ip: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(*ip.first_chunk::<8>().ok_or(Error::Truncated)?))
}

/// Writes into `head` (34 bytes) the hop's Ethernet header and the outer
/// IPv4 header of an `outer_len`-byte packet around an inner one whose
/// [`first_word`] is `inner` and whose TTL is `ttl`.
///
/// The outer header's first 8 bytes are built as one word from the
/// inner's (its TOS and DF kept, the rest replaced), and its checksum
/// adds that word's halves to the template's sum: one load and one store
/// for those 8 bytes instead of one per field (TUN's count went 360 -> 356
/// instructions a packet; the fold below, 356 -> 352).
#[inline(always)]
fn write_head(head: &mut [u8; ethernet::HEADER_LEN + MIN_HEADER_LEN], inner: u64, ttl: u8, outer_len: u16, to: &Hop) {
    const TOS: u64 = 0x00ff << 48;
    let first = 0x45 << 56 | (inner & (TOS | DF)) | u64::from(outer_len) << 32 | u64::from(to.ident) << 16;
    // Ones' complement arithmetic is arithmetic modulo 0xffff, in which
    // 2^16 is 1: the word and the other terms can be added as one integer
    // (far below 2^64), whose 32-bit halves are then added with the carry
    // brought back, and `fold` finishes.
    let x = first + u64::from(to.outer.fixed_sum) + (u64::from(ttl) << 8);
    let (lo, carry) = (x as u32).overflowing_add((x >> 32) as u32);
    let check = !checksum::fold(lo + u32::from(carry));
    let [c0, c1] = check.to_be_bytes();
    super::direct_route_ipv4(head, to.dst, to.src_ipv4);
    let ip = &mut head[ethernet::HEADER_LEN..];
    ip[..8].copy_from_slice(&first.to_be_bytes());
    ip[8..12].copy_from_slice(&[ttl, protocol::IPIP, c0, c1]);
    ip[12..].copy_from_slice(&to.outer.addrs);
}

/// The outer packet's length for an inner packet of `inner_len` bytes, if
/// it fits the egress `mtu`; otherwise why not (`df`: the inner DF bit).
#[inline(always)]
fn fits(inner_len: usize, df: bool, mtu: u16) -> core::result::Result<u16, EncapError> {
    let outer_len = inner_len + OVERHEAD;
    if outer_len > usize::from(mtu) {
        return Err(if df { EncapError::NeedsFragmentation { mtu: mtu.saturating_sub(OVERHEAD as u16) } } else { EncapError::TooBig });
    }
    u16::try_from(outer_len).map_err(|_| Error::Malformed("too long to encapsulate").into())
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
    use crate::ethernet::MacAddr;
    use crate::rewrite::{mac_word, src_ipv4_word};

    const SMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);
    const DMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 8]);

    /// The general path from `src` to `dst`, between SMAC and DMAC.
    fn encap(buf: &mut [u8], start: usize, len: usize, src: Ipv4Addr, dst: Ipv4Addr, ident: u16, mtu: u16) -> core::result::Result<usize, EncapError> {
        ipip_encapsulate(buf, start, len, &Hop { outer: &Outer::new(src, dst), ident, mtu, src_ipv4: src_ipv4_word(SMAC), dst: mac_word(DMAC) })
    }

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
        let start = encap(&mut buf, 64, f.len(), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), 7, 1500).unwrap();
        assert_eq!(start, 44);
        let out = &buf[start..];
        assert_eq!(out.len(), f.len() + 20);
        assert_eq!((&out[..6], &out[6..12], &out[12..14]), (&DMAC.0[..], &SMAC.0[..], &[8u8, 0][..]), "the hop's Ethernet header");
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
        let e = encap(&mut buf, 64, f.len(), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), 1, 1500);
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
            let r = encap(&mut buf, 32, f.len(), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), ident, mtu);
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

    proptest::proptest! {
        /// The per-packet path (plain frames, nothing checked again) gives
        /// the very bytes, or the very error, of the general path, for any
        /// plain frame, addresses, TOS, TTL, MTU and headroom.
        #[test]
        fn plain_path_matches_the_general_one(
            payload_len in 0usize..1600, df in proptest::bool::ANY, mtu in 576u16..1600, ident in proptest::num::u16::ANY,
            src in proptest::num::u32::ANY, dst in proptest::num::u32::ANY, tos in proptest::num::u8::ANY, ttl in proptest::num::u8::ANY,
            headroom in 0usize..40,
        ) {
            let mut f = frame(payload_len, df);
            f[15] = tos;
            f[22] = ttl;
            Ipv4Packet::new_checked(&mut f[14..]).unwrap().fill_checksum();
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let mut general = vec![0u8; headroom];
            general.extend_from_slice(&f);
            let mut plain = general.clone();
            let g = encap(&mut general, headroom, f.len(), src, dst, ident, mtu);
            let p = ipip_encapsulate_plain(&mut plain, headroom, &Hop { outer: &Outer::new(src, dst), ident, mtu, src_ipv4: src_ipv4_word(SMAC), dst: mac_word(DMAC) });
            proptest::prop_assert_eq!(p, g);
            proptest::prop_assert_eq!(&plain, &general);
            if let Ok(start) = p {
                // The outer checksum, folded by rotation, against one
                // computed independently, for any addresses, TOS, TTL, id.
                let h = etherparse::Ipv4HeaderSlice::from_slice(&plain[start + 14..]).unwrap();
                proptest::prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            }
        }
    }

    #[test]
    fn outer_checksum_at_the_folds_extremes() {
        // Every field at its largest (sums that wrap 16 and 32 bits), and
        // every field that varies at zero.
        for (addr, tos, ttl, ident, df) in
            [(u32::MAX, 0xff, 0xff, 0xffff, true), (0, 0, 0, 0, false), (u32::MAX, 0, 0xff, 0, true), (0x0000_ffff, 0xff, 0, 0xffff, false)]
        {
            let mut f = frame(1400, df);
            f[15] = tos;
            f[22] = ttl;
            Ipv4Packet::new_checked(&mut f[14..]).unwrap().fill_checksum();
            let mut buf = vec![0u8; 20];
            buf.extend_from_slice(&f);
            let a = Ipv4Addr::from(addr);
            let start =
                ipip_encapsulate_plain(&mut buf, 20, &Hop { outer: &Outer::new(a, a), ident, mtu: 1500, src_ipv4: src_ipv4_word(SMAC), dst: mac_word(DMAC) })
                    .unwrap();
            let h = etherparse::Ipv4HeaderSlice::from_slice(&buf[start + 14..]).unwrap();
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum(), "addresses {a}, tos {tos}, ttl {ttl}, id {ident}");
        }
    }

    #[test]
    fn plain_path_refuses_short_buffers() {
        let outer = Outer::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
        let to = Hop { outer: &outer, ident: 0, mtu: 1500, src_ipv4: src_ipv4_word(MacAddr::ZERO), dst: 0 };
        assert!(matches!(ipip_encapsulate_plain(&mut [0u8; 40], 20, &to), Err(EncapError::Invalid(_))));
        let f = frame(10, true);
        let mut buf = f.clone();
        assert_eq!(ipip_encapsulate_plain(&mut buf, 0, &to), Err(EncapError::NoHeadroom));
        assert_eq!(buf, f);
    }

    #[test]
    fn headroom_and_input_errors() {
        let f = frame(10, true);
        let mut buf = f.clone();
        assert_eq!(encap(&mut buf, 0, f.len(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500), Err(EncapError::NoHeadroom));
        assert_eq!(buf, f);
        let mut arp = vec![0u8; 80];
        arp[20 + 12] = 0x08;
        arp[20 + 13] = 0x06;
        assert!(matches!(encap(&mut arp, 20, 60, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500), Err(EncapError::Invalid(_))));
        assert!(encap(&mut [0u8; 10], 5, 50, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500).is_err());
        let f = frame(1460, false);
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(&f);
        assert_eq!(encap(&mut buf, 20, f.len(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 1500), Err(EncapError::TooBig));
        assert!(frag_needed(&mut [0u8; 20], &f[14..], Ipv4Addr::LOCALHOST, 1480, 0).is_err());
    }
}
