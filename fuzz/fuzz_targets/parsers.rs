//! Every view over arbitrary bytes: constructing it either fails with an
//! error or yields a view whose every accessor works without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::arp::ArpPacket;
use proto::ethernet::EthernetFrame;
use proto::icmp::{embedded_flow, IcmpPacket};
use proto::ipv4::Ipv4Packet;
use proto::ipv6::Ipv6Packet;
use proto::l4::{TcpSegment, UdpDatagram};

fn l4(data: &[u8]) {
    if let Ok(t) = TcpSegment::new_checked(data) {
        let _ = (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags(), t.window(), t.checksum(), t.mss());
        let _ = (t.options().len(), t.payload().len());
        for o in t.option_iter() {
            let _ = o.map(|o| (o.kind, o.data.len(), o.len()));
        }
    }
    if let Ok(u) = UdpDatagram::new_checked(data) {
        let _ = (u.src_port(), u.dst_port(), u.len(), u.checksum());
    }
    if let Ok(i) = IcmpPacket::new_checked(data) {
        let _ = (i.msg_type(), i.code(), i.checksum(), i.rest(), i.is_v4_error(), i.is_v6_error(), i.verify(0));
        let _ = embedded_flow(i.payload());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.dst(), e.src(), e.ethertype(), e.vlan(), e.payload().len());
        if let Ok((at, _)) = e.l3() {
            let _ = ArpPacket::new_checked(&data[at..]).map(|a| (a.operation(), a.sender_ip(), a.sender_mac(), a.target_ip(), a.target_mac()));
        }
    }
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = (ip.header_len(), ip.total_len(), ip.ident(), ip.tos(), ip.ttl(), ip.protocol(), ip.src(), ip.dst());
        let _ = (ip.dont_fragment(), ip.is_fragment(), ip.is_first_fragment(), ip.verify_checksum(), ip.options().len());
        l4(ip.payload());
    }
    if let Ok(ip) = Ipv6Packet::new_checked(data) {
        let _ = (ip.payload_len(), ip.next_header(), ip.hop_limit(), ip.src(), ip.dst());
        l4(ip.payload());
    }
    l4(data);
});
