//! ASAP on the connection side (RFC 5352 §3): decoding, answering, checking what only
//! the connection's shard can check, passing writes to the pool's writer, and keeping
//! the PEs registered through this shard's connections alive.

use std::time::Instant;

use super::conn::{asap_transport, filter_user_transport};
use super::supervision::Phase;
use super::{ConnId, Event, Origin, Registrar, RemovalReason, Served, ServiceKind, ShardMsg};
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::{
    self, AsapMessage, AsapType, CauseCode, DecodeError, OperationError, PoolElement, UserTransport,
};

/// Bytes of pool element parameters one resolution answer may carry: the 16-bit
/// message length less room for the header, the handle (at most 36) and the policy.
const ANSWER_ELEMENT_BYTES: usize = u16::MAX as usize - 256;

impl Registrar {
    pub(super) fn on_asap(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if !self.sessions.is_up(conn) {
            return;
        }
        // The request that matters most, read in place (the general path below would
        // build a message with an owned handle first).
        if let Some((handle, items)) = wire::plain_resolution(bytes) {
            self.out.metrics.on_received(AsapType::HANDLE_RESOLUTION);
            return self.on_resolution(now, conn, handle, items);
        }
        let decoded = match AsapMessage::decode(bytes) {
            Ok(d) => d,
            Err(error) => return self.malformed(conn, bytes, error),
        };
        self.out.metrics.on_received(decoded.message.kind());
        let is_error = matches!(decoded.message, AsapMessage::Error { .. });
        // RFC 5354 §3: parameters skipped with action bits 11 are reported, one cause
        // each; never in answer to an ERROR (RFC 5352 §2.2.14).
        if !decoded.unrecognized.is_empty() && !is_error {
            let causes = decoded
                .unrecognized
                .iter()
                .filter_map(|s| bytes.get(s.range()))
                .map(|tlv| wire::ErrorCause {
                    code: CauseCode::UNRECOGNIZED_PARAMETER,
                    info: tlv.to_vec(),
                })
                .collect();
            self.out.transmit(
                conn,
                &AsapMessage::Error {
                    error: OperationError { causes },
                },
            );
        }
        match decoded.message {
            AsapMessage::Registration { handle, element } => {
                self.on_registration(now, conn, handle, element)
            }
            AsapMessage::Deregistration { handle, id } => {
                if self.refuse_deregistration(now, conn, &handle, id) {
                    return;
                }
                self.on_deregistration(conn, handle, id)
            }
            AsapMessage::HandleResolution { handle, items, .. } => {
                self.on_resolution(now, conn, handle.as_bytes(), items)
            }
            AsapMessage::EndpointKeepAliveAck { handle, id } => {
                let next = now + self.config.keep_alive_interval;
                // RSPLIB ignores acknowledgements for PEs it does not supervise; so do we.
                let supervision = &mut self.sessions.supervision;
                if let Some(sent) = supervision.acked(&handle, id, conn, now, next) {
                    let rtt = now.saturating_duration_since(sent);
                    self.out.metrics.keep_alive_rtt.record(rtt);
                }
            }
            AsapMessage::EndpointUnreachable { handle, id } => {
                if self.refuse_unreachable(now, conn, handle.as_bytes()) {
                    return;
                }
                let msg = ShardMsg::Unreachable {
                    handle: handle.clone(),
                    id,
                };
                self.out.send_writer(&handle, msg);
            }
            // RSPLIB's registrar does not act on errors either.
            AsapMessage::Error { .. } => {}
            other => self.out.events.push_back(Event::Unexpected {
                conn,
                kind: other.kind(),
            }),
        }
    }

    /// Answers an undecodable message with ASAP_ERROR and the RFC 5354 cause, quoting the
    /// offending TLV (or the whole message for an unknown type), unless the RFC says to
    /// stay silent or the message was itself an error.
    fn malformed(&mut self, conn: ConnId, bytes: &[u8], error: DecodeError) {
        self.out.metrics.on_malformed();
        self.out.events.push_back(Event::Malformed { conn, error });
        let was_error = bytes.first() == Some(&AsapType::ERROR.0);
        if was_error || !error.should_report() {
            return;
        }
        let info = error.cause_info(bytes);
        let error = OperationError::single(error.cause(), info);
        self.out.transmit(conn, &AsapMessage::Error { error });
    }

    /// RFC 5352 §3.1 / reference §6.1 V1–V3 here, V4 at the writer.
    fn on_registration(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        mut element: PoolElement,
    ) {
        let id = element.id;
        if self.refuse_registration(now, conn, &handle, id) {
            return;
        }
        let served = Served {
            kind: ServiceKind::Registration,
            received: now,
        };
        if let Err(e) = self.replica.validate(&handle, &element) {
            return self.reject(served, conn, handle, id, e.to_operation_error());
        }
        let rsplib_peers = self
            .config
            .enrp
            .as_ref()
            .is_some_and(|e| e.rsplib_compatible);
        if rsplib_peers
            && matches!(
                element.user_transport,
                UserTransport::Dccp(_) | UserTransport::UdpLite(_) | UserTransport::Opaque(_)
            )
        {
            // RSPLIB's ENRP parser drops the whole message for such a PE (and its audit
            // of us then never finishes): a scope that may hold RSPLIB registrars cannot
            // carry it.
            let tlv = element.user_transport.to_tlv();
            let error = OperationError::single(CauseCode::INVALID_VALUES, tlv);
            return self.reject(served, conn, handle, id, error);
        }
        let Some(info) = self.sessions.info(conn) else {
            return;
        };
        let allow_loopback = self.config.allow_loopback;
        let Some(user) = filter_user_transport(&element.user_transport, info, allow_loopback)
        else {
            let tlv = element.user_transport.to_tlv();
            return self.reject(
                served,
                conn,
                handle,
                id,
                OperationError::single(CauseCode::INVALID_VALUES, tlv),
            );
        };
        element.user_transport = user;
        element.asap_transport = Some(asap_transport(info, allow_loopback));
        // RFC 5352 §3.1 rule 4: the registering PR becomes the home PR.
        element.home = self.config.id;
        let expires = self.config.own_expiry(now, element.registration_life);
        let origin = Origin::Local {
            shard: self.out.shard(),
            conn,
        };
        let msg = ShardMsg::Register {
            origin,
            handle: handle.clone(),
            element,
            expires,
            received: now,
        };
        self.out.send_writer(&handle, msg);
    }

    fn reject(
        &mut self,
        served: Served,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
        error: OperationError,
    ) {
        if let Some(cause) = error.code() {
            self.out.events.push_back(Event::RegistrationRejected {
                handle: handle.clone(),
                id,
                cause,
            });
        }
        let response = AsapMessage::RegistrationResponse {
            rejected: true,
            handle,
            id,
            error: Some(error),
        };
        self.out.transmit_served(conn, &response, Some(served));
    }

    /// RFC 5352 §3.2: only the connection that registered a PE may deregister it.
    fn on_deregistration(&mut self, conn: ConnId, handle: PoolHandle, id: PoolElementId) {
        if self.sessions.has(conn, &handle, id) {
            self.request_removal(conn, handle, id, RemovalReason::Deregistered);
            return;
        }
        let error = if self.replica.element(handle.as_bytes(), id).is_some() {
            self.out.events.push_back(Event::SpoofedDeregistration {
                conn,
                handle: handle.clone(),
                id,
            });
            Some(OperationError::single(
                CauseCode::REJECTED_SECURITY,
                Vec::new(),
            ))
        } else {
            // Not registered at all: the PE's wish is already true (RFC 5352 §3.2).
            None
        };
        self.out.transmit(
            conn,
            &AsapMessage::DeregistrationResponse { handle, id, error },
        );
    }

    /// RFC 5352 §3.3: answered from this shard's replica, never waiting for another.
    fn on_resolution(&mut self, now: Instant, conn: ConnId, handle: &[u8], items: Option<u32>) {
        if self.refuse_resolution(now, conn, handle) {
            return;
        }
        let served = Some(Served {
            kind: ServiceKind::HandleResolution,
            received: now,
        });
        // RSPLIB: an absent or zero item count means the configured default; at most
        // the limit (RSPLIB: 128).
        let n = match items {
            None | Some(0) => self.config.max_resolution_items,
            Some(n) => n,
        }
        .min(self.config.resolution_items_limit) as usize;
        let mut payload = self.out.buffer();
        let found = match self.replica.resolve(handle, n) {
            Some(r) if !r.is_empty() => {
                let policy = r.overall_policy();
                wire::message(
                    &mut payload,
                    AsapType::HANDLE_RESOLUTION_RESPONSE.0,
                    0,
                    |w| {
                        wire::encode_handle_bytes(handle, w);
                        // RSPLIB clients need the overall policy even for round robin.
                        if let Some(p) = policy {
                            p.encode(w);
                        }
                        // The message length is 16 bits: stop before the PEs would
                        // overflow it (only a raised limit with many-address PEs gets
                        // near; the handle and policy take under 100 bytes).
                        let mut room = ANSWER_ELEMENT_BYTES;
                        for e in r.elements() {
                            let Some(left) = room.checked_sub(e.encoded().len()) else {
                                break;
                            };
                            room = left;
                            w.put_bytes(e.encoded());
                        }
                    },
                );
                true
            }
            // No pool, or no PE of it selectable (all of weight 0): a negative answer.
            _ => false,
        };
        if found {
            self.out.push_asap(conn, payload, served);
        } else {
            self.out.recycle(payload);
            let error = Some(OperationError::single(
                CauseCode::UNKNOWN_POOL_HANDLE,
                Vec::new(),
            ));
            let response = AsapMessage::HandleResolutionResponse {
                accepted: false,
                handle: PoolHandle::new(handle),
                policy: None,
                elements: Vec::new(),
                error,
            };
            self.out.transmit_served(conn, &response, served);
        }
    }

    /// Keep-alive timers: send the next keep-alive, or give up on an overdue one. Each
    /// call handles every timer due by `now` (supervision rounds deadlines up to a
    /// slice, so PEs due close together go out in one wake-up).
    pub(super) fn on_keep_alive_timers(&mut self, now: Instant) {
        while let Some(due) = self.sessions.supervision.pop_due(now) {
            if !self.sessions.has(due.conn, &due.handle, due.id) {
                self.sessions.supervision.release(&due);
                continue;
            }
            match due.phase {
                Phase::Idle => {
                    let deadline = now + self.config.keep_alive_timeout;
                    self.sessions.supervision.sent(&due, now, deadline);
                    // RSPLIB's form: with the PE Identifier, so a PE with several
                    // registrations answers for this one only (reference §10 D8).
                    let ka = AsapMessage::EndpointKeepAlive {
                        home: false,
                        server_id: self.config.id,
                        handle: due.handle,
                        id: Some(due.id),
                    };
                    self.out.transmit(due.conn, &ka);
                }
                Phase::Awaiting { .. } => {
                    self.sessions.supervision.release(&due);
                    self.sessions.remove(due.conn, &due.handle, due.id);
                    let reason = RemovalReason::KeepAliveTimeout;
                    let since = now.saturating_duration_since(due.alive);
                    self.out.metrics.on_failure_detected(reason, since);
                    self.request_removal(due.conn, due.handle, due.id, reason);
                }
            }
        }
    }

    /// Every PE registered through a lost connection is removed (RFC 5352 §3.5).
    pub(super) fn on_conn_down(&mut self, now: Instant, conn: ConnId) {
        let Some(pes) = self.sessions.down(conn) else {
            return;
        };
        let reason = RemovalReason::ConnectionLost;
        for (handle, id) in pes {
            if let Some(alive) = self.sessions.supervision.stop(&handle, id) {
                let since = now.saturating_duration_since(alive);
                self.out.metrics.on_failure_detected(reason, since);
            }
            self.request_removal(conn, handle, id, reason);
        }
    }

    /// The writer's answer to a registration from `conn`.
    pub(super) fn on_registered(
        &mut self,
        now: Instant,
        served: Served,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
        result: Result<(), OperationError>,
    ) {
        let rejected = result.is_err();
        if !rejected && !self.sessions.add(conn, handle.clone(), id) {
            // The connection went down while the writer was registering: undo.
            let reason = RemovalReason::ConnectionLost;
            let since = now.saturating_duration_since(served.received);
            self.out.metrics.on_failure_detected(reason, since);
            self.request_removal(conn, handle, id, reason);
            return;
        }
        if !self.sessions.is_up(conn) {
            return;
        }
        if !rejected {
            let supervision = &mut self.sessions.supervision;
            if supervision.is_supervised(&handle, id) {
                supervision.alive(&handle, id, conn, served.received);
            } else {
                let first = now + self.config.keep_alive_interval;
                supervision.start(handle.clone(), id, conn, first, served.received);
            }
        }
        let response = AsapMessage::RegistrationResponse {
            rejected,
            handle,
            id,
            error: result.err(),
        };
        self.out.transmit_served(conn, &response, Some(served));
    }

    /// The writer removed (or moved away) a PE registered through `conn`.
    pub(super) fn on_removed(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    ) {
        if !self.sessions.is_up(conn) {
            return;
        }
        self.sessions.remove(conn, &handle, id);
        // Removals this shard decided (keep-alive timeout, connection lost) were timed
        // when decided and are no longer supervised; the writer's (unreachable reports,
        // expiry) are timed here, when this shard learns of them.
        let supervision = &mut self.sessions.supervision;
        if supervision.conn_of(&handle, id) == Some(conn)
            && let Some(alive) = supervision.stop(&handle, id)
        {
            let since = now.saturating_duration_since(alive);
            self.out.metrics.on_failure_detected(reason, since);
        }
        // The PE asked (deregistration), or RFC 5352 §3.2: tell it its life ended.
        if matches!(reason, RemovalReason::Deregistered | RemovalReason::Expired) {
            self.out.transmit(
                conn,
                &AsapMessage::DeregistrationResponse {
                    handle,
                    id,
                    error: None,
                },
            );
        }
    }

    /// Asks the pool's writer to remove a PE registered through `conn` on this shard.
    pub(super) fn request_removal(
        &mut self,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
        reason: RemovalReason,
    ) {
        let origin = Origin::Local {
            shard: self.out.shard(),
            conn,
        };
        let msg = ShardMsg::Remove {
            origin,
            handle: handle.clone(),
            id,
            reason,
        };
        self.out.send_writer(&handle, msg);
    }
}
