//! The simulated pool elements' registration: what a PE of the load generator offers.

use std::net::IpAddr;

use rserpool::wire::{
    PolicyParam, PoolElement, RegistrationLife, SctpTransport, TransportUse, UserTransport,
};
use rserpool::{PoolElementId, RegistrarId};

/// A PE offering an SCTP transport on the connection's address (the registrar accepts
/// only addresses of the registering connection).
pub fn element(id: u32, addr: IpAddr, policy: PolicyParam) -> PoolElement {
    PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(0),
        registration_life: RegistrationLife(90_000),
        user_transport: UserTransport::Sctp(SctpTransport {
            port: 9000 + (id % 1000) as u16,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![addr],
        }),
        policy,
        asap_transport: None,
    }
}
