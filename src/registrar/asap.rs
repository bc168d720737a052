//! ASAP on the connection side (RFC 5352 §3): decoding, answering, checking what only
//! the connection's shard can check, passing writes to the pool's writer, and keeping
//! the PEs registered through this shard's connections alive.

use std::time::Instant;

use super::conn::{asap_transport, filter_user_transport};
use super::rate::Limited;
use super::sessions::{Draining, REMOVAL_SLICE};
use super::supervision::{Phase, Probe};
use super::{ConnId, Event, Origin, Registrar, RemovalReason, Served, ServiceKind, ShardMsg};
use crate::handlespace::Handlespace;
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::{
    self, AsapMessage, AsapType, CauseCode, DecodeError, OperationError, PoolElement, UserTransport,
};

/// Bytes a resolution answer needs besides its pool element parameters and its Pool
/// Handle parameter: the common header and the largest Policy parameter (RFC 5354 §3.8:
/// type and at most [`wire::MAX_POLICY_VALUES`] values).
const ANSWER_OVERHEAD: usize = 4 + 8 + 4 * wire::MAX_POLICY_VALUES;

/// Bytes of pool element parameters a resolution answer for `handle` has room for: the
/// 16-bit message length less the header, the policy and the echoed handle (whatever
/// `limits.max_pool_handle_len` allows), and at most `cap`.
fn answer_room(handle: &[u8], cap: usize) -> usize {
    let handle_param = (4 + handle.len()).next_multiple_of(4);
    wire::MAX_MESSAGE_LEN
        .saturating_sub(ANSWER_OVERHEAD + handle_param)
        .min(cap)
}

/// Appends a positive HANDLE_RESOLUTION_RESPONSE for up to `n` PEs of `handle`'s pool
/// (selected by its policy, which advances) in at most `room` bytes of PE parameters;
/// returns how many PEs it holds. With none (no pool, none selectable, or the room too
/// small for one), `out` is left as it was.
///
/// Every part is copied from bytes encoded earlier, straight from the selection
/// ([`Handlespace::resolve_each`]), with no list of the selected PEs in between: the
/// PEs' parameters and the overall policy (the first PE's Policy parameter, which its
/// record keeps right before the PE) from their records, the Pool Handle parameter
/// from the pool (the request's handle is the pool's, byte for byte). Only a record
/// whose Policy parameter is not the one its policy encodes to (never, for
/// registrations this registrar checked) has the overall policy encoded afresh.
/// [`encode_resolution_generic`] writes the same bytes with the general encoder.
///
/// Each append tests `out`'s capacity and moves its length, so the fixed parts go in
/// as few appends as they can. (Working out the length first and copying into one
/// reserved slice costs more: the PEs are then looked up twice.)
fn encode_resolution(
    replica: &mut Handlespace,
    handle: &[u8],
    n: usize,
    room: usize,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    let mut answer = Answer {
        out,
        room,
        written: 0,
    };
    replica.resolve_each(handle, n, |headed_handle, e| answer.push(headed_handle, e));
    let Answer { out, written, .. } = answer;
    if written == 0 {
        return 0;
    }
    // The PEs' parameters are padded, so the message has no final padding to leave out.
    let Ok(len) = u16::try_from(out.len() - start) else {
        debug_assert!(false, "answer_room keeps the answer in bounds");
        out.truncate(start);
        return 0;
    };
    let [hi, lo] = len.to_be_bytes();
    out[start..start + 4].copy_from_slice(&[AsapType::HANDLE_RESOLUTION_RESPONSE.0, 0, hi, lo]);
    written
}

/// A positive resolution answer being written by [`encode_resolution`], one selected
/// PE at a time.
struct Answer<'o> {
    out: &'o mut Vec<u8>,
    /// Bytes of PE parameters still allowed: the message length is 16 bits, and
    /// answers are capped at `resolution_answer_bytes` (`answer_room` counts the
    /// header, handle and policy). 0 once a PE did not fit: the answer ends there, even
    /// if a later, smaller PE would (no PE's parameter is empty).
    room: usize,
    /// PEs in the answer so far.
    written: usize,
}

impl Answer<'_> {
    /// Appends the next selected PE, `e`, of the pool whose Pool Handle parameter,
    /// after room for the header, is `headed_handle`
    /// ([`crate::handlespace::Pool::headed_handle_param`]). Always inlined: it runs
    /// once per PE, inside the selection's walk.
    #[inline(always)]
    fn push(&mut self, headed_handle: &[u8], e: &crate::handlespace::Element) {
        let pe = e.encoded();
        let Some(left) = self.room.checked_sub(pe.len()) else {
            self.room = 0;
            return;
        };
        self.room = left;
        if self.written == 0 {
            Self::begin(self.out, headed_handle, e, pe);
        } else {
            self.out.extend_from_slice(pe);
        }
        self.written += 1;
    }

    /// Room for the header (filled in at the end, with the length) and the Pool Handle
    /// parameter, both in `headed_handle`, then the overall policy and the first PE's
    /// parameter `pe`. Out of line: once per answer, and it keeps [`Answer::push`]
    /// small.
    #[inline(never)]
    fn begin(out: &mut Vec<u8>, headed_handle: &[u8], e: &crate::handlespace::Element, pe: &[u8]) {
        out.extend_from_slice(headed_handle);
        // RSPLIB clients need the overall policy even for round robin.
        match e.policy_and_encoded() {
            Some(policy_and_first) => out.extend_from_slice(policy_and_first),
            None => encode_overall_policy(e, pe, out),
        }
    }
}

/// The overall policy encoded from `first`'s parsed policy, then `first`'s parameter
/// `pe`: for a record that keeps no copy of its Policy parameter
/// ([`crate::handlespace::Element::policy_and_encoded`]). Out of line: it never runs
/// for registrations this registrar checked.
#[cold]
#[inline(never)]
fn encode_overall_policy(first: &crate::handlespace::Element, pe: &[u8], out: &mut Vec<u8>) {
    let mut w = wire::Writer::new(out);
    first.policy().to_param().encode(&mut w);
    w.finish();
    out.extend_from_slice(pe);
}

/// [`encode_resolution`] with the general message encoder, from the selection `r`:
/// the reference the copying encoder is tested against.
#[cfg(test)]
fn encode_resolution_generic(
    r: &crate::handlespace::Resolution<'_>,
    handle: &[u8],
    room: usize,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    let mut written = 0;
    let policy = r.overall_policy();
    let encoded = wire::try_message(out, AsapType::HANDLE_RESOLUTION_RESPONSE.0, 0, |w| {
        wire::encode_handle_bytes(handle, w);
        if let Some(p) = policy {
            p.encode(w);
        }
        let mut room = room;
        for e in r.elements() {
            let Some(left) = room.checked_sub(e.encoded().len()) else {
                break;
            };
            room = left;
            written += 1;
            w.put_bytes(e.encoded());
        }
    });
    debug_assert!(encoded.is_ok(), "answer_room keeps the answer in bounds");
    if written == 0 {
        out.truncate(start);
    }
    written
}

impl Registrar {
    /// One ASAP message from `conn`; a positive answer to a plain resolution goes into
    /// `direct` if given (see [`Registrar::handle_asap_into`]). Returns whether it was
    /// a plain resolution, which changes no timer and sends nothing to other shards or
    /// to ENRP (a refused or negative one queues its answer and event as usual).
    /// Always inlined into its two callers, so that a resolution makes one call less on
    /// its way to the answer (-17 instructions in `bench/resolve-cost.sh`).
    #[inline(always)]
    pub(super) fn on_asap(
        &mut self,
        now: Instant,
        conn: ConnId,
        bytes: &[u8],
        direct: Option<&mut Vec<u8>>,
    ) -> bool {
        if !self.sessions.is_up(conn) {
            return false;
        }
        // The request that matters most, read in place (the general path below would
        // build a message with an owned handle first).
        if let Some((handle, items)) = wire::plain_resolution(bytes) {
            self.out.metrics.on_received(AsapType::HANDLE_RESOLUTION);
            self.on_resolution(now, conn, handle, items, direct);
            return true;
        }
        self.on_message(now, conn, bytes);
        false
    }

    /// Every ASAP message but a plain resolution. Out of line: inlined, its decoding
    /// would cost [`Registrar::on_asap`]'s plain resolutions registers and stack.
    #[inline(never)]
    fn on_message(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let decoded = match AsapMessage::decode(bytes) {
            Ok(d) => d,
            Err(error) => return self.malformed(conn, bytes, error),
        };
        self.out.metrics.on_received(decoded.message.kind());
        let is_error = matches!(decoded.message, AsapMessage::Error { .. });
        // RFC 5354 §3: parameters skipped with action bits 11 are reported, one cause
        // each (the first `wire::MAX_CAUSES`, each quoted whole or not at all); never in
        // answer to an ERROR (RFC 5352 §2.2.14).
        if let Some(error) = decoded.unrecognized_error(bytes)
            && !is_error
        {
            self.out.transmit(conn, &AsapMessage::Error { error });
        }
        if matches!(decoded.message, AsapMessage::EndpointUnreachable { .. })
            && !self.admit_unreachable(now, conn)
        {
            return;
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
                self.on_resolution(now, conn, handle.as_bytes(), items, None)
            }
            AsapMessage::EndpointKeepAliveAck { handle, id } => {
                let next = now + self.config.keep_alive_interval;
                // RSPLIB ignores acknowledgements for PEs it does not supervise; so do we.
                let supervision = &mut self.sessions.supervision;
                if let Some(sent) = supervision.acked(&handle, id, conn, now, next) {
                    let rtt = now.saturating_duration_since(sent);
                    self.out.metrics.keep_alive_rtt.record(rtt);
                    if self.sessions.supervision.take_probed(&handle, id) {
                        self.probe_answered(conn, handle, id);
                    }
                }
            }
            AsapMessage::EndpointUnreachable { handle, id } => {
                if self.refuse_unreachable(now, conn, handle.as_bytes()) {
                    return;
                }
                let msg = ShardMsg::Unreachable {
                    handle: handle.clone(),
                    id,
                    reporter: self.origin(conn),
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

    /// Whether an ENDPOINT_UNREACHABLE from `conn` is within the association's rate limit
    /// ([`super::Config::unreachable_rate`]). One over it is dropped without an answer,
    /// as RSPLIB's `MaxEURate` does (the RFC defines no answer to a report), counted and
    /// logged.
    fn admit_unreachable(&mut self, now: Instant, conn: ConnId) -> bool {
        let kind = Limited::EndpointUnreachable;
        if self
            .rates
            .admit(now, conn, kind, self.config.unreachable_rate)
        {
            return true;
        }
        self.out.metrics.answers.on_rate_limited(kind);
        self.out.events.push_back(Event::RateLimited { conn, kind });
        false
    }

    /// Whether a HANDLE_RESOLUTION from `conn` is within the association's rate limit
    /// ([`super::Config::resolution_rate`]); one over it is answered negatively with
    /// cause 0x000a, counted and logged.
    fn admit_resolution(&mut self, now: Instant, conn: ConnId) -> bool {
        let kind = Limited::HandleResolution;
        if self
            .rates
            .admit(now, conn, kind, self.config.resolution_rate)
        {
            return true;
        }
        self.out.metrics.answers.on_rate_limited(kind);
        self.out.events.push_back(Event::RateLimited { conn, kind });
        false
    }

    /// Answers an undecodable message with ASAP_ERROR and the RFC 5354 cause, quoting the
    /// offending TLV (or the whole message for an unknown type) if it is whole and fits
    /// (`wire::quote`; else the cause alone), unless the RFC says to stay silent or the
    /// message was itself an error.
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
        let pool_exists = self.replica.pool(handle.as_bytes()).is_some();
        let limits = (
            self.config.max_pes_per_association,
            self.config.max_pools_per_association,
        );
        if let Some(Err(limit)) = self.sessions.admit(conn, &handle, id, pool_exists, limits) {
            self.out.metrics.on_limit(limit);
            self.out.events.push_back(Event::LimitReached {
                conn,
                limit,
                handle: handle.clone(),
                id,
            });
            let error = OperationError::single(CauseCode::LACK_OF_RESOURCES, Vec::new());
            return self.reject(served, conn, handle, id, error);
        }
        // RFC 5352 §3.1 rule 4: the registering PR becomes the home PR.
        element.home = self.config.id;
        let expires = self.config.own_expiry(now, element.registration_life);
        let origin = self.origin(conn);
        let identity = self
            .sessions
            .info(conn)
            .and_then(|i| i.identity.as_deref())
            .map(std::sync::Arc::from);
        let msg = ShardMsg::Register {
            origin,
            handle: handle.clone(),
            element,
            expires,
            received: now,
            identity,
        };
        self.out.send_writer(&handle, msg);
    }

    pub(super) fn reject(
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
    /// A positive answer goes into `direct` if given (the runtime's send buffer of
    /// `conn`, see [`Registrar::handle_asap_into`]), else into the transmit queue;
    /// negative answers always go to the queue.
    pub(super) fn on_resolution(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &[u8],
        items: Option<u32>,
        direct: Option<&mut Vec<u8>>,
    ) {
        if self.refuse_resolution(now, conn, handle) {
            return;
        }
        let served = Some(Served {
            kind: ServiceKind::HandleResolution,
            received: now,
        });
        if !self.admit_resolution(now, conn) {
            // RSPLIB's MaxHRRate answers 0x0009 (unknown pool handle); the pool may well
            // exist, and a client told so may drop it from its cache, so the RFC 5354
            // cause that says why: 0x000a.
            return self.negative_resolution(conn, handle, CauseCode::REJECTED_SECURITY, served);
        }
        // RSPLIB: an absent or zero item count means the configured default; at most
        // the limit (RSPLIB: 128).
        let n = match items {
            None | Some(0) => self.config.max_resolution_items,
            Some(n) => n,
        }
        .min(self.config.resolution_items_limit) as usize;
        let room = answer_room(handle, self.config.resolution_answer_bytes);
        match direct {
            Some(tx) => {
                if encode_resolution(&mut self.replica, handle, n, room, tx) > 0 {
                    let kind = AsapType::HANDLE_RESOLUTION_RESPONSE;
                    self.out.metrics.on_sent_kind(kind);
                    self.unclocked.add(now);
                    return;
                }
            }
            None => {
                let mut payload = self.out.buffer();
                if encode_resolution(&mut self.replica, handle, n, room, &mut payload) > 0 {
                    return self.out.push_asap(conn, payload, served);
                }
                self.out.recycle(payload);
            }
        }
        // No pool, or no PE of it selectable (all of weight 0): a negative answer. (A
        // cap so low that not even one PE fits answers the same.)
        self.negative_resolution(conn, handle, CauseCode::UNKNOWN_POOL_HANDLE, served);
    }

    /// A negative HANDLE_RESOLUTION_RESPONSE: the handle echoed, one cause, no PE.
    fn negative_resolution(
        &mut self,
        conn: ConnId,
        handle: &[u8],
        cause: CauseCode,
        served: Option<Served>,
    ) {
        let response = AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: PoolHandle::new(handle),
            policy: None,
            elements: Vec::new(),
            error: Some(OperationError::single(cause, Vec::new())),
        };
        self.out.transmit_served(conn, &response, served);
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
                    self.send_keep_alive(due.conn, due.handle, due.id);
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

    fn send_keep_alive(&mut self, conn: ConnId, handle: PoolHandle, id: PoolElementId) {
        // RSPLIB's form: with the PE Identifier, so a PE with several registrations
        // answers for this one only (reference §10 D8).
        let ka = AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: self.config.id,
            handle,
            id: Some(id),
        };
        self.out.transmit(conn, &ka);
    }

    /// This shard's connection `conn` as an origin.
    fn origin(&self, conn: ConnId) -> Origin {
        Origin::Local {
            shard: self.out.shard(),
            conn,
        }
    }

    /// The writer counted enough unreachable reports for a PE supervised on `conn`
    /// (RFC 5352 §3.5 lets the registrar check it with a keep-alive). One that answered
    /// within the last keep-alive interval and timeout (every live PE has) gets a
    /// keep-alive now, and is removed only if that goes unanswered for the timeout,
    /// like any keep-alive failure; its acknowledgement voids the reports. One silent
    /// for longer is removed at once, as RSPLIB removes every reported PE.
    pub(super) fn on_probe(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        id: PoolElementId,
    ) {
        let window = self.config.keep_alive_interval + self.config.keep_alive_timeout;
        let recent = now.checked_sub(window).unwrap_or(now);
        let deadline = now + self.config.keep_alive_timeout;
        let supervision = &mut self.sessions.supervision;
        match supervision.probe(&handle, id, conn, recent, now, deadline) {
            Probe::Send => self.send_keep_alive(conn, handle, id),
            Probe::Pending => {}
            Probe::Silent | Probe::Unknown => {
                self.request_removal(conn, handle, id, RemovalReason::Unreachable)
            }
        }
    }

    /// The PE acknowledged a probe keep-alive: its reports start over.
    fn probe_answered(&mut self, conn: ConnId, handle: PoolHandle, id: PoolElementId) {
        self.out.metrics.on_probe_answered();
        let origin = self.origin(conn);
        let msg = ShardMsg::ProbeAnswered {
            origin,
            handle: handle.clone(),
            id,
        };
        self.out.send_writer(&handle, msg);
    }

    /// Every PE registered through a lost connection is removed (RFC 5352 §3.5): the
    /// first [`REMOVAL_SLICE`] at once, the rest a slice per
    /// [`Registrar::handle_timeout`] (due at once), so that a connection with 100,000
    /// PEs does not hold up the resolutions this shard and the writers serve meanwhile.
    /// Until its slice comes, a PE stays resolvable; pool users that find it dead
    /// fail over as they would before the loss was noticed.
    pub(super) fn on_conn_down(&mut self, now: Instant, conn: ConnId) {
        let Some(pes) = self.sessions.down(conn) else {
            return;
        };
        let mut d = Draining {
            conn,
            pes,
            since: now,
        };
        self.drain_slice(now, &mut d, REMOVAL_SLICE);
        if !d.pes.is_empty() {
            self.sessions.draining.push_back(d);
        }
    }

    /// Removes the next [`REMOVAL_SLICE`] PEs of lost connections.
    pub(super) fn on_drain(&mut self, now: Instant) {
        let mut budget = REMOVAL_SLICE;
        while budget > 0
            && let Some(mut d) = self.sessions.draining.pop_front()
        {
            budget -= self.drain_slice(now, &mut d, budget);
            if !d.pes.is_empty() {
                self.sessions.draining.push_front(d);
            }
        }
    }

    /// Removes up to `n` PEs of `d`; returns how many.
    fn drain_slice(&mut self, now: Instant, d: &mut Draining, n: usize) -> usize {
        let reason = RemovalReason::ConnectionLost;
        let from = d.pes.len().saturating_sub(n);
        let slice: Vec<_> = d.pes.drain(from..).collect();
        let count = slice.len();
        for (handle, id) in slice {
            if self.sessions.supervision.conn_of(&handle, id) == Some(d.conn)
                && let Some(alive) = self.sessions.supervision.stop(&handle, id)
            {
                let since = now.saturating_duration_since(alive);
                self.out.metrics.on_failure_detected(reason, since);
            }
            self.request_removal(d.conn, handle, id, reason);
        }
        if d.pes.is_empty() {
            d.pes = Vec::new();
        }
        count
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
        self.sessions.answered(conn, &handle, !rejected);
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
        let origin = self.origin(conn);
        let msg = ShardMsg::Remove {
            origin,
            handle: handle.clone(),
            id,
            reason,
        };
        self.out.send_writer(&handle, msg);
    }
}

#[cfg(test)]
mod encode_tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::handlespace::{Config, Handlespace};
    use crate::wire::{PolicyParam, PolicyType};

    /// A PE of the registrar tests ([`super::super::tests::element`]), at one address.
    fn element(id: u32, policy: PolicyParam) -> PoolElement {
        let at = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        super::super::tests::element(id, at, policy)
    }

    proptest! {
        /// The copying encoder writes what the general one does, byte for byte, for
        /// every policy, handle length, pool size, item count and answer cap, answer
        /// after answer (both replicas select alike from the same seed).
        #[test]
        fn the_copying_encoder_writes_what_the_general_one_does(
            kind in prop::sample::select(PolicyType::ALL.to_vec()),
            values in prop::collection::vec(0u32..2_000_000, 4),
            handle in prop::collection::vec(any::<u8>(), 1..40),
            pes in 1u32..12,
            items in 1usize..10,
            cap in prop::sample::select(vec![0usize, 40, 100, 65_535]),
        ) {
            let mut fast = Handlespace::new(Config::default(), 5);
            let mut general = Handlespace::new(Config::default(), 5);
            let pool = PoolHandle::new(&handle);
            // As many values as the policy takes: the first count it registers with.
            let policy = (0..=values.len())
                .filter_map(|n| PolicyParam::new(kind, &values[..n]))
                .find(|&p| Handlespace::new(Config::default(), 5)
                    .register(&pool, element(1, p), None)
                    .is_ok());
            prop_assume!(policy.is_some());
            let policy = policy.unwrap();
            for id in 1..=pes {
                prop_assert!(fast.register(&pool, element(id, policy), None).is_ok());
                prop_assert!(general.register(&pool, element(id, policy), None).is_ok());
            }
            let room = answer_room(&handle, cap);
            for _ in 0..3 {
                let mut a = vec![1, 2, 3];
                let mut b = vec![1, 2, 3];
                let na = encode_resolution(&mut fast, &handle, items, room, &mut a);
                let r = general.resolve(&handle, items).unwrap();
                let nb = encode_resolution_generic(&r, &handle, room, &mut b);
                prop_assert_eq!(na, nb);
                prop_assert_eq!(&a, &b);
            }
        }
    }

    /// A record whose Policy parameter is not what its parsed policy encodes to keeps
    /// no copy of it: the overall policy is then encoded from the parsed policy, as the
    /// general encoder does.
    #[test]
    fn a_record_without_a_policy_copy_is_answered_alike() {
        use std::sync::Arc;

        use crate::handlespace::{Policy, Record};

        let handle = PoolHandle::new(b"pool");
        let param = element(1, PolicyParam::new(PolicyType::LEAST_USED, &[5]).unwrap());
        let record = Arc::new(Record::new(&param, Policy::LeastUsed { load: 6 }));
        assert!(record.policy_tlv().is_none());
        let mut fast = Handlespace::new(Config::default(), 5);
        let mut general = Handlespace::new(Config::default(), 5);
        assert!(fast.insert(&handle, record.clone(), None).is_ok());
        assert!(general.insert(&handle, record, None).is_ok());
        let room = answer_room(b"pool", 65_535);
        let (mut a, mut b) = (vec![9], vec![9]);
        let na = encode_resolution(&mut fast, b"pool", 3, room, &mut a);
        let r = general.resolve(b"pool", 3).unwrap();
        let nb = encode_resolution_generic(&r, b"pool", room, &mut b);
        assert_eq!((na, &a), (nb, &b));
        assert_eq!(na, 1);
    }

    #[test]
    fn every_policy_is_copied_from_the_record() {
        for &kind in PolicyType::ALL {
            for n in 0..=4 {
                let values = [3, 1_000, 50, 7][..n].to_vec();
                let mut hs = Handlespace::new(Config::default(), 1);
                let policy = PolicyParam::new(kind, &values).unwrap();
                let pool = PoolHandle::new(b"p");
                if hs.register(&pool, element(1, policy), None).is_err() {
                    continue;
                }
                let e = hs.element(b"p", PoolElementId(1)).unwrap();
                let tlv = e.policy_tlv().expect("a checked registration's policy");
                let mut want = Vec::new();
                let mut w = wire::Writer::new(&mut want);
                e.policy().to_param().encode(&mut w);
                w.finish();
                assert_eq!(tlv, want, "{kind} {values:?}");
            }
        }
    }
}
