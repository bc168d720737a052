//! How shards divide the work and what they tell each other.
//!
//! Every shard keeps a full replica of the handlespace and answers handle resolutions
//! from it, so a resolution never waits for another core. Each pool has one *writer*
//! shard (a keyed hash of its handle), the only one that changes it: registrations,
//! deregistrations, removals, expiry and ENRP updates from peer registrars go to the
//! writer, which applies them and publishes the result to every other shard's replica.
//! A connection lives on one shard, which speaks ASAP on it and supervises the PEs
//! registered through it.
//!
//! "Writer" is the shard sense; "home" is the registrar responsible for a PE (RFC 5353),
//! ours or a peer's.
//!
//! Per writer the queue to each shard is FIFO, so every replica sees a pool's changes in
//! the writer's order.

use std::hash::{BuildHasher, Hasher as _};
use std::sync::Arc;
use std::time::Instant;

use crate::handlespace::Record;
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::{OperationError, PoolElement};

/// A shard (core) of the registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// A connection or SCTP association. Unique within its shard: the runtime names the ones
/// it accepts (below [`ConnId::OUTBOUND`]), the registrar the ones it opens
/// ([`super::Transmit::Connect`], from [`ConnId::OUTBOUND`] up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The first id of connections the registrar opens itself (2⁴⁸: the runtime's ids,
    /// a slot and a generation, stay below, and tokens keep 56 bits).
    pub const OUTBOUND: u64 = 1 << 48;
    /// Bits of the slot in a runtime's id ([`ConnId::new`]).
    pub const SLOT_BITS: u32 = 24;
    const SLOT_MASK: u64 = (1 << Self::SLOT_BITS) - 1;
    const GENERATION_MASK: u64 = (1 << (48 - Self::SLOT_BITS)) - 1;

    /// A runtime's id: a slot its live connections never share (so tables can be
    /// indexed by it instead of hashed, [`ConnId::slot`]) and the slot's generation
    /// (so an id stays unique when the slot is reused). Both are cut to their bits.
    pub fn new(slot: u32, generation: u32) -> Self {
        let slot = u64::from(slot) & Self::SLOT_MASK;
        let generation = u64::from(generation) & Self::GENERATION_MASK;
        Self((generation << Self::SLOT_BITS) | slot)
    }

    /// The slot of a runtime's id: small and dense, unique among live connections.
    /// (The registrar's own ids have slots too, from their own counter.)
    pub fn slot(self) -> usize {
        (self.0 & Self::SLOT_MASK) as usize
    }

    /// Whether the registrar opened this connection.
    pub fn is_outbound(self) -> bool {
        self.0 >= Self::OUTBOUND
    }
}

/// Where a PE's current registration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A connection of this registrar, on its shard: the PE registered through it (or
    /// was adopted onto it in a takeover). Deregistration is accepted only from there
    /// (RFC 5352 §2.2.2), and that shard supervises the PE.
    Local { shard: ShardId, conn: ConnId },
    /// A peer registrar told us of it (ENRP); the PE's home is that peer.
    Peer(crate::ids::RegistrarId),
}

impl Origin {
    /// The shard and connection of a local origin.
    pub fn local(self) -> Option<(ShardId, ConnId)> {
        match self {
            Self::Local { shard, conn } => Some((shard, conn)),
            Self::Peer(_) => None,
        }
    }
}

/// Why a PE left, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalReason {
    /// The PE deregistered.
    Deregistered,
    /// It missed a keep-alive acknowledgement.
    KeepAliveTimeout,
    /// Its connection or association went down.
    ConnectionLost,
    /// Its registration life ran out.
    Expired,
    /// Pool users reported it unreachable often enough (and it was not answering, or
    /// is not supervised here).
    Unreachable,
    /// It registered at another registrar, or (adopted in a takeover) through its own
    /// association, which now supervises it. (Another association of ours cannot take
    /// a PE over: that registration is refused.)
    Moved,
    /// Its home registrar (a peer) said so: ENRP DEL_PE, or an audit found the home
    /// no longer has it.
    Peer,
}

impl RemovalReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 7] = [
        Self::Deregistered,
        Self::KeepAliveTimeout,
        Self::ConnectionLost,
        Self::Expired,
        Self::Unreachable,
        Self::Moved,
        Self::Peer,
    ];

    /// Its position in [`RemovalReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A snake_case name, for metric labels and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Deregistered => "deregistered",
            Self::KeepAliveTimeout => "keep_alive_timeout",
            Self::ConnectionLost => "connection_lost",
            Self::Expired => "expired",
            Self::Unreachable => "unreachable_reports",
            Self::Moved => "moved",
            Self::Peer => "peer",
        }
    }

    /// Whether the registrar detected a failure (rather than the PE leaving or moving
    /// on its own): the removals whose detection time is measured.
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Deregistered | Self::Moved | Self::Peer)
    }
}

/// A message between shards.
#[derive(Clone, Debug)]
pub enum ShardMsg {
    /// Connection shard → writer: apply a checked registration.
    Register {
        origin: Origin,
        handle: PoolHandle,
        element: PoolElement,
        expires: Option<Instant>,
        /// When the connection shard took the request off the socket: the PE's sign of
        /// life, and the start of the registration's service time.
        received: Instant,
        /// The registering association's TLS client identity, if it proved one.
        identity: Option<std::sync::Arc<str>>,
    },
    /// Writer → connection shard: the outcome, to answer the PE.
    Registered {
        origin: Origin,
        handle: PoolHandle,
        id: PoolElementId,
        result: Result<(), OperationError>,
        /// The request's `received`, handed back.
        received: Instant,
    },
    /// Connection shard → writer: remove the PE if it is still registered from `origin`.
    Remove {
        origin: Origin,
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    },
    /// Writer → connection shard: the PE registered from `origin` is gone (or moved to
    /// another origin); stop supervising it, and answer the PE if it asked.
    Removed {
        origin: Origin,
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    },
    /// Any shard → writer: a pool user reports the PE unreachable. `reporter` is the
    /// reporting association: its repeated reports count once.
    Unreachable {
        handle: PoolHandle,
        id: PoolElementId,
        reporter: Origin,
    },
    /// Writer → every other shard: replica update, the PE as the writer checked and
    /// encoded it (shared, not copied).
    Upsert {
        handle: PoolHandle,
        record: Arc<Record>,
    },
    /// Writer → every other shard: replica update.
    Delete {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// ENRP shard → writer: a change a peer registrar asks for.
    Peer(crate::enrp::PeerWrite),
    /// ENRP shard → writer: a takeover adopts this PE, whose home was `from` (or, if
    /// `from` is us, a PE of our previous life comes back); `origin` is the connection
    /// it will be supervised on.
    Adopt {
        origin: Origin,
        handle: PoolHandle,
        element: PoolElement,
        from: crate::ids::RegistrarId,
        expires: Option<Instant>,
    },
    /// ENRP shard → every other shard: answer with `Synced` once everything sent
    /// before has been handled (a barrier: per pair, queues are FIFO).
    Sync { token: u64, reply_to: ShardId },
    /// The answer to `Sync`.
    Synced { token: u64 },
    /// Writer → the shard supervising a PE registered from `origin`: enough
    /// unreachable reports arrived; check the PE with a keep-alive now (RFC 5352 §3.5)
    /// rather than remove it, if it answered recently.
    Probe {
        origin: Origin,
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// Supervising shard → writer: the PE answered the probe; its reports start over.
    ProbeAnswered {
        origin: Origin,
        handle: PoolHandle,
        id: PoolElementId,
    },
}

/// Maps pool handles to their writer shards. Every shard must build it from the same
/// key.
#[derive(Clone, Debug)]
pub struct Router {
    shards: u16,
    hasher: ahash::RandomState,
}

impl Router {
    pub fn new(shards: u16, key: u64) -> Self {
        let hasher = ahash::RandomState::with_seeds(key, key.rotate_left(17), !key, 0x5ca1_ab1e);
        Self {
            shards: shards.max(1),
            hasher,
        }
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }

    pub fn writer(&self, handle: &[u8]) -> ShardId {
        if self.shards == 1 {
            return ShardId(0);
        }
        let mut h = self.hasher.build_hasher();
        h.write(handle);
        ShardId((h.finish() % u64::from(self.shards)) as u16)
    }
}
