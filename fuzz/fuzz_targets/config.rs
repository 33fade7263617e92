//! The configuration file, as an operator may get it wrong: any text is
//! either refused with errors that name a position, or accepted as a
//! configuration the data plane can run (its snapshot checks, a pipeline
//! is built from it, reloaded onto itself, and ticks through a day).
//! Seeded with `configs/*.toml` and `fuzz/seeds/config/` (scripts/test.sh
//! copies them in); inputs starting with a 0 byte vary the numbers of a
//! file with every key instead.
#![no_main]

use dataplane::config::{Interface, Snapshot};
use dataplane::health::{Health, HealthBoard};
use dataplane::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;
use proto::MacAddr;
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
    let interfaces = cfg
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
    let snapshot = Snapshot {
        routes: cfg.routes.clone(),
        timeouts: cfg.timeouts,
        arp: cfg.arp,
        // The table's size is the memory check's business (rvsd checks it
        // against the machine at start); a small one here.
        max_connections_per_core: cfg.connections_per_core.min(1024),
        worker_cores: cfg.worker_count.unwrap_or(1).clamp(1, 8),
        expire_nodest_conn: cfg.expire_nodest_conn,
        health: Health(Arc::new(HealthBoard::all_up(&cfg.services))),
        ..Snapshot::new(interfaces, cfg.services.clone())
    };
    Pipeline::check(&snapshot).expect("an accepted configuration makes a valid snapshot");
    let snapshot = Arc::new(snapshot);
    let mut p = Pipeline::new(Arc::clone(&snapshot), Arc::default()).expect("a pipeline");
    let neighbors = Arc::new(Pipeline::neighbors_for_reload(&dataplane::neighbor::SharedNeighbors::new(Pipeline::wanted_neighbors(&snapshot)), &snapshot));
    p.apply(Arc::clone(&snapshot), neighbors).expect("a reload onto itself");
    for s in [0u64, 1, 60, 3600, 86_400] {
        p.tick(s * 1_000_000_000);
    }
});
