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
//!
//! Once the rate is known, the turn starts themselves come from the counter too
//! ([`ServiceClock::turn_start`]): the monotonic clock is read for real once per
//! [`DERIVE_OVER`] of counter time, and the turns in between add the counter's ticks
//! since that reading to it. The two clocks part by no more than the monotonic clock's
//! slew over that span (at most 500 ppm: 5 µs), which no deadline of the registrar
//! minds.

use rserpool::registrar::nanos_of;
use std::time::{Duration, Instant};

/// Shortest span the counter's rate is measured over: 100 ms of a 1 GHz counter is
/// 10^8 ticks, a rate right to about 10^-8 (plus the clock's own jitter, microseconds).
const CALIBRATE_OVER: Duration = Duration::from_millis(100);

/// Longest span of counter time over which turn starts are derived from one real
/// reading of the monotonic clock ([`ServiceClock::turn_start`]).
const DERIVE_OVER: Duration = Duration::from_millis(10);
/// [`DERIVE_OVER`] in nanoseconds: under a second, so that a derived turn start is
/// its base plus a `Duration`'s nanoseconds alone.
const DERIVE_OVER_NANOS: u32 = DERIVE_OVER.subsec_nanos();
const _: () = assert!(DERIVE_OVER.as_secs() == 0);

/// Real readings of the monotonic clock between two calibrations of the counter's rate
/// (at least [`DERIVE_OVER`] apart each, so 0.64 s or more): the rate is learnt over
/// the whole span since the shard started, which that adds little to.
const CALIBRATE_EVERY: u32 = 64;

/// Fixed-point shift of [`ServiceClock`]'s nanoseconds per tick.
const SHIFT: u32 = 32;

/// One shard's service-time clock.
#[derive(Debug)]
pub(super) struct ServiceClock {
    /// The monotonic clock and the counter, read together when the shard started.
    origin: Option<(Instant, u64)>,
    /// Nanoseconds per tick × 2^[`SHIFT`], once calibrated.
    scale: Option<u64>,
    /// [`DERIVE_OVER`] in ticks at the calibrated rate; 0 until calibrated, and
    /// without a counter.
    window: u64,
    /// The turn starts derived since the last real reading of the monotonic clock.
    derived: Derived,
    /// Real readings of the monotonic clock since the shard started (wrapping).
    readings: u32,
}

/// Turn starts derived from the counter ([`ServiceClock::turn_start`]).
#[derive(Clone, Copy, Debug)]
struct Derived {
    /// The last real reading of the monotonic clock (or, with no window, a turn start
    /// ahead of it), and the counter read with it.
    at: Instant,
    ticks: u64,
    /// Ticks after `ticks` for which turn starts are derived ([`ServiceClock::window`]
    /// as of the reading, or 0: the next turn start reads the clock).
    window: u64,
    /// [`ServiceClock::scale`] as of the reading (0 without one, when the window is 0).
    scale: u64,
    /// Nanoseconds from `at` to the last turn start: none goes back before it. Less
    /// than [`DERIVE_OVER_NANOS`].
    last: u32,
}

impl ServiceClock {
    /// A clock whose counter is read together with `now`, no later than the shard's
    /// first turn start.
    pub(super) fn new(now: Instant) -> Self {
        let origin = counter_is_clock().then(|| (now, read_counter()));
        let (at, ticks) = origin.unwrap_or((now, 0));
        Self {
            origin,
            scale: None,
            window: 0,
            derived: Derived {
                at,
                ticks,
                window: 0,
                scale: 0,
                last: 0,
            },
            readings: 0,
        }
    }

    /// A turn's start, with the counter read at it ([`ServiceClock::ticks`]); never
    /// before the last turn's. Within [`DERIVE_OVER`] of counter time from the last
    /// real reading of the monotonic clock, that reading plus the ticks since at the
    /// calibrated rate (a few instructions where `Instant::now` takes about forty);
    /// otherwise (and until calibrated, or without a counter) a real reading, which the
    /// next turn starts are derived from.
    #[inline]
    pub(super) fn turn_start(&mut self) -> (Instant, u64) {
        let ticks = self.ticks();
        self.turn_start_at(ticks)
    }

    /// [`ServiceClock::turn_start`] with the counter read (`ticks`).
    #[inline]
    fn turn_start_at(&mut self, ticks: u64) -> (Instant, u64) {
        let d = &mut self.derived;
        // A counter behind the reading (a thread that moved to another core) wraps to
        // beyond the window: a real reading.
        let since = ticks.wrapping_sub(d.ticks);
        if since < d.window {
            // Fewer ticks than the window's, whose product with the scale is
            // DERIVE_OVER's nanoseconds << SHIFT at most: no overflow, and under a
            // second. Taking the last turn's span if longer keeps turn starts in order
            // on a counter read a little behind it. (The bound, which holds, spares
            // the additions below their checks for a second's carry.)
            let nanos = ((since.wrapping_mul(d.scale) >> SHIFT) as u32)
                .max(d.last)
                .min(DERIVE_OVER_NANOS);
            d.last = nanos;
            return (d.at + Duration::new(0, nanos), ticks);
        }
        self.read(ticks)
    }

    /// [`ServiceClock::turn_start`] reading the monotonic clock for real (at `ticks`).
    /// Out of line: once per [`DERIVE_OVER`] at most, once calibrated.
    #[inline(never)]
    fn read(&mut self, ticks: u64) -> (Instant, u64) {
        let now = Instant::now();
        if self.scale.is_none() || self.readings.is_multiple_of(CALIBRATE_EVERY) {
            self.calibrate(now, ticks);
        }
        self.readings = self.readings.wrapping_add(1);
        let previous = self.derived.at + Duration::new(0, self.derived.last);
        self.derived = Derived {
            at: now,
            ticks,
            window: self.window,
            scale: self.scale.unwrap_or(0),
            last: 0,
        };
        if previous <= now {
            return (now, ticks);
        }
        // The last turn start, derived, a little ahead of the monotonic clock (its rate
        // went down since the calibration): the next ones are held at it, not taken
        // back. Were it ever a whole window ahead, it is the next turn's start too,
        // which reads the clock again.
        match u32::try_from(nanos_of(previous.duration_since(now))) {
            Ok(n) if n < DERIVE_OVER_NANOS => self.derived.last = n,
            _ => {
                self.derived.at = previous;
                self.derived.window = 0;
            }
        }
        (previous, ticks)
    }

    /// The counter now (0 without one); read with the turn's start (a service time's
    /// end reads it in [`ServiceClock::nanos_since`]).
    #[inline]
    pub(super) fn ticks(&self) -> u64 {
        // The origin was read only if the counter is a clock: no second look.
        if self.origin.is_some() {
            read_counter()
        } else {
            0
        }
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
        self.scale = u64::try_from(scale).ok().filter(|s| *s > 0);
        // DERIVE_OVER's nanoseconds << SHIFT fit a u64 (they are under 2^32).
        self.window = self
            .scale
            .map_or(0, |s| (u64::from(DERIVE_OVER_NANOS) << SHIFT) / s);
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
        // A rate is only learnt with a counter: no second look at `origin`.
        match self.scale {
            Some(scale) => Self::scaled(start, read_counter(), scale),
            None => nanos_of(start_at.elapsed()),
        }
    }

    /// Nanoseconds from counter reading `start` to `end` at `scale` (nanoseconds per
    /// tick × 2^[`SHIFT`]).
    #[inline]
    fn scaled(start: u64, end: u64, scale: u64) -> u64 {
        // A counter read on another core that is a little behind (a thread that
        // moved, `--no-pin`) gives a "negative" span: none.
        let ticks = end.wrapping_sub(start);
        let ticks = if (ticks as i64) < 0 { 0 } else { ticks };
        // Ticks beyond 2^32 (seconds) would overflow the product: they take the wide
        // multiplication.
        match ticks.checked_mul(scale) {
            Some(p) => p >> SHIFT,
            None => ((u128::from(ticks) * u128::from(scale)) >> SHIFT) as u64,
        }
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

    /// A clock whose counter ticks once a nanosecond, fed by the test
    /// ([`ServiceClock::turn_start_at`]) rather than read.
    fn nanosecond_clock() -> ServiceClock {
        let mut clock = ServiceClock::new(Instant::now());
        // No calibration from real readings of the counter.
        clock.origin = None;
        clock.scale = Some(1 << SHIFT);
        clock.window = u64::from(DERIVE_OVER_NANOS);
        clock
    }

    #[test]
    fn calibration_opens_the_window_of_derived_turn_starts() {
        let t0 = Instant::now();
        let mut clock = ServiceClock::new(t0);
        let Some((_, c0)) = clock.origin else {
            // No invariant counter here: nothing to calibrate.
            return;
        };
        assert_eq!(clock.window, 0);
        // 200 ms over 200 million ticks: a nanosecond a tick.
        clock.calibrate(t0 + Duration::from_millis(200), c0 + 200_000_000);
        assert_eq!(clock.scale, Some(1 << SHIFT));
        assert_eq!(clock.window, u64::from(DERIVE_OVER_NANOS));
    }

    #[test]
    fn turn_starts_are_derived_within_the_window_and_read_after_it() {
        let mut clock = nanosecond_clock();
        let w = u64::from(DERIVE_OVER_NANOS);
        let before = Instant::now();
        let (base, ticks) = clock.turn_start_at(1_000);
        assert!(before <= base && base <= Instant::now());
        assert_eq!((ticks, clock.readings), (1_000, 1));
        let (t, _) = clock.turn_start_at(6_000);
        assert_eq!(t, base + Duration::from_nanos(5_000));
        let (t, _) = clock.turn_start_at(1_000 + w - 1);
        assert_eq!(t, base + Duration::from_nanos(w - 1));
        assert_eq!(clock.readings, 1);
        // The window's end: the clock is read again (and, the derived turn start
        // being ahead of it here, held there).
        let (again, _) = clock.turn_start_at(1_000 + w);
        assert_eq!(clock.readings, 2);
        assert!(again >= t);
        let (next, _) = clock.turn_start_at(1_000 + w + 1);
        assert!(next >= again);
        assert_eq!(clock.readings, 2);
    }

    #[test]
    fn turn_starts_never_go_back() {
        let mut clock = nanosecond_clock();
        let (base, _) = clock.turn_start_at(1_000_000);
        let (t, _) = clock.turn_start_at(1_005_000);
        assert_eq!(t, base + Duration::from_nanos(5_000));
        // A counter read a little behind the last turn start's, within the window.
        let (behind, _) = clock.turn_start_at(1_004_000);
        assert_eq!(behind, t);
        assert_eq!(clock.readings, 1);
        // Behind the reading itself: the clock is read again, and is no earlier.
        let (reread, _) = clock.turn_start_at(999_000);
        assert_eq!(clock.readings, 2);
        assert!(reread >= behind);
        // A last turn start ahead of the clock by more than a window (which a rate
        // this wrong would take): held there, the clock read again every turn.
        let ahead = Instant::now() + Duration::from_secs(1);
        let scale = clock.derived.scale;
        clock.derived = Derived {
            at: ahead,
            ticks: 2_000_000,
            window: u64::from(DERIVE_OVER_NANOS),
            scale,
            last: 0,
        };
        let (held, _) = clock.turn_start_at(2_000_000 + u64::from(DERIVE_OVER_NANOS));
        assert_eq!((held, clock.readings), (ahead, 3));
        let (still, _) = clock.turn_start_at(2_000_000 + u64::from(DERIVE_OVER_NANOS) + 1);
        assert_eq!((still, clock.readings), (ahead, 4));
    }

    #[test]
    fn without_a_counter_every_turn_start_reads_the_clock() {
        let mut clock = ServiceClock::new(Instant::now());
        clock.origin = None;
        let mut previous = Instant::now();
        for n in 1..=3 {
            let before = Instant::now();
            let (now, ticks) = clock.turn_start();
            assert!(before <= now && now <= Instant::now() && now >= previous);
            assert_eq!((ticks, clock.readings), (0, n));
            assert_eq!(clock.derived.window, 0);
            previous = now;
        }
    }

    #[test]
    fn a_clock_is_not_calibrated_over_a_short_span() {
        let t0 = Instant::now();
        let mut clock = ServiceClock::new(t0);
        clock.calibrate(t0 + Duration::from_millis(1), clock.ticks());
        assert!(clock.scale.is_none());
    }
}
