//! The ENRP scenarios: propagation between two registrars, and the takeover of a
//! killed registrar's PEs in a scope this process starts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rserpool::PoolHandle;
use rserpool_loadgen::propagation::{self, PropagationConfig};
use rserpool_loadgen::report::{Progress, human};
use rserpool_loadgen::scope::{self, Scope, ScopeConfig, Timers};
use rserpool_loadgen::takeover::{self, TakeoverConfig};

use super::{
    Common, Files, MAX_MS, Output, Registrars, Run, per_second, pool_handle, positive_seconds,
    seconds,
};

#[derive(Debug, Args)]
pub(super) struct PropagationArgs {
    /// A (--pe-registrar) and B (--pu-registrar).
    #[command(flatten)]
    registrars: Registrars,
    /// Pool handle prefix: trial I uses the pool PREFIX, a 4-digit tag of the run, "-"
    /// and I (at most 32 bytes in all).
    #[arg(long, value_name = "NAME", default_value = "Propagation")]
    pool: String,
    /// Trials per second, open loop (at most 100000).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 1000.0, value_parser = per_second)]
    rate: f64,
    /// Length of the trials.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = positive_seconds)]
    duration: f64,
    /// Time a trial may take to show at B (or vanish, or be answered at A) before it
    /// counts as an error.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = positive_seconds)]
    timeout: f64,
    /// Time the first, untimed trial may take (the scope may still be forming).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    warm_up: f64,
    /// Connections the PEs share at A.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pe_connections: u32,
    /// Observer connections to B (each may land on another shard of B); a trial has
    /// shown (or vanished) when it has on every one of them.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    observer_connections: u32,
    #[command(flatten)]
    pub(super) files: Files,
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
pub(super) struct TakeoverArgs {
    /// Registrar processes to start (2 to 16); registrar 0 holds the PEs and is killed.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=16))]
    registrars: u16,
    /// The registrar binary. Default: rserpool-registrar next to this executable.
    #[arg(long, value_name = "PATH")]
    registrar_binary: Option<PathBuf>,
    /// The registrars' ENRP timers.
    #[arg(long, value_enum, default_value_t = TimersArg::Default)]
    timers: TimersArg,
    /// The registrars' keep-alive interval.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    keep_alive_interval: u64,
    /// The registrars' keep-alive timeout.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    keep_alive_timeout: u64,
    /// Shards per registrar.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    shards: u16,
    /// The registrars' log level. Their logs go to a temporary directory, kept (and
    /// named) when something fails.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    registrar_log_level: String,
    #[command(flatten)]
    pub(super) common: Common,
}

pub(super) fn propagation_cmd(a: &PropagationArgs, run: Run) -> anyhow::Result<()> {
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
    out.finish(run, &a.files, a.registrars.json()?)
}

pub(super) fn takeover_cmd(a: &TakeoverArgs, run: Run) -> anyhow::Result<()> {
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
            usize::from(a.registrars),
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
    let outcome = takeover::run(
        &mut scope,
        &TakeoverConfig {
            pool: pool_handle(&a.common.pool)?,
            pes: a.common.pes,
            links: a.common.pe_connections,
            bound,
            settle: enrp.mentor_discovery + Duration::from_secs(30),
        },
    );
    let r = match outcome {
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
    out.finish(run, &a.common.files, serde_json::Value::Null)?;
    anyhow::ensure!(lost == 0, "{lost} PEs lost in the takeover");
    Ok(())
}
