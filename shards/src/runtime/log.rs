//! Log lines for the registrar's events: debug for what happens per message, info for
//! changes an operator follows (ENRP peers and takeovers), warn for what may be an
//! attack or a misconfiguration.

use rserpool::enrp::EnrpEvent;
use rserpool::registrar::Event;

pub(super) fn event(shard: usize, e: &Event) {
    match e {
        Event::Registered { handle, id, conn } => {
            tracing::debug!(shard, %handle, id = id.0, conn = conn.0, "PE registered");
        }
        Event::RegistrationRejected { handle, id, cause } => {
            tracing::debug!(shard, %handle, id = id.0, %cause, "registration rejected");
        }
        Event::Removed { handle, id, reason } => {
            tracing::debug!(shard, %handle, id = id.0, ?reason, "PE removed");
        }
        Event::SpoofedDeregistration { conn, handle, id } => {
            tracing::warn!(shard, conn = conn.0, %handle, id = id.0, "deregistration from a connection that did not register the PE (RFC 5352 §2.2.2)");
        }
        Event::Malformed { conn, error } => {
            tracing::debug!(shard, conn = conn.0, ?error, "malformed ASAP message");
        }
        Event::Unexpected { conn, kind } => {
            tracing::debug!(shard, conn = conn.0, %kind, "unexpected ASAP message");
        }
        Event::PeerRefused {
            from,
            handle,
            id,
            why,
            cause,
        } => {
            tracing::debug!(shard, peer = %from, %handle, id = id.0, ?why, ?cause, "peer's change refused");
        }
        Event::Enrp(e) => enrp(shard, e),
        Event::RateLimited { conn, kind } => {
            tracing::debug!(
                shard,
                conn = conn.0,
                kind = kind.label(),
                "request over the association's rate limit"
            );
        }
        Event::AnswerFitted { conn, kind, fit } => {
            tracing::debug!(shard, conn = conn.0, %kind, ?fit, "answer too long for its length field, made to fit");
        }
        Event::TakeoverRefused {
            conn,
            owner,
            handle,
            id,
        } => {
            tracing::warn!(shard, conn = conn.0, owner = owner.0, %handle, id = id.0, "registration of a PE another live association registered refused (cause 0x000a)");
        }
        Event::LimitReached {
            conn,
            limit,
            handle,
            id,
        } => {
            tracing::warn!(shard, conn = conn.0, limit = limit.label(), %handle, id = id.0, "registration refused by a per-association limit (cause 0x0006)");
        }
        Event::Probing { handle, id } => {
            tracing::debug!(shard, %handle, id = id.0, "PE reported unreachable by enough associations: probing it with a keep-alive");
        }
        Event::AccessDenied {
            op,
            rule,
            conn,
            peer,
            handle,
            suppressed,
        } => {
            // The core logs at most one denial a second per shard.
            let handle = handle.as_ref().map(ToString::to_string).unwrap_or_default();
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            tracing::warn!(shard, op = op.label(), rule = %rule, conn = conn.map(|c| c.0), %peer, %handle, suppressed, "denied by access rule (cause 0x000a)");
        }
    }
}

fn enrp(shard: usize, e: &EnrpEvent) {
    // Plain fields at info and warn, where operators read them; the per-message
    // events at debug keep their whole value.
    let conn =
        |c: &Option<rserpool::registrar::ConnId>| c.map(|c| c.0.to_string()).unwrap_or_default();
    let id = |r: &Option<rserpool::RegistrarId>| r.map(|r| r.to_string()).unwrap_or_default();
    match e {
        EnrpEvent::Refused { .. }
        | EnrpEvent::Malformed { .. }
        | EnrpEvent::AuditStarted { .. }
        | EnrpEvent::AuditDone { .. } => tracing::debug!(shard, event = ?e, "ENRP"),
        EnrpEvent::ErrorReceived { sender, causes } => {
            let causes: Vec<String> = causes.iter().map(ToString::to_string).collect();
            tracing::warn!(shard, peer = %sender, causes = %causes.join(" "), "ENRP error from a peer");
        }
        EnrpEvent::AuditAbandoned { peer } => {
            tracing::warn!(shard, %peer, "ENRP audit abandoned");
        }
        EnrpEvent::Oversized { conn, kind } => {
            tracing::warn!(shard, conn = conn.0, %kind, "ENRP message too long for its length field, not sent");
        }
        EnrpEvent::PeerLearned { id: peer, conn: c } => {
            tracing::info!(shard, %peer, conn = %conn(c), "ENRP peer learned");
        }
        EnrpEvent::PeerDead { id: peer, pes } => {
            tracing::info!(shard, %peer, pes, "ENRP peer dead");
        }
        EnrpEvent::PeerRemoved { id: peer } => {
            tracing::info!(shard, %peer, "ENRP peer removed");
        }
        EnrpEvent::MentorChosen { id: mentor } => {
            tracing::info!(shard, %mentor, "ENRP mentor chosen");
        }
        EnrpEvent::Synchronised { mentor } => {
            tracing::info!(shard, mentor = %id(mentor), "ENRP start-up done");
        }
        EnrpEvent::TakeoverStarted { target, waiting } => {
            tracing::info!(shard, %target, waiting, "ENRP takeover started");
        }
        EnrpEvent::TakeoverCompleted {
            target,
            adopted,
            unanswered,
        } => {
            tracing::info!(shard, %target, adopted, unanswered, "ENRP takeover completed");
        }
        EnrpEvent::TakeoverAborted { target, why } => {
            tracing::info!(shard, %target, why, "ENRP takeover aborted");
        }
    }
}
