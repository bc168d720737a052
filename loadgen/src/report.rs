//! Results: one HdrHistogram per operation, printed as a table a person can read, written
//! as JSON for machines, and drawn as an SVG percentile plot.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies of one operation, in nanoseconds (1 ns to 60 s, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    hist: Histogram<u64>,
    /// Wall time the operations were spread over, for the rate.
    pub elapsed: Duration,
    /// Operations that failed (not in the histogram).
    pub errors: u64,
}

impl Series {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
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

    pub fn merge(&mut self, other: &Series) {
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.hist.value_at_quantile(q))
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.hist.max())
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
            s.name,
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

#[derive(Serialize)]
struct JsonSeries<'a> {
    name: &'a str,
    count: u64,
    errors: u64,
    elapsed_s: f64,
    rate_per_s: f64,
    /// Quantile → latency in seconds.
    latency_s: Vec<(f64, f64)>,
}

/// The JSON document for `--json FILE`.
pub fn json(scenario: &str, params: serde_json::Value, series: &[Series]) -> serde_json::Value {
    let qs = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];
    let rows: Vec<JsonSeries<'_>> = series
        .iter()
        .map(|s| JsonSeries {
            name: &s.name,
            count: s.count(),
            errors: s.errors,
            elapsed_s: s.elapsed.as_secs_f64(),
            rate_per_s: s.rate(),
            latency_s: qs
                .iter()
                .map(|&q| (q, s.quantile(q).as_secs_f64()))
                .collect(),
        })
        .collect();
    serde_json::json!({ "scenario": scenario, "parameters": params, "series": rows })
}

/// An SVG percentile-distribution plot (latency against 1/(1−quantile), log scales), the
/// usual way to see tails.
pub fn svg(title: &str, series: &[Series]) -> String {
    let (w, h, left, bottom, top, right) = (820.0, 480.0, 80.0, 50.0, 40.0, 170.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let nines = 5.0; // x axis: 0 (p0) .. 5 (p99.999)
    let max_ns = series
        .iter()
        .map(|s| s.max().as_nanos() as f64)
        .fold(1.0, f64::max);
    let min_ns = series
        .iter()
        .filter(|s| s.count() > 0)
        .map(|s| s.quantile(0.0).as_nanos() as f64)
        .fold(max_ns, f64::min)
        .max(1.0);
    let (ly0, ly1) = (
        min_ns.log10().floor(),
        max_ns.log10().ceil().max(min_ns.log10().floor() + 1.0),
    );
    let x = |nines_v: f64| left + plot_w * (nines_v / nines);
    let y = |ns: f64| top + plot_h * (1.0 - (ns.max(1.0).log10() - ly0) / (ly1 - ly0));
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"{}\" y=\"24\" font-size=\"15\">{}</text>",
        left,
        escape(title)
    );
    for d in 0..=(ly1 - ly0) as i32 {
        let v = 10f64.powf(ly0 + f64::from(d));
        let yy = y(v);
        let _ = write!(
            o,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            yy + 4.0,
            human(Duration::from_nanos(v as u64))
        );
    }
    for (i, label) in ["p0", "p90", "p99", "p99.9", "p99.99", "p99.999"]
        .iter()
        .enumerate()
    {
        let xx = x(i as f64);
        let _ = write!(
            o,
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            top + plot_h,
            top + plot_h + 18.0
        );
    }
    for (i, s) in series.iter().filter(|s| s.count() > 0).enumerate() {
        let color = colors[i % colors.len()];
        let mut pts = String::new();
        for k in 0..=200 {
            let nv = nines * f64::from(k) / 200.0;
            let q = 1.0 - 10f64.powf(-nv);
            let ns = s.quantile(q.min(1.0)).as_nanos() as f64;
            let _ = write!(pts, "{:.1},{:.1} ", x(nv), y(ns));
        }
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{pts}\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
            left + plot_w + 10.0,
            top + 16.0 * (i as f64 + 1.0),
            escape(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        let mut s = Series::new("resolve");
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
    fn table_json_and_svg_carry_the_numbers() {
        let s = [series()];
        let t = table(&s);
        assert!(
            t.contains("resolve") && t.contains("2000") && t.contains("p99.9"),
            "{t}"
        );
        let j = json("resolve", serde_json::json!({"pool_size": 500}), &s);
        assert_eq!(j["series"][0]["count"], 1000);
        assert_eq!(j["series"][0]["errors"], 2);
        let svg = svg("resolution <latency>", &s);
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
