//! The configuration file, as an operator may get it wrong: any text is
//! either refused with errors that name a position, or accepted as a
//! configuration the data plane can run (its snapshot checks, a pipeline
//! built from it takes new connections to every service, reloads to a
//! changed pool, takes more, and ticks through a day).
//! Seeded with `configs/*.toml` and `fuzz/seeds/config/` (scripts/test.sh
//! copies them in); inputs starting with a 0 byte vary the numbers of a
//! file with every key instead.
#![no_main]

use control::health::HealthState;
use dataplane::config::{Interface, L4Proto, Snapshot};
use dataplane::health::{Health, HealthBoard};
use dataplane::neighbor::SharedNeighbors;
use dataplane::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;
use proto::{checksum, MacAddr};
use std::sync::Arc;

/// Every key with a valid value (also in the seed corpus).
const EVERY_KEY: &str = include_str!("../seeds/config/every-key.toml");

/// Numbers at the edges of what the keys accept, and past them.
const EDGES: [&str; 20] = [
    "0",
    "1",
    "-1",
    "2",
    "100",
    "255",
    "256",
    "576",
    "9216",
    "65535",
    "65536",
    "2147483648",
    "4294967295",
    "4294967296",
    "4294967291",
    "31536000",
    "31536001",
    "9223372036854775807",
    "0.0001",
    "1e300",
];

/// [`EVERY_KEY`] with the numbers the input picks replaced: for each key
/// whose value is a number, in order, one input byte keeps it (even) or
/// picks its replacement, an edge or the next 8 bytes as an integer. The
/// raw text mutations rarely get a number into the right key; this
/// reaches every number's checks (and what the data plane does with it).
fn numbers_replaced(data: &[u8]) -> String {
    let mut input = data.iter().copied();
    let mut out = String::with_capacity(EVERY_KEY.len());
    for line in EVERY_KEY.lines() {
        let value = line.split_once(" = ").filter(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit()));
        match (value, input.next()) {
            (Some((key, _)), Some(b)) if b % 2 == 1 => {
                out.push_str(key);
                out.push_str(" = ");
                match usize::from(b / 2).checked_sub(EDGES.len()) {
                    None => out.push_str(EDGES[usize::from(b / 2)]),
                    Some(_) => {
                        let raw: Vec<u8> = input.by_ref().take(8).collect();
                        let mut word = [0u8; 8];
                        word[..raw.len()].copy_from_slice(&raw);
                        out.push_str(&(i64::from_le_bytes(word) >> (b % 64)).to_string());
                    }
                }
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses: the input as the file, or the numbers of a
    // file with every key.
    let owned;
    let text = match data.split_first() {
        Some((0, rest)) => {
            owned = numbers_replaced(rest);
            owned.as_str()
        }
        _ => match std::str::from_utf8(data) {
            Ok(t) => t,
            Err(_) => return,
        },
    };
    let cfg = match control::config::parse("fuzz.toml", text) {
        Ok(c) => c,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a reason");
            assert!(errors.0.iter().all(|e| !e.message.is_empty()));
            return;
        }
    };
    // What rvsd builds once the ports are up: their ids and MACs stand in.
    let interfaces: Vec<Interface> = cfg
        .interfaces
        .iter()
        .enumerate()
        .map(|(k, i)| Interface {
            port: k as u16,
            mac: MacAddr([2, 0, 0, 0, 1, k as u8]),
            addr: i.addr,
            prefix_len: i.prefix_len,
            mtu: i.mtu,
            kernel: i.exception_path,
        })
        .collect();
    // As rvsd builds it, before any check has run (every server up).
    let (mut snapshot, _) = cfg.snapshot(&interfaces, cfg.worker_count.unwrap_or(1).clamp(1, 8), &HealthState::default());
    // The table's size is the memory check's business (rvsd checks it
    // against the machine at start); a small one here.
    snapshot.max_connections_per_core = snapshot.max_connections_per_core.min(1024);
    Pipeline::check(&snapshot).expect("an accepted configuration makes a valid snapshot");
    let snapshot = Arc::new(snapshot);
    let shared = Arc::new(SharedNeighbors::new(Pipeline::wanted_neighbors(&snapshot)));
    let mut p = Pipeline::with_neighbors(Arc::clone(&snapshot), Arc::default(), Arc::clone(&shared)).expect("a pipeline");
    // Traffic to every service, a reload to a changed pool (servers
    // reversed, the last one gone, weights moved), traffic again, a day.
    traffic(&mut p, &snapshot, 0);
    let mut changed = (*snapshot).clone();
    for s in &mut changed.services {
        s.reals.reverse();
        if s.reals.len() > 1 {
            s.reals.pop();
        }
        for r in &mut s.reals {
            r.weight = (r.weight + 1) % 4;
        }
    }
    changed.health = Health(Arc::new(HealthBoard::all_up(&changed.services)));
    if Pipeline::check(&changed).is_ok() {
        let neighbors = Arc::new(Pipeline::neighbors_for_reload(&shared, &changed));
        p.apply(Arc::new(changed), neighbors).expect("a valid snapshot reloads");
    }
    traffic(&mut p, &snapshot, 2);
    for s in [3u64, 60, 3600, 86_400] {
        p.tick(s * SEC);
    }
});

const SEC: u64 = 1_000_000_000;

/// Three clients' first packets to every service (a TCP SYN, a UDP
/// datagram or an echo request), on port 0 to its MAC, with room around
/// them (TUN's header, FullNAT's TOA), at second `at`; then a tick.
fn traffic(p: &mut Pipeline, snapshot: &Snapshot, at: u64) {
    let mac = snapshot.interfaces[0].mac;
    for (i, s) in snapshot.services.iter().enumerate() {
        for c in 0..3u8 {
            let client = [203, 0, 113, (i as u8).wrapping_mul(3).wrapping_add(c)];
            let frame = first_packet(s.proto, client, s.vip.octets(), s.port, mac);
            let mut buf = vec![0u8; 64];
            buf.extend_from_slice(&frame);
            buf.extend_from_slice(&[0u8; 64]);
            let (mut head, mut len) = (64, frame.len());
            let _ = p.process_room(0, &mut buf, &mut head, &mut len, at * SEC);
        }
    }
    p.tick(at * SEC);
}

fn first_packet(proto: L4Proto, src: [u8; 4], dst: [u8; 4], port: u16, mac: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[..6].copy_from_slice(&mac.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 9, src[3]]);
    f[12..14].copy_from_slice(&[8, 0]);
    let number = match proto {
        L4Proto::Tcp => 6,
        L4Proto::Udp => 17,
        L4Proto::Icmp => 1,
    };
    f[14..34].copy_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, number, 0, 0, src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3]]);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let sport = 1000 + u16::from(src[3]);
    let l4 = &mut f[34..];
    match proto {
        L4Proto::Tcp => {
            l4[..4].copy_from_slice(&[(sport >> 8) as u8, sport as u8, (port >> 8) as u8, port as u8]);
            l4[12] = 5 << 4;
            l4[13] = 0x02; // SYN
            l4[14..16].copy_from_slice(&[0xff, 0xff]);
        }
        L4Proto::Udp => {
            l4[..4].copy_from_slice(&[(sport >> 8) as u8, sport as u8, (port >> 8) as u8, port as u8]);
            l4[4..6].copy_from_slice(&20u16.to_be_bytes());
        }
        L4Proto::Icmp => {
            l4[0] = 8; // echo request
            l4[4..6].copy_from_slice(&sport.to_be_bytes());
            let c = checksum::checksum(l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    f
}
