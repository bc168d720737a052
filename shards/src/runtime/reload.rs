//! Settings changed while running ([`super::Handle::reload`]): the connection limits
//! are atomics every shard reads ([`super::limits`]); the registrar's part is posted
//! here and taken by each shard between two loop turns, like a metrics request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rserpool::registrar::Reloadable;

use super::ConnLimits;

/// What [`super::Handle::reload`] changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reload {
    pub limits: ConnLimits,
    pub registrar: Reloadable,
}

/// Shards that did not confirm a reload within 2 s (busy or stuck); they
/// take the settings when they next run.
#[derive(Debug, thiserror::Error)]
#[error("{late} of {shards} shards have not taken the new settings within 2 s")]
pub struct NotTaken {
    pub late: usize,
    pub shards: usize,
}

/// How long [`super::Handle::reload`] waits for the shards to take a change.
pub(super) const APPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The latest registrar settings posted, shared by the handle and every shard.
#[derive(Debug, Default)]
pub(super) struct Posted {
    /// Bumped after each post; a shard compares it with the last one it took (one
    /// relaxed load a turn, on a line only a reload writes).
    generation: AtomicU64,
    latest: Mutex<Option<(Reloadable, crossbeam::channel::Sender<usize>)>>,
}

impl Posted {
    /// Posts `r` for every shard; the returned receiver gets each shard's index as
    /// it puts `r` in force.
    pub(super) fn post(&self, r: Reloadable) -> crossbeam::channel::Receiver<usize> {
        let (tx, rx) = crossbeam::channel::unbounded();
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((r, tx));
        self.generation.fetch_add(1, Ordering::Release);
        rx
    }

    /// Whether a configuration newer than generation `seen` was posted (one load).
    #[inline]
    pub(super) fn newer_than(&self, seen: u64) -> bool {
        self.generation.load(Ordering::Acquire) != seen
    }

    /// The settings posted since generation `seen`, if any, and the new generation.
    pub(super) fn since(
        &self,
        seen: u64,
    ) -> Option<(u64, Reloadable, crossbeam::channel::Sender<usize>)> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == seen {
            return None;
        }
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest
            .as_ref()
            .map(|(r, tx)| (generation, r.clone(), tx.clone()))
    }
}

/// Waits until `n` shards confirmed on `rx` or [`APPLY_TIMEOUT`] passed; returns how
/// many did.
pub(super) fn confirmed(rx: &crossbeam::channel::Receiver<usize>, n: usize) -> usize {
    let deadline = Instant::now() + APPLY_TIMEOUT;
    let mut done = 0;
    while done < n && rx.recv_deadline(deadline).is_ok() {
        done += 1;
    }
    done
}
