//! RFC 5354 §2, §4: message framing, parameter lengths and padding.

use super::craft::*;
use super::{asap, encode_asap, encode_enrp, enrp, hex};
use crate::wire::samples::{asap_messages, enrp_messages};
use crate::wire::{
    AsapMessage, CauseCode, DecodeError, DecodeErrorKind, EnrpMessage, ErrorCause, OperationError,
    ParamType, Span,
};

#[test]
fn rfc5354_s4_truncated_messages_rejected() {
    for len in 0..4 {
        assert_eq!(
            kind(asap(&[0x05, 0, 0, 0x10][..len])),
            DecodeErrorKind::Truncated
        );
        assert_eq!(
            kind(enrp(&[0x01, 0, 0, 0x10][..len])),
            DecodeErrorKind::Truncated
        );
    }
    for m in asap_messages() {
        let buf = encode_asap(&m);
        let declared = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        for cut in 4..declared {
            assert_eq!(
                kind(asap(&buf[..cut])),
                DecodeErrorKind::BadMessageLength,
                "{m:?}"
            );
        }
    }
    for m in enrp_messages() {
        let buf = encode_enrp(&m);
        let declared = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        for cut in 4..declared {
            assert_eq!(
                kind(enrp(&buf[..cut])),
                DecodeErrorKind::BadMessageLength,
                "{m:?}"
            );
        }
    }
}

#[test]
fn rfc5354_s4_message_length_must_match_buffer() {
    let good = hex("05 00 00 10 00 09 00 0c 45 63 68 6f 50 6f 6f 6c");
    let mut long = good.clone();
    long.push(0);
    assert_eq!(kind(asap(&long)), DecodeErrorKind::BadMessageLength);
    let mut below_header = good.clone();
    below_header[3] = 3;
    assert_eq!(kind(asap(&below_header)), DecodeErrorKind::BadMessageLength);
    // Length 13 in a 16-byte buffer: the 3 bytes after it are the final padding.
    let mut padded = hex("0b 00 00 0b 00 0d 00 07 61 62 63 00");
    assert_eq!(
        asap(&padded).unwrap().message,
        AsapMessage::Cookie {
            cookie: b"abc".to_vec()
        }
    );
    padded.extend([0, 0, 0, 0]);
    assert_eq!(kind(asap(&padded)), DecodeErrorKind::BadMessageLength);
}

#[test]
fn rfc5354_s4_unpadded_message_accepted() {
    let cookie = AsapMessage::Cookie {
        cookie: b"abcde".to_vec(),
    };
    let buf = encode_asap(&cookie);
    assert_eq!(buf.len(), 16);
    assert_eq!(&buf[..4], &[0x0b, 0x00, 0x00, 0x0d]);
    assert_eq!(asap(&buf[..13]).unwrap().message, cookie);
}

#[test]
fn rfc5354_s4_unused_flag_bits_ignored_and_sent_as_zero() {
    let buf = msg(0x02, 0xfe, |w| {
        handle(w);
        pe_id(w);
    });
    let m = asap(&buf).unwrap().message;
    assert_eq!(encode_asap(&m)[1], 0);
    let buf = msg(0x03, 0xfe, |w| {
        handle(w);
        pe_id(w);
    });
    assert!(matches!(
        asap(&buf).unwrap().message,
        AsapMessage::RegistrationResponse {
            rejected: false,
            ..
        }
    ));
    let mut ht = encode_enrp(&EnrpMessage::HandleTableResponse {
        ids: Default::default(),
        reject: false,
        more: false,
        entries: Vec::new(),
    });
    ht[1] = 0xfc;
    assert!(matches!(
        enrp(&ht).unwrap().message,
        EnrpMessage::HandleTableResponse {
            reject: false,
            more: false,
            ..
        }
    ));
    ht[1] = 0x03;
    assert!(matches!(
        enrp(&ht).unwrap().message,
        EnrpMessage::HandleTableResponse {
            reject: true,
            more: true,
            ..
        }
    ));
}

// ---- RFC 5354 §2: parameter lengths and padding ----

#[test]
fn rfc5354_s2_param_running_past_message_rejected() {
    let mut buf = hex("05 00 00 10 00 09 00 0c 45 63 68 6f 50 6f 6f 6c");
    buf[7] = 0x0d;
    let e = err(asap(&buf));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::BadParameterLength,
            Some(Span { start: 4, len: 12 })
        ),
        "the span is clipped to the message"
    );
    buf[7] = 0x03;
    assert_eq!(kind(asap(&buf)), DecodeErrorKind::BadParameterLength);
}

#[test]
fn rfc5354_s2_param_running_past_parent_rejected() {
    // The IPv4 address claims 12 bytes but its SCTP transport only leaves it 8, although
    // the message goes on with the policy.
    let buf = msg(0x01, 0, |w| {
        handle(w);
        pe(w, |w| {
            w.tlv(0x0004, |w| {
                w.put_u32(0x2328_0000);
                w.put_bytes(&[0x00, 0x01, 0x00, 0x0c, 192, 0, 2, 10]);
            });
            rr(w);
        });
    });
    let e = err(asap(&buf));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::BadParameterLength,
            Some(Span { start: 40, len: 8 })
        )
    );
}

#[test]
fn rfc5354_s2_missing_final_inner_padding_tolerated() {
    // Business card: the first PE ends with a skippable 5-byte unknown parameter and
    // its length stops right after it; the second PE starts at the next multiple of 4.
    let buf = msg(0x0d, 0, |w| {
        handle(w);
        pe(w, |w| {
            sctp(w);
            rr(w);
            w.tlv(0x8033, |w| w.put_u8(7));
        });
        pe(w, |w| {
            sctp(w);
            rr(w);
        });
    });
    let AsapMessage::BusinessCard { elements, .. } = asap(&buf).unwrap().message else {
        panic!()
    };
    assert_eq!(elements.len(), 2);
    assert_eq!(elements[0], elements[1]);
}

#[test]
fn rfc5354_s2_rsplib_style_outer_length_with_inner_padding_accepted() {
    // RSPLIB counts the last cause's padding in the Operation Error length (9 → 12).
    let rfc = hex("0e 00 00 0d 00 0c 00 09 00 03 00 05 aa 00 00 00");
    let rsplib = hex("0e 00 00 10 00 0c 00 0c 00 03 00 05 aa 00 00 00");
    let expected = AsapMessage::Error {
        error: OperationError::single(CauseCode::INVALID_VALUES, vec![0xaa]),
    };
    assert_eq!(asap(&rfc).unwrap().message, expected);
    assert_eq!(asap(&rsplib).unwrap().message, expected);
    assert_eq!(encode_asap(&expected), rfc);
}

#[test]
fn rfc5354_s3_12_nested_operation_error_odd_last_cause_length() {
    let m = AsapMessage::Error {
        error: OperationError {
            causes: vec![
                ErrorCause {
                    code: CauseCode::INVALID_VALUES,
                    info: vec![1, 2],
                },
                ErrorCause {
                    code: CauseCode::UNSPECIFIED,
                    info: vec![3],
                },
            ],
        },
    };
    let buf = encode_asap(&m);
    // Operation Error = 4 + (6 + 2 pad) + 5 = 17 (last cause padding excluded);
    // message = 4 + 17 = 21, padded to 24 on the wire.
    assert_eq!(
        buf,
        hex("0e 00 00 15 00 0c 00 11 00 03 00 06 01 02 00 00 00 00 00 05 03 00 00 00")
    );
    assert_eq!(asap(&buf).unwrap().message, m);
    assert_eq!(asap(&buf[..21]).unwrap().message, m);
}

#[test]
fn rfc5354_s3_12_operation_error_needs_a_valid_cause() {
    let empty = hex("0e 00 00 08 00 0c 00 04");
    assert_eq!(
        kind(asap(&empty)),
        DecodeErrorKind::InvalidValue(ParamType::OPERATION_ERROR)
    );
    let short_cause = hex("0e 00 00 0c 00 0c 00 08 00 01 00 03");
    let e = err(asap(&short_cause));
    assert_eq!(
        e,
        DecodeError::new(
            DecodeErrorKind::BadParameterLength,
            Some(Span { start: 8, len: 3 })
        )
    );
}
