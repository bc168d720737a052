//! `rserpool-registrar`: the registrar appliance's binary.

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use rserpool_shards::config::reload::{self, Effect};
use rserpool_shards::config::{Cli, Command, FileConfig, Settings, settings};
use rserpool_shards::logging::{self, Logging};
use rserpool_shards::{dump, net, runtime, service};
use tracing::{error, info, warn};

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
    let random = os_random();
    let s = settings(cli, &file, cores, random)?;
    let logging = logging::init(&s.log_level, s.log_format)?;
    if let Some(warning) = rserpool_shards::config::open_warning(&s) {
        tracing::warn!("{warning}");
    }

    net::signals::block_termination()?;
    let handle = runtime::start_configured(
        s.runtime.clone(),
        s.enrp.clone(),
        s.conn_limits,
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
        metrics = %metrics.as_ref().map(|m| m.addr().to_string()).unwrap_or_default(),
        "registrar started"
    );
    let mut running = Running {
        settings: s,
        cores,
        random,
    };
    // Under systemd (Type=notify): READY=1 once every shard answers, and the watchdog.
    let service = service::Service::start(&handle.metrics_source());
    let sig = loop {
        match net::signals::wait()? {
            libc::SIGHUP => {
                service.reloading();
                reload(&handle, &logging, cli, &mut running);
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

/// The settings in force, and what start-up drew its defaults from (so that a reload
/// of the file does not see a new random ID as a change).
struct Running {
    settings: Settings,
    cores: usize,
    random: u64,
}

/// SIGHUP: rereads the TLS credentials, then the config file, and applies what can
/// change while running (log level, `[limits]`, `[access]`), one line per change;
/// what needs a restart is named in a warning. A file that does not parse or check
/// changes nothing.
fn reload(handle: &runtime::Handle, logging: &Logging, cli: &Cli, running: &mut Running) {
    // An error is logged by the TLS layer and the old credentials stay.
    let _ = handle.reload_tls();
    let Some(path) = &cli.config else {
        info!("SIGHUP: no --config file to reread; TLS credentials reread if any");
        return;
    };
    let (new, file) = match reload::reread(cli, path, running.cores, running.random) {
        Ok(read) => read,
        Err(e) => {
            error!("reload failed, the settings in force stay: {e}");
            return;
        }
    };
    let old = &running.settings;
    let changes = reload::diff(old, &new);
    if reload::needs_runtime_reload(&changes) {
        let r = runtime::Reload {
            limits: new.conn_limits,
            registrar: new.runtime.registrar.reloadable(),
        };
        if let Err(e) = handle.reload(r) {
            warn!("reload: {e}");
        }
    }
    // The new level governs the lines about the reload too: going from warn to info
    // shows them.
    if old.log_level != new.log_level
        && let Err(e) = logging.set_level(&new.log_level)
    {
        error!("reload: {e}");
    }
    for c in &changes {
        match c.effect {
            Effect::Applied => info!("reloaded: {c}"),
            Effect::Restart => warn!("not applied until restart: {c}"),
        }
    }
    for p in reload::pinned(cli, &file) {
        info!("not reloaded: {p}");
    }
    if changes.is_empty() {
        info!(file = %path.display(), "reloaded: no change");
    }
    running.settings = reload::merge(old, &new);
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
