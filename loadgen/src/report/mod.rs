//! Results: one HdrHistogram per operation, printed as a table a person can read, written
//! as JSON for machines ([`json`]), as HdrHistogram percentile distributions ([`hgrm`])
//! and drawn as an SVG percentile plot ([`svg`]).

mod hgrm;
mod json;
mod run;
mod svg;

pub use hgrm::hgrm;
pub use json::{JSON_SCHEMA_VERSION, decode_histogram, json};
pub use run::{Run, TOOL, Tool, rfc3339};
pub use svg::svg;

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies of one operation, in nanoseconds (1 ns to 60 s, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Series {
    /// Stable identifier (`resolution.closed`, `failover.crash`): JSON readers and the
    /// `.hgrm` file names key on it, so it does not change with the wording of `label`.
    pub id: String,
    /// What people read in the table, the legend and the JSON's `label`.
    pub label: String,
    hist: Histogram<u64>,
    /// Wall time the operations were spread over, for the rate.
    pub elapsed: Duration,
    /// Operations that failed (not in the histogram).
    pub errors: u64,
}

impl Series {
    pub fn new(id: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            label: label.into(),
            // 1 ns .. 60 s at 3 significant digits: about 200 KiB, fixed.
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            elapsed: Duration::ZERO,
            errors: 0,
        }
    }

    /// Records one latency; values beyond the range are clamped to it.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, self.hist.high());
        // In range by the clamp above.
        let _ = self.hist.record(ns);
    }

    /// Adds a measurement taken over the same window (another thread's share of it):
    /// the elapsed time is the longer of the two.
    pub fn merge(&mut self, other: &Series) {
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Adds a later measurement of the same operation (the next round of a run):
    /// unlike [`Series::merge`] of windows side by side, the elapsed times add up, so
    /// the rate is over both windows.
    pub fn append(&mut self, later: &Series) {
        let _ = self.hist.add(&later.hist);
        self.errors += later.errors;
        self.elapsed += later.elapsed;
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.hist.value_at_quantile(q))
    }

    /// The smallest latency recorded.
    pub fn min(&self) -> Duration {
        Duration::from_nanos(self.hist.min())
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.hist.max())
    }

    /// The histogram itself (nanoseconds), for serialization and iteration.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.count() as f64 / s
        } else {
            0.0
        }
    }
}

/// A latency as a person reads it: 850 ns, 12.3 µs, 1.20 ms, 2.00 s.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

/// The table: one row per series.
pub fn table(series: &[Series]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "operation", "count", "rate/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    );
    for s in series {
        let q: Vec<String> = QUANTILES
            .iter()
            .map(|&(_, q)| {
                if s.count() == 0 {
                    "-".into()
                } else {
                    human(s.quantile(q))
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<30} {:>10} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}",
            s.label,
            s.count(),
            s.rate(),
            q[0],
            q[1],
            q[2],
            q[3],
            q[4],
            s.errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        let mut s = Series::new("resolve", "resolve");
        for us in 1..=1000u64 {
            s.record(Duration::from_micros(us));
        }
        s.errors = 2;
        s.elapsed = Duration::from_millis(500);
        s
    }

    #[test]
    fn quantiles_and_rate() {
        let s = series();
        assert_eq!(s.count(), 1000);
        let p50 = s.quantile(0.5).as_micros();
        assert!((499..=501).contains(&p50), "{p50}");
        assert!((s.rate() - 2000.0).abs() < 1e-6);
        assert_eq!(human(Duration::from_nanos(850)), "850 ns");
        assert_eq!(human(Duration::from_micros(1200)), "1.20 ms");
    }

    #[test]
    fn rounds_one_after_another_add_their_windows_and_side_by_side_share_one() {
        let mut rounds = series();
        rounds.append(&series());
        assert_eq!((rounds.count(), rounds.errors), (2000, 4));
        assert!((rounds.rate() - 2000.0).abs() < 1e-6, "{}", rounds.rate());
        let mut threads = series();
        threads.merge(&series());
        assert!((threads.rate() - 4000.0).abs() < 1e-6, "{}", threads.rate());
    }

    #[test]
    fn table_json_and_svg_carry_the_numbers() {
        let s = [series()];
        let t = table(&s);
        assert!(
            t.contains("resolve") && t.contains("2000") && t.contains("p99.9"),
            "{t}"
        );
        let run = Run::new("resolve", serde_json::json!({"pool_size": 500}));
        let j = json(&run, &s, serde_json::Map::new());
        assert_eq!(j["series"][0]["count"], 1000);
        assert_eq!(j["series"][0]["errors"], 2);
        let run = Run {
            title: "resolution <latency>".into(),
            ..run
        };
        let svg = svg(&run, &s);
        assert!(
            svg.starts_with("<svg") && svg.contains("&lt;latency&gt;") && svg.contains("polyline")
        );
    }
}

/// Operations finished, counted by the scenarios (in batches) for the progress line.
pub static DONE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A progress line on standard error while a long phase runs: elapsed time and the
/// rate of finished operations, every two seconds. Phases under five seconds stay
/// quiet; the line stops when this is dropped.
#[derive(Debug)]
pub struct Progress {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(phase: &str, length: Duration) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if length < Duration::from_secs(5) {
            return Self { stop, thread: None };
        }
        let (flag, phase) = (stop.clone(), phase.to_owned());
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut last = (start, DONE.load(Ordering::Relaxed));
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.0.elapsed() < Duration::from_secs(2) {
                    continue;
                }
                let (now, done) = (std::time::Instant::now(), DONE.load(Ordering::Relaxed));
                let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
                eprintln!(
                    "  {phase}: {:.0} s of {:.0} s, {rate:.0} ops/s",
                    start.elapsed().as_secs_f64(),
                    length.as_secs_f64()
                );
                last = (now, done);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
