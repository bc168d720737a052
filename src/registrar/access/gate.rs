//! Access control in the registrar: the one-line checks the ASAP handlers and the ENRP
//! inputs call, each answering a denial as its message type requires, counting it per
//! rule and logging it at most once a second.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::super::{ConnId, ConnInfo, Event, Registrar, Served, ServiceKind, Transmit};
use super::{Decision, Grant, Op};
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::{AsapMessage, CauseCode, OperationError};

/// At most one denial logged per shard in this interval; the others are counted in the
/// next logged one.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A shard's access-control state: the ENRP connections it refused (whose messages
/// in flight are dropped until they close) and the log limiter.
#[derive(Debug, Default)]
pub(in crate::registrar) struct Gate {
    refused: Vec<ConnId>,
    next_log: Option<Instant>,
    suppressed: u64,
}

impl Gate {
    /// Whether `conn` is an ENRP connection refused and not yet closed.
    pub(in crate::registrar) fn refused(&self, conn: ConnId) -> bool {
        !self.refused.is_empty() && self.refused.contains(&conn)
    }

    /// `conn` closed.
    pub(in crate::registrar) fn forget(&mut self, conn: ConnId) {
        if !self.refused.is_empty() {
            self.refused.retain(|c| *c != conn);
        }
    }
}

impl Registrar {
    /// What a new connection may do; `None` when access is open (nothing to work out).
    pub(in crate::registrar) fn grant(&self, info: &ConnInfo) -> Option<Grant> {
        (!self.config.access.is_open()).then(|| {
            self.config
                .access
                .grant(&info.peer_addrs, info.identity.as_deref())
        })
    }

    /// The verdict on `op` for `handle` from `conn`: one flag test when access is open.
    fn access(&self, conn: ConnId, op: Op, handle: &[u8]) -> Decision {
        if self.config.access.is_open() {
            return self.config.access.fallback();
        }
        match self.sessions.grant(conn) {
            Some(g) => self.config.access.check(g, op, handle),
            None => self.config.access.check_source(op, &[], None),
        }
    }

    /// Counts a denial and logs it, at most once per [`LOG_INTERVAL`].
    fn denied(
        &mut self,
        now: Instant,
        d: Decision,
        op: Op,
        conn: Option<ConnId>,
        peer: Option<IpAddr>,
        handle: Option<&[u8]>,
    ) {
        self.out.metrics.access_denied.count(d, op);
        let gate = &mut self.gate;
        if gate.next_log.is_some_and(|t| now < t) {
            gate.suppressed += 1;
            return;
        }
        gate.next_log = Some(now + LOG_INTERVAL);
        let rule = match d.rule {
            Some(i) => self
                .config
                .access
                .rules()
                .get(usize::from(i))
                .map(|r| r.name.clone()),
            None => None,
        };
        self.out.events.push_back(Event::AccessDenied {
            op,
            rule: rule.unwrap_or_else(|| "default".into()),
            conn,
            peer,
            handle: handle.map(PoolHandle::new),
            suppressed: std::mem::take(&mut gate.suppressed),
        });
    }

    /// A registration `conn` may not make: refused with cause 0x000a. True if refused.
    pub(in crate::registrar) fn refuse_registration(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &PoolHandle,
        id: PoolElementId,
    ) -> bool {
        if !self.register_denied(now, conn, handle) {
            return false;
        }
        let served = Served {
            kind: ServiceKind::Registration,
            received: now,
        };
        let error = OperationError::single(CauseCode::REJECTED_SECURITY, Vec::new());
        self.reject(served, conn, handle.clone(), id, error);
        true
    }

    /// Whether the rules deny `conn` registering into (or deregistering from) `handle`;
    /// a denial is counted and logged.
    fn register_denied(&mut self, now: Instant, conn: ConnId, handle: &PoolHandle) -> bool {
        let d = self.access(conn, Op::Register, handle.as_bytes());
        if d.allowed() {
            return false;
        }
        let bytes = Some(handle.as_bytes());
        self.denied(now, d, Op::Register, Some(conn), None, bytes);
        true
    }

    /// A deregistration from a source that may not register into the pool: refused
    /// with cause 0x000a. True if refused.
    pub(in crate::registrar) fn refuse_deregistration(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &PoolHandle,
        id: PoolElementId,
    ) -> bool {
        if !self.register_denied(now, conn, handle) {
            return false;
        }
        let error = Some(OperationError::single(
            CauseCode::REJECTED_SECURITY,
            Vec::new(),
        ));
        let response = AsapMessage::DeregistrationResponse {
            handle: handle.clone(),
            id,
            error,
        };
        self.out.transmit(conn, &response);
        true
    }

    /// A resolution `conn` may not make: a negative answer with cause 0x000a. True if
    /// refused.
    pub(in crate::registrar) fn refuse_resolution(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &[u8],
    ) -> bool {
        let d = self.access(conn, Op::Resolve, handle);
        if d.allowed() {
            return false;
        }
        self.denied(now, d, Op::Resolve, Some(conn), None, Some(handle));
        let served = Some(Served {
            kind: ServiceKind::HandleResolution,
            received: now,
        });
        let response = AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: PoolHandle::new(handle),
            policy: None,
            elements: Vec::new(),
            error: Some(OperationError::single(
                CauseCode::REJECTED_SECURITY,
                Vec::new(),
            )),
        };
        self.out.transmit_served(conn, &response, served);
        true
    }

    /// An unreachable report `conn` may not send: dropped (ASAP has no answer to it) and
    /// counted. True if refused.
    pub(in crate::registrar) fn refuse_unreachable(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &[u8],
    ) -> bool {
        let d = self.access(conn, Op::Unreachable, handle);
        if d.allowed() {
            return false;
        }
        self.denied(now, d, Op::Unreachable, Some(conn), None, Some(handle));
        true
    }

    /// An ENRP connection from (or to) a source that may not peer: closed, and its
    /// messages dropped until it is. True if refused.
    pub(in crate::registrar) fn refuse_enrp_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        info: &ConnInfo,
    ) -> bool {
        if self.config.access.is_open() {
            return false;
        }
        let d =
            self.config
                .access
                .check_source(Op::Enrp, &info.peer_addrs, info.identity.as_deref());
        if d.allowed() {
            return false;
        }
        let peer = info.peer_addrs.first().copied();
        self.denied(now, d, Op::Enrp, Some(conn), peer, None);
        self.gate.refused.push(conn);
        self.out.transmits.push_back(Transmit::Close { conn });
        true
    }

    /// An ENRP presence on the multicast group from a source that may not peer: ignored.
    /// True if refused.
    pub(in crate::registrar) fn refuse_presence(&mut self, now: Instant, from: IpAddr) -> bool {
        if self.config.access.is_open() {
            return false;
        }
        let d = self.config.access.check_source(Op::Enrp, &[from], None);
        if d.allowed() {
            return false;
        }
        self.denied(now, d, Op::Enrp, None, Some(from), None);
        true
    }
}
