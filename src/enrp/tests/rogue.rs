//! A peer that sends what it should not: changes to PEs whose home it is not, our own
//! PEs, another peer's identity, and garbage. Refused, counted, answered with the RFC
//! cause where one applies; never a panic, never a lost PE.

use std::net::{IpAddr, Ipv4Addr};

use super::net::Scope;
use super::{secs, three};
use crate::enrp::Refusal;
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{
    CauseCode, EnrpIds, EnrpMessage, EnrpType, PoolElement, SctpTransport, ServerInformation,
    ServerTransport, TransportUse, UpdateAction,
};

const ROGUE: RegistrarId = RegistrarId(0x99);
const ROGUE_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));

fn encode(m: &EnrpMessage) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b);
    b
}

fn ids() -> EnrpIds {
    EnrpIds {
        sender: ROGUE,
        receiver: RegistrarId(0x10),
    }
}

fn presence() -> Vec<u8> {
    encode(&EnrpMessage::Presence {
        ids: ids(),
        reply_required: false,
        checksum: Some(0xffff),
        info: Some(ServerInformation {
            server_id: ROGUE,
            transport: ServerTransport::Sctp(SctpTransport {
                port: 9901,
                transport_use: TransportUse::DATA_ONLY,
                addresses: vec![ROGUE_ADDR],
            }),
        }),
    })
}

/// PE "odd" 101 as node 1 (0x20) registered it, with another home written in.
fn pe_101(s: &Scope, home: RegistrarId) -> PoolElement {
    let mut e = s.nodes[1].shards[0]
        .handlespace()
        .element(b"odd", PoolElementId(101))
        .expect("registered")
        .param()
        .clone();
    e.home = home;
    e
}

fn update(action: UpdateAction, element: PoolElement) -> Vec<u8> {
    encode(&EnrpMessage::HandleUpdate {
        ids: ids(),
        takeover_suggested: false,
        action,
        handle: PoolHandle::from("odd"),
        element,
    })
}

fn refused(s: &Scope, why: Refusal) -> u64 {
    s.nodes[0]
        .shards
        .iter()
        .map(|r| r.metrics().enrp.refused(why))
        .sum()
}

#[test]
fn rfc5353_s3_3_a_peer_changes_only_pes_whose_home_it_is() {
    let mut s = three(20);
    s.run(secs(1));
    let rogue = s.probe_connect(0, ROGUE_ADDR);
    s.probe_send(rogue, presence());
    s.run(secs(1));

    // ADD_PE for 0x20's PE, naming 0x20 as home: not the sender's to give.
    let e = pe_101(&s, RegistrarId(0x20));
    s.probe_send(rogue, update(UpdateAction::ADD_PE, e.clone()));
    // DEL_PE of 0x20's PE.
    s.probe_send(rogue, update(UpdateAction::DEL_PE, e));
    // ADD_PE handing node 0 a PE as its own.
    let ours = pe_101(&s, RegistrarId(0x10));
    s.probe_send(rogue, update(UpdateAction::ADD_PE, ours));
    s.run(secs(1));

    assert_eq!(
        refused(&s, Refusal::NotItsHome),
        2,
        "the ADD_PE and the DEL_PE"
    );
    assert_eq!(refused(&s, Refusal::Ours), 1);
    for n in 0..3 {
        assert_eq!(s.view(n, 0)[&("odd".into(), 101)], RegistrarId(0x20));
    }
    let logged = s.nodes[0]
        .events
        .iter()
        .filter(|e| format!("{e:?}").contains("Refused"))
        .count();
    assert!(logged >= 3, "each refusal is logged");
}

#[test]
fn one_connection_speaks_for_one_peer() {
    let mut s = three(21);
    s.run(secs(1));
    let rogue = s.probe_connect(0, ROGUE_ADDR);
    s.probe_send(rogue, presence());
    // Now it claims to be 0x20 and deletes 0x20's PE.
    let e = pe_101(&s, RegistrarId(0x20));
    let mut forged = update(UpdateAction::DEL_PE, e);
    forged[4..8].copy_from_slice(&0x20u32.to_be_bytes());
    s.probe_send(rogue, forged);
    s.run(secs(1));
    assert_eq!(refused(&s, Refusal::WrongSender), 1);
    assert_eq!(s.view(0, 1)[&("odd".into(), 101)], RegistrarId(0x20));
}

#[test]
fn rfc5354_malformed_enrp_gets_an_error_cause_and_harms_nobody() {
    let mut s = three(22);
    s.run(secs(1));
    let rogue = s.probe_connect(0, ROGUE_ADDR);
    s.probe_send(rogue, presence());
    s.run(secs(1));
    s.probe_inbox.clear();
    // A HANDLE_UPDATE whose PE parameter runs past the message.
    let mut bad = update(UpdateAction::ADD_PE, pe_101(&s, ROGUE));
    let len = bad.len();
    bad[26..28].copy_from_slice(&(len as u16 + 40).to_be_bytes());
    s.probe_send(rogue, bad);
    // An unknown message type whose high bits ask for a report (01xxxxxx).
    let mut unknown = presence();
    unknown[0] = 0x4f;
    s.probe_send(rogue, unknown);
    s.run(secs(1));
    let errors: Vec<Vec<CauseCode>> = s.probe_inbox[&rogue]
        .iter()
        .filter_map(|b| match EnrpMessage::decode(b).map(|d| d.message) {
            Ok(EnrpMessage::Error { error, .. }) => {
                Some(error.causes.iter().map(|c| c.code).collect())
            }
            _ => None,
        })
        .collect();
    assert!(
        errors.contains(&vec![CauseCode::INVALID_VALUES]),
        "{errors:?}"
    );
    assert!(
        errors.contains(&vec![CauseCode::UNRECOGNIZED_MESSAGE]),
        "{errors:?}"
    );
    let malformed: u64 = s.nodes[0]
        .shards
        .iter()
        .map(|r| r.metrics().enrp.malformed)
        .sum();
    assert_eq!(malformed, 2);
    s.check_converged().unwrap();
}

#[test]
fn fuzzed_enrp_never_panics_and_never_loses_a_pe() {
    let mut s = three(23);
    s.run(secs(1));
    let rogue = s.probe_connect(0, ROGUE_ADDR);
    s.probe_send(rogue, presence());
    let samples: Vec<Vec<u8>> = crate::wire::samples::enrp_messages()
        .iter()
        .map(encode)
        .collect();
    let seeds = crate::wire::fuzz::mutation::seeds();
    let mut rng = crate::rng::Rng::new(99);
    for round in 0..3000u32 {
        let mut b = samples[round as usize % samples.len()].clone();
        // Keep the sender (the rogue's own) so the link stays its; mutate the rest.
        if b.len() >= 8 && b[0] != EnrpType::ERROR.0 {
            b[4..8].copy_from_slice(&ROGUE.0.to_be_bytes());
        }
        crate::wire::fuzz::mutation::mutate(&mut rng, &seeds, &mut b);
        s.probe_send(rogue, b);
        if round % 100 == 0 {
            s.run(secs(1));
        }
    }
    // The rogue goes silent; whatever it registered is taken over (its PEs do not
    // exist, so the adoption fails) or expires. Everyone else's PEs are all there.
    s.run(secs(120));
    s.check_converged().unwrap();
}
