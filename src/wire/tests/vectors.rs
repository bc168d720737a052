//! The worked examples of the reference §9, byte for byte in both directions.

use std::net::{IpAddr, Ipv4Addr};

use super::{asap, encode_asap, encode_enrp, enrp, hex};
use crate::wire::{
    AsapMessage, CauseCode, EnrpIds, EnrpMessage, OperationError, PolicyParam, PolicyType,
    PoolElement, RegistrationLife, SctpTransport, ServerInformation, TransportUse, UserTransport,
};
use crate::{PoolElementId, PoolHandle, RegistrarId};

const PE_ID: PoolElementId = PoolElementId(0x1a2b_3c4d);
const PR_ID: RegistrarId = RegistrarId(0x0a0b_0c0d);

fn echo() -> PoolHandle {
    PoolHandle::from("EchoPool")
}

fn sctp(port: u16, a: [u8; 4]) -> SctpTransport {
    SctpTransport {
        port,
        transport_use: TransportUse::DATA_ONLY,
        addresses: vec![IpAddr::V4(Ipv4Addr::from(a))],
    }
}

fn echo_pe(home: RegistrarId) -> PoolElement {
    PoolElement {
        id: PE_ID,
        home,
        registration_life: RegistrationLife(90_000),
        user_transport: UserTransport::Sctp(sctp(9000, [192, 0, 2, 10])),
        policy: PolicyParam::round_robin(),
        asap_transport: None,
    }
}

/// Decodes `wire` as ASAP, compares with `expected`, and re-encodes to the same bytes.
fn asap_vector(wire: &[u8], expected: AsapMessage) {
    let d = asap(wire).expect("vector decodes");
    assert!(d.unrecognized.is_empty());
    assert_eq!(d.message, expected);
    assert_eq!(encode_asap(&expected), wire);
}

#[test]
fn ref_s9_1_registration() {
    let wire = hex("
        0000  01 00 00 38 00 09 00 0c 45 63 68 6f 50 6f 6f 6c
        0010  00 0a 00 28 1a 2b 3c 4d 00 00 00 00 00 01 5f 90
        0020  00 04 00 10 23 28 00 00 00 01 00 08 c0 00 02 0a
        0030  00 08 00 08 00 00 00 01");
    assert_eq!(wire.len(), 56);
    asap_vector(
        &wire,
        AsapMessage::Registration {
            handle: echo(),
            element: echo_pe(RegistrarId::NONE),
        },
    );
}

#[test]
fn ref_s9_2_registration_response_accepted() {
    let wire = hex("
        0000  03 00 00 18 00 09 00 0c 45 63 68 6f 50 6f 6f 6c
        0010  00 0e 00 08 1a 2b 3c 4d");
    asap_vector(
        &wire,
        AsapMessage::RegistrationResponse {
            rejected: false,
            handle: echo(),
            id: PE_ID,
            error: None,
        },
    );
}

#[test]
fn ref_s9_2_registration_response_rejected() {
    let wire = hex("
        0000  03 01 00 2c 00 09 00 0c 45 63 68 6f 50 6f 6f 6c
        0010  00 0e 00 08 1a 2b 3c 4d 00 0c 00 14 00 05 00 10
        0020  00 08 00 0c 40 00 00 01 00 00 00 00");
    let lu = PolicyParam::new(PolicyType::LEAST_USED, &[0]).unwrap();
    asap_vector(
        &wire,
        AsapMessage::RegistrationResponse {
            rejected: true,
            handle: echo(),
            id: PE_ID,
            error: Some(OperationError::single(
                CauseCode::INCONSISTENT_POOLING_POLICY,
                lu.to_tlv(),
            )),
        },
    );
}

#[test]
fn ref_s9_2_rsplib_rejection_with_empty_cause() {
    // RSPLIB sends cause 0x0005 without info: Operation Error length 8, message 32.
    let m = AsapMessage::RegistrationResponse {
        rejected: true,
        handle: echo(),
        id: PE_ID,
        error: Some(OperationError::single(
            CauseCode::INCONSISTENT_POOLING_POLICY,
            Vec::new(),
        )),
    };
    let wire = encode_asap(&m);
    assert_eq!(wire.len(), 32);
    assert_eq!(&wire[..4], &[0x03, 0x01, 0x00, 0x20]);
    assert_eq!(
        &wire[24..],
        &[0x00, 0x0c, 0x00, 0x08, 0x00, 0x05, 0x00, 0x04]
    );
    assert_eq!(asap(&wire).unwrap().message, m);
}

#[test]
fn ref_s9_3_handle_resolution() {
    let wire = hex("0000  05 00 00 10 00 09 00 0c 45 63 68 6f 50 6f 6f 6c");
    asap_vector(
        &wire,
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: echo(),
            items: None,
        },
    );
}

#[test]
fn ref_s9_3_handle_resolution_with_items_option() {
    let wire = hex("
        0000  05 00 00 18 00 09 00 0c 45 63 68 6f 50 6f 6f 6c
        0010  80 3f 00 08 00 00 00 03");
    asap_vector(
        &wire,
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: echo(),
            items: Some(3),
        },
    );
}

#[test]
fn ref_s9_4_handle_resolution_response_positive() {
    let wire = hex("
        0000  06 00 00 40 00 09 00 0c 45 63 68 6f 50 6f 6f 6c
        0010  00 08 00 08 00 00 00 01 00 0a 00 28 1a 2b 3c 4d
        0020  0a 0b 0c 0d 00 01 5f 90 00 04 00 10 23 28 00 00
        0030  00 01 00 08 c0 00 02 0a 00 08 00 08 00 00 00 01");
    asap_vector(
        &wire,
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: echo(),
            policy: Some(PolicyParam::round_robin()),
            elements: vec![echo_pe(PR_ID)],
            error: None,
        },
    );
}

#[test]
fn ref_s9_4_handle_resolution_response_negative() {
    let wire = hex("
        0000  06 00 00 18 00 09 00 0c 45 63 68 6f 50 6f 6f 6c
        0010  00 0c 00 08 00 09 00 04");
    asap_vector(
        &wire,
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: echo(),
            policy: None,
            elements: Vec::new(),
            error: Some(OperationError::single(
                CauseCode::UNKNOWN_POOL_HANDLE,
                Vec::new(),
            )),
        },
    );
}

#[test]
fn ref_s9_4_keep_alive_with_pe_identifier() {
    let wire = hex("
        0000  07 00 00 1c 0a 0b 0c 0d 00 09 00 0c 45 63 68 6f
        0010  50 6f 6f 6c 00 0e 00 08 1a 2b 3c 4d");
    asap_vector(
        &wire,
        AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: PR_ID,
            handle: echo(),
            id: Some(PE_ID),
        },
    );
    // Without the RSPLIB extension the message is 20 bytes long.
    let short = AsapMessage::EndpointKeepAlive {
        home: true,
        server_id: PR_ID,
        handle: echo(),
        id: None,
    };
    let wire = encode_asap(&short);
    assert_eq!(&wire[..4], &[0x07, 0x01, 0x00, 0x14]);
    assert_eq!(asap(&wire).unwrap().message, short);
}

#[test]
fn ref_s9_5_presence_with_checksum() {
    let wire = hex("
        0000  01 00 00 2c 0a 0b 0c 0d 0f 0e 0d 0c 00 0f 00 06
        0010  3b d9 00 00 00 0b 00 18 0a 0b 0c 0d 00 04 00 10
        0020  26 ad 00 00 00 01 00 08 c0 00 02 01");
    let expected = EnrpMessage::Presence {
        ids: EnrpIds {
            sender: PR_ID,
            receiver: RegistrarId(0x0f0e_0d0c),
        },
        reply_required: false,
        checksum: Some(0x3bd9),
        info: Some(ServerInformation {
            server_id: PR_ID,
            transport: crate::wire::ServerTransport::Sctp(sctp(9901, [192, 0, 2, 1])),
        }),
    };
    let d = enrp(&wire).expect("vector decodes");
    assert!(d.unrecognized.is_empty());
    assert_eq!(d.message, expected);
    assert_eq!(encode_enrp(&expected), wire);
}
