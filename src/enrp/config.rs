//! ENRP settings, with RSPLIB's defaults where the RFC's differ (reference §7.2).

use std::net::SocketAddr;
use std::time::Duration;

use crate::handlespace::ChecksumMode;
use crate::registrar::Transport;

/// Where a peer registrar, or one of our own ENRP endpoints, is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddress {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl std::fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.transport, self.addr)
    }
}

/// Who wins when two registrars start taking over the same dead peer at once
/// (RFC 5353 §3.5.1: the one that receives the other's ENRP_INIT_TAKEOVER compares the
/// two server IDs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TakeoverWinner {
    /// The lower server ID wins: RSPLIB's rule. Every registrar of a scope must use the
    /// same rule; with RSPLIB in the scope, this one.
    #[default]
    Lowest,
    /// The higher server ID wins.
    Highest,
}

impl TakeoverWinner {
    /// Whether a takeover started by `initiator` beats ours (we are `own`).
    pub fn beats(self, initiator: u32, own: u32) -> bool {
        match self {
            Self::Lowest => initiator < own,
            Self::Highest => initiator > own,
        }
    }
}

/// The ENRP server's settings. The server ID is the registrar's
/// ([`crate::registrar::Config::id`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Peers configured by the operator (RSPLIB's `-peer`): contacted at start and kept
    /// contacted; their IDs are learned from their first ENRP_PRESENCE.
    pub peers: Vec<PeerAddress>,
    /// Our own ENRP endpoints, advertised in Server Information. The runtime fills them
    /// in from what it bound (ports resolved).
    pub endpoints: Vec<PeerAddress>,
    /// The host's addresses, advertised for a wildcard endpoint where no connection
    /// says which of ours a peer reaches (the multicast presence). The runtime fills
    /// them from the interfaces; RSPLIB drops loopback and link-local ones.
    pub host_addrs: Vec<std::net::IpAddr>,
    /// PEER-HEARTBEAT-CYCLE: how often every peer gets an ENRP_PRESENCE (each cycle
    /// drawn within ±12.5 %, as RSPLIB). RSPLIB 2.444 s, RFC 30 s.
    pub heartbeat: Duration,
    /// MAX-TIME-LAST-HEARD: a peer silent this long is probed with a PRESENCE that
    /// requires a reply. RSPLIB 5 s, RFC 61 s.
    pub max_time_last_heard: Duration,
    /// MAX-TIME-NO-RESPONSE: a probed peer that does not answer within this is dead.
    /// 5 s (RFC and RSPLIB).
    pub max_time_no_response: Duration,
    /// How long a starting registrar waits for a mentor (the first peer heard) before
    /// it serves alone. RSPLIB 5 s.
    pub mentor_discovery: Duration,
    /// How long a takeover waits for the other peers' acknowledgements. RSPLIB 5 s.
    pub takeover_expiry: Duration,
    /// Tie-break between simultaneous takeovers.
    pub takeover_winner: TakeoverWinner,
    /// PE checksum arithmetic sent in PRESENCE and compared in audits.
    pub checksum: ChecksumMode,
    /// Most PEs in one ENRP_HANDLE_TABLE_RESPONSE (RSPLIB 128, up to 1024).
    pub table_chunk_elements: usize,
    /// ENRP_PRESENCE also goes to, and is heard from, a multicast group (the runtime
    /// holds the socket; RSPLIB's group is 239.0.0.51:9901).
    pub multicast: bool,
    /// Refuse registrations RSPLIB peers could not take: RSPLIB's parser drops a whole
    /// handle update or table chunk for one PE with a DCCP, UDP-Lite or opaque user
    /// transport, and its audit of us then stalls for good.
    pub rsplib_compatible: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            endpoints: Vec::new(),
            host_addrs: Vec::new(),
            heartbeat: Duration::from_micros(2_444_444),
            max_time_last_heard: Duration::from_secs(5),
            max_time_no_response: Duration::from_secs(5),
            mentor_discovery: Duration::from_secs(5),
            takeover_expiry: Duration::from_secs(5),
            takeover_winner: TakeoverWinner::Lowest,
            checksum: ChecksumMode::Rsplib,
            table_chunk_elements: 128,
            multicast: false,
            rsplib_compatible: true,
        }
    }
}

/// Most PEs one handle table response may carry ([`Config::table_chunk_elements`]).
pub const TABLE_CHUNK_CEILING: usize = 1024;
