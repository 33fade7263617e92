//! Ethernet II frames.

use crate::error::{Error, Result};
use core::fmt;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// EtherType values RVS looks at.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    use core::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
}

/// Length of the Ethernet II header (no VLAN tag).
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet II frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a whole Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst(&self) -> MacAddr {
        crate::bytes::mac(self.buffer.as_ref(), field::DST.start)
    }

    pub fn src(&self) -> MacAddr {
        crate::bytes::mac(self.buffer.as_ref(), field::SRC.start)
    }

    pub fn ethertype(&self) -> u16 {
        crate::bytes::be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The 802.1Q tag control information (PCP, DEI, VLAN id) when the
    /// frame carries one tag, with the EtherType behind it; `None` when
    /// untagged or too short for the tag.
    pub fn vlan(&self) -> Option<(u16, u16)> {
        let b = self.buffer.as_ref();
        (self.ethertype() == ethertype::VLAN && b.len() >= HEADER_LEN + VLAN_TAG_LEN).then(|| (crate::bytes::be16(b, 14), crate::bytes::be16(b, 16)))
    }

    /// Where the L3 header starts and its EtherType, looking past one
    /// 802.1Q tag.
    pub fn l3(&self) -> Result<(usize, u16)> {
        if self.ethertype() != ethertype::VLAN {
            return Ok((HEADER_LEN, self.ethertype()));
        }
        match self.vlan() {
            Some((_, inner)) => Ok((HEADER_LEN + VLAN_TAG_LEN, inner)),
            None => Err(Error::Truncated),
        }
    }
}

/// Bytes an 802.1Q tag adds.
pub const VLAN_TAG_LEN: usize = 4;

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_rejects_short_frames() {
        let mut f = [0u8; 20];
        f[0..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        f[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(e.src(), MacAddr([7, 8, 9, 10, 11, 12]));
        assert_eq!(e.ethertype(), ethertype::ARP);
        assert_eq!(e.payload().len(), 6);
        assert_eq!(EthernetFrame::new_checked(&f[..13]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn vlan_tag_is_seen_through() {
        let mut f = [0u8; 22];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[14..16].copy_from_slice(&[0x20, 0x64]); // PCP 1, VLAN 100
        f[16..18].copy_from_slice(&[0x08, 0x00]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan(), Some((0x2064, ethertype::IPV4)));
        assert_eq!(e.l3().unwrap(), (18, ethertype::IPV4));
        let e = EthernetFrame::new_checked(&f[..16]).unwrap();
        assert_eq!(e.vlan(), None);
        assert_eq!(e.l3().unwrap_err(), Error::Truncated);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(EthernetFrame::new_checked(&f[..]).unwrap().l3().unwrap(), (14, ethertype::ARP));
    }

    #[test]
    fn setters_write_bytes() {
        let mut f = [0u8; 14];
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        e.set_dst(MacAddr::BROADCAST);
        e.set_src(MacAddr([0x02, 0, 0, 0, 0, 1]));
        e.set_ethertype(ethertype::IPV4);
        assert_eq!(f, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 0]);
        assert_eq!(MacAddr([0x02, 0, 0, 0xab, 0, 1]).to_string(), "02:00:00:ab:00:01");
    }
}
