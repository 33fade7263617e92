use super::*;

const GOOD: &str = r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "--vdev=net_af_packet0,iface=lb0"]

[workers]
idle_sleep_us = 50

[[interfaces]]
name = "lan"
device = "net_af_packet0"
address = "198.18.0.2/24"

[[services]]
protocol = "tcp"
vip = "198.18.0.100"
port = 80
scheduler = "wrr"

  [[services.reals]]
  address = "198.18.0.11"
  weight = 1

  [[services.reals]]
  address = "198.18.0.12"
  port = 80
  weight = 2
"#;

fn errors(text: &str) -> Vec<String> {
    parse("test.toml", text).unwrap_err().0.iter().map(ToString::to_string).collect()
}

#[test]
fn good_config_with_defaults() {
    let c = parse("test.toml", GOOD).unwrap();
    assert_eq!(c.eal_args.len(), 4);
    assert_eq!(c.mbufs, 16383);
    assert_eq!(c.worker.idle_sleep, Duration::from_micros(50));
    assert_eq!(c.worker.burst, 32);
    assert_eq!(c.worker_count, None);
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.interfaces[0].addr, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(c.interfaces[0].prefix_len, 24);
    let s = &c.services[0];
    assert_eq!((s.proto, s.port, s.scheduler.kind, s.mode), (L4Proto::Tcp, 80, sched::SchedulerKind::Wrr, ForwardingMode::DirectRoute));
    assert_eq!(s.reals[1], RealServer { port: Some(80), ..RealServer::new(Ipv4Addr::new(198, 18, 0, 12), 2) });
    assert_eq!(s.persistence, None);
}

#[test]
fn syntax_and_type_errors_have_positions() {
    let e = errors("[dpdk]\neal_args = [\"-l\"\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e, ["test.toml:3:1: invalid array; expected `]`"]);
    let e = errors(&GOOD.replace("port = 80\nscheduler", "port = \"eighty\"\nscheduler"));
    assert_eq!(e, ["test.toml:16:8: port: invalid type: string \"eighty\", expected u32"]);
    let e = errors(&GOOD.replace("weight = 2", "wieght = 2"));
    assert!(e[0].starts_with("test.toml:26:3: ") && e[0].contains("unknown field `wieght`"), "{e:?}");
    let e = errors("");
    assert!(e[0].contains("missing field `dpdk`"), "{e:?}");
}

/// Found by the config fuzz target: a NUL in a comment made toml report
/// an error with an empty message.
#[test]
fn every_syntax_error_says_something() {
    let e = errors("# a comment\n# with a \0 in it\n[dpdk]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("test.toml:2:") && e[0].ends_with("invalid TOML here (a control character?)"), "{e:?}");
}

#[test]
fn semantic_errors_name_key_and_position_all_at_once() {
    let bad = GOOD
        .replace("scheduler = \"wrr\"", "scheduler = \"fastest\"")
        .replace("weight = 2", "weight = 70000")
        .replace("address = \"198.18.0.11\"", "address = \"10.9.9.9\"")
        .replace("198.18.0.2/24", "198.18.0.2/33");
    let e = errors(&bad);
    assert_eq!(
        e,
        [
            "test.toml:11:11: interfaces[0].address: prefix \"33\" is not 1..32",
            "test.toml:17:13: services[0].scheduler: unknown scheduler \"fastest\" (known: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos)",
            "test.toml:26:12: services[0].reals[1].weight: 70000 is outside 0..65535",
        ]
    );
    let e = errors(&GOOD.replace("198.18.0.11", "10.9.9.9"));
    assert_eq!(e, ["test.toml:20:13: services[0].reals[0].address: 10.9.9.9 is on no interface's subnet; DR needs real servers on the same L2"]);
    let nat = GOOD.replace("198.18.0.11", "10.9.9.9").replace("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"nat\"");
    assert!(errors(&nat)[0].ends_with("10.9.9.9 is on no interface's subnet and no route reaches it"));
    let routed = format!("{nat}\n[[routes]]\nprefix = \"10.9.9.0/24\"\nvia = \"198.18.0.1\"\n");
    let c = parse("test.toml", &routed).unwrap();
    assert_eq!(c.routes, [Route { prefix: Ipv4Addr::new(10, 9, 9, 0), prefix_len: 24, via: Ipv4Addr::new(198, 18, 0, 1) }]);
    let bad_via = format!("{nat}\n[[routes]]\nprefix = \"10.9.9.0/24\"\nvia = \"10.1.1.1\"\n");
    assert!(errors(&bad_via).iter().any(|m| m.contains("routes[0].via: gateway 10.1.1.1 is on no interface's subnet")));
}

#[test]
fn every_kind_of_semantic_error_is_caught() {
    let cases: &[(&str, &str, &str)] = &[
        ("protocol = \"tcp\"", "protocol = \"sctp\"", "services[0].protocol: \"sctp\" is not"),
        ("vip = \"198.18.0.100\"", "vip = \"198.18.0\"", "services[0].vip: \"198.18.0\" is not an IPv4"),
        ("vip = \"198.18.0.100\"", "vip = \"198.18.0.2\"", "is an interface address"),
        ("port = 80\nscheduler", "port = 0\nscheduler", "services[0].port: 0 is not a port"),
        ("address = \"198.18.0.2/24\"", "address = \"198.18.0.2/24\"\nmtu = 100", "interfaces[0].mtu: 100 is outside 576..9216"),
        ("[workers]", "[metrics]\nlisten = \"localhost\"\n[workers]", "metrics.listen: \"localhost\" is not ADDRESS:PORT"),
        ("[workers]", "[[neighbors]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:11\"\n[workers]", "neighbors[0].mac: \"02:00:00:00:11\" is not a MAC"),
        ("[workers]", "[[neighbors]]\naddress = \"198.18.0.11\"\nmac = \"01:00:5e:00:00:01\"\n[workers]", "is not a unicast MAC"),
        (
            "[workers]",
            "[[neighbors]]\naddress = \"10.1.1.1\"\nmac = \"02:00:00:00:00:11\"\n[workers]",
            "neighbors[0].address: 10.1.1.1 is on no interface's subnet",
        ),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"bridge\"", "not one of dr, nat, fullnat, tun"),
        ("port = 80\n  weight = 2", "port = 8080\n  weight = 2", "only NAT and FullNAT can map ports"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"fullnat\"", "FullNAT needs at least one local address"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\nlocal_addresses = [\"198.18.0.3\"]", "only FullNAT uses local addresses"),
        (
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\nforwarding = \"fullnat\"\nlocal_addresses = [\"10.0.0.3\"]",
            "local_addresses[0]: 10.0.0.3 is on no interface's subnet",
        ),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"fullnat\"\nlocal_addresses = [\"198.18.0.2\"]", "198.18.0.2 is an interface address"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"fullnat\"\nlocal_addresses = [\"x\"]", "\"x\" is not an IPv4 address"),
        ("port = 80\n  weight = 2", "port = 0\n  weight = 2", "0 is not a port"),
        ("198.18.0.12", "198.18.0.11", "listed twice"),
        ("weight = 1", "weight = -1", "-1 is outside 0..65535"),
        ("address = \"198.18.0.2/24\"", "address = \"198.18.0.2\"", "is not ADDRESS/PREFIX"),
        ("idle_sleep_us = 50", "idle_sleep_us = 50\nburst = 65", "workers.burst: must be 1..64"),
        ("idle_sleep_us = 50", "idle_sleep_us = 50\ncount = 0", "workers.count: must be at least 1"),
        ("idle_sleep_us = 50", "idle_sleep_us = 1000001", "workers.idle_sleep_us: must be 0..1000000"),
        ("[workers]", "[timeouts]\ntcp = 0\n[workers]", "timeouts.tcp: must be 1..31536000 (seconds, at most 365 days)"),
        // In nanoseconds it would not fit 64 bits.
        ("[workers]", "[timeouts]\nudp = 100000000000\n[workers]", "timeouts.udp: must be 1..31536000"),
        ("[workers]", "[arp]\nexpire = 9223372036854775807\n[workers]", "arp.expire: must be 1..31536000"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\npersistence_timeout = 31536001", "persistence_timeout: must be 0..31536000"),
        ("[workers]", "[limits]\nconnections_per_core = 1073741824\n[workers]", "limits.connections_per_core: must be 1..1073741823"),
        ("[workers]", "[arp]\nrefresh = 60\nexpire = 30\n[workers]", "arp.expire: must be greater than arp.refresh"),
        ("[workers]", "[limits]\nconnections_per_core = 0\n[workers]", "limits.connections_per_core: must be 1..1073741823"),
        (
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\nscheduler_flags = [\"sh-port\"]",
            "services[0].scheduler_flags[0]: flag \"sh-port\" does not apply to scheduler wrr",
        ),
        ("scheduler = \"wrr\"", "scheduler = \"sh\"\nscheduler_flags = [\"sh-port\", \"fast\"]", "scheduler_flags[1]: unknown scheduler flag \"fast\""),
        ("scheduler = \"wrr\"", "scheduler = \"mh\"\nmh_table_size = 1000", "services[0].mh_table_size: mh table size 1000 must be a prime"),
        ("scheduler = \"wrr\"", "scheduler = \"wlc\"\nmh_table_size = 65521", "a table size applies only to mh, not wlc"),
        ("scheduler = \"wrr\"", "scheduler = \"mh\"\nmh_table_size = 1", "must be a prime"),
        // A prime, but a table of 16 GiB.
        ("scheduler = \"wrr\"", "scheduler = \"mh\"\nmh_table_size = 4294967291", "mh table size 4294967291 must be a prime from 101 to 8388608"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\npersistence_netmask = \"255.255.255.0\"", "persistence_netmask: needs persistence_timeout"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\npersistence_timeout = 300\npersistence_netmask = \"255.0.255.0\"", "is not an IPv4 netmask"),
        ("scheduler = \"wrr\"", "scheduler = \"wrr\"\npersistence_timeout = 300\npersistence_prefix_v6 = 129", "must be 0..128"),
        ("weight = 2", "weight = 2\n  lower_threshold = 5", "lower_threshold: needs an upper_threshold"),
        ("weight = 2", "weight = 2\n  upper_threshold = 5\n  lower_threshold = 5", "must be below upper_threshold (5)"),
    ];
    for (from, to, want) in cases {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "case {want:?} did not change the text");
        let e = errors(&text);
        assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
        assert!(e.iter().all(|m| m.starts_with("test.toml:")), "{e:?}");
    }
    // Duplicate service.
    let dup = format!("{GOOD}\n[[services]]\nprotocol = \"tcp\"\nvip = \"198.18.0.100\"\nport = 80\nscheduler = \"rr\"\n");
    assert!(errors(&dup).iter().any(|m| m.contains("duplicate service tcp 198.18.0.100:80")));
    // No interfaces at all.
    let e = errors("[dpdk]\neal_args = []\n");
    assert_eq!(e, ["test.toml:0:0: interfaces: at least one [[interfaces]] is required"]);
}

#[test]
fn schedulers_flags_persistence_and_thresholds() {
    let text = GOOD
        .replace("scheduler = \"wrr\"", "scheduler = \"mh\"\nscheduler_flags = [\"mh-port\", \"mh-fallback\"]\nmh_table_size = 65521\npersistence_timeout = 300\npersistence_netmask = \"255.255.255.0\"\nexpire_quiescent_template = true")
        .replace("weight = 2", "weight = 2\n  upper_threshold = 100\n  lower_threshold = 50");
    let c = parse("test.toml", &text).unwrap();
    let s = &c.services[0];
    assert_eq!(s.scheduler.kind, sched::SchedulerKind::Mh);
    assert!(s.scheduler.flags.port && s.scheduler.flags.fallback);
    assert_eq!(s.scheduler.mh_table_size, Some(65521));
    let p = s.persistence.unwrap();
    assert_eq!((p.timeout, p.netmask_v4, p.expire_quiescent), (300, Ipv4Addr::new(255, 255, 255, 0), true));
    assert_eq!((s.reals[1].upper_threshold, s.reals[1].lower_threshold), (100, 50));
    for k in sched::SchedulerKind::ALL {
        let text = GOOD.replace("scheduler = \"wrr\"", &format!("scheduler = \"{k}\""));
        assert_eq!(parse("test.toml", &text).unwrap().services[0].scheduler.kind, k);
    }
}

#[test]
fn nat_maps_ports() {
    let text = GOOD.replace("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"nat\"").replace("port = 80\n  weight = 2", "port = 8080\n  weight = 2");
    let c = parse("test.toml", &text).unwrap();
    assert_eq!(c.services[0].mode, ForwardingMode::Nat);
    assert_eq!((c.services[0].reals[0].port, c.services[0].reals[1].port), (None, Some(8080)));
    // Several workers are fine: replies are steered to the owning core.
    assert!(parse("test.toml", &text.replace("idle_sleep_us = 50", "idle_sleep_us = 50\ncount = 2")).is_ok());
    let full = GOOD.replace("scheduler = \"wrr\"", "scheduler = \"wrr\"\nforwarding = \"fullnat\"\nlocal_addresses = [\"198.18.0.3\", \"198.18.0.4\"]");
    let c = parse("test.toml", &full).unwrap();
    assert_eq!(c.services[0].mode, ForwardingMode::FullNat);
    assert_eq!(c.services[0].local_addrs, [Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 4)]);
}

#[test]
fn unreadable_file_is_an_error_not_a_panic() {
    let e = load(Path::new("/nonexistent/rvs.toml")).unwrap_err();
    assert!(e.to_string().starts_with("error: /nonexistent/rvs.toml:0:0: cannot read"), "{e}");
}

/// GOOD with `check` as the service's health_check table.
fn with_check(check: &str) -> String {
    GOOD.replace("scheduler = \"wrr\"\n", &format!("scheduler = \"wrr\"\n\n  [services.health_check]\n{check}\n"))
}

#[test]
fn health_checks_and_exception_path_defaults() {
    let c = parse("test.toml", GOOD).unwrap();
    assert_eq!(c.checks, vec![None]);
    assert_eq!(c.health_threads, 8);
    assert!(c.interfaces[0].exception_path);
    assert_eq!(c.interfaces[0].kernel_name, "rvs-lan");

    let c = parse("test.toml", &with_check("  type = \"tcp\"")).unwrap();
    let h = c.checks[0].as_ref().unwrap();
    assert_eq!((&h.kind, h.port, h.rise, h.fall), (&CheckKind::Tcp, None, 2, 3));
    assert_eq!((h.interval, h.timeout), (Duration::from_secs(2), Duration::from_secs(2)));

    let http = "  type = \"http\"\n  path = \"/healthz\"\n  expect_status = [200, 204]\n  expect_body = \"ok\"\n  host = \"www.example.com\"\n  port = 8080\n  interval = 0.5\n  timeout = 1\n  rise = 1\n  fall = 5";
    let c = parse("test.toml", &with_check(http)).unwrap();
    let h = c.checks[0].as_ref().unwrap();
    assert_eq!(
        h.kind,
        CheckKind::Http { path: "/healthz".into(), host: Some("www.example.com".into()), expect_status: vec![200, 204], expect_body: Some("ok".into()) }
    );
    assert_eq!((h.port, h.interval, h.timeout, h.rise, h.fall), (Some(8080), Duration::from_millis(500), Duration::from_secs(1), 1, 5));
    let c = parse("test.toml", &with_check("  type = \"http\"")).unwrap();
    assert!(matches!(&c.checks[0].as_ref().unwrap().kind, CheckKind::Http { path, expect_status, .. } if path == "/" && expect_status == &[200]));

    let c =
        parse("test.toml", &GOOD.replace("address = \"198.18.0.2/24\"", "address = \"198.18.0.2/24\"\nexception_path = false\nkernel_name = \"lb0\"")).unwrap();
    assert!(!c.interfaces[0].exception_path);
    assert_eq!(c.interfaces[0].kernel_name, "lb0");
    let long = GOOD.replace("name = \"lan\"", "name = \"a-very-long-interface-name\"");
    assert_eq!(parse("test.toml", &long).unwrap().interfaces[0].kernel_name, "rvs-a-very-long", "cut to 15 bytes");
}

#[test]
fn bad_health_checks_are_precise_errors() {
    let e = errors(&with_check("  type = \"icmp\"\n  interval = 0\n  timeout = -1\n  rise = 0\n  fall = 1000\n  port = 70000"));
    assert_eq!(
        e,
        [
            "test.toml:20:10: services[0].health_check.type: \"icmp\" is not \"tcp\" or \"http\"",
            "test.toml:21:14: services[0].health_check.interval: 0 is not a number of seconds in (0, 3600] (e.g. 2 or 0.5)",
            "test.toml:22:13: services[0].health_check.timeout: -1 is not a number of seconds in (0, 3600] (e.g. 2 or 0.5)",
            "test.toml:23:10: services[0].health_check.rise: must be 1..100",
            "test.toml:24:10: services[0].health_check.fall: must be 1..100",
            "test.toml:25:10: services[0].health_check.port: 70000 is not a port (1..65535)",
        ]
    );
    let e = errors(&with_check("  type = \"tcp\"\n  path = \"/\""));
    assert_eq!(e, ["test.toml:21:10: services[0].health_check.path: only HTTP checks (type = \"http\") use it"]);
    let e = errors(&with_check("  type = \"http\"\n  path = \"no-slash\"\n  expect_status = [200, 99]\n  host = \"a b\""));
    assert_eq!(
        e,
        [
            "test.toml:21:10: services[0].health_check.path: \"no-slash\" is not an absolute path without spaces (e.g. \"/healthz\")",
            "test.toml:22:25: services[0].health_check.expect_status[1]: 99 is not an HTTP status code (100..599)",
            "test.toml:23:10: services[0].health_check.host: \"a b\" is not a host name",
        ]
    );
    let e = errors(&with_check("  type = \"http\"\n  expect_status = []"));
    assert_eq!(e, ["test.toml:20:10: services[0].health_check.expect_status: must list at least one status code"]);
    let e = errors(&with_check("  type = \"tcp\"\n  retries = 3"));
    assert!(e[0].contains("unknown field `retries`"), "{e:?}");
    let e = errors(&with_check("  type = \"tcp\"\n  interval = \"2s\""));
    assert!(e[0].starts_with("test.toml:21:") && e[0].contains("interval"), "{e:?}");
    let e = errors(&GOOD.replace("address = \"198.18.0.2/24\"", "address = \"198.18.0.2/24\"\nkernel_name = \"bad/name\""));
    assert_eq!(e, ["test.toml:12:15: interfaces[0].kernel_name: \"bad/name\" may only use letters, digits, '-', '_' and '.'"]);
    let e = errors(&GOOD.replace("[workers]", "[health]\nthreads = 0\n\n[workers]"));
    assert_eq!(e, ["test.toml:6:11: health.threads: must be 1..256"]);
}

/// The config fuzz target varies this file's numbers: it must stay a valid
/// configuration that sets every key (else the fuzzing loses its reach).
#[test]
fn the_fuzz_seed_with_every_key_is_valid() {
    let text = include_str!("../../../fuzz/seeds/config/every-key.toml");
    let c = parse("every-key.toml", text).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((c.interfaces.len(), c.services.len(), c.routes.len(), c.neighbors.len()), (2, 4, 1, 1));
    assert!(c.checks.iter().filter(|h| h.is_some()).count() == 2 && c.expire_nodest_conn);
}
