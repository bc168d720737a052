//! Well-formed answers and rate limits: whatever a client sends, every answer fits its
//! 16-bit length field and decodes strictly (quotes included); resolutions and
//! unreachable reports are limited per association.

use proptest::prelude::*;

use super::*;
use crate::wire::{self, AsapType, ErrorCause, OperationError};

/// `payload` is one whole, strictly well-formed ASAP message: our decoder takes it, its
/// Message Length is its length less the final padding, and every cause that quotes
/// (0x0001–0x0003) quotes nothing or one whole TLV (or message) whose length agrees.
fn assert_well_formed(payload: &[u8]) {
    assert!(
        payload.len() <= wire::framing::MAX_FRAME,
        "{}",
        payload.len()
    );
    let len = usize::from(u16::from_be_bytes([payload[2], payload[3]]));
    assert_eq!(
        len.next_multiple_of(4),
        payload.len(),
        "length field vs bytes"
    );
    let m = AsapMessage::decode(payload)
        .unwrap_or_else(|e| panic!("undecodable answer ({e}): {:02x?}", &payload[..16]))
        .message;
    for c in m.error().map_or(&[][..], |e| &e.causes[..]) {
        assert_quote(c);
    }
}

fn assert_quote(c: &ErrorCause) {
    let quoting = [
        CauseCode::UNRECOGNIZED_PARAMETER,
        CauseCode::UNRECOGNIZED_MESSAGE,
        CauseCode::INVALID_VALUES,
    ];
    if !quoting.contains(&c.code) || c.info.is_empty() {
        return;
    }
    let info = &c.info;
    assert!(info.len() >= 4, "a {}-byte quote", info.len());
    let len = usize::from(u16::from_be_bytes([info[2], info[3]]));
    assert_eq!(
        len,
        info.len(),
        "a quoted TLV whose length disagrees: {info:02x?}"
    );
}

/// Sends `bytes` and returns every answer's raw payload, each checked.
fn answers(net: &mut Net, c: Client, bytes: &[u8]) -> Vec<AsapMessage> {
    net.shards[c.shard].handle_asap(net.now, c.conn, bytes);
    let mut out = Vec::new();
    let shard = &mut net.shards[c.shard];
    while let Some(t) = shard.poll_transmit() {
        if let Transmit::Asap { payload, .. } = t {
            assert_well_formed(&payload);
            out.push(AsapMessage::decode(&payload).unwrap().message);
        }
    }
    while shard.poll_event().is_some() {}
    out
}

/// A message of `kind` whose Message Length covers `body`.
fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + body.len()).unwrap();
    let mut m = vec![kind, 0];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(body);
    m.resize(m.len().next_multiple_of(4), 0);
    m
}

fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut t = kind.to_be_bytes().to_vec();
    t.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_be_bytes());
    t.extend_from_slice(value);
    t.resize(t.len().next_multiple_of(4), 0);
    t
}

fn one_error(got: &[AsapMessage]) -> &OperationError {
    match got {
        [AsapMessage::Error { error }] => error,
        other => panic!("expected one ASAP_ERROR, got {other:?}"),
    }
}

#[test]
fn rfc5354_s4_a_65532_byte_unknown_message_is_reported_without_the_quote() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    // Type 0x4f: action bits 01, "discard and report" (RFC 5354 §4).
    let msg = raw(0x4f, &vec![0xab; 65_532 - 4]);
    let got = answers(&mut net, c, &msg);
    let error = one_error(&got);
    assert_eq!(error.code(), Some(CauseCode::UNRECOGNIZED_MESSAGE));
    assert!(error.causes[0].info.is_empty(), "too long to quote whole");
    // A short one is still quoted whole, without its padding.
    let got = answers(&mut net, c, &raw(0x4f, &[1]));
    assert_eq!(one_error(&got).causes[0].info, [0x4f, 0, 0, 5, 1]);
}

#[test]
fn a_33000_byte_pool_handle_is_refused_in_an_answer_that_fits() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    let handle = PoolHandle::new(&[b'h'; 33_000]);
    let mut reg = Vec::new();
    AsapMessage::Registration {
        handle: handle.clone(),
        element: element(1, addr(1), PolicyParam::round_robin()),
    }
    .encode(&mut reg);
    let got = answers(&mut net, c, &reg);
    let [
        AsapMessage::RegistrationResponse {
            rejected: true,
            handle: echoed,
            error: Some(error),
            ..
        },
    ] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!(echoed, &handle);
    assert_eq!(error.code(), Some(CauseCode::INVALID_VALUES));
    assert_eq!(net.shards[0].metrics().answers.unquoted(), 1);
}

#[test]
fn a_resolution_whose_echo_cannot_fit_is_answered_with_an_error() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    // 8 + 65,524 = 65,532 bytes; a negative answer would need 65,540.
    let msg = raw(0x05, &tlv(0x0009, &vec![b'x'; 65_524]));
    let got = answers(&mut net, c, &msg);
    assert_eq!(one_error(&got).code(), Some(CauseCode::INVALID_VALUES));
    assert_eq!(net.shards[0].metrics().answers.replaced(), 1);
}

#[test]
fn rfc5354_s3_16370_unknown_parameters_get_a_bounded_number_of_causes() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    // A resolution with 16,370 parameters of an unknown type with action bits 11.
    let mut body = tlv(0x0009, b"pool");
    for _ in 0..16_370 {
        body.extend_from_slice(&tlv(0xc011, &[]));
    }
    let got = answers(&mut net, c, &raw(0x05, &body));
    let [
        AsapMessage::Error { error },
        AsapMessage::HandleResolutionResponse { .. },
    ] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!(error.causes.len(), wire::MAX_CAUSES);
    assert!(error.causes.iter().all(|c| c.info == [0xc0, 0x11, 0, 4]));
}

#[test]
fn rfc5354_s3_12_broken_tlvs_are_not_quoted() {
    let mut net = Net::new(1, config());
    let c = net.connect(0, 1, addr(1));
    // A parameter of length 3 (1–3 bytes would be quoted), and one whose length runs
    // past the message (the quote would claim more than it holds).
    let short = raw(0x05, &[0, 0x09, 0, 3, b'p', b'o', b'o', b'l']);
    let overrun = raw(0x05, &[0, 0x09, 0, 200, b'p', b'o', b'o', b'l']);
    for msg in [short, overrun] {
        let got = answers(&mut net, c, &msg);
        let error = one_error(&got);
        assert_eq!(error.code(), Some(CauseCode::INVALID_VALUES));
        assert!(error.causes[0].info.is_empty(), "{msg:02x?}: {error:?}");
    }
    // A well-formed but invalid one is still quoted whole.
    let empty_handle = raw(0x05, &tlv(0x0009, &[]));
    let got = answers(&mut net, c, &empty_handle);
    assert_eq!(one_error(&got).causes[0].info, [0, 0x09, 0, 4]);
}

/// Random messages: a type, and a body of random TLVs (types known and unknown with
/// every action bit, lengths true or lying) or of random bytes.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![1u8..=0x0e, any::<u8>()];
    let param_type = prop_oneof![
        1u16..=0x10,
        Just(0x803f),
        any::<u16>(),
        (0u16..4).prop_map(|b| b << 14 | 0x11)
    ];
    let length = prop_oneof![
        Just(None),
        (0u16..64).prop_map(Some),
        any::<u16>().prop_map(Some)
    ];
    let param = (
        param_type,
        length,
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(t, len, value)| {
            let mut p = tlv(t, &value);
            if let Some(l) = len {
                p[2..4].copy_from_slice(&l.to_be_bytes());
            }
            p
        });
    let tlvs = proptest::collection::vec(param, 0..12).prop_map(|ps| ps.concat());
    let bytes = proptest::collection::vec(any::<u8>(), 0..200);
    (kind, prop_oneof![tlvs, bytes]).prop_map(|(k, body)| raw(k, &body))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever arrives, every answer decodes with our strict decoder, its length
    /// field equals its length, and its quotes are whole TLVs.
    #[test]
    fn every_answer_to_arbitrary_input_is_well_formed(
        msgs in proptest::collection::vec(message(), 1..6),
    ) {
        let mut net = Net::new(1, config());
        let pe = net.connect(0, 1, addr(1));
        assert!(accepted(&register(&mut net, pe, "pool", 1, PolicyParam::round_robin())));
        let c = net.connect(0, 2, addr(2));
        for m in &msgs {
            answers(&mut net, c, m);
        }
    }
}

#[test]
fn mutated_valid_messages_get_well_formed_answers() {
    use crate::wire::fuzz::mutation;
    let seeds = mutation::seeds();
    let mut rng = crate::rng::Rng::new(7);
    let mut net = Net::new(1, config());
    let pe = net.connect(0, 1, addr(1));
    assert!(accepted(&register(
        &mut net,
        pe,
        "pool",
        1,
        PolicyParam::round_robin()
    )));
    let c = net.connect(0, 2, addr(2));
    for _ in 0..20_000 {
        let mut buf = mutation::pick(&mut rng, &seeds).clone();
        for _ in 0..=rng.below(4) {
            mutation::mutate(&mut rng, &seeds, &mut buf);
        }
        mutation::fix_length(&mut buf);
        if buf.len() >= 4 && buf.len() <= usize::from(u16::MAX) {
            buf.resize(buf.len().next_multiple_of(4), 0);
            answers(&mut net, c, &buf);
        }
    }
}

// ---- rate limits ----------------------------------------------------------------

fn limited(resolution: Option<RateLimit>, unreachable: Option<RateLimit>) -> Config {
    Config {
        resolution_rate: resolution,
        unreachable_rate: unreachable,
        ..config()
    }
}

#[test]
fn resolutions_over_the_association_rate_get_cause_0x000a() {
    let rate = RateLimit {
        per_second: 2,
        burst: 2,
    };
    let mut net = Net::new(1, limited(Some(rate), None));
    let pe = net.connect(0, 1, addr(1));
    assert!(accepted(&register(
        &mut net,
        pe,
        "pool",
        1,
        PolicyParam::round_robin()
    )));
    let pu = net.connect(0, 2, addr(2));
    let other = net.connect(0, 3, addr(3));
    assert_eq!(net.resolved_ids(pu, "pool", None), [1]);
    assert_eq!(net.resolved_ids(pu, "pool", None), [1]);
    let AsapMessage::HandleResolutionResponse {
        error: Some(error),
        elements,
        ..
    } = net.resolve(pu, "pool", None)
    else {
        panic!("expected a negative answer")
    };
    assert_eq!(error.code(), Some(CauseCode::REJECTED_SECURITY));
    assert!(elements.is_empty());
    // Another association has its own allowance; this one gets its back with time.
    assert_eq!(net.resolved_ids(other, "pool", None), [1]);
    // (The clock alone: no keep-alive round, which the PE here would not answer.)
    net.now += Duration::from_millis(500);
    assert_eq!(net.resolved_ids(pu, "pool", None), [1]);
    let m = net.shards[0].metrics();
    assert_eq!(m.answers.rate_limited(Limited::HandleResolution), 1);
    assert_eq!(m.errors(CauseCode::REJECTED_SECURITY), 1);
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::RateLimited {
            kind: Limited::HandleResolution,
            ..
        }
    )));
}

#[test]
fn unreachable_reports_over_the_association_rate_are_dropped() {
    let rate = RateLimit {
        per_second: 1,
        burst: 1,
    };
    let mut net = Net::new(2, limited(None, Some(rate)));
    let pe = net.connect(0, 1, addr(1));
    assert!(accepted(&register(
        &mut net,
        pe,
        "pool",
        1,
        PolicyParam::round_robin()
    )));
    let pu = net.connect(1, 2, addr(2));
    let report = AsapMessage::EndpointUnreachable {
        handle: "pool".into(),
        id: PoolElementId(1),
    };
    for _ in 0..5 {
        net.send(pu, &report);
    }
    assert!(net.take(pu).is_empty(), "no answer to a report");
    let m = net.shards[1].metrics();
    assert_eq!(m.answers.rate_limited(Limited::EndpointUnreachable), 4);
    assert_eq!(m.received(AsapType::ENDPOINT_UNREACHABLE), 5);
    // The default allows an honest client's reports.
    assert!(
        Config::default()
            .unreachable_rate
            .is_some_and(|r| r.burst >= 10)
    );
}

#[test]
fn a_closed_association_leaves_no_rate_state() {
    let rate = RateLimit {
        per_second: 1,
        burst: 1,
    };
    let mut net = Net::new(1, limited(Some(rate), Some(rate)));
    let pu = net.connect(0, 2, addr(2));
    net.resolve(pu, "nope", None);
    assert_eq!(net.shards[0].rates.len(), 1);
    net.disconnect(pu);
    assert_eq!(net.shards[0].rates.len(), 0);
}

// ---- answer size -------------------------------------------------------------------

#[test]
fn the_answer_byte_cap_bounds_pes_with_many_addresses() {
    let cap = 2048;
    let config = Config {
        resolution_answer_bytes: cap,
        allow_loopback: true,
        ..config()
    };
    let mut net = Net::new(1, config);
    // PEs of 32 addresses each (~180 bytes encoded): 128 of them would take 23 KB.
    for i in 1..=128u32 {
        let addrs: Vec<IpAddr> = (0..32).map(|k| addr(i * 40 + k)).collect();
        let info = ConnInfo::new(Transport::Sctp, Protocol::Asap, addrs.clone(), 40_000);
        let conn = ConnId(u64::from(i));
        net.shards[0].handle_conn_up(net.now, conn, info);
        let c = Client {
            shard: 0,
            conn,
            addr: addrs[0],
        };
        let mut e = element(i, addrs[0], PolicyParam::round_robin());
        if let UserTransport::Sctp(s) = &mut e.user_transport {
            s.addresses = addrs;
        }
        net.send(
            c,
            &AsapMessage::Registration {
                handle: "pool".into(),
                element: e,
            },
        );
        assert!(accepted(&net.take(c)[0]));
    }
    let pu = net.connect(0, 1000, addr(9_999));
    let msg = {
        let mut b = Vec::new();
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: "pool".into(),
            items: Some(128),
        }
        .encode(&mut b);
        b
    };
    let got = answers(&mut net, pu, &msg);
    let [AsapMessage::HandleResolutionResponse { elements, .. }] = &got[..] else {
        panic!("{got:?}")
    };
    let bytes: usize = elements
        .iter()
        .map(|e| wire::to_vec(|w| e.encode(w)).len().next_multiple_of(4))
        .sum();
    assert!(
        !elements.is_empty() && bytes <= cap,
        "{} PEs, {bytes} bytes",
        elements.len()
    );
    assert!(elements.len() < 128);
}
