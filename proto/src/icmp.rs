//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages, including the IP
//! header and first L4 bytes that error messages carry.

use crate::bytes::be16;
use crate::error::{Error, Result};
use crate::ipv4::protocol;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const HEADER_LEN: usize = 8;

/// ICMPv4 types RVS handles.
pub mod v4_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Code of DEST_UNREACHABLE: fragmentation needed and DF set.
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 error types (all types below 128 are errors).
pub mod v6_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
}

/// A view of an ICMP message (either version: the layout is shared).
#[derive(Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(IcmpPacket { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Bytes 4..8 (next-hop MTU of "fragmentation needed", echo id/seq...).
    pub fn rest(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[4], b[5], b[6], b[7]]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True for ICMPv4 messages that carry an offending packet.
    pub fn is_v4_error(&self) -> bool {
        use v4_type::*;
        matches!(self.msg_type(), DEST_UNREACHABLE | SOURCE_QUENCH | TIME_EXCEEDED | PARAMETER_PROBLEM)
    }

    /// True for ICMPv6 error messages.
    pub fn is_v6_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// True when the whole message sums to zero (the checksum is right).
    /// For ICMPv6, `pseudo` is the IPv6 pseudo-header sum; 0 for ICMPv4.
    pub fn verify(&self, pseudo: u32) -> bool {
        crate::checksum::fold(crate::checksum::sum(self.buffer.as_ref(), pseudo)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Recomputes the checksum over the whole message (plus `pseudo`).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        let b = self.buffer.as_mut();
        b[2] = 0;
        b[3] = 0;
        let c = crate::checksum::l4_checksum(pseudo, b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The flow an ICMP error is about: from the embedded packet's header and
/// the first 8 bytes of its L4 header (enough for both ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedFlow {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Where the embedded IP header starts within the ICMP payload, and
    /// where its L4 header starts.
    pub ip_len: usize,
}

/// Reads the embedded packet of an ICMP error's payload (either IP
/// version). The embedded packet is usually truncated: only its header
/// and 8 L4 bytes must be there, and only TCP and UDP are accepted.
pub fn embedded_flow(payload: &[u8]) -> Result<EmbeddedFlow> {
    let (protocol, src, dst, ip_len) = match payload.first().map(|b| b >> 4) {
        Some(4) => {
            if payload.len() < 20 {
                return Err(Error::Truncated);
            }
            let hl = usize::from(payload[0] & 0x0f) * 4;
            if hl < 20 {
                return Err(Error::Malformed("embedded IPv4 header length below 20"));
            }
            let a = |at: usize| IpAddr::V4(Ipv4Addr::new(payload[at], payload[at + 1], payload[at + 2], payload[at + 3]));
            (payload[9], a(12), a(16), hl)
        }
        Some(6) => {
            if payload.len() < 40 {
                return Err(Error::Truncated);
            }
            let a = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&payload[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            (payload[6], a(8), a(24), 40)
        }
        _ => return Err(Error::Malformed("embedded packet is not IP")),
    };
    if protocol != protocol::TCP && protocol != protocol::UDP {
        return Err(Error::Malformed("embedded packet is not TCP or UDP"));
    }
    if payload.len() < ip_len + 8 {
        return Err(Error::Truncated);
    }
    let l4 = &payload[ip_len..];
    Ok(EmbeddedFlow { protocol, src, dst, src_port: be16(l4, 0), dst_port: be16(l4, 2), ip_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ICMP port unreachable from 10.1.0.11 about UDP 10.1.0.2:5001 -> 10.1.0.11:53.
    pub(crate) fn port_unreachable() -> Vec<u8> {
        let mut inner = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 1, 0, 2], [10, 1, 0, 11], 64).udp(5001, 53).write(&mut inner, b"query").unwrap();
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner[..28]);
        let mut v = IcmpPacket::new_checked(&mut icmp[..]).unwrap();
        v.fill_checksum(0);
        icmp
    }

    #[test]
    fn reads_an_error_and_its_flow() {
        let m = port_unreachable();
        let v = IcmpPacket::new_checked(&m[..]).unwrap();
        assert_eq!((v.msg_type(), v.code()), (3, 3));
        assert!(v.is_v4_error() && v.verify(0));
        let f = embedded_flow(v.payload()).unwrap();
        assert_eq!((f.protocol, f.src_port, f.dst_port, f.ip_len), (17, 5001, 53, 20));
        assert_eq!(f.src, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)));
        // Checksum agrees with etherparse's ICMPv4 parser.
        let e = etherparse::Icmpv4Slice::from_slice(&m).unwrap();
        assert_eq!(e.checksum(), v.checksum());
        assert_eq!(etherparse::Icmpv4Header::with_checksum(e.icmp_type(), e.payload()).checksum, v.checksum());
    }

    #[test]
    fn bad_embedded_packets_are_errors() {
        let m = port_unreachable();
        assert_eq!(embedded_flow(&m[8..30]).unwrap_err(), Error::Truncated);
        let mut e = m[8..].to_vec();
        e[0] = 0x43;
        assert!(embedded_flow(&e).is_err());
        let mut e = m[8..].to_vec();
        e[9] = 1;
        assert!(embedded_flow(&e).is_err());
        assert!(embedded_flow(&[]).is_err());
        assert!(embedded_flow(&[0x60; 30]).is_err());
        assert!(IcmpPacket::new_checked(&[0u8; 7][..]).is_err());
    }
}
