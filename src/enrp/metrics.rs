//! ENRP's counters: plain integers updated on the ENRP shard's thread, plus the
//! writers' counts of the peer updates they applied or refused, merged at scrape time
//! with the rest of a shard's [`crate::registrar::Metrics`].

use std::time::Duration;

use crate::registrar::Histogram;
use crate::wire::EnrpType;

/// ENRP message types counted: every type code up to ERROR (0x0a).
const TYPES: usize = 11;

/// Why a peer's change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// It names a home other than the peer that sent it (a peer may change only PEs
    /// whose home it is).
    NotItsHome,
    /// It would hand us a PE whose home is us, or change one of ours.
    Ours,
    /// The pool refused it (policy, transport or limits, RFC 5352 §3.1 rules).
    Pool,
    /// A DEL_PE or purge for a PE that is not there (not counted as an error).
    Unknown,
    /// The message's sender is not the peer its connection belongs to.
    WrongSender,
}

impl Refusal {
    pub const ALL: [Self; 5] = [
        Self::NotItsHome,
        Self::Ours,
        Self::Pool,
        Self::Unknown,
        Self::WrongSender,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::NotItsHome => "not_its_home",
            Self::Ours => "ours",
            Self::Pool => "pool_rules",
            Self::Unknown => "unknown_element",
            Self::WrongSender => "wrong_sender",
        }
    }
}

/// ENRP figures of one shard (the ENRP shard for messages, audits and takeovers; every
/// writer for the updates it applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpMetrics {
    received: [u64; TYPES],
    sent: [u64; TYPES],
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Handle updates (ADD_PE and DEL_PE) sent, one per peer.
    pub updates_sent: u64,
    /// Peer changes applied by the writers (updates, table entries, purges, takeovers).
    pub updates_applied: u64,
    refused: [u64; Refusal::ALL.len()],
    /// Audits started (a checksum mismatch) and finished (the last table chunk).
    pub audits_started: u64,
    pub audits_completed: u64,
    /// PEs an audit removed because their home no longer had them.
    pub audit_purged: u64,
    /// Takeovers this registrar started, completed (PEs adopted) and gave up (the
    /// target came back, or another registrar won).
    pub takeovers_started: u64,
    pub takeovers_completed: u64,
    pub takeovers_aborted: u64,
    /// PEs adopted in takeovers.
    pub adopted: u64,
    /// Peer update received on the ENRP shard → applied by the pool's writer.
    pub update_apply: Histogram,
}

impl Default for EnrpMetrics {
    fn default() -> Self {
        Self {
            received: [0; TYPES],
            sent: [0; TYPES],
            malformed: 0,
            updates_sent: 0,
            updates_applied: 0,
            refused: [0; Refusal::ALL.len()],
            audits_started: 0,
            audits_completed: 0,
            audit_purged: 0,
            takeovers_started: 0,
            takeovers_completed: 0,
            takeovers_aborted: 0,
            adopted: 0,
            update_apply: Histogram::latency(),
        }
    }
}

impl EnrpMetrics {
    /// Well-formed ENRP messages received, by type.
    pub fn received(&self, kind: EnrpType) -> u64 {
        self.received.get(usize::from(kind.0)).copied().unwrap_or(0)
    }

    /// ENRP messages sent, by type.
    pub fn sent(&self, kind: EnrpType) -> u64 {
        self.sent.get(usize::from(kind.0)).copied().unwrap_or(0)
    }

    /// Peer changes refused, by reason.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize]
    }

    pub(crate) fn on_received(&mut self, kind: EnrpType) {
        if let Some(c) = self.received.get_mut(usize::from(kind.0)) {
            *c += 1;
        }
    }

    /// Counts an encoded message by its type byte.
    pub(crate) fn on_sent(&mut self, payload: &[u8]) {
        if let Some(c) = payload
            .first()
            .and_then(|t| self.sent.get_mut(usize::from(*t)))
        {
            *c += 1;
        }
    }

    pub(crate) fn on_refused(&mut self, why: Refusal) {
        self.refused[why as usize] += 1;
    }

    pub(crate) fn on_applied(&mut self, took: Option<Duration>) {
        self.updates_applied += 1;
        if let Some(d) = took {
            self.update_apply.record(d);
        }
    }

    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &Self) {
        for (a, b) in self.received.iter_mut().zip(o.received) {
            *a += b;
        }
        for (a, b) in self.sent.iter_mut().zip(o.sent) {
            *a += b;
        }
        for (a, b) in self.refused.iter_mut().zip(o.refused) {
            *a += b;
        }
        self.malformed += o.malformed;
        self.updates_sent += o.updates_sent;
        self.updates_applied += o.updates_applied;
        self.audits_started += o.audits_started;
        self.audits_completed += o.audits_completed;
        self.audit_purged += o.audit_purged;
        self.takeovers_started += o.takeovers_started;
        self.takeovers_completed += o.takeovers_completed;
        self.takeovers_aborted += o.takeovers_aborted;
        self.adopted += o.adopted;
        self.update_apply.merge(&o.update_apply);
    }
}
