//! ARP for IPv4 over Ethernet (RFC 826): the only kind RVS speaks.

use crate::bytes;
use crate::error::{Error, Result};
use crate::ethernet::{self, EthernetFrame, MacAddr};
use core::net::Ipv4Addr;

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// Length of a whole ARP frame on the wire before padding.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

mod field {
    use core::ops::Range;
    pub(super) const HTYPE: Range<usize> = 0..2;
    pub(super) const PTYPE: Range<usize> = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Range<usize> = 6..8;
    pub(super) const SHA: Range<usize> = 8..14;
    pub(super) const SPA: Range<usize> = 14..18;
    pub(super) const THA: Range<usize> = 18..24;
    pub(super) const TPA: Range<usize> = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Accepts only Ethernet (htype 1, hlen 6) / IPv4 (ptype 0x0800, plen 4).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if b[field::HTYPE] != [0, 1] || b[field::HLEN] != 6 {
            return Err(Error::Malformed("ARP hardware type is not Ethernet"));
        }
        if b[field::PTYPE] != [0x08, 0x00] || b[field::PLEN] != 4 {
            return Err(Error::Malformed("ARP protocol type is not IPv4"));
        }
        Ok(ArpPacket { buffer })
    }

    pub fn operation(&self) -> u16 {
        bytes::be16(self.buffer.as_ref(), field::OPER.start)
    }

    pub fn sender_mac(&self) -> MacAddr {
        bytes::mac(self.buffer.as_ref(), field::SHA.start)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        bytes::ipv4(self.buffer.as_ref(), field::SPA.start)
    }

    pub fn target_mac(&self) -> MacAddr {
        bytes::mac(self.buffer.as_ref(), field::THA.start)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        bytes::ipv4(self.buffer.as_ref(), field::TPA.start)
    }
}

fn write_arp(b: &mut [u8], op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
    b[field::HTYPE].copy_from_slice(&[0, 1]);
    b[field::PTYPE].copy_from_slice(&[0x08, 0x00]);
    b[field::HLEN] = 6;
    b[field::PLEN] = 4;
    b[field::OPER].copy_from_slice(&op.to_be_bytes());
    b[field::SHA].copy_from_slice(&sha.0);
    b[field::SPA].copy_from_slice(&spa.octets());
    b[field::THA].copy_from_slice(&tha.0);
    b[field::TPA].copy_from_slice(&tpa.octets());
}

/// Turns a received ARP request frame, in place, into the reply that says
/// `our_mac` owns the requested address. The frame must have been validated
/// (Ethernet + ARP views); returns the frame length to transmit.
pub fn reply_in_place(frame: &mut [u8], our_mac: MacAddr) -> Result<usize> {
    let (requester_mac, requester_ip, wanted_ip) = {
        let eth = EthernetFrame::new_checked(&*frame)?;
        let arp = ArpPacket::new_checked(eth.payload())?;
        if arp.operation() != OP_REQUEST {
            return Err(Error::Malformed("not an ARP request"));
        }
        (arp.sender_mac(), arp.sender_ip(), arp.target_ip())
    };
    let mut eth = EthernetFrame::new_checked(&mut *frame)?;
    eth.set_dst(requester_mac);
    eth.set_src(our_mac);
    write_arp(eth.payload_mut(), OP_REPLY, our_mac, wanted_ip, requester_mac, requester_ip);
    Ok(frame.len())
}

/// Writes a broadcast "who has `target`? tell `sender_ip`" frame into `buf`
/// (at least [`FRAME_LEN`] bytes) and returns its length.
pub fn write_request(buf: &mut [u8], sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Result<usize> {
    if buf.len() < FRAME_LEN {
        return Err(Error::Truncated);
    }
    let frame = &mut buf[..FRAME_LEN];
    let mut eth = EthernetFrame::new_checked(&mut *frame)?;
    eth.set_dst(MacAddr::BROADCAST);
    eth.set_src(sender_mac);
    eth.set_ethertype(ethernet::ethertype::ARP);
    write_arp(eth.payload_mut(), OP_REQUEST, sender_mac, sender_ip, MacAddr::ZERO, target);
    Ok(FRAME_LEN)
}

/// Writes a gratuitous ARP announcing that `ip` is at `mac` (a broadcast
/// request with sender = target = `ip`, as Linux sends it) and returns its
/// length. Neighbors update their caches; switches learn the port.
pub fn write_gratuitous(buf: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> Result<usize> {
    write_request(buf, mac, ip, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
    const LB: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    fn request_frame() -> Vec<u8> {
        let mut f = vec![0u8; 60]; // minimum Ethernet frame, padded
        write_request(&mut f, CLIENT, Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 100)).unwrap();
        f
    }

    #[test]
    fn request_bytes_are_exact() {
        let f = request_frame();
        let expect: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0x10, 0x08, 0x06, // ethernet
            0, 1, 8, 0, 6, 4, 0, 1, // htype ptype hlen plen op
            2, 0, 0, 0, 0, 0x10, 198, 18, 0, 10, // sender
            0, 0, 0, 0, 0, 0, 198, 18, 0, 100, // target
        ];
        assert_eq!(&f[..42], &expect[..]);
    }

    #[test]
    fn gratuitous_names_the_address_twice() {
        let mut f = [0u8; 42];
        write_gratuitous(&mut f, LB, Ipv4Addr::new(198, 18, 0, 100)).unwrap();
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let a = ArpPacket::new_checked(eth.payload()).unwrap();
        assert!(eth.dst().is_broadcast());
        assert_eq!(
            (a.operation(), a.sender_ip(), a.target_ip(), a.sender_mac()),
            (OP_REQUEST, Ipv4Addr::new(198, 18, 0, 100), Ipv4Addr::new(198, 18, 0, 100), LB)
        );
    }

    #[test]
    fn reply_in_place_swaps_roles() {
        let mut f = request_frame();
        assert_eq!(reply_in_place(&mut f, LB).unwrap(), 60);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst(), CLIENT);
        assert_eq!(eth.src(), LB);
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.operation(), OP_REPLY);
        assert_eq!(arp.sender_mac(), LB);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(arp.target_mac(), CLIENT);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(198, 18, 0, 10));
        // A reply is not answered again.
        assert!(reply_in_place(&mut f, LB).is_err());
    }

    #[test]
    fn rejects_non_ethernet_ipv4_and_short() {
        let f = request_frame();
        let mut p = f[14..42].to_vec();
        assert!(ArpPacket::new_checked(&p[..27]).is_err());
        p[1] = 6; // htype 6 (IEEE 802)
        assert!(matches!(ArpPacket::new_checked(&p[..]), Err(Error::Malformed(_))));
        let mut p = f[14..42].to_vec();
        p[5] = 16; // plen 16
        assert!(ArpPacket::new_checked(&p[..]).is_err());
    }
}
