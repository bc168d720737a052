//! The registrar's metrics on the virtual network: what moves the counters, and what the
//! histograms measure, on the virtual clock.

use super::*;
use crate::wire::AsapType;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every shard's metrics added up.
fn merged(net: &Net) -> Metrics {
    let mut all = Metrics::default();
    for s in &net.shards {
        all.merge(&s.metrics());
    }
    all
}

fn ack(net: &mut Net, c: Client, pool: &str, id: u32) {
    net.send(
        c,
        &AsapMessage::EndpointKeepAliveAck {
            handle: pool.into(),
            id: PoolElementId(id),
        },
    );
}

#[test]
fn messages_are_counted_by_type_and_error_causes_by_code() {
    let (mut net, _) = one_pe_pool(2);
    let pu = net.connect(1, 2, addr(2));
    for _ in 0..5 {
        net.resolved_ids(pu, "p", None);
    }
    // RFC 5352 §3.3: an unknown pool is answered with cause 0x0009.
    net.resolve(pu, "nope", None);
    net.send_raw(pu, &[0x4f, 0, 0, 4]);
    net.take(pu);

    let pu_shard = net.shards[1].metrics();
    assert_eq!(pu_shard.received(AsapType::HANDLE_RESOLUTION), 6);
    assert_eq!(pu_shard.sent(AsapType::HANDLE_RESOLUTION_RESPONSE), 6);
    assert_eq!(pu_shard.errors(CauseCode::UNKNOWN_POOL_HANDLE), 1);
    assert_eq!(pu_shard.malformed(), 1, "the unknown message type");
    assert_eq!(pu_shard.errors(CauseCode::UNRECOGNIZED_MESSAGE), 1);
    assert_eq!(pu_shard.sent(AsapType::ERROR), 1);
    assert_eq!(
        pu_shard.handle_resolution.count(),
        6,
        "negative answers too"
    );

    let all = merged(&net);
    assert_eq!(all.received(AsapType::REGISTRATION), 1);
    assert_eq!(all.sent(AsapType::REGISTRATION_RESPONSE), 1);
    assert_eq!(all.registration.count(), 1);
    assert_eq!(
        net.shards[0]
            .metrics()
            .received(AsapType::HANDLE_RESOLUTION),
        0,
        "counted where the request arrived"
    );
    assert_eq!(all.errors(CauseCode::UNKNOWN_POOL_HANDLE), 1);
}

#[test]
fn a_rejected_registration_counts_its_cause_and_service_time() {
    let mut net = Net::new(2, config());
    let c = net.connect(0, 1, addr(1));
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let spoof = element(5, lo, PolicyParam::round_robin());
    net.send(
        c,
        &AsapMessage::Registration {
            handle: "p".into(),
            element: spoof,
        },
    );
    assert!(!accepted(&net.take(c)[0]));
    let m = net.shards[0].metrics();
    assert_eq!(m.errors(CauseCode::INVALID_VALUES), 1);
    assert_eq!(m.registration.count(), 1);
    assert_eq!(m.sent(AsapType::REGISTRATION_RESPONSE), 1);
}

#[test]
fn service_time_runs_from_the_input_to_the_answer_being_queued() {
    let (mut net, pe) = one_pe_pool(2);
    let t0 = net.now;
    let req = resolution_request("p");
    let shard = &mut net.shards[0];
    shard.handle_asap(t0, pe.conn, &req);
    let Some(Transmit::Asap {
        served: Some(served),
        ..
    }) = shard.poll_transmit()
    else {
        panic!("a timed answer")
    };
    assert_eq!(
        served,
        Served {
            kind: ServiceKind::HandleResolution,
            received: t0
        }
    );
    shard.handle_queued(t0 + Duration::from_micros(3_000), served);
    let h = &shard.metrics().handle_resolution;
    assert_eq!(h.sum(), Duration::from_micros(3_000));
    let le = |bound: Duration| h.cumulative().find(|b| b.0 == Some(bound)).unwrap().1;
    assert_eq!(le(Duration::from_micros(2_000)), 0);
    assert_eq!(le(Duration::from_micros(5_000)), 1);
}

#[test]
fn an_answer_written_into_the_send_buffer_is_timed_when_handed_to_the_socket() {
    let (mut net, pe) = one_pe_pool(1);
    let t0 = net.now;
    let req = resolution_request("p");
    let shard = &mut net.shards[0];
    let before = shard.metrics().handle_resolution.count();
    let mut tx = vec![0xaa; 3];
    shard.handle_asap_into(t0, pe.conn, &req, &mut tx);
    shard.handle_asap_into(t0, pe.conn, &req, &mut tx);
    assert!(shard.poll_transmit().is_none(), "answered in the buffer");
    assert_eq!(&tx[..3], [0xaa; 3], "appended after what was there");
    assert!(shard.has_unclocked());
    assert_eq!(shard.metrics().handle_resolution.count(), before);
    shard.handle_written(t0 + Duration::from_micros(3_000));
    assert!(!shard.has_unclocked());
    let h = &shard.metrics().handle_resolution;
    assert_eq!(h.count(), before + 2);
    let le = |bound: Duration| h.cumulative().find(|b| b.0 == Some(bound)).unwrap().1;
    assert_eq!(
        le(Duration::from_micros(5_000)) - le(Duration::from_micros(2_000)),
        2
    );
    let sent = shard.metrics().sent(AsapType::HANDLE_RESOLUTION_RESPONSE);
    assert_eq!(sent, 2, "counted as sent");
}

/// A registration on shard A for a pool owned by shard B is answered after B's reply:
/// its service time covers the round trip.
#[test]
fn a_registration_through_the_owner_shard_is_timed_end_to_end() {
    let mut net = Net::new(2, config());
    let pool = (0..100)
        .map(|i| format!("pool-{i}"))
        .find(|p| net.shards[0].router().writer(p.as_bytes()) == ShardId(1))
        .expect("some pool is owned by shard 1");
    let c = net.connect(0, 1, addr(1));
    let mut req = Vec::new();
    AsapMessage::Registration {
        handle: pool.as_str().into(),
        element: element(1, addr(1), PolicyParam::round_robin()),
    }
    .encode(&mut req);
    let t0 = net.now;
    net.shards[0].handle_asap(t0, c.conn, &req);
    assert_eq!(net.shards[0].poll_transmit(), None, "waits for the owner");
    let (to, msg) = net.shards[0].poll_shard().expect("a request to the owner");
    assert_eq!(to, ShardId(1));
    net.shards[1].handle_shard(t0 + ms(1), msg);
    // The replica update, then the answer.
    while let Some((back, msg)) = net.shards[1].poll_shard() {
        assert_eq!(back, ShardId(0));
        net.shards[0].handle_shard(t0 + ms(2), msg);
    }
    let Some(Transmit::Asap {
        served: Some(served),
        ..
    }) = net.shards[0].poll_transmit()
    else {
        panic!("a timed answer")
    };
    assert_eq!(served.kind, ServiceKind::Registration);
    net.shards[0].handle_queued(t0 + ms(5), served);
    let h = &net.shards[0].metrics().registration;
    assert_eq!((h.count(), h.sum()), (1, ms(5)));
    assert_eq!(net.shards[1].metrics().registration.count(), 0);
}

#[test]
fn keep_alive_timeout_detection_runs_from_the_last_acknowledgement() {
    // Keep-alive every 100 ms after the last sign of life, 100 ms to answer.
    let mut net = Net::new(2, config());
    let quiet = net.connect(0, 1, addr(1));
    let acker = net.connect(1, 2, addr(2));
    for (c, id) in [(quiet, 1), (acker, 2)] {
        assert!(accepted(&register(
            &mut net,
            c,
            "p",
            id,
            PolicyParam::round_robin()
        )));
    }
    // 100 ms: both get a keep-alive; one answers 30 ms later, the other never.
    net.advance(ms(100));
    net.advance(ms(30));
    ack(&mut net, acker, "p", 2);
    let rtt = &net.shards[1].metrics().keep_alive_rtt;
    assert_eq!((rtt.count(), rtt.sum()), (1, ms(30)));
    // 200 ms: the silent PE's 100 ms are up, counted from its registration.
    net.advance(ms(70));
    let removed = |net: &Net, id| {
        net.shards
            .iter()
            .all(|s| s.handlespace().element(b"p", PoolElementId(id)).is_none())
    };
    assert!(removed(&net, 1));
    let timeouts = |net: &Net| {
        merged(net)
            .failure_detection(RemovalReason::KeepAliveTimeout)
            .clone()
    };
    assert_eq!((timeouts(&net).count(), timeouts(&net).sum()), (1, ms(200)));
    assert_eq!(
        net.shards[0]
            .metrics()
            .failure_detection(RemovalReason::KeepAliveTimeout)
            .count(),
        1,
        "recorded by the shard that supervised it"
    );
    // The other goes silent after its ack at 130 ms: keep-alive at 230, gone at 330,
    // 200 ms after its last sign of life.
    net.advance(ms(100));
    net.take(acker);
    net.advance(ms(30));
    assert!(removed(&net, 2));
    assert_eq!((timeouts(&net).count(), timeouts(&net).sum()), (2, ms(400)));
    let all = merged(&net);
    assert_eq!(all.removals(RemovalReason::KeepAliveTimeout), 2);
    let h = all.failure_detection(RemovalReason::KeepAliveTimeout);
    let le = |bound: Duration| h.cumulative().find(|b| b.0 == Some(bound)).unwrap().1;
    assert_eq!((le(ms(150)), le(ms(200))), (0, 2));
}

#[test]
fn connection_loss_and_an_unanswered_probe_are_timed_with_their_reason() {
    let mut net = Net::new(2, config());
    let a = net.connect(0, 1, addr(1));
    let b = net.connect(1, 2, addr(2));
    let pus = [3, 4, 5].map(|i| net.connect(0, i, addr(i as u32)));
    for (c, id) in [(a, 1), (b, 2)] {
        assert!(accepted(&register(
            &mut net,
            c,
            "p",
            id,
            PolicyParam::round_robin()
        )));
    }
    // PE 1's connection drops 40 ms after its registration.
    net.advance(ms(40));
    net.disconnect(a);
    // PE 2 is reported unreachable by three pool users at 60 ms (RFC 5352 §3.5
    // threshold 3): it answered recently, so it is probed, and removed when the probe
    // goes unanswered for the 100 ms timeout.
    net.advance(ms(20));
    for pu in pus {
        net.send(
            pu,
            &AsapMessage::EndpointUnreachable {
                handle: "p".into(),
                id: PoolElementId(2),
            },
        );
    }
    assert!(net.shards[0].handlespace().pool(b"p").is_some());
    net.advance(ms(101));
    assert!(net.shards[0].handlespace().pool(b"p").is_none());
    let all = merged(&net);
    let lost = all.failure_detection(RemovalReason::ConnectionLost);
    assert_eq!((lost.count(), lost.sum()), (1, ms(40)));
    let probed = all.failure_detection(RemovalReason::KeepAliveTimeout);
    assert_eq!((probed.count(), probed.sum()), (1, ms(160)));
    assert_eq!(
        net.shards[1]
            .metrics()
            .failure_detection(RemovalReason::KeepAliveTimeout)
            .count(),
        1,
        "timed by the shard supervising PE 2"
    );
    assert_eq!(all.removals(RemovalReason::ConnectionLost), 1);
    assert_eq!(all.removals(RemovalReason::KeepAliveTimeout), 1);
    assert_eq!(all.removals(RemovalReason::Unreachable), 0);
    assert_eq!(all.probes(), 1);
    assert_eq!(all.received(AsapType::ENDPOINT_UNREACHABLE), 3);
}

#[test]
fn deregistration_is_a_removal_but_not_a_failure() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    assert!(accepted(&register(
        &mut net,
        c,
        "p",
        1,
        PolicyParam::round_robin()
    )));
    net.send(
        c,
        &AsapMessage::Deregistration {
            handle: "p".into(),
            id: PoolElementId(1),
        },
    );
    net.take(c);
    let m = net.shards[0].metrics();
    assert_eq!(m.removals(RemovalReason::Deregistered), 1);
    assert!(
        RemovalReason::ALL
            .iter()
            .all(|r| m.failure_detection(*r).count() == 0)
    );
}

#[test]
fn written_pools_and_elements_add_up_to_the_handlespace() {
    let mut net = Net::new(2, config());
    let mut pes = Vec::new();
    for i in 1..=40u32 {
        let c = net.connect((i % 2) as usize, u64::from(i), addr(i));
        let pool = format!("pool-{}", i % 8);
        assert!(accepted(&register(
            &mut net,
            c,
            &pool,
            i,
            PolicyParam::round_robin()
        )));
        pes.push(c);
    }
    let sums = |net: &Net| {
        let g: Vec<Gauges> = net.shards.iter().map(Registrar::gauges).collect();
        (
            g.iter().map(|g| g.written_pools).sum::<usize>(),
            g.iter().map(|g| g.written_elements).sum::<usize>(),
            g.iter().map(|g| g.connections).sum::<usize>(),
            g.iter().map(|g| g.supervised).sum::<usize>(),
        )
    };
    assert_eq!(sums(&net), (8, 40, 40, 40));
    assert!(
        net.shards.iter().all(|s| s.gauges().written_pools < 8),
        "both shards own some of 8 pools (seeded router)"
    );
    for s in &net.shards {
        let g = s.gauges();
        assert_eq!((g.replica_pools, g.replica_elements), (8, 40));
    }
    // Pool 0 (PEs 8, 16, 24, 32, 40) empties: one pool less.
    for i in [8usize, 16, 24, 32, 40] {
        net.disconnect(pes[i - 1]);
    }
    assert_eq!(sums(&net), (7, 35, 35, 35));
}

#[test]
fn an_expired_registration_life_is_timed_from_the_registration() {
    let (mut net, _) = pe_registered_for_two_seconds();
    net.advance(ms(2_000));
    let all = merged(&net);
    assert_eq!(all.removals(RemovalReason::Expired), 1);
    let h = all.failure_detection(RemovalReason::Expired);
    assert_eq!((h.count(), h.sum()), (1, ms(2_000)));
    assert_eq!(
        all.sent(AsapType::DEREGISTRATION_RESPONSE),
        1,
        "the PE is told"
    );
    let g = net.shards.iter().map(Registrar::gauges);
    assert_eq!(
        g.map(|g| g.written_pools + g.written_elements)
            .sum::<usize>(),
        0
    );
}
