//! Well-formed answers and rate limits end to end: raw bytes from an attacking client
//! over loopback TCP. Every answer parses with our strict decoder (the test client
//! frames by the length field and panics on anything undecodable, so stray bytes after
//! a capped length would break the next message), the connection stays framed, and
//! other clients are unaffected.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use common::{GUARD, Kind, Lab, register_all, registrar_config};
use rserpool::registrar::RateLimit;
use rserpool::wire::{AsapMessage, CauseCode, ErrorCause, OperationError};
use rserpool_shards::EnrpEndpoints;

/// A message of `kind` whose Message Length covers `body`, padded.
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

/// A cause that quotes holds nothing or one whole TLV whose length agrees.
fn assert_whole_quotes(error: &OperationError) {
    for ErrorCause { info, .. } in &error.causes {
        if !info.is_empty() {
            let len = usize::from(u16::from_be_bytes([info[2], info[3]]));
            assert_eq!(len, info.len(), "a broken quote: {info:02x?}");
        }
    }
}

fn error_of(m: &AsapMessage) -> &OperationError {
    match m {
        AsapMessage::Error { error }
        | AsapMessage::RegistrationResponse {
            error: Some(error), ..
        }
        | AsapMessage::HandleResolutionResponse {
            error: Some(error), ..
        } => {
            assert_whole_quotes(error);
            error
        }
        other => panic!("expected an answer with an error, got {other:?}"),
    }
}

#[test]
fn answers_to_oversized_requests_fit_their_length_field_and_keep_the_stream_framed() {
    let lab = Lab::start(Kind::Tcp);
    let _pes = register_all(&lab, "pool", 1..=3);
    let pu = lab.connect();
    let attacker = lab.connect();

    // A 65,532-byte message of an unknown type asking for a report (bits 01).
    attacker.send_raw(&raw(0x4f, &vec![0xab; 65_528]));
    let m = attacker.recv();
    assert_eq!(error_of(&m).code(), Some(CauseCode::UNRECOGNIZED_MESSAGE));

    // A registration with a 33,000-byte pool handle.
    attacker.send(&AsapMessage::Registration {
        handle: rserpool::PoolHandle::new(&[b'h'; 33_000]),
        element: common::element(Kind::Tcp, 9),
    });
    let m = attacker.recv();
    assert!(matches!(
        m,
        AsapMessage::RegistrationResponse { rejected: true, .. }
    ));
    assert_eq!(error_of(&m).code(), Some(CauseCode::INVALID_VALUES));

    // A resolution with 16,370 unknown parameters, each to be reported (bits 11).
    let mut body = tlv(0x0009, b"pool");
    for _ in 0..16_370 {
        body.extend_from_slice(&tlv(0xc011, &[]));
    }
    attacker.send_raw(&raw(0x05, &body));
    let m = attacker.recv();
    assert!(error_of(&m).causes.len() <= rserpool::wire::MAX_CAUSES);
    // Then the resolution itself is answered.
    assert!(matches!(
        attacker.recv(),
        AsapMessage::HandleResolutionResponse { error: None, .. }
    ));

    // A resolution whose negative answer could not echo its 65,524-byte handle.
    attacker.send_raw(&raw(0x05, &tlv(0x0009, &vec![b'x'; 65_524])));
    let m = attacker.recv();
    assert!(matches!(m, AsapMessage::Error { .. }), "{m:?}");

    // Broken TLVs are reported without a quote.
    attacker.send_raw(&raw(0x05, &[0, 0x09, 0, 3, b'p', b'o', b'o', b'l']));
    assert!(error_of(&attacker.recv()).causes[0].info.is_empty());

    // The attacker's stream is still framed, and nobody else noticed.
    assert_eq!(attacker.resolve("pool", None).len(), 3);
    assert_eq!(pu.resolve("pool", None).len(), 3);
    lab.finish();
}

#[test]
fn resolutions_over_the_rate_limit_get_0x000a_per_association() {
    let config = rserpool::registrar::Config {
        resolution_rate: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..registrar_config(0x0a0b_0c0d, common::NO_EXPIRY)
    };
    let lab = Lab::with(Kind::Tcp, config, EnrpEndpoints::default());
    let server = lab.serve_metrics();
    let _pes = register_all(&lab, "pool", 1..=2);
    let flood = lab.connect();
    let ask = AsapMessage::HandleResolution {
        subscribe: false,
        handle: "pool".into(),
        items: None,
    };
    // Pipelined: the burst of 3 answered, and of the rest all but one a second (50
    // could only all pass in 47 s, beyond the test's guard) refused with 0x000a.
    for _ in 0..50 {
        flood.send(&ask);
    }
    let mut refused = 0;
    for i in 0..50 {
        match flood.recv() {
            AsapMessage::HandleResolutionResponse { error: None, .. } => {}
            m => {
                assert!(i >= 3, "the burst is answered");
                assert_eq!(error_of(&m).code(), Some(CauseCode::REJECTED_SECURITY));
                refused += 1;
            }
        }
    }
    assert!(refused > 0);
    // Another association has its own allowance.
    assert_eq!(lab.connect().resolve("pool", None).len(), 2);

    // Unreachable reports (default: 10 a second, 50 at once): 300 would take 25 s to
    // pass, so most are dropped (about a PE no pool has, so that no removal races the
    // resolution below), and the reporter's next request is answered as usual.
    let reporter = lab.connect();
    for _ in 0..300 {
        reporter.send(&AsapMessage::EndpointUnreachable {
            handle: "pool".into(),
            id: rserpool::PoolElementId(77),
        });
    }
    assert_eq!(reporter.resolve("pool", None).len(), 2);

    let text = http_get(server.addr());
    let limited = |kind: &str| {
        common::sum_over_shards(
            &text,
            "rserpool_asap_rate_limited_total",
            &format!(",kind=\"{kind}\""),
        )
    };
    assert_eq!(limited("handle_resolution"), refused as f64);
    assert!(limited("endpoint_unreachable") > 0.0);
    drop(server);
    lab.finish();
}

fn http_get(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
