//! Property tests: for every message type, decode(encode(m)) == m, and the encoding is
//! padded to 4 with a Message Length whose pad4 is the encoded size (RFC 5354 §4).

use std::net::IpAddr;

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::{asap, encode_asap, encode_enrp, enrp};
use crate::wire::{
    AsapMessage, CauseCode, DccpTransport, EnrpIds, EnrpMessage, ErrorCause, IpTransport,
    OperationError, PolicyParam, PolicyType, PoolElement, PoolEntry, RegistrationLife,
    SctpTransport, ServerInformation, ServerTransport, TransportUse, UpdateAction, UserTransport,
};
use crate::{PoolElementId, PoolHandle, RegistrarId};

fn handle() -> impl Strategy<Value = PoolHandle> {
    vec(any::<u8>(), 1..40).prop_map(|b| PoolHandle::new(&b))
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn sctp() -> impl Strategy<Value = SctpTransport> {
    (any::<u16>(), any::<u16>(), vec(addr(), 1..4)).prop_map(|(port, u, addresses)| SctpTransport {
        port,
        transport_use: TransportUse(u),
        addresses,
    })
}

fn ip() -> impl Strategy<Value = IpTransport> {
    (any::<u16>(), any::<u16>(), addr()).prop_map(|(port, reserved, address)| IpTransport {
        port,
        reserved,
        address,
    })
}

fn user_transport() -> impl Strategy<Value = UserTransport> {
    prop_oneof![
        sctp().prop_map(UserTransport::Sctp),
        ip().prop_map(UserTransport::Tcp),
        ip().prop_map(UserTransport::Udp),
        ip().prop_map(UserTransport::UdpLite),
        (ip(), any::<u32>()).prop_map(|(t, service_code)| UserTransport::Dccp(DccpTransport {
            port: t.port,
            reserved: t.reserved,
            service_code,
            address: t.address,
        })),
        vec(any::<u8>(), 0..13).prop_map(UserTransport::Opaque),
    ]
}

fn server_transport() -> impl Strategy<Value = ServerTransport> {
    prop_oneof![
        sctp().prop_map(ServerTransport::Sctp),
        ip().prop_map(ServerTransport::Tcp)
    ]
}

fn policy() -> impl Strategy<Value = PolicyParam> {
    let kind = prop_oneof![
        proptest::sample::select(PolicyType::ALL).prop_map(|k| k.0),
        any::<u32>()
    ];
    (kind, vec(any::<u32>(), 0..=4))
        .prop_map(|(k, v)| PolicyParam::new(PolicyType(k), &v).expect("at most 4 values"))
}

fn element() -> impl Strategy<Value = PoolElement> {
    (any::<[u32; 3]>(), user_transport(), policy(), of(sctp())).prop_map(
        |([id, home, life], user_transport, policy, asap_transport)| PoolElement {
            id: PoolElementId(id),
            home: RegistrarId(home),
            registration_life: RegistrationLife(life),
            user_transport,
            policy,
            asap_transport,
        },
    )
}

fn elements() -> impl Strategy<Value = Vec<PoolElement>> {
    vec(element(), 1..4)
}

fn server_info() -> impl Strategy<Value = ServerInformation> {
    (any::<u32>(), server_transport()).prop_map(|(id, transport)| ServerInformation {
        server_id: RegistrarId(id),
        transport,
    })
}

fn op_error() -> impl Strategy<Value = OperationError> {
    vec((any::<u16>(), vec(any::<u8>(), 0..13)), 1..4).prop_map(|c| OperationError {
        causes: c
            .into_iter()
            .map(|(code, info)| ErrorCause {
                code: CauseCode(code),
                info,
            })
            .collect(),
    })
}

fn pe_id() -> impl Strategy<Value = PoolElementId> {
    any::<u32>().prop_map(PoolElementId)
}

fn rid() -> impl Strategy<Value = RegistrarId> {
    any::<u32>().prop_map(RegistrarId)
}

fn ids() -> impl Strategy<Value = EnrpIds> {
    (rid(), rid()).prop_map(|(sender, receiver)| EnrpIds { sender, receiver })
}

fn cookie() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

/// The declared Message Length of an encoded message.
fn declared(buf: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([buf[2], buf[3]]))
}

fn check_framing(buf: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(buf.len() % 4, 0);
    prop_assert_eq!(buf.len(), (declared(buf) + 3) & !3);
    Ok(())
}

fn check_asap(m: &AsapMessage) -> Result<(), TestCaseError> {
    let buf = encode_asap(m);
    check_framing(&buf)?;
    let d = asap(&buf).map_err(|e| TestCaseError::fail(format!("{e:?} for {buf:02x?}")))?;
    prop_assert_eq!(&d.message, m);
    prop_assert!(d.unrecognized.is_empty());
    // The final padding is optional on receipt.
    let d = asap(&buf[..declared(&buf)]).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert_eq!(&d.message, m);
    Ok(())
}

fn check_enrp(m: &EnrpMessage) -> Result<(), TestCaseError> {
    let buf = encode_enrp(m);
    check_framing(&buf)?;
    let d = enrp(&buf).map_err(|e| TestCaseError::fail(format!("{e:?} for {buf:02x?}")))?;
    prop_assert_eq!(&d.message, m);
    prop_assert!(d.unrecognized.is_empty());
    let d = enrp(&buf[..declared(&buf)]).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert_eq!(&d.message, m);
    Ok(())
}

proptest! {
    // ---- RFC 5352 §2.2: ASAP ----

    #[test]
    fn rfc5352_s2_2_1_registration_roundtrip(handle in handle(), element in element()) {
        check_asap(&AsapMessage::Registration { handle, element })?;
    }

    #[test]
    fn rfc5352_s2_2_2_deregistration_roundtrip(handle in handle(), id in pe_id()) {
        check_asap(&AsapMessage::Deregistration { handle, id })?;
    }

    #[test]
    fn rfc5352_s2_2_3_registration_response_roundtrip(
        rejected in any::<bool>(), handle in handle(), id in pe_id(), error in of(op_error()),
    ) {
        check_asap(&AsapMessage::RegistrationResponse { rejected, handle, id, error })?;
    }

    #[test]
    fn rfc5352_s2_2_4_deregistration_response_roundtrip(
        handle in handle(), id in pe_id(), error in of(op_error()),
    ) {
        check_asap(&AsapMessage::DeregistrationResponse { handle, id, error })?;
    }

    #[test]
    fn rfc5352_s2_2_5_handle_resolution_roundtrip(
        subscribe in any::<bool>(), handle in handle(), items in of(any::<u32>()),
    ) {
        check_asap(&AsapMessage::HandleResolution { subscribe, handle, items })?;
    }

    #[test]
    fn rfc5352_s2_2_6_handle_resolution_response_positive_roundtrip(
        accepted in any::<bool>(), handle in handle(), policy in of(policy()),
        elements in elements(),
    ) {
        check_asap(&AsapMessage::HandleResolutionResponse {
            accepted, handle, policy, elements, error: None,
        })?;
    }

    #[test]
    fn rfc5352_s2_2_6_handle_resolution_response_negative_roundtrip(
        accepted in any::<bool>(), handle in handle(), error in op_error(),
    ) {
        check_asap(&AsapMessage::HandleResolutionResponse {
            accepted, handle, policy: None, elements: Vec::new(), error: Some(error),
        })?;
    }

    #[test]
    fn rfc5352_s2_2_7_endpoint_keep_alive_roundtrip(
        home in any::<bool>(), server_id in rid(), handle in handle(), id in of(pe_id()),
    ) {
        check_asap(&AsapMessage::EndpointKeepAlive { home, server_id, handle, id })?;
    }

    #[test]
    fn rfc5352_s2_2_8_endpoint_keep_alive_ack_roundtrip(handle in handle(), id in pe_id()) {
        check_asap(&AsapMessage::EndpointKeepAliveAck { handle, id })?;
    }

    #[test]
    fn rfc5352_s2_2_9_endpoint_unreachable_roundtrip(handle in handle(), id in pe_id()) {
        check_asap(&AsapMessage::EndpointUnreachable { handle, id })?;
    }

    #[test]
    fn rfc5352_s2_2_10_server_announce_roundtrip(
        server_id in rid(), transports in vec(server_transport(), 0..4), info in of(server_info()),
    ) {
        check_asap(&AsapMessage::ServerAnnounce { server_id, transports, info })?;
    }

    #[test]
    fn rfc5352_s2_2_11_cookie_roundtrip(cookie in cookie()) {
        check_asap(&AsapMessage::Cookie { cookie })?;
    }

    #[test]
    fn rfc5352_s2_2_12_cookie_echo_roundtrip(cookie in cookie()) {
        check_asap(&AsapMessage::CookieEcho { cookie })?;
    }

    #[test]
    fn rfc5352_s2_2_13_business_card_roundtrip(
        handle in handle(), policy in of(policy()), elements in elements(),
    ) {
        check_asap(&AsapMessage::BusinessCard { handle, policy, elements })?;
    }

    #[test]
    fn rfc5352_s2_2_14_error_roundtrip(error in op_error()) {
        check_asap(&AsapMessage::Error { error })?;
    }

    // ---- RFC 5353 §2: ENRP ----

    #[test]
    fn rfc5353_s2_1_presence_roundtrip(
        ids in ids(), reply_required in any::<bool>(), checksum in of(any::<u16>()),
        info in of(server_info()),
    ) {
        check_enrp(&EnrpMessage::Presence { ids, reply_required, checksum, info })?;
    }

    #[test]
    fn rfc5353_s2_2_handle_table_request_roundtrip(ids in ids(), owned_only in any::<bool>()) {
        check_enrp(&EnrpMessage::HandleTableRequest { ids, owned_only })?;
    }

    #[test]
    fn rfc5353_s2_3_handle_table_response_roundtrip(
        ids in ids(), reject in any::<bool>(), more in any::<bool>(),
        entries in vec((handle(), elements()), 0..3),
    ) {
        let entries =
            entries.into_iter().map(|(handle, elements)| PoolEntry { handle, elements }).collect();
        check_enrp(&EnrpMessage::HandleTableResponse { ids, reject, more, entries })?;
    }

    #[test]
    fn rfc5353_s2_4_handle_update_roundtrip(
        ids in ids(), takeover_suggested in any::<bool>(), action in any::<u16>(),
        handle in handle(), element in element(),
    ) {
        check_enrp(&EnrpMessage::HandleUpdate {
            ids, takeover_suggested, action: UpdateAction(action), handle, element,
        })?;
    }

    #[test]
    fn rfc5353_s2_5_list_request_roundtrip(ids in ids()) {
        check_enrp(&EnrpMessage::ListRequest { ids })?;
    }

    #[test]
    fn rfc5353_s2_6_list_response_roundtrip(
        ids in ids(), reject in any::<bool>(), servers in vec(server_info(), 0..4),
    ) {
        check_enrp(&EnrpMessage::ListResponse { ids, reject, servers })?;
    }

    #[test]
    fn rfc5353_s2_7_init_takeover_roundtrip(ids in ids(), target in rid()) {
        check_enrp(&EnrpMessage::InitTakeover { ids, target })?;
    }

    #[test]
    fn rfc5353_s2_8_init_takeover_ack_roundtrip(ids in ids(), target in rid()) {
        check_enrp(&EnrpMessage::InitTakeoverAck { ids, target })?;
    }

    #[test]
    fn rfc5353_s2_9_takeover_server_roundtrip(ids in ids(), target in rid()) {
        check_enrp(&EnrpMessage::TakeoverServer { ids, target })?;
    }

    #[test]
    fn rfc5353_s2_10_error_roundtrip(ids in ids(), error in op_error()) {
        check_enrp(&EnrpMessage::Error { ids, error })?;
    }
}
