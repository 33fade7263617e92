use super::*;
use dataplane::config::{ForwardingMode, RealServer};
use std::net::TcpListener;

fn check(interval_ms: u64, rise: u32, fall: u32) -> HealthCheck {
    HealthCheck { kind: CheckKind::Tcp, port: None, interval: Duration::from_millis(interval_ms), timeout: Duration::from_millis(200), rise, fall }
}

fn service(vip: [u8; 4], port: u16, reals: &[([u8; 4], Option<u16>)]) -> Service {
    Service {
        proto: L4Proto::Tcp,
        vip: Ipv4Addr::from(vip),
        port,
        scheduler: sched::SchedulerSpec::parse("rr", &[], None).unwrap(),
        persistence: None,
        mode: ForwardingMode::Nat,
        local_addrs: vec![],
        reals: reals
            .iter()
            .map(|(a, p)| {
                let mut r = RealServer::new(Ipv4Addr::from(*a), 1);
                r.port = *p;
                r
            })
            .collect(),
    }
}

#[test]
fn fall_failures_mark_down_and_rise_successes_bring_back() {
    let (ok, bad) = (Ok(()), Err("connect: refused".to_string()));
    let mut s = Status::new(0.0);
    assert!(s.up, "servers start up");
    assert_eq!(s.record(&bad, 2, 3, 1.0), None);
    assert_eq!(s.record(&bad, 2, 3, 2.0), None);
    assert_eq!(s.record(&ok, 2, 3, 3.0), None, "a success resets the failure streak");
    assert_eq!(s.record(&bad, 2, 3, 4.0), None);
    assert_eq!(s.record(&bad, 2, 3, 5.0), None);
    assert_eq!(s.record(&bad, 2, 3, 6.0), Some(false), "third failure in a row");
    assert_eq!((s.up, s.transitions, s.since), (false, 1, 6.0));
    assert_eq!(s.last_error, "connect: refused");
    assert_eq!(s.record(&bad, 2, 3, 7.0), None, "down stays down");
    assert_eq!(s.record(&ok, 2, 3, 8.0), None);
    assert_eq!(s.record(&bad, 2, 3, 9.0), None, "a failure resets the success streak");
    assert_eq!(s.record(&ok, 2, 3, 10.0), None);
    assert_eq!(s.record(&ok, 2, 3, 11.0), Some(true));
    assert_eq!((s.up, s.transitions, s.checks_ok, s.checks_failed), (true, 2, 4, 7));
    assert!(s.last_error.is_empty());
    // rise = fall = 1: every change of result is a transition.
    assert_eq!(s.record(&bad, 1, 1, 12.0), Some(false));
    assert_eq!(s.record(&ok, 1, 1, 13.0), Some(true));
}

#[test]
fn targets_follow_the_board_slots_and_ports() {
    let services = [
        service([10, 0, 0, 1], 80, &[([10, 1, 0, 1], None), ([10, 1, 0, 2], Some(8080))]),
        service([10, 0, 0, 2], 443, &[([10, 1, 0, 3], None)]),
        service([10, 0, 0, 3], 53, &[([10, 1, 0, 4], None)]),
    ];
    let http = HealthCheck { port: Some(8000), ..check(1000, 1, 1) };
    let t = targets(&services, &[Some(check(1000, 1, 1)), None, Some(http)]);
    let got: Vec<_> = t.iter().map(|t| (t.slot, t.addr.to_string())).collect();
    assert_eq!(got, vec![(0, "10.1.0.1:80".into()), (1, "10.1.0.2:8080".into()), (3, "10.1.0.4:8000".into())]);
    assert_eq!(t[1].key.real_port, 8080);

    let state = HealthState::default();
    state.lock().insert(t[1].key, Status { up: false, ..Status::new(0.0) });
    let board = board_for(&services, &t, &state);
    assert_eq!((0..4).map(|i| board.is_up(i)).collect::<Vec<_>>(), vec![true, false, true, true]);
}

/// Waits up to `limit` for `cond`; returns how long it took.
fn wait(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn monitor_marks_a_dead_server_down_and_back_up_on_the_board() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let services = [service([10, 0, 0, 1], port, &[([127, 0, 0, 1], None)])];
    let t = targets(&services, &[Some(check(50, 2, 2))]);
    let state = Arc::new(HealthState::default());
    let board = board_for(&services, &t, &state);
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let monitor =
        Monitor::start(Arc::clone(&state), 2, Arc::clone(&stop), Box::new(move |k, up, why| seen.lock().unwrap().push((*k, up, why.to_string())))).unwrap();
    monitor.plan(t.clone(), board.clone());

    // Up, and probed: successes are counted.
    assert!(wait(Duration::from_secs(3), || state.snapshot().first().is_some_and(|(_, s)| s.checks_ok >= 3)).is_some());
    assert!(board.is_up(0));
    // Dead: down within about interval x fall (generous bound for a loaded machine).
    drop(listener);
    let g = board.generation();
    let took = wait(Duration::from_secs(3), || !board.is_up(0)).expect("marked down");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(board.generation() > g, "workers see a new generation");
    assert!(state.snapshot().iter().find(|(k, _)| *k == t[0].key).is_some_and(|(_, s)| !s.up), "checked, and down");
    // Back: up after rise successes.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    wait(Duration::from_secs(3), || board.is_up(0)).expect("marked up again");
    let events = log.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(!events[0].1 && events[0].2.starts_with("connect:"), "{events:?}");
    assert!(events[1].1 && events[1].2.is_empty(), "{events:?}");
    assert_eq!(state.snapshot()[0].1.transitions, 2);

    // A new plan without checks forgets the server.
    monitor.plan(Vec::new(), Health::default());
    wait(Duration::from_secs(2), || state.snapshot().is_empty()).expect("forgotten");
    stop.store(true, Ordering::Relaxed);
    monitor.join();
    drop(listener);
}

#[test]
fn a_new_plan_carries_the_state_onto_the_new_board() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let services = [service([10, 0, 0, 1], port, &[([127, 0, 0, 1], None)])];
    let t = targets(&services, &[Some(check(30, 1, 1))]);
    let state = Arc::new(HealthState::default());
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = Monitor::start(Arc::clone(&state), 1, Arc::clone(&stop), Box::new(|_, _, _| {})).unwrap();
    let first = board_for(&services, &t, &state);
    monitor.plan(t.clone(), first.clone());
    wait(Duration::from_secs(3), || !first.is_up(0)).expect("nobody listens: down");

    // A reload: a bigger service list, the checked server now in slot 2.
    let services2 = [service([10, 0, 0, 9], 1, &[([10, 9, 9, 9], None), ([10, 9, 9, 8], None)]), services[0].clone()];
    let t2 = targets(&services2, &[None, Some(check(30, 1, 1))]);
    assert_eq!(t2[0].slot, 2);
    let second = board_for(&services2, &t2, &state);
    assert!(!second.is_up(2), "built from the state: starts down");
    assert!(second.is_up(0) && second.is_up(1), "unchecked servers are up");
    monitor.plan(t2, second.clone());
    std::thread::sleep(Duration::from_millis(150));
    assert!(!second.is_up(2));
    stop.store(true, Ordering::Relaxed);
    monitor.join();
}
