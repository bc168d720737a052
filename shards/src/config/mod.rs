//! Configuration: a TOML file (`--config`) overlaid by command-line flags, checked once
//! at start-up into a [`RuntimeConfig`]. Every option has a documented default (see
//! `deploy/registrar.toml`); unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod access;
mod enrp;
mod log;
pub mod reload;
mod tls;

use clap::Parser;
use rserpool::RegistrarId;
use rserpool::handlespace;
use rserpool::registrar::{self, MAX_RESOLUTION_ITEMS, RESOLUTION_ITEMS_CEILING};
use rserpool::wire::{self, LifeUnit};
use serde::Deserialize;

pub use access::{AccessSection, RuleSection, open_warning};
pub use enrp::{EnrpSection, parse_dump_target, parse_enrp_endpoint, parse_peer};
pub use log::{LogFormat, check_log_level};
pub use tls::TlsSection;

use crate::runtime::ConnLimits;
use crate::{Endpoint, EnrpEndpoints, RuntimeConfig};

/// The `--help` section of the ENRP flags.
const HELP_ENRP: &str = "ENRP (peer registrars)";
/// The `--help` section of the TLS flags.
const HELP_TLS: &str = "TLS (tls:// endpoints)";
/// The `--help` section of the connection limits.
const HELP_LIMITS: &str = "Connection limits";

/// The registrar's command line.
// The field docs are `--help` text, where `[ADDR]:PORT` is address syntax, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Default, Parser)]
#[command(
    name = "rserpool-registrar",
    // The commit comes from build.rs ("unknown" outside a git checkout).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("RSERPOOL_COMMIT"), ")"),
    about = "RSerPool pool registrar (ENRP server): ASAP over kernel SCTP and TCP, thread-per-core on io_uring",
    long_about = "RSerPool pool registrar (ENRP server). Pool elements register under a pool \
handle; pool users resolve the handle and get live elements chosen by the pool's selection \
policy; the registrar supervises every element with keep-alives and drops dead ones.\n\n\
With no arguments it serves ASAP on sctp://0.0.0.0:3863 and tcp://0.0.0.0:3863 with one \
shard per core, alone. With --enrp it also serves ENRP, keeping one handlespace with the \
peer registrars of its operational scope (given with --peer, or heard on the \
--enrp-announce-group). Flags override the file given with --config (see \
deploy/registrar.toml for every option and its default); RSPLIB's equivalent option is \
named where there is one. SIGTERM or SIGINT shuts down cleanly. SIGHUP rereads the \
TLS certificate, key and CA files and the --config file, and applies the log level, the \
[limits] connection and per-association limits and the [access] rules; it logs each \
change, names those that need a restart, and keeps everything on a bad file. Flags \
are not reloaded. Logs go to stderr.\n\n\
`rserpool-registrar dump URI` prints the handlespace of any registrar (ours or RSPLIB's) \
taken over ENRP from its ENRP endpoint, as RSPLIB's hsdump does: see `dump --help`.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do instead of running the registrar.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file; flags given as well override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to serve ASAP: tcp://ADDR:PORT, tls://ADDR:PORT (TCP inside TLS; needs
    /// --tls-cert and --tls-key) or sctp://ADDR:PORT (repeatable; IPv6 as [ADDR]:PORT).
    /// Default: sctp://0.0.0.0:3863 and tcp://0.0.0.0:3863.
    #[arg(long = "asap", value_name = "URI")]
    pub asap: Vec<String>,
    /// Number of shards (threads, one per core). Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub shards: Option<u16>,
    /// Milliseconds from a pool element's registration or last acknowledgement to the
    /// next keep-alive. Default 5000.
    #[arg(long, value_name = "MS")]
    pub keep_alive_interval: Option<u64>,
    /// Milliseconds a keep-alive may go unacknowledged before the element is removed.
    /// Default 5000.
    #[arg(long, value_name = "MS")]
    pub keep_alive_timeout: Option<u64>,
    /// Pool elements per handle resolution when the request does not ask for a number
    /// (1..=the items limit). Default 3.
    #[arg(long, value_name = "N")]
    pub max_resolution_items: Option<u32>,
    /// Most pool elements in one answer, whatever the request asks (1..=1024). Default
    /// 128, RSPLIB's cap; 500 lets a client see a whole 500-element pool at once (the
    /// load generator's failover scenario needs it).
    #[arg(long, value_name = "N")]
    pub resolution_items_limit: Option<u32>,
    /// Serve Prometheus metrics over HTTP on ADDR:PORT (GET /metrics, text format
    /// 0.0.4): service-time histograms of handle resolutions and registrations,
    /// keep-alive round trips, failure detection times by reason, ASAP messages by type
    /// and error causes sent, removals by reason, pools, pool elements and associations;
    /// with ENRP, peers by state, ENRP messages by type, peer updates applied and
    /// refused, audits and takeovers. Each figure per shard (shard="N"); the registrar's is their sum().
    /// Default: off; e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Log level: error, warn, info, debug, trace or off, or comma-separated
    /// target=level directives (e.g. warn,rserpool_shards=debug); a misspelt level is an
    /// error. Reread from the file on SIGHUP unless given here. Default info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log line format on stderr: text (colours only on a terminal) or json (one object
    /// per line: timestamp, level, message and fields). Default text.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// This registrar's server ID, in ASAP and ENRP (decimal or 0x-hex, non-zero;
    /// RSPLIB: -identifier). Default: random at each start.
    #[arg(long = "id", visible_alias = "registrar-id", value_name = "ID")]
    pub id: Option<String>,
    /// Accept loopback addresses in registrations (development and tests only).
    #[arg(long)]
    pub allow_loopback: bool,
    /// Send ASAP server announces to this UDP multicast group (RSPLIB's is
    /// 239.0.0.50:3863; the IANA one 224.0.1.185:3863). Default: off.
    #[arg(long, value_name = "ADDR:PORT")]
    pub announce_group: Option<SocketAddr>,
    /// Do not pin shard threads to cores (by default shard i runs on the i-th core of
    /// the set the registrar was started with: its affinity mask).
    #[arg(long)]
    pub no_pin: bool,
    /// Busy-poll: each shard spins on its io_uring instead of sleeping, and a kernel
    /// SQPOLL thread takes its submissions, so a busy registrar makes no system calls
    /// at all. Takes whole cores (a shard's and its kernel thread's) even when idle;
    /// for dedicated appliances. Default: sleep in the kernel when idle.
    #[arg(long)]
    pub busy_poll: bool,
    /// Serve ENRP (RFC 5353) to peer registrars here: sctp://ADDR:PORT, tcp://ADDR:PORT
    /// or tls://ADDR:PORT (repeatable; IPv6 as [ADDR]:PORT; RSPLIB: -enrp). SCTP is the RFC transport
    /// (PPID 12, IANA port 9901); TCP frames each message by its length, as ASAP. Shard
    /// 0 serves ENRP. Default: none, and ENRP is off: the registrar is alone.
    #[arg(long = "enrp", value_name = "URI", help_heading = HELP_ENRP)]
    pub enrp: Vec<String>,
    /// A peer registrar to contact at start and keep in touch with: sctp://ADDR:PORT,
    /// tcp://ADDR:PORT, tls://ADDR:PORT (its certificate checked against
    /// --tls-client-ca, ours shown), or ADDR:PORT for SCTP as RSPLIB's -peer (repeatable). Needs
    /// --enrp. Default: none (peers that contact us, or are heard on the
    /// --enrp-announce-group, are learned anyway).
    #[arg(long = "peer", value_name = "URI", help_heading = HELP_ENRP)]
    pub peers: Vec<String>,
    /// Send ENRP presences to this UDP multicast group and learn peers from theirs
    /// (RSPLIB: -enrpannounce; its group is 239.0.0.51:9901). Sent from the first --enrp
    /// endpoint's port. Needs --enrp. Default: off.
    #[arg(long, value_name = "ADDR:PORT", help_heading = HELP_ENRP)]
    pub enrp_announce_group: Option<SocketAddr>,
    /// Milliseconds between ENRP presences to each peer (PEER-HEARTBEAT-CYCLE, each cycle
    /// drawn within ±12.5 %; RSPLIB: -peerheartbeatcycle). Default: RSPLIB's 2444.444
    /// (the flag takes whole milliseconds: 2444 is the closest).
    #[arg(long, value_name = "MS", help_heading = HELP_ENRP)]
    pub peer_heartbeat_cycle: Option<u64>,
    /// Milliseconds a peer may stay silent before it is asked for a presence
    /// (MAX-TIME-LAST-HEARD; RSPLIB: -peermaxtimelastheard). Default 5000.
    #[arg(long, value_name = "MS", help_heading = HELP_ENRP)]
    pub peer_max_time_last_heard: Option<u64>,
    /// Milliseconds a peer asked for a presence has to answer before it is declared dead
    /// and taken over (MAX-TIME-NO-RESPONSE; RSPLIB: -peermaxtimenoresponse). Default
    /// 5000.
    #[arg(long, value_name = "MS", help_heading = HELP_ENRP)]
    pub peer_max_time_no_response: Option<u64>,
    /// Milliseconds a starting registrar looks for a mentor peer to copy the handlespace
    /// from before it serves alone (RSPLIB: -mentordiscoverytimeout). Default 5000.
    #[arg(long, value_name = "MS", help_heading = HELP_ENRP)]
    pub mentor_discovery_timeout: Option<u64>,
    /// Milliseconds a takeover of a dead peer waits for the other peers'
    /// acknowledgements (RSPLIB: -takeoverexpiryinterval). Default 5000.
    #[arg(long, value_name = "MS", help_heading = HELP_ENRP)]
    pub takeover_expiry: Option<u64>,
    /// Handle resolutions a second each association may send (RSPLIB: -maxhrrate), with
    /// bursts of 5 × this; one over it is answered with cause 0x000a. 0: unlimited.
    /// Default 0, as RSPLIB's.
    #[arg(long, value_name = "N")]
    pub max_resolution_rate: Option<u32>,
    /// Endpoint-unreachable reports a second each association may send (RSPLIB:
    /// -maxeurate), with bursts of 5 × this; one over it is dropped. 0: unlimited.
    /// Default 10.
    #[arg(long, value_name = "N")]
    pub max_unreachable_rate: Option<u32>,
    /// Most pool elements one association (connection) may have registered; more are
    /// refused with cause 0x0006 (Lack of Resources). Default 10000.
    #[arg(long, value_name = "N")]
    pub max_pes_per_association: Option<usize>,
    /// Most pools one association may have created (and still hold elements in); a
    /// registration creating another is refused with cause 0x0006. Default 1000.
    #[arg(long, value_name = "N")]
    pub max_pools_per_association: Option<usize>,
    /// The certificate chain (PEM, leaf first) served on tls:// endpoints; reread on
    /// SIGHUP. Default: none (tls:// endpoints are refused).
    #[arg(long, value_name = "FILE", help_heading = HELP_TLS)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; reread on SIGHUP.
    #[arg(long, value_name = "FILE", help_heading = HELP_TLS)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign the client certificates of PEs, PUs and peer
    /// registrars; reread on SIGHUP. Default: none.
    #[arg(long, value_name = "FILE", help_heading = HELP_TLS)]
    pub tls_client_ca: Option<PathBuf>,
    /// Client certificates on tls:// endpoints: off, optional (a client without one is
    /// let in without an identity; a bad one is refused) or required. Default: required
    /// when --tls-client-ca is given, else off.
    #[arg(long, value_name = "MODE", help_heading = HELP_TLS)]
    pub tls_client_auth: Option<String>,
    /// Milliseconds a TCP message that has started may take to arrive whole; a slower
    /// one closes its connection (slowloris). Default 10000.
    #[arg(long, value_name = "MS", help_heading = HELP_LIMITS)]
    pub message_timeout: Option<u64>,
    /// Milliseconds an accepted TCP connection may stay without sending one whole
    /// message before it is closed; 0: never. Connections that sent a message are not
    /// idle-closed (RSPLIB pool users keep theirs open, silent). Default 60000.
    #[arg(long, value_name = "MS", help_heading = HELP_LIMITS)]
    pub idle_timeout: Option<u64>,
    /// Accepted connections open at once, registrar-wide; more are closed at accept.
    /// Default 100000 (or the open-file limit less 256, if lower).
    #[arg(long, value_name = "N", help_heading = HELP_LIMITS)]
    pub max_connections: Option<usize>,
    /// Accepted connections open at once from one source address; more are closed at
    /// accept. Default 1000.
    #[arg(long, value_name = "N", help_heading = HELP_LIMITS)]
    pub max_connections_per_source: Option<usize>,
}

/// The registrar binary's subcommands; without one it runs the registrar.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a registrar's handlespace, taken over ENRP as RSPLIB's hsdump does.
    ///
    /// Connects to the ENRP endpoint of any registrar, ours or RSPLIB's rspregistrar,
    /// introduces itself as a peer, and asks for the peer list and the whole handle
    /// table. Prints the registrar's ID, its peers, every pool with its policy and pool
    /// elements (ID, home registrar, registration life, policy values, user and ASAP
    /// transports), and the totals (pools, pool elements, pool elements per home).
    /// Exits non-zero, saying why, if the registrar cannot be reached, refuses, does not
    /// finish in time or answers something undecodable.
    Dump(crate::dump::DumpArgs),
}

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The file, as written. Every field is optional; absent means "default".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub registrar: RegistrarSection,
    #[serde(default)]
    pub asap: AsapSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub enrp: EnrpSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub access: AccessSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSection {
    pub id: Option<u32>,
    pub shards: Option<u16>,
    pub pin_cores: Option<bool>,
    pub busy_poll: Option<bool>,
    pub seed: Option<u64>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsapSection {
    pub listen: Option<Vec<String>>,
    pub keep_alive_interval_ms: Option<u64>,
    pub keep_alive_timeout_ms: Option<u64>,
    pub max_resolution_items: Option<u32>,
    pub resolution_items_limit: Option<u32>,
    pub max_bad_pe_reports: Option<u32>,
    pub registration_life_unit: Option<String>,
    pub enforce_lifetime: Option<bool>,
    pub allow_loopback: Option<bool>,
    pub announce_group: Option<SocketAddr>,
    pub announce_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_pool_handle_len: Option<usize>,
    pub max_pools: Option<usize>,
    pub max_pool_elements: Option<usize>,
    pub max_elements: Option<usize>,
    pub max_resolution_rate: Option<u32>,
    pub resolution_burst: Option<u32>,
    pub max_unreachable_rate: Option<u32>,
    pub unreachable_burst: Option<u32>,
    pub max_answer_bytes: Option<usize>,
    pub max_pes_per_association: Option<usize>,
    pub max_pools_per_association: Option<usize>,
    pub message_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_source: Option<usize>,
    pub max_unsent_per_connection: Option<usize>,
    pub max_unsent_per_shard: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<SocketAddr>,
}

/// What start-up needs beyond the runtime itself.
#[derive(Debug, Clone)]
pub struct Settings {
    pub runtime: RuntimeConfig,
    /// Where shard 0 serves ENRP (empty when ENRP is off).
    pub enrp: EnrpEndpoints,
    pub metrics: Option<SocketAddr>,
    /// The log filter, checked ([`check_log_level`]).
    pub log_level: String,
    pub log_format: LogFormat,
    /// The credentials of the tls:// endpoints (`None`: there are none).
    pub tls: Option<crate::tls::TlsConfig>,
    /// Connection limits (`[limits]`, the "Connection limits" flags).
    pub conn_limits: ConnLimits,
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

/// Parses an ASAP endpoint: `tcp://ADDR:PORT` or `sctp://ADDR:PORT`.
pub fn parse_endpoint(uri: &str) -> Result<Endpoint, ConfigError> {
    parse_uri("ASAP endpoint", uri, None)
}

/// `what` names the value in errors; `plain` is what an address without a scheme is,
/// if that is allowed.
fn parse_uri(
    what: &str,
    uri: &str,
    plain: Option<fn(SocketAddr) -> Endpoint>,
) -> Result<Endpoint, ConfigError> {
    let bad = |why: &str| {
        let plain = if plain.is_some() {
            ", or ADDR:PORT"
        } else {
            ""
        };
        ConfigError::Invalid(format!(
            "invalid {what} {uri:?}: {why} (expected tcp://ADDR:PORT, tls://ADDR:PORT or sctp://ADDR:PORT{plain}, IPv6 as [ADDR]:PORT)"
        ))
    };
    let (make, rest): (fn(SocketAddr) -> Endpoint, &str) = match uri.split_once("://") {
        Some(("tcp", rest)) => (Endpoint::Tcp, rest),
        Some(("sctp", rest)) => (Endpoint::Sctp, rest),
        Some(("tls", rest)) => (Endpoint::Tls, rest),
        Some(_) => return Err(bad("unknown scheme")),
        None => match plain {
            Some(make) => (make, uri),
            None => return Err(bad("no scheme")),
        },
    };
    rest.parse()
        .map(make)
        .map_err(|_| bad("not an address and port"))
}

fn parse_id(s: &str) -> Result<u32, ConfigError> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| {
        ConfigError::Invalid(format!(
            "invalid registrar ID {s:?} (--id): expected a decimal or 0x-hex u32"
        ))
    })
}

/// A timer in milliseconds, 1 ms to a day; `name` says which in errors.
fn millis(name: &str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 || v > 86_400_000 {
        Err(ConfigError::Invalid(format!(
            "{name} must be 1..=86400000 ms, not {v}"
        )))
    } else {
        Ok(Duration::from_millis(v))
    }
}

/// Combines file and flags into checked settings. `cores` and `random` come from the
/// binary (the machine and the OS's randomness), so this stays testable.
pub fn settings(
    cli: &Cli,
    file: &FileConfig,
    cores: usize,
    random: u64,
) -> Result<Settings, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let r = &file.registrar;
    let a = &file.asap;
    let l = &file.limits;

    let uris: Vec<String> = if !cli.asap.is_empty() {
        cli.asap.clone()
    } else {
        a.listen
            .clone()
            .unwrap_or_else(|| vec!["sctp://0.0.0.0:3863".into(), "tcp://0.0.0.0:3863".into()])
    };
    if uris.is_empty() {
        return invalid("no ASAP endpoint to serve (asap.listen is empty)".into());
    }
    let asap = uris
        .iter()
        .map(|u| parse_endpoint(u))
        .collect::<Result<Vec<_>, _>>()?;

    let shards = cli
        .shards
        .or(r.shards)
        .unwrap_or(cores.clamp(1, 256) as u16);
    if !(1..=256).contains(&shards) {
        return invalid(format!("shards must be 1..=256, not {shards}"));
    }

    let id = match (&cli.id, r.id) {
        (Some(s), _) => parse_id(s)?,
        (None, Some(id)) => id,
        // RFC 5353 §2.1: a random non-zero ID, kept until restart.
        (None, None) => (random as u32).max(1),
    };
    if id == 0 {
        return invalid(
            "registrar ID (--id) must not be 0 (RFC 5353 §2.1: 0 means \"none\")".into(),
        );
    }

    let ms = millis;
    let keep_alive_interval = ms(
        "keep-alive interval",
        cli.keep_alive_interval
            .or(a.keep_alive_interval_ms)
            .unwrap_or(5000),
    )?;
    let keep_alive_timeout = ms(
        "keep-alive timeout",
        cli.keep_alive_timeout
            .or(a.keep_alive_timeout_ms)
            .unwrap_or(5000),
    )?;

    let resolution_items_limit = cli
        .resolution_items_limit
        .or(a.resolution_items_limit)
        .unwrap_or(MAX_RESOLUTION_ITEMS);
    if !(1..=RESOLUTION_ITEMS_CEILING).contains(&resolution_items_limit) {
        return invalid(format!(
            "resolution items limit must be 1..={RESOLUTION_ITEMS_CEILING}, not {resolution_items_limit}"
        ));
    }
    let max_resolution_items = cli
        .max_resolution_items
        .or(a.max_resolution_items)
        .unwrap_or(3);
    if !(1..=resolution_items_limit).contains(&max_resolution_items) {
        return invalid(format!(
            "max resolution items must be 1..={resolution_items_limit} (the items limit), not {max_resolution_items}"
        ));
    }
    let max_bad_pe_reports = a.max_bad_pe_reports.unwrap_or(3);
    if max_bad_pe_reports == 0 {
        return invalid("asap.max_bad_pe_reports must be at least 1".into());
    }
    let life_unit = match a.registration_life_unit.as_deref().unwrap_or("ms") {
        "ms" => LifeUnit::Milliseconds,
        "s" => LifeUnit::Seconds,
        other => {
            return invalid(format!(
                "asap.registration_life_unit must be \"ms\" or \"s\", not {other:?}"
            ));
        }
    };

    let defaults = handlespace::Config::default();
    let handlespace = handlespace::Config {
        max_handle_len: l.max_pool_handle_len.unwrap_or(defaults.max_handle_len),
        max_pools: l.max_pools.unwrap_or(defaults.max_pools),
        max_pool_elements: l.max_pool_elements.unwrap_or(defaults.max_pool_elements),
        max_elements: l.max_elements.unwrap_or(defaults.max_elements),
        max_increment: None,
    };
    if handlespace.max_handle_len == 0 || handlespace.max_handle_len > 65_000 {
        return invalid(format!(
            "limits.max_pool_handle_len must be 1..=65000, not {}",
            handlespace.max_handle_len
        ));
    }
    for (name, v) in [
        ("limits.max_pools", handlespace.max_pools),
        ("limits.max_pool_elements", handlespace.max_pool_elements),
        ("limits.max_elements", handlespace.max_elements),
    ] {
        if v == 0 {
            return invalid(format!("{name} must be at least 1"));
        }
    }

    let max_pes_per_association = cli
        .max_pes_per_association
        .or(l.max_pes_per_association)
        .unwrap_or(registrar::DEFAULT_MAX_PES_PER_ASSOCIATION);
    let max_pools_per_association = cli
        .max_pools_per_association
        .or(l.max_pools_per_association)
        .unwrap_or(registrar::DEFAULT_MAX_POOLS_PER_ASSOCIATION);
    for (name, v) in [
        ("limits.max_pes_per_association", max_pes_per_association),
        (
            "limits.max_pools_per_association",
            max_pools_per_association,
        ),
    ] {
        if v == 0 {
            return invalid(format!("{name} must be at least 1"));
        }
    }

    let announce_group = cli.announce_group.or(a.announce_group);
    if let Some(g) = announce_group
        && !g.ip().is_multicast()
    {
        return invalid(format!("announce group {g} is not a multicast address"));
    }
    let announce_interval = ms("announce interval", a.announce_interval_ms.unwrap_or(1000))?;

    let (enrp_endpoints, enrp) = enrp::settings(cli, &file.enrp)?;
    let resolution_rate = rate_limit(
        cli.max_resolution_rate
            .or(l.max_resolution_rate)
            .unwrap_or(0),
        l.resolution_burst,
    );
    let default_eu = registrar::DEFAULT_UNREACHABLE_RATE.per_second;
    let unreachable_rate = rate_limit(
        cli.max_unreachable_rate
            .or(l.max_unreachable_rate)
            .unwrap_or(default_eu),
        l.unreachable_burst,
    );
    let resolution_answer_bytes = l.max_answer_bytes.unwrap_or(wire::MAX_MESSAGE_LEN);
    if !(MIN_ANSWER_BYTES..=wire::MAX_MESSAGE_LEN).contains(&resolution_answer_bytes) {
        return invalid(format!(
            "limits.max_answer_bytes must be {MIN_ANSWER_BYTES}..={}, not {resolution_answer_bytes}",
            wire::MAX_MESSAGE_LEN
        ));
    }
    let peers = if cli.peers.is_empty() {
        file.enrp.peers.clone().unwrap_or_default()
    } else {
        cli.peers.clone()
    };
    let tls = tls::settings(cli, &file.tls, &asap, &enrp_endpoints.listen, &peers)?;
    let conn_limits = conn_limits(cli, l)?;
    // The file's own values are checked even where a flag overrides them: a mistake in
    // the file would otherwise surface only once the flag is dropped.
    if let Some(level) = &r.log_level {
        check_log_level(level)?;
    }
    if let Some(format) = &r.log_format {
        format.parse::<LogFormat>()?;
    }
    let log_level = cli
        .log_level
        .clone()
        .or_else(|| r.log_level.clone())
        .unwrap_or_else(|| "info".into());
    check_log_level(&log_level)?;
    let log_format = match cli.log_format.as_deref().or(r.log_format.as_deref()) {
        Some(f) => f.parse()?,
        None => LogFormat::Text,
    };

    let registrar = registrar::Config {
        id: RegistrarId(id),
        keep_alive_interval,
        keep_alive_timeout,
        max_resolution_items,
        resolution_items_limit,
        max_bad_pe_reports,
        life_unit,
        enforce_lifetime: a.enforce_lifetime.unwrap_or(true),
        min_lifetime: Duration::from_secs(1),
        allow_loopback: cli.allow_loopback || a.allow_loopback.unwrap_or(false),
        announce_interval: announce_group.map(|_| announce_interval),
        // Filled in by the runtime from the endpoints it binds.
        announce_transports: Vec::new(),
        handlespace,
        enrp,
        resolution_rate,
        unreachable_rate,
        resolution_answer_bytes,
        max_pes_per_association,
        max_pools_per_association,
        access: access::rules(&file.access)?,
    };
    Ok(Settings {
        runtime: RuntimeConfig {
            shards,
            pin_cores: !cli.no_pin && r.pin_cores.unwrap_or(true),
            io_mode: if cli.busy_poll || r.busy_poll.unwrap_or(false) {
                crate::net::ring::IoMode::BusyPoll
            } else {
                crate::net::ring::IoMode::Interrupt
            },
            asap,
            registrar,
            seed: r.seed.unwrap_or(random),
            announce_group,
        },
        enrp: enrp_endpoints,
        metrics: cli.metrics.or(file.metrics.listen),
        log_level,
        log_format,
        tls,
        conn_limits,
    })
}

/// The smallest `limits.max_answer_bytes`: room for a pool element with a few dozen
/// addresses, so that a lowered cap still answers with at least one element.
const MIN_ANSWER_BYTES: usize = 1024;

/// A per-association rate limit of `per_second` (0: none), bursts `burst` or 5 × the rate.
fn rate_limit(per_second: u32, burst: Option<u32>) -> Option<registrar::RateLimit> {
    (per_second > 0).then(|| registrar::RateLimit {
        per_second,
        burst: burst.unwrap_or(per_second.saturating_mul(5)).max(1),
    })
}

/// The connection limits from flags and `[limits]`.
fn conn_limits(cli: &Cli, l: &LimitsSection) -> Result<ConnLimits, ConfigError> {
    let d = ConnLimits::default();
    let message_timeout = match cli.message_timeout.or(l.message_timeout_ms) {
        Some(ms) => millis("limits.message_timeout_ms (--message-timeout)", ms)?,
        None => d.message_timeout,
    };
    let idle_timeout = match cli.idle_timeout.or(l.idle_timeout_ms) {
        Some(0) => None,
        Some(ms) => Some(millis("limits.idle_timeout_ms (--idle-timeout)", ms)?),
        None => d.idle_timeout,
    };
    let limits = ConnLimits {
        message_timeout,
        idle_timeout,
        max_connections: cli
            .max_connections
            .or(l.max_connections)
            .unwrap_or(d.max_connections),
        max_connections_per_source: cli
            .max_connections_per_source
            .or(l.max_connections_per_source)
            .unwrap_or(d.max_connections_per_source),
        max_unsent_per_connection: l
            .max_unsent_per_connection
            .unwrap_or(d.max_unsent_per_connection),
        max_unsent_per_shard: l.max_unsent_per_shard.unwrap_or(d.max_unsent_per_shard),
    };
    for (name, v) in [
        ("limits.max_connections", limits.max_connections),
        (
            "limits.max_connections_per_source",
            limits.max_connections_per_source,
        ),
    ] {
        if v == 0 {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
    }
    // One message (64 KiB) must always fit, or no answer could be sent at all.
    for (name, v) in [
        (
            "limits.max_unsent_per_connection",
            limits.max_unsent_per_connection,
        ),
        ("limits.max_unsent_per_shard", limits.max_unsent_per_shard),
    ] {
        if v < 1 << 16 {
            return Err(ConfigError::Invalid(format!(
                "{name} must be at least 65536 (one whole message), not {v}"
            )));
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests;
