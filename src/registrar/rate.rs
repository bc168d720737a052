//! Per-association rate limits for handle resolutions and endpoint-unreachable reports
//! (RFC 3237 §2.13.2 "unauthorised queries"; RSPLIB's `-maxhrrate` and `-maxeurate`,
//! both off by default there).
//!
//! Each limited association has one bucket per kind, kept as a generic cell rate
//! algorithm: the theoretical arrival time of the next request. A request is admitted
//! while that time is at most `burst − 1` intervals ahead of now, and pushes it one
//! interval further. A steady client sees `per_second`; one that was quiet may send
//! `burst` at once. Time comes from the caller (`now`), as everywhere in the core.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ConnId;

/// A rate limit: `per_second` requests on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained (at least 1).
    pub per_second: u32,
    /// Requests admitted back to back after a quiet spell (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// Time between two requests at the sustained rate.
    fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }
}

/// What is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// HANDLE_RESOLUTION (RSPLIB's `MaxHRRate`).
    HandleResolution,
    /// ENDPOINT_UNREACHABLE (RSPLIB's `MaxEURate`).
    EndpointUnreachable,
}

impl Limited {
    /// Both kinds, in [`Limited::index`] order.
    pub const ALL: [Self; 2] = [Self::HandleResolution, Self::EndpointUnreachable];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::HandleResolution => "handle_resolution",
            Self::EndpointUnreachable => "endpoint_unreachable",
        }
    }
}

/// The buckets of the associations that sent a limited request (the others take no
/// memory); an association's go when it does.
#[derive(Debug, Default)]
pub(super) struct RateLimiter {
    /// Per association and [`Limited`]: the theoretical arrival time, `None` while idle.
    conns: HashMap<ConnId, [Option<Instant>; 2]>,
}

impl RateLimiter {
    /// Whether a request of `kind` on `conn` at `now` is within `limit` (always, without
    /// a limit); an admitted request counts against it.
    ///
    /// Inlined, so that without a limit (the default) it costs its one test.
    #[inline]
    pub(super) fn admit(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: Limited,
        limit: Option<RateLimit>,
    ) -> bool {
        match limit {
            None => true,
            Some(limit) => self.admit_limited(now, conn, kind, limit),
        }
    }

    fn admit_limited(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: Limited,
        limit: RateLimit,
    ) -> bool {
        let slot = &mut self.conns.entry(conn).or_default()[kind.index()];
        let interval = limit.interval();
        let tolerance = interval.saturating_mul(limit.burst.max(1) - 1);
        let next = slot.map_or(now, |t| t.max(now));
        if next.saturating_duration_since(now) > tolerance {
            return false;
        }
        *slot = Some(next + interval);
        true
    }

    /// The association is gone.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Associations holding buckets.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HR: Limited = Limited::HandleResolution;

    fn admitted(r: &mut RateLimiter, now: Instant, conn: u64, limit: RateLimit, n: u32) -> u32 {
        (0..n)
            .filter(|_| r.admit(now, ConnId(conn), HR, Some(limit)))
            .count() as u32
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = RateLimit {
            per_second: 10,
            burst: 5,
        };
        let t0 = Instant::now();
        let mut r = RateLimiter::default();
        assert_eq!(admitted(&mut r, t0, 1, limit, 100), 5, "the burst");
        // Each 100 ms frees one more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(admitted(&mut r, t1, 1, limit, 100), 1);
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(
            admitted(&mut r, t2, 1, limit, 100),
            5,
            "capped at the burst"
        );
        let t3 = t2 + Duration::from_secs(60);
        assert_eq!(
            admitted(&mut r, t3, 1, limit, 100),
            5,
            "never more than the burst"
        );
    }

    #[test]
    fn associations_and_kinds_are_limited_apart() {
        let limit = RateLimit {
            per_second: 1,
            burst: 1,
        };
        let now = Instant::now();
        let mut r = RateLimiter::default();
        assert_eq!(admitted(&mut r, now, 1, limit, 3), 1);
        assert_eq!(admitted(&mut r, now, 2, limit, 3), 1, "another association");
        let eu = Limited::EndpointUnreachable;
        assert!(r.admit(now, ConnId(1), eu, Some(limit)), "another kind");
        r.forget(ConnId(1));
        r.forget(ConnId(2));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn without_a_limit_everything_passes_and_nothing_is_kept() {
        let mut r = RateLimiter::default();
        let now = Instant::now();
        assert!((0..1000).all(|_| r.admit(now, ConnId(1), HR, None)));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn extreme_limits_do_not_panic() {
        let now = Instant::now();
        let mut r = RateLimiter::default();
        for (per_second, burst) in [(0, 0), (u32::MAX, u32::MAX), (1, u32::MAX)] {
            let limit = RateLimit { per_second, burst };
            assert!(r.admit(now, ConnId(9), HR, Some(limit)));
            r.forget(ConnId(9));
        }
    }
}
