//! ASAP server announces (RFC 5352 §3.6): shard 0 announces for the whole registrar.

use std::time::Instant;

use super::{Config, Outputs, ShardId, Transmit};
use crate::wire::AsapMessage;

#[derive(Debug)]
pub(super) struct Announcer {
    /// Shard 0 with announces configured.
    on: bool,
    next: Option<Instant>,
}

impl Announcer {
    pub(super) fn new(config: &Config, shard: ShardId) -> Self {
        Self {
            on: config.announce_interval.is_some() && shard == ShardId(0),
            next: None,
        }
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.next
    }

    pub(super) fn on_timeout(&mut self, now: Instant, config: &Config, out: &mut Outputs) {
        let Some(interval) = config.announce_interval.filter(|_| self.on) else {
            return;
        };
        if self.next.is_some_and(|t| t > now) {
            return;
        }
        let announce = AsapMessage::ServerAnnounce {
            server_id: config.id,
            transports: config.announce_transports.clone(),
            info: None,
        };
        let mut payload = Vec::new();
        announce.encode(&mut payload);
        out.metrics.on_sent(&payload);
        out.transmits.push_back(Transmit::Announce { payload });
        self.next = Some(now + interval);
    }
}
