//! End to end, a routing daemon on the load balancer: BIRD in the LB
//! namespace announces the VIP over BGP to a BIRD peer in the client's
//! namespace, the way operators attract VIP traffic to their LVS boxes.
//! The session runs over the exception path (TCP port 179 to the LB's own
//! address, through rvsd's TAP interface), and the VIP keeps being load
//! balanced meanwhile. Needs root and bird2.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A BIRD config: `router id`, then the protocols.
fn bird_config(id: &str, protocols: &str) -> String {
    format!("router id {id};\nprotocol device {{ }}\n{protocols}\n")
}

const LB_PROTOCOLS: &str = r#"
protocol static vips {
    ipv4;
    route 198.18.0.100/32 blackhole;
}
protocol bgp uplink {
    local 198.18.0.2 as 65001;
    neighbor 198.18.0.10 as 65000;
    connect retry time 1;
    error wait time 1, 2;
    ipv4 { import none; export where proto = "vips"; };
}
"#;

const ROUTER_PROTOCOLS: &str = r#"
protocol bgp lb {
    local 198.18.0.10 as 65000;
    neighbor 198.18.0.2 as 65001;
    connect retry time 1;
    error wait time 1, 2;
    ipv4 { import all; export none; };
}
"#;

#[test]
fn bird_peers_with_the_lb_through_the_exception_path() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::serving("rvse2ebgp", (1, 1), "wrr", 1);

    // One BIRD per namespace, each with its own control socket.
    for (ns, id, protocols) in [("lb", "198.18.0.2", LB_PROTOCOLS), ("cl", "198.18.0.10", ROUTER_PROTOCOLS)] {
        let conf = lab.dir.join(format!("bird-{ns}.conf"));
        std::fs::write(&conf, bird_config(id, protocols)).unwrap();
        let sock = lab.dir.join(format!("bird-{ns}.ctl"));
        let child = lab
            .exec(ns)
            .args(["bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&sock)
            .arg("-P")
            .arg(lab.dir.join(format!("bird-{ns}.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bird (apt-get install bird2)");
        lab.adopt(child);
    }
    let birdc = |ns: &str, cmd: &[&str]| {
        let out = lab.exec(ns).arg("birdc").arg("-s").arg(lab.dir.join(format!("bird-{ns}.ctl"))).args(cmd).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    // The session comes up and the router learns the VIP from the LB.
    let t = Instant::now();
    loop {
        let routes = birdc("cl", &["show", "route", "protocol", "lb"]);
        if routes.contains("198.18.0.100/32") {
            assert!(routes.contains("198.18.0.2"), "next hop is the LB: {routes}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no route learned: {routes}\n{}", birdc("cl", &["show", "protocols", "all", "lb"]));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(birdc("lb", &["show", "protocols", "uplink"]).contains("Established"));

    // Load balancing goes on while the session runs.
    let by_server = tally(&lab.client("http", 20));
    assert_eq!(by_server.values().sum::<usize>(), 20);
    let log = lab.stop_rvsd();
    assert!(stat_all(&log, "to_kernel") > 0 && stat_all(&log, "from_kernel") > 0, "{log}");
}
