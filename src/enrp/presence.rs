//! Start-up, heartbeats and liveness (RFC 5353 §3.2, §3.4): who the peers are, how
//! they are reached, and when one is dead.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::peers::{self, Download, Link, Peer, Reach};
use super::{Action, Enrp, EnrpEvent, Phase, RECONNECT_FIRST};
use crate::handlespace::Handlespace;
use crate::ids::RegistrarId;
use crate::registrar::ConnId;
use crate::wire::{EnrpIds, EnrpMessage};

impl Enrp {
    pub(super) fn start(&mut self, now: Instant, hs: &Handlespace) {
        self.phase = if self.statics.is_empty() && !self.config.multicast {
            self.events
                .push_back(EnrpEvent::Synchronised { mentor: None });
            Phase::Normal
        } else {
            Phase::Startup {
                until: now + self.config.mentor_discovery,
                mentor: None,
            }
        };
        for i in 0..self.statics.len() {
            self.connect_static(i);
        }
        // The first multicast presence goes out at once, so a peer on the group can be
        // our mentor; then every cycle.
        self.heartbeat(now, hs);
    }

    /// A download from `peer` ends without its last chunk (refused, timed out, or its
    /// connection lost): nothing is purged, and a mentor whose download failed is a
    /// mentor no more (the next peer heard may be).
    pub(super) fn abandon_download(&mut self, peer: RegistrarId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.download = None;
        }
        self.events.push_back(EnrpEvent::AuditAbandoned { peer });
        self.forget_mentor(peer);
    }

    /// A mentor whose download failed is a mentor no more; the next peer heard may be.
    pub(super) fn forget_mentor(&mut self, id: RegistrarId) {
        if let Phase::Startup {
            until,
            mentor: Some(m),
        } = self.phase
            && m == id
        {
            self.phase = Phase::Startup {
                until,
                mentor: None,
            };
        }
    }

    pub(super) fn end_startup(&mut self, mentor: Option<RegistrarId>) {
        if matches!(self.phase, Phase::Startup { .. }) {
            self.phase = Phase::Normal;
            self.events.push_back(EnrpEvent::Synchronised { mentor });
        }
    }

    pub(super) fn connect_static(&mut self, i: usize) {
        let conn = self.new_conn();
        let s = &mut self.statics[i];
        s.link = Some(conn);
        s.retry_at = None;
        let address = s.address;
        self.links.insert(
            conn,
            Link {
                peer: s.id,
                info: None,
                outbound: true,
            },
        );
        if let Some(id) = s.id
            && let Some(p) = self.peers.get_mut(&id)
        {
            p.link = Some(conn);
        }
        self.actions.push_back(Action::Connect {
            conn,
            transport: address.transport,
            addrs: vec![address.addr.ip()],
            port: address.addr.port(),
        });
    }

    pub(super) fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// RFC 5353 §3.4.1: our PRESENCE to every peer (and every configured peer not heard
    /// from yet), and to the group.
    pub(super) fn heartbeat(&mut self, now: Instant, hs: &Handlespace) {
        for (receiver, conn) in self.recipients() {
            if self.links.get(&conn).is_some_and(|l| l.info.is_some()) {
                self.send_presence(conn, receiver, false, hs);
            } else if receiver != RegistrarId::NONE {
                // Not connected yet: the presence goes out when it is (conn up).
            }
        }
        if self.config.multicast {
            let msg = self.presence(RegistrarId::NONE, false, None, hs);
            if let Some(msg) = msg {
                let mut payload = Vec::new();
                msg.encode(&mut payload);
                self.metrics.on_sent(&payload);
                self.actions.push_back(Action::Multicast { payload });
            }
        }
        // RSPLIB's cycle: the configured period, each drawn within ±12.5 %.
        let base = self.config.heartbeat.as_micros() as u64;
        let jitter = base / 8;
        let period = base - jitter + self.rng.below(2 * jitter + 1);
        self.next_heartbeat = Some(now + Duration::from_micros(period));
    }

    /// Who gets messages sent to "every peer": each live peer on its connection
    /// (opening one where needed), and each configured peer whose ID is unknown, with
    /// Receiving Server's ID 0 (as RSPLIB).
    pub(super) fn recipients(&mut self) -> Vec<(RegistrarId, ConnId)> {
        let ids: Vec<RegistrarId> = self
            .peers
            .values()
            .filter(|p| p.is_live())
            .map(|p| p.id)
            .collect();
        let mut out: Vec<(RegistrarId, ConnId)> = ids
            .into_iter()
            .filter_map(|id| self.link_for(id).map(|c| (id, c)))
            .collect();
        out.extend(
            self.statics
                .iter()
                .filter(|s| s.id.is_none())
                .filter_map(|s| s.link.map(|c| (RegistrarId::NONE, c))),
        );
        out
    }

    /// The connection to send to `peer` on: its own, another one it talks on, or a new
    /// one to where it said it is.
    pub(super) fn link_for(&mut self, peer: RegistrarId) -> Option<ConnId> {
        let p = self.peers.get(&peer)?;
        if let Some(c) = p.link.filter(|c| self.links.contains_key(c)) {
            return Some(c);
        }
        let any = self
            .links
            .iter()
            .filter(|(_, l)| l.peer == Some(peer) && l.info.is_some())
            .map(|(c, _)| *c)
            .min();
        if let Some(c) = any {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.link = Some(c);
            }
            return Some(c);
        }
        let reach = p.reach.clone()?;
        let conn = self.new_conn();
        self.links.insert(
            conn,
            Link {
                peer: Some(peer),
                info: None,
                outbound: true,
            },
        );
        if let Some(p) = self.peers.get_mut(&peer) {
            p.link = Some(conn);
        }
        self.actions.push_back(Action::Connect {
            conn,
            transport: reach.transport,
            addrs: reach.addrs,
            port: reach.port,
        });
        Some(conn)
    }

    /// Our Server Information as seen over `conn`: the ENRP endpoint of the
    /// connection's transport, with the connection's local addresses when the endpoint
    /// is a wildcard.
    pub(super) fn server_info(
        &self,
        conn: Option<ConnId>,
    ) -> Option<crate::wire::ServerInformation> {
        let info = conn
            .and_then(|c| self.links.get(&c))
            .and_then(|l| l.info.as_ref());
        let transport = info.map(|i| i.transport);
        let endpoint = self
            .config
            .endpoints
            .iter()
            .find(|e| Some(e.transport) == transport)
            .or_else(|| self.config.endpoints.first())?;
        let mut addrs: Vec<IpAddr> = if !endpoint.addr.ip().is_unspecified() {
            vec![endpoint.addr.ip()]
        } else {
            match info {
                Some(i) if !i.local_addrs.is_empty() => i.local_addrs.clone(),
                _ => self.config.host_addrs.clone(),
            }
        };
        addrs.retain(|a| !a.is_unspecified());
        if addrs.is_empty() {
            return None;
        }
        Some(crate::wire::ServerInformation {
            server_id: self.id,
            transport: peers::transport_of(endpoint.transport, &addrs, endpoint.addr.port()),
        })
    }

    pub(super) fn presence(
        &self,
        receiver: RegistrarId,
        reply_required: bool,
        conn: Option<ConnId>,
        hs: &Handlespace,
    ) -> Option<EnrpMessage> {
        // RSPLIB requires the checksum and the server information in every PRESENCE.
        let info = self.server_info(conn)?;
        Some(EnrpMessage::Presence {
            ids: EnrpIds {
                sender: self.id,
                receiver,
            },
            reply_required,
            checksum: Some(hs.home_sum(self.id).finish_as(self.config.checksum)),
            info: Some(info),
        })
    }

    pub(super) fn send_presence(
        &mut self,
        conn: ConnId,
        receiver: RegistrarId,
        reply_required: bool,
        hs: &Handlespace,
    ) {
        if let Some(msg) = self.presence(receiver, reply_required, Some(conn), hs) {
            self.send(conn, &msg);
        }
    }

    pub(super) fn check_peers(&mut self, now: Instant, hs: &Handlespace) {
        let ids: Vec<RegistrarId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if let Some(d) = &p.download
                && d.deadline <= now
            {
                self.abandon_download(id);
            }
            let p = self.peers.get_mut(&id).expect("present");
            if let Some(since) = p.dead_since {
                // Another registrar said it takes this one over; if its PEs are still
                // here long after, that takeover never finished: do it ourselves.
                if now >= since + self.config.takeover_expiry * 2 {
                    if hs.home_count(id) > 0 && !self.takeovers.contains_key(&id) {
                        self.start_takeover(now, id, hs);
                    } else if hs.home_count(id) == 0 {
                        self.remove_peer(id);
                    }
                }
                continue;
            }
            match p.probe {
                None if now >= p.last_heard + self.config.max_time_last_heard => {
                    // RFC 5353 §3.4.3: silent too long; ask for a reply.
                    p.probe = Some(now + self.config.max_time_no_response);
                    if let Some(conn) = self.link_for(id)
                        && self.links.get(&conn).is_some_and(|l| l.info.is_some())
                    {
                        self.send_presence(conn, id, true, hs);
                    }
                }
                Some(deadline) if now >= deadline => self.peer_dead(now, id, hs),
                _ => {}
            }
        }
    }

    /// RFC 5353 §3.4.3, §3.5: a peer that did not answer is dead; its PEs are taken
    /// over, unless another registrar already does that.
    pub(super) fn peer_dead(&mut self, now: Instant, id: RegistrarId, hs: &Handlespace) {
        let pes = hs.home_count(id);
        self.events.push_back(EnrpEvent::PeerDead { id, pes });
        if pes == 0 {
            return self.remove_peer(id);
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.dead_since = Some(now);
        p.probe = None;
        p.download = None;
        let taker = p.taken_over_by.map(|(t, _)| t);
        let taker_live = taker.is_some_and(|t| self.peers.get(&t).is_some_and(Peer::is_live));
        if !taker_live {
            self.start_takeover(now, id, hs);
        }
    }

    pub(super) fn remove_peer(&mut self, id: RegistrarId) {
        let Some(p) = self.peers.remove(&id) else {
            return;
        };
        self.takeovers.remove(&id);
        self.cursors.remove(&id);
        self.events.push_back(EnrpEvent::PeerRemoved { id });
        if let Some(i) = p.static_index
            && let Some(s) = self.statics.get_mut(i)
        {
            // A configured peer goes back to "ID unknown" (as RSPLIB) and is kept
            // contacted, so it rejoins when it comes back.
            s.id = None;
            if let Some(c) = s.link
                && let Some(l) = self.links.get_mut(&c)
            {
                l.peer = None;
            }
        }
        // Connections it used are closed; a configured peer's is kept for its return.
        let closing: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(c, l)| {
                l.peer == Some(id) && !self.statics.iter().any(|s| s.link == Some(**c))
            })
            .map(|(c, _)| *c)
            .collect();
        for c in closing {
            if let Some(l) = self.links.get_mut(&c) {
                l.peer = None;
            }
            self.actions.push_back(Action::Close { conn: c });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_presence(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        sender: RegistrarId,
        reply_required: bool,
        checksum: Option<u16>,
        reach: Option<Reach>,
        hs: &Handlespace,
    ) {
        let new = !self.peers.contains_key(&sender);
        let p = self
            .peers
            .entry(sender)
            .or_insert_with(|| Peer::new(sender, now));
        p.last_heard = now;
        p.probe = None;
        // RFC 5353 §3.5.1: a takeover target that speaks is alive after all.
        p.dead_since = None;
        p.taken_over_by = None;
        if let Some(r) = reach {
            p.reach = Some(r);
        }
        if let Some(c) = conn
            && p.link.is_none()
        {
            p.link = Some(c);
        }
        if self.takeovers.remove(&sender).is_some() {
            self.metrics.takeovers_aborted += 1;
            self.events.push_back(EnrpEvent::TakeoverAborted {
                target: sender,
                why: "it is alive",
            });
        }
        self.bind_static(sender, conn);
        if new {
            self.events
                .push_back(EnrpEvent::PeerLearned { id: sender, conn });
            // RSPLIB greets a peer learned from a PRESENCE with one requiring a reply.
            if let Some(c) = conn.or_else(|| self.link_for(sender))
                && !reply_required
            {
                self.send_presence(c, sender, true, hs);
            }
        }
        if reply_required && let Some(c) = conn.or_else(|| self.link_for(sender)) {
            self.send_presence(c, sender, false, hs);
        }
        let Some(conn) = conn else {
            return;
        };
        // RFC 5353 §3.2: the first peer heard while starting is the mentor: its peer
        // list, then its whole handle table.
        if let Phase::Startup {
            until,
            mentor: None,
        } = self.phase
        {
            self.phase = Phase::Startup {
                until,
                mentor: Some(sender),
            };
            self.events
                .push_back(EnrpEvent::MentorChosen { id: sender });
            self.list_request(conn, sender);
            let p = self.peers.get_mut(&sender).expect("inserted above");
            p.download = Some(Download {
                link: conn,
                owned_only: false,
                marked: HashSet::new(),
                deadline: now + self.config.max_time_no_response,
                received: 0,
            });
            let ids = self.ids_to(sender);
            self.send(
                conn,
                &EnrpMessage::HandleTableRequest {
                    ids,
                    owned_only: false,
                },
            );
            return;
        }
        let p = self.peers.get_mut(&sender).expect("inserted above");
        if !p.listed {
            self.list_request(conn, sender);
        }
        // RFC 5353 §3.6: audit, once the shards have applied what came before.
        let p = self.peers.get_mut(&sender).expect("inserted above");
        if let Some(theirs) = checksum
            && p.download.is_none()
            && p.comparing.is_none()
            && p.audit_after.is_none_or(|t| now >= t)
        {
            let token = self.next_token;
            self.next_token += 1;
            p.comparing = Some(token);
            self.compares.insert(token, (sender, theirs));
            self.actions.push_back(Action::Sync { token });
        }
    }

    pub(super) fn list_request(&mut self, conn: ConnId, peer: RegistrarId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.listed = true;
        }
        let ids = self.ids_to(peer);
        self.send(conn, &EnrpMessage::ListRequest { ids });
    }

    /// A configured peer is identified by the connection we opened to it, or by its
    /// advertised address.
    pub(super) fn bind_static(&mut self, id: RegistrarId, conn: Option<ConnId>) {
        let reach = self.peers.get(&id).and_then(|p| p.reach.clone());
        let Some(i) = self.statics.iter().position(|s| {
            s.id == Some(id)
                || (s.id.is_none()
                    && ((conn.is_some() && s.link == conn)
                        || reach
                            .as_ref()
                            .is_some_and(|r| r.overlaps(&Reach::from_address(s.address)))))
        }) else {
            return;
        };
        let s = &mut self.statics[i];
        s.id = Some(id);
        s.backoff = RECONNECT_FIRST;
        let link = s.link;
        if let Some(c) = link
            && let Some(l) = self.links.get_mut(&c)
        {
            l.peer.get_or_insert(id);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.static_index = Some(i);
            if let Some(c) = link {
                p.link = Some(c);
            }
            if p.reach.is_none() {
                p.reach = Some(Reach::from_address(self.statics[i].address));
            }
        }
    }

    /// A peer named in an ENRP_LIST_RESPONSE: a new one is greeted (RSPLIB: PRESENCE
    /// without reply required); a known one's address is updated.
    pub(super) fn learn_listed(
        &mut self,
        now: Instant,
        info: &crate::wire::ServerInformation,
        hs: &Handlespace,
    ) {
        let id = info.server_id;
        if id == RegistrarId::NONE || id == self.id {
            return;
        }
        let advertised: Vec<IpAddr> = match &info.transport {
            crate::wire::ServerTransport::Sctp(s) => s.addresses.clone(),
            crate::wire::ServerTransport::Tcp(t) => vec![t.address],
        };
        let Some(reach) = Reach::from_info(info, &advertised) else {
            return;
        };
        match self.peers.get_mut(&id) {
            Some(p) => {
                if p.static_index.is_none() {
                    p.reach = Some(reach);
                }
            }
            None => {
                let mut p = Peer::new(id, now);
                p.reach = Some(reach);
                self.peers.insert(id, p);
                self.events
                    .push_back(EnrpEvent::PeerLearned { id, conn: None });
                self.bind_static(id, None);
                if let Some(c) = self.link_for(id)
                    && self.links.get(&c).is_some_and(|l| l.info.is_some())
                {
                    self.send_presence(c, id, false, hs);
                }
            }
        }
    }
}
