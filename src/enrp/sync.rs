//! Keeping the handlespace in step with the peers (RFC 5353 §3.3, §3.6): handle
//! updates, handle tables served and downloaded, and the audit by checksum.

use std::time::Instant;

use super::peers::Download;
use super::table::Cursor;
use super::{
    Action, Enrp, EnrpEvent, PeerWrite, Phase, Refusal, Source, TABLE_CHUNK_CEILING, expiry,
};
use crate::handlespace::Handlespace;
use crate::ids::{PoolHandle, RegistrarId};
use crate::registrar::ConnId;
use crate::wire::{CauseCode, EnrpMessage, OperationError, PoolElement, PoolEntry, UpdateAction};

impl Enrp {
    /// Every shard has caught up with the writes issued before [`Action::Sync`]
    /// `token`: compare a peer's checksum with ours of its PEs.
    pub fn on_synced(&mut self, now: Instant, token: u64, hs: &Handlespace) {
        let Some((peer, theirs)) = self.compares.remove(&token) else {
            return;
        };
        let ours = hs.home_sum(peer).finish_as(self.config.checksum);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.comparing == Some(token) {
            p.comparing = None;
        }
        if ours == theirs {
            p.audit_misses = 0;
            p.audit_after = None;
            return;
        }
        if p.download.is_some() || !p.is_live() || p.audit_after.is_some_and(|t| now < t) {
            return;
        }
        let Some(link) = self.link_for(peer) else {
            return;
        };
        // RFC 5353 §3.6.3: mark what we hold for the peer, ask for its own PEs, purge
        // what it does not send again. Audits that do not converge back off.
        let marked = hs
            .elements_of_home(peer)
            .map(|(h, e)| (h.clone(), e.id()))
            .collect();
        let p = self.peers.get_mut(&peer).expect("checked above");
        if p.audit_misses > 0 {
            let factor = 1u32 << p.audit_misses.min(5);
            p.audit_after = Some(now + self.config.heartbeat * factor);
        }
        p.audit_misses += 1;
        p.download = Some(Download {
            link,
            owned_only: true,
            marked,
            deadline: now + self.config.max_time_no_response,
            received: 0,
        });
        self.metrics.audits_started += 1;
        self.events
            .push_back(EnrpEvent::AuditStarted { peer, ours, theirs });
        let ids = self.ids_to(peer);
        self.send(
            link,
            &EnrpMessage::HandleTableRequest {
                ids,
                owned_only: true,
            },
        );
    }

    pub(super) fn serve_table(
        &mut self,
        now: Instant,
        conn: ConnId,
        requester: RegistrarId,
        owned_only: bool,
        hs: &Handlespace,
    ) {
        let cursor = match self.cursors.remove(&requester) {
            Some(c) if c.owned_only == owned_only => c,
            _ => Cursor::new(hs, owned_only, now),
        };
        let mut cursor = cursor;
        cursor.touched = now;
        let max = self
            .config
            .table_chunk_elements
            .clamp(1, TABLE_CHUNK_CEILING);
        let (entries, more) = cursor.next_chunk(hs, self.id, max);
        if more {
            self.cursors.insert(requester, cursor);
        }
        let msg = EnrpMessage::HandleTableResponse {
            ids: self.ids_to(requester),
            reject: false,
            more,
            entries,
        };
        self.send(conn, &msg);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_table(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: RegistrarId,
        reject: bool,
        more: bool,
        entries: Vec<PoolEntry>,
        hs: &Handlespace,
    ) {
        let Some(p) = self.peers.get_mut(&sender) else {
            return;
        };
        let Some(d) = p.download.as_mut().filter(|d| d.link == conn) else {
            return;
        };
        if reject {
            return self.abandon_download(sender);
        }
        let owned_only = d.owned_only;
        let (unit, floor) = (self.life_unit, self.min_lifetime);
        let mut writes = Vec::new();
        let mut refusals = Vec::new();
        let mut reclaims = Vec::new();
        for entry in entries {
            for element in entry.elements {
                d.received += 1;
                d.marked.remove(&(entry.handle.clone(), element.id));
                if element.home == self.id {
                    // Ours in a mentor's table: PEs of our previous life (a restart with
                    // the same ID). Their connections died with it; reach them again,
                    // as a takeover does. In an audit (W=1) nobody lists our PEs. One we
                    // hold as ours already registered in this life (while we were still
                    // downloading): it stays where it is.
                    let held = hs
                        .element(entry.handle.as_bytes(), element.id)
                        .is_some_and(|e| e.home() == self.id);
                    match element.asap_transport.clone() {
                        _ if held => {}
                        Some(asap) if !owned_only => reclaims.push(Action::Adopt {
                            handle: entry.handle.clone(),
                            element,
                            from: self.id,
                            asap,
                        }),
                        _ => refusals.push(Refusal::Ours),
                    }
                    continue;
                }
                if owned_only && element.home != sender {
                    refusals.push(Refusal::NotItsHome);
                    continue;
                }
                let expires = expiry(unit, floor, now, &element);
                writes.push(PeerWrite::Update {
                    from: sender,
                    handle: entry.handle.clone(),
                    element,
                    expires,
                    source: if owned_only {
                        Source::Audit
                    } else {
                        Source::Mentor
                    },
                    received: now,
                });
            }
        }
        if more {
            d.deadline = now + self.config.max_time_no_response;
        }
        let finished = if more { None } else { p.download.take() };
        for w in writes {
            self.actions.push_back(Action::Write(w));
        }
        self.metrics.adopted += reclaims.len() as u64;
        self.actions.extend(reclaims);
        for r in refusals {
            self.refuse(Some(conn), sender, r);
        }
        match finished {
            None => {
                let ids = self.ids_to(sender);
                self.send(conn, &EnrpMessage::HandleTableRequest { ids, owned_only });
            }
            Some(d) => {
                let purged = d.marked.len();
                for (handle, id) in d.marked {
                    self.actions.push_back(Action::Write(PeerWrite::Remove {
                        from: sender,
                        handle,
                        id,
                        purge: true,
                    }));
                }
                if owned_only {
                    self.metrics.audits_completed += 1;
                    self.metrics.audit_purged += purged as u64;
                    self.events.push_back(EnrpEvent::AuditDone {
                        peer: sender,
                        received: d.received,
                        purged,
                    });
                } else if matches!(self.phase, Phase::Startup { mentor: Some(m), .. } if m == sender)
                {
                    self.end_startup(Some(sender));
                }
            }
        }
    }

    pub(super) fn on_update(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        sender: RegistrarId,
        action: UpdateAction,
        handle: PoolHandle,
        element: PoolElement,
    ) {
        // During an audit of the sender, what it updates now is not stale.
        if let Some(d) = self
            .peers
            .get_mut(&sender)
            .and_then(|p| p.download.as_mut())
        {
            d.marked.remove(&(handle.clone(), element.id));
        }
        match action {
            UpdateAction::ADD_PE => {
                if element.home == self.id {
                    return self.refuse(conn, sender, Refusal::Ours);
                }
                if element.home != sender {
                    return self.refuse(conn, sender, Refusal::NotItsHome);
                }
                let expires = expiry(self.life_unit, self.min_lifetime, now, &element);
                self.actions.push_back(Action::Write(PeerWrite::Update {
                    from: sender,
                    handle,
                    element,
                    expires,
                    source: Source::Update,
                    received: now,
                }));
            }
            UpdateAction::DEL_PE => {
                self.actions.push_back(Action::Write(PeerWrite::Remove {
                    from: sender,
                    handle,
                    id: element.id,
                    purge: false,
                }));
            }
            // An unknown action is a value we cannot act on (RFC 5354 §3: invalid).
            _ => {
                if let Some(conn) = conn {
                    let error = OperationError::single(CauseCode::INVALID_VALUES, Vec::new());
                    let ids = self.ids_to(sender);
                    self.send(conn, &EnrpMessage::Error { ids, error });
                }
            }
        }
    }
}
