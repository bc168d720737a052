//! The owner's side (a pool's single writer) and the replica side of shard messages.

use std::time::Instant;

use super::{ConnId, Event, Origin, Registrar, RemovalReason, Served, ServiceKind, ShardMsg};
use crate::handlespace::Registered;
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::AsapMessage;

impl Registrar {
    pub(super) fn on_shard(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Register {
                origin,
                handle,
                element,
                expires,
                received,
            } => self.apply_registration(origin, handle, element, expires, received),
            ShardMsg::Registered {
                origin,
                handle,
                id,
                result,
                received,
            } => {
                let served = Served {
                    kind: ServiceKind::Registration,
                    received,
                };
                self.on_registered(now, served, origin.conn, handle, id, result);
            }
            ShardMsg::Remove {
                origin,
                handle,
                id,
                reason,
            } => {
                if self.origins.get(&(handle.clone(), id)) == Some(&origin) {
                    self.remove_owned(&handle, id, reason);
                }
                // Answered even when nothing was removed: for a deregistration, "not
                // registered (from there)" is success (RFC 5352 §3.2).
                self.send_shard(
                    origin.shard,
                    ShardMsg::Removed {
                        origin,
                        handle,
                        id,
                        reason,
                    },
                );
            }
            ShardMsg::Removed {
                origin,
                handle,
                id,
                reason,
            } => self.on_removed(now, origin.conn, handle, id, reason),
            ShardMsg::Unreachable { handle, id } => self.on_unreachable(&handle, id),
            ShardMsg::Upsert { handle, element } => {
                // The owner checked it; a replica only mirrors it.
                let _ = self.handlespace.register(&handle, element, None);
            }
            ShardMsg::Delete { handle, id } => {
                self.handlespace.deregister(handle.as_bytes(), id);
            }
        }
    }

    /// Reference §6.1 V4: the pool rules, then the write, then the replicas.
    fn apply_registration(
        &mut self,
        origin: Origin,
        handle: PoolHandle,
        element: crate::wire::PoolElement,
        expires: Option<Instant>,
        received: Instant,
    ) {
        let id = element.id;
        let result = match self.handlespace.register(&handle, element.clone(), expires) {
            Ok(registered) => {
                if registered == (Registered::New { new_pool: true }) {
                    self.owned_pools += 1;
                }
                let previous = self.origins.insert((handle.clone(), id), origin);
                // Registered again from another connection: that one no longer owns it
                // (RSPLIB treats it as a re-registration too).
                if let Some(prev) = previous.filter(|p| *p != origin) {
                    let reason = RemovalReason::Moved;
                    let msg = ShardMsg::Removed {
                        origin: prev,
                        handle: handle.clone(),
                        id,
                        reason,
                    };
                    self.send_shard(prev.shard, msg);
                }
                self.publish(ShardMsg::Upsert {
                    handle: handle.clone(),
                    element,
                });
                self.events.push_back(Event::Registered {
                    handle: handle.clone(),
                    id,
                    conn: origin.conn,
                });
                Ok(())
            }
            Err(e) => {
                self.events.push_back(Event::RegistrationRejected {
                    handle: handle.clone(),
                    id,
                    cause: e.cause(),
                });
                Err(e.to_operation_error())
            }
        };
        self.send_shard(
            origin.shard,
            ShardMsg::Registered {
                origin,
                handle,
                id,
                result,
                received,
            },
        );
    }

    fn on_registered(
        &mut self,
        now: Instant,
        served: Served,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
        result: Result<(), crate::wire::OperationError>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            // The connection went down while the owner was registering: undo.
            if result.is_ok() {
                let reason = RemovalReason::ConnectionLost;
                let since = now.saturating_duration_since(served.received);
                self.metrics.on_failure_detected(reason, since);
                self.request_removal(conn, handle, id, reason);
            }
            return;
        };
        let rejected = result.is_err();
        if !rejected {
            c.add(handle.clone(), id);
            if self.supervision.is_supervised(&handle, id) {
                self.supervision.alive(&handle, id, conn, served.received);
            } else {
                let first = now + self.config.keep_alive_interval;
                self.supervision
                    .start(handle.clone(), id, conn, first, served.received);
            }
        }
        let response = AsapMessage::RegistrationResponse {
            rejected,
            handle,
            id,
            error: result.err(),
        };
        self.transmit_served(conn, &response, Some(served));
    }

    fn on_removed(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.remove(&handle, id);
        // Removals this shard decided (keep-alive timeout, connection lost) were timed
        // when decided and are no longer supervised; the owner's (unreachable reports,
        // expiry) are timed here, when this shard learns of them.
        if self.supervision.conn_of(&handle, id) == Some(conn)
            && let Some(alive) = self.supervision.stop(&handle, id)
        {
            let since = now.saturating_duration_since(alive);
            self.metrics.on_failure_detected(reason, since);
        }
        // The PE asked (deregistration), or RFC 5352 §3.2: tell it its life ended.
        if matches!(reason, RemovalReason::Deregistered | RemovalReason::Expired) {
            self.transmit(
                conn,
                &AsapMessage::DeregistrationResponse {
                    handle,
                    id,
                    error: None,
                },
            );
        }
    }

    /// RFC 5352 §3.5 as RSPLIB does it: count reports, remove at the threshold.
    fn on_unreachable(&mut self, handle: &PoolHandle, id: PoolElementId) {
        let Some(count) = self.handlespace.report_unreachable(handle.as_bytes(), id) else {
            return;
        };
        if count >= self.config.max_bad_pe_reports {
            self.remove_owned(handle, id, RemovalReason::Unreachable);
        }
    }

    /// Removes an owned PE, updates the replicas, and tells the connection that
    /// registered it (unless it asked, in which case the caller answers).
    fn remove_owned(&mut self, handle: &PoolHandle, id: PoolElementId, reason: RemovalReason) {
        if self.handlespace.deregister(handle.as_bytes(), id).is_some() {
            self.removed(handle, id, reason);
        }
    }

    /// After an owned PE left the handlespace: forget its origin, update the replicas,
    /// and tell the connection that registered it, unless that connection asked or is
    /// gone (it answers or cleans up itself).
    fn removed(&mut self, handle: &PoolHandle, id: PoolElementId, reason: RemovalReason) {
        let origin = self.origins.remove(&(handle.clone(), id));
        self.metrics.on_removal(reason);
        if self.handlespace.pool(handle.as_bytes()).is_none() {
            self.owned_pools = self.owned_pools.saturating_sub(1);
        }
        self.publish(ShardMsg::Delete {
            handle: handle.clone(),
            id,
        });
        self.events.push_back(Event::Removed {
            handle: handle.clone(),
            id,
            reason,
        });
        let notify = !matches!(
            reason,
            RemovalReason::Deregistered
                | RemovalReason::KeepAliveTimeout
                | RemovalReason::ConnectionLost
        );
        if let Some(origin) = origin.filter(|_| notify) {
            let msg = ShardMsg::Removed {
                origin,
                handle: handle.clone(),
                id,
                reason,
            };
            self.send_shard(origin.shard, msg);
        }
    }

    pub(super) fn on_expiry(&mut self, now: Instant) {
        if !self.config.enforce_lifetime {
            return;
        }
        let mut expired = Vec::new();
        self.handlespace.expire(now, &mut expired);
        for (handle, e) in expired {
            self.removed(&handle, e.id(), RemovalReason::Expired);
        }
    }
}
