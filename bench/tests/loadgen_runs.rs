//! The load generator end to end: real DPDK (Debian's 22.11), sending on a
//! net_null device for a second. Needs root, like the other DPDK tests.

use std::process::Command;

#[test]
fn loadgen_sends_and_reports_every_second() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--device", "net_null0", "--dst-mac", "02:00:00:00:00:02", "--flows", "1000", "--seconds", "2", "--"])
        .args(["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level", "error"])
        .args(["--file-prefix", &format!("loadgen-test-{}", std::process::id()), "--vdev=net_null0"])
        .output()
        .expect("loadgen runs");
    // Its DPDK runtime directory, left behind.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/loadgen-test-{}", std::process::id()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "loadgen failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let reports: Vec<u64> =
        stdout.lines().filter_map(|l| l.strip_prefix("loadgen: tx_pps=")).filter_map(|r| r.split_whitespace().next()?.parse().ok()).collect();
    assert!(reports.len() >= 2, "a report per second: {stdout}");
    assert!(reports.iter().all(|&pps| pps > 100_000), "net_null takes everything at once: {stdout}");
    let total: u64 = stdout.lines().find_map(|l| l.strip_prefix("loadgen: done tx_total=")?.split_whitespace().next()?.parse().ok()).expect("a final line");
    assert!(total >= reports.iter().sum::<u64>(), "{stdout}");
}

#[test]
fn loadgen_refuses_bad_options_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(["--flows", "0", "--"]).output().expect("loadgen runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usage: loadgen"), "{err}");
}
