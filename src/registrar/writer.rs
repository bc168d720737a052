//! The writer of the pools a shard writes: their only mutator. It applies
//! registrations, removals, unreachable reports, expiry, and the changes peer
//! registrars ask for (ENRP) to the shard's replica, and publishes every change to the
//! other shards' replicas.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::supervision::{AsKey, Key};
use super::{Event, Origin, Outputs, RemovalReason, ShardMsg};
use crate::enrp::{PeerWrite, Refusal, Source, TakeoverWinner};
use crate::handlespace::{Handlespace, Record, Registered, RegistrationError};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{CauseCode, OperationError, PoolElement};

#[derive(Debug, Default)]
pub(super) struct Writer {
    /// Where each PE of the pools this shard writes was registered from.
    origins: Origins,
    /// Pools this shard writes (for the gauges; kept as pools come and go).
    pools: usize,
    /// Endpoint-unreachable reports of the PEs reported since their last removal or
    /// answered probe (most PEs have none, so they have no entry). Std's keyed
    /// SipHash: the keys come from the network.
    reports: HashMap<Key, Reports>,
    /// The TLS client identity of the association that owns each PE registered over
    /// TLS with a client certificate (without TLS there are no entries): the same
    /// identity proves the same PE on a new association.
    identities: HashMap<Key, Arc<str>>,
}

/// PEs with unreachable reports a writer keeps at most. Reports only hasten what
/// keep-alives decide anyway, so a full table (someone reporting every PE) is simply
/// started over rather than allowed to grow with the handlespace.
const MAX_REPORTED: usize = 1 << 16;

/// The unreachable reports of one PE.
#[derive(Debug, Default)]
struct Reports {
    /// The distinct reporting associations, at most the threshold.
    reporters: Vec<Origin>,
    /// A probe keep-alive is out (or its removal is on the way): more reports wait for
    /// its outcome.
    probing: bool,
}

/// Whether a registration from `claimant` may update the PE now registered from
/// `owner`. A PE identifier belongs to the association that registered it for as long
/// as that association lives: its loss removes the PE, and then anyone may register
/// the identifier again. A PE whose home is a peer registrar may move here (it chose
/// a new home PR), and so may one adopted in a takeover, supervised on a connection
/// this registrar opened, when the PE registers through its own association.
/// Over TLS, an association that proves the owner's client identity may take the PE
/// over too: a PE that restarted before its old association was noticed dead.
fn may_register(
    owner: Origin,
    claimant: Origin,
    owner_identity: Option<&str>,
    claimant_identity: Option<&str>,
) -> bool {
    match owner.local() {
        Some((_, conn)) => {
            owner == claimant
                || conn.is_outbound()
                || owner_identity.is_some_and(|o| claimant_identity == Some(o))
        }
        None => true,
    }
}

impl Writer {
    pub(super) fn pools(&self) -> usize {
        self.pools
    }

    pub(super) fn elements(&self) -> usize {
        self.origins.len()
    }

    /// Reference §6.1 V4: the pool rules, then the write, then the replicas; the outcome
    /// goes back to the connection's shard.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn register(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        origin: Origin,
        handle: PoolHandle,
        element: PoolElement,
        expires: Option<Instant>,
        received: Instant,
        identity: Option<Arc<str>>,
    ) {
        let id = element.id;
        let owner = self.origins.get(&handle, id);
        let owner_identity = match (&owner, self.identities.is_empty()) {
            (Some(_), false) => self.identities.get(&(&handle, id) as &dyn AsKey).cloned(),
            _ => None,
        };
        let refused = owner
            .filter(|o| !may_register(*o, origin, owner_identity.as_deref(), identity.as_deref()));
        let result = match refused {
            Some(owner) => {
                out.metrics.on_takeover_refused();
                if let (Some((_, owner)), Some((_, conn))) = (owner.local(), origin.local()) {
                    out.events.push_back(Event::TakeoverRefused {
                        conn,
                        owner,
                        handle: handle.clone(),
                        id,
                    });
                }
                Err(OperationError::single(
                    CauseCode::REJECTED_SECURITY,
                    Vec::new(),
                ))
            }
            None => {
                let applied = self.apply_registration(hs, out, origin, &handle, &element, expires);
                if applied.is_ok() {
                    self.set_identity(&handle, id, identity);
                }
                applied
            }
        };
        if let Some((shard, _)) = origin.local() {
            out.send_shard(
                shard,
                ShardMsg::Registered {
                    origin,
                    handle,
                    id,
                    result,
                    received,
                },
            );
        }
    }

    /// A registration the ownership rule allows: the pool rules, then the write, then
    /// the replicas.
    fn apply_registration(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        origin: Origin,
        handle: &PoolHandle,
        element: &PoolElement,
        expires: Option<Instant>,
    ) -> Result<(), OperationError> {
        let id = element.id;
        match insert(hs, handle, element, expires) {
            Ok((registered, record)) => {
                if registered == (Registered::New { new_pool: true }) {
                    self.pools += 1;
                }
                let previous = self.origins.insert(handle, id, origin);
                // Registered again from elsewhere (a PE that moved here from a peer,
                // or one adopted in a takeover): the previous connection no longer
                // supervises it.
                if let Some(prev) = previous.filter(|p| *p != origin) {
                    notify(out, prev, handle, id, RemovalReason::Moved);
                }
                out.changed(handle, &record, false);
                out.publish(ShardMsg::Upsert {
                    handle: handle.clone(),
                    record,
                });
                if let Some((_, conn)) = origin.local() {
                    out.events.push_back(Event::Registered {
                        handle: handle.clone(),
                        id,
                        conn,
                    });
                }
                Ok(())
            }
            Err(e) => {
                out.events.push_back(Event::RegistrationRejected {
                    handle: handle.clone(),
                    id,
                    cause: e.cause(),
                });
                Err(e.to_operation_error())
            }
        }
    }

    /// Removes a PE if it is still registered from `origin`, and answers the origin.
    pub(super) fn remove(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        origin: Origin,
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    ) {
        if self.origins.get(&handle, id) == Some(origin) {
            self.remove_element(hs, out, &handle, id, reason);
        } else if reason == RemovalReason::Unreachable {
            // A probe found the PE no longer there: its reports start over.
            self.forget_reports(&handle, id);
        }
        // Answered even when nothing was removed: for a deregistration, "not registered
        // (from there)" is success (RFC 5352 §3.2).
        if let Some((shard, _)) = origin.local() {
            out.send_shard(
                shard,
                ShardMsg::Removed {
                    origin,
                    handle,
                    id,
                    reason,
                },
            );
        }
    }

    /// RFC 5352 §3.5: count reports, one per reporting association, and act at the
    /// threshold (RSPLIB's MAX-BAD-PE-REPORT). A PE supervised here is not removed on
    /// the word of pool users alone: its supervising shard probes it with a keep-alive
    /// ([`ShardMsg::Probe`]) and removes it only if it does not answer in time (or has
    /// not answered recently anyway). Others (a peer's PEs) are removed at once, as
    /// RSPLIB does.
    pub(super) fn unreachable(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        threshold: u32,
        reporter: Origin,
        handle: &PoolHandle,
        id: PoolElementId,
    ) {
        if hs.report_unreachable(handle.as_bytes(), id).is_none() {
            return;
        }
        let key = (handle, id);
        if self.reports.len() >= MAX_REPORTED && !self.reports.contains_key(&key as &dyn AsKey) {
            self.reports = HashMap::new();
        }
        let reports = match self.reports.get_mut(&key as &dyn AsKey) {
            Some(r) => r,
            None => self
                .reports
                .entry(Key {
                    handle: handle.clone(),
                    id,
                })
                .or_default(),
        };
        if reports.probing {
            return;
        }
        if reports.reporters.contains(&reporter) {
            out.metrics.on_repeated_report();
            return;
        }
        reports.reporters.push(reporter);
        if reports.reporters.len() < threshold.max(1) as usize {
            return;
        }
        match self.origins.get(handle, id) {
            Some(origin @ Origin::Local { shard, .. }) => {
                reports.probing = true;
                out.metrics.on_probe();
                out.events.push_back(Event::Probing {
                    handle: handle.clone(),
                    id,
                });
                let msg = ShardMsg::Probe {
                    origin,
                    handle: handle.clone(),
                    id,
                };
                out.send_shard(shard, msg);
            }
            _ => self.remove_element(hs, out, handle, id, RemovalReason::Unreachable),
        }
    }

    /// The PE answered its probe: the reports against it are void.
    pub(super) fn probe_answered(
        &mut self,
        _origin: Origin,
        handle: &PoolHandle,
        id: PoolElementId,
    ) {
        self.forget_reports(handle, id);
    }

    /// Records (or clears) the TLS identity of a PE's owning association.
    fn set_identity(&mut self, handle: &PoolHandle, id: PoolElementId, identity: Option<Arc<str>>) {
        match identity {
            Some(i) => {
                self.identities.insert(
                    Key {
                        handle: handle.clone(),
                        id,
                    },
                    i,
                );
            }
            None if !self.identities.is_empty() => {
                self.identities.remove(&(handle, id) as &dyn AsKey);
            }
            None => {}
        }
    }

    fn forget_reports(&mut self, handle: &PoolHandle, id: PoolElementId) {
        if !self.reports.is_empty() {
            self.reports.remove(&(handle, id) as &dyn AsKey);
        }
    }

    /// Removes the PEs whose registration life ended: peers' PEs always (so a dead
    /// peer's PEs that nobody took over do not stay for ever), ours when lifetimes are
    /// enforced (only then do they have a deadline).
    pub(super) fn expire(&mut self, hs: &mut Handlespace, out: &mut Outputs, now: Instant) {
        let mut expired = Vec::new();
        hs.expire(now, &mut expired);
        for (handle, e) in expired {
            out.changed(&handle, e.record(), true);
            self.removed(hs, out, &handle, e.id(), RemovalReason::Expired);
        }
    }

    /// A change a peer registrar asks for (RFC 5353 §3.3.2, §3.5.2, §3.6.3), checked
    /// against the pool's current state: a peer changes only PEs whose home it is.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn peer(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        now: Instant,
        me: RegistrarId,
        winner: TakeoverWinner,
        write: PeerWrite,
    ) {
        match write {
            PeerWrite::Update {
                from,
                handle,
                element,
                expires,
                source,
                received,
            } => {
                let id = element.id;
                if element.home == me {
                    return refused(out, from, &handle, id, Refusal::Ours);
                }
                if source != Source::Mentor && element.home != from {
                    return refused(out, from, &handle, id, Refusal::NotItsHome);
                }
                let current = hs.element(handle.as_bytes(), id).map(|e| e.home());
                // One of ours: it moves to the peer it registered at (an ADD_PE from its
                // new home); a claim in an audit goes to the tie-break winner; a third
                // party's table never takes it.
                let keep = match source {
                    Source::Update => false,
                    Source::Audit => !winner.beats(from.0, me.0),
                    Source::Mentor => true,
                };
                if current == Some(me) && keep {
                    return refused(out, from, &handle, id, Refusal::Ours);
                }
                match insert(hs, &handle, &element, expires) {
                    Ok((registered, record)) => {
                        if registered == (Registered::New { new_pool: true }) {
                            self.pools += 1;
                        }
                        let origin = Origin::Peer(element.home);
                        let previous = self.origins.insert(&handle, id, origin);
                        // It registered at the peer: our connection lets it go.
                        if let Some(prev) = previous.filter(|p| p.local().is_some()) {
                            out.metrics.on_removal(RemovalReason::Moved);
                            notify(out, prev, &handle, id, RemovalReason::Moved);
                        }
                        out.metrics
                            .enrp
                            .on_applied(Some(now.saturating_duration_since(received)));
                        out.changed(&handle, &record, false);
                        out.publish(ShardMsg::Upsert { handle, record });
                    }
                    Err(e) => {
                        out.events.push_back(Event::PeerRefused {
                            from,
                            handle: handle.clone(),
                            id,
                            why: Refusal::Pool,
                            cause: Some(e.cause()),
                        });
                        out.metrics.enrp.on_refused(Refusal::Pool);
                    }
                }
            }
            PeerWrite::Remove {
                from,
                handle,
                id,
                purge: _,
            } => match hs.element(handle.as_bytes(), id).map(|e| e.home()) {
                None => out.metrics.enrp.on_refused(Refusal::Unknown),
                Some(home) if home != from => refused(out, from, &handle, id, Refusal::NotItsHome),
                Some(_) => {
                    out.metrics.enrp.on_applied(None);
                    self.remove_element(hs, out, &handle, id, RemovalReason::Peer);
                }
            },
            PeerWrite::Rehome {
                from,
                to,
                handle,
                id,
            } => {
                let Some(e) = hs.element(handle.as_bytes(), id) else {
                    return;
                };
                if e.home() != from || to == me {
                    return;
                }
                let expires = e.expires();
                hs.set_home(&handle, id, to, expires);
                self.origins.insert(&handle, id, Origin::Peer(to));
                out.metrics.enrp.on_applied(None);
                self.republish(hs, out, &handle, id);
            }
        }
    }

    /// A takeover adopts a PE whose home was `from` (RFC 5353 §3.5.2): it becomes ours,
    /// supervised on `origin`. `from` being us reclaims a PE of our previous life that
    /// we do not hold. If the PE went elsewhere meanwhile, `origin` lets it go.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn adopt(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        me: RegistrarId,
        origin: Origin,
        handle: PoolHandle,
        mut element: PoolElement,
        from: RegistrarId,
        expires: Option<Instant>,
    ) {
        let id = element.id;
        match hs.element(handle.as_bytes(), id).map(|e| e.home()) {
            Some(home) if home == from && from != me => {
                hs.set_home(&handle, id, me, expires);
            }
            None if from == me => {
                element.home = me;
                match hs.register(&handle, element, expires) {
                    Ok(Registered::New { new_pool: true }) => self.pools += 1,
                    Ok(_) => {}
                    Err(_) => return notify(out, origin, &handle, id, RemovalReason::Moved),
                }
            }
            _ => return notify(out, origin, &handle, id, RemovalReason::Moved),
        }
        self.origins.insert(&handle, id, origin);
        out.metrics.enrp.on_applied(None);
        self.republish(hs, out, &handle, id);
    }

    /// Publishes a PE as it now is (after a home change).
    fn republish(
        &mut self,
        hs: &Handlespace,
        out: &mut Outputs,
        handle: &PoolHandle,
        id: PoolElementId,
    ) {
        if let Some(e) = hs.element(handle.as_bytes(), id) {
            let record = e.record().clone();
            out.changed(handle, &record, false);
            out.publish(ShardMsg::Upsert {
                handle: handle.clone(),
                record,
            });
        }
    }

    fn remove_element(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        handle: &PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    ) {
        if let Some(e) = hs.deregister(handle.as_bytes(), id) {
            out.changed(handle, e.record(), true);
            self.removed(hs, out, handle, id, reason);
        }
    }

    /// After a PE left the handlespace: forget its origin, update the replicas, and tell
    /// the connection that registered it, unless that connection asked or is gone (it
    /// answers or cleans up itself).
    fn removed(
        &mut self,
        hs: &Handlespace,
        out: &mut Outputs,
        handle: &PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    ) {
        let origin = self.origins.remove(handle, id);
        self.forget_reports(handle, id);
        self.set_identity(handle, id, None);
        out.metrics.on_removal(reason);
        if hs.pool(handle.as_bytes()).is_none() {
            self.pools = self.pools.saturating_sub(1);
        }
        out.publish(ShardMsg::Delete {
            handle: handle.clone(),
            id,
        });
        out.events.push_back(Event::Removed {
            handle: handle.clone(),
            id,
            reason,
        });
        let asked_or_gone = matches!(
            reason,
            RemovalReason::Deregistered
                | RemovalReason::KeepAliveTimeout
                | RemovalReason::ConnectionLost
        );
        if let Some(origin) = origin.filter(|_| !asked_or_gone) {
            notify(out, origin, handle, id, reason);
        }
    }
}

/// The origin of every PE a writer writes, by pool: a small map per pool keyed by PE ID,
/// not one map keyed by (handle, PE ID), which would hold a copy of the handle per PE.
#[derive(Debug, Default)]
struct Origins {
    pools: HashMap<PoolHandle, HashMap<PoolElementId, Origin>>,
    len: usize,
}

impl Origins {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, handle: &PoolHandle, id: PoolElementId) -> Option<Origin> {
        self.pools.get(handle)?.get(&id).copied()
    }

    /// Sets the origin; returns the previous one.
    fn insert(&mut self, handle: &PoolHandle, id: PoolElementId, origin: Origin) -> Option<Origin> {
        let previous = match self.pools.get_mut(handle) {
            Some(pool) => pool.insert(id, origin),
            None => self
                .pools
                .entry(handle.clone())
                .or_default()
                .insert(id, origin),
        };
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    fn remove(&mut self, handle: &PoolHandle, id: PoolElementId) -> Option<Origin> {
        let pool = self.pools.get_mut(handle)?;
        let origin = pool.remove(&id)?;
        self.len -= 1;
        if pool.is_empty() {
            self.pools.remove(handle);
        } else if pool.capacity() > 4 * pool.len() + 16 {
            // A pool that shrank a lot gives its table back.
            pool.shrink_to_fit();
        }
        Some(origin)
    }
}

/// Checks and encodes a PE once, and inserts it: the record to publish to the other
/// replicas comes back with the outcome.
fn insert(
    hs: &mut Handlespace,
    handle: &PoolHandle,
    element: &PoolElement,
    expires: Option<Instant>,
) -> Result<(Registered, Arc<Record>), RegistrationError> {
    let record = hs.prepare(handle, element)?;
    let registered = hs.insert(handle, record.clone(), expires)?;
    Ok((registered, record))
}

fn refused(
    out: &mut Outputs,
    from: RegistrarId,
    handle: &PoolHandle,
    id: PoolElementId,
    why: Refusal,
) {
    out.metrics.enrp.on_refused(why);
    out.events.push_back(Event::PeerRefused {
        from,
        handle: handle.clone(),
        id,
        why,
        cause: None,
    });
}

/// Tells a local origin that its PE is gone or moved (peers learn through ENRP).
fn notify(
    out: &mut Outputs,
    origin: Origin,
    handle: &PoolHandle,
    id: PoolElementId,
    reason: RemovalReason,
) {
    if let Some((shard, _)) = origin.local() {
        out.send_shard(
            shard,
            ShardMsg::Removed {
                origin,
                handle: handle.clone(),
                id,
                reason,
            },
        );
    }
}
