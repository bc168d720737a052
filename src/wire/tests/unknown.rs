//! RFC 5354 §3-4: unknown parameter types follow their action bits, at the top level
//! and nested; unknown message types are refused.

use super::craft::*;
use super::{asap, encode_enrp, enrp};
use crate::wire::samples::enrp_messages;
use crate::wire::{AsapMessage, CauseCode, DecodeErrorKind, ParamType, Span};

fn deregistration_with(extra: u16) -> Vec<u8> {
    msg(0x02, 0, |w| {
        handle(w);
        w.tlv(extra, |w| w.put_bytes(&[0xee]));
        pe_id(w);
    })
}

// ---- RFC 5354 §3: action bits of unknown parameter types ----

#[test]
fn rfc5354_s3_unknown_param_bits_00_stop_silently() {
    let buf = deregistration_with(0x0011);
    let e = err(asap(&buf));
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnrecognizedParameter(ParamType(0x0011))
    );
    assert_eq!(e.span, Some(Span { start: 16, len: 5 }));
    assert!(!e.should_report());
    assert_eq!(e.cause(), CauseCode::UNRECOGNIZED_PARAMETER);
}

#[test]
fn rfc5354_s3_unknown_param_bits_01_stop_and_report() {
    let e = err(asap(&deregistration_with(0x4011)));
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnrecognizedParameter(ParamType(0x4011))
    );
    assert_eq!(e.span, Some(Span { start: 16, len: 5 }));
    assert!(e.should_report());
}

#[test]
fn rfc5354_s3_unknown_param_bits_10_skipped() {
    let d = asap(&deregistration_with(0x8011)).unwrap();
    assert!(matches!(d.message, AsapMessage::Deregistration { .. }));
    assert!(d.unrecognized.is_empty());
}

#[test]
fn rfc5354_s3_unknown_param_bits_11_skipped_and_reported() {
    let buf = deregistration_with(0xc011);
    let d = asap(&buf).unwrap();
    assert!(matches!(d.message, AsapMessage::Deregistration { .. }));
    assert_eq!(d.unrecognized, vec![Span { start: 16, len: 5 }]);
    assert_eq!(
        &buf[d.unrecognized[0].range()],
        &[0xc0, 0x11, 0x00, 0x05, 0xee]
    );
}

/// A registration with an unknown parameter between the user transport and the policy
/// of its Pool Element, and one among the addresses of the SCTP transport.
fn registration_with_nested(unknown: u16) -> Vec<u8> {
    msg(0x01, 0, |w| {
        handle(w);
        pe(w, |w| {
            w.tlv(0x0004, |w| {
                w.put_u32(0x2328_0000);
                w.tlv(unknown, |w| w.put_bytes(&[1, 2]));
                ipv4(w);
            });
            w.tlv(unknown, |w| w.put_bytes(&[3]));
            rr(w);
        });
    })
}

#[test]
fn rfc5354_s3_nested_unknown_param_bits_00_and_01_stop() {
    for code in [0x0022, 0x4022] {
        let e = err(asap(&registration_with_nested(code)));
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnrecognizedParameter(ParamType(code))
        );
        // The first one met sits inside the SCTP transport: 16 (header, handle) + 4 + 12 + 8.
        assert_eq!(e.span, Some(Span { start: 40, len: 6 }));
    }
}

#[test]
fn rfc5354_s3_nested_unknown_param_bits_10_skipped() {
    let d = asap(&registration_with_nested(0x8022)).unwrap();
    let AsapMessage::Registration { element, .. } = d.message else {
        panic!()
    };
    assert_eq!(element.policy.kind.0, 1);
    assert!(d.unrecognized.is_empty());
}

#[test]
fn rfc5354_s3_nested_unknown_param_bits_11_reported_in_order() {
    let buf = registration_with_nested(0xc022);
    let d = asap(&buf).unwrap();
    assert_eq!(
        d.unrecognized,
        vec![Span { start: 40, len: 6 }, Span { start: 56, len: 5 }]
    );
    assert_eq!(
        &buf[d.unrecognized[1].range()],
        &[0xc0, 0x22, 0x00, 0x05, 0x03]
    );
}

#[test]
fn rfc5354_s3_unknown_param_inside_enrp_server_information() {
    let mut buf = encode_enrp(&enrp_messages()[0]);
    // Turn the IPv4 address inside Server Information into a skippable unknown type:
    // the SCTP transport then has no address left.
    let at = buf.len() - 8;
    buf[at..at + 2].copy_from_slice(&[0x80, 0x01]);
    let e = err(enrp(&buf));
    assert_eq!(
        e.kind,
        DecodeErrorKind::MissingParameter(ParamType::IPV4_ADDRESS)
    );
    assert!(
        e.span.is_some(),
        "a missing nested parameter points at its parent"
    );
}

// ---- RFC 5354 §4: messages ----

#[test]
fn rfc5354_s4_unknown_message_type() {
    for (t, report) in [
        (0x00, false),
        (0x0f, false),
        (0x3f, false),
        (0x4f, true),
        (0xff, false),
    ] {
        let buf = msg(t, 0, handle);
        let e = err(asap(&buf));
        assert_eq!(e.kind, DecodeErrorKind::UnrecognizedMessage(t));
        assert_eq!(e.should_report(), report);
        assert_eq!(e.cause(), CauseCode::UNRECOGNIZED_MESSAGE);
    }
    for t in [0x00, 0x0b, 0x4b] {
        assert_eq!(
            kind(enrp(&msg(t, 0, |_| {}))),
            DecodeErrorKind::UnrecognizedMessage(t)
        );
    }
}
