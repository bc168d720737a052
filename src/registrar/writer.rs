//! The writer of the pools a shard writes: their only mutator. It applies
//! registrations, removals, unreachable reports and expiry to the shard's replica and
//! publishes every change to the other shards' replicas.

use std::collections::HashMap;
use std::time::Instant;

use super::{Event, Origin, Outputs, RemovalReason, ShardMsg};
use crate::handlespace::{Handlespace, Registered};
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::PoolElement;

#[derive(Debug, Default)]
pub(super) struct Writer {
    /// Where each PE of the pools this shard writes was registered from.
    origins: HashMap<(PoolHandle, PoolElementId), Origin>,
    /// Pools this shard writes (for the gauges; kept as pools come and go).
    pools: usize,
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
    ) {
        let id = element.id;
        let result = match hs.register(&handle, element.clone(), expires) {
            Ok(registered) => {
                if registered == (Registered::New { new_pool: true }) {
                    self.pools += 1;
                }
                let previous = self.origins.insert((handle.clone(), id), origin);
                // Registered again from elsewhere: the previous connection no longer
                // supervises it (RSPLIB treats it as a re-registration too).
                if let Some(prev) = previous.filter(|p| *p != origin) {
                    notify(out, prev, &handle, id, RemovalReason::Moved);
                }
                out.publish(ShardMsg::Upsert {
                    handle: handle.clone(),
                    element,
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
        if self.origins.get(&(handle.clone(), id)) == Some(&origin) {
            self.remove_element(hs, out, &handle, id, reason);
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

    /// RFC 5352 §3.5 as RSPLIB does it: count reports, remove at the threshold.
    pub(super) fn unreachable(
        &mut self,
        hs: &mut Handlespace,
        out: &mut Outputs,
        threshold: u32,
        handle: &PoolHandle,
        id: PoolElementId,
    ) {
        let Some(count) = hs.report_unreachable(handle.as_bytes(), id) else {
            return;
        };
        if count >= threshold {
            self.remove_element(hs, out, handle, id, RemovalReason::Unreachable);
        }
    }

    /// Removes the PEs whose registration life ended.
    pub(super) fn expire(&mut self, hs: &mut Handlespace, out: &mut Outputs, now: Instant) {
        let mut expired = Vec::new();
        hs.expire(now, &mut expired);
        for (handle, e) in expired {
            self.removed(hs, out, &handle, e.id(), RemovalReason::Expired);
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
        if hs.deregister(handle.as_bytes(), id).is_some() {
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
        let origin = self.origins.remove(&(handle.clone(), id));
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
