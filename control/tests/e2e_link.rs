//! A port's link going down and coming back, end to end: rvsd on DPDK's
//! TAP driver (`net_tap`, whose link is the kernel interface's state),
//! the interface taken down and up with `ip link` in the LB namespace.
//! rvsd logs each change, exports it, counts what the port refuses while
//! down apart from full queues, and announces its addresses again once
//! the link is back.

mod common;
use common::*;
use std::time::Duration;

/// Waits until `check` holds (at most 10 s); panics with `what` and the log.
fn wait_for(lab: &Lab, what: &str, check: impl FnMut() -> bool) {
    lab.wait_until(what, Duration::from_secs(10), check);
}

#[test]
fn announcements_and_drops_follow_the_link() {
    let mut lab = Lab::up("rvslk");
    let config = lab.dir.join("link.toml");
    let text = format!(
        r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry",
            "--log-level", "warning", "--file-prefix", "rvslk-{pid}", "--vdev=net_tap0,iface=rvslk0"]
mbufs = 4095

[workers]
count = 1
idle_sleep_us = 100

[[interfaces]]
name = "uplink"
device = "net_tap0"
address = "198.18.5.2/24"

[[services]]
protocol = "tcp"
vip = "198.18.5.100"
port = 80
scheduler = "rr"
forwarding = "dr"

  # Never answers: rvsd keeps asking for it, once a second.
  [[services.reals]]
  address = "198.18.5.11"
"#,
        pid = std::process::id()
    );
    std::fs::write(&config, lab.with_admin(&text)).unwrap();
    lab.start_rvsd_quiet(&config);
    let link_up = |lab: &Lab| sum(&lab.scrape(), "rvs_port_link_up", &["port=uplink"]);
    let announced = |lab: &Lab| sum(&lab.scrape(), "rvs_core_arp_sent_total", &["kind=announcement"]);
    let drops = |lab: &Lab, reason: &str| sum(&lab.scrape(), "rvs_core_drops_total", &[&format!("reason={reason}")]);
    let ip_link = |lab: &Lab, state: &str| {
        run(lab.exec("lb").args(["ip", "link", "set", "rvslk0", state]));
    };

    // Up at start: the VIP announced once.
    assert_eq!(link_up(&lab), 1.0);
    wait_for(&lab, "no announcement at start", || announced(&lab) == 1.0);

    // Down: logged, exported, and the ARP requests for the server the port
    // refuses meanwhile are counted as link_down, none as a full queue.
    ip_link(&lab, "down");
    wait_for(&lab, "the link never went down", || lab.log().contains("interface uplink: link down"));
    assert_eq!(link_up(&lab), 0.0);
    wait_for(&lab, "nothing refused while down", || drops(&lab, "link_down") >= 1.0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(announced(&lab), 1.0, "nothing announced on a down link");
    assert_eq!(drops(&lab, "tx_queue_full"), 0.0);

    // Back up: logged, exported, announced again, once.
    ip_link(&lab, "up");
    wait_for(&lab, "the link never came back", || lab.log().contains("interface uplink: link up"));
    assert_eq!(link_up(&lab), 1.0);
    wait_for(&lab, "not announced again", || announced(&lab) == 2.0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(announced(&lab), 2.0, "announced once more, not again and again");
    let log = lab.stop_rvsd();
    assert_eq!(stat(&log, "garp_sent"), 2, "{log}");
}
