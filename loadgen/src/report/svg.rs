//! The SVG percentile plot: latency against percentile on log scales (the x axis is
//! log10 of 1/(1−p), "nines"), the usual way to see tails.

use std::fmt::Write as _;

use super::{Run, Series, TOOL, rfc3339};

/// Okabe–Ito's colour-blind-safe colours (yellow left out: unreadable on white), then
/// two of Paul Tol's (olive, wine) and grey. Past ten, colours repeat with a dash.
const PALETTE: [&str; 10] = [
    "#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#999933",
    "#882255", "#999999",
];
const DASHES: [&str; 4] = ["", "8 4", "2 3", "8 3 2 3"];

const WIDTH: f64 = 900.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 40.0;
/// Title, up to three subtitle lines, a gap.
const TOP: f64 = 100.0;
const PLOT_H: f64 = 360.0;
/// Below the plot: tick labels, then the axis title, then the legend.
const LEGEND_TOP: f64 = TOP + PLOT_H + 60.0;
const LEGEND_ROW: f64 = 20.0;
/// Width of a character at 12 px, generously (sans-serif averages about 6 px).
const CHAR_W: f64 = 6.5;
/// Width of a character of a 12 px tick label (digits and commas), a little generous.
const TICK_CHAR_W: f64 = 7.0;
/// Legend labels longer than this are cut with an ellipsis.
const LABEL_CHARS: usize = 36;
/// The x axis reaches at most p99.9999.
const MAX_NINES: u32 = 6;

/// One plotted series: how far its sample size lets it go.
struct Line<'a> {
    series: &'a Series,
    /// log10(n): the line stops at quantile 1 − 1/n, the last one n samples resolve.
    nines: f64,
}

/// The plot of `series` (those with samples), titled by `run`.
pub fn svg(run: &Run, series: &[Series]) -> String {
    let lines: Vec<Line<'_>> = series
        .iter()
        .filter(|s| s.count() > 0)
        .map(|s| Line {
            series: s,
            nines: (s.count() as f64).log10(),
        })
        .collect();
    let x_nines = lines
        .iter()
        .map(|l| l.nines.ceil() as u32)
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_NINES);

    // The y range: from the smallest value to the largest value any line reaches.
    let lo = lines
        .iter()
        .map(|l| l.series.min().as_nanos() as f64)
        .fold(f64::INFINITY, f64::min);
    let hi = lines
        .iter()
        .map(|l| end_value(l, x_nines))
        .fold(1.0, f64::max);
    let lo = if lo.is_finite() { lo.max(1.0) } else { 1.0 };
    let ly0 = lo.log10().floor();
    let ly1 = hi.log10().ceil().max(ly0 + 1.0);
    // One unit for every tick, the one that makes the smallest tick at least 1, so
    // every label is a whole number.
    let (unit, per_unit) = unit_for(10f64.powf(ly0));
    // Room on the left for the longest tick label (the top one) and the axis title.
    let widest = grouped((10f64.powf(ly1) / per_unit).round() as u64).len();
    let left = LEFT.max(40.0 + TICK_CHAR_W * widest as f64);

    let plot_w = WIDTH - left - RIGHT;
    let (entries, legend_h) = legend_layout(&lines, left, plot_w);
    let height = LEGEND_TOP + legend_h + 10.0;
    let x = |nines: f64| left + plot_w * (nines.min(f64::from(x_nines)) / f64::from(x_nines));
    let y = |ns: f64| TOP + PLOT_H * (1.0 - (ns.max(1.0).log10() - ly0) / (ly1 - ly0));

    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
<text x=\"{left}\" y=\"26\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        escape(&truncate(&run.title, 90))
    );
    // 11 px text averages under 6 px a character.
    let subtitle_chars = ((WIDTH - left - RIGHT) / 6.0) as usize;
    let started = rfc3339(run.started)
        .replacen('T', " ", 1)
        .replace('Z', " UTC");
    let tool = if TOOL.commit == "unknown" {
        format!("{} {}", TOOL.name, TOOL.version)
    } else {
        format!("{} {} ({})", TOOL.name, TOOL.version, TOOL.commit)
    };
    let mut subtitle = wrap(&run.details, " · ", subtitle_chars, 2);
    subtitle.push(format!("{started} · {tool}"));
    for (i, line) in subtitle.iter().enumerate() {
        let _ = write!(
            o,
            "<text x=\"{left}\" y=\"{}\" font-size=\"11\" fill=\"#444\">{}</text>",
            46.0 + 16.0 * i as f64,
            escape(&truncate(line, subtitle_chars))
        );
    }

    // Y grid and ticks: decades, with 2 and 5 between them when there are few.
    let decades = (ly1 - ly0) as i32;
    let steps: &[f64] = if decades <= 2 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    for d in 0..=decades {
        for &m in steps {
            let v = m * 10f64.powf(ly0 + f64::from(d));
            if v > 10f64.powf(ly1) * 1.0001 {
                break;
            }
            let yy = y(v);
            let grid = if m == 1.0 { "#ccc" } else { "#eee" };
            let _ = write!(
                o,
                "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{grid}\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left + plot_w,
                left - 6.0,
                yy + 4.0,
                grouped((v / per_unit).round() as u64)
            );
        }
    }
    // X grid and ticks: 0 %, 50 %, then 90 %, 99 %, 99.9 %, … as far as the axis goes.
    let mut xticks = vec![(0.0, "0%".to_owned()), (2f64.log10(), "50%".to_owned())];
    for k in 1..=x_nines {
        xticks.push((f64::from(k), percent_nines(k)));
    }
    for (nv, label) in &xticks {
        let xx = x(*nv);
        let _ = write!(
            o,
            "<line x1=\"{xx:.1}\" y1=\"{TOP}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/>\
<text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + PLOT_H,
            TOP + PLOT_H + 18.0
        );
    }
    // The frame and the axis titles.
    let _ = write!(
        o,
        "<rect x=\"{left}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{PLOT_H}\" fill=\"none\" stroke=\"#888\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">percentile</text>\
<text transform=\"translate(22 {:.1}) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">latency ({unit})</text>",
        left + plot_w / 2.0,
        TOP + PLOT_H + 38.0,
        TOP + PLOT_H / 2.0
    );

    for (i, l) in lines.iter().enumerate() {
        let (color, dash) = style(i);
        let mut pts = String::new();
        let end = l.nines.min(f64::from(x_nines));
        for k in 0..=200 {
            let nv = end * f64::from(k) / 200.0;
            let ns = l.series.quantile(1.0 - 10f64.powf(-nv)).as_nanos() as f64;
            let _ = write!(pts, "{:.1},{:.1} ", x(nv), y(ns));
        }
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>\
<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
            pts.trim_end(),
            x(end),
            y(end_value(l, x_nines))
        );
    }
    o.push_str(&entries);
    o.push_str("</svg>\n");
    o
}

/// The latency where a line ends.
fn end_value(l: &Line<'_>, x_nines: u32) -> f64 {
    let end = l.nines.min(f64::from(x_nines));
    l.series.quantile(1.0 - 10f64.powf(-end)).as_nanos() as f64
}

fn style(i: usize) -> (&'static str, String) {
    let dash = DASHES[(i / PALETTE.len()) % DASHES.len()];
    let dash = if dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{dash}\"")
    };
    (PALETTE[i % PALETTE.len()], dash)
}

/// The legend below the plot, in as many columns as fit the plot's width, row after
/// row: its SVG and its height.
fn legend_layout(lines: &[Line<'_>], left: f64, plot_w: f64) -> (String, f64) {
    let texts: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{} (n = {})",
                truncate(l.series.label.trim(), LABEL_CHARS),
                grouped(l.series.count())
            )
        })
        .collect();
    let longest = texts.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    // Swatch, gap, text, space to the next column.
    let col_w = (34.0 + CHAR_W * longest as f64 + 18.0).min(plot_w);
    let cols = ((plot_w / col_w).floor() as usize).max(1);
    let mut o = String::new();
    for (i, text) in texts.iter().enumerate() {
        let (color, dash) = style(i);
        let (cx, cy) = (
            left + col_w * (i % cols) as f64,
            LEGEND_TOP + LEGEND_ROW * (i / cols) as f64,
        );
        let _ = write!(
            o,
            "<line x1=\"{cx:.1}\" y1=\"{cy:.1}\" x2=\"{:.1}\" y2=\"{cy:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>\
<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            cx + 28.0,
            cx + 34.0,
            cy + 4.0,
            escape(text)
        );
    }
    let rows = texts.len().div_ceil(cols);
    (o, LEGEND_ROW * rows as f64)
}

/// The unit whose smallest tick `ns` is at least 1, and nanoseconds per unit.
fn unit_for(ns: f64) -> (&'static str, f64) {
    if ns < 1e3 {
        ("ns", 1.0)
    } else if ns < 1e6 {
        ("µs", 1e3)
    } else if ns < 1e9 {
        ("ms", 1e6)
    } else {
        ("s", 1e9)
    }
}

/// `n` with its thousands separated by commas: 1,000,000.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut o = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// `parts` joined by `sep` into at most `lines` lines of at most `width` characters;
/// what does not fit ends in an ellipsis.
fn wrap(parts: &[String], sep: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        match out.last_mut() {
            Some(l) if l.chars().count() + sep.chars().count() + p.chars().count() <= width => {
                l.push_str(sep);
                l.push_str(p);
            }
            _ => out.push(p.clone()),
        }
    }
    if out.len() > lines {
        let rest = out.split_off(lines - 1).join(sep);
        out.push(rest);
    }
    out.into_iter().map(|l| truncate(&l, width)).collect()
}

/// 90%, 99%, 99.9%, … for k nines.
fn percent_nines(k: u32) -> String {
    let decimals = k.saturating_sub(2) as usize;
    format!("{:.decimals$}%", 100.0 * (1.0 - 10f64.powi(-(k as i32))))
}

/// `s` cut to `max` characters, the last of them an ellipsis.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn series(id: &str, n: u64, scale_us: u64) -> Series {
        let mut s = Series::new(id, format!("series {id}"));
        for i in 1..=n {
            s.record(Duration::from_micros(scale_us + i % 1000 * scale_us / 100));
        }
        s
    }

    /// The largest x of each polyline.
    fn line_ends(svg: &str) -> Vec<f64> {
        svg.split("points=\"")
            .skip(1)
            .map(|rest| {
                let pts = &rest[..rest.find('"').unwrap()];
                pts.split_whitespace()
                    .map(|p| p.split(',').next().unwrap().parse::<f64>().unwrap())
                    .fold(0.0, f64::max)
            })
            .collect()
    }

    #[test]
    fn lines_stop_where_the_sample_size_does() {
        let s = [series("big", 100_000, 50), series("small", 1000, 50)];
        let svg = svg(&Run::new("resolve", serde_json::Value::Null), &s);
        let plot_w = WIDTH - LEFT - RIGHT;
        let ends = line_ends(&svg);
        // 100 000 samples reach p99.999, the axis's end (5 nines); 1000 reach p99.9.
        assert!((ends[0] - (LEFT + plot_w)).abs() < 0.2, "{ends:?}");
        assert!(
            (ends[1] - (LEFT + plot_w * 3.0 / 5.0)).abs() < 0.2,
            "{ends:?}"
        );
        for tick in ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "{tick}");
        }
        assert!(!svg.contains("99.9999%"));
    }

    #[test]
    fn every_series_has_its_own_colour_or_dash() {
        let s: Vec<Series> = (0..14).map(|i| series(&format!("s{i}"), 100, 10)).collect();
        let svg = svg(&Run::new("x", serde_json::Value::Null), &s);
        let styles: std::collections::HashSet<(&str, String)> = (0..14).map(style).collect();
        assert_eq!(styles.len(), 14);
        assert_eq!(svg.matches("<polyline").count(), 14);
        assert!(svg.contains("stroke-dasharray=\"8 4\""));
    }

    #[test]
    fn y_ticks_share_one_unit_and_the_axes_have_titles() {
        // 50 µs .. about 550 µs: ticks in µs, whole numbers.
        let s = [series("a", 10_000, 50)];
        let svg = svg(&Run::new("x", serde_json::Value::Null), &s);
        assert!(svg.contains(">latency (µs)</text>"), "{svg}");
        assert!(svg.contains(">percentile</text>"));
        for tick in ["10", "20", "50", "100", "200", "500", "1,000"] {
            assert!(svg.contains(&format!("end\">{tick}</text>")), "{tick}");
        }
    }

    #[test]
    fn long_labels_are_cut_and_the_legend_grows_below_the_plot() {
        let mut s: Vec<Series> = (0..12).map(|i| series(&format!("s{i}"), 100, 10)).collect();
        s[0].label = "x".repeat(200);
        let svg = svg(&Run::new("x", serde_json::Value::Null), &s);
        assert!(svg.contains(&format!("{}…", "x".repeat(LABEL_CHARS - 1))));
        let height: f64 = svg
            .split("height=\"")
            .nth(1)
            .and_then(|h| h.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        // Every legend text lies inside the picture, below the plot.
        for part in svg.split("<text x=\"").skip(1) {
            let attrs: Vec<f64> = part
                .split('"')
                .step_by(2)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [tx, ty] = attrs[..] {
                assert!(tx < WIDTH && ty < height, "{tx} {ty} {height}");
            }
        }
        assert!(height > LEGEND_TOP + 2.0 * LEGEND_ROW);
    }

    #[test]
    fn tick_labels_have_room_left_of_the_plot() {
        // 100 ns to 1 s: nine decades of nanoseconds, the top label 13 characters.
        let mut wide = Series::new("wide", "wide");
        for _ in 0..500 {
            wide.record(Duration::from_nanos(150));
            wide.record(Duration::from_millis(900));
        }
        let svg = svg(&Run::new("x", serde_json::Value::Null), &[wide]);
        let frame = svg.split("<rect x=\"").nth(1).unwrap();
        let left: f64 = frame.split('"').next().unwrap().parse().unwrap();
        // The rotated axis title ends near x = 29; the labels end 6 px left of the plot.
        assert!(
            left - 6.0 - TICK_CHAR_W * 13.0 >= 30.0,
            "plot starts at {left}"
        );
    }

    #[test]
    fn series_without_samples_are_left_out() {
        let s = [Series::new("a", "a"), series("b", 10, 100)];
        let svg = svg(&Run::new("x", serde_json::Value::Null), &s);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = super::svg(&Run::new("x", serde_json::Value::Null), &s[..1]);
        assert!(empty.ends_with("</svg>\n") && !empty.contains("<polyline"));
        assert!(!empty.contains("NaN") && !empty.contains("inf"));
    }

    #[test]
    fn subtitles_wrap_then_cut() {
        let parts: Vec<String> = ["registrar tcp://127.0.0.1:3863", "rate 50%", "2 pool users"]
            .map(String::from)
            .into();
        assert_eq!(wrap(&parts, " · ", 80, 2), [parts.join(" · ")]);
        assert_eq!(
            wrap(&parts, " · ", 41, 2),
            ["registrar tcp://127.0.0.1:3863 · rate 50%", "2 pool users"]
        );
        assert_eq!(
            wrap(&parts, " · ", 30, 2),
            ["registrar tcp://127.0.0.1:3863", "rate 50% · 2 pool users"]
        );
        assert_eq!(wrap(&parts, " · ", 12, 2)[1], "rate 50% · …");
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(100), "100");
    }

    #[test]
    fn percent_labels() {
        assert_eq!(percent_nines(1), "90%");
        assert_eq!(percent_nines(2), "99%");
        assert_eq!(percent_nines(3), "99.9%");
        assert_eq!(percent_nines(5), "99.999%");
    }
}
