//! Resolution: latency and throughput against the transport floor, the echo floor
//! alone, and the demo that runs them with failover.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rserpool::PoolHandle;
use rserpool::client::resolution_request;
use rserpool_loadgen::conn::Target;
use rserpool_loadgen::echo::{self, Answers, EchoProcess, EchoResponder};
use rserpool_loadgen::failover::{FailoverConfig, Mode};
use rserpool_loadgen::farm::{Farm, Notice};
use rserpool_loadgen::report::{self, Progress, Series, human};
use rserpool_loadgen::scenario::{await_pool, closed_loop, open_loop, positive_resolution};

use super::failures::failover_phase;
use super::{
    Common, KeepAlive, MAX_PES, MAX_PUS, Output, Registrars, Run, pool_handle, positive_seconds,
    seconds, seconds_or_zero, start_farm,
};

/// Most PEs one resolution asks for.
const MAX_ITEMS: i64 = 1024;
/// Most failover trials of one kind.
const MAX_TRIALS: i64 = 1_000_000;
/// Longest `--answer-hex` handed to a floor in its own process (Linux's limit on one
/// argument is 128 KiB).
const MAX_ARG_HEX: usize = 120 * 1024;
/// Most rounds of registrar-then-floor windows.
const MAX_ROUNDS: i64 = 1000;

#[derive(Debug, Args)]
struct ResolveOpts {
    /// Pool users, one connection each.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=MAX_PUS))]
    pus: u32,
    /// PEs asked for per resolution (the Handle Resolution Option).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_ITEMS))]
    items: u32,
    /// Length of each measurement.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = positive_seconds)]
    duration: f64,
}

#[derive(Debug, Args)]
pub(super) struct ResolveArgs {
    #[command(flatten)]
    registrars: Registrars,
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    opts: ResolveOpts,
    /// `max` (closed loop), requests per second (open loop), or P% of the maximum.
    #[arg(long, value_name = "max|PER_SECOND|P%", default_value = "max")]
    rate: Rate,
    /// Time to keep the PEs registered after the measurements (keep-alives only), e.g.
    /// to sample the registrar's CPU at rest.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, value_parser = seconds_or_zero)]
    hold: f64,
    /// Skip the echo floor that follows the resolution (when comparing registrars with
    /// each other, or with a standalone `echo --listen`, rather than with the transport
    /// in the same run).
    #[arg(long)]
    no_floor: bool,
    /// With --rate max: measure the registrar and the floor N times each, taking turns
    /// (registrar, floor, registrar, …, each for --duration), and report the rate ratio
    /// as the median of the N rounds' ratios, so that the machine's own drift (other
    /// tenants, frequency) weighs on both sides alike.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS))]
    rounds: u32,
    /// Run the echo floor on threads of the load generator instead of in a process of
    /// its own (the default, so that its round trips cross a process boundary as a
    /// registrar's do).
    #[arg(long)]
    floor_in_process: bool,
}

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Registrars to drive instead of starting one (each must allow loopback addresses
    /// and use keep-alive --keep-alive-interval/--keep-alive-timeout).
    #[command(flatten)]
    registrars: Registrars,
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    opts: ResolveOpts,
    /// Crash trials (one PE each); 0 skips them.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=MAX_TRIALS))]
    crash_trials: u32,
    /// Hang trials (--hang-batch PEs each); 0 skips them.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=MAX_TRIALS))]
    hang_trials: u32,
    /// PEs hung at once per hang trial.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_PES))]
    hang_batch: u32,
    #[command(flatten)]
    keep_alive: KeepAlive,
}

#[derive(Debug, Args)]
pub(super) struct EchoArgs {
    /// Serve at URI (tcp://ADDR:PORT or sctp://ADDR:PORT; port 0 picks one) until
    /// killed, and print where first. Registrations are answered too, so that
    /// `resolve --no-floor` runs against the responder as against a registrar. Without
    /// --listen a TCP responder on loopback is timed by --pus pool users.
    #[arg(long, value_name = "URI")]
    listen: Option<Target>,
    /// PEs in the canned resolution answer (each with one address of the listening
    /// address's family, as the load generator's PEs register).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_ITEMS))]
    items: u32,
    /// Pool handle the canned answer names (and the timed pool users ask for).
    #[arg(long, value_name = "NAME", default_value = "LoadPool")]
    pool: String,
    /// Concurrent clients.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=MAX_PUS))]
    pus: u32,
    /// Length of the measurement.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = positive_seconds)]
    duration: f64,
    /// `max` (closed loop) or requests per second (open loop).
    #[arg(long, value_name = "max|PER_SECOND", default_value = "max")]
    rate: Rate,
    /// Answer resolutions with this ASAP message (hexadecimal, two digits per byte)
    /// instead of a canned answer of --items PEs: a registrar's own answer, replayed.
    /// `resolve` starts its floor this way.
    #[arg(long, value_name = "HEX", value_parser = asap_hex, conflicts_with = "items")]
    answer_hex: Option<AsapBytes>,
}

/// An encoded ASAP message given on the command line.
#[derive(Clone, Debug)]
struct AsapBytes(Vec<u8>);

fn asap_hex(s: &str) -> Result<AsapBytes, String> {
    let bytes = rserpool::hex::decode(s)
        .ok_or_else(|| "not hexadecimal digits, two per byte".to_owned())?;
    rserpool::wire::AsapMessage::decode(&bytes).map_err(|e| format!("not an ASAP message: {e}"))?;
    Ok(AsapBytes(bytes))
}

/// How the echo floor runs beside a registrar.
#[derive(Clone, Copy, Debug)]
struct FloorOpts {
    /// Whether there is one.
    on: bool,
    /// On a thread of this process rather than in a process of its own.
    in_process: bool,
    /// Registrar-then-floor closed-loop rounds (--rate max).
    rounds: u32,
}

/// A running echo floor, here or in its own process.
#[derive(Debug)]
enum Floor {
    Here(EchoResponder),
    Apart(EchoProcess),
}

impl Floor {
    fn target(&self) -> Target {
        match self {
            Floor::Here(e) => e.target,
            Floor::Apart(e) => e.target,
        }
    }

    fn answer_bytes(&self) -> usize {
        match self {
            Floor::Here(e) => e.answer_bytes(),
            Floor::Apart(e) => e.answer_bytes(),
        }
    }

    fn whereabouts(&self) -> &'static str {
        match self {
            Floor::Here(_) => "in the load generator's process",
            Floor::Apart(_) => "in its own process",
        }
    }
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

/// The resolution measurements; adds its series and headline lines to `out`.
fn resolve(
    (pe_target, target): (Target, Target),
    common: &Common,
    opts: &ResolveOpts,
    rate: Rate,
    (hold, floor): (Duration, FloorOpts),
    out: &mut Output,
) -> anyhow::Result<()> {
    let duration = seconds(opts.duration, "--duration")?;
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
    // The registrar's own answer, which the echo floor replays.
    let mut answer = Vec::new();
    // Started once that answer is known.
    let mut echo: Option<Floor> = None;
    if matches!(rate, Rate::Max | Rate::OfMax(_)) {
        // At --rate max the floor is timed closed loop too, in turns with the
        // registrar; at P% it is timed open loop below.
        let turns = floor.on && rate == Rate::Max;
        let rounds = if turns { floor.rounds } else { 1 };
        let mut s = Series::new("resolution.closed", "resolution (closed loop)");
        let mut f = Series::new("floor.closed", "echo floor (closed loop)");
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let of = match rounds {
                1 => String::new(),
                n => format!(", round {round} of {n}"),
            };
            let run = {
                let _p = Progress::start(&format!("resolve, closed loop{of}"), duration);
                closed_loop(
                    target,
                    &request,
                    opts.pus,
                    duration,
                    positive_resolution,
                    (&s.id, &s.label),
                )?
            };
            anyhow::ensure!(
                run.latency.count() == 0 || run.items == want_items,
                "answers held {} PEs, not {want_items}",
                run.items
            );
            if answer.is_empty() {
                answer = run.answer;
            }
            if turns {
                let e = match echo.take() {
                    Some(e) => e,
                    None => floor_beside(target, &answer, &pool, want_items, floor.in_process)?,
                };
                let _p = Progress::start(&format!("echo floor, closed loop{of}"), duration);
                let fl = closed_loop(
                    e.target(),
                    &request,
                    opts.pus,
                    duration,
                    positive_resolution,
                    (&f.id, &f.label),
                )?
                .latency;
                echo = Some(e);
                if fl.rate() > 0.0 {
                    ratios.push(run.latency.rate() / fl.rate());
                }
                f.append(&fl);
            }
            s.append(&run.latency);
        }
        max_rate = Some(s.rate());
        out.summary.insert("max_rate_per_s".into(), s.rate().into());
        out.lines.push(format!(
            "maximum: {:.0} resolutions/s closed loop with {} pool users (p99 {})",
            s.rate(),
            opts.pus,
            human(s.quantile(0.99))
        ));
        if let Some(e) = echo.as_ref().filter(|_| turns) {
            rate_lines(&s, &f, &mut ratios, e, out);
            ratio_lines(&s, &f, e, out);
            out.series.push(s);
            out.series.push(f);
        } else {
            out.series.push(s);
        }
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
            ("resolution.open", &name),
        )?;
        if answer.is_empty() {
            answer = res.answer;
        }
        let mut lag = res.send_lag;
        lag.label = "  generator send lag".into();
        let resolution = res.latency.clone();
        out.series.push(res.latency);
        out.series.push(lag);
        if res.lost > 0 {
            out.lines
                .push(format!("{} requests got no answer", res.lost));
        }
        if floor.on {
            let echo = floor_beside(target, &answer, &pool, want_items, floor.in_process)?;
            let _p = Progress::start("echo floor, open loop", duration);
            let floor = open_loop(
                echo.target(),
                &request,
                opts.pus,
                r,
                duration,
                positive_resolution,
                ("floor.open", &format!("echo floor (open, {r:.0}/s)")),
            )?;
            ratio_lines(&resolution, &floor.latency, &echo, out);
            out.series.push(floor.latency);
        }
    }
    // PEs whose connection the registrar closed (RSPLIB aborts a PE association on a
    // keep-alive timeout), while resolving and then while held.
    let resolving = lost_pes(&farm);
    std::thread::sleep(hold);
    let held = lost_pes(&farm);
    let stats = farm.stop()?;
    out.summary.insert(
        "keep_alives_answered".into(),
        stats.keep_alives_answered.into(),
    );
    out.summary
        .insert("pes_lost_resolving".into(), resolving.into());
    out.summary.insert("pes_lost_held".into(), held.into());
    for (n, when) in [(resolving, "while resolving"), (held, "while held")] {
        if n > 0 {
            out.lines.push(format!(
                "{n} PEs lost their registrar connection {when} (closed by the registrar)"
            ));
        }
    }
    Ok(())
}

/// PEs whose connection was lost since the last look.
fn lost_pes(farm: &Farm) -> u64 {
    farm.notices()
        .try_iter()
        .filter(|n| matches!(n, Notice::LinkLost { .. }))
        .count() as u64
}

/// The echo floor of a run against `target`: beside it ([`echo::beside`]), in this
/// process or in its own, replaying the registrar's `answer` (or, if no answer passed
/// the check, a resolution answer of `items` PEs).
fn floor_beside(
    target: Target,
    answer: &[u8],
    pool: &PoolHandle,
    items: usize,
    in_process: bool,
) -> anyhow::Result<Floor> {
    let answers = if answer.is_empty() {
        Answers::resolution(pool, items as u32, target.addr.ip())
    } else {
        Answers::new(answer.to_vec())
    };
    let what = || format!("starting the echo floor beside {target}");
    // The answer goes on the child's command line as hexadecimal, and Linux takes at
    // most 128 KiB per argument: a larger answer (a thousand IPv6 PEs) keeps the floor
    // here, which the run's output says.
    if in_process || 2 * answers.canned().len() > MAX_ARG_HEX {
        return Ok(Floor::Here(
            EchoResponder::beside(target, answers).with_context(what)?,
        ));
    }
    let program = std::env::current_exe().context("finding this program to run the floor")?;
    let listen = echo::beside(target);
    Ok(Floor::Apart(
        EchoProcess::start(&program, listen, answers.canned()).with_context(what)?,
    ))
}

/// The closed-loop rate against the floor's: over all rounds, and the median of the
/// rounds' own ratios (sorts `ratios`).
fn rate_lines(res: &Series, floor: &Series, ratios: &mut [f64], echo: &Floor, out: &mut Output) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
    out.summary
        .insert("floor_max_rate_per_s".into(), floor.rate().into());
    out.summary
        .insert("max_rate_over_floor".into(), median.into());
    out.summary
        .insert("max_rate_over_floor_rounds".into(), ratios.to_vec().into());
    out.summary.insert(
        "floor_in_process".into(),
        matches!(echo, Floor::Here(_)).into(),
    );
    let rounds = match n {
        1 => String::new(),
        n => format!(
            "; median of {n} rounds, each the registrar then the floor, from {:.2}x to {:.2}x",
            ratios[0],
            ratios[n - 1]
        ),
    };
    out.lines.push(format!(
        "maximum vs. transport floor ({}): {:.0}/s / {:.0}/s = {median:.2}x{rounds}",
        echo.whereabouts(),
        res.rate(),
        floor.rate(),
    ));
}

fn ratio_lines(res: &Series, floor: &Series, echo: &Floor, out: &mut Output) {
    if res.count() == 0 || floor.count() == 0 {
        return;
    }
    let over = |q: f64| res.quantile(q).as_secs_f64() / floor.quantile(q).as_secs_f64();
    let (p50, p99, p999) = (over(0.5), over(0.99), over(0.999));
    out.summary.insert("p50_over_floor".into(), p50.into());
    out.summary.insert("p99_over_floor".into(), p99.into());
    out.summary.insert("p999_over_floor".into(), p999.into());
    out.summary
        .insert("floor".into(), echo.target().to_string().into());
    out.lines.push(format!(
        "resolution vs. transport floor: p50 {} / {} = {p50:.2}x, p99 {} / {} = {p99:.2}x, \
         p99.9 {} / {} = {p999:.2}x (answers of {} bytes, floor at {})",
        human(res.quantile(0.5)),
        human(floor.quantile(0.5)),
        human(res.quantile(0.99)),
        human(floor.quantile(0.99)),
        human(res.quantile(0.999)),
        human(floor.quantile(0.999)),
        echo.answer_bytes(),
        echo.target(),
    ));
}

pub(super) fn demo(a: DemoArgs, run: Run) -> anyhow::Result<()> {
    let mut local = None;
    let roles = match a.registrars.any() {
        true => (a.registrars.pe()?, a.registrars.pu()?),
        false => {
            let handle = rserpool_shards::runtime::start(rserpool_shards::RuntimeConfig {
                shards: 2,
                pin_cores: false,
                io_mode: Default::default(),
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
    if local.is_some() {
        out.details
            .push("our registrar in this process (2 shards)".into());
    }
    out.details
        .push("open loop at 50% of the closed-loop maximum".into());
    resolve(
        roles,
        &a.common,
        &a.opts,
        Rate::OfMax(0.5),
        (
            Duration::ZERO,
            FloorOpts {
                on: true,
                // Beside a registrar in this process, the floor's place too.
                in_process: local.is_some(),
                rounds: 1,
            },
        ),
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
        run,
        &a.common.files,
        serde_json::json!({
            "pe_registrar": roles.0.to_string(),
            "pu_registrar": roles.1.to_string(),
        }),
    )
}

pub(super) fn resolve_cmd(a: &ResolveArgs, run: Run) -> anyhow::Result<()> {
    let mut out = Output::default();
    let hold = if a.hold > 0.0 {
        seconds(a.hold, "--hold")?
    } else {
        Duration::ZERO
    };
    anyhow::ensure!(
        a.rounds == 1 || (a.rate == Rate::Max && !a.no_floor),
        "--rounds {} takes turns between the registrar and the echo floor: it needs --rate max \
         and the floor (no --no-floor)",
        a.rounds
    );
    let roles = (a.registrars.pe()?, a.registrars.pu()?);
    let floor = FloorOpts {
        on: !a.no_floor,
        in_process: a.floor_in_process,
        rounds: a.rounds,
    };
    resolve(roles, &a.common, &a.opts, a.rate, (hold, floor), &mut out)?;
    out.finish(run, &a.common.files, a.registrars.json()?)
}

pub(super) fn echo_cmd(a: &EchoArgs) -> anyhow::Result<()> {
    let pool = pool_handle(&a.pool)?;
    let listen = a.listen.unwrap_or(Target::tcp("127.0.0.1:0".parse()?));
    let ip = match listen.addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let (answers, what) = match &a.answer_hex {
        Some(AsapBytes(bytes)) => (Answers::new(bytes.clone()), "the given answer".to_owned()),
        None => (
            Answers::resolution(&pool, a.items, ip),
            format!("{} PEs", a.items),
        ),
    };
    let bytes = answers.canned().len();
    let echo =
        EchoResponder::start(listen, answers).with_context(|| format!("listening at {listen}"))?;
    if a.listen.is_some() {
        // The first line, and the address its first word after "on": EchoProcess reads it.
        println!(
            "echo responder on {} answers resolutions with {what} ({bytes} bytes) and registrations positively",
            echo.target
        );
        // Whoever started us reads the address before we block.
        std::io::Write::flush(&mut std::io::stdout())?;
        return echo.wait().context("the echo responder stopped");
    }
    let duration = seconds(a.duration, "--duration")?;
    let mut req = Vec::new();
    resolution_request(&pool, Some(a.items), &mut req);
    let s = match a.rate {
        Rate::PerSecond(r) => {
            open_loop(
                echo.target,
                &req,
                a.pus,
                r,
                duration,
                positive_resolution,
                ("echo.open", "echo (open loop)"),
            )?
            .latency
        }
        Rate::Max => {
            closed_loop(
                echo.target,
                &req,
                a.pus,
                duration,
                positive_resolution,
                ("echo.closed", "echo (transport floor)"),
            )?
            .latency
        }
        Rate::OfMax(_) => anyhow::bail!("echo takes `max` or a rate per second"),
    };
    print!("{}", report::table(&[s]));
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
