//! Who the ENRP server talks to: peer registrars by server ID, the operator's static
//! peers (whose IDs are learned), and the connections ENRP runs over.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::PeerAddress;
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::registrar::{ConnId, ConnInfo, Transport};
use crate::wire::{IpTransport, SctpTransport, ServerInformation, ServerTransport, TransportUse};

/// Where a peer's ENRP endpoint is: one transport, its addresses (SCTP may have
/// several) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reach {
    pub(super) transport: Transport,
    pub(super) addrs: Vec<IpAddr>,
    pub(super) port: u16,
}

impl Reach {
    pub(super) fn from_address(a: PeerAddress) -> Self {
        Self {
            transport: a.transport,
            addrs: vec![a.addr.ip()],
            port: a.addr.port(),
        }
    }

    /// Where a peer says it is, trusted only as far as the connection it said it on
    /// (RSPLIB keeps only the advertised addresses that are the association's, §7 Q2):
    /// the advertised addresses that are the connection's peer addresses, or else the
    /// connection's addresses, with the advertised port either way.
    pub(super) fn from_info(info: &ServerInformation, seen_from: &[IpAddr]) -> Option<Self> {
        let (transport, advertised, port) = match &info.transport {
            ServerTransport::Sctp(s) => (Transport::Sctp, s.addresses.clone(), s.port),
            ServerTransport::Tcp(t) => (Transport::Tcp, vec![t.address], t.port),
        };
        if port == 0 {
            return None;
        }
        let canon = |a: &IpAddr| a.to_canonical();
        let mut addrs: Vec<IpAddr> = advertised
            .iter()
            .map(canon)
            .filter(|a| seen_from.iter().map(canon).any(|s| s == *a))
            .collect();
        if addrs.is_empty() {
            addrs = seen_from.iter().map(canon).collect();
        }
        addrs.retain(|a| !a.is_unspecified() && !a.is_multicast());
        if addrs.is_empty() {
            return None;
        }
        Some(Self {
            transport,
            addrs,
            port,
        })
    }

    /// Whether two reaches name the same endpoint (same transport and port, a common
    /// address), as RSPLIB matches a static peer to a learned one.
    pub(super) fn overlaps(&self, o: &Self) -> bool {
        self.transport == o.transport
            && self.port == o.port
            && self.addrs.iter().any(|a| o.addrs.contains(a))
    }

    pub(super) fn to_server_information(&self, id: RegistrarId) -> ServerInformation {
        ServerInformation {
            server_id: id,
            transport: transport_of(self.transport, &self.addrs, self.port),
        }
    }
}

pub(super) fn transport_of(transport: Transport, addrs: &[IpAddr], port: u16) -> ServerTransport {
    match transport {
        Transport::Sctp => ServerTransport::Sctp(SctpTransport {
            port,
            transport_use: TransportUse::DATA_ONLY,
            addresses: addrs.to_vec(),
        }),
        Transport::Tcp => ServerTransport::Tcp(IpTransport {
            port,
            reserved: 0,
            address: addrs
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        }),
    }
}

/// One ENRP connection or association.
#[derive(Debug)]
pub(super) struct Link {
    /// The peer whose messages arrive here, once one has (its Sending Server's ID).
    pub(super) peer: Option<RegistrarId>,
    /// Known once the runtime reports it up.
    pub(super) info: Option<ConnInfo>,
    /// We opened it (to a static peer or a learned address).
    pub(super) outbound: bool,
}

/// An operator-configured peer.
#[derive(Debug)]
pub(super) struct Static {
    pub(super) address: PeerAddress,
    /// Learned from its first PRESENCE.
    pub(super) id: Option<RegistrarId>,
    pub(super) link: Option<ConnId>,
    /// When to try connecting again after a failed or lost connection.
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
}

/// A handle table download from one peer: the mentor's whole table when joining
/// (`owned_only` false), or the peer's own PEs in an audit (RFC 5353 §3.6.3).
#[derive(Debug)]
pub(super) struct Download {
    pub(super) link: ConnId,
    pub(super) owned_only: bool,
    /// Audit: the PEs we held for the peer when it started; what the peer does not send
    /// again is purged at the end.
    pub(super) marked: HashSet<(PoolHandle, PoolElementId)>,
    /// No response by then: given up (the requester has a timer, RFC 5353 §3.2).
    pub(super) deadline: Instant,
    pub(super) received: usize,
}

/// A peer registrar, by server ID.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) id: RegistrarId,
    /// Where to connect when there is no connection.
    pub(super) reach: Option<Reach>,
    /// The connection we send on.
    pub(super) link: Option<ConnId>,
    pub(super) last_heard: Instant,
    /// A PRESENCE requiring a reply is out; the peer is dead at this deadline.
    pub(super) probe: Option<Instant>,
    /// Declared dead while another registrar takes it over; when that happened.
    pub(super) dead_since: Option<Instant>,
    /// Another registrar's takeover of this peer that we acknowledged, and when.
    pub(super) taken_over_by: Option<(RegistrarId, Instant)>,
    pub(super) download: Option<Download>,
    /// Audits that ended with the checksums still apart, in a row.
    pub(super) audit_misses: u32,
    /// No audit before then (backing off after audits that did not converge).
    pub(super) audit_after: Option<Instant>,
    /// A checksum comparison waits for the shards to catch up (its token).
    pub(super) comparing: Option<u64>,
    /// ENRP_LIST_REQUEST sent (once per peer entry, as RSPLIB).
    pub(super) listed: bool,
    pub(super) static_index: Option<usize>,
}

impl Peer {
    pub(super) fn new(id: RegistrarId, now: Instant) -> Self {
        Self {
            id,
            reach: None,
            link: None,
            last_heard: now,
            probe: None,
            dead_since: None,
            taken_over_by: None,
            download: None,
            audit_misses: 0,
            audit_after: None,
            comparing: None,
            listed: false,
            static_index: None,
        }
    }

    /// Not declared dead.
    pub(super) fn is_live(&self) -> bool {
        self.dead_since.is_none()
    }

    pub(super) fn state(&self) -> PeerState {
        if !self.is_live() {
            PeerState::Dead
        } else if self.probe.is_some() {
            PeerState::Probing
        } else {
            PeerState::Active
        }
    }
}

/// A peer's state, for gauges and tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Heard from within MAX-TIME-LAST-HEARD.
    Active,
    /// Silent: a PRESENCE requiring a reply is out.
    Probing,
    /// Dead, its PEs being taken over (by us or another registrar).
    Dead,
    /// A configured peer not heard from yet (its ID unknown).
    Unidentified,
}

impl PeerState {
    pub const ALL: [Self; 4] = [Self::Active, Self::Probing, Self::Dead, Self::Unidentified];

    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Probing => "probing",
            Self::Dead => "dead",
            Self::Unidentified => "unidentified",
        }
    }
}
