//! Fixed, documented hash functions. Every RVS node (any build, any
//! machine) computes the same values, so hashing schedulers agree across a
//! cluster. Nothing here is seeded from the process.

use core::net::IpAddr;

/// The kernel's `hash_32`: multiply by the 32-bit golden ratio, keep the top
/// `bits` bits.
#[inline]
pub(crate) fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// An address folded to 32 bits as IPVS does: IPv4 as is, IPv6 as the XOR
/// of its four 32-bit words.
#[inline]
pub(crate) fn fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let b = a.octets();
            (0..4).fold(0, |acc, k| acc ^ u32::from_be_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]]))
        }
    }
}

/// SplitMix64's finaliser: a bijective 64-bit mixer (Steele, Lea, Flood 2014).
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bit, over `bytes`.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Bytes naming an address and port: 16 address bytes (IPv4 mapped) + port.
pub(crate) fn endpoint_bytes(addr: IpAddr, port: u16) -> [u8; 18] {
    let mut out = [0u8; 18];
    let v6 = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    out[..16].copy_from_slice(&v6.octets());
    out[16..].copy_from_slice(&port.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn values_are_pinned() {
        // Changing any of these changes every node's tables: never do it silently.
        assert_eq!(hash_32(0xc612_000a, 8), 0x2c);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        // SplitMix64's published first output (seed 0) is mix64(golden gamma).
        assert_eq!(mix64(0x9E37_79B9_7F4A_7C15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fold(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))), 0x0102_0304);
        assert_eq!(fold(IpAddr::V6(Ipv6Addr::new(0, 1, 0, 2, 0, 4, 0, 8))), 1 ^ 2 ^ 4 ^ 8);
        assert_eq!(&endpoint_bytes(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 80)[10..], &[0xff, 0xff, 1, 2, 3, 4, 0, 80]);
    }
}
