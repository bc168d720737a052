//! `rserpool-registrar`: the registrar appliance's binary.

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use rserpool_shards::config::{Cli, Command, FileConfig, settings};
use rserpool_shards::{dump, net, runtime, service};
use tracing::{error, info};

#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Dump(args)) = &cli.command {
        return match dump::run(args, os_random()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rserpool-registrar dump: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Before logging is set up, or a start-up failure: say it plainly.
            eprintln!("rserpool-registrar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let s = settings(cli, &file, cores, os_random())?;
    let filter = tracing_subscriber::EnvFilter::try_new(&s.log_level)
        .map_err(|e| anyhow::anyhow!("invalid log level {:?}: {e}", s.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    if let Some(warning) = rserpool_shards::config::open_warning(&s) {
        tracing::warn!("{warning}");
    }

    net::signals::block_termination()?;
    let handle = runtime::start_configured(
        s.runtime.clone(),
        s.enrp.clone(),
        s.conn_limits.clone(),
        s.tls.clone(),
    )?;
    let metrics = s
        .metrics
        .map(|addr| {
            handle
                .serve_metrics(addr)
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))
        })
        .transpose()?;
    let list = |e: &[rserpool_shards::Endpoint]| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let peers = s.runtime.registrar.enrp.as_ref().map(|e| {
        e.peers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    });
    info!(
        id = %s.runtime.registrar.id,
        shards = s.runtime.shards,
        endpoints = %list(handle.endpoints()),
        enrp = %list(handle.enrp_endpoints()),
        peers = peers.as_deref().unwrap_or(""),
        metrics = ?metrics.as_ref().map(|m| m.addr()),
        "registrar started"
    );
    // Under systemd (Type=notify): READY=1 once every shard answers, and the watchdog.
    let service = service::Service::start(&handle.metrics_source());
    let sig = loop {
        match net::signals::wait()? {
            // Reload the TLS credentials; an error is logged and the old ones stay.
            libc::SIGHUP => {
                service.reloading();
                match handle.reload_tls() {
                    Some(_) => {}
                    None => info!("SIGHUP: no TLS credentials to reload"),
                }
                service.reloaded();
            }
            sig => break sig,
        }
    };
    info!(signal = sig, "shutting down");
    service.stopping();
    if let Err(e) = handle.shutdown() {
        error!(error = %e, "shutdown");
        return Err(e.into());
    }
    info!("stopped");
    Ok(())
}

/// 64 random bits from the OS, for the registrar ID and seed defaults.
fn os_random() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_ne_bytes(b),
        // No /dev/urandom: the clock still differs between starts.
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}
