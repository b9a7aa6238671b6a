use super::*;

fn router() -> Router {
    Router::new(Config { ring_ms: 15_000, handle_ms: 300_000, ..Config::default() })
}

fn permits(b: &[&str]) -> BTreeSet<String> {
    b.iter().map(|s| s.to_string()).collect()
}

fn drain(r: &mut Router) -> Vec<Output> {
    let mut v = Vec::new();
    loop {
        match r.poll_output() {
            Output::Timeout(_) => return v,
            o => v.push(o),
        }
    }
}

fn rings(out: &[Output]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Ring { teller, customer, .. } => Some((teller.clone(), customer.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn only_the_permitted_teller_is_offered_the_call() {
    let mut r = router();
    r.login(0, "wang", permits(&["wealth"]));
    r.login(10, "li", permits(&["corporate-account", "wealth"]));
    drain(&mut r);
    r.join(100, "c1", "corporate-account", Priority::Normal, None).unwrap();
    let out = drain(&mut r);
    assert_eq!(rings(&out), [("li".into(), "c1".into())]);
    assert!(out.contains(&Output::Position { customer: "c1".into(), position: 1, wait_ms: 0 }));
    assert_eq!(r.poll_output(), Output::Timeout(15_100), "the ring's deadline");
    assert_eq!(
        r.join(0, "c2", "mortgage", Priority::Normal, None),
        Err(RoutingError::NoSuchBusiness("mortgage".into()))
    );
    assert_eq!(r.join(0, "c1", "wealth", Priority::Normal, None), Err(RoutingError::AlreadyQueued("c1".into())));
}

#[test]
fn the_account_manager_first_then_the_longest_idle_teller() {
    let mut r = router();
    r.login(0, "a", permits(&["wealth"]));
    r.login(50, "b", permits(&["wealth"]));
    r.login(90, "m", permits(&["wealth"]));
    drain(&mut r);
    r.join(100, "c1", "wealth", Priority::Normal, Some("m")).unwrap();
    r.join(101, "c2", "wealth", Priority::Normal, Some("m")).unwrap();
    r.join(102, "c3", "wealth", Priority::Normal, None).unwrap();
    // c1 gets their manager; c2's manager is ringing, so the longest idle (a); c3 the next (b).
    assert_eq!(
        rings(&drain(&mut r)),
        [("m".into(), "c1".into()), ("a".into(), "c2".into()), ("b".into(), "c3".into())]
    );
}

#[test]
fn two_tellers_answering_at_once_exactly_one_wins() {
    let mut r = router();
    r.login(0, "a", permits(&["wealth"]));
    r.login(1, "b", permits(&["wealth"]));
    r.join(5, "c1", "wealth", Priority::Normal, None).unwrap();
    drain(&mut r);
    assert_eq!(r.answer(6, "b", "c1"), Err(RoutingError::NotOffered("c1".into())), "b was never rung for c1");
    r.answer(6, "a", "c1").unwrap();
    assert_eq!(r.answer(6, "a", "c1"), Err(RoutingError::NotOffered("c1".into())), "a second answer fails");
    assert_eq!(r.call_of("c1"), Some(&["a".to_string()][..]));
    assert_eq!(r.teller_state("a"), TellerState::Busy);
}

#[test]
fn an_unanswered_ring_goes_to_the_next_teller_and_sets_the_first_away() {
    let mut r = router();
    r.login(0, "a", permits(&["wealth"]));
    r.login(1, "b", permits(&["wealth"]));
    r.join(5, "c1", "wealth", Priority::Normal, None).unwrap();
    drain(&mut r);
    r.timeout(15_004);
    assert!(drain(&mut r).is_empty(), "not yet");
    r.timeout(15_005);
    let out = drain(&mut r);
    assert!(out.contains(&Output::RingWithdrawn { teller: "a".into(), customer: "c1".into(), why: "timeout" }));
    assert!(out.contains(&Output::State { teller: "a".into(), state: TellerState::Away }));
    assert_eq!(rings(&out), [("b".into(), "c1".into())]);
    // b declines: nobody else is free, the customer waits; a comes back and is not rung again for c1 (passed).
    r.decline(15_010, "b", "c1").unwrap();
    r.set(15_020, "a", TellerState::Available).unwrap();
    assert!(rings(&drain(&mut r)).is_empty());
    r.login(15_030, "c", permits(&["wealth"]));
    assert_eq!(rings(&drain(&mut r)), [("c".into(), "c1".into())]);
}

#[test]
fn priority_first_then_first_come_and_estimated_waits() {
    let mut r = router();
    r.join(0, "n1", "wealth", Priority::Normal, None).unwrap();
    r.join(1, "n2", "wealth", Priority::Normal, None).unwrap();
    r.join(2, "vip", "wealth", Priority::High, None).unwrap();
    assert_eq!(r.queue("wealth"), ["vip", "n1", "n2"]);
    let out = drain(&mut r);
    assert!(out.contains(&Output::Position { customer: "n2".into(), position: 3, wait_ms: 600_000 }));
    r.login(10, "a", permits(&["wealth"]));
    r.login(11, "b", permits(&["wealth"]));
    let out = drain(&mut r);
    assert_eq!(rings(&out), [("a".into(), "vip".into()), ("b".into(), "n1".into())]);
    // Two tellers now: n2, third in line, waits about one handling time.
    assert!(out.contains(&Output::Position { customer: "n2".into(), position: 3, wait_ms: 300_000 }));
}

#[test]
fn a_warm_transfer_keeps_both_tellers_until_the_first_hangs_up() {
    let mut r = router();
    r.login(0, "teller", permits(&["corporate-account"]));
    r.login(1, "expert", permits(&["corporate-account"]));
    r.login(2, "junior", permits(&["wealth"]));
    r.join(5, "c1", "corporate-account", Priority::Normal, None).unwrap();
    r.answer(6, "teller", "c1").unwrap();
    drain(&mut r);
    assert_eq!(
        r.transfer_to_teller(7, "teller", "c1", "junior"),
        Err(RoutingError::NotPermitted { teller: "junior".into(), business: "corporate-account".into() })
    );
    r.transfer_to_teller(7, "teller", "c1", "expert").unwrap();
    let out = drain(&mut r);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Ring { teller, from: Some(f), .. } if teller == "expert" && f == "teller"))
    );
    r.answer(8, "expert", "c1").unwrap();
    assert_eq!(r.call_of("c1"), Some(&["teller".to_string(), "expert".to_string()][..]));
    r.hang_up(9, "teller", "c1").unwrap();
    assert_eq!(r.call_of("c1"), Some(&["expert".to_string()][..]));
    assert_eq!(r.teller_state("teller"), TellerState::WrapUp);
    // The customer closes the tab: the call ends, the expert wraps up.
    r.leave(10, "c1").unwrap();
    assert_eq!(r.call_of("c1"), None);
    assert_eq!(r.teller_state("expert"), TellerState::WrapUp);
}

#[test]
fn an_unanswered_transfer_fails_and_the_call_stays() {
    let mut r = router();
    r.login(0, "teller", permits(&["wealth"]));
    r.login(1, "expert", permits(&["wealth"]));
    r.join(5, "c1", "wealth", Priority::Normal, None).unwrap();
    r.answer(6, "teller", "c1").unwrap();
    r.transfer_to_teller(7, "teller", "c1", "expert").unwrap();
    drain(&mut r);
    r.timeout(7 + 15_000);
    let out = drain(&mut r);
    assert!(out.contains(&Output::TransferFailed {
        customer: "c1".into(),
        from: "teller".into(),
        to: "expert".into()
    }));
    assert_eq!(r.call_of("c1"), Some(&["teller".to_string()][..]));
    assert!(r.queue("wealth").is_empty());
}

#[test]
fn a_transfer_back_to_a_queue_goes_ahead_of_later_customers() {
    let mut r = router();
    r.login(0, "a", permits(&["wealth", "loan-signing"]));
    r.join(5, "c1", "wealth", Priority::Normal, None).unwrap();
    r.answer(6, "a", "c1").unwrap();
    r.join(7, "c2", "loan-signing", Priority::Normal, None).unwrap();
    r.transfer_to_queue(8, "a", "c1", "loan-signing").unwrap();
    assert_eq!(r.queue("loan-signing"), ["c1", "c2"]);
    assert_eq!(r.teller_state("a"), TellerState::WrapUp);
}

#[test]
fn state_survives_a_restart_through_a_snapshot() {
    let mut r = router();
    r.login(0, "a", permits(&["wealth"]));
    r.join(5, "c1", "wealth", Priority::Normal, None).unwrap();
    r.join(6, "c2", "wealth", Priority::High, None).unwrap();
    drain(&mut r);
    let mut back = Router::restore(&r.snapshot(), Config::default()).unwrap();
    assert_eq!(back.queue("wealth"), ["c2", "c1"]);
    // The ring in progress survives too: its teller can still answer it.
    back.answer(7, "a", "c1").unwrap();
    assert!(Router::restore(b"{", Config::default()).is_err());
}

#[test]
fn the_overview_shows_tellers_queues_and_calls() {
    let mut r = router();
    r.login(0, "a", permits(&["wealth"]));
    r.join(10, "c1", "wealth", Priority::Normal, None).unwrap();
    r.answer(20, "a", "c1").unwrap();
    r.join(30, "c2", "wealth", Priority::Normal, None).unwrap();
    let o = r.overview(1030);
    assert_eq!(o["tellers"][0]["state"], "busy");
    let wealth = o["queues"].as_array().unwrap().iter().find(|q| q["business"] == "wealth").unwrap();
    assert_eq!((wealth["waiting"].as_u64(), wealth["longest_wait_ms"].as_u64()), (Some(1), Some(1000)));
    assert_eq!(o["calls"][0]["tellers"][0], "a");
}
