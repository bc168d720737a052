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
    match e {
        EnrpEvent::Refused { .. }
        | EnrpEvent::Malformed { .. }
        | EnrpEvent::AuditStarted { .. }
        | EnrpEvent::AuditDone { .. } => tracing::debug!(shard, event = ?e, "ENRP"),
        EnrpEvent::ErrorReceived { .. }
        | EnrpEvent::AuditAbandoned { .. }
        | EnrpEvent::Oversized { .. } => {
            tracing::warn!(shard, event = ?e, "ENRP");
        }
        _ => tracing::info!(shard, event = ?e, "ENRP"),
    }
}
