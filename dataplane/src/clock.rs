//! The data plane's clock: nanoseconds since one process-wide epoch, so
//! times written by one worker (neighbor confirmations) mean the same to
//! every other. Read once per poll loop, never per packet; the pipeline
//! itself never reads it (time is passed in).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_across_threads() {
        let a = super::now_ns();
        let b = std::thread::spawn(super::now_ns).join().unwrap();
        assert!(b >= a);
    }
}
