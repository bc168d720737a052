//! PE identity, unreachable reports, per-association limits and the removal of a big
//! association's PEs, on the virtual network.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn merged(net: &Net) -> Metrics {
    let mut all = Metrics::default();
    for s in &net.shards {
        all.merge(&s.metrics());
    }
    all
}

fn rr() -> PolicyParam {
    PolicyParam::round_robin()
}

fn cause(m: &AsapMessage) -> Option<CauseCode> {
    match m {
        AsapMessage::RegistrationResponse {
            rejected: true,
            error: Some(e),
            ..
        } => e.code(),
        _ => None,
    }
}

fn everywhere(net: &Net, pool: &[u8], id: u32) -> bool {
    net.shards
        .iter()
        .all(|s| s.handlespace().element(pool, PoolElementId(id)).is_some())
}

fn nowhere(net: &Net, pool: &[u8], id: u32) -> bool {
    net.shards
        .iter()
        .all(|s| s.handlespace().element(pool, PoolElementId(id)).is_none())
}

fn report(net: &mut Net, c: Client, pool: &str, id: u32) {
    let m = AsapMessage::EndpointUnreachable {
        handle: pool.into(),
        id: PoolElementId(id),
    };
    net.send(c, &m);
}

fn ack(net: &mut Net, c: Client, pool: &str, id: u32) {
    let m = AsapMessage::EndpointKeepAliveAck {
        handle: pool.into(),
        id: PoolElementId(id),
    };
    net.send(c, &m);
}

fn keep_alives(msgs: &[AsapMessage]) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, AsapMessage::EndpointKeepAlive { .. }))
        .count()
}

#[test]
fn a_pe_identifier_belongs_to_its_live_association() {
    let mut net = Net::new(2, config());
    let owner = net.connect(0, 1, addr(1));
    let thief = net.connect(1, 2, addr(2));
    let pu = net.connect(0, 3, addr(3));
    assert!(accepted(&register(&mut net, owner, "p", 1, rr())));
    // Another association, with its own address, cannot take the PE over.
    let m = register(&mut net, thief, "p", 1, rr());
    assert_eq!(cause(&m), Some(CauseCode::REJECTED_SECURITY), "{m:?}");
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::TakeoverRefused { conn, owner: o, .. } if *conn == thief.conn && *o == owner.conn
    )));
    assert_eq!(merged(&net).takeovers_refused(), 1);
    // Pool users still get the owner's address; the owner's keep-alives go to it.
    match net.resolve(pu, "p", None) {
        AsapMessage::HandleResolutionResponse { elements, .. } => {
            assert_eq!(elements.len(), 1);
            let UserTransport::Sctp(t) = &elements[0].user_transport else {
                panic!()
            };
            assert_eq!(t.addresses, vec![addr(1)]);
        }
        other => panic!("{other:?}"),
    }
    net.advance(ms(100));
    assert_eq!(keep_alives(&net.take(owner)), 1);
    assert_eq!(keep_alives(&net.take(thief)), 0);
    ack(&mut net, owner, "p", 1);
    // The thief cannot deregister it; the owner can re-register (update) it.
    net.send(
        thief,
        &AsapMessage::Deregistration {
            handle: "p".into(),
            id: PoolElementId(1),
        },
    );
    assert!(matches!(
        &net.take(thief)[..],
        [AsapMessage::DeregistrationResponse { error: Some(_), .. }]
    ));
    assert!(accepted(&register(&mut net, owner, "p", 1, rr())));
    assert!(everywhere(&net, b"p", 1));
}

#[test]
fn a_restarted_pe_is_refused_until_its_old_association_is_declared_dead() {
    let mut net = Net::new(2, config());
    let old = net.connect(0, 1, addr(1));
    assert!(accepted(&register(&mut net, old, "p", 1, rr())));
    // The PE restarts on a new association before the old one is noticed dead.
    let new = net.connect(1, 2, addr(1));
    let m = register(&mut net, new, "p", 1, rr());
    assert_eq!(cause(&m), Some(CauseCode::REJECTED_SECURITY));
    // The old one stops answering keep-alives: removed after interval + timeout.
    net.advance(ms(210));
    assert!(nowhere(&net, b"p", 1));
    // The PE's next (re-)registration succeeds, and the new association owns it.
    assert!(accepted(&register(&mut net, new, "p", 1, rr())));
    net.disconnect(old);
    assert!(everywhere(&net, b"p", 1));
    // Likewise when the old association closes (TCP close, SCTP loss).
    let newer = net.connect(0, 3, addr(1));
    assert_eq!(
        cause(&register(&mut net, newer, "p", 1, rr())),
        Some(CauseCode::REJECTED_SECURITY)
    );
    net.disconnect(new);
    assert!(accepted(&register(&mut net, newer, "p", 1, rr())));
}

#[test]
fn one_reporters_repeated_unreachable_reports_count_once() {
    let mut net = Net::new(2, config());
    let pe = net.connect(0, 1, addr(1));
    let pu = net.connect(1, 2, addr(2));
    assert!(accepted(&register(&mut net, pe, "p", 1, rr())));
    for _ in 0..10 {
        report(&mut net, pu, "p", 1);
    }
    assert!(everywhere(&net, b"p", 1));
    let all = merged(&net);
    assert_eq!((all.repeated_reports(), all.probes()), (9, 0));
    assert_eq!(keep_alives(&net.take(pe)), 0, "no probe yet");
}

#[test]
fn a_healthy_pe_reported_unreachable_is_probed_and_kept() {
    let mut net = Net::new(2, config());
    let pe = net.connect(0, 1, addr(1));
    assert!(accepted(&register(&mut net, pe, "p", 1, rr())));
    let pus: Vec<Client> = (0..6)
        .map(|i| net.connect(i % 2, 10 + i as u64, addr(10 + i as u32)))
        .collect();
    net.advance(ms(30));
    for &pu in &pus[..3] {
        report(&mut net, pu, "p", 1);
    }
    // Probed at once, not removed.
    assert!(everywhere(&net, b"p", 1));
    assert_eq!(keep_alives(&net.take(pe)), 1);
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, Event::Probing { id, .. } if id.0 == 1))
    );
    ack(&mut net, pe, "p", 1);
    net.advance(ms(150));
    assert!(everywhere(&net, b"p", 1), "answered the probe");
    let all = merged(&net);
    assert_eq!((all.probes(), all.probes_answered()), (1, 1));
    assert_eq!(all.removals(RemovalReason::Unreachable), 0);
    // The answer voided the reports: two more reporters are not enough again.
    net.take(pe);
    for &pu in &pus[3..5] {
        report(&mut net, pu, "p", 1);
    }
    assert_eq!(merged(&net).probes(), 1);
    // A third is: probed again, and this time it does not answer.
    report(&mut net, pus[5], "p", 1);
    assert_eq!(merged(&net).probes(), 2);
    net.advance(ms(110));
    assert!(nowhere(&net, b"p", 1));
    assert_eq!(
        merged(&net).removals(RemovalReason::KeepAliveTimeout),
        1,
        "removed as by a keep-alive failure"
    );
}

#[test]
fn a_pe_whose_keep_alive_is_out_is_decided_by_that_keep_alive() {
    let mut net = Net::new(1, config());
    let pe = net.connect(0, 1, addr(1));
    assert!(accepted(&register(&mut net, pe, "p", 1, rr())));
    // The regular keep-alive goes out at 100 ms; reports arrive while it is out.
    net.advance(ms(120));
    assert_eq!(keep_alives(&net.take(pe)), 1);
    for i in 0..3 {
        let pu = net.connect(0, 10 + i, addr(10 + i as u32));
        report(&mut net, pu, "p", 1);
    }
    assert_eq!(keep_alives(&net.take(pe)), 0, "no second keep-alive");
    ack(&mut net, pe, "p", 1);
    assert_eq!(merged(&net).probes_answered(), 1);
    assert!(everywhere(&net, b"p", 1));
}

fn limits(pes: usize, pools: usize) -> Config {
    Config {
        max_pes_per_association: pes,
        max_pools_per_association: pools,
        ..config()
    }
}

#[test]
fn one_association_cannot_register_more_pes_than_its_limit() {
    let mut net = Net::new(2, limits(3, 100));
    let c = net.connect(0, 1, addr(1));
    let other = net.connect(1, 2, addr(2));
    for id in 1..=3 {
        assert!(accepted(&register(&mut net, c, "p", id, rr())));
    }
    let m = register(&mut net, c, "p", 4, rr());
    assert_eq!(cause(&m), Some(CauseCode::LACK_OF_RESOURCES), "{m:?}");
    assert!(nowhere(&net, b"p", 4));
    // Its own PEs still re-register; other associations are not limited by it.
    assert!(accepted(&register(&mut net, c, "p", 2, rr())));
    assert!(accepted(&register(&mut net, other, "p", 4, rr())));
    // A deregistration makes room.
    net.send(
        c,
        &AsapMessage::Deregistration {
            handle: "p".into(),
            id: PoolElementId(1),
        },
    );
    net.take(c);
    assert!(accepted(&register(&mut net, c, "p", 5, rr())));
    let all = merged(&net);
    assert_eq!(all.limit_refusals(AssociationLimit::Pes), 1);
    assert_eq!(all.errors(CauseCode::LACK_OF_RESOURCES), 1);
    assert_eq!(net.shards[0].sessions.pes(c.conn), Some(3));
}

#[test]
fn pipelined_registrations_cannot_overshoot_the_limit() {
    let mut net = Net::new(2, limits(5, 100));
    let c = net.connect(0, 1, addr(1));
    // Sent back to back, before any writer answers (pools on both shards).
    for id in 1..=20u32 {
        let pool = format!("p{}", id % 4);
        let m = AsapMessage::Registration {
            handle: pool.as_str().into(),
            element: element(id, c.addr, rr()),
        };
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        net.shards[0].handle_asap(net.now, c.conn, &bytes);
    }
    net.pump();
    let answers = net.take(c);
    assert_eq!(answers.iter().filter(|m| accepted(m)).count(), 5);
    assert_eq!(net.shards[0].sessions.pes(c.conn), Some(5));
    let held: usize = net.shards[0].handlespace().element_count();
    assert_eq!(held, 5);
}

#[test]
fn one_association_cannot_create_more_pools_than_its_limit() {
    let mut net = Net::new(2, limits(100, 2));
    let c = net.connect(0, 1, addr(1));
    let other = net.connect(1, 2, addr(2));
    assert!(accepted(&register(&mut net, other, "theirs", 1, rr())));
    assert!(accepted(&register(&mut net, c, "a", 1, rr())));
    assert!(accepted(&register(&mut net, c, "b", 2, rr())));
    let m = register(&mut net, c, "c", 3, rr());
    assert_eq!(cause(&m), Some(CauseCode::LACK_OF_RESOURCES), "{m:?}");
    assert!(net.shards[1].handlespace().pool(b"c").is_none());
    // More PEs in its own pools and joining another's pool are fine.
    assert!(accepted(&register(&mut net, c, "a", 4, rr())));
    assert!(accepted(&register(&mut net, c, "theirs", 5, rr())));
    assert_eq!(net.shards[0].sessions.pools_created(c.conn), Some(2));
    // Once its PEs leave a pool it created, it may create another.
    net.send(
        c,
        &AsapMessage::Deregistration {
            handle: "b".into(),
            id: PoolElementId(2),
        },
    );
    net.take(c);
    assert!(accepted(&register(&mut net, c, "c", 3, rr())));
    assert_eq!(
        merged(&net).limit_refusals(AssociationLimit::Pools),
        1,
        "counted per limit"
    );
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::LimitReached {
            limit: AssociationLimit::Pools,
            ..
        }
    )));
}

#[test]
fn a_huge_association_is_removed_in_slices_with_resolutions_answered_between() {
    let n = 3 * REMOVAL_SLICE as u32 + 10;
    let mut net = Net::new(1, limits(10_000, 10));
    let big = net.connect(0, 1, addr(1));
    for id in 1..=n {
        assert!(accepted(&register(&mut net, big, "big", id, rr())));
    }
    let small = net.connect(0, 2, addr(2));
    assert!(accepted(&register(&mut net, small, "small", 1, rr())));
    let pu = net.connect(0, 3, addr(3));
    let t = net.now;
    net.shards[0].handle_conn_down(t, big.conn);
    net.pump();
    let left = |net: &Net| {
        net.shards[0]
            .handlespace()
            .pool(b"big")
            .map_or(0, |p| p.len())
    };
    assert_eq!(left(&net), n as usize - REMOVAL_SLICE, "one slice at once");
    // The rest is due at once, a slice per timeout; resolutions are served between.
    assert!(net.shards[0].poll_timeout().is_some_and(|d| d <= t));
    let mut turns = 0;
    while left(&net) > 0 {
        assert_eq!(net.resolved_ids(pu, "small", None), vec![1]);
        let before = left(&net);
        net.shards[0].handle_timeout(t);
        net.pump();
        assert!(before - left(&net) <= REMOVAL_SLICE);
        turns += 1;
        assert!(turns < 10, "stalled at {} left", left(&net));
    }
    assert_eq!(turns, 3);
    assert!(net.shards[0].handlespace().pool(b"big").is_none());
    assert_eq!(
        merged(&net).removals(RemovalReason::ConnectionLost),
        u64::from(n)
    );
    // Nothing more queued: the next deadline is a keep-alive, not now.
    assert!(net.shards[0].poll_timeout().is_none_or(|d| d > t));
}

#[test]
fn over_tls_the_same_client_identity_takes_its_pe_to_a_new_association() {
    let mut net = Net::new(2, config());
    let old = net.connect_as(0, 1, addr(1), "pe-7");
    assert!(accepted(&register(&mut net, old, "p", 7, rr())));
    // The PE restarted: its old association is not noticed dead yet.
    let restarted = net.connect_as(1, 2, addr(1), "pe-7");
    let m = register(&mut net, restarted, "p", 7, rr());
    assert!(accepted(&m), "the same identity proves the same PE: {m:?}");
    // Someone else, with a certificate of its own or none, still cannot.
    let other = net.connect_as(0, 3, addr(2), "pe-8");
    let m = register(&mut net, other, "p", 7, rr());
    assert_eq!(cause(&m), Some(CauseCode::REJECTED_SECURITY), "{m:?}");
    let plain = net.connect(1, 4, addr(3));
    let m = register(&mut net, plain, "p", 7, rr());
    assert_eq!(cause(&m), Some(CauseCode::REJECTED_SECURITY), "{m:?}");
    // The PE now lives on its new association: losing the old one keeps it.
    net.disconnect(old);
    assert!(everywhere(&net, b"p", 7));
    net.disconnect(restarted);
    assert!(nowhere(&net, b"p", 7));
}

#[test]
fn access_rules_match_the_tls_client_identity() {
    use crate::registrar::access::{Op, Ops, Rule, Rules, Verdict};
    let only_pe1 = Rule {
        name: "pe-1 only".into(),
        verdict: Verdict::Allow,
        ops: Ops::NONE.with(Op::Register),
        from: Vec::new(),
        identity: Some("pe-1".into()),
        pools: vec!["p".parse().unwrap()],
    };
    let deny_others = Rule {
        name: "nobody else".into(),
        verdict: Verdict::Deny,
        ops: Ops::NONE.with(Op::Register),
        from: Vec::new(),
        identity: None,
        pools: Vec::new(),
    };
    let mut cfg = config();
    cfg.access = Rules::new(vec![only_pe1, deny_others], Verdict::Allow);
    let mut net = Net::new(2, cfg);
    let pe1 = net.connect_as(0, 1, addr(1), "pe-1");
    let pe2 = net.connect_as(1, 2, addr(2), "pe-2");
    let plain = net.connect(0, 3, addr(3));
    assert!(accepted(&register(&mut net, pe1, "p", 1, rr())));
    for c in [pe2, plain] {
        let m = register(&mut net, c, "p", 2, rr());
        assert_eq!(cause(&m), Some(CauseCode::REJECTED_SECURITY), "{m:?}");
    }
}
