//! `rserpool-loadgen`: drives a registrar with simulated pool elements and pool users.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;
use rserpool::PoolHandle;
use rserpool::client::resolution_request;
use rserpool::wire::PolicyParam;
use rserpool_loadgen::conn::Target;
use rserpool_loadgen::pe::PeGroup;
use rserpool_loadgen::report::{self, Series, human};
use rserpool_loadgen::scenario::{EchoResponder, echo_closed_loop, resolve_closed_loop};

#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "rserpool-loadgen",
    version,
    about = "Load generator for RSerPool registrars: simulated pool elements and pool users over ASAP/TCP",
    long_about = "Load generator for RSerPool registrars. Simulated pool elements register for \
real and answer keep-alives; simulated pool users resolve the pool and measure each answer's \
latency. Results are a table (count, rate, p50/p90/p99/p99.9/max), optionally JSON (--json) \
and an SVG percentile plot (--svg).\n\nThis build has `demo`, `resolve` (closed loop) and \
`echo` over TCP; the open-loop rate mode, churn, failover and SCTP come next."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts a registrar in this process (or uses --registrar), registers a 500-PE
    /// pool, measures handle resolution and the echo floor, and prints the table.
    Demo(RunArgs),
    /// Resolution latency and throughput against a running registrar: PEs register,
    /// pool users resolve back to back (closed loop) for --duration.
    Resolve(RunArgs),
    /// The transport floor alone: the same request bytes against a built-in echo
    /// responder that answers with the registrar's answer size.
    Echo(EchoArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Registrar to drive: tcp://ADDR:PORT, sctp://ADDR:PORT, or ADDR:PORT (TCP).
    /// `demo` starts its own when absent.
    #[arg(long, value_name = "URI")]
    registrar: Option<Target>,
    /// Pool handle.
    #[arg(long, default_value = "LoadPool")]
    pool: String,
    /// Pool elements to register.
    #[arg(long, default_value_t = 500)]
    pes: u32,
    /// Connections the pool elements share (several PEs per connection).
    #[arg(long, default_value_t = 8)]
    pe_connections: u32,
    /// Pool users resolving concurrently, one connection each.
    #[arg(long, default_value_t = 2)]
    pus: u32,
    /// PEs asked for per resolution (the Handle Resolution Option).
    #[arg(long, default_value_t = 3)]
    items: u32,
    /// How long to resolve, in seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG percentile plot to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// Answer size in bytes (a 3-PE resolution answer is about 150).
    #[arg(long, default_value_t = 152)]
    reply_bytes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 2)]
    pus: u32,
    /// Seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
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

fn seconds(s: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        s.is_finite() && s > 0.0 && s <= 86_400.0,
        "--duration must be 0..86400 seconds, not {s}"
    );
    Ok(Duration::from_secs_f64(s))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => measure(a, true),
        Command::Resolve(a) => measure(a, false),
        Command::Echo(a) => {
            let echo = EchoResponder::start(a.reply_bytes)?;
            let mut req = Vec::new();
            resolution_request(&PoolHandle::from("LoadPool"), Some(3), &mut req);
            let s = echo_closed_loop(echo.addr, &req, a.pus, seconds(a.duration)?)?;
            print!("{}", report::table(&[s]));
            Ok(())
        }
    }
}

fn measure(a: RunArgs, own_registrar: bool) -> anyhow::Result<()> {
    let duration = seconds(a.duration)?;
    anyhow::ensure!(a.pes >= 1, "--pes must be at least 1");
    anyhow::ensure!((1..=128).contains(&a.items), "--items must be 1..=128");
    let pool = PoolHandle::from(a.pool.as_str());
    anyhow::ensure!(
        !pool.is_empty() && pool.len() <= 32,
        "--pool must be 1..=32 bytes"
    );

    // `demo` without --registrar: a registrar in this process, on loopback.
    let mut local = None;
    let registrar = match (a.registrar, own_registrar) {
        (Some(addr), _) => addr,
        (None, true) => {
            let handle = rserpool_shards::runtime::start(rserpool_shards::RuntimeConfig {
                shards: 2,
                pin_cores: false,
                asap: vec![rserpool_shards::Endpoint::Tcp("127.0.0.1:0".parse()?)],
                registrar: rserpool::registrar::Config {
                    allow_loopback: true,
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
            Target::tcp(addr)
        }
        (None, false) => anyhow::bail!("resolve needs --registrar ADDR:PORT (or use demo)"),
    };
    println!(
        "registrar {registrar}{}; pool {pool}: {} PEs on {} connections; {} pool users, {} items, {:.1} s",
        if local.is_some() {
            " (in this process, 2 shards)"
        } else {
            ""
        },
        a.pes,
        a.pe_connections,
        a.pus,
        a.items,
        duration.as_secs_f64()
    );
    let t = std::time::Instant::now();
    let pes = PeGroup::start(
        registrar,
        &pool,
        a.pes,
        a.pe_connections,
        1,
        PolicyParam::round_robin(),
    )
    .context("registering the pool elements")?;
    let mut registration = Series::new("registration");
    for d in &pes.registration {
        registration.record(*d);
    }
    registration.elapsed = t.elapsed();

    let (resolution, stats) =
        resolve_closed_loop(registrar, &pool, Some(a.items), a.pus, duration)?;
    anyhow::ensure!(
        stats.items == a.items.min(a.pes) as usize,
        "answers held {} PEs, not {}",
        stats.items,
        a.items
    );
    let echo = EchoResponder::start(stats.answer_bytes)?;
    let mut req = Vec::new();
    resolution_request(&pool, Some(a.items), &mut req);
    let floor = echo_closed_loop(echo.addr, &req, a.pus, duration)?;
    pes.stop();
    if let Some(h) = local {
        h.shutdown()?;
    }

    let series = [registration, resolution, floor];
    println!();
    print!("{}", report::table(&series));
    let (res, fl) = (&series[1], &series[2]);
    if res.count() > 0 && fl.count() > 0 {
        println!(
            "\nresolution vs. transport floor: p50 {} / {} = {:.2}x, p99 {} / {} = {:.2}x (answers of {} bytes)",
            human(res.quantile(0.5)),
            human(fl.quantile(0.5)),
            res.quantile(0.5).as_secs_f64() / fl.quantile(0.5).as_secs_f64(),
            human(res.quantile(0.99)),
            human(fl.quantile(0.99)),
            res.quantile(0.99).as_secs_f64() / fl.quantile(0.99).as_secs_f64(),
            stats.answer_bytes
        );
    }
    println!(
        "closed loop: each pool user waits for its answer before the next request; the open-loop rate mode comes next."
    );
    if let Some(path) = &a.json {
        let params = serde_json::json!({
            "registrar": registrar.to_string(), "pool": a.pool, "pes": a.pes, "pus": a.pus,
            "items": a.items, "duration_s": duration.as_secs_f64(), "mode": "closed-loop",
        });
        let doc = report::json("resolve", params, &series);
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.svg {
        let svg = report::svg(
            "handle resolution over TCP: latency by percentile",
            &series[1..],
        );
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
