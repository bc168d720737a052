//! The JSON document of `--json FILE` (schema in the README, "The load generator").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::Serialize;

use super::{Run, Series, TOOL, rfc3339};

/// Version 2 added `schema_version`, `timestamp`, `tool`, the series' `id` and `label`,
/// and the raw histograms; `name` stays (the label) for readers of version 1.
pub const JSON_SCHEMA_VERSION: u32 = 2;

/// How `histogram.data` is encoded: HdrHistogram's V2 compressed serialization (as
/// Java's `encodeIntoCompressedByteBuffer`, readable by every HdrHistogram port), base64.
const HISTOGRAM_ENCODING: &str = "hdrhistogram-v2-deflate+base64";

#[derive(Serialize)]
struct JsonSeries<'a> {
    id: &'a str,
    label: &'a str,
    /// The label again, under its version-1 key.
    name: &'a str,
    count: u64,
    errors: u64,
    elapsed_s: f64,
    rate_per_s: f64,
    /// Quantile → latency in seconds.
    latency_s: Vec<(f64, f64)>,
    histogram: JsonHistogram,
}

#[derive(Serialize)]
struct JsonHistogram {
    encoding: &'static str,
    /// Recorded values are nanoseconds.
    unit: &'static str,
    data: String,
}

/// The JSON document for `--json FILE`.
pub fn json(
    run: &Run,
    series: &[Series],
    summary: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let qs = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];
    let rows: Vec<JsonSeries<'_>> = series
        .iter()
        .map(|s| JsonSeries {
            id: &s.id,
            label: &s.label,
            name: &s.label,
            count: s.count(),
            errors: s.errors,
            elapsed_s: s.elapsed.as_secs_f64(),
            rate_per_s: s.rate(),
            latency_s: qs
                .iter()
                .map(|&q| (q, s.quantile(q).as_secs_f64()))
                .collect(),
            histogram: JsonHistogram {
                encoding: HISTOGRAM_ENCODING,
                unit: "ns",
                data: encode_histogram(s.histogram()),
            },
        })
        .collect();
    serde_json::json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "timestamp": rfc3339(run.started),
        "tool": TOOL,
        "scenario": run.scenario,
        "parameters": run.parameters,
        "series": rows,
        "summary": summary,
    })
}

fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec cannot fail for lack of room; the histogram is well formed.
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => STANDARD.encode(&bytes),
        Err(_) => String::new(),
    }
}

/// A series' `histogram.data` back to the histogram (nanoseconds), to merge runs or
/// compute other quantiles.
pub fn decode_histogram(data: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = STANDARD.decode(data)?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("not an HdrHistogram V2 serialization: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_histogram_in_the_json_decodes_to_the_series() {
        let mut s = Series::new("resolution.closed", "resolution (closed loop)");
        for us in 1..=5000u64 {
            s.record(Duration::from_micros(us % 977 + 3));
        }
        s.elapsed = Duration::from_secs(1);
        let run = Run::new("resolve", serde_json::json!({ "pus": 2 }));
        let doc = json(&run, std::slice::from_ref(&s), serde_json::Map::new());
        // Through text, as a reader gets it.
        let doc: serde_json::Value = serde_json::from_str(&doc.to_string()).unwrap();
        assert_eq!(doc["schema_version"], JSON_SCHEMA_VERSION);
        assert_eq!(doc["tool"]["name"], "rserpool-loadgen");
        assert_eq!(doc["parameters"]["pus"], 2);
        let row = &doc["series"][0];
        assert_eq!(row["id"], "resolution.closed");
        assert_eq!(row["label"], "resolution (closed loop)");
        assert_eq!(row["histogram"]["encoding"], HISTOGRAM_ENCODING);
        let h = decode_histogram(row["histogram"]["data"].as_str().unwrap()).unwrap();
        assert_eq!(h.len(), s.count());
        assert_eq!(row["count"], h.len());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                Duration::from_nanos(h.value_at_quantile(q)),
                s.quantile(q),
                "q {q}"
            );
        }
        let p99 = row["latency_s"][2][1].as_f64().unwrap();
        assert!((p99 - h.value_at_quantile(0.99) as f64 / 1e9).abs() < 1e-12);
    }

    #[test]
    fn the_timestamp_is_rfc3339_utc() {
        let run = Run::new("resolve", serde_json::Value::Null);
        let doc = json(&run, &[], serde_json::Map::new());
        let ts = doc["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }
}
