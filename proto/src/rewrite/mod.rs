//! Rewrite primitives: what each forwarding mode does to a packet's bytes.

pub mod echo;
pub mod icmp_error;
pub mod nat;
pub mod toa;
pub mod tunnel;

pub use nat::Endpoint;

use crate::error::{Error, Result};
use crate::ethernet::{MacAddr, HEADER_LEN};

/// DR (direct routing): the IP packet is untouched; only the Ethernet
/// addresses change, so the frame reaches the real server, which owns the
/// VIP on a non-ARPing interface and replies to the client directly.
/// Written on the header's bytes (it is on every forwarded packet's path).
#[inline]
pub fn direct_route(frame: &mut [u8], src: MacAddr, dst: MacAddr) -> Result<()> {
    let h = frame.first_chunk_mut::<HEADER_LEN>().ok_or(Error::Truncated)?;
    h[..6].copy_from_slice(&dst.0);
    h[6..12].copy_from_slice(&src.0);
    Ok(())
}

/// [`direct_route`] for an IPv4 frame, from two prepared words, in two
/// 8-byte stores: `dst`'s low six bytes (little-endian) are the
/// destination MAC (its top two are overwritten by the second store),
/// `src_ipv4`'s eight are the source MAC and then IPv4's EtherType
/// ([`src_ipv4_word`]). Writing the EtherType leaves an IPv4 frame's as it
/// was; the caller sends only IPv4 frames this way.
/// `h` is the frame's first `N` bytes, `N` at least [`HEADER_LEN`].
#[inline(always)]
pub fn direct_route_ipv4<const N: usize>(h: &mut [u8; N], dst: u64, src_ipv4: u64) {
    const { assert!(N >= HEADER_LEN) };
    h[..8].copy_from_slice(&dst.to_le_bytes());
    h[6..HEADER_LEN].copy_from_slice(&src_ipv4.to_le_bytes());
}

/// A MAC as a number below 2^48, its bytes little-endian: the
/// destination word [`direct_route_ipv4`] takes.
#[inline(always)]
pub fn mac_word(mac: MacAddr) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
}

/// The word [`direct_route_ipv4`] takes for the source MAC whose
/// [`mac_word`] is `mac`: IPv4's EtherType in its top two bytes.
#[inline(always)]
pub fn with_ipv4_type(mac: u64) -> u64 {
    let [t0, t1] = crate::ethernet::ethertype::IPV4.to_be_bytes();
    mac | u64::from_le_bytes([0, 0, 0, 0, 0, 0, t0, t1])
}

/// The word [`direct_route_ipv4`] takes for the source MAC `src`.
pub fn src_ipv4_word(src: MacAddr) -> u64 {
    with_ipv4_type(mac_word(src))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The two-store version writes what `direct_route` does to an
        /// IPv4 frame, whatever the destination word's top bytes hold.
        #[test]
        fn two_stores_equal_direct_route(
            rest in any::<[u8; 2]>(), dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(), frame in any::<[u8; HEADER_LEN]>(),
        ) {
            let mut ipv4 = frame;
            ipv4[12..].copy_from_slice(&crate::ethernet::ethertype::IPV4.to_be_bytes());
            let mut expected = ipv4;
            direct_route(&mut expected, MacAddr(src), MacAddr(dst)).unwrap();
            let [a, b, c, d, e, f] = dst;
            let word = u64::from_le_bytes([a, b, c, d, e, f, rest[0], rest[1]]);
            direct_route_ipv4(&mut ipv4, word, src_ipv4_word(MacAddr(src)));
            prop_assert_eq!(ipv4, expected);
        }

        /// DR rewrite on any valid TCP/IPv4 frame: only the 12 MAC bytes
        /// change, and etherparse still parses it with correct checksums.
        #[test]
        fn dr_changes_only_macs(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            sport in any::<u16>(), dport in any::<u16>(),
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            new_src in any::<[u8; 6]>(), new_dst in any::<[u8; 6]>(),
        ) {
            let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, 64)
                .tcp(sport, dport, 1, 65535);
            let mut frame = Vec::new();
            builder.write(&mut frame, &payload).unwrap();
            let before = frame.clone();
            direct_route(&mut frame, MacAddr(new_src), MacAddr(new_dst)).unwrap();
            prop_assert_eq!(&frame[0..6], &new_dst[..]);
            prop_assert_eq!(&frame[6..12], &new_src[..]);
            prop_assert_eq!(&frame[12..], &before[12..]);
            let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = parsed.net else { panic!("not ipv4") };
            prop_assert_eq!(ip.header().to_header().calc_header_checksum(), ip.header().header_checksum());
            let Some(etherparse::TransportSlice::Tcp(tcp)) = parsed.transport else { panic!("not tcp") };
            let ck = tcp.to_header().calc_checksum_ipv4(&ip.header().to_header(), tcp.payload()).unwrap();
            prop_assert_eq!(ck, tcp.checksum());
        }
    }

    #[test]
    fn dr_rejects_short_frame() {
        let mut f = [0u8; 10];
        assert!(direct_route(&mut f, MacAddr::ZERO, MacAddr::ZERO).is_err());
    }
}
