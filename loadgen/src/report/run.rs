//! What every output says about the run besides the numbers: the tool, when, and with
//! which parameters.

use std::time::{SystemTime, UNIX_EPOCH};

/// The load generator itself, as the JSON's `tool` and the plot's subtitle name it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
    /// The source commit, when the build set `RSERPOOL_COMMIT`.
    pub commit: &'static str,
}

pub const TOOL: Tool = Tool {
    name: "rserpool-loadgen",
    version: env!("CARGO_PKG_VERSION"),
    commit: match option_env!("RSERPOOL_COMMIT") {
        Some(c) => c,
        None => "unknown",
    },
};

/// One run of a scenario: what the outputs say besides the series.
#[derive(Debug, Clone)]
pub struct Run {
    /// The subcommand (`resolve`, `failover`, …).
    pub scenario: String,
    /// The plot's title.
    pub title: String,
    /// Every parameter of the run, defaults included.
    pub parameters: serde_json::Value,
    /// When the run started.
    pub started: SystemTime,
    /// Short facts for the plot's subtitle ("registrar tcp://…", "2 pool users").
    pub details: Vec<String>,
}

impl Run {
    pub fn new(scenario: &str, parameters: serde_json::Value) -> Self {
        Self {
            scenario: scenario.to_owned(),
            title: format!("{scenario}: latency by percentile"),
            parameters,
            started: SystemTime::now(),
            details: Vec::new(),
        }
    }
}

/// `t` as RFC 3339 in UTC to the second: `2026-11-27T20:36:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59Z");
    }
}
