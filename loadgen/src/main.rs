//! `rserpool-loadgen`: drives a registrar with simulated pool elements and pool users.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mimalloc::MiMalloc;
use rserpool::PoolHandle;
use rserpool::client::resolution_request;
use rserpool_loadgen::churn::{self, ChurnConfig};
use rserpool_loadgen::conn::{Target, Transport};
use rserpool_loadgen::failover::{self, FailoverConfig, Mode};
use rserpool_loadgen::farm::{Farm, FarmConfig};
use rserpool_loadgen::propagation::{self, PropagationConfig};
use rserpool_loadgen::report::{self, Progress, Series, human};
use rserpool_loadgen::scenario::{
    EchoResponder, any_answer, await_pool, closed_loop, open_loop, positive_resolution,
};
use rserpool_loadgen::scope::{self, Scope, ScopeConfig, Timers};
use rserpool_loadgen::takeover::{self, TakeoverConfig};

#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "rserpool-loadgen",
    version,
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
struct ResolveOpts {
    /// Pool users, one connection each.
    #[arg(long, default_value_t = 2)]
    pus: u32,
    /// PEs asked for per resolution (the Handle Resolution Option).
    #[arg(long, default_value_t = 3)]
    items: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
}

#[derive(Debug, Args)]
struct ResolveArgs {
    #[command(flatten)]
    registrars: Registrars,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    opts: ResolveOpts,
    /// `max` (closed loop), requests per second (open loop), or P% of the maximum.
    #[arg(long, default_value = "max")]
    rate: Rate,
    /// Seconds to keep the PEs registered after the measurements (keep-alives only),
    /// e.g. to sample the registrar's CPU at rest.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Registrars to drive instead of starting one (each must allow loopback addresses
    /// and use keep-alive --keep-alive-interval/--keep-alive-timeout).
    #[command(flatten)]
    registrars: Registrars,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    opts: ResolveOpts,
    /// Crash trials (one PE each).
    #[arg(long, default_value_t = 100)]
    crash_trials: u32,
    /// Hang trials (--hang-batch PEs each).
    #[arg(long, default_value_t = 8)]
    hang_trials: u32,
    #[arg(long, default_value_t = 5)]
    hang_batch: u32,
    #[command(flatten)]
    keep_alive: KeepAlive,
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

#[derive(Debug, Args)]
struct ChurnArgs {
    /// Registrar to drive.
    #[arg(long, value_name = "URI")]
    registrar: Option<Target>,
    /// The same (churn has pool elements only).
    #[arg(long, value_name = "URI")]
    pe_registrar: Option<Target>,
    #[command(flatten)]
    common: Common,
    /// Operations per second, all kinds together.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FailMode {
    /// Close the PE's connection (TCP FIN, SCTP SHUTDOWN), as when the process dies.
    Crash,
    /// Stop answering keep-alives.
    Hang,
}

#[derive(Debug, Args)]
struct FailoverArgs {
    /// The observers resolve at the pool users' registrar.
    #[command(flatten)]
    registrars: Registrars,
    #[command(flatten)]
    common: Common,
    #[arg(long, value_enum, default_value_t = FailMode::Crash)]
    mode: FailMode,
    /// Trials.
    #[arg(long, default_value_t = 200)]
    trials: u32,
    /// PEs failed at once per trial.
    #[arg(long, default_value_t = 1)]
    batch: u32,
    /// Observer threads resolving the whole pool.
    #[arg(long, default_value_t = 1)]
    observers: u32,
    /// Connections per observer (more make it likelier that every shard is asked: with
    /// 8 over 2 shards, all land on one with probability 1/128).
    #[arg(long, default_value_t = 8)]
    observer_connections: u32,
    /// Microseconds from the start of one observer round (a request on each
    /// connection, then every answer) to the next; 0 (default) resolves back to back.
    /// A round bounds the timing error.
    #[arg(long, default_value_t = 0)]
    observer_interval_us: u64,
    #[command(flatten)]
    keep_alive: KeepAlive,
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// Answer size in bytes (a 3-PE resolution answer is about 150).
    #[arg(long, default_value_t = 144)]
    reply_bytes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 2)]
    pus: u32,
    /// Seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// `max` (closed loop) or requests per second (open loop).
    #[arg(long, default_value = "max")]
    rate: Rate,
}

#[derive(Debug, Args)]
struct PropagationArgs {
    /// A (--pe-registrar) and B (--pu-registrar).
    #[command(flatten)]
    registrars: Registrars,
    /// Pool handle prefix: trial I uses the pool PREFIX, a 4-digit tag of the run, "-"
    /// and I (at most 32 bytes in all).
    #[arg(long, default_value = "Propagation")]
    pool: String,
    /// Trials per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of trials.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds a trial may take to show at B (or vanish, or be answered at A) before
    /// it counts as an error.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Seconds the first, untimed trial may take (the scope may still be forming).
    #[arg(long, default_value_t = 30.0)]
    warm_up: f64,
    /// Connections the PEs share at A.
    #[arg(long, default_value_t = 4)]
    pe_connections: u32,
    /// Observer connections to B (each may land on another shard of B); a trial has
    /// shown (or vanished) when it has on every one of them.
    #[arg(long, default_value_t = 1)]
    observer_connections: u32,
    #[command(flatten)]
    files: Files,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TimersArg {
    /// The registrar's own defaults (RSPLIB's): heartbeat 2444 ms; max-time-last-heard,
    /// max-time-no-response, takeover expiry and mentor discovery 5000 ms.
    Default,
    /// Heartbeat 100 ms; the other four 200 ms.
    Fast,
}

#[derive(Debug, Args)]
struct TakeoverArgs {
    /// Registrar processes to start (2..=16); registrar 0 holds the PEs and is killed.
    #[arg(long, default_value_t = 3)]
    registrars: usize,
    /// The registrar binary. Default: rserpool-registrar next to this executable.
    #[arg(long, value_name = "PATH")]
    registrar_binary: Option<PathBuf>,
    /// The registrars' ENRP timers.
    #[arg(long, value_enum, default_value_t = TimersArg::Default)]
    timers: TimersArg,
    /// The registrars' keep-alive interval in ms.
    #[arg(long, default_value_t = 1000)]
    keep_alive_interval: u64,
    /// The registrars' keep-alive timeout in ms.
    #[arg(long, default_value_t = 1000)]
    keep_alive_timeout: u64,
    /// Shards per registrar.
    #[arg(long, default_value_t = 1)]
    shards: u16,
    /// The registrars' log level. Their logs go to a temporary directory, kept (and
    /// named) when something fails.
    #[arg(long, default_value = "info")]
    registrar_log_level: String,
    #[command(flatten)]
    common: Common,
}

/// How fast pool users resolve.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rate {
    Max,
    PerSecond(f64),
    OfMax(f64),
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Self::Max);
        }
        let bad = || format!("{s:?} is not `max`, a rate per second, or a percentage like 50%");
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| bad())?;
            return if p > 0.0 && p <= 100.0 {
                Ok(Self::OfMax(p / 100.0))
            } else {
                Err(format!("percentage {s} must be in (0, 100]"))
            };
        }
        let r: f64 = s.parse().map_err(|_| bad())?;
        if r.is_finite() && r > 0.0 && r <= 10_000_000.0 {
            Ok(Self::PerSecond(r))
        } else {
            Err(format!("rate {s} must be in (0, 10000000]"))
        }
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
        Command::Demo(a) => demo(a),
        Command::Resolve(a) => {
            let mut out = Output::default();
            let hold = if a.hold > 0.0 {
                seconds(a.hold, "--hold")?
            } else {
                Duration::ZERO
            };
            let roles = (a.registrars.pe()?, a.registrars.pu()?);
            resolve(roles, &a.common, &a.opts, a.rate, hold, &mut out)?;
            out.finish("resolve", &a.common.files, a.registrars.json()?)
        }
        Command::Churn(a) => churn_cmd(&a),
        Command::Failover(a) => failover_cmd(&a),
        Command::Propagation(a) => propagation_cmd(&a),
        Command::Takeover(a) => takeover_cmd(&a),
        Command::Echo(a) => {
            let duration = seconds(a.duration, "--duration")?;
            let echo = EchoResponder::start(a.reply_bytes)?;
            let mut req = Vec::new();
            resolution_request(&PoolHandle::from("LoadPool"), Some(3), &mut req);
            let target = Target::tcp(echo.addr);
            let s = match a.rate {
                Rate::PerSecond(r) => {
                    open_loop(
                        target,
                        &req,
                        a.pus,
                        r,
                        duration,
                        any_answer,
                        "echo (open loop)",
                    )?
                    .latency
                }
                Rate::Max => {
                    closed_loop(
                        target,
                        &req,
                        a.pus,
                        duration,
                        any_answer,
                        "echo (transport floor)",
                    )?
                    .latency
                }
                Rate::OfMax(_) => anyhow::bail!("echo takes `max` or a rate per second"),
            };
            print!("{}", report::table(&[s]));
            Ok(())
        }
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

/// The resolution measurements; adds its series and headline lines to `out`.
fn resolve(
    (pe_target, target): (Target, Target),
    common: &Common,
    opts: &ResolveOpts,
    rate: Rate,
    hold: Duration,
    out: &mut Output,
) -> anyhow::Result<()> {
    let duration = seconds(opts.duration, "--duration")?;
    anyhow::ensure!((1..=1024).contains(&opts.items), "--items must be 1..=1024");
    let pool = pool_handle(&common.pool)?;
    let registrars = if pe_target == target {
        format!("registrar {target}")
    } else {
        format!("PEs at registrar {pe_target}, pool users at {target}")
    };
    println!(
        "{registrars}; pool {pool}: {} PEs on {} connections; {} pool users, {} items, {:.1} s per measurement",
        common.pes,
        if common.pe_connections == 0 {
            common.pes
        } else {
            common.pe_connections.min(common.pes)
        },
        opts.pus,
        opts.items,
        duration.as_secs_f64()
    );
    let (farm, registration) = start_farm(pe_target, common)?;
    out.series.push(registration);
    let mut request = Vec::new();
    resolution_request(&pool, Some(opts.items), &mut request);
    let want_items = opts.items.min(common.pes) as usize;
    if pe_target != target {
        let t = std::time::Instant::now();
        let (seen, all) = await_pool(target, &pool, common.pes, Duration::from_secs(30), |e| {
            e.len() >= common.pes as usize
        })?;
        anyhow::ensure!(
            all,
            "{target} listed {} of the {} PEs registered at {pe_target} within 30 s: are they ENRP peers?",
            seen.len(),
            common.pes
        );
        out.lines.push(format!(
            "the pool users' registrar listed every PE {} after the last registration",
            human(t.elapsed())
        ));
    }

    let mut max_rate = None;
    // The registrar's answer size, for the echo floor (a 3-PE answer is 144 bytes).
    let mut answer_bytes = 144;
    if matches!(rate, Rate::Max | Rate::OfMax(_)) {
        let _p = Progress::start("resolve, closed loop", duration);
        let run = closed_loop(
            target,
            &request,
            opts.pus,
            duration,
            positive_resolution,
            "resolution (closed loop)",
        )?;
        let s = run.latency;
        if run.answer_bytes > 0 {
            answer_bytes = run.answer_bytes;
        }
        anyhow::ensure!(
            s.count() == 0 || run.items == want_items,
            "answers held {} PEs, not {want_items}",
            run.items
        );
        max_rate = Some(s.rate());
        out.summary.insert("max_rate_per_s".into(), s.rate().into());
        out.lines.push(format!(
            "maximum: {:.0} resolutions/s closed loop with {} pool users (p99 {})",
            s.rate(),
            opts.pus,
            human(s.quantile(0.99))
        ));
        out.series.push(s);
    }
    let open_rate = match rate {
        Rate::Max => None,
        Rate::PerSecond(r) => Some(r),
        Rate::OfMax(p) => max_rate.map(|m| m * p),
    };
    if let Some(r) = open_rate {
        let _p = Progress::start("resolve, open loop", duration);
        let name = format!("resolution (open, {r:.0}/s)");
        let res = open_loop(
            target,
            &request,
            opts.pus,
            r,
            duration,
            positive_resolution,
            &name,
        )?;
        let mut lag = res.send_lag;
        lag.name = "  generator send lag".into();
        out.series.push(res.latency);
        out.series.push(lag);
        if res.lost > 0 {
            out.lines
                .push(format!("{} requests got no answer", res.lost));
        }
        if target.transport == Transport::Tcp {
            let _p = Progress::start("echo floor, open loop", duration);
            let echo = EchoResponder::start(res.answer_bytes)?;
            let floor = open_loop(
                Target::tcp(echo.addr),
                &request,
                opts.pus,
                r,
                duration,
                any_answer,
                &format!("echo floor (open, {r:.0}/s)"),
            )?;
            let resolution = out.series[out.series.len() - 2].clone();
            ratio_lines(&resolution, &floor.latency, res.answer_bytes, out);
            out.series.push(floor.latency);
        }
    } else if target.transport == Transport::Tcp {
        let echo = EchoResponder::start(answer_bytes)?;
        let _p = Progress::start("echo floor, closed loop", duration);
        let floor = closed_loop(
            Target::tcp(echo.addr),
            &request,
            opts.pus,
            duration,
            any_answer,
            "echo floor (closed loop)",
        )?
        .latency;
        let resolution = out.series[out.series.len() - 1].clone();
        ratio_lines(&resolution, &floor, 0, out);
        out.series.push(floor);
    }
    if target.transport == Transport::Sctp {
        out.lines
            .push("over SCTP there is no echo floor (the responder speaks TCP only)".into());
    }
    std::thread::sleep(hold);
    let stats = farm.stop()?;
    out.summary.insert(
        "keep_alives_answered".into(),
        stats.keep_alives_answered.into(),
    );
    Ok(())
}

fn ratio_lines(res: &Series, floor: &Series, bytes: usize, out: &mut Output) {
    if res.count() == 0 || floor.count() == 0 {
        return;
    }
    let p50 = res.quantile(0.5).as_secs_f64() / floor.quantile(0.5).as_secs_f64();
    let p99 = res.quantile(0.99).as_secs_f64() / floor.quantile(0.99).as_secs_f64();
    out.summary.insert("p50_over_floor".into(), p50.into());
    out.summary.insert("p99_over_floor".into(), p99.into());
    out.lines.push(format!(
        "resolution vs. transport floor: p50 {} / {} = {p50:.2}x, p99 {} / {} = {p99:.2}x{}",
        human(res.quantile(0.5)),
        human(floor.quantile(0.5)),
        human(res.quantile(0.99)),
        human(floor.quantile(0.99)),
        if bytes > 0 {
            format!(" (answers of {bytes} bytes)")
        } else {
            String::new()
        }
    ));
}

fn failover_phase(
    config: &FailoverConfig,
    keep_alive: &KeepAlive,
    out: &mut Output,
) -> anyhow::Result<()> {
    let mode = config.mode;
    let ka = keep_alive.sum();
    let expected = match mode {
        Mode::Crash => Duration::from_millis(10),
        Mode::Hang => ka,
    };
    let _p = Progress::start(
        "failover",
        expected * config.trials + Duration::from_secs(1),
    );
    let r = failover::run(config).context("failover")?;
    let g = &r.gone;
    let key = match mode {
        Mode::Crash => "crash",
        Mode::Hang => "hang",
    };
    match mode {
        Mode::Crash => out.lines.push(format!(
            "crash: {} PEs, gone from all answers after p50 {}, p99 {}, max {}",
            g.count(),
            human(g.quantile(0.5)),
            human(g.quantile(0.99)),
            human(g.max())
        )),
        Mode::Hang => {
            let bound = ka + Duration::from_millis(10);
            out.lines.push(format!(
                "hang: {} PEs, gone after p50 {}, p99 {}, max {} (bound: interval + timeout + 10 ms = {}; {})",
                g.count(),
                human(g.quantile(0.5)),
                human(g.quantile(0.99)),
                human(g.max()),
                human(bound),
                if g.max() <= bound { "all within" } else { "SOME LATER" }
            ));
        }
    }
    out.summary.insert(
        format!("{key}_gone_p99_s"),
        g.quantile(0.99).as_secs_f64().into(),
    );
    out.summary
        .insert(format!("{key}_gone_max_s"), g.max().as_secs_f64().into());
    out.lines.push(format!(
        "  ({} resolutions of {} items on {} observer connections, {:.0}/s)",
        r.resolutions,
        r.answer_items,
        r.connections,
        r.resolutions as f64 / g.elapsed.as_secs_f64().max(1e-9)
    ));
    out.series.push(r.gone);
    Ok(())
}

fn failover_cmd(a: &FailoverArgs) -> anyhow::Result<()> {
    let mode = match a.mode {
        FailMode::Crash => Mode::Crash,
        FailMode::Hang => Mode::Hang,
    };
    anyhow::ensure!(a.common.pes >= 2, "--pes must be at least 2");
    anyhow::ensure!(
        a.batch >= 1 && a.batch < a.common.pes,
        "--batch must be 1..{}",
        a.common.pes
    );
    let roles = (a.registrars.pe()?, a.registrars.pu()?);
    let registrars = if roles.0 == roles.1 {
        format!("registrar {}", roles.0)
    } else {
        format!("PEs at registrar {}, observers at {}", roles.0, roles.1)
    };
    println!(
        "{registrars}; pool {}: {} PEs, one connection each; {:?} {} × {} PEs; {} observers × {} connections",
        a.common.pool, a.common.pes, a.mode, a.trials, a.batch, a.observers, a.observer_connections
    );
    let mut out = Output::default();
    let config = FailoverConfig {
        trials: a.trials,
        batch: a.batch,
        observers: a.observers,
        connections_per_observer: a.observer_connections,
        round_interval: Duration::from_micros(a.observer_interval_us),
        pe_listeners: !a.common.no_pe_listeners,
        ..a.keep_alive
            .config(roles, &a.common.pool, a.common.pes, mode)?
    };
    failover_phase(&config, &a.keep_alive, &mut out)?;
    let mut params = a.registrars.json()?;
    params["mode"] = format!("{:?}", a.mode).into();
    out.finish("failover", &a.common.files, params)
}

fn churn_cmd(a: &ChurnArgs) -> anyhow::Result<()> {
    let duration = seconds(a.duration, "--duration")?;
    anyhow::ensure!(a.common.pes >= 1, "--pes must be at least 1");
    anyhow::ensure!(
        a.rate.is_finite() && a.rate > 0.0 && a.rate <= 1_000_000.0,
        "--rate must be in (0, 1000000]"
    );
    let target = a
        .pe_registrar
        .or(a.registrar)
        .context("--registrar (or --pe-registrar) is required")?;
    println!(
        "registrar {target}; pool {}: {} PEs; {:.0} operations/s for {:.1} s",
        a.common.pool,
        a.common.pes,
        a.rate,
        duration.as_secs_f64()
    );
    let _p = Progress::start("churn", duration);
    let r = churn::run(&ChurnConfig {
        target,
        pool: pool_handle(&a.common.pool)?,
        pes: a.common.pes,
        links: a.common.pe_connections,
        pe_listeners: !a.common.no_pe_listeners,
        rate: a.rate,
        duration,
        seed: 0xc4a1,
    })?;
    let mut out = Output::default();
    let total = r.registration.count() + r.reregistration.count() + r.deregistration.count();
    out.lines.push(format!(
        "{total} operations answered ({:.0}/s), {} skipped (PE busy), {} unanswered",
        total as f64 / duration.as_secs_f64(),
        r.skipped,
        r.unanswered
    ));
    out.series = vec![r.registration, r.reregistration, r.deregistration];
    out.finish(
        "churn",
        &a.common.files,
        serde_json::json!({ "registrar": target.to_string(), "rate": a.rate }),
    )
}

fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let mut local = None;
    let roles = match a.registrars.any() {
        true => (a.registrars.pe()?, a.registrars.pu()?),
        false => {
            let handle = rserpool_shards::runtime::start(rserpool_shards::RuntimeConfig {
                shards: 2,
                pin_cores: false,
                asap: vec![rserpool_shards::Endpoint::Tcp("127.0.0.1:0".parse()?)],
                registrar: rserpool::registrar::Config {
                    allow_loopback: true,
                    keep_alive_interval: Duration::from_millis(a.keep_alive.keep_alive_interval),
                    keep_alive_timeout: Duration::from_millis(a.keep_alive.keep_alive_timeout),
                    ..rserpool::registrar::Config::default()
                },
                seed: 1,
                announce_group: None,
            })
            .context("starting the registrar")?;
            let addr = handle
                .tcp_addr()
                .context("the registrar has no TCP endpoint")?;
            local = Some(handle);
            (Target::tcp(addr), Target::tcp(addr))
        }
    };
    if local.is_some() {
        println!(
            "registrar in this process: 2 shards, keep-alive every {} ms, timeout {} ms",
            a.keep_alive.keep_alive_interval, a.keep_alive.keep_alive_timeout
        );
    }
    let mut out = Output::default();
    resolve(
        roles,
        &a.common,
        &a.opts,
        Rate::OfMax(0.5),
        Duration::ZERO,
        &mut out,
    )?;
    let failover_pool = format!("{}-failover", a.common.pool);
    let failover_pool = &failover_pool[..failover_pool.len().min(32)];
    println!(
        "failover: {} crash trials, {} hang trials of {} PEs",
        a.crash_trials, a.hang_trials, a.hang_batch
    );
    if a.crash_trials > 0 {
        let config = FailoverConfig {
            trials: a.crash_trials,
            pe_listeners: !a.common.no_pe_listeners,
            ..a.keep_alive
                .config(roles, failover_pool, a.common.pes, Mode::Crash)?
        };
        failover_phase(&config, &a.keep_alive, &mut out)?;
    }
    if a.hang_trials > 0 {
        let config = FailoverConfig {
            trials: a.hang_trials,
            batch: a.hang_batch.clamp(1, a.common.pes.saturating_sub(1).max(1)),
            pe_listeners: !a.common.no_pe_listeners,
            ..a.keep_alive
                .config(roles, failover_pool, a.common.pes, Mode::Hang)?
        };
        failover_phase(&config, &a.keep_alive, &mut out)?;
    }
    if let Some(h) = local {
        h.shutdown()?;
    }
    out.finish(
        "demo",
        &a.common.files,
        serde_json::json!({
            "pe_registrar": roles.0.to_string(),
            "pu_registrar": roles.1.to_string(),
            "pes": a.common.pes,
            "pus": a.opts.pus,
            "items": a.opts.items,
        }),
    )
}

fn propagation_cmd(a: &PropagationArgs) -> anyhow::Result<()> {
    let (pe, pu) = (a.registrars.pe()?, a.registrars.pu()?);
    let duration = seconds(a.duration, "--duration")?;
    anyhow::ensure!(
        a.rate.is_finite() && a.rate > 0.0 && a.rate <= 100_000.0,
        "--rate must be in (0, 100000]"
    );
    let trials = (a.rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let longest = a.pool.len() + 4 + 1 + trials.to_string().len();
    anyhow::ensure!(
        !a.pool.is_empty() && longest <= rserpool::handlespace::MAX_POOL_HANDLE_LEN,
        "--pool {:?}: with the run's tag and up to {trials} trials the handles take {longest} bytes, more than the {} a registrar takes",
        a.pool,
        rserpool::handlespace::MAX_POOL_HANDLE_LEN
    );
    anyhow::ensure!(
        (1..=64).contains(&a.observer_connections),
        "--observer-connections must be 1..=64"
    );
    // A tag per run: pools of an earlier run that B may still hold do not count.
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros())
        % 10_000;
    let prefix = PoolHandle::from(format!("{}{tag:04}", a.pool).as_str());
    println!(
        "A (PEs): {pe}; B (pool users): {pu}; {:.0} trials/s for {:.1} s, each a PE in a pool of its own ({prefix}-I)",
        a.rate,
        duration.as_secs_f64()
    );
    let _p = Progress::start("propagation", duration);
    let r = propagation::run(&PropagationConfig {
        pe_target: pe,
        pu_target: pu,
        prefix,
        rate: a.rate,
        duration,
        timeout: seconds(a.timeout, "--timeout")?,
        warm_up: seconds(a.warm_up, "--warm-up")?,
        pe_links: a.pe_connections.max(1),
        observers: a.observer_connections,
    })?;
    let mut out = Output::default();
    let round = &r.round;
    out.lines.push(format!(
        "observer: {} rounds over {} connection(s) to B, p50 {}, p99 {}, max {} per round: \
         each time ends with the round that saw the change, so it is late by at most one round",
        round.count(),
        a.observer_connections,
        human(round.quantile(0.5)),
        human(round.quantile(0.99)),
        human(round.max())
    ));
    out.lines.push(format!(
        "warm-up trial (untimed) showed at B after {}; {} odd answers from B",
        human(r.warm_up),
        r.odd_answers
    ));
    for (key, s) in [
        ("registration", &r.registration),
        ("deregistration", &r.deregistration),
    ] {
        out.summary
            .insert(format!("{key}_p50_s"), s.quantile(0.5).as_secs_f64().into());
        out.summary.insert(
            format!("{key}_p99_s"),
            s.quantile(0.99).as_secs_f64().into(),
        );
        out.summary
            .insert(format!("{key}_max_s"), s.max().as_secs_f64().into());
        out.summary.insert(format!("{key}_errors"), s.errors.into());
    }
    out.summary.insert(
        "round_p99_s".into(),
        round.quantile(0.99).as_secs_f64().into(),
    );
    out.series = vec![r.registration, r.deregistration, r.round];
    let mut params = a.registrars.json()?;
    params["rate"] = a.rate.into();
    params["duration_s"] = a.duration.into();
    out.finish("propagation", &a.files, params)
}

fn takeover_cmd(a: &TakeoverArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (2..=16).contains(&a.registrars),
        "--registrars must be 2..=16"
    );
    let limit = rserpool::registrar::RESOLUTION_ITEMS_CEILING;
    anyhow::ensure!(
        (1..=limit).contains(&a.common.pes),
        "--pes must be 1..={limit} (a survivor lists them all in one answer)"
    );
    anyhow::ensure!(
        !a.common.no_pe_listeners,
        "takeover needs the PE listeners (a survivor reaches the PEs there)"
    );
    let timers = match a.timers {
        TimersArg::Default => Timers::Default,
        TimersArg::Fast => Timers::Fast,
    };
    let enrp = timers.config();
    // Detection (silence, then no answer to a probe), the takeover's wait for the
    // other peers, and room for the adoptions themselves.
    let bound = enrp.heartbeat
        + enrp.max_time_last_heard
        + enrp.max_time_no_response
        + enrp.takeover_expiry
        + Duration::from_secs(10);
    let config = ScopeConfig {
        shards: a.shards.max(1),
        timers,
        keep_alive_interval: Duration::from_millis(a.keep_alive_interval),
        keep_alive_timeout: Duration::from_millis(a.keep_alive_timeout),
        resolution_items_limit: Some(a.common.pes.max(rserpool::registrar::MAX_RESOLUTION_ITEMS)),
        log_level: a.registrar_log_level.clone(),
        ..ScopeConfig::new(
            scope::registrar_binary(a.registrar_binary.as_deref())?,
            a.registrars,
        )
    };
    // Ctrl-C or SIGTERM: the registrars go too (see Scope::kill_on_termination).
    rserpool_shards::net::signals::block_termination()?;
    let mut scope = Scope::start(&config).context("starting the registrars")?;
    scope.kill_on_termination();
    let ms = |d: Duration| d.as_millis();
    println!(
        "{} registrars ({}, {} shard(s) each) on loopback, ENRP over TCP, timers {:?}: heartbeat {} ms, \
         max-time-last-heard {} ms, max-time-no-response {} ms, takeover expiry {} ms; keep-alive {}/{} ms",
        a.registrars,
        config.binary.display(),
        config.shards,
        a.timers,
        ms(enrp.heartbeat),
        ms(enrp.max_time_last_heard),
        ms(enrp.max_time_no_response),
        ms(enrp.takeover_expiry),
        a.keep_alive_interval,
        a.keep_alive_timeout
    );
    println!(
        "{} PEs register at registrar 0 (id {}); it is killed once every other registrar lists them",
        a.common.pes,
        scope.id(0)
    );
    let _p = Progress::start("takeover", bound);
    let run = takeover::run(
        &mut scope,
        &TakeoverConfig {
            pool: pool_handle(&a.common.pool)?,
            pes: a.common.pes,
            links: a.common.pe_connections,
            bound,
            settle: enrp.mentor_discovery + Duration::from_secs(30),
        },
    );
    let r = match run {
        Ok(r) => r,
        Err(e) => {
            scope.keep_logs();
            let tails: Vec<String> = (0..scope.len())
                .map(|i| format!("registrar {i}:\n{}", scope.log_tail(i, 15)))
                .collect();
            return Err(anyhow::anyhow!(e)).context(format!(
                "takeover (registrar logs in {}; their last lines:\n{})",
                scope.logs().display(),
                tails.join("\n")
            ));
        }
    };
    let mut out = Output::default();
    let g = &r.adoption;
    let lost = r.lost();
    out.lines.push(format!(
        "every survivor listed all {} PEs {} after the last registration",
        a.common.pes,
        human(r.visible_after)
    ));
    out.lines.push(format!(
        "killed registrar 0 (SIGKILL); {} of {} PEs adopted: p50 {}, p99 {}, every PE adopted after {} \
         (bound {})",
        g.count(),
        a.common.pes,
        human(g.quantile(0.5)),
        human(g.quantile(0.99)),
        human(g.max()),
        human(bound)
    ));
    let by: Vec<String> = r
        .adopters
        .iter()
        .map(|(id, n)| format!("registrar id {id}: {n}"))
        .collect();
    out.lines.push(format!(
        "adopted by {}; {} repeated adoptions; {} connections from survivors",
        by.join(", "),
        r.repeats,
        r.farm.accepted
    ));
    out.lines.push(format!(
        "lost: {lost} (not adopted within the bound: {}; missing at a survivor at the end: {}; \
         listed with a home that is not a survivor: {})",
        r.not_adopted.len(),
        r.missing.len(),
        r.homeless.len()
    ));
    out.summary.insert("pes".into(), a.common.pes.into());
    out.summary.insert("adopted".into(), g.count().into());
    out.summary.insert("lost".into(), lost.into());
    out.summary
        .insert("adopted_p50_s".into(), g.quantile(0.5).as_secs_f64().into());
    out.summary.insert(
        "adopted_p99_s".into(),
        g.quantile(0.99).as_secs_f64().into(),
    );
    out.summary
        .insert("all_adopted_s".into(), g.max().as_secs_f64().into());
    out.summary
        .insert("bound_s".into(), bound.as_secs_f64().into());
    out.series = vec![r.registration, r.adoption];
    if lost > 0 {
        scope.keep_logs();
        out.lines
            .push(format!("registrar logs kept in {}", scope.logs().display()));
    }
    out.finish(
        "takeover",
        &a.common.files,
        serde_json::json!({
            "registrars": a.registrars,
            "timers": format!("{:?}", a.timers).to_lowercase(),
            "pes": a.common.pes,
            "keep_alive_interval_ms": a.keep_alive_interval,
            "keep_alive_timeout_ms": a.keep_alive_timeout,
        }),
    )?;
    anyhow::ensure!(lost == 0, "{lost} PEs lost in the takeover");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("5000".parse::<Rate>(), Ok(Rate::PerSecond(5000.0)));
        assert_eq!("50%".parse::<Rate>(), Ok(Rate::OfMax(0.5)));
        for bad in ["0", "-1", "150%", "fast", "nan"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
