//! End to end, reload: SIGHUP with new configurations while connections
//! run (NAT, so both directions cross the load balancer): servers
//! reweighted, removed and added back 20 times, and not one connection may
//! fail or lose a byte. A bad file changes nothing and says why. Needs root.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const RS1_BLOCK: &str = "  [[services.reals]]\n  address = \"198.18.0.11\"\n  port = 8080\n";
const RS2_BLOCK: &str = "  [[services.reals]]\n  address = \"198.18.0.12\"\n  port = 8080\n";

/// The NAT example with the TCP service's servers changed: `variant` 0 =
/// as shipped, 1 = rs2 weight 3, 2 = without rs2, 3 = without rs1.
fn variant(base: &str, v: usize) -> String {
    match v % 4 {
        0 => base.to_string(),
        1 => base.replacen(RS2_BLOCK, &format!("{RS2_BLOCK}  weight = 3\n"), 1),
        2 => base.replacen(RS2_BLOCK, "", 1),
        _ => base.replacen(RS1_BLOCK, "", 1),
    }
}

fn hup(lab: &Lab) {
    let pid = lab.rvsd_pid();
    run(Command::new("kill").args(["-HUP", &pid.to_string()]));
}

fn wait_for(lab: &Lab, needle: &str) {
    lab.wait_log(needle, Duration::from_secs(10));
}

#[test]
fn twenty_reloads_under_load_lose_nothing_and_a_bad_file_changes_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up_kind("rvse2ereload", "nat");
    lab.start_real_servers_on(8080);
    let path = lab.config_file("nat.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    assert!(base.contains(RS1_BLOCK) && base.contains(RS2_BLOCK));
    lab.start_rvsd(&path);

    std::thread::scope(|scope| {
        let downloads = scope.spawn(|| lab.client_args("download", 200, &["1048576", "3"]));
        let uploads = scope.spawn(|| lab.client_args("upload", 20, &["1048576", "2"]));
        let requests = scope.spawn(|| lab.client("http", 300));
        for r in 1..=20 {
            std::fs::write(&path, variant(&base, r)).unwrap();
            hup(&lab);
            wait_for(&lab, &format!("reload {r}: ok"));
            std::thread::sleep(Duration::from_millis(60));
        }
        // The point: all of it happened while connections were running.
        assert!(!downloads.is_finished(), "the downloads must outlast the 20 reloads");
        let lines: Vec<String> = [downloads, uploads, requests].into_iter().flat_map(|h| h.join().unwrap()).collect();
        let failed: Vec<&String> = lines.iter().filter(|l| !l.starts_with("ok ")).collect();
        assert!(failed.is_empty(), "{} of {} failed during reloads: {failed:?}", failed.len(), lines.len());
        assert_eq!(lines.len(), 520);
    });

    // A broken file: nothing changes, the error says where, traffic flows.
    std::fs::write(&path, variant(&base, 0).replace("scheduler = \"wlc\"", "scheduler = \"wlcc\"")).unwrap();
    hup(&lab);
    wait_for(&lab, "reload failed: the running configuration is unchanged");
    assert!(lab.log().contains("unknown scheduler \"wlcc\""), "{}", lab.log());
    assert!(lab.log().contains(&format!("{}:", path.display())), "the error names the file and position");
    let by_server = tally_from(&lab.client("http", 20), lab.client_addr);
    assert_eq!(by_server.values().sum::<usize>(), 20);
    // A restart-only change is refused the same way.
    std::fs::write(&path, variant(&base, 0).replace("mbufs = 8191", "mbufs = 4095")).unwrap();
    hup(&lab);
    wait_for(&lab, "dpdk.* changed: that needs a restart of rvsd");
    // And the next good file is applied.
    std::fs::write(&path, variant(&base, 0)).unwrap();
    hup(&lab);
    wait_for(&lab, "reload 21: ok");

    let log = lab.stop_rvsd();
    assert_eq!(stat_all(&log, "reloads"), 21, "every worker applied every reload: {log}");
    assert_eq!(stat_all(&log, "reload_errors"), 0, "{log}");
    for bad in ["drop_malformed_l4", "drop_tx_queue_full", "drop_conn_table_full"] {
        assert_eq!(stat_all(&log, bad), 0, "{bad}: {log}");
    }
}
