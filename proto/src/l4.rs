//! The parts of TCP and UDP headers RVS needs for flow lookup: ports and,
//! for TCP, the flags that drive connection state.

use crate::bytes::be16;
use crate::error::{Error, Result};

pub const TCP_MIN_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;

/// TCP flag bits (low byte of the flags field).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// A view of a TCP segment. `new_checked` guarantees the fixed header and
/// its options (data offset) lie inside the buffer.
#[derive(Debug)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < TCP_MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let off = usize::from(b[12] >> 4) * 4;
        if off < TCP_MIN_HEADER_LEN {
            return Err(Error::Malformed("TCP data offset below 5"));
        }
        if off > b.len() {
            return Err(Error::Truncated);
        }
        Ok(TcpSegment { buffer })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[12] >> 4) * 4
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[13]
    }

    pub fn seq(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    pub fn ack(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[8], b[9], b[10], b[11]])
    }

    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), 14)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 16)
    }

    /// The option bytes (between the fixed header and the data).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[TCP_MIN_HEADER_LEN..self.header_len()]
    }

    /// Iterates the options; stops at End of Option List or at the first
    /// malformed option (yielding it as an error).
    pub fn option_iter(&self) -> TcpOptions<'_> {
        TcpOptions { bytes: self.options(), at: 0 }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The MSS option's value, if present.
    pub fn mss(&self) -> Option<u16> {
        self.option_iter().find_map(|o| match o {
            Ok(TcpOption { kind: tcp_option::MSS, data, .. }) if data.len() == 2 => Some(u16::from_be_bytes([data[0], data[1]])),
            _ => None,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[16..18].copy_from_slice(&value.to_be_bytes());
    }
}

/// TCP option kinds RVS reads or writes.
pub mod tcp_option {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
    /// TCP Option for Address: the client's address for FullNAT.
    pub const TOA: u8 = 254;
}

/// One option: kind, its data, and where it starts within the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOption<'a> {
    pub kind: u8,
    pub data: &'a [u8],
    pub offset: usize,
}

impl TcpOption<'_> {
    /// Bytes it occupies (1 for NOP, else 2 + data).
    pub fn len(&self) -> usize {
        if self.kind == tcp_option::NOP {
            1
        } else {
            2 + self.data.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Iterator over TCP options (see [`TcpSegment::option_iter`]).
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        let at = self.at;
        let &kind = b.get(at)?;
        match kind {
            tcp_option::EOL => {
                self.at = b.len();
                None
            }
            tcp_option::NOP => {
                self.at += 1;
                Some(Ok(TcpOption { kind, data: &[], offset: at }))
            }
            _ => {
                let len = usize::from(*b.get(at + 1).unwrap_or(&0));
                if len < 2 || at + len > b.len() {
                    self.at = b.len();
                    return Some(Err(Error::Malformed("TCP option length")));
                }
                self.at += len;
                Some(Ok(TcpOption { kind, data: &b[at + 2..at + len], offset: at }))
            }
        }
    }
}

/// A view of a UDP datagram. `new_checked` guarantees the 8-byte header and
/// a length field between 8 and the buffer length.
#[derive(Debug)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < UDP_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(be16(b, 4));
        if len < UDP_HEADER_LEN {
            return Err(Error::Malformed("UDP length below 8"));
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(UdpDatagram { buffer })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    pub fn len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), 4))
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// 0 means "no checksum" (IPv4 only).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[6..8].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_flags_and_bounds() {
        let mut s = [0u8; 24];
        s[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        s[12] = 6 << 4; // 24-byte header
        s[13] = tcp_flags::SYN;
        let t = TcpSegment::new_checked(&s[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (40000, 80));
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), tcp_flags::SYN);
        assert_eq!(TcpSegment::new_checked(&s[..23]).unwrap_err(), Error::Truncated);
        s[12] = 4 << 4;
        assert!(matches!(TcpSegment::new_checked(&s[..]), Err(Error::Malformed(_))));
        assert_eq!(TcpSegment::new_checked(&s[..19]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn tcp_options_are_iterated_and_bounded() {
        // 20 + 12 bytes: MSS 1460, NOP, NOP, SACK-permitted, NOP, WS 7.
        let mut s = [0u8; 32];
        s[12] = 8 << 4;
        s[20..32].copy_from_slice(&[2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
        let t = TcpSegment::new_checked(&s[..]).unwrap();
        let kinds: Vec<u8> = t.option_iter().map(|o| o.unwrap().kind).collect();
        assert_eq!(kinds, [2, 1, 1, 4, 1, 3]);
        assert_eq!(t.mss(), Some(1460));
        let ws = t.option_iter().map(Result::unwrap).find(|o| o.kind == 3).unwrap();
        assert_eq!((ws.data, ws.offset, ws.len()), (&[7u8][..], 9, 3));
        // A length running past the header is an error, then the end.
        s[21] = 40;
        let t = TcpSegment::new_checked(&s[..]).unwrap();
        let v: Vec<_> = t.option_iter().collect();
        assert_eq!(v.len(), 1);
        assert!(v[0].is_err());
        assert_eq!(t.mss(), None);
        // Length 0 and 1 are malformed too; EOL ends the list.
        s[21] = 1;
        assert!(TcpSegment::new_checked(&s[..]).unwrap().option_iter().next().unwrap().is_err());
        s[20] = 0;
        assert_eq!(TcpSegment::new_checked(&s[..]).unwrap().option_iter().count(), 0);
    }

    #[test]
    fn udp_ports_and_length() {
        let mut d = [0u8; 12];
        d[..6].copy_from_slice(&[0x13, 0x88, 0, 53, 0, 12]);
        let u = UdpDatagram::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (5000, 53));
        d[5] = 13;
        assert_eq!(UdpDatagram::new_checked(&d[..]).unwrap_err(), Error::Truncated);
        d[5] = 7;
        assert!(matches!(UdpDatagram::new_checked(&d[..]), Err(Error::Malformed(_))));
        assert_eq!(UdpDatagram::new_checked(&d[..7]).unwrap_err(), Error::Truncated);
    }
}
