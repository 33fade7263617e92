//! Answering an ICMPv4 echo request (ping) in place: the load balancer
//! replies for its virtual addresses itself, as a director whose VIPs are
//! local addresses does.

use crate::error::{Error, Result};
use crate::ethernet::{EthernetFrame, MacAddr};
use crate::icmp::{v4_type, IcmpPacket};
use crate::ipv4::{protocol, Ipv4Packet};
use crate::{checksum, ethernet};

/// The TTL of the replies (Linux's default).
pub const REPLY_TTL: u8 = 64;

/// Turns the echo request in `frame` into its reply, from `our_mac`, back
/// to the sender's MAC: addresses swapped, type 0, identifier, sequence and
/// data kept. Refuses anything but a complete, unfragmented echo request
/// with a correct ICMP checksum.
pub fn reply_in_place(frame: &mut [u8], our_mac: MacAddr) -> Result<()> {
    let sender = {
        let eth = EthernetFrame::new_checked(&*frame)?;
        let ip = Ipv4Packet::new_checked(eth.payload())?;
        if ip.protocol() != protocol::ICMP || ip.is_fragment() {
            return Err(Error::Malformed("not an unfragmented ICMP packet"));
        }
        let icmp = IcmpPacket::new_checked(ip.payload())?;
        if icmp.msg_type() != v4_type::ECHO_REQUEST || icmp.code() != 0 {
            return Err(Error::Malformed("not an echo request"));
        }
        if !icmp.verify(0) {
            return Err(Error::Malformed("bad ICMP checksum"));
        }
        eth.src()
    };
    let mut eth = EthernetFrame::new_checked(&mut *frame)?;
    eth.set_dst(sender);
    eth.set_src(our_mac);
    let mut ip = Ipv4Packet::new_checked(&mut frame[ethernet::HEADER_LEN..])?;
    let (src, dst) = (ip.src(), ip.dst());
    ip.set_src(dst);
    ip.set_dst(src);
    ip.set_ttl(REPLY_TTL);
    ip.fill_checksum();
    let icmp = ip.payload_mut();
    // Type and code form the first 16-bit word: 0x0800 becomes 0x0000.
    let check = u16::from_be_bytes([icmp[2], icmp[3]]);
    icmp[0] = v4_type::ECHO_REPLY;
    let check = checksum::update16(check, u16::from(v4_type::ECHO_REQUEST) << 8, 0);
    let check = checksum::updated_without_pseudo_header(check, icmp, 2);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn request(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 10], US.0).ipv4([198, 18, 0, 10], [198, 18, 0, 100], 57).icmpv4_echo_request(id, seq);
        let mut f = Vec::new();
        b.write(&mut f, data).unwrap();
        f
    }

    proptest! {
        /// Any echo request becomes a reply etherparse accepts, with every
        /// checksum right and the identifier, sequence and data kept.
        #[test]
        fn replies_are_exact(id in any::<u16>(), seq in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut f = request(id, seq, &data);
            reply_in_place(&mut f, US).unwrap();
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else { panic!("ethernet") };
            prop_assert_eq!((eth.source(), eth.destination()), (US.0, [2, 0, 0, 0, 0, 10]));
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("ipv4") };
            let h = ip.header().to_header();
            prop_assert_eq!((h.source, h.destination, h.time_to_live), ([198, 18, 0, 100], [198, 18, 0, 10], REPLY_TTL));
            prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
            let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else { panic!("icmp") };
            prop_assert_eq!(icmp.icmp_type(), etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id, seq }));
            prop_assert_eq!(icmp.payload(), &data[..]);
            prop_assert_eq!(icmp.checksum(), icmp.icmp_type().calc_checksum(icmp.payload()));
        }
    }

    /// A reply that is all zeros but for its checksum sums to zero, so
    /// its checksum is 0xffff; updating the request's for the type's
    /// change gave 0x0000, which a kernel refuses (found by the modes
    /// fuzz target).
    #[test]
    fn an_all_zero_reply_gets_the_checksum_that_verifies() {
        let mut f = request(0, 0, &[0; 13]);
        reply_in_place(&mut f, US).unwrap();
        let icmp = &f[34..];
        assert_eq!(&icmp[2..4], &[0xff, 0xff]);
        assert_eq!(checksum::fold(checksum::sum(icmp, 0)), 0xffff, "verifies as a receiver checks it");
    }

    #[test]
    fn refuses_what_is_not_a_clean_echo_request() {
        let good = request(1, 2, b"ping");
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        assert!(reply_in_place(&mut bad_sum, US).is_err());
        let mut reply = good.clone();
        reply[34] = v4_type::ECHO_REPLY;
        assert!(reply_in_place(&mut reply, US).is_err());
        assert!(reply_in_place(&mut good[..40].to_vec(), US).is_err(), "truncated");
        let mut ok = good;
        assert!(reply_in_place(&mut ok, US).is_ok());
    }
}
