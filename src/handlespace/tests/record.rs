//! The shared record: the bytes it keeps are the codec's own encodings, it decodes back
//! to what was registered, and a new home changes exactly the home.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::*;
use crate::wire::{DccpTransport, IpTransport, RegistrationLife, SctpTransport, Writer};

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn sctp_transport() -> impl Strategy<Value = SctpTransport> {
    (1..=u16::MAX, any::<u16>(), vec(addr(), 1..4)).prop_map(|(port, u, addresses)| SctpTransport {
        port,
        transport_use: TransportUse(u),
        addresses,
    })
}

fn ip() -> impl Strategy<Value = IpTransport> {
    (1..=u16::MAX, any::<u16>(), addr()).prop_map(|(port, reserved, address)| IpTransport {
        port,
        reserved,
        address,
    })
}

fn user_transport() -> impl Strategy<Value = UserTransport> {
    prop_oneof![
        sctp_transport().prop_map(UserTransport::Sctp),
        ip().prop_map(UserTransport::Tcp),
        ip().prop_map(UserTransport::Udp),
        (ip(), any::<u32>()).prop_map(|(t, service_code)| UserTransport::Dccp(DccpTransport {
            port: t.port,
            reserved: t.reserved,
            service_code,
            address: t.address,
        })),
        vec(any::<u8>(), 0..13).prop_map(UserTransport::Opaque),
    ]
}

/// Every supported policy type with the number of values it takes.
fn policy_param() -> impl Strategy<Value = PolicyParam> {
    (
        proptest::sample::select(PolicyType::ALL),
        vec(any::<u32>(), 4),
    )
        .prop_filter_map("a supported policy", |(kind, values)| {
            (0..=4)
                .map(|n| PolicyParam::new(kind, &values[..n]))
                .find(|p| p.is_some_and(|p| Policy::from_param(&p).is_ok()))
                .flatten()
        })
}

fn element() -> impl Strategy<Value = wire::PoolElement> {
    (
        1..=u32::MAX,
        any::<[u32; 2]>(),
        user_transport(),
        policy_param(),
        of(sctp_transport()),
    )
        .prop_map(
            |(id, [home, life], user_transport, policy, asap_transport)| wire::PoolElement {
                id: PoolElementId(id),
                home: RegistrarId(home),
                registration_life: RegistrationLife(life),
                user_transport,
                policy,
                asap_transport,
            },
        )
}

fn encode(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    f(&mut w);
    w.finish();
    out
}

proptest! {
    #[test]
    fn a_record_keeps_the_codecs_encodings_and_decodes_to_the_registration(
        pe in element(),
        home in any::<u32>(),
    ) {
        let handle = PoolHandle::from("p");
        let record = hs().prepare(&handle, &pe).unwrap();
        prop_assert_eq!(record.id(), pe.id);
        prop_assert_eq!(record.home(), pe.home);
        prop_assert_eq!(record.policy().to_param(), pe.policy);
        prop_assert_eq!(record.encoded(), &encode(|w| pe.encode_without_asap_transport(w))[..]);
        prop_assert_eq!(encode(|w| record.encode(w)), encode(|w| pe.encode(w)));
        prop_assert_eq!(record.param(), pe.clone());
        // An answer's overall policy and first PE, in one slice.
        let policy = encode(|w| pe.policy.encode(w));
        let both = [&policy[..], record.encoded()].concat();
        prop_assert_eq!(record.policy_tlv(), Some(&policy[..]));
        prop_assert_eq!(record.policy_and_encoded(), Some(&both[..]));

        let moved = record.with_home(RegistrarId(home));
        let mut expect = pe;
        expect.home = RegistrarId(home);
        prop_assert_eq!(&moved, &*hs().prepare(&handle, &expect).unwrap());
        prop_assert_eq!(moved.home(), RegistrarId(home));
    }
}

#[test]
fn replicas_share_the_record_the_writer_inserted() {
    let (mut writer, mut replica) = (hs(), hs());
    let handle = PoolHandle::from("shared");
    let record = writer
        .prepare(&handle, &pe(7, PolicyParam::round_robin()))
        .unwrap();
    writer.insert(&handle, record.clone(), None).unwrap();
    replica.insert(&handle, record.clone(), None).unwrap();
    let a = writer.element(b"shared", PoolElementId(7)).unwrap();
    let b = replica.element(b"shared", PoolElementId(7)).unwrap();
    assert!(Arc::ptr_eq(a.record(), b.record()));
    assert_eq!(Arc::strong_count(&record), 3);
    // A new home is a new record, for this replica alone until the writer publishes it.
    writer.set_home(&handle, PoolElementId(7), RegistrarId(9), None);
    let a = writer.element(b"shared", PoolElementId(7)).unwrap();
    assert_eq!(a.home(), RegistrarId(9));
    assert_eq!(&a.encoded()[8..12], &9u32.to_be_bytes());
    assert_eq!(Arc::strong_count(&record), 2);
}

#[test]
fn a_replica_applies_the_pool_rules_to_records_too() {
    let mut hs = hs();
    let handle = PoolHandle::from("rules");
    hs.register(&handle, pe(1, PolicyParam::round_robin()), None)
        .unwrap();
    let lu = PolicyParam::new(PolicyType::LEAST_USED, &[5]).unwrap();
    let record = hs.prepare(&handle, &pe(2, lu)).unwrap();
    assert!(matches!(
        hs.insert(&handle, record, None),
        Err(RegistrationError::InconsistentPolicy { .. })
    ));
}
