//! `rserpool-loadgen`: drives a registrar with simulated pool elements and pool users.
#![forbid(unsafe_code)]

mod enrp;
mod failures;
mod output;
mod resolution;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use mimalloc::MiMalloc;
use rserpool::PoolHandle;
use rserpool_loadgen::conn::Target;
use rserpool_loadgen::failover::{FailoverConfig, Mode};
use rserpool_loadgen::farm::{Farm, FarmConfig};
use rserpool_loadgen::report::{Run, Series};

use enrp::{PropagationArgs, TakeoverArgs};
use failures::{ChurnArgs, FailoverArgs};
use output::{Files, Output, parameters};
use resolution::{DemoArgs, EchoArgs, ResolveArgs};

#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "rserpool-loadgen",
    // The commit comes from build.rs ("unknown" outside a git checkout).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("RSERPOOL_COMMIT"), ")"),
    about = "Load generator for RSerPool registrars: simulated pool elements and pool users over ASAP (TCP or SCTP)",
    long_about = "Load generator for RSerPool registrars (ours or RSPLIB's rspregistrar). \
Simulated pool elements are real registrations on real connections that answer \
keep-alives (thousands fit in one process: one thread drives them all on io_uring); \
simulated pool users resolve the pool and time every answer.\n\n\
Every scenario prints a table (count, rate, p50/p90/p99/p99.9/max, errors) from one \
HdrHistogram per operation, writes JSON with --json FILE (the raw histograms \
included), a latency-by-percentile SVG plot with --svg FILE and HdrHistogram's \
percentile distribution text, one ID.hgrm per series, with --hgrm DIR. Output \
directories are checked before any load is generated. Runs of five seconds or more print a progress line to \
standard error.\n\n\
Registrars are given as tcp://ADDR:PORT, sctp://ADDR:PORT or ADDR:PORT (TCP). \
--registrar names the one registrar both pool elements and pool users use; \
--pe-registrar and --pu-registrar split the roles (each defaults to --registrar), so \
that PEs register at one registrar and pool users resolve at an ENRP peer of it. Over \
TCP every PE connection also listens on its own local port, where a registrar taking \
the PEs over after their registrar died connects (RFC 5353 §3.5.2)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The headline figures in about 15 s: starts a registrar in this process (2 shards,
    /// keep-alive 100 ms + 100 ms) unless --registrar is given, then resolution at
    /// maximum rate, resolution open-loop at half of it against the echo floor, and
    /// crash and hang failover in a 500-PE pool.
    Demo(DemoArgs),
    /// Resolution latency and throughput: one pool of --pes PEs registers,
    /// then --pus pool users resolve it. --rate max (default) runs closed loop (each
    /// user waits for its answer: maximum throughput); --rate N runs open loop at N
    /// requests/s in total (sent on schedule whatever the answers do; latency from the
    /// intended send time, so stalls cannot hide); --rate P% first measures the maximum,
    /// then runs open loop at P% of it. Every pool user first makes one untimed round
    /// trip, and the timing starts once all are ready. The same requests are then timed
    /// against an echo responder, in a process of its own, answering with the
    /// registrar's answer: the transport floor, in the same run (--rounds N takes turns
    /// between the two at --rate max).
    Resolve(ResolveArgs),
    /// Registration churn: after the pool registers, random PEs re-register, deregister
    /// and register again at --rate operations per second; latency per operation kind.
    Churn(ChurnArgs),
    /// Failover: in a pool of --pes PEs under the Priority policy, each on its own
    /// connection, promote --batch PEs to the highest priority (so that every answer of
    /// --batch items names them), then crash them (close the connection) or hang them
    /// (stop answering keep-alives), and time per PE from the failure until no answer
    /// names it on any of several observer connections (resolving back to back). Many
    /// trials; a histogram of the results.
    Failover(FailoverArgs),
    /// The transport floor alone: framed requests against the built-in echo
    /// responder, closed loop or at --rate.
    Echo(EchoArgs),
    /// ENRP propagation between two registrars: trials at --rate per second, each a PE
    /// in a pool of its own registered at --pe-registrar (A), timed from A's
    /// acknowledgement until the first answer from --pu-registrar (B) that lists it;
    /// then deregistered at A, timed until B no longer lists it. An observer polls B
    /// back to back for the waiting trials (small answers: a round of tens of
    /// microseconds bounds the error). Trials that do not show (or vanish) within
    /// --timeout are errors.
    Propagation(PropagationArgs),
    /// Takeover of a dead registrar's PEs: starts --registrars registrar processes on
    /// loopback with ENRP over TCP (every one a static peer of the others), registers
    /// --pes PEs at registrar 0, waits until every other registrar lists them, kills
    /// registrar 0 (SIGKILL) and times per PE from the kill until it answers a
    /// keep-alive with the home flag from a survivor. Then every survivor must list
    /// every PE with a survivor as its home. Exits non-zero if any PE is lost.
    Takeover(TakeoverArgs),
}

/// Which registrar each role uses.
#[derive(Debug, Args)]
struct Registrars {
    /// Registrar to drive: the pool elements register there and pool users resolve
    /// there (unless --pe-registrar or --pu-registrar say otherwise).
    #[arg(long, value_name = "URI")]
    registrar: Option<Target>,
    /// Registrar the pool elements register at. Default: --registrar.
    #[arg(long, value_name = "URI")]
    pe_registrar: Option<Target>,
    /// Registrar the pool users resolve at (an ENRP peer of the PEs' registrar, say).
    /// Default: --registrar.
    #[arg(long, value_name = "URI")]
    pu_registrar: Option<Target>,
}

impl Registrars {
    fn any(&self) -> bool {
        self.registrar.is_some() || self.pe_registrar.is_some() || self.pu_registrar.is_some()
    }

    fn pe(&self) -> anyhow::Result<Target> {
        self.pe_registrar
            .or(self.registrar)
            .context("--registrar (or --pe-registrar) is required")
    }

    fn pu(&self) -> anyhow::Result<Target> {
        self.pu_registrar
            .or(self.registrar)
            .context("--registrar (or --pu-registrar) is required")
    }

    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({
            "pe_registrar": self.pe()?.to_string(),
            "pu_registrar": self.pu()?.to_string(),
        }))
    }
}

#[derive(Debug, Args)]
struct Common {
    /// Pool handle (1 to 32 bytes).
    #[arg(long, value_name = "NAME", default_value = "LoadPool")]
    pool: String,
    /// Pool elements to register.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=MAX_PES))]
    pes: u32,
    /// Connections the pool elements share, round robin; 0 gives each PE its own (as
    /// RSPLIB's pool elements have).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=MAX_PES))]
    pe_connections: u32,
    /// Do not listen on the local ports of the PEs' TCP connections (then a registrar
    /// taking the PEs over cannot reach them).
    #[arg(long)]
    no_pe_listeners: bool,
    #[command(flatten)]
    files: Files,
}

#[derive(Debug, Args)]
struct KeepAlive {
    /// The registrar's keep-alive interval (the registrar this process starts uses it;
    /// for another registrar it only sets the bound hung PEs are held to).
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    keep_alive_interval: u64,
    /// The registrar's keep-alive timeout (as --keep-alive-interval).
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    keep_alive_timeout: u64,
}

impl KeepAlive {
    /// Interval plus timeout: the longest a hung PE may stay registered.
    fn sum(&self) -> Duration {
        Duration::from_millis(
            self.keep_alive_interval
                .saturating_add(self.keep_alive_timeout),
        )
    }

    fn config(
        &self,
        (pe_target, pu_target): (Target, Target),
        pool: &str,
        pes: u32,
        mode: Mode,
    ) -> anyhow::Result<FailoverConfig> {
        Ok(FailoverConfig {
            pe_target,
            pu_target,
            pool: pool_handle(pool)?,
            pes,
            mode,
            trials: 1,
            batch: 1,
            observers: 1,
            connections_per_observer: 8,
            round_interval: Duration::ZERO,
            trial_timeout: self.sum() + Duration::from_secs(10),
            seed: 0x5eed,
            pe_listeners: true,
        })
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rserpool-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Most pool elements one run registers.
const MAX_PES: i64 = 1_000_000;
/// Most pool users (connections) one run opens.
const MAX_PUS: i64 = 10_000;
/// Longest keep-alive interval or timeout: an hour.
const MAX_MS: u64 = 3_600_000;
/// Longest phase: a day.
const MAX_SECONDS: f64 = 86_400.0;

/// clap's parser for `--duration <SECONDS>` and the like: more than 0, at most a day.
fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_SECONDS {
        Ok(v)
    } else {
        Err(format!(
            "must be more than 0 and at most {MAX_SECONDS} seconds"
        ))
    }
}

/// clap's parser for `--hold <SECONDS>`: 0 (none) up to a day.
fn seconds_or_zero(s: &str) -> Result<f64, String> {
    if s.parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    positive_seconds(s).map_err(|_| format!("must be 0 to {MAX_SECONDS} seconds"))
}

/// clap's parser for `--rate <PER_SECOND>`: more than 0, at most ten million.
fn per_second(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a rate per second"))?;
    if v.is_finite() && v > 0.0 && v <= 10_000_000.0 {
        Ok(v)
    } else {
        Err("must be more than 0 and at most 10000000 per second".into())
    }
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        s.is_finite() && s > 0.0 && s <= 86_400.0,
        "{what} must be 0..86400 seconds, not {s}"
    );
    Ok(Duration::from_secs_f64(s))
}

fn pool_handle(name: &str) -> anyhow::Result<PoolHandle> {
    let pool = PoolHandle::from(name);
    anyhow::ensure!(
        !pool.is_empty() && pool.len() <= 32,
        "--pool must be 1..=32 bytes"
    );
    Ok(pool)
}

fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let (name, sub) = matches.subcommand().context("a subcommand is required")?;
    let run = Run::new(name, parameters(name, sub));
    if let Some(files) = cli.command.files() {
        files.check()?;
    }
    // Thousands of PE connections, each with a listener on its port: more descriptors
    // than the usual soft limit of 1024.
    let _ = rserpool_shards::net::socket::raise_fd_limit();
    match cli.command {
        Command::Demo(a) => resolution::demo(a, run),
        Command::Resolve(a) => resolution::resolve_cmd(&a, run),
        Command::Churn(a) => failures::churn_cmd(&a, run),
        Command::Failover(a) => failures::failover_cmd(&a, run),
        Command::Echo(a) => resolution::echo_cmd(&a),
        Command::Propagation(a) => enrp::propagation_cmd(&a, run),
        Command::Takeover(a) => enrp::takeover_cmd(&a, run),
    }
}

impl Command {
    fn files(&self) -> Option<&Files> {
        match self {
            Command::Demo(a) => Some(&a.common.files),
            Command::Resolve(a) => Some(&a.common.files),
            Command::Churn(a) => Some(&a.common.files),
            Command::Failover(a) => Some(&a.common.files),
            Command::Echo(_) => None,
            Command::Propagation(a) => Some(&a.files),
            Command::Takeover(a) => Some(&a.common.files),
        }
    }
}

fn start_farm(target: Target, common: &Common) -> anyhow::Result<(Farm, Series)> {
    let t = std::time::Instant::now();
    let farm = Farm::start(FarmConfig {
        links: common.pe_connections,
        listen: !common.no_pe_listeners,
        ..FarmConfig::new(target, pool_handle(&common.pool)?, common.pes)
    })
    .context("registering the pool elements")?;
    let mut registration = Series::new("registration", "registration");
    for d in &farm.registration {
        registration.record(*d);
    }
    registration.elapsed = t.elapsed();
    Ok((farm, registration))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value names in `--help`, one style everywhere: units spelt out.
    const VALUE_NAMES: [&str; 15] = [
        "URI",
        "NAME",
        "N",
        "SECONDS",
        "MS",
        "US",
        "PER_SECOND",
        "max|PER_SECOND",
        "max|PER_SECOND|P%",
        "FILE",
        "DIR",
        "PATH",
        "HEX",
        "LEVEL",
        "MODE",
    ];
    /// Numeric value names: a zero or nonsense value must be refused by flag name.
    const NUMERIC: [&str; 5] = ["N", "SECONDS", "MS", "US", "PER_SECOND"];
    /// Numeric flags where 0 means something (none, each its own, back to back).
    const ZERO_MEANS_SOMETHING: [&str; 5] = [
        "pe_connections",
        "crash_trials",
        "hang_trials",
        "hold",
        "observer_interval_us",
    ];

    fn every_value_arg() -> Vec<(String, clap::Arg)> {
        let cmd = Cli::command();
        cmd.get_subcommands()
            .flat_map(|sub| {
                sub.get_arguments()
                    .filter(|a| a.get_action().takes_values() && a.get_long().is_some())
                    .map(|a| (sub.get_name().to_owned(), a.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_value_has_a_name_in_the_one_style() {
        Cli::command().debug_assert();
        for (sub, arg) in every_value_arg() {
            let names = arg.get_value_names().unwrap_or_default();
            let name = names.first().map(|n| n.as_str()).unwrap_or("");
            let ok = VALUE_NAMES.contains(&name) || name == "TIMERS";
            assert!(
                ok,
                "{sub} --{}: value name {name:?}",
                arg.get_long().unwrap()
            );
        }
    }

    #[test]
    fn zero_and_nonsense_numbers_are_refused_by_name() {
        let mut checked = 0;
        for (sub, arg) in every_value_arg() {
            let names = arg.get_value_names().unwrap_or_default();
            let Some(name) = names.first() else { continue };
            if !NUMERIC.contains(&name.as_str()) {
                continue;
            }
            let long = format!("--{}", arg.get_long().unwrap());
            let mut bad = vec!["nan", "abc", "1e99", "99999999999"];
            if !ZERO_MEANS_SOMETHING.contains(&arg.get_id().as_str()) {
                bad.push("0");
            }
            for value in bad {
                let err = Cli::try_parse_from(["rserpool-loadgen", &sub, &long, value])
                    .expect_err(&format!("{sub} {long} {value}"));
                assert!(
                    err.to_string().contains(&long),
                    "{sub} {long} {value}: {err}"
                );
            }
            checked += 1;
        }
        assert!(checked >= 30, "{checked}");
    }
}
