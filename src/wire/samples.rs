//! Representative valid messages: every message type, flag, parameter type, user
//! transport and named policy at least once. Used as hex-dissector conformance inputs
//! and as fuzz seeds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codes::{CauseCode, PolicyType, TransportUse, UpdateAction};
use super::enrp::{EnrpIds, PoolEntry};
use super::param::{
    DccpTransport, ErrorCause, IpTransport, OperationError, PolicyParam, PoolElement,
    RegistrationLife, SctpTransport, ServerInformation, ServerTransport, UserTransport,
};
use super::{AsapMessage, EnrpMessage};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};

const V4_PE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const V4_PE2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const V4_PR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const V6_PE: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
const V6_PR: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
const PR: RegistrarId = RegistrarId(0x0a0b_0c0d);
const PEER: RegistrarId = RegistrarId(0x0f0e_0d0c);

/// Number of policy-specific u32 fields of each named policy (RFC 5356 §7; reference §5.4).
fn value_count(kind: PolicyType) -> usize {
    match kind {
        PolicyType::ROUND_ROBIN | PolicyType::RANDOM => 0,
        PolicyType::WEIGHTED_ROUND_ROBIN
        | PolicyType::WEIGHTED_RANDOM
        | PolicyType::PRIORITY
        | PolicyType::LEAST_USED
        | PolicyType::RANDOMIZED_LEAST_USED => 1,
        PolicyType::WEIGHTED_RANDOM_DPF | PolicyType::LEAST_USED_DPF => 3,
        PolicyType::LEAST_USED_DEGRADATION_DPF => 4,
        _ => 2,
    }
}

/// Every named policy type with plausible values.
fn policies() -> Vec<PolicyParam> {
    let values = [0x4000_0000, 0x0100_0000, 0x0000_0064, 0x0000_0032];
    PolicyType::ALL
        .iter()
        .map(|&k| {
            PolicyParam::new(k, &values[..value_count(k)]).unwrap_or_else(PolicyParam::round_robin)
        })
        .collect()
}

fn echo() -> PoolHandle {
    PoolHandle::from("EchoPool")
}

fn sctp(port: u16, transport_use: TransportUse, addresses: &[IpAddr]) -> SctpTransport {
    SctpTransport {
        port,
        transport_use,
        addresses: addresses.to_vec(),
    }
}

fn ip(port: u16, address: IpAddr) -> IpTransport {
    IpTransport {
        port,
        reserved: 0,
        address,
    }
}

fn element(id: u32, user_transport: UserTransport, policy: PolicyParam) -> PoolElement {
    PoolElement {
        id: PoolElementId(id),
        home: RegistrarId::NONE,
        registration_life: RegistrationLife(90_000),
        user_transport,
        policy,
        asap_transport: None,
    }
}

/// A PE as the home PR announces it over ENRP: home ID and ASAP transport filled in.
fn owned(mut pe: PoolElement) -> PoolElement {
    pe.home = PR;
    pe.asap_transport = Some(sctp(40_000, TransportUse::DATA_ONLY, &[V4_PE, V6_PE]));
    pe
}

/// One PE per user transport kind, IPv4 and IPv6, each with a different policy.
fn elements() -> Vec<PoolElement> {
    let p = policies();
    let pick = |i: usize| {
        p.get(i % p.len())
            .copied()
            .unwrap_or_else(PolicyParam::round_robin)
    };
    vec![
        element(
            0x1a2b_3c4d,
            UserTransport::Sctp(sctp(9000, TransportUse::DATA_ONLY, &[V4_PE])),
            pick(0),
        ),
        element(
            0x1a2b_3c4e,
            UserTransport::Sctp(sctp(
                9001,
                TransportUse::DATA_PLUS_CONTROL,
                &[V4_PE, V4_PE2, V6_PE],
            )),
            pick(1),
        ),
        element(0x2000_0001, UserTransport::Tcp(ip(8080, V4_PE)), pick(2)),
        element(
            0x2000_0002,
            UserTransport::Tcp(IpTransport {
                reserved: 1,
                ..ip(8081, V6_PE)
            }),
            pick(3),
        ),
        element(0x3000_0001, UserTransport::Udp(ip(5000, V4_PE2)), pick(4)),
        element(
            0x3000_0002,
            UserTransport::UdpLite(ip(5001, V6_PE)),
            pick(5),
        ),
        element(
            0x4000_0001,
            UserTransport::Dccp(DccpTransport {
                port: 6000,
                reserved: 0,
                service_code: 0x4543_484f,
                address: V4_PE,
            }),
            pick(6),
        ),
        element(
            0x5000_0001,
            UserTransport::Opaque(b"opaque-addr".to_vec()),
            pick(7),
        ),
    ]
}

fn causes() -> OperationError {
    OperationError {
        causes: vec![
            ErrorCause {
                code: CauseCode::INVALID_VALUES,
                info: vec![0x00, 0x11, 0x00, 0x05, 0xee],
            },
            ErrorCause {
                code: CauseCode::INCONSISTENT_POOLING_POLICY,
                info: policies()[5].to_tlv(),
            },
            ErrorCause {
                code: CauseCode::LACK_OF_RESOURCES,
                info: Vec::new(),
            },
            ErrorCause {
                code: CauseCode::RSPLIB_INVALID_VALUE,
                info: vec![1, 2, 3],
            },
        ],
    }
}

fn server_info(id: RegistrarId, addresses: &[IpAddr]) -> ServerInformation {
    ServerInformation {
        server_id: id,
        transport: ServerTransport::Sctp(sctp(9901, TransportUse::DATA_ONLY, addresses)),
    }
}

/// ASAP samples: every message type and flag.
pub fn asap_messages() -> Vec<AsapMessage> {
    let els = elements();
    let pol = policies();
    let mut out: Vec<AsapMessage> = els
        .iter()
        .map(|e| AsapMessage::Registration {
            handle: echo(),
            element: e.clone(),
        })
        .collect();
    let id = PoolElementId(0x1a2b_3c4d);
    let odd = PoolHandle::from("odd");
    out.extend([
        AsapMessage::Deregistration { handle: echo(), id },
        AsapMessage::RegistrationResponse {
            rejected: false,
            handle: echo(),
            id,
            error: None,
        },
        AsapMessage::RegistrationResponse {
            rejected: true,
            handle: echo(),
            id,
            error: Some(OperationError::single(
                CauseCode::INCONSISTENT_POOLING_POLICY,
                pol[5].to_tlv(),
            )),
        },
        AsapMessage::RegistrationResponse {
            rejected: false,
            handle: odd.clone(),
            id,
            error: Some(OperationError::single(CauseCode::UNSPECIFIED, Vec::new())),
        },
        AsapMessage::DeregistrationResponse {
            handle: echo(),
            id,
            error: None,
        },
        AsapMessage::DeregistrationResponse {
            handle: echo(),
            id,
            error: Some(OperationError::single(
                CauseCode::REJECTED_SECURITY,
                Vec::new(),
            )),
        },
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: echo(),
            items: None,
        },
        AsapMessage::HandleResolution {
            subscribe: true,
            handle: echo(),
            items: Some(3),
        },
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: odd.clone(),
            items: Some(u32::MAX),
        },
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: echo(),
            policy: Some(PolicyParam::round_robin()),
            elements: els[..1].to_vec(),
            error: None,
        },
        AsapMessage::HandleResolutionResponse {
            accepted: true,
            handle: echo(),
            policy: Some(pol[6]),
            elements: els.clone(),
            error: None,
        },
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: echo(),
            policy: None,
            elements: els[2..4].to_vec(),
            error: None,
        },
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
        AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: PR,
            handle: echo(),
            id: Some(id),
        },
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: PEER,
            handle: odd,
            id: None,
        },
        AsapMessage::EndpointKeepAliveAck { handle: echo(), id },
        AsapMessage::EndpointUnreachable { handle: echo(), id },
        AsapMessage::ServerAnnounce {
            server_id: PR,
            transports: Vec::new(),
            info: None,
        },
        AsapMessage::ServerAnnounce {
            server_id: PR,
            transports: vec![
                ServerTransport::Sctp(sctp(3863, TransportUse::DATA_ONLY, &[V4_PR, V6_PR])),
                ServerTransport::Tcp(ip(3863, V4_PR)),
            ],
            info: Some(server_info(PR, &[V4_PR])),
        },
        AsapMessage::Cookie {
            cookie: b"signed-state-17".to_vec(),
        },
        AsapMessage::CookieEcho {
            cookie: b"signed-state-17".to_vec(),
        },
        AsapMessage::BusinessCard {
            handle: echo(),
            policy: None,
            elements: els[..2].to_vec(),
        },
        AsapMessage::BusinessCard {
            handle: echo(),
            policy: Some(PolicyParam::round_robin()),
            elements: els[..1].to_vec(),
        },
        AsapMessage::Error { error: causes() },
    ]);
    // Every named policy at least once, inside PEs of a resolution response.
    out.push(AsapMessage::HandleResolutionResponse {
        accepted: false,
        handle: echo(),
        policy: Some(pol[0]),
        elements: pol
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let mut e = els[0].clone();
                e.id = PoolElementId(0x6000_0000 + i as u32);
                e.policy = p;
                e
            })
            .collect(),
        error: None,
    });
    out
}

/// ENRP samples: every message type and flag.
pub fn enrp_messages() -> Vec<EnrpMessage> {
    let ids = EnrpIds {
        sender: PR,
        receiver: PEER,
    };
    let cast = EnrpIds {
        sender: PR,
        receiver: RegistrarId::NONE,
    };
    let els: Vec<PoolElement> = elements().into_iter().map(owned).collect();
    vec![
        EnrpMessage::Presence {
            ids,
            reply_required: false,
            checksum: Some(0x3bd9),
            info: Some(server_info(PR, &[V4_PR])),
        },
        EnrpMessage::Presence {
            ids: cast,
            reply_required: true,
            checksum: Some(0xffff),
            info: Some(server_info(PR, &[V4_PR, V6_PR])),
        },
        EnrpMessage::Presence {
            ids,
            reply_required: false,
            checksum: Some(0x1234),
            info: None,
        },
        EnrpMessage::Presence {
            ids,
            reply_required: false,
            checksum: None,
            info: None,
        },
        EnrpMessage::HandleTableRequest {
            ids,
            owned_only: false,
        },
        EnrpMessage::HandleTableRequest {
            ids,
            owned_only: true,
        },
        EnrpMessage::HandleTableResponse {
            ids,
            reject: false,
            more: true,
            entries: vec![
                PoolEntry {
                    handle: PoolHandle::from("EchoPool"),
                    elements: els[..2].to_vec(),
                },
                PoolEntry {
                    handle: PoolHandle::from("odd"),
                    elements: els[2..].to_vec(),
                },
            ],
        },
        EnrpMessage::HandleTableResponse {
            ids,
            reject: false,
            more: false,
            entries: vec![PoolEntry {
                handle: echo(),
                elements: els[..1].to_vec(),
            }],
        },
        EnrpMessage::HandleTableResponse {
            ids,
            reject: true,
            more: false,
            entries: Vec::new(),
        },
        EnrpMessage::HandleUpdate {
            ids: cast,
            takeover_suggested: false,
            action: UpdateAction::ADD_PE,
            handle: echo(),
            element: els[1].clone(),
        },
        EnrpMessage::HandleUpdate {
            ids,
            takeover_suggested: true,
            action: UpdateAction::DEL_PE,
            handle: echo(),
            element: els[6].clone(),
        },
        EnrpMessage::ListRequest { ids },
        EnrpMessage::ListResponse {
            ids,
            reject: false,
            servers: vec![
                server_info(PR, &[V4_PR]),
                server_info(PEER, &[V6_PR, V4_PR]),
            ],
        },
        EnrpMessage::ListResponse {
            ids,
            reject: true,
            servers: Vec::new(),
        },
        EnrpMessage::InitTakeover {
            ids: cast,
            target: RegistrarId(0x0bad_0bad),
        },
        EnrpMessage::InitTakeoverAck {
            ids,
            target: RegistrarId(0x0bad_0bad),
        },
        EnrpMessage::TakeoverServer {
            ids: cast,
            target: RegistrarId(0x0bad_0bad),
        },
        EnrpMessage::Error {
            ids,
            error: causes(),
        },
    ]
}
