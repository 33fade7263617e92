//! End to end, real servers behind a gateway: a static route in rvsd's
//! config, the gateway's MAC resolved by ARP, NAT and FullNAT through it.
//! Real kernel stacks in namespaces (the gateway forwards in its kernel);
//! needs root.

mod common;

use common::*;

/// A config of `configs/NAME` with the real servers moved to 198.18.2.0/24
/// behind the gateway 198.18.0.1.
fn routed(name: &str) -> String {
    std::fs::read_to_string(repo().join("configs").join(name)).unwrap().replace("198.18.0.11", "198.18.2.11").replace("198.18.0.12", "198.18.2.12")
        + "\n[[routes]]\nprefix = \"198.18.2.0/24\"\nvia = \"198.18.0.1\"\n"
}

fn run_mode(prefix: &str, config: &str, seen_as: &str) {
    let mut lab = Lab::up_kind(prefix, "routed");
    lab.start_real_servers_on(8080);
    let path = lab.dir.join("routed.toml");
    std::fs::write(&path, lab.with_admin(&routed(config).replace("@FILE_PREFIX@", &format!("{prefix}-{}", std::process::id())))).unwrap();
    lab.start_rvsd(&path);
    let client = if seen_as == "client" { lab.client_addr } else { seen_as };
    let down = lab.client_args("download", 12, &["1048576", "4"]);
    assert_eq!(tally_from(&down, client).values().sum::<usize>(), 12, "{down:?}");
    let up = lab.client_args("upload", 6, &["1048576", "3"]);
    assert_eq!(tally_from(&up, client).values().sum::<usize>(), 6, "{up:?}");
    let log = lab.stop_rvsd();
    assert_eq!(stat(&log, "drop_neighbor_unresolved"), 0, "the gateway was resolved by ARP: {log}");
    // Only the gateway is resolved, never the servers behind it.
    assert!(stat(&log, "arp_learned") >= 1, "{log}");
}

#[test]
fn nat_to_servers_behind_a_gateway() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_mode("rvse2er", "nat.toml", "client");
}

#[test]
fn fullnat_to_servers_behind_a_gateway() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_mode("rvse2erf", "fullnat.toml", "198.18.0.3");
}
