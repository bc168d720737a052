//! The ENRP shard's side of the registrar: feeding replica changes to the ENRP server,
//! and carrying out what it asks (transmits, writes, barriers, adoptions).

use std::time::Instant;

use super::{ConnId, Event, Origin, Protocol, Registrar, ShardId, ShardMsg, Transmit, Transport};
use crate::enrp::Action;
use crate::ids::{PoolHandle, RegistrarId};
use crate::wire::{AsapMessage, PoolElement, SctpTransport};

/// Transports tried, in order, to reach an adopted PE's ASAP transport: the RFC's SCTP
/// first, then TCP for PEs that registered over TCP (whose ASAP transport names the
/// address and port of their registrar connection, where they also accept one).
const ADOPT_TRANSPORTS: [Transport; 2] = [Transport::Sctp, Transport::Tcp];

impl Registrar {
    /// Hands ENRP the replica's changes and carries out its actions; true if it did
    /// anything (which may have produced more local work).
    pub(super) fn drain_enrp(&mut self, now: Instant) -> bool {
        let Some(enrp) = &mut self.enrp else {
            return false;
        };
        let mut progressed = false;
        if let Some((_, changes)) = self.out.changes.as_mut().filter(|(_, c)| !c.is_empty()) {
            for c in std::mem::take(changes) {
                enrp.on_change(&c.handle, &c.element, c.deleted);
            }
            progressed = true;
        }
        while let Some(e) = enrp.poll_event() {
            self.out.events.push_back(Event::Enrp(e));
        }
        let mut actions = Vec::new();
        while let Some(a) = enrp.poll_action() {
            actions.push(a);
        }
        for a in actions {
            progressed = true;
            self.enrp_action(now, a);
        }
        progressed
    }

    fn enrp_action(&mut self, now: Instant, action: Action) {
        match action {
            Action::Send { conn, payload } => {
                self.out
                    .transmits
                    .push_back(Transmit::Enrp { conn, payload });
            }
            Action::Connect {
                conn,
                transport,
                addrs,
                port,
            } => self.out.transmits.push_back(Transmit::Connect {
                conn,
                protocol: Protocol::Enrp,
                transports: vec![transport],
                addrs,
                port,
            }),
            Action::Close { conn } => self.out.transmits.push_back(Transmit::Close { conn }),
            Action::Multicast { payload } => {
                self.out
                    .transmits
                    .push_back(Transmit::EnrpMulticast { payload });
            }
            Action::Write(w) => {
                let handle = w.handle().clone();
                self.out.send_writer(&handle, ShardMsg::Peer(w));
            }
            Action::Adopt {
                handle,
                element,
                from,
                asap,
            } => self.adopt(now, handle, element, from, asap),
            Action::Sync { token } => {
                let me = self.out.shard();
                let others = self.out.router().shards() - 1;
                if others == 0 {
                    if let Some(enrp) = &mut self.enrp {
                        enrp.on_synced(now, token, &self.replica);
                    }
                    return;
                }
                self.syncs.insert(token, others);
                for s in 0..self.out.router().shards() {
                    if ShardId(s) != me {
                        let msg = ShardMsg::Sync {
                            token,
                            reply_to: me,
                        };
                        self.out.send_shard(ShardId(s), msg);
                    }
                }
            }
        }
    }

    /// RFC 5353 §3.5.2: reach the PE at its ASAP transport with a keep-alive whose home
    /// flag is set (one connection per ASAP transport, shared by the PEs behind it) and
    /// supervise it; the writer makes it ours.
    fn adopt(
        &mut self,
        now: Instant,
        handle: PoolHandle,
        element: PoolElement,
        from: RegistrarId,
        asap: SctpTransport,
    ) {
        let id = element.id;
        if self.sessions.supervision.is_supervised(&handle, id) {
            // Registered here meanwhile (or never lost): its supervision stays on the
            // connection it registered on.
            return;
        }
        let mut addrs = asap.addresses.clone();
        addrs.sort_unstable();
        let key = (addrs, asap.port);
        let conn = match self.adopting.get(&key) {
            Some(c) => *c,
            None => {
                self.next_outbound += 1;
                let conn = ConnId(self.next_outbound);
                let info = super::ConnInfo::new(
                    Transport::Sctp,
                    Protocol::Asap,
                    asap.addresses.clone(),
                    asap.port,
                );
                self.sessions.up(conn, info);
                self.out.transmits.push_back(Transmit::Connect {
                    conn,
                    protocol: Protocol::Asap,
                    transports: ADOPT_TRANSPORTS.to_vec(),
                    addrs: asap.addresses.clone(),
                    port: asap.port,
                });
                self.adopting.insert(key, conn);
                conn
            }
        };
        self.sessions.add(conn, handle.clone(), id);
        let ka = AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: self.config.id,
            handle: handle.clone(),
            id: Some(id),
        };
        self.out.transmit(conn, &ka);
        // The connection has to come up first: twice the usual wait.
        let deadline = now + self.config.keep_alive_timeout * 2;
        self.sessions
            .supervision
            .start_awaiting(handle.clone(), id, conn, now, deadline);
        let expires = self.config.own_expiry(now, element.registration_life);
        let origin = Origin::Local {
            shard: self.out.shard(),
            conn,
        };
        let msg = ShardMsg::Adopt {
            origin,
            handle: handle.clone(),
            element,
            from,
            expires,
        };
        self.out.send_writer(&handle, msg);
    }
}
