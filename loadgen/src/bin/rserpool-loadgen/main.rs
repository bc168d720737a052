//! `rserpool-loadgen`: drives a registrar with simulated pool elements and pool users.
#![forbid(unsafe_code)]

mod enrp;
mod failures;
mod resolution;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;
use rserpool::PoolHandle;
use rserpool_loadgen::conn::Target;
use rserpool_loadgen::failover::{FailoverConfig, Mode};
use rserpool_loadgen::farm::{Farm, FarmConfig};
use rserpool_loadgen::report::{self, Series};

use enrp::{PropagationArgs, TakeoverArgs};
use failures::{ChurnArgs, FailoverArgs};
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
HdrHistogram per operation, writes JSON with --json FILE and a latency-by-percentile \
SVG plot with --svg FILE. Runs of five seconds or more print a progress line to \
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
    /// Resolution latency and throughput: P pools... one pool of --pes PEs registers,
    /// then --pus pool users resolve it. --rate max (default) runs closed loop (each
    /// user waits for its answer: maximum throughput); --rate N runs open loop at N
    /// requests/s in total (sent on schedule whatever the answers do; latency from the
    /// intended send time, so stalls cannot hide); --rate P% first measures the maximum,
    /// then runs open loop at P% of it. Over TCP the same requests are then timed
    /// against a built-in echo responder answering with the same size: the transport
    /// floor, in the same run.
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

/// Where the results go besides the table.
#[derive(Debug, Args)]
struct Files {
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG latency-by-percentile plot to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Common {
    /// Pool handle.
    #[arg(long, default_value = "LoadPool")]
    pool: String,
    /// Pool elements to register.
    #[arg(long, default_value_t = 500)]
    pes: u32,
    /// Connections the pool elements share, round robin; 0 gives each PE its own (as
    /// RSPLIB's pool elements have).
    #[arg(long, default_value_t = 0)]
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
    /// The registrar's keep-alive interval in ms (the registrar this process starts
    /// uses it; for another registrar it only sets the bound hung PEs are held to).
    #[arg(long, default_value_t = 100)]
    keep_alive_interval: u64,
    /// The registrar's keep-alive timeout in ms (as --keep-alive-interval).
    #[arg(long, default_value_t = 100)]
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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rserpool-loadgen: {e:#}");
            ExitCode::FAILURE
        }
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

fn run(cli: Cli) -> anyhow::Result<()> {
    // Thousands of PE connections, each with a listener on its port: more descriptors
    // than the usual soft limit of 1024.
    let _ = rserpool_shards::net::socket::raise_fd_limit();
    match cli.command {
        Command::Demo(a) => resolution::demo(a),
        Command::Resolve(a) => resolution::resolve_cmd(&a),
        Command::Churn(a) => failures::churn_cmd(&a),
        Command::Failover(a) => failures::failover_cmd(&a),
        Command::Echo(a) => resolution::echo_cmd(&a),
        Command::Propagation(a) => enrp::propagation_cmd(&a),
        Command::Takeover(a) => enrp::takeover_cmd(&a),
    }
}

/// Series and headline lines collected over a run, printed and written at the end.
#[derive(Debug, Default)]
struct Output {
    series: Vec<Series>,
    lines: Vec<String>,
    summary: serde_json::Map<String, serde_json::Value>,
}

impl Output {
    fn finish(
        self,
        scenario: &str,
        files: &Files,
        params: serde_json::Value,
    ) -> anyhow::Result<()> {
        println!();
        print!("{}", report::table(&self.series));
        if !self.lines.is_empty() {
            println!();
        }
        for l in &self.lines {
            println!("{l}");
        }
        if let Some(path) = &files.json {
            let mut doc = report::json(scenario, params, &self.series);
            doc["summary"] = serde_json::Value::Object(self.summary);
            std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &files.svg {
            let svg = report::svg("latency by percentile", &self.series);
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

fn start_farm(target: Target, common: &Common) -> anyhow::Result<(Farm, Series)> {
    anyhow::ensure!(common.pes >= 1, "--pes must be at least 1");
    let t = std::time::Instant::now();
    let farm = Farm::start(FarmConfig {
        links: common.pe_connections,
        listen: !common.no_pe_listeners,
        ..FarmConfig::new(target, pool_handle(&common.pool)?, common.pes)
    })
    .context("registering the pool elements")?;
    let mut registration = Series::new("registration");
    for d in &farm.registration {
        registration.record(*d);
    }
    registration.elapsed = t.elapsed();
    Ok((farm, registration))
}
