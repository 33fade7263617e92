//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Adds `data` as big-endian 16-bit words into a 32-bit accumulator.
/// An odd trailing byte is padded with zero.
///
/// Works on 32-bit words in a 64-bit accumulator: since 2^16 = 1 modulo
/// 2^16 - 1, the folded sum of 32-bit words equals that of 16-bit words,
/// and a 20-byte IPv4 header is five additions instead of ten.
pub fn sum(data: &[u8], acc: u32) -> u32 {
    let mut wide = u64::from(acc);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        wide += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for w in &mut pairs {
        wide += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = pairs.remainder() {
        wide += u64::from(*last) << 8;
    }
    // Fold 64 -> 32 bits; `fold` finishes the job to 16.
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    wide = (wide & 0xffff_ffff) + (wide >> 32);
    // Keep the value below 2^32 - 2^16 so callers may add small terms.
    ((wide & 0xffff) + (wide >> 16)) as u32
}

/// Folds an accumulator to 16 bits (not complemented).
#[inline]
pub fn fold(acc: u32) -> u16 {
    // Adding the value to itself rotated by 16 leaves, in the top half,
    // the sum of its halves with their carry already added back: the two
    // rounds of mask, shift and add in three instructions.
    (acc.wrapping_add(acc.rotate_left(16)) >> 16) as u16
}

/// The complement of the folded sum of a 20-byte IPv4 header (one without
/// options), over five 32-bit words, no loop: the checksum field's value
/// when that field is zero, and 0 when the header's checksum is right.
#[inline(always)]
pub fn header20(h: &[u8; 20]) -> u16 {
    // Summed in native byte order (no swap per word): the one's complement
    // sum commutes with byte swapping (RFC 1071), so one swap of the result
    // gives network order, and none is needed to compare it with 0.
    let w = |at: usize| u64::from(u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    let s = w(0) + w(4) + w(8) + w(12) + w(16);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    u16::from_be(!fold(s as u32))
}

/// Whether a 20-byte IPv4 header's checksum is right: the same answer as
/// `header20(h) == 0`, in fewer steps. The folded one's complement sum is
/// the plain sum modulo 0xffff (2^16 and 2^32 are both 1 modulo 0xffff, so
/// 32-bit words in either byte order do), except that a nonzero multiple
/// of 0xffff folds to 0xffff, which is what a right header sums to.
///
/// The test for a nonzero multiple is one multiply and one compare
/// (Granlund and Montgomery's divisibility test): 0xffff is odd, so it
/// has an inverse modulo 2^64, and multiplying by it maps the multiples
/// `k * 0xffff` (for any `k`, as `s` is far below 2^64) to exactly `k`,
/// and every other value above `u64::MAX / 0xffff`; subtracting 1 moves
/// `k = 0` (the all-zero sum) to the top too. The compiler's own
/// remainder test took a widening multiply, a shift and a subtract, and
/// the zero test its own branch (4 instructions more per packet).
#[inline]
pub fn header20_valid(h: &[u8; 20]) -> bool {
    let w = |at: usize| u64::from(u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    nonzero_multiple_of_ffff(w(0) + w(4) + w(8) + w(12) + w(16))
}

/// `s != 0 && s % 0xffff == 0`, as [`header20_valid`] explains.
#[inline(always)]
fn nonzero_multiple_of_ffff(s: u64) -> bool {
    const INVERSE: u64 = 0xfffe_fffe_fffe_ffff;
    const { assert!(INVERSE.wrapping_mul(0xffff) == 1) };
    s.wrapping_mul(INVERSE).wrapping_sub(1) < u64::MAX / 0xffff
}

/// The checksum field value for `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changed from
/// `old` to `new`, given the old checksum field `check`.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// An updated checksum (`check`, from [`update16`] and the like) of a
/// message covered without a pseudo-header (ICMPv4), its field at
/// `check_at` in `message`. An update gives 0 for every message that
/// sums to a multiple of 0xffff, which is right but for a message of
/// zeros only (an echo reply of identifier, sequence and data 0): that one
/// needs 0xffff, or receivers refuse it. TCP's and UDP's pseudo-headers
/// never sum to zero. Rare enough (1 update in 65,536 gives 0) to look at
/// the bytes then.
pub fn updated_without_pseudo_header(check: u16, message: &[u8], check_at: usize) -> u16 {
    let only_zeros = || message.iter().enumerate().all(|(i, &b)| b == 0 || i == check_at || i == check_at + 1);
    if check == 0 && only_zeros() {
        0xffff
    } else {
        check
    }
}

/// As [`update16`] for a 32-bit field (an IPv4 address).
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    proptest::proptest! {
        /// The 32-bit-word sum folds to the same value as a plain 16-bit one.
        #[test]
        fn wide_sum_equals_word_sum(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300), acc in 0u32..0x10000) {
            let mut plain = u64::from(acc);
            for w in data.chunks(2) {
                plain += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            while plain > 0xffff {
                plain = (plain & 0xffff) + (plain >> 16);
            }
            proptest::prop_assert_eq!(u64::from(fold(sum(&data, acc))), plain);
        }
    }

    proptest::proptest! {
        /// The modulo test agrees with the fold, on any header and on
        /// headers whose checksum field was filled in right.
        #[test]
        fn header20_valid_agrees_with_the_fold(mut h in proptest::array::uniform20(proptest::num::u8::ANY), fill in proptest::bool::ANY) {
            if fill {
                h[10..12].fill(0);
                let c = header20(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                proptest::prop_assert!(header20_valid(&h));
            }
            proptest::prop_assert_eq!(header20_valid(&h), header20(&h) == 0);
        }
    }

    proptest::proptest! {
        /// The multiply test is the remainder test over every sum five
        /// 32-bit words can make, and at the edges of that range.
        #[test]
        fn the_divisibility_test_is_the_remainder_test(s in 0u64..=5 * u64::from(u32::MAX), k in 0u64..=5 * u64::from(u32::MAX) / 0xffff) {
            proptest::prop_assert_eq!(nonzero_multiple_of_ffff(s), s != 0 && s % 0xffff == 0);
            for t in [k * 0xffff, (k * 0xffff).saturating_sub(1), k * 0xffff + 1] {
                proptest::prop_assert_eq!(nonzero_multiple_of_ffff(t), t != 0 && t % 0xffff == 0, "{:#x}", t);
            }
        }
    }

    #[test]
    fn header20_valid_edge_cases() {
        for s in [0, 1, 0xfffe, 0xffff, 0x1_0000, 2 * 0xffff, 5 * u64::from(u32::MAX), u64::MAX / 0xffff * 0xffff, u64::MAX] {
            assert_eq!(nonzero_multiple_of_ffff(s), s != 0 && s % 0xffff == 0, "{s:#x}");
        }
        assert!(!header20_valid(&[0; 20]), "all zero sums to 0, not 0xffff");
        assert!(header20_valid(&[0xff; 20]), "all ones folds to 0xffff");
        let mut h = [0u8; 20];
        h[0] = 0x45;
        assert!(!header20_valid(&h));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut data = [0x45u8, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum(&data);
        let old = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        let new = 0xc612_0064u32;
        data[16..20].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update32(c, old, new), checksum(&data));
    }
}

/// The IPv4 pseudo-header's contribution to a TCP/UDP checksum.
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    acc += u32::from(protocol);
    acc + u32::from(l4_len)
}

/// The IPv6 pseudo-header's contribution (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, l4_len: u32) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    acc = acc.wrapping_add(l4_len >> 16).wrapping_add(l4_len & 0xffff);
    acc + u32::from(next_header)
}

/// The checksum field for an L4 segment given its pseudo-header sum. The
/// segment's own checksum field must be zero when this is computed.
pub fn l4_checksum(pseudo: u32, segment: &[u8]) -> u16 {
    !fold(sum(segment, pseudo))
}

#[cfg(test)]
mod pseudo_tests {
    use super::*;

    #[test]
    fn udp_checksum_matches_etherparse_v4_and_v6() {
        let payload = b"hello, world";
        let udp = etherparse::UdpHeader::with_ipv4_checksum(
            5000,
            53,
            &etherparse::Ipv4Header::new(20, 64, etherparse::IpNumber::UDP, [198, 18, 0, 10], [198, 18, 0, 100]).unwrap(),
            payload,
        )
        .unwrap();
        let mut seg = udp.to_bytes().to_vec();
        seg.extend_from_slice(payload);
        let want = u16::from_be_bytes([seg[6], seg[7]]);
        seg[6] = 0;
        seg[7] = 0;
        let ph = pseudo_header_v4([198, 18, 0, 10], [198, 18, 0, 100], 17, seg.len() as u16);
        assert_eq!(l4_checksum(ph, &seg), want);

        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let ip6 = etherparse::Ipv6Header {
            payload_length: 8 + payload.len() as u16,
            next_header: etherparse::IpNumber::UDP,
            hop_limit: 64,
            source: src,
            destination: dst,
            ..Default::default()
        };
        let udp = etherparse::UdpHeader::with_ipv6_checksum(5000, 53, &ip6, payload).unwrap();
        let mut seg = udp.to_bytes().to_vec();
        seg.extend_from_slice(payload);
        let want = u16::from_be_bytes([seg[6], seg[7]]);
        seg[6] = 0;
        seg[7] = 0;
        assert_eq!(l4_checksum(pseudo_header_v6(src, dst, 17, seg.len() as u32), &seg), want);
    }

    proptest::proptest! {
        #[test]
        fn header20_is_the_checksum_of_twenty_bytes(mut h in proptest::array::uniform20(proptest::prelude::any::<u8>())) {
            h[10] = 0;
            h[11] = 0;
            proptest::prop_assert_eq!(header20(&h), checksum(&h));
        }
    }
}
