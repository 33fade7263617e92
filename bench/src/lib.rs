//! Shared helpers for RVS's benchmark binaries (`src/bin/`).

use std::time::{Duration, Instant};

/// Runs `f` (which performs `iters` operations) `runs` times and returns
/// the median nanoseconds per operation. The median of repeated runs is
/// robust to the host moving our vCPU around mid-run.
pub fn median_ns_per_op(runs: usize, iters: u64, mut f: impl FnMut(u64)) -> f64 {
    median_ns_per_op_after(runs, iters, || (), |_, iters| f(iters))
}

/// As [`median_ns_per_op`], with `setup` run before each run and not
/// timed (a fresh table, say); `f` gets what it made, which is dropped
/// after the clock stops.
pub fn median_ns_per_op_after<S>(runs: usize, iters: u64, mut setup: impl FnMut() -> S, mut f: impl FnMut(&mut S, u64)) -> f64 {
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let mut state = setup();
            let t = Instant::now();
            f(&mut state, iters);
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Median wall time of `runs` calls of `f`.
pub fn median_duration(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// A small deterministic generator (xorshift64*), so every run sees the
/// same inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_known_samples() {
        let mut calls = 0u64;
        let ns = median_ns_per_op(3, 10, |n| {
            calls += n;
            std::thread::sleep(Duration::from_micros(100));
        });
        assert_eq!(calls, 30);
        assert!(ns >= 10_000.0, "100 us over 10 ops is at least 10 us each: {ns}");
        let mut r = Rng(1);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
