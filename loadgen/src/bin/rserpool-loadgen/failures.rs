//! Failures: crashed and hung PEs timed until gone, and registration churn.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rserpool_loadgen::churn::{self, ChurnConfig};
use rserpool_loadgen::conn::Target;
use rserpool_loadgen::failover::{self, FailoverConfig, Mode};
use rserpool_loadgen::report::{Progress, human};

use super::{
    Common, KeepAlive, Output, Registrars, Run, per_second, pool_handle, positive_seconds, seconds,
};

#[derive(Debug, Args)]
pub(super) struct ChurnArgs {
    /// Registrar to drive.
    #[arg(long, value_name = "URI")]
    registrar: Option<Target>,
    /// The same (churn has pool elements only).
    #[arg(long, value_name = "URI")]
    pe_registrar: Option<Target>,
    #[command(flatten)]
    pub(super) common: Common,
    /// Operations per second, all kinds together (at most 1000000).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 2000.0, value_parser = per_second)]
    rate: f64,
    /// Length of the churn.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0, value_parser = positive_seconds)]
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
pub(super) struct FailoverArgs {
    /// The observers resolve at the pool users' registrar.
    #[command(flatten)]
    registrars: Registrars,
    #[command(flatten)]
    pub(super) common: Common,
    #[arg(long, value_enum, default_value_t = FailMode::Crash)]
    mode: FailMode,
    /// Trials.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    trials: u32,
    /// PEs failed at once per trial (fewer than --pes).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Observer threads resolving the whole pool.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    observers: u32,
    /// Connections per observer (more make it likelier that every shard is asked: with
    /// 8 over 2 shards, all land on one with probability 1/128).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    observer_connections: u32,
    /// Time from the start of one observer round (a request on each connection, then
    /// every answer) to the next; 0 (default) resolves back to back. A round bounds
    /// the timing error.
    #[arg(long, value_name = "US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    observer_interval_us: u64,
    #[command(flatten)]
    keep_alive: KeepAlive,
}

pub(super) fn failover_phase(
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

pub(super) fn failover_cmd(a: &FailoverArgs, run: Run) -> anyhow::Result<()> {
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
    out.finish(run, &a.common.files, a.registrars.json()?)
}

pub(super) fn churn_cmd(a: &ChurnArgs, run: Run) -> anyhow::Result<()> {
    let duration = seconds(a.duration, "--duration")?;
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
        run,
        &a.common.files,
        serde_json::json!({ "registrar": target.to_string() }),
    )
}
