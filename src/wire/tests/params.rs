//! RFC 5354 §3, RFC 5356: fixed-size and constrained parameters, transports, and the
//! structure of the Pool Element.

use super::craft::*;
use super::{asap, encode_asap, encode_enrp, enrp, hex};
use crate::wire::{
    AsapMessage, DecodeError, DecodeErrorKind, EnrpMessage, ParamType, Span, Writer,
};

// ---- RFC 5354 §3: fixed-size and constrained parameters ----

#[test]
fn rfc5354_s3_15_pe_checksum_length_is_6() {
    let m = EnrpMessage::Presence {
        ids: Default::default(),
        reply_required: false,
        checksum: Some(0xbeef),
        info: None,
    };
    let buf = encode_enrp(&m);
    // Message length 18 excludes the checksum's 2 pad bytes, which are the final padding.
    assert_eq!(
        buf,
        hex("01 00 00 12 00 00 00 00 00 00 00 00 00 0f 00 06 be ef 00 00")
    );
    assert_eq!(enrp(&buf).unwrap().message, m);
    let wrong = hex("01 00 00 14 00 00 00 00 00 00 00 00 00 0f 00 08 be ef 00 00");
    let e = err(enrp(&wrong));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::InvalidValue(ParamType::PE_CHECKSUM),
            Some(Span { start: 12, len: 8 })
        )
    );
}

#[test]
fn rfc5354_s3_9_pool_handle_length_0_rejected() {
    let buf = hex("05 00 00 08 00 09 00 04");
    let e = err(asap(&buf));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::InvalidValue(ParamType::POOL_HANDLE),
            Some(Span { start: 4, len: 4 })
        )
    );
    // Any non-empty length is the codec's business; limits are the registrar's.
    let long = AsapMessage::HandleResolution {
        subscribe: false,
        handle: crate::PoolHandle::new(&[0x5a; 300]),
        items: None,
    };
    assert_eq!(asap(&encode_asap(&long)).unwrap().message, long);
}

fn registration_with_policy(values: &[u8]) -> Vec<u8> {
    msg(0x01, 0, |w| {
        handle(w);
        pe(w, |w| {
            sctp(w);
            w.tlv(0x0008, |w| w.put_bytes(values));
        });
    })
}

#[test]
fn rfc5356_policy_with_5_values_rejected() {
    let four = registration_with_policy(&[
        0xb0, 0, 0x20, 0x03, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4,
    ]);
    let AsapMessage::Registration { element, .. } = asap(&four).unwrap().message else {
        panic!()
    };
    assert_eq!(element.policy.values(), &[1, 2, 3, 4]);
    let five = registration_with_policy(&[0; 24]);
    let e = err(asap(&five));
    assert_eq!(e.kind, DecodeErrorKind::InvalidValue(ParamType::POLICY));
    assert_eq!(e.span, Some(Span { start: 48, len: 28 }));
    for bad in [&[0u8; 0][..], &[0, 0, 0], &[0, 0, 0, 1, 0, 0]] {
        let e = err(asap(&registration_with_policy(bad)));
        assert_eq!(e.kind, DecodeErrorKind::InvalidValue(ParamType::POLICY));
    }
}

#[test]
fn rfc5354_s3_fixed_lengths_enforced() {
    // PE Identifier with 5 value bytes.
    let buf = msg(0x02, 0, |w| {
        handle(w);
        w.tlv(0x000e, |w| w.put_bytes(&[0, 0, 0, 0, 1]));
    });
    assert_eq!(
        kind(asap(&buf)),
        DecodeErrorKind::InvalidValue(ParamType::PE_IDENTIFIER)
    );
    // Handle Resolution Option with 8 value bytes.
    let buf = msg(0x05, 0, |w| {
        handle(w);
        w.tlv(0x803f, |w| w.put_bytes(&[0; 8]));
    });
    assert_eq!(
        kind(asap(&buf)),
        DecodeErrorKind::InvalidValue(ParamType::HANDLE_RESOLUTION_OPTION)
    );
    // IPv4 address of 16 bytes, IPv6 address of 4.
    for (t, n) in [(0x0001u16, 16usize), (0x0002, 4)] {
        let buf = msg(0x01, 0, |w| {
            handle(w);
            pe(w, |w| {
                w.tlv(0x0004, |w| {
                    w.put_u32(0x2328_0000);
                    w.tlv(t, |w| w.put_bytes(&vec![1; n]));
                });
                rr(w);
            });
        });
        assert_eq!(
            kind(asap(&buf)),
            DecodeErrorKind::InvalidValue(ParamType(t))
        );
    }
}

// ---- RFC 5354 §3.3-3.10: transports and Pool Element structure ----

fn registration(children: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    msg(0x01, 0, |w| {
        handle(w);
        pe(w, children);
    })
}

#[test]
fn rfc5354_s3_transports_address_counts() {
    // SCTP with no address.
    let e = err(asap(&registration(|w| {
        w.tlv(0x0004, |w| w.put_u32(0x2328_0000));
        rr(w);
    })));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::MissingParameter(ParamType::IPV4_ADDRESS),
            Some(Span { start: 32, len: 8 })
        )
    );
    // TCP with two addresses.
    let e = err(asap(&registration(|w| {
        w.tlv(0x0005, |w| {
            w.put_u32(0x1f90_0000);
            ipv4(w);
            ipv4(w);
        });
        rr(w);
    })));
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnexpectedParameter(ParamType::IPV4_ADDRESS)
    );
    // UDP with no address; DCCP too short for its service code.
    let e = err(asap(&registration(|w| {
        w.tlv(0x0006, |w| w.put_u32(0x1f90_0000));
        rr(w);
    })));
    assert_eq!(
        e.kind,
        DecodeErrorKind::MissingParameter(ParamType::IPV4_ADDRESS)
    );
    let e = err(asap(&registration(|w| {
        w.tlv(0x0003, |w| w.put_u16(1));
        rr(w);
    })));
    assert_eq!(
        e.kind,
        DecodeErrorKind::InvalidValue(ParamType::DCCP_TRANSPORT)
    );
    // A Pool Handle where an address belongs.
    let e = err(asap(&registration(|w| {
        w.tlv(0x0004, |w| {
            w.put_u32(0x2328_0000);
            handle(w);
        });
        rr(w);
    })));
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnexpectedParameter(ParamType::POOL_HANDLE)
    );
}

#[test]
fn rfc5354_s3_10_pool_element_structure() {
    let missing_policy = err(asap(&registration(sctp)));
    assert_eq!(
        missing_policy.kind,
        DecodeErrorKind::MissingParameter(ParamType::POLICY)
    );
    assert_eq!(missing_policy.span, Some(Span { start: 16, len: 32 }));
    let policy_first = err(asap(&registration(|w| {
        rr(w);
        sctp(w);
    })));
    assert_eq!(
        policy_first.kind,
        DecodeErrorKind::UnexpectedParameter(ParamType::POLICY)
    );
    let extra = err(asap(&registration(|w| {
        sctp(w);
        rr(w);
        sctp(w);
        rr(w);
    })));
    assert_eq!(
        extra.kind,
        DecodeErrorKind::UnexpectedParameter(ParamType::POLICY)
    );
    let no_transport = err(asap(&registration(|_| {})));
    assert_eq!(
        no_transport.kind,
        DecodeErrorKind::MissingParameter(ParamType::SCTP_TRANSPORT)
    );
    let short_fixed = msg(0x01, 0, |w| {
        handle(w);
        w.tlv(0x000a, |w| w.put_u32(1));
    });
    assert_eq!(
        kind(asap(&short_fixed)),
        DecodeErrorKind::InvalidValue(ParamType::POOL_ELEMENT)
    );
    // The optional ASAP transport must be SCTP.
    let tcp_asap = err(asap(&registration(|w| {
        sctp(w);
        rr(w);
        w.tlv(0x0005, |w| {
            w.put_u32(0x1f90_0000);
            ipv4(w);
        });
    })));
    assert_eq!(
        tcp_asap.kind,
        DecodeErrorKind::UnexpectedParameter(ParamType::TCP_TRANSPORT)
    );
}
