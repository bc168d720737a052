//! Access rules matched directly, then through a one-shard registrar.
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(name: &str, verdict: Verdict, ops: &[Op], from: &[&str], pools: &[&str]) -> Rule {
    Rule {
        name: name.into(),
        verdict,
        ops: ops.iter().fold(Ops::NONE, |s, o| s.with(*o)),
        from: from.iter().map(|n| n.parse().unwrap()).collect(),
        identity: None,
        pools: pools.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

fn verdict(rules: &Rules, addrs: &[&str], op: Op, handle: &str) -> (Verdict, Option<u16>) {
    let addrs: Vec<IpAddr> = addrs.iter().map(|a| ip(a)).collect();
    let d = rules.check(&rules.grant(&addrs, None), op, handle.as_bytes());
    (d.verdict, d.rule)
}

#[test]
fn networks_match_by_prefix_in_either_family_and_mapped_v4_as_v4() {
    let n: Network = "10.1.0.0/16".parse().unwrap();
    assert!(n.contains(ip("10.1.200.3")));
    assert!(!n.contains(ip("10.2.0.1")));
    assert!(
        n.contains(ip("::ffff:10.1.0.9")),
        "a dual-stack socket's IPv4 peer"
    );
    assert!(!n.contains(ip("::a01:9")), "IPv6 is not IPv4");
    let host: Network = "127.0.0.1".parse().unwrap();
    assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
    let v6: Network = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("::1")));
    assert!("::/0".parse::<Network>().unwrap().contains(ip("fe80::1")));
    // Host bits are cleared, so the network is what it says.
    assert_eq!(
        "10.1.2.3/8".parse::<Network>().unwrap().to_string(),
        "10.0.0.0/8"
    );
    let mapped: Network = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(mapped.to_string(), "10.0.0.0/8");
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "x",
        "10.0.0.1/",
        "::ffff:1.2.3.4/95",
    ] {
        assert!(bad.parse::<Network>().is_err(), "{bad}");
    }
}

#[test]
fn pool_patterns_exact_prefix_and_hex() {
    let p = |s: &str| s.parse::<PoolPattern>().unwrap();
    assert!(p("Pool").matches(b"Pool") && !p("Pool").matches(b"Pool2"));
    assert!(p("app-*").matches(b"app-1") && p("app-*").matches(b"app-"));
    assert!(!p("app-*").matches(b"ap"));
    assert!(p("*").matches(b"") && p("*").matches(b"\xff"));
    assert_eq!(p("hex:00ff"), PoolPattern::Exact(vec![0, 0xff]));
    assert_eq!(p("hex:2a*"), PoolPattern::Prefix(vec![b'*']));
    assert_eq!(
        p("hex:2a"),
        PoolPattern::Exact(vec![b'*']),
        "a handle ending in *"
    );
    // A sign is no digit ("+f" once passed as 0x0f).
    for bad in ["", "hex:0", "hex:zz", "hex:", "hex:é1", "hex:+f", "hex:-1"] {
        assert!(bad.parse::<PoolPattern>().is_err(), "{bad:?}");
    }
}

#[test]
fn no_rules_allow_everything_without_looking() {
    let rules = Rules::default();
    assert!(rules.is_open());
    for op in Op::ALL {
        assert_eq!(
            verdict(&rules, &["192.0.2.1"], op, "x"),
            (Verdict::Allow, None)
        );
    }
    let closed = Rules::new(Vec::new(), Verdict::Deny);
    assert!(!closed.is_open());
    assert_eq!(
        verdict(&closed, &["127.0.0.1"], Op::Resolve, "x"),
        (Verdict::Deny, None)
    );
}

#[test]
fn first_matching_rule_wins_and_the_default_takes_the_rest() {
    use Op::*;
    use Verdict::*;
    let rules = Rules::new(
        vec![
            rule("pe", Allow, &[Register], &["127.0.0.1"], &["Pool"]),
            rule("pe-deny", Deny, &[Register], &["127.0.0.0/8"], &[]),
            rule(
                "pu",
                Allow,
                &[Resolve, Unreachable],
                &[],
                &["Pool", "app-*"],
            ),
            rule(
                "ops",
                Allow,
                &[Register, Resolve, Unreachable, Enrp],
                &["10.0.0.0/8"],
                &[],
            ),
        ],
        Deny,
    );
    assert_eq!(
        verdict(&rules, &["127.0.0.1"], Register, "Pool"),
        (Allow, Some(0))
    );
    assert_eq!(
        verdict(&rules, &["127.0.0.1"], Register, "Other"),
        (Deny, Some(1))
    );
    assert_eq!(
        verdict(&rules, &["127.0.0.2"], Register, "Pool"),
        (Deny, Some(1))
    );
    assert_eq!(
        verdict(&rules, &["::ffff:127.0.0.1"], Register, "Pool"),
        (Allow, Some(0))
    );
    assert_eq!(
        verdict(&rules, &["192.0.2.1"], Register, "Pool"),
        (Deny, None)
    );
    assert_eq!(
        verdict(&rules, &["192.0.2.1"], Resolve, "app-x"),
        (Allow, Some(2))
    );
    assert_eq!(
        verdict(&rules, &["192.0.2.1"], Unreachable, "Pool"),
        (Allow, Some(2))
    );
    assert_eq!(
        verdict(&rules, &["192.0.2.1"], Resolve, "other"),
        (Deny, None)
    );
    assert_eq!(
        verdict(&rules, &["10.9.9.9"], Resolve, "other"),
        (Allow, Some(3))
    );
    assert_eq!(
        verdict(&rules, &["10.9.9.9"], Register, "Pool"),
        (Allow, Some(3))
    );
    assert_eq!(verdict(&rules, &["10.9.9.9"], Enrp, ""), (Allow, Some(3)));
    assert_eq!(verdict(&rules, &["192.0.2.1"], Enrp, ""), (Deny, None));
    assert_eq!(
        rules.check_source(Enrp, &[ip("10.0.0.1")], None).rule,
        Some(3)
    );
}

#[test]
fn every_address_of_an_association_must_be_covered() {
    let rules = Rules::new(
        vec![rule(
            "lan",
            Verdict::Allow,
            &[Op::Register],
            &["10.0.0.0/8"],
            &[],
        )],
        Verdict::Deny,
    );
    assert_eq!(
        verdict(&rules, &["10.0.0.1", "10.1.0.1"], Op::Register, "p").0,
        Verdict::Allow
    );
    assert_eq!(
        verdict(&rules, &["10.0.0.1", "192.0.2.1"], Op::Register, "p").0,
        Verdict::Deny,
        "one path outside the network"
    );
    assert_eq!(
        verdict(&rules, &[], Op::Register, "p").0,
        Verdict::Deny,
        "no known address is no address in the network"
    );
    // A rule for any source covers a connection of unknown address.
    let any = Rules::new(
        vec![rule("any", Verdict::Allow, &[Op::Register], &[], &[])],
        Verdict::Deny,
    );
    assert_eq!(verdict(&any, &[], Op::Register, "p").0, Verdict::Allow);
}

#[test]
fn identity_rules_cover_only_that_identity() {
    let mut r = rule("tls", Verdict::Allow, &[Op::Register], &[], &[]);
    r.identity = Some("pe.example".into());
    let rules = Rules::new(vec![r], Verdict::Deny);
    let addrs = [ip("192.0.2.1")];
    let g = |id| {
        rules
            .check(&rules.grant(&addrs, id), Op::Register, b"p")
            .verdict
    };
    assert_eq!(g(None), Verdict::Deny, "no TLS, no identity");
    assert_eq!(g(Some("other")), Verdict::Deny);
    assert_eq!(g(Some("pe.example")), Verdict::Allow);
}

#[test]
fn a_source_wide_rule_ends_the_per_request_list() {
    let rules = Rules::new(
        vec![
            rule("a", Verdict::Allow, &[Op::Resolve], &[], &["x"]),
            rule("b", Verdict::Deny, &[Op::Resolve], &["192.0.2.0/24"], &[]),
            rule("c", Verdict::Allow, &[Op::Resolve], &[], &["y"]),
        ],
        Verdict::Allow,
    );
    let g = rules.grant(&[ip("192.0.2.1")], None);
    assert_eq!(&*g.scopes[Op::Resolve.index()].pooled, &[0]);
    assert_eq!(g.scopes[Op::Resolve.index()].last.rule, Some(1));
    assert_eq!(rules.check(&g, Op::Resolve, b"y").verdict, Verdict::Deny);
    assert_eq!(rules.check(&g, Op::Register, b"y"), rules.fallback());
}

#[test]
fn denials_are_counted_per_rule_and_merged_across_shards() {
    let rules = Rules::new(
        vec![rule("r", Verdict::Deny, &[Op::Resolve], &[], &[])],
        Verdict::Deny,
    );
    let mut a = Denials::new(&rules);
    let mut b = Denials::new(&rules);
    a.count(rules.check_source(Op::Resolve, &[], None), Op::Resolve);
    b.count(rules.check_source(Op::Resolve, &[], None), Op::Resolve);
    b.count(rules.check_source(Op::Enrp, &[], None), Op::Enrp);
    let mut all = Denials::default();
    all.merge(&a);
    all.merge(&b);
    assert_eq!(all.by("r", Op::Resolve), 2);
    assert_eq!(all.by("default", Op::Enrp), 1);
    assert_eq!(all.by("r", Op::Enrp), 0);
}

/// The registrar with access rules, over one shard, on a virtual clock.
mod registrar {
    use std::time::Instant;

    use super::super::super::{
        Config, ConnId, ConnInfo, Event, Protocol, Registrar, Router, ShardId, Transmit, Transport,
    };
    use super::super::gate::LOG_INTERVAL;
    use super::*;
    use crate::ids::{PoolElementId, RegistrarId};
    use crate::wire::{
        AsapMessage, CauseCode, PolicyParam, PoolElement, RegistrationLife, SctpTransport,
        TransportUse, UserTransport,
    };

    fn shard() -> Registrar {
        let rules = Rules::new(
            vec![
                rule(
                    "pe",
                    Verdict::Allow,
                    &[Op::Register],
                    &["127.0.0.1"],
                    &["Pool"],
                ),
                rule("pu", Verdict::Allow, &[Op::Resolve], &[], &["*"]),
                rule("no-reports", Verdict::Deny, &[Op::Unreachable], &[], &[]),
            ],
            Verdict::Deny,
        );
        let config = Config {
            allow_loopback: true,
            access: rules,
            ..Config::default()
        };
        Registrar::new(config, ShardId(0), Router::new(1, 1), 1)
    }

    fn up(r: &mut Registrar, now: Instant, conn: u64, addr: &str, protocol: Protocol) {
        let info = ConnInfo::new(Transport::Sctp, protocol, vec![ip(addr)], 40_000);
        r.handle_conn_up(now, ConnId(conn), info);
    }

    fn send(r: &mut Registrar, now: Instant, conn: u64, m: &AsapMessage) {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        r.handle_asap(now, ConnId(conn), &bytes);
    }

    /// The ASAP messages and closes queued since the last call.
    fn drain(r: &mut Registrar) -> Vec<Result<AsapMessage, ConnId>> {
        std::iter::from_fn(|| r.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Asap { payload, .. } => {
                    Some(Ok(AsapMessage::decode(&payload).unwrap().message))
                }
                Transmit::Close { conn } => Some(Err(conn)),
                _ => None,
            })
            .collect()
    }

    fn registration(id: u32, at: &str) -> AsapMessage {
        AsapMessage::Registration {
            handle: "Pool".into(),
            element: PoolElement {
                id: PoolElementId(id),
                home: RegistrarId(0),
                registration_life: RegistrationLife(90_000),
                user_transport: UserTransport::Sctp(SctpTransport {
                    port: 9000,
                    transport_use: TransportUse::DATA_ONLY,
                    addresses: vec![ip(at)],
                }),
                policy: PolicyParam::round_robin(),
                asap_transport: None,
            },
        }
    }

    fn security(m: &Result<AsapMessage, ConnId>) -> bool {
        let error = match m {
            Ok(AsapMessage::RegistrationResponse { error, .. })
            | Ok(AsapMessage::DeregistrationResponse { error, .. })
            | Ok(AsapMessage::HandleResolutionResponse { error, .. }) => error,
            _ => return false,
        };
        error.as_ref().and_then(|e| e.code()) == Some(CauseCode::REJECTED_SECURITY)
    }

    /// A reload puts new rules in force for the connections already up, and keeps
    /// the denial counts of the rules that stay.
    #[test]
    fn reloaded_rules_apply_to_connections_already_up() {
        let now = Instant::now();
        let mut r = Registrar::new(Config::default(), ShardId(0), Router::new(1, 1), 1);
        up(&mut r, now, 1, "127.0.0.2", Protocol::Asap);
        let resolve = AsapMessage::HandleResolution {
            subscribe: false,
            handle: "Pool".into(),
            items: None,
        };
        let denied = |r: &mut Registrar| {
            send(r, now, 1, &resolve);
            let got = drain(r);
            assert_eq!(got.len(), 1, "{got:?}");
            security(&got[0])
        };
        assert!(!denied(&mut r));

        let closed = Rules::new(
            vec![rule(
                "no-pu",
                Verdict::Deny,
                &[Op::Resolve],
                &["127.0.0.2"],
                &[],
            )],
            Verdict::Allow,
        );
        let mut reload = r.config().reloadable();
        reload.access = closed.clone();
        r.reload(&reload);
        assert!(denied(&mut r));
        assert_eq!(r.metrics().access_denied.by("no-pu", Op::Resolve), 1);

        // Another rule added before it: the count of "no-pu" stays.
        reload.access = Rules::new(
            vec![
                rule("pe", Verdict::Allow, &[Op::Register], &[], &[]),
                closed.rules()[0].clone(),
            ],
            Verdict::Allow,
        );
        r.reload(&reload);
        assert!(denied(&mut r));
        assert_eq!(r.metrics().access_denied.by("no-pu", Op::Resolve), 2);

        // Open again.
        reload.access = Rules::default();
        r.reload(&reload);
        assert!(!denied(&mut r));
    }

    #[test]
    fn denied_requests_get_cause_0x000a_and_are_counted_per_rule() {
        let now = Instant::now();
        let mut r = shard();
        up(&mut r, now, 1, "127.0.0.1", Protocol::Asap);
        up(&mut r, now, 2, "127.0.0.2", Protocol::Asap);

        send(&mut r, now, 2, &registration(7, "127.0.0.2"));
        let got = drain(&mut r);
        assert!(got.len() == 1 && security(&got[0]), "{got:?}");
        send(&mut r, now, 1, &registration(8, "127.0.0.1"));
        let got = drain(&mut r);
        assert!(
            matches!(
                &got[..],
                [Ok(AsapMessage::RegistrationResponse {
                    rejected: false,
                    ..
                })]
            ),
            "{got:?}"
        );
        assert!(r.handlespace().element(b"Pool", PoolElementId(8)).is_some());
        assert!(r.handlespace().element(b"Pool", PoolElementId(7)).is_none());

        // Everyone resolves; the denied registrant too.
        let resolve = AsapMessage::HandleResolution {
            subscribe: false,
            handle: "Pool".into(),
            items: None,
        };
        send(&mut r, now, 2, &resolve);
        let got = drain(&mut r);
        assert!(
            matches!(
                &got[..],
                [Ok(AsapMessage::HandleResolutionResponse {
                    error: None,
                    ..
                })]
            ),
            "{got:?}"
        );

        // 127.0.0.2 may not deregister from Pool either.
        let dereg = AsapMessage::Deregistration {
            handle: "Pool".into(),
            id: PoolElementId(8),
        };
        send(&mut r, now, 2, &dereg);
        let got = drain(&mut r);
        assert!(got.len() == 1 && security(&got[0]), "{got:?}");

        // Unreachable reports: dropped, no answer, the PE stays.
        let report = AsapMessage::EndpointUnreachable {
            handle: "Pool".into(),
            id: PoolElementId(8),
        };
        for _ in 0..5 {
            send(&mut r, now, 2, &report);
        }
        assert_eq!(drain(&mut r), Vec::new());
        assert!(r.handlespace().element(b"Pool", PoolElementId(8)).is_some());

        let m = r.metrics();
        assert_eq!(m.access_denied.by("default", Op::Register), 2);
        assert_eq!(m.access_denied.by("no-reports", Op::Unreachable), 5);
        assert_eq!(m.access_denied.by("pu", Op::Resolve), 0);
        assert_eq!(m.errors(CauseCode::REJECTED_SECURITY), 2);

        // One log line per second per shard, the rest counted in the next.
        let logged: Vec<u64> = std::iter::from_fn(|| r.poll_event())
            .filter_map(|e| match e {
                Event::AccessDenied { suppressed, .. } => Some(suppressed),
                _ => None,
            })
            .collect();
        assert_eq!(logged, vec![0]);
        send(&mut r, now + LOG_INTERVAL, 2, &report);
        let logged: Vec<(String, u64)> = std::iter::from_fn(|| r.poll_event())
            .filter_map(|e| match e {
                Event::AccessDenied {
                    rule, suppressed, ..
                } => Some((rule, suppressed)),
                _ => None,
            })
            .collect();
        assert_eq!(logged, vec![("no-reports".to_owned(), 6)]);
    }

    #[test]
    fn a_connection_whose_rules_deny_resolution_gets_0x000a() {
        let now = Instant::now();
        let rules = Rules::new(
            vec![rule(
                "lan",
                Verdict::Allow,
                &[Op::Resolve],
                &["10.0.0.0/8"],
                &[],
            )],
            Verdict::Deny,
        );
        let config = Config {
            access: rules,
            ..Config::default()
        };
        let mut r = Registrar::new(config, ShardId(0), Router::new(1, 1), 1);
        up(&mut r, now, 1, "192.0.2.1", Protocol::Asap);
        up(&mut r, now, 2, "10.1.1.1", Protocol::Asap);
        // The fast path (a plain resolution read in place) is checked too.
        let resolve = AsapMessage::HandleResolution {
            subscribe: false,
            handle: "x".into(),
            items: None,
        };
        send(&mut r, now, 1, &resolve);
        let got = drain(&mut r);
        assert!(got.len() == 1 && security(&got[0]), "{got:?}");
        send(&mut r, now, 2, &resolve);
        let got = drain(&mut r);
        assert!(
            got.len() == 1 && !security(&got[0]),
            "unknown pool, not refused: {got:?}"
        );
        assert_eq!(r.metrics().access_denied.by("default", Op::Resolve), 1);
    }

    #[test]
    fn enrp_from_a_denied_source_is_closed_and_its_presences_ignored() {
        let now = Instant::now();
        let rules = Rules::new(
            vec![rule(
                "peers",
                Verdict::Allow,
                &[Op::Enrp],
                &["10.0.0.0/8"],
                &[],
            )],
            Verdict::Allow,
        );
        let mut rules_v = rules.rules().to_vec();
        rules_v.push(rule("no-peers", Verdict::Deny, &[Op::Enrp], &[], &[]));
        let config = Config {
            access: Rules::new(rules_v, Verdict::Allow),
            enrp: Some(crate::enrp::Config::default()),
            ..Config::default()
        };
        let mut r = Registrar::new(config, ShardId(0), Router::new(1, 1), 1);
        up(&mut r, now, 1, "192.0.2.1", Protocol::Enrp);
        assert_eq!(drain(&mut r), vec![Err(ConnId(1))]);
        assert!(r.gate.refused(ConnId(1)));
        // In flight before the close: not heard.
        r.handle_enrp(now, ConnId(1), &[0; 8]);
        assert_eq!(r.enrp().unwrap().metrics().malformed, 0);
        r.handle_conn_down(now, ConnId(1));
        assert!(!r.gate.refused(ConnId(1)));
        up(&mut r, now, 2, "10.0.0.7", Protocol::Enrp);
        assert_eq!(drain(&mut r), Vec::new());
        let from = "192.0.2.9:9901".parse().unwrap();
        r.handle_enrp_multicast(now, from, &[0; 8]);
        assert_eq!(
            r.enrp().unwrap().metrics().malformed,
            0,
            "ignored before decoding"
        );
        let m = r.metrics();
        assert_eq!(m.access_denied.by("no-peers", Op::Enrp), 2);
    }
}
