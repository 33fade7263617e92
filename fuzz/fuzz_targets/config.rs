//! The configuration file, as an operator may get it wrong: any text is
//! either refused with errors that name a position, or accepted as a
//! configuration the data plane can run (its snapshot checks, a pipeline
//! is built from it, reloaded onto itself, and ticks through a day).
//! Seeded with `configs/*.toml` (scripts/test.sh copies them in).
#![no_main]

use dataplane::config::{Interface, Snapshot};
use dataplane::health::{Health, HealthBoard};
use dataplane::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;
use proto::MacAddr;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
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
