//! The clock of resolution service times: the CPU's time-stamp counter where it is a
//! clock, the monotonic clock otherwise.
//!
//! A direct answer's service time ends when its send is started, which is the one
//! clock reading of a loop turn the registrar needs for nothing else. On x86-64 with
//! an invariant counter (`constant_tsc` and `nonstop_tsc`: it ticks at one rate in
//! every power state, on every core), reading the counter costs a few instructions
//! where `Instant::now` costs about fifty and the subtraction of two `Instant`s as
//! many again. The counter's rate is learnt from the shard's own turn-start readings of
//! the monotonic clock, over at least [`CALIBRATE_OVER`]; until then (and wherever the
//! counter is no clock) service times are measured with `Instant` as before.

use rserpool::registrar::nanos_of;
use std::time::{Duration, Instant};

/// Shortest span the counter's rate is measured over: 100 ms of a 1 GHz counter is
/// 10^8 ticks, a rate right to about 10^-8 (plus the clock's own jitter, microseconds).
const CALIBRATE_OVER: Duration = Duration::from_millis(100);

/// Fixed-point shift of [`ServiceClock`]'s nanoseconds per tick.
const SHIFT: u32 = 32;

/// One shard's service-time clock.
#[derive(Debug)]
pub(super) struct ServiceClock {
    /// The monotonic clock and the counter, read together when the shard started.
    origin: Option<(Instant, u64)>,
    /// Nanoseconds per tick × 2^[`SHIFT`], once calibrated.
    scale: Option<u64>,
}

impl ServiceClock {
    /// A clock whose counter is read together with `now`, the shard's first turn start.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            origin: counter_is_clock().then(|| (now, read_counter())),
            scale: None,
        }
    }

    /// The counter now (0 without one); read with the turn's start and with each
    /// service time's end.
    #[inline]
    pub(super) fn ticks(&self) -> u64 {
        // The origin was read only if the counter is a clock: no second look.
        if self.origin.is_some() {
            read_counter()
        } else {
            0
        }
    }

    /// Whether the counter's rate is known (or there is no counter to learn it of).
    #[inline]
    pub(super) fn is_calibrated(&self) -> bool {
        self.scale.is_some() || self.origin.is_none()
    }

    /// Learns (again) the counter's rate from a turn start's readings of both clocks:
    /// the span since the origin over the ticks since.
    pub(super) fn calibrate(&mut self, now: Instant, ticks: u64) {
        let Some((t0, c0)) = self.origin else {
            return;
        };
        let span = now.saturating_duration_since(t0);
        let elapsed = ticks.wrapping_sub(c0);
        if span < CALIBRATE_OVER || elapsed == 0 {
            return;
        }
        let scale = (span.as_nanos() << SHIFT) / u128::from(elapsed);
        self.scale = u64::try_from(scale).ok();
    }

    /// Time from `start` (a [`ServiceClock::ticks`] reading, or `start_at` without a
    /// calibrated counter) to now.
    #[cfg(test)]
    pub(super) fn since(&self, start: u64, start_at: Instant) -> Duration {
        Duration::from_nanos(self.nanos_since(start, start_at))
    }

    /// [`ServiceClock::since`] in nanoseconds, as the service-time histograms take it
    /// (no `Duration` to build and take apart again on every answer).
    #[inline]
    pub(super) fn nanos_since(&self, start: u64, start_at: Instant) -> u64 {
        match self.nanos_between(start, self.ticks()) {
            Some(nanos) => nanos,
            None => nanos_of(start_at.elapsed()),
        }
    }

    /// Nanoseconds from counter reading `start` to `end`; `None` while the counter's
    /// rate is not known (or there is no counter).
    #[inline]
    pub(super) fn nanos_between(&self, start: u64, end: u64) -> Option<u64> {
        let scale = self.scale?;
        // A counter read on another core that is a little behind (a thread that
        // moved, `--no-pin`) gives a "negative" span: none.
        let ticks = end.wrapping_sub(start);
        let ticks = if (ticks as i64) < 0 { 0 } else { ticks };
        // Ticks beyond 2^32 (seconds) would overflow the product: they take the wide
        // multiplication.
        Some(match ticks.checked_mul(scale) {
            Some(p) => p >> SHIFT,
            None => ((u128::from(ticks) * u128::from(scale)) >> SHIFT) as u64,
        })
    }
}

/// Whether this CPU's counter is a clock (looked up once per process).
fn counter_is_clock() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static INVARIANT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *INVARIANT.get_or_init(invariant_tsc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The time-stamp counter; only meaningful where [`counter_is_clock`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn read_counter() -> u64 {
    // SAFETY: RDTSC reads a counter; it has no memory effects, and every x86-64 CPU
    // has it.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// No counter here ([`counter_is_clock`] is false, and no clock has an origin).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn read_counter() -> u64 {
    0
}

/// Whether the kernel reports an invariant time-stamp counter (`constant_tsc` and
/// `nonstop_tsc` among the CPU flags) and, where it says which, keeps time with it
/// (its clock source is `tsc`: it found the counters of all cores in step and stable).
#[cfg(target_arch = "x86_64")]
fn invariant_tsc() -> bool {
    let source = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    if let Ok(s) = std::fs::read_to_string(source)
        && s.trim() != "tsc"
    {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let Some(flags) = info.lines().find(|l| l.starts_with("flags")) else {
        return false;
    };
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    has("constant_tsc") && has("nonstop_tsc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncalibrated_clock_measures_with_the_monotonic_clock() {
        let start = Instant::now();
        let clock = ServiceClock::new(start);
        std::thread::sleep(Duration::from_millis(2));
        let took = clock.since(clock.ticks(), start);
        assert!(took >= Duration::from_millis(2), "{took:?}");
    }

    #[test]
    fn a_calibrated_clock_agrees_with_the_monotonic_clock() {
        let t0 = Instant::now();
        let mut clock = ServiceClock::new(t0);
        if clock.origin.is_none() {
            // No invariant counter here: every time is the monotonic clock's.
            return;
        }
        std::thread::sleep(CALIBRATE_OVER + Duration::from_millis(20));
        clock.calibrate(Instant::now(), clock.ticks());
        assert!(clock.scale.is_some());
        // A span measured both ways: the counter's lies between the monotonic clock's
        // spans inside and around it.
        let (outer_start, start) = (Instant::now(), clock.ticks());
        std::thread::sleep(Duration::from_millis(30));
        let inner_end = Instant::now();
        let took = clock.since(start, outer_start);
        let outer = outer_start.elapsed();
        let inner = inner_end.saturating_duration_since(outer_start);
        // The rate was learnt from readings of the two clocks taken one after the
        // other; a thread descheduled between two such readings skews it by the pause
        // over the 100 ms: a tenth is a 10 ms pause.
        let slack = |d: Duration| d / 10 + Duration::from_micros(50);
        assert!(took <= outer + slack(outer), "{took:?} > {outer:?}");
        assert!(took + slack(inner) >= inner, "{took:?} < {inner:?}");
    }

    #[test]
    fn a_counter_behind_the_start_measures_nothing() {
        let t0 = Instant::now();
        let mut clock = ServiceClock::new(t0);
        clock.scale = Some(1 << SHIFT);
        let ahead = clock.ticks() + 1_000_000_000;
        assert_eq!(clock.since(ahead, t0), Duration::ZERO);
    }

    #[test]
    fn a_clock_is_not_calibrated_over_a_short_span() {
        let t0 = Instant::now();
        let mut clock = ServiceClock::new(t0);
        clock.calibrate(t0 + Duration::from_millis(1), clock.ticks());
        assert!(clock.scale.is_none());
    }
}
