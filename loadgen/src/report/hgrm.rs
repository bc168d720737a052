//! HdrHistogram's percentile distribution text (`.hgrm`), as Java's
//! `outputPercentileDistribution(out, 5, 1000.0)` prints it, so that HdrHistogram's
//! plotFiles.html, hdr-plot and the like read it: values in microseconds (the
//! histograms record nanoseconds, a scaling ratio of 1000).

use std::fmt::Write as _;

use super::Series;

/// Iteration steps per halving of the distance to 100 %, Java's default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Recorded nanoseconds per printed microsecond.
const UNIT_SCALING_RATIO: f64 = 1000.0;

/// The `.hgrm` text of one series.
pub fn hgrm(series: &Series) -> String {
    let h = series.histogram();
    let digits = usize::from(h.sigfig());
    let mut o = String::new();
    let _ = write!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / UNIT_SCALING_RATIO;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    o,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(o, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean(), h.stdev(), h.max() as f64)
    };
    let _ = writeln!(
        o,
        "#[Mean    = {:>12.digits$}, StdDeviation   = {:>12.digits$}]",
        mean / UNIT_SCALING_RATIO,
        stdev / UNIT_SCALING_RATIO
    );
    let _ = writeln!(
        o,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        max / UNIT_SCALING_RATIO,
        h.len()
    );
    // As Java: sub-buckets hold 2 × 10^digits values at unit resolution, rounded up to
    // a power of two.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        o,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentile_distribution_as_hdrhistogram_prints_it() {
        let mut s = Series::new("resolution.closed", "resolution (closed loop)");
        for us in 1..=1000u64 {
            s.record(Duration::from_micros(us));
        }
        let text = hgrm(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        // The first row: the smallest value, 1 µs, at percentile 0.
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        // The last row before the footer reaches 100 % with every count, and has no
        // 1/(1-Percentile) column.
        let last = lines[lines.len() - 4];
        let cols: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(cols.len(), 3, "{last}");
        assert_eq!(cols[1], "1.000000000000");
        assert_eq!(cols[2], "1000");
        let median = lines[2..lines.len() - 3]
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c[1] == "0.500000000000")
            .expect("a row at 50 %");
        assert_eq!(median[0], "500.223", "{text}");
        assert!(lines[lines.len() - 3].starts_with("#[Mean    = "), "{text}");
        assert!(lines[lines.len() - 2].starts_with("#[Max     = "), "{text}");
        assert!(lines[lines.len() - 2].ends_with("Total count    =         1000]"));
        assert!(lines[lines.len() - 1].contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn an_empty_series_has_the_header_and_footer() {
        let text = hgrm(&Series::new("x", "x"));
        assert_eq!(text.lines().count(), 5, "{text}");
    }
}
