//! The registrar's statistics, kept per shard and updated only on that shard's thread:
//! plain counters and fixed-bucket histograms, no atomics, no allocation per message.
//! The runtime asks each shard for a copy when it is scraped and merges the copies
//! ([`Metrics::merge`]); nothing is shared between cores per message.
//!
//! Durations are recorded in nanoseconds and bucketed by fixed upper bounds, so a
//! histogram is a small array that two shards add up exactly.

use std::time::Duration;

use super::rate::Limited;
use super::{AssociationLimit, RemovalReason};
use crate::wire::{AsapType, CauseCode, Fit};

/// Upper bounds (inclusive, as Prometheus' `le`) of the service-time and round-trip
/// histograms: 100 ns to 10 s in 1-2-5 steps. A resolution takes a few hundred
/// nanoseconds to a few microseconds, so the first nine buckets resolve it; the rest
/// catch a stalled shard, a slow PE or a cross-shard round trip. Above the last: `+Inf`.
pub const LATENCY_BOUNDS: [Duration; 25] = [
    Duration::from_nanos(100),
    Duration::from_nanos(200),
    Duration::from_nanos(500),
    Duration::from_micros(1),
    Duration::from_micros(2),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(20),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(200),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// Upper bounds of the failure-detection histograms: 10 ms to 5 min. Detection takes
/// about keep-alive interval + timeout (10 s with the defaults, 200 ms in a tuned
/// deployment), so the steps are finer around 1-30 s than in [`LATENCY_BOUNDS`].
pub const DETECTION_BOUNDS: [Duration; 20] = [
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(150),
    Duration::from_millis(200),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_millis(7_500),
    Duration::from_secs(10),
    Duration::from_millis(12_500),
    Duration::from_secs(15),
    Duration::from_secs(20),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
];

/// The most finite buckets of any histogram ([`LATENCY_BOUNDS`]).
const BUCKETS: usize = LATENCY_BOUNDS.len();

/// `d` in nanoseconds, as the histograms count time; saturated at `u64::MAX` (585
/// years), which no span here reaches.
#[inline]
pub fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The bounds in nanoseconds, what [`Histogram::record`] compares with.
const fn nanos<const N: usize>(bounds: &[Duration; N]) -> [u64; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = bounds[i].as_nanos() as u64;
        i += 1;
    }
    out
}

/// Per bit length of a value in nanoseconds (0 to 64): the first bucket whose bound is
/// at least the smallest value of that length. Every bucket before it holds only
/// smaller values, so [`Histogram::record`] starts its search there.
const fn starts<const N: usize>(nanos: &[u64; N]) -> [u8; 65] {
    let mut out = [0; 65];
    let mut bits = 0;
    while bits <= 64 {
        let low = if bits == 0 { 0 } else { 1 << (bits - 1) };
        let mut i = 0;
        while i < N && nanos[i] < low {
            i += 1;
        }
        out[bits] = i as u8;
        bits += 1;
    }
    out
}

static LATENCY_NANOS: [u64; LATENCY_BOUNDS.len()] = nanos(&LATENCY_BOUNDS);
static DETECTION_NANOS: [u64; DETECTION_BOUNDS.len()] = nanos(&DETECTION_BOUNDS);
static LATENCY_STARTS: [u8; 65] = starts(&LATENCY_NANOS);
static DETECTION_STARTS: [u8; 65] = starts(&DETECTION_NANOS);

/// A fixed-bucket histogram of durations: a count per bucket, the `+Inf` overflow and
/// the sum. Recording finds the bucket from the value's bit length (a table gives the
/// first bucket that can hold it; with the 1-2-5 latency bounds, at most one bound lies
/// within a power of two, so one or two comparisons follow), an increment and an
/// addition: cheaper than a binary search over 25 bounds, with the same buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    bounds: &'static [Duration],
    /// `bounds` in nanoseconds.
    nanos: &'static [u64],
    /// Where to start looking in `nanos`, by bit length ([`starts`]).
    starts: &'static [u8; 65],
    /// Per bucket, not cumulative: `counts[i]` holds values in `(bounds[i-1], bounds[i]]`;
    /// `counts[bounds.len()]` the ones above the last bound (`+Inf` only).
    counts: [u64; BUCKETS + 1],
    /// Nanoseconds, saturating (u64 nanoseconds last 584 years).
    sum_ns: u64,
}

impl Histogram {
    /// Service times and round trips ([`LATENCY_BOUNDS`]).
    pub fn latency() -> Self {
        Self::with_bounds(&LATENCY_BOUNDS, &LATENCY_NANOS, &LATENCY_STARTS)
    }

    /// Failure detection times ([`DETECTION_BOUNDS`]).
    pub fn detection() -> Self {
        Self::with_bounds(&DETECTION_BOUNDS, &DETECTION_NANOS, &DETECTION_STARTS)
    }

    fn with_bounds(
        bounds: &'static [Duration],
        nanos: &'static [u64],
        starts: &'static [u8; 65],
    ) -> Self {
        debug_assert!(bounds.len() <= BUCKETS);
        Self {
            bounds,
            nanos,
            starts,
            counts: [0; BUCKETS + 1],
            sum_ns: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// `n` observations of `d`.
    pub fn record_n(&mut self, d: Duration, n: u64) {
        self.record_nanos_n(nanos_of(d), n);
    }

    /// `n` observations of `ns` nanoseconds.
    pub fn record_nanos_n(&mut self, ns: u64, n: u64) {
        // The first bound at or above `ns` (`nanos.len()` if none; at most BUCKETS:
        // always a slot).
        let bits = (u64::BITS - ns.leading_zeros()) as usize;
        let mut i = usize::from(self.starts[bits]);
        while self.nanos.get(i).is_some_and(|b| *b < ns) {
            i += 1;
        }
        if let Some(c) = self.counts.get_mut(i) {
            *c += n;
        }
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(n));
    }

    /// Adds `other`'s observations (another shard's, with the same bounds).
    pub fn merge(&mut self, other: &Self) {
        debug_assert_eq!(self.bounds, other.bounds, "merging different bucket sets");
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>()
    }

    /// Sum of all observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The buckets as Prometheus exposes them: each finite upper bound with the count of
    /// observations at or below it (cumulative), then `None` (`+Inf`) with
    /// [`Histogram::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let finite = self
            .bounds
            .iter()
            .zip(self.counts.iter())
            .scan(0u64, |acc, (b, c)| {
                *acc += c;
                Some((Some(*b), *acc))
            });
        finite.chain(std::iter::once((None, self.count())))
    }
}

/// ASAP message types counted: every type code up to ERROR (0x0e); a registrar only
/// counts messages it decoded or encoded, so no other code occurs.
const TYPES: usize = 16;
/// RFC 5354 causes 0x0000-0x000a, then one slot for any other code.
const CAUSES: usize = 12;

/// One shard's counters and histograms. The shard's [`super::Registrar`] updates them;
/// [`Metrics::merge`] adds up several shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    received: [u64; TYPES],
    sent: [u64; TYPES],
    errors: [u64; CAUSES],
    malformed: u64,
    removals: [u64; RemovalReason::ALL.len()],
    /// Handle resolution request taken off the socket → answer queued for sending (or,
    /// written straight into the send buffer, the turn's sends started).
    pub handle_resolution: Histogram,
    /// Registration request taken off the socket → response queued for sending,
    /// including the round trip to the pool's writer shard.
    pub registration: Histogram,
    /// Keep-alive sent → acknowledgement received.
    pub keep_alive_rtt: Histogram,
    failure_detection: [Histogram; RemovalReason::ALL.len()],
    /// ENRP: messages, audits and takeovers (the ENRP shard), peer updates applied
    /// or refused (every writer).
    pub enrp: crate::enrp::EnrpMetrics,
    /// Answers made to fit their length field, requests over a rate limit.
    pub answers: AnswerMetrics,
    /// PE identity and reports: registrations refused because another association
    /// owns the PE, repeated reports ignored, probes sent and answered.
    takeovers_refused: u64,
    repeated_reports: u64,
    probes: u64,
    probes_answered: u64,
    /// Registrations refused by a per-association limit, by limit.
    limit_refusals: [u64; AssociationLimit::ALL.len()],
    /// Requests, ENRP connections and presences denied by access control, per rule.
    pub access_denied: super::access::Denials,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            received: [0; TYPES],
            sent: [0; TYPES],
            errors: [0; CAUSES],
            malformed: 0,
            removals: [0; RemovalReason::ALL.len()],
            handle_resolution: Histogram::latency(),
            registration: Histogram::latency(),
            keep_alive_rtt: Histogram::latency(),
            failure_detection: std::array::from_fn(|_| Histogram::detection()),
            enrp: crate::enrp::EnrpMetrics::default(),
            answers: AnswerMetrics::default(),
            takeovers_refused: 0,
            repeated_reports: 0,
            probes: 0,
            probes_answered: 0,
            limit_refusals: [0; AssociationLimit::ALL.len()],
            access_denied: super::access::Denials::default(),
        }
    }
}

impl Metrics {
    /// Well-formed ASAP messages received, by type.
    pub fn received(&self, kind: AsapType) -> u64 {
        self.received.get(usize::from(kind.0)).copied().unwrap_or(0)
    }

    /// ASAP messages sent (queued for sending), by type; announces included.
    pub fn sent(&self, kind: AsapType) -> u64 {
        self.sent.get(usize::from(kind.0)).copied().unwrap_or(0)
    }

    /// Error causes sent, in the Operation Errors of responses and in ASAP_ERROR.
    /// Causes beyond RFC 5354's share one count, [`Metrics::other_errors`].
    pub fn errors(&self, cause: CauseCode) -> u64 {
        self.errors[cause_slot(cause)]
    }

    /// Error causes sent that RFC 5354 does not define (the registrar sends none).
    pub fn other_errors(&self) -> u64 {
        self.errors[CAUSES - 1]
    }

    /// Messages that could not be decoded (answered with ASAP_ERROR where the RFC says
    /// so); not counted in [`Metrics::received`].
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// PEs removed from pools this shard owns, by reason.
    pub fn removals(&self, reason: RemovalReason) -> u64 {
        self.removals[reason.index()]
    }

    /// Time from a PE's last sign of life (registration, re-registration or keep-alive
    /// acknowledgement) to its removal, for PEs supervised by this shard. Recorded for
    /// the failures ([`RemovalReason::is_failure`]); the others stay empty.
    pub fn failure_detection(&self, reason: RemovalReason) -> &Histogram {
        &self.failure_detection[reason.index()]
    }

    /// Adds another shard's figures to these.
    pub fn merge(&mut self, other: &Self) {
        add(&mut self.received, &other.received);
        add(&mut self.sent, &other.sent);
        add(&mut self.errors, &other.errors);
        add(&mut self.removals, &other.removals);
        self.malformed += other.malformed;
        self.handle_resolution.merge(&other.handle_resolution);
        self.registration.merge(&other.registration);
        self.keep_alive_rtt.merge(&other.keep_alive_rtt);
        for (a, b) in self
            .failure_detection
            .iter_mut()
            .zip(&other.failure_detection)
        {
            a.merge(b);
        }
        self.enrp.merge(&other.enrp);
        self.answers.merge(&other.answers);
        self.takeovers_refused += other.takeovers_refused;
        self.repeated_reports += other.repeated_reports;
        self.probes += other.probes;
        self.probes_answered += other.probes_answered;
        add(&mut self.limit_refusals, &other.limit_refusals);
        self.access_denied.merge(&other.access_denied);
    }

    /// Registrations of a PE that another live association of this registrar owns,
    /// refused (cause 0x000a).
    pub fn takeovers_refused(&self) -> u64 {
        self.takeovers_refused
    }

    /// Endpoint-unreachable reports ignored because the same association had already
    /// reported the PE.
    pub fn repeated_reports(&self) -> u64 {
        self.repeated_reports
    }

    /// Keep-alives sent to check a PE reported unreachable often enough (RFC 5352
    /// §3.5), instead of removing it at once.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// Probes the PE answered (its reports were void).
    pub fn probes_answered(&self) -> u64 {
        self.probes_answered
    }

    /// Registrations refused by a per-association limit.
    pub fn limit_refusals(&self, limit: AssociationLimit) -> u64 {
        self.limit_refusals[limit as usize]
    }

    pub(super) fn on_takeover_refused(&mut self) {
        self.takeovers_refused += 1;
    }

    pub(super) fn on_repeated_report(&mut self) {
        self.repeated_reports += 1;
    }

    pub(super) fn on_probe(&mut self) {
        self.probes += 1;
    }

    pub(super) fn on_probe_answered(&mut self) {
        self.probes_answered += 1;
    }

    pub(super) fn on_limit(&mut self, limit: AssociationLimit) {
        self.limit_refusals[limit as usize] += 1;
    }

    pub(super) fn on_received(&mut self, kind: AsapType) {
        if let Some(c) = self.received.get_mut(usize::from(kind.0)) {
            *c += 1;
        }
    }

    /// Counts a message of a type known without reading it back (a resolution answer
    /// just written): what [`Metrics::on_sent`] counts for it.
    pub(super) fn on_sent_kind(&mut self, kind: AsapType) {
        if let Some(c) = self.sent.get_mut(usize::from(kind.0)) {
            *c += 1;
        }
    }

    /// Counts an encoded message by its type byte.
    pub(super) fn on_sent(&mut self, payload: &[u8]) {
        if let Some(&t) = payload.first() {
            self.on_sent_kind(AsapType(t));
        }
    }

    pub(super) fn on_error_cause(&mut self, cause: CauseCode) {
        self.errors[cause_slot(cause)] += 1;
    }

    pub(super) fn on_malformed(&mut self) {
        self.malformed += 1;
    }

    pub(super) fn on_removal(&mut self, reason: RemovalReason) {
        self.removals[reason.index()] += 1;
    }

    pub(super) fn on_failure_detected(&mut self, reason: RemovalReason, since_alive: Duration) {
        if reason.is_failure() {
            self.failure_detection[reason.index()].record(since_alive);
        }
    }
}

fn cause_slot(cause: CauseCode) -> usize {
    usize::from(cause.0).min(CAUSES - 1)
}

fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Well-formed answers and rate limits: answers too long for their 16-bit length field
/// and how they were made to fit, and requests refused by a per-association rate limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerMetrics {
    unquoted: u64,
    replaced: u64,
    rate_limited: [u64; Limited::ALL.len()],
}

impl AnswerMetrics {
    /// Answers sent without the information their causes quoted, to fit.
    pub fn unquoted(&self) -> u64 {
        self.unquoted
    }

    /// Answers replaced by an ASAP_ERROR, to fit (they echoed a huge Pool Handle).
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Requests over their association's rate limit, by kind.
    pub fn rate_limited(&self, kind: Limited) -> u64 {
        self.rate_limited[kind.index()]
    }

    pub fn merge(&mut self, other: &Self) {
        self.unquoted += other.unquoted;
        self.replaced += other.replaced;
        add(&mut self.rate_limited, &other.rate_limited);
    }

    pub(super) fn on_fitted(&mut self, fit: Fit) {
        match fit {
            Fit::Whole => {}
            Fit::Unquoted => self.unquoted += 1,
            Fit::Replaced => self.replaced += 1,
        }
    }

    pub(super) fn on_rate_limited(&mut self, kind: Limited) {
        self.rate_limited[kind.index()] += 1;
    }
}

/// What one shard holds right now, computed when asked (not kept per message).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Pools this shard writes (summed over shards: every pool once).
    pub written_pools: usize,
    /// PEs of the pools this shard writes (summed over shards: every PE once).
    pub written_elements: usize,
    /// Pools in this shard's replica (every shard holds all of them).
    pub replica_pools: usize,
    /// PEs in this shard's replica.
    pub replica_elements: usize,
    /// Connections and SCTP associations this shard serves.
    pub connections: usize,
    /// PEs whose keep-alive supervision this shard runs (registered through its
    /// connections).
    pub supervised: usize,
    /// ENRP peers by state, in [`crate::enrp::PeerState::ALL`] order (the ENRP shard
    /// only; zeros elsewhere).
    pub enrp_peers: [usize; 4],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let mut h = Histogram::latency();
        let ns = Duration::from_nanos;
        // On a bound counts in that bucket (Prometheus' `le`); just above it, the next.
        for d in [us(5), us(5) + ns(1), us(1), ns(150), us(7_000)] {
            h.record(d);
        }
        h.record(Duration::from_secs(11));
        let buckets: Vec<(Option<Duration>, u64)> = h.cumulative().collect();
        assert_eq!(buckets.len(), 26);
        assert_eq!(buckets[0], (Some(ns(100)), 0));
        assert_eq!(buckets[1], (Some(ns(200)), 1), "150 ns");
        assert_eq!(buckets[3], (Some(us(1)), 2), "1 µs on its bound");
        assert_eq!(buckets[5], (Some(us(5)), 3), "5 µs");
        assert_eq!(buckets[6], (Some(us(10)), 4), "5.001 µs");
        assert_eq!(buckets[14], (Some(us(5_000)), 4));
        assert_eq!(buckets[15], (Some(us(10_000)), 5), "7 ms");
        assert_eq!(buckets[24], (Some(Duration::from_secs(10)), 5));
        assert_eq!(buckets[25], (None, 6), "11 s only in +Inf");
        assert_eq!(h.count(), 6);
        assert_eq!(
            h.sum(),
            us(5) + us(5) + ns(1) + us(1) + ns(150) + us(7_000) + Duration::from_secs(11)
        );
    }

    /// The bit-length start finds the bucket a binary search over the bounds does, for
    /// every bound, its neighbours and every power of two and its neighbours.
    #[test]
    fn the_bucket_is_the_one_a_search_of_the_bounds_finds() {
        for h in [Histogram::latency(), Histogram::detection()] {
            let mut values = vec![0, u64::MAX];
            for &b in h.nanos {
                values.extend([b - 1, b, b + 1]);
            }
            for bits in 0..64 {
                let p = 1u64 << bits;
                values.extend([p - 1, p, p + 1]);
            }
            for ns in values {
                let mut one = h.clone();
                one.record(Duration::from_nanos(ns));
                let want = h.nanos.partition_point(|b| *b < ns);
                let got = one.counts.iter().position(|&c| c == 1);
                assert_eq!(got, Some(want), "{ns} ns");
            }
        }
    }

    #[test]
    fn latency_bounds_are_a_1_2_5_series_from_100_ns_to_10_s() {
        let mut expected = Vec::new();
        let mut decade = 100u64;
        while expected.len() < LATENCY_BOUNDS.len() {
            for m in [1, 2, 5] {
                expected.push(Duration::from_nanos(decade * m));
            }
            decade *= 10;
        }
        expected.truncate(LATENCY_BOUNDS.len());
        assert_eq!(LATENCY_BOUNDS.to_vec(), expected);
        assert_eq!(LATENCY_BOUNDS.last(), Some(&Duration::from_secs(10)));
    }

    #[test]
    fn cumulative_counts_never_decrease_and_end_at_the_count() {
        let mut h = Histogram::detection();
        for ms in [3u64, 140, 150, 151, 9_999, 10_001, 400_000, 200] {
            h.record(Duration::from_millis(ms));
        }
        let counts: Vec<u64> = h.cumulative().map(|(_, c)| c).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(counts.last(), Some(&8));
        let at = |bound: Duration| {
            h.cumulative()
                .find(|(b, _)| *b == Some(bound))
                .map(|(_, c)| c)
        };
        assert_eq!(at(Duration::from_millis(150)), Some(3));
        assert_eq!(at(Duration::from_millis(200)), Some(5));
        assert_eq!(at(Duration::from_secs(10)), Some(6));
        assert_eq!(at(Duration::from_millis(12_500)), Some(7));
        assert_eq!(at(Duration::from_secs(300)), Some(7), "400 s overflows");
    }

    #[test]
    fn bounds_ascend_strictly() {
        for bounds in [&LATENCY_BOUNDS[..], &DETECTION_BOUNDS[..]] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }

    #[test]
    fn removal_reasons_index_their_slots_and_have_distinct_labels() {
        let mut labels = Vec::new();
        for (i, r) in RemovalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            labels.push(r.label());
        }
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RemovalReason::ALL.len());
    }

    #[test]
    fn huge_durations_saturate_the_sum_without_panicking() {
        let mut h = Histogram::latency();
        h.record(Duration::MAX);
        h.record(Duration::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn merging_two_shards_adds_every_figure() {
        let mut a = Metrics::default();
        let mut b = Metrics::default();
        a.on_received(AsapType::HANDLE_RESOLUTION);
        b.on_received(AsapType::HANDLE_RESOLUTION);
        b.on_received(AsapType::REGISTRATION);
        a.on_sent(&[AsapType::HANDLE_RESOLUTION_RESPONSE.0, 0, 0, 4]);
        b.on_error_cause(CauseCode::UNKNOWN_POOL_HANDLE);
        b.on_error_cause(CauseCode::RSPLIB_INVALID_ID);
        a.on_malformed();
        a.on_removal(RemovalReason::KeepAliveTimeout);
        b.on_removal(RemovalReason::KeepAliveTimeout);
        a.handle_resolution.record(us(20));
        b.handle_resolution.record(us(30));
        b.handle_resolution.record(us(3));
        a.on_failure_detected(RemovalReason::ConnectionLost, Duration::from_secs(1));
        b.on_failure_detected(RemovalReason::Deregistered, Duration::from_secs(1));

        let mut all = a.clone();
        all.merge(&b);
        assert_eq!(all.received(AsapType::HANDLE_RESOLUTION), 2);
        assert_eq!(all.received(AsapType::REGISTRATION), 1);
        assert_eq!(all.sent(AsapType::HANDLE_RESOLUTION_RESPONSE), 1);
        assert_eq!(all.errors(CauseCode::UNKNOWN_POOL_HANDLE), 1);
        assert_eq!(all.other_errors(), 1);
        assert_eq!(all.malformed(), 1);
        assert_eq!(all.removals(RemovalReason::KeepAliveTimeout), 2);
        assert_eq!(all.handle_resolution.count(), 3);
        assert_eq!(all.handle_resolution.sum(), us(53));
        let merged: Vec<u64> = all.handle_resolution.cumulative().map(|x| x.1).collect();
        let summed: Vec<u64> = a
            .handle_resolution
            .cumulative()
            .zip(b.handle_resolution.cumulative())
            .map(|(x, y)| x.1 + y.1)
            .collect();
        assert_eq!(merged, summed, "bucket by bucket");
        assert_eq!(
            all.failure_detection(RemovalReason::ConnectionLost).count(),
            1
        );
        assert_eq!(
            all.failure_detection(RemovalReason::Deregistered).count(),
            0,
            "a deregistration is not a failure"
        );
    }
}
