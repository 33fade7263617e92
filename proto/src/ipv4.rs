//! IPv4 headers (RFC 791).

use crate::checksum;
use crate::error::{Error, Result};
use core::net::Ipv4Addr;

/// IP protocol numbers RVS looks at.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

mod field {
    use core::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOTAL_LEN: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLAGS_FRAG: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC: Range<usize> = 12..16;
    pub(super) const DST: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet. `new_checked` guarantees: version 4,
/// 20 <= header length <= total length <= buffer length.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed("IP version is not 4"));
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Error::Malformed("IPv4 header length below 20"));
        }
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total < header_len {
            return Err(Error::Malformed("IPv4 total length below header length"));
        }
        if total > b.len() || header_len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Ipv4Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        crate::bytes::be16(self.b(), r.start)
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(self.u16_at(field::TOTAL_LEN))
    }

    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    pub fn dont_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// True for the first fragment (offset 0) of a fragmented packet, and
    /// for an unfragmented one: where the L4 header is.
    pub fn is_first_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FRAG_OFFSET_MASK == 0
    }

    /// True for any fragment: more-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    pub fn tos(&self) -> u8 {
        self.b()[1]
    }

    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }

    pub fn header_checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        crate::bytes::ipv4(self.b(), field::SRC.start)
    }

    pub fn dst(&self) -> Ipv4Addr {
        crate::bytes::ipv4(self.b(), field::DST.start)
    }

    /// The option bytes (between the fixed header and the header length).
    pub fn options(&self) -> &[u8] {
        &self.b()[MIN_HEADER_LEN..self.header_len()]
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.b()[..self.header_len()], 0)) == 0xffff
    }

    /// The payload: header end to total length (link padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Sets the total length. The caller keeps it within the buffer.
    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_header_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_header_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_header_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[hl..tl]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20-byte header: 198.18.0.10 -> 198.18.0.100, TCP, total length 40.
    fn header() -> [u8; 40] {
        let mut p = [0u8; 40];
        p[..20].copy_from_slice(&[0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 10, 198, 18, 0, 100]);
        let mut v = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        v.fill_checksum();
        p
    }

    #[test]
    fn fields_and_checksum() {
        let p = header();
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.header_len(), 20);
        assert_eq!(v.total_len(), 40);
        assert_eq!(v.protocol(), protocol::TCP);
        assert_eq!(v.src(), Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(v.dst(), Ipv4Addr::new(198, 18, 0, 100));
        assert!(v.dont_fragment());
        assert!(!v.is_fragment());
        assert!(v.verify_checksum());
        assert_eq!(v.payload().len(), 20);
        // Independent oracle: etherparse agrees on the checksum.
        let h = etherparse::Ipv4HeaderSlice::from_slice(&p).unwrap();
        assert_eq!(h.to_header().calc_header_checksum(), v.header_checksum());
    }

    #[test]
    fn rejects_bad_headers() {
        let p = header();
        assert_eq!(Ipv4Packet::new_checked(&p[..19]).unwrap_err(), Error::Truncated);
        let mut q = p;
        q[0] = 0x65; // version 6
        assert!(matches!(Ipv4Packet::new_checked(&q[..]), Err(Error::Malformed(_))));
        let mut q = p;
        q[0] = 0x44; // IHL 4
        assert!(matches!(Ipv4Packet::new_checked(&q[..]), Err(Error::Malformed(_))));
        let mut q = p;
        q[3] = 41; // total length past the buffer
        assert_eq!(Ipv4Packet::new_checked(&q[..]).unwrap_err(), Error::Truncated);
        let mut q = p;
        q[3] = 19; // total length below header length
        assert!(Ipv4Packet::new_checked(&q[..]).is_err());
        let mut q = p;
        q[0] = 0x4f; // IHL 15 = 60 bytes, past total length 40
        assert!(Ipv4Packet::new_checked(&q[..]).is_err());
    }

    #[test]
    fn fragments_are_recognised() {
        let mut p = header();
        p[6] = 0x20; // MF
        assert!(Ipv4Packet::new_checked(&p[..]).unwrap().is_fragment());
        p[6] = 0;
        p[7] = 1; // offset 8
        assert!(Ipv4Packet::new_checked(&p[..]).unwrap().is_fragment());
    }

    #[test]
    fn padding_after_total_length_is_not_payload() {
        let mut buf = [0u8; 60];
        buf[..40].copy_from_slice(&header());
        let v = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(v.payload().len(), 20);
    }
}
