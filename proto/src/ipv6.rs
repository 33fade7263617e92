//! IPv6 fixed headers (RFC 8200). Extension headers are not walked:
//! `next_header` is what follows the fixed header.

use crate::error::{Error, Result};
use core::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet. `new_checked` guarantees version 6 and
/// 40 + payload length <= buffer length.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed("IP version is not 6"));
        }
        if HEADER_LEN + usize::from(crate::bytes::be16(b, 4)) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Ipv6Packet { buffer })
    }

    pub fn payload_len(&self) -> usize {
        usize::from(crate::bytes::be16(self.buffer.as_ref(), 4))
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }

    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), 8)
    }

    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), 24)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[8..24].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[24..40].copy_from_slice(&a.octets());
    }

    /// The caller keeps 40 + `len` within the buffer.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[4..6].copy_from_slice(&len.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let n = self.payload_len();
        &mut self.buffer.as_mut()[HEADER_LEN..HEADER_LEN + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_bounds() {
        let h = etherparse::Ipv6Header {
            payload_length: 4,
            next_header: etherparse::IpNumber::UDP,
            hop_limit: 63,
            source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ..Default::default()
        };
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(&[1, 2, 3, 4, 0xee]); // one byte of link padding
        let v = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!((v.payload_len(), v.next_header(), v.hop_limit()), (4, 17, 63));
        assert_eq!(v.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.payload(), &[1, 2, 3, 4]);
        assert_eq!(Ipv6Packet::new_checked(&p[..43]).unwrap_err(), Error::Truncated);
        assert_eq!(Ipv6Packet::new_checked(&p[..39]).unwrap_err(), Error::Truncated);
        let mut q = p.clone();
        q[0] = 0x45;
        assert!(matches!(Ipv6Packet::new_checked(&q[..]), Err(Error::Malformed(_))));
    }
}
