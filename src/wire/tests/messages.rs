//! RFC 5352 §2.2, RFC 5353 §2: which parameters each message carries, in which order.

use super::craft::*;
use super::{asap, encode_asap, encode_enrp, enrp, hex};
use crate::wire::samples::{asap_messages, enrp_messages};
use crate::wire::{
    AsapMessage, DecodeError, DecodeErrorKind, EnrpMessage, ParamType, Span, UpdateAction, Writer,
};

// ---- RFC 5352 §2.2: ASAP message contents ----

#[test]
fn rfc5352_s2_2_mandatory_and_extra_parameters() {
    let missing = msg(0x02, 0, handle);
    assert_eq!(
        err(asap(&missing)),
        DecodeError::new(
            DecodeErrorKind::MissingParameter(ParamType::PE_IDENTIFIER),
            None
        )
    );
    let extra = msg(0x02, 0, |w| {
        handle(w);
        pe_id(w);
        w.tlv(0x000d, |w| w.put_u8(1));
    });
    let e = err(asap(&extra));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::UnexpectedParameter(ParamType::COOKIE),
            Some(Span { start: 24, len: 5 })
        )
    );
    let swapped = msg(0x02, 0, |w| {
        pe_id(w);
        handle(w);
    });
    assert_eq!(
        kind(asap(&swapped)),
        DecodeErrorKind::UnexpectedParameter(ParamType::PE_IDENTIFIER)
    );
    assert_eq!(
        kind(asap(&msg(0x0e, 0, |_| {}))),
        DecodeErrorKind::MissingParameter(ParamType::OPERATION_ERROR)
    );
}

#[test]
fn rfc5352_s2_2_6_resolution_response_error_xor_elements() {
    let error = |w: &mut Writer<'_>| w.tlv(0x000c, |w| w.tlv(0x0009, |_| {}));
    let element = |w: &mut Writer<'_>| {
        pe(w, |w| {
            sctp(w);
            rr(w);
        })
    };
    let both = msg(0x06, 0, |w| {
        handle(w);
        error(w);
        element(w);
    });
    assert_eq!(
        kind(asap(&both)),
        DecodeErrorKind::UnexpectedParameter(ParamType::POOL_ELEMENT)
    );
    let both = msg(0x06, 0, |w| {
        handle(w);
        element(w);
        error(w);
    });
    assert_eq!(
        kind(asap(&both)),
        DecodeErrorKind::UnexpectedParameter(ParamType::OPERATION_ERROR)
    );
    let neither = msg(0x06, 0, |w| {
        handle(w);
        rr(w);
    });
    assert_eq!(
        kind(asap(&neither)),
        DecodeErrorKind::MissingParameter(ParamType::POOL_ELEMENT)
    );
    // RSPLIB leniency: no overall policy.
    let no_policy = msg(0x06, 0x01, |w| {
        handle(w);
        element(w);
    });
    let m = asap(&no_policy).unwrap().message;
    assert!(matches!(
        m,
        AsapMessage::HandleResolutionResponse {
            accepted: true,
            policy: None,
            ..
        }
    ));
}

#[test]
fn rfc5352_s2_2_fixed_server_id_required() {
    let short = hex("07 00 00 06 0a 0b 00 00");
    assert_eq!(kind(asap(&short)), DecodeErrorKind::InvalidField);
    let bare = hex("0a 00 00 08 0a 0b 0c 0d");
    assert!(matches!(
        asap(&bare).unwrap().message,
        AsapMessage::ServerAnnounce { transports, info: None, .. } if transports.is_empty()
    ));
}

#[test]
fn rfc5352_s2_2_10_server_announce_order() {
    let info_then_transport = msg(0x0a, 0, |w| {
        w.put_u32(1);
        w.tlv(0x000b, |w| {
            w.put_u32(1);
            sctp(w);
        });
        sctp(w);
    });
    assert_eq!(
        kind(asap(&info_then_transport)),
        DecodeErrorKind::UnexpectedParameter(ParamType::SCTP_TRANSPORT)
    );
    let udp = msg(0x0a, 0, |w| {
        w.put_u32(1);
        w.tlv(0x0006, |w| {
            w.put_u32(0);
            ipv4(w);
        });
    });
    assert_eq!(
        kind(asap(&udp)),
        DecodeErrorKind::UnexpectedParameter(ParamType::UDP_TRANSPORT)
    );
}

// ---- RFC 5353 §2: ENRP message contents ----

#[test]
fn rfc5353_s2_fixed_fields_required() {
    assert_eq!(
        kind(enrp(&hex("01 00 00 08 0a 0b 0c 0d"))),
        DecodeErrorKind::InvalidField
    );
    let ids = "0a 0b 0c 0d 00 00 00 00";
    assert_eq!(
        kind(enrp(&hex(&format!("07 00 00 0c {ids}")))),
        DecodeErrorKind::InvalidField
    );
    assert_eq!(
        kind(enrp(&hex(&format!("04 00 00 0e {ids} 00 01 00 00")))),
        DecodeErrorKind::InvalidField
    );
    let takeover = enrp(&hex(&format!("09 00 00 10 {ids} 01 02 03 04")))
        .unwrap()
        .message;
    assert!(
        matches!(takeover, EnrpMessage::TakeoverServer { target, .. } if target.0 == 0x0102_0304)
    );
}

#[test]
fn rfc5353_s2_4_update_action_kept_and_reserved_ignored() {
    let mut buf = encode_enrp(&enrp_messages()[9]);
    buf[12..16].copy_from_slice(&[0x00, 0x07, 0xff, 0xff]);
    let EnrpMessage::HandleUpdate { action, .. } = enrp(&buf).unwrap().message else {
        panic!()
    };
    assert_eq!(action, UpdateAction(7));
    assert_eq!(format!("{action:?}"), "UpdateAction(0x0007)");
}

#[test]
fn rfc5353_s2_3_table_response_entries() {
    let ids = |w: &mut Writer<'_>| {
        w.put_u32(1);
        w.put_u32(2);
    };
    let element = |w: &mut Writer<'_>| {
        pe(w, |w| {
            sctp(w);
            rr(w);
            sctp(w);
        })
    };
    let lonely_handle = msg(0x03, 0, |w| {
        ids(w);
        handle(w);
        element(w);
        handle(w);
    });
    assert_eq!(
        kind(enrp(&lonely_handle)),
        DecodeErrorKind::MissingParameter(ParamType::POOL_ELEMENT)
    );
    let orphan = msg(0x03, 0, |w| {
        ids(w);
        element(w);
    });
    assert_eq!(
        kind(enrp(&orphan)),
        DecodeErrorKind::UnexpectedParameter(ParamType::POOL_ELEMENT)
    );
    let good = msg(0x03, 0x02, |w| {
        ids(w);
        handle(w);
        element(w);
        element(w);
        w.tlv(0x0009, |w| w.put_u8(b'x'));
        element(w);
    });
    let EnrpMessage::HandleTableResponse { entries, more, .. } = enrp(&good).unwrap().message
    else {
        panic!()
    };
    assert!(more);
    assert_eq!(
        entries.iter().map(|e| e.elements.len()).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(entries[0].elements[0].asap_transport.is_some());
}

#[test]
fn rfc5353_s2_1_presence_parts_optional_on_receipt() {
    let ids = |w: &mut Writer<'_>| {
        w.put_u32(1);
        w.put_u32(0);
    };
    let info_only = msg(0x01, 0x01, |w| {
        ids(w);
        w.tlv(0x000b, |w| {
            w.put_u32(1);
            sctp(w);
        });
    });
    let m = enrp(&info_only).unwrap().message;
    assert!(matches!(
        m,
        EnrpMessage::Presence {
            reply_required: true,
            checksum: None,
            info: Some(_),
            ..
        }
    ));
    let reversed = msg(0x01, 0, |w| {
        ids(w);
        w.tlv(0x000b, |w| {
            w.put_u32(1);
            sctp(w);
        });
        w.tlv(0x000f, |w| w.put_u16(1));
    });
    assert_eq!(
        kind(enrp(&reversed)),
        DecodeErrorKind::UnexpectedParameter(ParamType::PE_CHECKSUM)
    );
}

#[test]
fn samples_cover_every_type_and_decode() {
    let asap_kinds: std::collections::BTreeSet<_> =
        asap_messages().iter().map(|m| m.kind()).collect();
    assert_eq!(asap_kinds.len(), crate::wire::AsapType::ALL.len());
    let enrp_kinds: std::collections::BTreeSet<_> =
        enrp_messages().iter().map(|m| m.kind()).collect();
    assert_eq!(enrp_kinds.len(), crate::wire::EnrpType::ALL.len());
    let mut params = std::collections::BTreeSet::new();
    for m in asap_messages() {
        let buf = encode_asap(&m);
        assert_eq!(asap(&buf).unwrap().message, m);
        collect_params(&buf, &mut params);
    }
    for m in enrp_messages() {
        let buf = encode_enrp(&m);
        assert_eq!(enrp(&buf).unwrap().message, m);
        collect_params(&buf, &mut params);
    }
    for p in ParamType::ALL {
        assert!(params.contains(&p.0), "no sample carries {p}");
    }
}

/// Every 16-bit word preceded by... a crude scan: looks for each known type code followed
/// by a plausible length; good enough to prove coverage of the samples.
fn collect_params(buf: &[u8], out: &mut std::collections::BTreeSet<u16>) {
    for w in buf.windows(4) {
        let t = u16::from_be_bytes([w[0], w[1]]);
        let l = u16::from_be_bytes([w[2], w[3]]);
        if ParamType(t).is_known() && l >= 4 && usize::from(l) <= buf.len() {
            out.insert(t);
        }
    }
}
