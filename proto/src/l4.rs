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
