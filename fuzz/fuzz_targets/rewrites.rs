//! Every rewrite over arbitrary bytes, with parameters taken from the
//! input: an error or a rewritten packet, never a panic, never a write
//! outside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::rewrite::{self, icmp_error, nat, toa, tunnel, Endpoint};
use proto::MacAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let (params, packet) = data.split_at(24);
    let a4 = |k: usize| Ipv4Addr::new(params[k], params[k + 1], params[k + 2], params[k + 3]);
    let port = |k: usize| u16::from_be_bytes([params[k], params[k + 1]]);
    let e4 = |k: usize| Endpoint::v4(a4(k), port(k + 4));
    let mut v6 = [0u8; 16];
    v6.copy_from_slice(&params[0..16]);
    let e6 = Endpoint { addr: IpAddr::V6(Ipv6Addr::from(v6)), port: port(16) };

    let mut p = packet.to_vec();
    let _ = rewrite::direct_route(&mut p, MacAddr([1; 6]), MacAddr([2; 6]));
    for (src, dst) in [(Some(e4(0)), None), (None, Some(e4(6))), (Some(e4(0)), Some(e4(6))), (Some(e6), Some(e6))] {
        let mut p = packet.to_vec();
        let _ = nat::rewrite(&mut p, src, dst);
    }
    for client in [e4(12), e6] {
        let room = usize::from(params[18] % 64);
        let mut buf = packet.to_vec();
        buf.resize(packet.len() + room, 0);
        if let Ok(toa::Toa::Inserted { len }) = toa::insert_toa(&mut buf, packet.len(), client) {
            assert!(len <= buf.len());
        }
    }
    let _ = toa::clamp_mss(&mut packet.to_vec(), port(20));
    let head = usize::from(params[19] % 40);
    let mut buf = vec![0u8; head];
    buf.extend_from_slice(packet);
    let outer = tunnel::Outer::new(a4(0), a4(4));
    let (smac, dmac) = (MacAddr([1; 6]), MacAddr([2; 6]));
    let to = tunnel::Hop { outer: &outer, ident: port(8), mtu: port(10), src_ipv4: proto::rewrite::src_ipv4_word(smac), dst: proto::rewrite::mac_word(dmac) };
    if let Ok(start) = tunnel::ipip_encapsulate(&mut buf.clone(), head, packet.len(), &to) {
        assert!(start + packet.len() + tunnel::OVERHEAD <= buf.len());
    }
    // The per-packet path trusts its caller's parse, but arbitrary bytes
    // still give an error or a frame, never a panic.
    if let Ok(start) = tunnel::ipip_encapsulate_plain(&mut buf, head, &to) {
        assert!(start + packet.len() + tunnel::OVERHEAD <= buf.len());
    }
    let mut out = [0u8; 128];
    let _ = tunnel::frag_needed(&mut out, packet, a4(0), port(4), port(6));
    let _ = icmp_error::translate_icmp_v4(&mut packet.to_vec(), a4(0), a4(4), e4(8), e4(14));
    let _ = icmp_error::translate_icmp_v6(&mut packet.to_vec(), Ipv6Addr::from(v6), Ipv6Addr::LOCALHOST, e6, e6);
});
