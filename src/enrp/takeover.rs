//! Taking over a dead peer's PEs (RFC 5353 §3.5), with RSPLIB's tie-break.

use std::collections::HashSet;
use std::time::Instant;

use super::{Action, Enrp, EnrpEvent, PeerWrite, Takeover};
use crate::handlespace::Handlespace;
use crate::ids::RegistrarId;
use crate::registrar::ConnId;
use crate::wire::EnrpMessage;

impl Enrp {
    pub(super) fn start_takeover(&mut self, now: Instant, target: RegistrarId, hs: &Handlespace) {
        let waiting: HashSet<RegistrarId> = self
            .peers
            .values()
            .filter(|p| p.is_live() && p.id != target)
            .map(|p| p.id)
            .collect();
        self.metrics.takeovers_started += 1;
        self.events.push_back(EnrpEvent::TakeoverStarted {
            target,
            waiting: waiting.len(),
        });
        if let Some(p) = self.peers.get_mut(&target) {
            p.dead_since.get_or_insert(now);
        }
        // RFC 5353 §3.5.1: to every peer, the target included (it may be alive).
        let mut receivers = self.recipients();
        if let Some(c) = self.link_for(target) {
            receivers.push((target, c));
        }
        for (receiver, conn) in receivers {
            let ids = self.ids_to(receiver);
            self.send(conn, &EnrpMessage::InitTakeover { ids, target });
        }
        if waiting.is_empty() {
            // Nobody has to agree (RSPLIB waits for an acknowledgement that can never
            // come and gives up; we do not).
            return self.complete_takeover(target, hs);
        }
        self.takeovers.insert(
            target,
            Takeover {
                waiting,
                deadline: now + self.config.takeover_expiry,
            },
        );
    }

    pub(super) fn on_init_takeover(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        initiator: RegistrarId,
        target: RegistrarId,
        hs: &Handlespace,
    ) {
        if target == self.id {
            // RFC 5353 §3.5.1: we are alive; say so to everyone at once.
            for (receiver, c) in self.recipients() {
                if self.links.get(&c).is_some_and(|l| l.info.is_some()) {
                    self.send_presence(c, receiver, false, hs);
                }
            }
            return;
        }
        if self.takeovers.contains_key(&target) {
            if !self.config.takeover_winner.beats(initiator.0, self.id.0) {
                return; // ours wins; the initiator gives way when it hears ours
            }
            self.takeovers.remove(&target);
            self.metrics.takeovers_aborted += 1;
            self.events.push_back(EnrpEvent::TakeoverAborted {
                target,
                why: "another registrar won the tie-break",
            });
        }
        if let Some(p) = self.peers.get_mut(&target) {
            p.taken_over_by = Some((initiator, now));
        }
        // RSPLIB acknowledges even targets it does not know.
        if let Some(conn) = conn.or_else(|| self.link_for(initiator)) {
            let ids = self.ids_to(initiator);
            self.send(conn, &EnrpMessage::InitTakeoverAck { ids, target });
        }
    }

    /// RFC 5353 §3.5.2: tell the peers, then adopt every PE of the target.
    pub(super) fn complete_takeover(&mut self, target: RegistrarId, hs: &Handlespace) {
        let unanswered = self
            .takeovers
            .remove(&target)
            .map_or(0, |t| t.waiting.len());
        for (receiver, conn) in self.recipients() {
            if receiver == target {
                continue;
            }
            let ids = self.ids_to(receiver);
            self.send(conn, &EnrpMessage::TakeoverServer { ids, target });
        }
        let mut adopted = 0;
        for (handle, e) in hs.elements_of_home(target) {
            // A PE without an ASAP transport cannot be reached; it stays until its
            // registration life ends or it registers elsewhere.
            if let Some(asap) = e.param().asap_transport.clone() {
                adopted += 1;
                self.actions.push_back(Action::Adopt {
                    handle: handle.clone(),
                    element: e.param().clone(),
                    from: target,
                    asap,
                });
            }
        }
        self.metrics.takeovers_completed += 1;
        self.metrics.adopted += adopted as u64;
        self.events.push_back(EnrpEvent::TakeoverCompleted {
            target,
            adopted,
            unanswered,
        });
        self.remove_peer(target);
    }

    /// RFC 5353 §3.5.2: `taker` took over `target`; its PEs' home is now `taker`.
    pub(super) fn on_takeover_server(
        &mut self,
        taker: RegistrarId,
        target: RegistrarId,
        hs: &Handlespace,
    ) {
        if target == self.id {
            // We are alive; PEs that moved come back as ADD_PE from their new home.
            return;
        }
        for (handle, e) in hs.elements_of_home(target) {
            self.actions.push_back(Action::Write(PeerWrite::Rehome {
                from: target,
                to: taker,
                handle: handle.clone(),
                id: e.id(),
            }));
        }
        if self.takeovers.remove(&target).is_some() {
            self.metrics.takeovers_aborted += 1;
            self.events.push_back(EnrpEvent::TakeoverAborted {
                target,
                why: "another registrar completed it",
            });
        }
        if self.peers.contains_key(&target) {
            self.remove_peer(target);
        }
    }
}
