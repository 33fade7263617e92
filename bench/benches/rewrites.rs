//! ns per packet for each rewrite primitive of `proto`, on a 64-byte-payload
//! TCP/IPv4 frame. Run: `cargo bench -p bench --bench rewrites`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use proto::rewrite::{direct_route, icmp_error, nat, toa, tunnel, Endpoint};
use proto::MacAddr;
use std::net::Ipv4Addr;

fn frame() -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 51, 100, 7], [198, 18, 0, 100], 64)
        .tcp(40000, 80, 1, 65535)
        .ack(1)
        .write(&mut f, &[0xab; 64])
        .unwrap();
    f
}

fn benches(c: &mut Criterion) {
    let f = frame();
    let lip = Endpoint::v4(Ipv4Addr::new(10, 1, 0, 2), 5001);
    let rs = Endpoint::v4(Ipv4Addr::new(10, 1, 0, 11), 8080);
    let client = Endpoint::v4(Ipv4Addr::new(198, 51, 100, 7), 40000);
    let vip = Endpoint::v4(Ipv4Addr::new(198, 18, 0, 100), 80);
    let mut g = c.benchmark_group("rewrite");

    let mut p = f.clone();
    g.bench_function("dr_mac", |b| b.iter(|| direct_route(black_box(&mut p), MacAddr([2; 6]), MacAddr([3; 6])).unwrap()));

    // Alternating directions keeps the packet valid across iterations.
    let mut p = f[14..].to_vec();
    g.bench_function("nat_dnat_then_undo", |b| {
        b.iter(|| {
            nat::rewrite(black_box(&mut p), None, Some(rs)).unwrap();
            nat::rewrite(black_box(&mut p), None, Some(vip)).unwrap();
        })
    });
    let mut p = f[14..].to_vec();
    g.bench_function("fullnat_in_then_out", |b| {
        b.iter(|| {
            nat::rewrite(black_box(&mut p), Some(lip), Some(rs)).unwrap();
            nat::rewrite(black_box(&mut p), Some(client), Some(vip)).unwrap();
        })
    });

    let ip = f[14..].to_vec();
    let mut buf = vec![0u8; ip.len() + 64];
    g.bench_function("toa_insert_incl_copy", |b| {
        b.iter(|| {
            buf[..ip.len()].copy_from_slice(&ip);
            toa::insert_toa(black_box(&mut buf), ip.len(), client).unwrap()
        })
    });

    let mut buf = vec![0u8; 20 + f.len()];
    let outer = tunnel::Outer::new(lip.addr_v4(), rs.addr_v4());
    let to = tunnel::Hop { outer: &outer, ident: 1, mtu: 1500, src_ipv4: proto::rewrite::src_ipv4_word(MacAddr::ZERO), dst: 0 };
    g.bench_function("ipip_encap_incl_copy", |b| {
        b.iter(|| {
            buf[20..].copy_from_slice(&f);
            tunnel::ipip_encapsulate(black_box(&mut buf), 20, f.len(), &to).unwrap()
        })
    });

    // An ICMP port unreachable quoting a FullNAT'd UDP packet.
    let mut quoted = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 1, 0, 2], [10, 1, 0, 11], 64).udp(5001, 53).write(&mut quoted, b"query").unwrap();
    let mut err = Vec::new();
    let t = etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    etherparse::PacketBuilder::ipv4([10, 1, 0, 11], [10, 1, 0, 2], 64).icmpv4(t).write(&mut err, &quoted[..28]).unwrap();
    let mut p = err.clone();
    g.bench_function("icmp_error_translate", |b| {
        b.iter(|| icmp_error::translate_icmp_v4(black_box(&mut p), Ipv4Addr::new(198, 18, 0, 100), Ipv4Addr::new(198, 51, 100, 7), client, vip).unwrap())
    });
    g.finish();
}

trait V4 {
    fn addr_v4(&self) -> Ipv4Addr;
}

impl V4 for Endpoint {
    fn addr_v4(&self) -> Ipv4Addr {
        match self.addr {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => unreachable!("benchmark endpoints are IPv4"),
        }
    }
}

criterion_group!(rewrite_benches, benches);
criterion_main!(rewrite_benches);
