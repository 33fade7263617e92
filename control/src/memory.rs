//! Whether this machine has the memory the connection tables may take.
//!
//! A table takes all its memory when it is made (so that a worker never
//! stops for a page fault as its table grows), and a configured capacity
//! beyond the machine's memory would have the kernel kill rvsd as it
//! starts, or later, with the memory other processes take meanwhile.
//! Refusing to start, saying why, is the operator's better deal.

use dataplane::conn::ConnTable;

/// `MemAvailable` of a /proc/meminfo text, in bytes.
pub fn parse_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib * 1024)
}

/// This machine's available memory now, if /proc says.
pub fn available() -> Option<u64> {
    parse_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// An error for the operator when `workers` tables of `per_core`
/// connections, full, would take more than `available` bytes.
pub fn check_tables(per_core: usize, workers: usize, available: u64) -> Result<(), String> {
    let need = ConnTable::reserved_bytes(per_core) as u64 * workers as u64;
    if need <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / f64::from(1 << 30);
    Err(format!(
        "limits.connections_per_core = {per_core}: the connection tables of {workers} worker(s) take up to {:.1} GiB when full, \
         more than the {:.1} GiB of memory available; lower it",
        gib(need),
        gib(available)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24578316 kB\nMemFree:        22000000 kB\nMemAvailable:   23014420 kB\nBuffers:            2040 kB\n";
        assert_eq!(parse_available(text), Some(23_014_420 * 1024));
        assert_eq!(parse_available("MemTotal: 1 kB\n"), None, "no such line");
        assert_eq!(parse_available("MemAvailable: lots\n"), None);
        assert_eq!(parse_available("MemAvailable: 12 MB\n"), None, "an unknown unit");
        assert!(available().is_some_and(|b| b > 0), "this machine's /proc/meminfo");
    }

    #[test]
    fn tables_must_fit_the_memory_available() {
        let one = ConnTable::reserved_bytes(1_000_000) as u64;
        assert_eq!(check_tables(1_000_000, 2, 2 * one), Ok(()));
        let e = check_tables(1_000_000, 2, 2 * one - 1).unwrap_err();
        assert!(e.starts_with("limits.connections_per_core = 1000000: the connection tables of 2 worker(s) take up to 0.3 GiB"), "{e}");
        // A billion per core on 64 workers: no overflow on the way.
        assert!(check_tables(1 << 30, 64, u64::MAX / 2).is_ok());
        assert!(check_tables(1 << 30, 64, 1 << 40).is_err());
    }
}
