//! Pool-level tests: every scheduler through the public API.

use super::*;
use core::net::Ipv4Addr;

const SEC: u64 = 1_000_000_000;

pub(crate) fn dest(weight: u32) -> DestState {
    DestState::new(DestConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80, weight))
}

fn cfgs(weights: &[u32]) -> Vec<DestConfig> {
    weights.iter().enumerate().map(|(k, &w)| DestConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, k as u8 + 1)), 80, w)).collect()
}

/// A client's flow. The destination varies with the client too, as for a
/// cache cluster, so dh and lblc (which hash the destination) spread.
fn flow(client: u32, port: u16) -> Flow {
    Flow { src: IpAddr::V4(Ipv4Addr::from(0xc633_6400 + client)), src_port: port, dst: IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + client % 97)), dst_port: 80 }
}

fn pool(name: &str, weights: &[u32]) -> Pool {
    Pool::new(SchedulerSpec::parse(name, &[], None).unwrap(), &cfgs(weights), None).unwrap()
}

#[test]
fn names_flags_and_their_errors() {
    for k in SchedulerKind::ALL {
        assert_eq!(k.name().parse::<SchedulerKind>().unwrap(), k);
    }
    let e = SchedulerSpec::parse("fastest", &[], None).unwrap_err().to_string();
    assert_eq!(e, "unknown scheduler \"fastest\" (known: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos)");
    let s = SchedulerSpec::parse("sh", &["sh-port", "sh-fallback"], None).unwrap();
    assert!(s.flags.port && s.flags.fallback);
    assert!(SchedulerSpec::parse("mh", &["mh-port"], Some(65521)).unwrap().flags.port);
    assert_eq!(SchedulerSpec::parse("rr", &["sh-port"], None).unwrap_err().to_string(), "flag \"sh-port\" does not apply to scheduler rr");
    assert!(SchedulerSpec::parse("sh", &["mh-fallback"], None).is_err());
    assert!(SchedulerSpec::parse("sh", &["flag-9"], None).unwrap_err().to_string().contains("unknown scheduler flag"));
    assert!(SchedulerSpec::parse("mh", &[], Some(1000)).unwrap_err().to_string().contains("prime"));
    assert!(SchedulerSpec::parse("wlc", &[], Some(65521)).is_err());
    let spec = SchedulerSpec::parse("mh", &[], Some(101)).unwrap();
    assert!(Pool::new(spec, &cfgs(&[1; 200]), None).unwrap_err().to_string().contains("smaller than the 200 servers"));
}

#[test]
fn bad_weights_and_thresholds_are_errors() {
    let mut c = cfgs(&[65536]);
    assert_eq!(Pool::new(SchedulerSpec::new(SchedulerKind::Rr), &c, None).unwrap_err(), SchedError::WeightTooLarge(65536));
    c[0].weight = 1;
    c[0].upper_threshold = 10;
    c[0].lower_threshold = 10;
    assert!(Pool::new(SchedulerSpec::new(SchedulerKind::Rr), &c, None).unwrap_err().to_string().contains("lower threshold 10"));
    let mut p = pool("wrr", &[1]);
    assert!(p.set_weight(0, 70000).is_err());
    assert_eq!(p.dest(0).config.weight, 1, "a refused change changes nothing");
}

#[test]
fn empty_or_all_quiescent_pools_give_none_for_every_scheduler() {
    for k in SchedulerKind::ALL {
        let mut p = Pool::new(SchedulerSpec::new(k), &[], None).unwrap();
        assert_eq!(p.schedule(&flow(1, 1), true, 0), None, "{k} empty");
        let mut p = pool(k.name(), &[0, 0, 0]);
        assert_eq!(p.schedule(&flow(1, 1), true, 0), None, "{k} quiescent");
        let mut p = pool(k.name(), &[3, 2]);
        p.set_available(0, false);
        p.set_available(1, false);
        assert_eq!(p.schedule(&flow(1, 1), true, 0), None, "{k} unavailable");
    }
}

#[test]
fn every_scheduler_serves_and_counts() {
    for k in SchedulerKind::ALL {
        // ovf takes at most `weight` active connections per server.
        let mut p = pool(k.name(), &[10, 20, 40]);
        for c in 0..60 {
            let i = p.schedule(&flow(c, 1000 + c as u16), true, 0).unwrap_or_else(|| panic!("{k}"));
            assert!(p.dest(i).eligible());
        }
        let total: u32 = p.dests().iter().map(|d| d.active).sum();
        assert_eq!(total, 60, "{k}");
    }
}

#[test]
fn lc_follows_connection_counts_through_open_and_close() {
    let mut p = pool("lc", &[1, 1, 1]);
    let picks: Vec<_> = (0..6).map(|c| p.schedule(&flow(c, 1), true, 0).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    p.closed(1, true, flow(1, 1).src, 0);
    p.closed(1, true, flow(4, 1).src, 0);
    assert_eq!(p.schedule(&flow(9, 1), true, 0), Some(1));
    // An inactive connection weighs 1/256 of an active one.
    p.set_active(0, false);
    p.set_active(0, false);
    assert_eq!(p.dest(0).inactive, 2);
    assert_eq!(p.schedule(&flow(10, 1), true, 0), Some(0));
}

#[test]
fn wlc_keeps_shares_proportional_to_weights() {
    let mut p = pool("wlc", &[1, 3]);
    for c in 0..400 {
        p.schedule(&flow(c, 1), true, 0).unwrap();
    }
    assert_eq!((p.dest(0).active, p.dest(1).active), (100, 300));
}

#[test]
fn quiescent_server_keeps_connections_but_gets_no_new_ones() {
    for k in SchedulerKind::ALL {
        let mut p = pool(k.name(), &[1, 1]);
        p.schedule(&flow(1, 1), true, 0);
        let before = (p.dest(0).active, p.dest(1).active);
        let busy = if before.0 > 0 { 0 } else { 1 };
        p.set_weight(busy, 0).unwrap();
        for c in 2..30 {
            if let Some(i) = p.schedule(&flow(c, c as u16), true, 0) {
                assert_ne!(i, busy, "{k}: quiescent server picked");
            }
        }
        assert_eq!(p.dest(busy).active, 1, "{k}: existing connection untouched");
    }
}

#[test]
fn upper_threshold_stops_and_lower_resumes() {
    let mut c = cfgs(&[1, 1]);
    c[0].upper_threshold = 3;
    let mut p = Pool::new(SchedulerSpec::new(SchedulerKind::Rr), &c, None).unwrap();
    let picks: Vec<_> = (0..10).map(|k| p.schedule(&flow(k, 1), true, 0).unwrap()).collect();
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3, "{picks:?}");
    assert!(p.dest(0).overloaded);
    // Lower defaults to 3/4 of upper: 2 * 4 < 3 * 3, so 2 connections resume.
    p.closed(0, true, flow(0, 1).src, 0);
    assert!(!p.dest(0).overloaded);
    assert_eq!(p.schedule(&flow(50, 1), true, 0), Some(0));
}

fn persistent(name: &str, weights: &[u32], cfg: PersistenceConfig) -> Pool {
    Pool::new(SchedulerSpec::parse(name, &[], None).unwrap(), &cfgs(weights), Some(cfg)).unwrap()
}

#[test]
fn persistence_pins_a_client_until_timeout_after_its_last_connection() {
    let mut p = persistent("rr", &[1, 1, 1], PersistenceConfig::new(300));
    let first = p.schedule(&flow(7, 1000), true, 0).unwrap();
    // Other clients advance rr; client 7 keeps its server on any port.
    for c in 0..5 {
        p.schedule(&flow(c, 1), true, SEC);
    }
    assert_eq!(p.schedule(&flow(7, 2000), true, 2 * SEC), Some(first));
    // While a connection is open the template lives past the timeout.
    p.closed(first, true, flow(7, 1000).src, 3 * SEC);
    assert_eq!(p.schedule(&flow(7, 3000), true, 1000 * SEC), Some(first));
    p.closed(first, true, flow(7, 2000).src, 1000 * SEC);
    p.closed(first, true, flow(7, 3000).src, 1000 * SEC);
    // 300 s after the last one closed it is gone.
    assert_eq!(p.templates(), 6);
    p.schedule(&flow(99, 1), true, 1301 * SEC);
    assert!(p.templates() < 7);
    let again = (0..3).map(|k| p.schedule(&flow(7, 4000 + k), true, 1301 * SEC).unwrap()).collect::<Vec<_>>();
    assert!(again.iter().all(|&i| i == again[0]), "re-pinned to one server: {again:?}");
}

#[test]
fn persistence_netmask_groups_clients() {
    let mut cfg = PersistenceConfig::new(60);
    cfg.netmask_v4 = Ipv4Addr::new(255, 255, 255, 0);
    let mut p = persistent("rr", &[1, 1, 1, 1], cfg);
    let a = p.schedule(&flow(1, 1), true, 0).unwrap();
    for c in 2..200 {
        assert_eq!(p.schedule(&flow(c, 1), true, 0), Some(a), "same /24");
    }
    let other = Flow { src: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), ..flow(1, 1) };
    assert_ne!(p.schedule(&other, true, 0), Some(a));
    let mut v6 = PersistenceConfig::new(60);
    v6.prefix_v6 = 64;
    let mut p = persistent("rr", &[1, 1], v6);
    let f = |last: u16| Flow { src: IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last)), ..flow(1, 1) };
    let a = p.schedule(&f(1), true, 0).unwrap();
    assert_eq!(p.schedule(&f(2), true, 0), Some(a));
}

#[test]
fn persistence_and_quiescent_or_failed_servers() {
    // Default: a quiescent server keeps its persistent clients.
    let mut p = persistent("wrr", &[1, 1], PersistenceConfig::new(60));
    let a = p.schedule(&flow(1, 1), true, 0).unwrap();
    p.set_weight(a, 0).unwrap();
    assert_eq!(p.schedule(&flow(1, 2), true, SEC), Some(a));
    // expire_quiescent_template: rescheduled elsewhere.
    let mut cfg = PersistenceConfig::new(60);
    cfg.expire_quiescent = true;
    let mut p = persistent("wrr", &[1, 1], cfg);
    let a = p.schedule(&flow(1, 1), true, 0).unwrap();
    p.set_weight(a, 0).unwrap();
    let b = p.schedule(&flow(1, 2), true, SEC).unwrap();
    assert_ne!(a, b);
    assert_eq!(p.schedule(&flow(1, 3), true, SEC), Some(b), "and pinned there");
    // A failed server never keeps a template.
    let mut p = persistent("wrr", &[1, 1], PersistenceConfig::new(60));
    let a = p.schedule(&flow(1, 1), true, 0).unwrap();
    p.set_available(a, false);
    assert_ne!(p.schedule(&flow(1, 2), true, SEC), Some(a));
}

#[test]
fn servers_added_and_removed_incrementally() {
    for k in SchedulerKind::ALL {
        let mut p = pool(k.name(), &[1, 1]);
        let open = p.schedule(&flow(1, 1), true, 0).unwrap();
        let new = p.add(DestConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 50)), 80, 5)).unwrap();
        assert_eq!(new, 2);
        let mut seen = [0; 3];
        for c in 0..300 {
            if let Some(i) = p.schedule(&flow(c, c as u16), true, 0) {
                seen[i] += 1;
            }
        }
        assert!(seen[2] > 0, "{k}: the new server gets traffic {seen:?}");
        p.remove(open);
        for c in 300..400 {
            if let Some(i) = p.schedule(&flow(c, c as u16), true, 0) {
                assert_ne!(i, open, "{k}: removed server picked");
            }
        }
        // Its index and counts stay for the connections that name it.
        assert!(p.dest(open).removed && p.dest(open).active > 0);
        p.closed(open, true, flow(1, 1).src, 0);
    }
}

#[test]
fn reconfigure_keeps_servers_counts_and_indices() {
    let mut p = pool("rr", &[1, 1, 1]);
    for c in 0..6 {
        p.schedule(&flow(c, 1), true, 0);
    }
    p.reconfigure(SchedulerSpec::new(SchedulerKind::Lc), None).unwrap();
    assert_eq!(p.spec().kind, SchedulerKind::Lc);
    assert_eq!(p.dests().iter().map(|d| d.active).sum::<u32>(), 6, "counts kept");
    p.closed(1, true, flow(1, 1).src, 0);
    assert_eq!(p.schedule(&flow(99, 1), true, 0), Some(1), "lc sees the kept counts");
    assert_eq!(p.find(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80), Some(1));
    p.remove(1);
    assert_eq!(p.find(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80), None, "removed servers are not found");
    p.set_thresholds(0, 1, 0).unwrap();
    assert!(p.dest(0).overloaded, "2 connections against an upper threshold of 1");
    assert!(p.set_thresholds(0, 5, 5).is_err());
    let spec = SchedulerSpec::parse("mh", &[], Some(101)).unwrap();
    assert!(Pool::new(SchedulerSpec::new(SchedulerKind::Rr), &cfgs(&[1; 200]), None).unwrap().reconfigure(spec, None).is_err());
}

#[test]
fn same_configuration_same_picks() {
    for k in SchedulerKind::ALL {
        let mut a = pool(k.name(), &[3, 1, 4, 1, 5]);
        let mut b = pool(k.name(), &[3, 1, 4, 1, 5]);
        for c in 0..200 {
            let f = flow(c * 7919 % 1000, (c * 31) as u16);
            assert_eq!(a.schedule(&f, c % 3 != 0, c as u64), b.schedule(&f, c % 3 != 0, c as u64), "{k}");
        }
    }
}
