//! The settings a running registrar can take without a restart (the runtime's SIGHUP):
//! access rules, per-association rate limits and caps, the answer size cap. The rest
//! of [`Config`] shapes state built at start (the handlespace, ENRP, the announcer).

use super::access::{self, Denials};
use super::{Config, RateLimit, Registrar};

/// The reloadable part of [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloadable {
    pub access: access::Rules,
    pub resolution_rate: Option<RateLimit>,
    pub unreachable_rate: Option<RateLimit>,
    pub resolution_answer_bytes: usize,
    pub max_pes_per_association: usize,
    pub max_pools_per_association: usize,
}

impl Config {
    /// The settings [`Registrar::reload`] can change.
    pub fn reloadable(&self) -> Reloadable {
        Reloadable {
            access: self.access.clone(),
            resolution_rate: self.resolution_rate,
            unreachable_rate: self.unreachable_rate,
            resolution_answer_bytes: self.resolution_answer_bytes,
            max_pes_per_association: self.max_pes_per_association,
            max_pools_per_association: self.max_pools_per_association,
        }
    }
}

impl Registrar {
    /// Puts `r` in force from the next message on. New access rules apply to the
    /// connections already up too (their grants are worked out again), except an ENRP
    /// connection, checked once when it came up. A changed rate limit starts every
    /// association's bucket afresh. A lowered per-association cap refuses the next
    /// registration over it and removes nothing.
    pub fn reload(&mut self, r: &Reloadable) {
        self.next_timer = None;
        let c = &mut self.config;
        if c.resolution_rate != r.resolution_rate || c.unreachable_rate != r.unreachable_rate {
            self.rates = super::rate::RateLimiter::default();
        }
        c.resolution_rate = r.resolution_rate;
        c.unreachable_rate = r.unreachable_rate;
        c.resolution_answer_bytes = r.resolution_answer_bytes;
        c.max_pes_per_association = r.max_pes_per_association;
        c.max_pools_per_association = r.max_pools_per_association;
        if c.access != r.access {
            c.access = r.access.clone();
            let rules = &c.access;
            self.sessions.regrant(|info| {
                if rules.is_open() {
                    access::Grant::default()
                } else {
                    rules.grant(&info.peer_addrs, info.identity.as_deref())
                }
            });
            let denied = &mut self.out.metrics.access_denied;
            *denied = Denials::new(rules).with_counts_of(denied);
        }
    }
}
