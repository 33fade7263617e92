//! Scheduler cost: nanoseconds per new connection for every scheduler at
//! 10, 100, 1,000 and 10,000 real servers, and Maglev's table build time.
//!
//! One operation = schedule a new connection (pick + count it) and close the
//! oldest of 1,024 open ones, so counts move as they do in production and
//! the count-driven schedulers pay their updates. Each figure is the median
//! of 7 runs. Weights are 200..800 (ovf needs room for the 1,024 open
//! connections). Run: `cargo run --release -p bench --bin sched_bench`;
//! `-- wlc 10000` (a scheduler, then sizes) runs only those, e.g. under a
//! profiler.

use bench::{median_duration, median_ns_per_op, Rng};
use sched::{DestConfig, Flow, Pool, SchedulerKind, SchedulerSpec};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const OPEN: usize = 1024;
const ITERS: u64 = 200_000;
const RUNS: usize = 7;

fn servers(n: usize, rng: &mut Rng) -> Vec<DestConfig> {
    (0..n).map(|k| DestConfig::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k as u32)), 80, 200 * (1 + (rng.next_u64() % 4) as u32))).collect()
}

fn flows(rng: &mut Rng) -> Vec<Flow> {
    (0..4096)
        .map(|_| {
            let r = rng.next_u64();
            Flow {
                src: IpAddr::V4(Ipv4Addr::from(r as u32)),
                src_port: (r >> 32) as u16,
                dst: IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + ((r >> 48) % 1024) as u32)),
                dst_port: 80,
            }
        })
        .collect()
}

/// Median ns per operation (schedule one, close the oldest) for `kind`
/// over `n` servers.
fn schedule_cost(kind: SchedulerKind, n: usize, flows: &[Flow], rng: &mut Rng) -> f64 {
    let dests = servers(n, rng);
    let mut pool = Pool::new(SchedulerSpec::new(kind), &dests, None).expect("valid pool");
    let mut open: VecDeque<(usize, IpAddr)> = VecDeque::with_capacity(OPEN + 1);
    let mut k = 0usize;
    let mut misses = 0u64;
    let ns = median_ns_per_op(RUNS, ITERS, |iters| {
        for _ in 0..iters {
            let f = &flows[k & 0xfff];
            k = k.wrapping_add(1);
            match pool.schedule(f, true, k as u64) {
                Some(i) => open.push_back((i, f.src)),
                None => misses += 1,
            }
            if open.len() > OPEN {
                let (i, src) = open.pop_front().expect("non-empty");
                pool.closed(i, true, src, k as u64);
            }
        }
    });
    assert!(misses < ITERS, "{kind} at {n}: no server found");
    ns
}

fn main() {
    let mut rng = Rng(0x5eed);
    let flows = flows(&mut rng);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only_kind = args.first().cloned();
    let sizes: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if only_kind.is_some() {
        for kind in SchedulerKind::ALL.into_iter().filter(|k| Some(k.to_string()) == only_kind) {
            for &n in if sizes.is_empty() { &SIZES[..] } else { &sizes[..] } {
                println!("{kind} at {n}: {:.1} ns", schedule_cost(kind, n, &flows, &mut rng));
            }
        }
        return;
    }
    println!("| scheduler | 10 | 100 | 1,000 | 10,000 | 10,000 / 10 |");
    println!("|---|---|---|---|---|---|");
    for kind in SchedulerKind::ALL {
        let mut row = Vec::new();
        for &n in &SIZES {
            row.push(schedule_cost(kind, n, &flows, &mut rng));
        }
        let cells: Vec<String> = row.iter().map(|ns| format!("{ns:.1}")).collect();
        println!("| {kind} | {} | {:.2}x |", cells.join(" | "), row[3] / row[0]);
    }

    // Reference: wlc as IPVS does it, a scan of every server per pick.
    let mut row = Vec::new();
    for &n in &SIZES {
        let dests = servers(n, &mut rng);
        let mut active = vec![0u64; n];
        let mut open: VecDeque<usize> = VecDeque::with_capacity(OPEN + 1);
        let ns = median_ns_per_op(RUNS, ITERS / 10, |iters| {
            for _ in 0..iters {
                let mut best = 0;
                for i in 1..n {
                    // overhead_best * weight_i > overhead_i * weight_best
                    if (active[best] << 8) * u64::from(dests[i].weight) > (active[i] << 8) * u64::from(dests[best].weight) {
                        best = i;
                    }
                }
                active[best] += 1;
                open.push_back(best);
                if open.len() > OPEN {
                    active[open.pop_front().expect("non-empty")] -= 1;
                }
            }
        });
        row.push(ns);
    }
    let cells: Vec<String> = row.iter().map(|ns| format!("{ns:.1}")).collect();
    println!("| wlc by list scan (IPVS's method, reference) | {} | {:.0}x |", cells.join(" | "), row[3] / row[0]);

    let mut rng = Rng(7);
    let dests = servers(1_000, &mut rng);
    let build = median_duration(5, || {
        let p = Pool::new(SchedulerSpec::new(SchedulerKind::Mh), &dests, None).expect("valid");
        std::hint::black_box(p);
    });
    println!();
    println!("Maglev table build, 1,000 servers (M = 100,003): {:.2} ms (median of 5)", build.as_secs_f64() * 1e3);
}
