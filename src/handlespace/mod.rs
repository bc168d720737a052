//! The handlespace: pools keyed by pool handle, pool elements keyed by (handle, PE ID),
//! each pool's selection policy, per-home PE checksums and registration expiry.
//!
//! It enforces the pool rules of RFC 5352 §3.1 (one policy type, one transport type and
//! one transport use per pool) and the registrar's resource limits, and answers
//! selections. It knows nothing of associations or messages: the ASAP and ENRP layers
//! decide who may register what, set each PE's home registrar and turn results into
//! wire messages. Every operation costs O(1) or O(log n) in the pool size.

mod checksum;
mod element;
mod expiry;
mod policy;
mod pool;
mod select;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub use checksum::{ChecksumMode, ChecksumSum};
pub use element::{Element, Record};
pub use policy::{MAX_LOAD, Policy, PolicyError};
pub use pool::{Pool, TransportKind};

use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::rng::Rng;
use crate::wire::{self, PolicyParam, PolicyType, TransportUse, UserTransport};
use select::Slot;

/// Longest pool handle accepted by default: RSPLIB's limit (reference §4.6), so every
/// handle we hold can be passed on to an RSPLIB peer.
pub const MAX_POOL_HANDLE_LEN: usize = 32;
/// Most addresses in one user transport (RSPLIB's `MAX_PE_TRANSPORTADDRESSES`).
pub const MAX_TRANSPORT_ADDRESSES: usize = 64;

/// Keyed hashing: pool handles and PE IDs come from the network.
pub(crate) type Hasher = ahash::RandomState;

/// Limits and selection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Longest pool handle, in bytes.
    pub max_handle_len: usize,
    /// Most pools.
    pub max_pools: usize,
    /// Most PEs in one pool.
    pub max_pool_elements: usize,
    /// Most PEs in all pools together.
    pub max_elements: usize,
    /// How many of the PEs returned by one selection advance their selection state
    /// (RSPLIB's `MaxIncrement`). `None`: the policy's default, 1 for ordered and
    /// least-used policies and 0 for the pure random ones, as RSPLIB does.
    pub max_increment: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_handle_len: MAX_POOL_HANDLE_LEN,
            max_pools: 100_000,
            max_pool_elements: 100_000,
            max_elements: 1_000_000,
            max_increment: None,
        }
    }
}

/// Why a registration was refused; [`RegistrationError::cause`] gives the RFC 5354 cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("pool handle length {} is outside 1..={max}", .handle.len())]
    InvalidPoolHandle { handle: PoolHandle, max: usize },
    #[error("PE identifier 0 is invalid")]
    InvalidPeId,
    #[error("policy: {0}")]
    InvalidPolicy(PolicyError, PolicyParam),
    #[error("user transport: {0}")]
    InvalidUserTransport(&'static str, UserTransport),
    #[error("pool uses policy {}, not {}", .pool.kind, .offered)]
    InconsistentPolicy {
        pool: PolicyParam,
        offered: PolicyType,
    },
    #[error("pool uses transport {pool:?}, not {offered:?}")]
    InconsistentTransport {
        pool: TransportKind,
        offered: TransportKind,
        example: UserTransport,
    },
    #[error("pool uses transport use {pool}, not {offered}")]
    InconsistentDataControl {
        pool: TransportUse,
        offered: TransportUse,
    },
    #[error("resource limit reached: {0}")]
    LackOfResources(&'static str),
}

impl RegistrationError {
    pub fn cause(&self) -> wire::CauseCode {
        use wire::CauseCode as C;
        match self {
            Self::InvalidPoolHandle { .. }
            | Self::InvalidPeId
            | Self::InvalidPolicy(..)
            | Self::InvalidUserTransport(..) => C::INVALID_VALUES,
            Self::InconsistentPolicy { .. } => C::INCONSISTENT_POOLING_POLICY,
            Self::InconsistentTransport { .. } => C::INCONSISTENT_TRANSPORT_TYPE,
            Self::InconsistentDataControl { .. } => C::INCONSISTENT_DATA_CONTROL,
            Self::LackOfResources(_) => C::LACK_OF_RESOURCES,
        }
    }

    /// The Operation Error for the REGISTRATION_RESPONSE: the cause with, as RFC 5354
    /// §3.12 asks, the offending TLV (0x0003), the pool's policy (0x0005) or a transport
    /// of the pool's type (0x0007) as its information.
    pub fn to_operation_error(&self) -> wire::OperationError {
        let info = match self {
            Self::InvalidPoolHandle { handle, .. } => {
                wire::to_vec(|w| wire::encode_handle(handle, w))
            }
            Self::InvalidPeId => wire::to_vec(|w| wire::encode_pe_id(PoolElementId(0), w)),
            Self::InvalidPolicy(_, p) => p.to_tlv(),
            Self::InvalidUserTransport(_, t) => t.to_tlv(),
            Self::InconsistentPolicy { pool, .. } => pool.to_tlv(),
            Self::InconsistentTransport { example, .. } => example.to_tlv(),
            Self::InconsistentDataControl { .. } | Self::LackOfResources(_) => Vec::new(),
        };
        wire::OperationError::single(self.cause(), info)
    }
}

/// What a successful registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// A new PE (and, if `new_pool`, a new pool).
    New { new_pool: bool },
    /// An existing PE re-registered: its attributes were replaced. `previous_home` is the
    /// home before (the registering PR becomes the home, RFC 5352 §3.1 rule 3).
    Updated { previous_home: RegistrarId },
}

/// The outcome of a selection: the pool and the chosen PEs, best first.
#[derive(Debug)]
pub struct Resolution<'a> {
    pool: &'a Pool,
    picks: &'a [Slot],
}

impl<'a> Resolution<'a> {
    pub fn pool(&self) -> &'a Pool {
        self.pool
    }

    pub fn len(&self) -> usize {
        self.picks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.picks.is_empty()
    }

    pub fn elements(&self) -> impl Iterator<Item = &'a Element> + 'a {
        let pool = self.pool;
        self.picks.iter().filter_map(move |&s| pool.slot(s))
    }

    /// The overall policy parameter for the response: like RSPLIB, a copy of the first
    /// returned PE's policy (RFC 5352 §2.2.6 requires one for non-RR pools; RSPLIB
    /// clients require it always). `None` if nothing was selected.
    pub fn overall_policy(&self) -> Option<PolicyParam> {
        self.elements().next().map(|e| e.policy().to_param())
    }
}

/// All pools of one registrar (or of one shard of it).
#[derive(Debug)]
pub struct Handlespace {
    config: Config,
    hasher: Hasher,
    pools: HashMap<PoolHandle, Pool, Hasher>,
    homes: HashMap<RegistrarId, (ChecksumSum, usize), Hasher>,
    expiry: expiry::Expiry,
    elements: usize,
    rng: Rng,
    picks: Vec<Slot>,
}

impl Handlespace {
    /// `seed` drives both the random policies and the hash keys, so a seed replays every
    /// decision.
    pub fn new(config: Config, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let hasher = Hasher::with_seeds(
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        );
        Self {
            config,
            pools: HashMap::with_hasher(hasher.clone()),
            homes: HashMap::with_hasher(hasher.clone()),
            hasher,
            expiry: expiry::Expiry::default(),
            elements: 0,
            rng,
            picks: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn pool(&self, handle: &[u8]) -> Option<&Pool> {
        self.pools.get(handle)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    pub fn element_count(&self) -> usize {
        self.elements
    }

    pub fn element(&self, handle: &[u8], id: PoolElementId) -> Option<&Element> {
        self.pools.get(handle)?.element(id)
    }

    /// Checks a registration's own values, before any pool is consulted (RFC 5352 §3.1,
    /// reference §6.1 V1).
    pub fn validate(
        &self,
        handle: &PoolHandle,
        pe: &wire::PoolElement,
    ) -> Result<Policy, RegistrationError> {
        if handle.is_empty() || handle.len() > self.config.max_handle_len {
            return Err(RegistrationError::InvalidPoolHandle {
                handle: handle.clone(),
                max: self.config.max_handle_len,
            });
        }
        if pe.id.0 == 0 {
            return Err(RegistrationError::InvalidPeId);
        }
        let policy = Policy::from_param(&pe.policy)
            .map_err(|e| RegistrationError::InvalidPolicy(e, pe.policy))?;
        let bad = |why| {
            Err(RegistrationError::InvalidUserTransport(
                why,
                pe.user_transport.clone(),
            ))
        };
        match &pe.user_transport {
            UserTransport::Sctp(s) => {
                if s.port == 0 {
                    return bad("port 0");
                }
                if s.addresses.is_empty() {
                    return bad("no address");
                }
                if s.addresses.len() > MAX_TRANSPORT_ADDRESSES {
                    return bad("too many addresses");
                }
            }
            UserTransport::Tcp(t) | UserTransport::Udp(t) | UserTransport::UdpLite(t) => {
                if t.port == 0 {
                    return bad("port 0");
                }
            }
            UserTransport::Dccp(d) => {
                if d.port == 0 {
                    return bad("port 0");
                }
            }
            UserTransport::Opaque(_) => {}
        }
        Ok(policy)
    }

    /// Checks a registration ([`Handlespace::validate`]) and encodes it once, for this
    /// replica and every other ([`Handlespace::insert`]).
    pub fn prepare(
        &self,
        handle: &PoolHandle,
        pe: &wire::PoolElement,
    ) -> Result<Arc<Record>, RegistrationError> {
        let policy = self.validate(handle, pe)?;
        Ok(Arc::new(Record::new(pe, policy)))
    }

    /// Adds a PE or, if (handle, PE ID) exists, replaces its attributes (RFC 5352 §3.1:
    /// the PR treats it as a re-registration and takes ownership). `pe.home` must already
    /// be the home registrar. `expires` is when the registration life ends (`None`:
    /// never); the caller converts the wire value, whose unit is configurable.
    pub fn register(
        &mut self,
        handle: &PoolHandle,
        pe: wire::PoolElement,
        expires: Option<Instant>,
    ) -> Result<Registered, RegistrationError> {
        let record = self.prepare(handle, &pe)?;
        self.insert(handle, record, expires)
    }

    /// [`Handlespace::register`] of a prepared record: the pool rules and the limits,
    /// without checking or encoding the PE again. Another replica's record may be
    /// inserted as it is; the replicas then share it.
    pub fn insert(
        &mut self,
        handle: &PoolHandle,
        record: Arc<Record>,
        expires: Option<Instant>,
    ) -> Result<Registered, RegistrationError> {
        let policy = record.policy();
        let kind = record.transport();
        let tuse = record.transport_use();
        let id = record.id();
        match self.pools.get_mut(handle.as_bytes()) {
            Some(pool) => {
                if policy.kind() != pool.policy_type {
                    let example = pool.elements().next().map_or_else(
                        || {
                            PolicyParam::new(pool.policy_type, &[])
                                .unwrap_or_else(PolicyParam::round_robin)
                        },
                        |e| e.policy().to_param(),
                    );
                    return Err(RegistrationError::InconsistentPolicy {
                        pool: example,
                        offered: policy.kind(),
                    });
                }
                if kind != pool.transport {
                    let example = pool
                        .elements()
                        .next()
                        .map_or_else(|| record.param(), Element::param)
                        .user_transport;
                    return Err(RegistrationError::InconsistentTransport {
                        pool: pool.transport,
                        offered: kind,
                        example,
                    });
                }
                if tuse != pool.transport_use {
                    return Err(RegistrationError::InconsistentDataControl {
                        pool: pool.transport_use,
                        offered: tuse,
                    });
                }
                if let Some(slot) = pool.slot_of(id) {
                    let new_home = record.home();
                    let pool_handle = pool.handle.clone();
                    let old = pool
                        .replace(slot, Element::new(record, expires))
                        .ok_or(RegistrationError::LackOfResources("slot"))?;
                    if old.home() != new_home {
                        let sum = ChecksumSum::of_element(handle, id);
                        Self::home_sub(&mut self.homes, old.home(), sum);
                        Self::home_add(&mut self.homes, new_home, sum);
                    }
                    self.reschedule(pool_handle, id, old.expires, expires);
                    return Ok(Registered::Updated {
                        previous_home: old.home(),
                    });
                }
                if pool.len() >= self.config.max_pool_elements {
                    return Err(RegistrationError::LackOfResources("PEs in this pool"));
                }
                if self.elements >= self.config.max_elements {
                    return Err(RegistrationError::LackOfResources("PEs"));
                }
                self.add_element(handle, Element::new(record, expires), false)
            }
            None => {
                if self.pools.len() >= self.config.max_pools {
                    return Err(RegistrationError::LackOfResources("pools"));
                }
                if self.elements >= self.config.max_elements {
                    return Err(RegistrationError::LackOfResources("PEs"));
                }
                let pool = Pool::new(handle.clone(), &record, self.hasher.clone());
                self.pools.insert(handle.clone(), pool);
                self.add_element(handle, Element::new(record, expires), true)
            }
        }
    }

    fn add_element(
        &mut self,
        handle: &PoolHandle,
        element: Element,
        new_pool: bool,
    ) -> Result<Registered, RegistrationError> {
        let Some(pool) = self.pools.get_mut(handle.as_bytes()) else {
            return Err(RegistrationError::LackOfResources("pool vanished"));
        };
        if let Some(t) = element.expires {
            self.expiry.schedule(t, pool.handle.clone(), element.id());
        }
        let sum = ChecksumSum::of_element(handle, element.id());
        Self::home_add(&mut self.homes, element.home(), sum);
        pool.insert(element);
        self.elements += 1;
        self.compact_expiry();
        Ok(Registered::New { new_pool })
    }

    /// Removes a PE; deletes its pool if it was the last. Returns the element.
    pub fn deregister(&mut self, handle: &[u8], id: PoolElementId) -> Option<Element> {
        let pool = self.pools.get_mut(handle)?;
        let e = pool.remove(id)?;
        let sum = ChecksumSum::of_element(&pool.handle, id);
        if pool.is_empty() {
            self.pools.remove(handle);
        }
        self.elements -= 1;
        Self::home_sub(&mut self.homes, e.home(), sum);
        Some(e)
    }

    /// Selects up to `max_items` distinct PEs of the pool with its policy (RFC 5356) and
    /// advances the policy state. `None` if the pool does not exist.
    pub fn resolve(&mut self, handle: &[u8], max_items: usize) -> Option<Resolution<'_>> {
        let pool = self.pools.get_mut(handle)?;
        self.picks.clear();
        let increment = self.config.max_increment.unwrap_or(pool.default_increment);
        pool.select(max_items, increment, &mut self.rng, &mut self.picks);
        Some(Resolution {
            pool,
            picks: &self.picks,
        })
    }

    /// [`Handlespace::resolve`], handing each selected PE, best first, to `visit` with
    /// its pool's Pool Handle parameter after room for a message header
    /// ([`Pool::headed_handle_param`]) instead of collecting
    /// them: an answer is written straight from the selection. Returns whether the pool
    /// exists.
    #[inline]
    pub fn resolve_each(
        &mut self,
        handle: &[u8],
        max_items: usize,
        visit: impl FnMut(&[u8], &Element),
    ) -> bool {
        let Some(pool) = self.pools.get_mut(handle) else {
            return false;
        };
        let increment = self.config.max_increment.unwrap_or(pool.default_increment);
        pool.select_each(max_items, increment, &mut self.rng, &mut self.picks, visit);
        true
    }

    /// [`Handlespace::resolve`] with every handed-out PE stepped through its policy, as
    /// before the fixed-order shortcut ([`Pool::select_stepwise`]): the PE IDs, best
    /// first. The reference the shortcut is tested against.
    #[cfg(test)]
    pub(crate) fn resolve_stepwise(
        &mut self,
        handle: &[u8],
        max_items: usize,
    ) -> Option<Vec<PoolElementId>> {
        let pool = self.pools.get_mut(handle)?;
        let mut picks = Vec::new();
        let increment = self.config.max_increment.unwrap_or(pool.default_increment);
        pool.select_stepwise(max_items, increment, &mut self.rng, &mut picks);
        Some(
            picks
                .iter()
                .filter_map(|&s| pool.slot(s).map(Element::id))
                .collect(),
        )
    }

    /// Counts an ENDPOINT_UNREACHABLE report against a PE; returns the new count. The
    /// caller removes the PE at its threshold (RFC 5352 §3.5 MAX-BAD-PE-REPORT).
    pub fn report_unreachable(&mut self, handle: &[u8], id: PoolElementId) -> Option<u32> {
        let e = self.pools.get_mut(handle)?.element_mut(id)?;
        e.unreachable_reports = e.unreachable_reports.saturating_add(1);
        Some(e.unreachable_reports)
    }

    /// Moves every PE whose home is `from` to `to` (ENRP takeover, RFC 5353 §3.5).
    /// Returns how many moved. O(n): takeovers are rare.
    pub fn transfer_home(&mut self, from: RegistrarId, to: RegistrarId) -> usize {
        if from == to {
            return 0;
        }
        let mut moved = 0;
        for pool in self.pools.values_mut() {
            let ids: Vec<PoolElementId> = pool
                .elements()
                .filter(|e| e.home() == from)
                .map(Element::id)
                .collect();
            for id in ids {
                if let Some(e) = pool.element_mut(id) {
                    e.set_home(to);
                    moved += 1;
                }
            }
        }
        if let Some((sum, count)) = self.homes.remove(&from) {
            let entry = self.homes.entry(to).or_default();
            entry.0 += sum;
            entry.1 += count;
        }
        moved
    }

    /// Moves one PE to another home, keeping everything else (its place in the
    /// selection order included). Returns the previous home, or `None` if the PE does
    /// not exist. `expires` replaces the registration-life deadline.
    pub fn set_home(
        &mut self,
        handle: &PoolHandle,
        id: PoolElementId,
        home: RegistrarId,
        expires: Option<Instant>,
    ) -> Option<RegistrarId> {
        let pool = self.pools.get_mut(handle.as_bytes())?;
        let pool_handle = pool.handle.clone();
        let e = pool.element_mut(id)?;
        let previous = e.home();
        let sum = ChecksumSum::of_element(handle, id);
        e.set_home(home);
        let old_expires = std::mem::replace(&mut e.expires, expires);
        if previous != home {
            Self::home_sub(&mut self.homes, previous, sum);
            Self::home_add(&mut self.homes, home, sum);
        }
        self.reschedule(pool_handle, id, old_expires, expires);
        Some(previous)
    }

    /// Every PE whose home is `home`, with its pool handle. O(n) over the handlespace.
    pub fn elements_of_home(
        &self,
        home: RegistrarId,
    ) -> impl Iterator<Item = (&PoolHandle, &Element)> {
        self.pools.values().flat_map(move |p| {
            p.elements()
                .filter(move |e| e.home() == home)
                .map(move |e| (&*p.handle, e))
        })
    }

    /// When to call [`Handlespace::expire`] next. It may be earlier than any live
    /// deadline (a PE re-registered since), never later.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.next()
    }

    /// Removes every PE whose registration life ended at or before `now`, appending
    /// them with their pool handles to `out`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<(PoolHandle, Element)>) {
        while let Some((handle, id)) = self.expiry.pop_due(now) {
            match self
                .element(handle.as_bytes(), id)
                .and_then(Element::expires)
            {
                Some(t) if t <= now => {
                    if let Some(e) = self.deregister(handle.as_bytes(), id) {
                        out.push(((*handle).clone(), e));
                    }
                }
                // Re-registered since with a later deadline: its one entry moves there.
                Some(t) => self.expiry.schedule(t, handle, id),
                // Gone, or registered again without a deadline.
                None => {}
            }
        }
    }

    /// Keeps a PE's deadline covered after it changed from `old` to `new`: an entry at
    /// or before the deadline exists already unless there was no deadline or the new
    /// one is earlier.
    fn reschedule(
        &mut self,
        handle: Arc<PoolHandle>,
        id: PoolElementId,
        old: Option<Instant>,
        new: Option<Instant>,
    ) {
        if let Some(t) = new
            && old.is_none_or(|o| t < o)
        {
            self.expiry.schedule(t, handle, id);
            self.compact_expiry();
        }
    }

    fn compact_expiry(&mut self) {
        if self.expiry.wants_compaction(self.elements) {
            let live = self.pools.values().flat_map(|p| {
                p.elements()
                    .filter_map(|e| e.expires.map(|t| (t, p.handle.clone(), e.id())))
            });
            self.expiry.rebuild(live);
        }
    }

    /// Unfolded checksum of the PEs whose home is `home`; add the parts of several
    /// shards, then [`ChecksumSum::finish`].
    pub fn home_sum(&self, home: RegistrarId) -> ChecksumSum {
        self.homes
            .get(&home)
            .map_or_else(ChecksumSum::default, |(s, _)| *s)
    }

    /// The PE checksum of `home` (RFC 5353 §3.6), 0xFFFF if it has no PE here.
    pub fn home_checksum(&self, home: RegistrarId) -> u16 {
        self.home_sum(home).finish()
    }

    /// How many PEs have `home` as their home here.
    pub fn home_count(&self, home: RegistrarId) -> usize {
        self.homes.get(&home).map_or(0, |(_, c)| *c)
    }

    /// Every home with at least one PE here, and its PE count.
    pub fn homes(&self) -> impl Iterator<Item = (RegistrarId, usize)> + '_ {
        self.homes.iter().map(|(h, (_, c))| (*h, *c))
    }

    fn home_add(
        homes: &mut HashMap<RegistrarId, (ChecksumSum, usize), Hasher>,
        home: RegistrarId,
        s: ChecksumSum,
    ) {
        let e = homes.entry(home).or_default();
        e.0 += s;
        e.1 += 1;
    }

    fn home_sub(
        homes: &mut HashMap<RegistrarId, (ChecksumSum, usize), Hasher>,
        home: RegistrarId,
        s: ChecksumSum,
    ) {
        if let Some(e) = homes.get_mut(&home) {
            e.0 -= s;
            e.1 -= 1;
            if e.1 == 0 {
                homes.remove(&home);
            }
        }
    }
}

#[cfg(test)]
mod tests;
