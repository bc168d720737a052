//! Where a run's results go: the table and headlines on standard output, and the
//! files of --json, --svg and --hgrm, whose paths are checked before the run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgMatches, Args, CommandFactory};
use rserpool_loadgen::report::{self, Run, Series};

use super::Cli;

/// Where the results go besides the table.
#[derive(Debug, Args)]
pub(super) struct Files {
    /// Write the results as JSON to FILE (schema version 2: parameters, every series
    /// with its raw histogram).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG latency-by-percentile plot to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write each series' percentile distribution in HdrHistogram's text format
    /// (microseconds) to DIR/ID.hgrm, ID the series' stable identifier
    /// (resolution.closed, failover.crash, …). DIR must exist.
    #[arg(long, value_name = "DIR")]
    hgrm: Option<PathBuf>,
}

impl Files {
    /// Fails, naming the path, unless every output can be written: run before any
    /// load is generated, so that a typo does not cost the run.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        for (flag, path) in [("--json", &self.json), ("--svg", &self.svg)] {
            let Some(path) = path else { continue };
            anyhow::ensure!(
                !path.is_dir(),
                "{flag} {}: is a directory, not a file",
                path.display()
            );
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            writable_dir(flag, path, dir)?;
        }
        if let Some(dir) = &self.hgrm {
            writable_dir("--hgrm", dir, dir)?;
        }
        Ok(())
    }

    fn write(&self, run: &Run, out: Output) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            let doc = report::json(run, &out.series, out.summary);
            std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &self.svg {
            let svg = report::svg(run, &out.series);
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(dir) = &self.hgrm {
            for s in &out.series {
                let path = dir.join(format!("{}.hgrm", s.id));
                std::fs::write(&path, report::hgrm(s))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Fails unless `dir` (where `flag`'s `path` goes) is a directory this process can
/// create files in: tried with a file of its own, removed again.
fn writable_dir(flag: &str, path: &Path, dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "{flag} {}: {} {}",
        path.display(),
        dir.display(),
        if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        }
    );
    let probe = dir.join(format!(".rserpool-loadgen-{}.probe", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| {
            format!(
                "{flag} {}: cannot write in directory {}",
                path.display(),
                dir.display()
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Every argument of subcommand `name` as the run used it (defaults included, unset
/// options null), keyed by its long name with `_` for `-`: the JSON's `parameters`.
pub(super) fn parameters(name: &str, sub: &ArgMatches) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let cmd = Cli::command();
    let Some(cmd) = cmd.find_subcommand(name) else {
        return map.into();
    };
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        map.insert(id.to_owned(), parameter(sub, id));
    }
    map.into()
}

/// One argument's value, typed where its parser's type is a number, a flag or a path.
fn parameter(sub: &ArgMatches, id: &str) -> serde_json::Value {
    use serde_json::Value;
    macro_rules! typed {
        ($($t:ty),*) => {$(
            if let Ok(v) = sub.try_get_one::<$t>(id) {
                return v.map_or(Value::Null, |v| serde_json::json!(v));
            }
        )*};
    }
    typed!(u16, u32, u64, usize, f64, bool, String);
    if let Ok(v) = sub.try_get_one::<PathBuf>(id) {
        return v.map_or(Value::Null, |p| p.display().to_string().into());
    }
    // Other types (addresses, rates, modes): as given on the command line, or the
    // default.
    match sub.get_raw(id) {
        Some(mut raw) if raw.len() == 1 => raw
            .next()
            .map_or(Value::Null, |v| v.to_string_lossy().into_owned().into()),
        Some(raw) => raw
            .map(|v| Value::from(v.to_string_lossy().into_owned()))
            .collect(),
        None => Value::Null,
    }
}

/// The plot's subtitle facts from the parameters: registrars, rate, pool users, PEs.
fn details(params: &serde_json::Value) -> Vec<String> {
    let text = |key: &str| match &params[key] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    };
    let mut d = Vec::new();
    match (text("pe_registrar"), text("pu_registrar")) {
        (Some(pe), Some(pu)) if pe == pu => d.push(format!("registrar {pe}")),
        (Some(pe), Some(pu)) => d.push(format!("PEs at {pe}, pool users at {pu}")),
        (Some(r), None) | (None, Some(r)) => d.push(format!("registrar {r}")),
        (None, None) => {
            if let Some(r) = text("registrar") {
                d.push(format!("registrar {r}"));
            }
        }
    }
    if let Some(r) = text("rate") {
        d.push(match r.parse::<f64>() {
            Ok(_) => format!("rate {r}/s"),
            Err(_) => format!("rate {r}"),
        });
    }
    for (key, what) in [
        ("pus", "pool users"),
        ("pes", "PEs"),
        ("items", "items"),
        ("trials", "trials"),
        ("registrars", "registrars"),
    ] {
        if let Some(v) = text(key) {
            d.push(format!("{v} {what}"));
        }
    }
    for key in ["mode", "timers"] {
        if let Some(v) = text(key) {
            d.push(format!("{key} {v}"));
        }
    }
    if let Some(v) = text("duration") {
        d.push(format!("{v} s per measurement"));
    }
    d
}

/// Series and headline lines collected over a run, printed and written at the end.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub(super) series: Vec<Series>,
    pub(super) lines: Vec<String>,
    pub(super) summary: serde_json::Map<String, serde_json::Value>,
    /// Facts for the plot's subtitle before those read from the parameters.
    pub(super) details: Vec<String>,
}

impl Output {
    /// Prints the table and headlines and writes the files; `resolved` adds to (or
    /// overrides) the run's parameters what the run made of them (the registrars
    /// --registrar stood for, say).
    pub(super) fn finish(
        mut self,
        mut run: Run,
        files: &Files,
        resolved: serde_json::Value,
    ) -> anyhow::Result<()> {
        println!();
        print!("{}", report::table(&self.series));
        if !self.lines.is_empty() {
            println!();
        }
        for l in &self.lines {
            println!("{l}");
        }
        if let (Some(params), serde_json::Value::Object(resolved)) =
            (run.parameters.as_object_mut(), resolved)
        {
            params.extend(resolved);
        }
        self.details.extend(details(&run.parameters));
        run.details = std::mem::take(&mut self.details);
        files.write(&run, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_hold_every_argument_with_its_default() {
        let matches = Cli::command()
            .try_get_matches_from(["rserpool-loadgen", "resolve", "--pus", "7", "--rate", "50%"])
            .unwrap();
        let (name, sub) = matches.subcommand().unwrap();
        let p = parameters(name, sub);
        assert_eq!(p["pus"], 7);
        assert_eq!(p["pes"], 500);
        assert_eq!(p["duration"], 3.0);
        assert_eq!(p["rate"], "50%");
        assert_eq!(p["pool"], "LoadPool");
        assert_eq!(p["no_floor"], false);
        assert_eq!(p["registrar"], serde_json::Value::Null);
        assert_eq!(p["json"], serde_json::Value::Null);
        let d = details(&p);
        assert!(d.contains(&"rate 50%".to_owned()) && d.contains(&"7 pool users".to_owned()));
    }
}
