//! Configuration: a TOML file (`--config`) overlaid by command-line flags, checked once
//! at start-up into a [`RuntimeConfig`]. Every option has a documented default (see
//! `deploy/registrar.toml`); unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use rserpool::RegistrarId;
use rserpool::enrp::{self, PeerAddress, TABLE_CHUNK_CEILING, TakeoverWinner};
use rserpool::handlespace::{self, ChecksumMode};
use rserpool::registrar::{self, MAX_RESOLUTION_ITEMS, RESOLUTION_ITEMS_CEILING, Transport};
use rserpool::wire::LifeUnit;
use serde::Deserialize;

use crate::{Endpoint, EnrpEndpoints, RuntimeConfig};

/// The `--help` section of the ENRP flags.
const HELP_ENRP: &str = "ENRP (peer registrars)";

/// The registrar's command line.
// The field docs are `--help` text, where `[ADDR]:PORT` is address syntax, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Default, Parser)]
#[command(
    name = "rserpool-registrar",
    version,
    about = "RSerPool pool registrar (ENRP server): ASAP over kernel SCTP and TCP, thread-per-core on io_uring",
    long_about = "RSerPool pool registrar (ENRP server). Pool elements register under a pool \
handle; pool users resolve the handle and get live elements chosen by the pool's selection \
policy; the registrar supervises every element with keep-alives and drops dead ones.\n\n\
With no arguments it serves ASAP on sctp://0.0.0.0:3863 and tcp://0.0.0.0:3863 with one \
shard per core, alone. With --enrp it also serves ENRP, keeping one handlespace with the \
peer registrars of its operational scope (given with --peer, or heard on the \
--enrp-announce-group). Flags override the file given with --config (see \
deploy/registrar.toml for every option and its default); RSPLIB's equivalent option is \
named where there is one. SIGTERM or SIGINT shuts down cleanly."
)]
pub struct Cli {
    /// TOML configuration file; flags given as well override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to serve ASAP: tcp://ADDR:PORT or sctp://ADDR:PORT (repeatable; IPv6 as
    /// [ADDR]:PORT). Default: sctp://0.0.0.0:3863 and tcp://0.0.0.0:3863.
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
    /// and error causes sent, removals by reason, pools, pool elements and associations.
    /// Each figure per shard (shard="N") and for the whole registrar (shard="all").
    /// Default: off; e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Log level: error, warn, info, debug or trace (or a tracing filter). Default info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
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
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Serve ENRP (RFC 5353) to peer registrars here: sctp://ADDR:PORT or tcp://ADDR:PORT
    /// (repeatable; IPv6 as [ADDR]:PORT; RSPLIB: -enrp). SCTP is the RFC transport
    /// (PPID 12, IANA port 9901); TCP frames each message by its length, as ASAP. Shard
    /// 0 serves ENRP. Default: none, and ENRP is off: the registrar is alone.
    #[arg(long = "enrp", value_name = "URI", help_heading = HELP_ENRP)]
    pub enrp: Vec<String>,
    /// A peer registrar to contact at start and keep in touch with: sctp://ADDR:PORT,
    /// tcp://ADDR:PORT, or ADDR:PORT for SCTP as RSPLIB's -peer (repeatable). Needs
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSection {
    pub id: Option<u32>,
    pub shards: Option<u16>,
    pub pin_cores: Option<bool>,
    pub seed: Option<u64>,
    pub log_level: Option<String>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrpSection {
    pub listen: Option<Vec<String>>,
    pub peers: Option<Vec<String>>,
    pub announce_group: Option<SocketAddr>,
    pub heartbeat_ms: Option<u64>,
    pub max_time_last_heard_ms: Option<u64>,
    pub max_time_no_response_ms: Option<u64>,
    pub mentor_discovery_ms: Option<u64>,
    pub takeover_expiry_ms: Option<u64>,
    pub takeover_winner: Option<String>,
    pub checksum: Option<String>,
    pub table_chunk_elements: Option<usize>,
    pub rsplib_compatible: Option<bool>,
}

/// What start-up needs beyond the runtime itself.
#[derive(Debug, Clone)]
pub struct Settings {
    pub runtime: RuntimeConfig,
    /// Where shard 0 serves ENRP (empty when ENRP is off).
    pub enrp: EnrpEndpoints,
    pub metrics: Option<SocketAddr>,
    pub log_level: String,
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

/// Parses an ENRP endpoint: `tcp://ADDR:PORT` or `sctp://ADDR:PORT`.
pub fn parse_enrp_endpoint(uri: &str) -> Result<Endpoint, ConfigError> {
    parse_uri("ENRP endpoint", uri, None)
}

/// Parses a peer: `tcp://ADDR:PORT`, `sctp://ADDR:PORT`, or `ADDR:PORT` for SCTP (as
/// RSPLIB's `-peer`).
pub fn parse_peer(uri: &str) -> Result<PeerAddress, ConfigError> {
    let (transport, addr) = match parse_uri("peer", uri, Some(Endpoint::Sctp))? {
        Endpoint::Sctp(a) => (Transport::Sctp, a),
        Endpoint::Tcp(a) => (Transport::Tcp, a),
    };
    let bad = |why: &str| ConfigError::Invalid(format!("invalid peer {uri:?}: {why}"));
    if addr.port() == 0 {
        return Err(bad("port 0"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(bad("not the address of one registrar"));
    }
    Ok(PeerAddress { transport, addr })
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
            "invalid {what} {uri:?}: {why} (expected tcp://ADDR:PORT or sctp://ADDR:PORT{plain}, IPv6 as [ADDR]:PORT)"
        ))
    };
    let (make, rest): (fn(SocketAddr) -> Endpoint, &str) = match uri.split_once("://") {
        Some(("tcp", rest)) => (Endpoint::Tcp, rest),
        Some(("sctp", rest)) => (Endpoint::Sctp, rest),
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

    let announce_group = cli.announce_group.or(a.announce_group);
    if let Some(g) = announce_group
        && !g.ip().is_multicast()
    {
        return invalid(format!("announce group {g} is not a multicast address"));
    }
    let announce_interval = ms("announce interval", a.announce_interval_ms.unwrap_or(1000))?;

    let (enrp_endpoints, enrp) = enrp_settings(cli, &file.enrp)?;

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
    };
    Ok(Settings {
        runtime: RuntimeConfig {
            shards,
            pin_cores: !cli.no_pin && r.pin_cores.unwrap_or(true),
            asap,
            registrar,
            seed: r.seed.unwrap_or(random),
            announce_group,
        },
        enrp: enrp_endpoints,
        metrics: cli.metrics.or(file.metrics.listen),
        log_level: cli
            .log_level
            .clone()
            .or_else(|| r.log_level.clone())
            .unwrap_or_else(|| "info".into()),
    })
}

/// The ENRP part of the settings: where to serve it and, when there is somewhere, the
/// ENRP server's settings (`None`: ENRP is off). Timers are checked even then.
fn enrp_settings(
    cli: &Cli,
    e: &EnrpSection,
) -> Result<(EnrpEndpoints, Option<enrp::Config>), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let listen = if cli.enrp.is_empty() {
        e.listen.clone().unwrap_or_default()
    } else {
        cli.enrp.clone()
    };
    let listen = listen
        .iter()
        .map(|u| parse_enrp_endpoint(u))
        .collect::<Result<Vec<_>, _>>()?;
    let peers = if cli.peers.is_empty() {
        e.peers.clone().unwrap_or_default()
    } else {
        cli.peers.clone()
    };
    let peers = peers
        .iter()
        .map(|u| parse_peer(u))
        .collect::<Result<Vec<_>, _>>()?;
    let announce_group = cli.enrp_announce_group.or(e.announce_group);

    let defaults = enrp::Config::default();
    let timer = |name: &str, flag: Option<u64>, key: Option<u64>, default: Duration| {
        flag.or(key).map_or(Ok(default), |v| millis(name, v))
    };
    let heartbeat = timer(
        "peer heartbeat cycle (--peer-heartbeat-cycle, enrp.heartbeat_ms)",
        cli.peer_heartbeat_cycle,
        e.heartbeat_ms,
        defaults.heartbeat,
    )?;
    let max_time_last_heard = timer(
        "peer max time last heard (--peer-max-time-last-heard, enrp.max_time_last_heard_ms)",
        cli.peer_max_time_last_heard,
        e.max_time_last_heard_ms,
        defaults.max_time_last_heard,
    )?;
    let max_time_no_response = timer(
        "peer max time no response (--peer-max-time-no-response, enrp.max_time_no_response_ms)",
        cli.peer_max_time_no_response,
        e.max_time_no_response_ms,
        defaults.max_time_no_response,
    )?;
    let mentor_discovery = timer(
        "mentor discovery timeout (--mentor-discovery-timeout, enrp.mentor_discovery_ms)",
        cli.mentor_discovery_timeout,
        e.mentor_discovery_ms,
        defaults.mentor_discovery,
    )?;
    let takeover_expiry = timer(
        "takeover expiry (--takeover-expiry, enrp.takeover_expiry_ms)",
        cli.takeover_expiry,
        e.takeover_expiry_ms,
        defaults.takeover_expiry,
    )?;
    let takeover_winner = match e.takeover_winner.as_deref().unwrap_or("lowest") {
        "lowest" => TakeoverWinner::Lowest,
        "highest" => TakeoverWinner::Highest,
        other => {
            return invalid(format!(
                "enrp.takeover_winner must be \"lowest\" (RSPLIB's rule) or \"highest\", not {other:?}"
            ));
        }
    };
    let checksum = match e.checksum.as_deref().unwrap_or("rsplib") {
        "rsplib" => ChecksumMode::Rsplib,
        "rfc1071" => ChecksumMode::Rfc1071,
        other => {
            return invalid(format!(
                "enrp.checksum must be \"rsplib\" or \"rfc1071\", not {other:?}"
            ));
        }
    };
    let table_chunk_elements = e
        .table_chunk_elements
        .unwrap_or(defaults.table_chunk_elements);
    if !(1..=TABLE_CHUNK_CEILING).contains(&table_chunk_elements) {
        return invalid(format!(
            "enrp.table_chunk_elements must be 1..={TABLE_CHUNK_CEILING}, not {table_chunk_elements}"
        ));
    }

    if let Some(g) = announce_group {
        if !g.ip().is_multicast() {
            return invalid(format!(
                "ENRP announce group {g} (--enrp-announce-group) is not a multicast address"
            ));
        }
        if listen.is_empty() {
            return invalid(format!(
                "ENRP announce group {g} (--enrp-announce-group) needs an ENRP endpoint (--enrp) to send from"
            ));
        }
    }
    if !peers.is_empty() && listen.is_empty() {
        return invalid(format!(
            "peers ({}) need an ENRP endpoint (--enrp or enrp.listen): ENRP is off without one",
            peers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    for (i, p) in peers.iter().enumerate() {
        if peers[..i].contains(p) {
            return invalid(format!("peer {p} is given twice"));
        }
        let ours = listen.iter().any(|ep| {
            let (transport, addr) = match *ep {
                Endpoint::Sctp(a) => (Transport::Sctp, a),
                Endpoint::Tcp(a) => (Transport::Tcp, a),
            };
            // A wildcard endpoint is reached on loopback too.
            transport == p.transport
                && addr.port() == p.addr.port()
                && (addr.ip() == p.addr.ip()
                    || (addr.ip().is_unspecified() && p.addr.ip().is_loopback()))
        });
        if ours {
            return invalid(format!("peer {p} is this registrar's own ENRP endpoint"));
        }
    }
    for (i, ep) in listen.iter().enumerate() {
        if listen[..i].contains(ep) {
            return invalid(format!("ENRP endpoint {ep} is given twice"));
        }
    }

    let endpoints = EnrpEndpoints {
        listen,
        announce_group,
    };
    if endpoints.listen.is_empty() {
        return Ok((endpoints, None));
    }
    let config = enrp::Config {
        peers,
        // Filled in by the runtime from the endpoints it binds, and `multicast` from the
        // group it joins.
        endpoints: Vec::new(),
        heartbeat,
        max_time_last_heard,
        max_time_no_response,
        mentor_discovery,
        takeover_expiry,
        takeover_winner,
        checksum,
        table_chunk_elements,
        multicast: false,
        rsplib_compatible: e.rsplib_compatible.unwrap_or(defaults.rsplib_compatible),
    };
    Ok((endpoints, Some(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn defaults_with_no_arguments() {
        let s = settings(&Cli::default(), &FileConfig::default(), 2, 77).unwrap();
        assert_eq!(s.runtime.shards, 2);
        assert_eq!(
            s.runtime.asap,
            vec![
                parse_endpoint("sctp://0.0.0.0:3863").unwrap(),
                parse_endpoint("tcp://0.0.0.0:3863").unwrap()
            ]
        );
        assert_eq!(s.runtime.registrar.id, RegistrarId(77));
        assert_eq!(
            s.runtime.registrar.keep_alive_interval,
            Duration::from_secs(5)
        );
        assert_eq!(s.runtime.registrar.max_resolution_items, 3);
        assert_eq!(s.runtime.registrar.resolution_items_limit, 128);
        assert!(!s.runtime.registrar.allow_loopback);
        assert!(s.runtime.pin_cores);
        assert_eq!(s.metrics, None);
        assert_eq!(s.log_level, "info");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = file("[asap]\nkeep_alive_intervall_ms = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep_alive_intervall_ms"), "{err}");
        assert!(err.contains("test.toml"), "{err}");
        let err = file("[nonsense]\n").unwrap_err().to_string();
        assert!(err.contains("nonsense"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let f = file("[asap]\nlisten = [\"tcp://127.0.0.1:4000\"]\nkeep_alive_interval_ms = 900\n")
            .unwrap();
        let cli = Cli::parse_from(["x", "--keep-alive-interval", "100", "--shards", "1"]);
        let s = settings(&cli, &f, 8, 1).unwrap();
        assert_eq!(
            s.runtime.registrar.keep_alive_interval,
            Duration::from_millis(100)
        );
        assert_eq!(
            s.runtime.asap,
            vec![Endpoint::Tcp("127.0.0.1:4000".parse().unwrap())]
        );
        assert_eq!(s.runtime.shards, 1);
    }

    #[test]
    fn bad_values_get_clear_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["--asap", "udp://1.2.3.4:5"], "unknown scheme"),
            (&["--asap", "udp://x"], "unknown scheme"),
            (&["--asap", "tcp://nowhere"], "not an address"),
            (&["--asap", "3863"], "no scheme"),
            (&["--keep-alive-timeout", "0"], "keep-alive timeout"),
            (&["--max-resolution-items", "129"], "max resolution items"),
            (
                &["--resolution-items-limit", "1025"],
                "resolution items limit",
            ),
            (&["--resolution-items-limit", "0"], "resolution items limit"),
            (&["--registrar-id", "0"], "must not be 0"),
            (&["--registrar-id", "0xzz"], "invalid registrar ID"),
            (&["--id", "0"], "must not be 0"),
            (&["--id", "4294967296"], "invalid registrar ID"),
            (&["--shards", "0"], "shards"),
            (&["--announce-group", "10.0.0.1:3863"], "not a multicast"),
        ];
        for (args, want) in cases {
            let cli = Cli::parse_from(std::iter::once("x").chain(args.iter().copied()));
            let err = settings(&cli, &FileConfig::default(), 2, 1)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
        let f = file("[asap]\nregistration_life_unit = \"minutes\"\n").unwrap();
        let err = settings(&Cli::default(), &f, 2, 1).unwrap_err().to_string();
        assert!(err.contains("registration_life_unit"), "{err}");
        assert!(file("[asap]\nkeep_alive_interval_ms = \"fast\"\n").is_err());
    }

    #[test]
    fn hex_ids_and_ipv6_endpoints() {
        let cli = Cli::parse_from([
            "x",
            "--registrar-id",
            "0x0A0B0C0D",
            "--asap",
            "sctp://[::1]:3863",
        ]);
        let s = settings(&cli, &FileConfig::default(), 1, 1).unwrap();
        assert_eq!(s.runtime.registrar.id, RegistrarId(0x0a0b_0c0d));
        assert_eq!(
            s.runtime.asap,
            vec![Endpoint::Sctp("[::1]:3863".parse().unwrap())]
        );
    }

    #[test]
    fn the_example_config_in_deploy_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/registrar.toml");
        let f = FileConfig::load(&path).unwrap();
        // With ENRP on too, so that its section's values are compared as well.
        for cli in [
            Cli::default(),
            Cli::parse_from(["x", "--enrp", "sctp://0.0.0.0:9901"]),
        ] {
            let from_file = settings(&cli, &f, 2, 1).unwrap();
            let defaults = settings(&cli, &FileConfig::default(), 2, 1).unwrap();
            // The example spells out every default (except the ID and seed, random by
            // default).
            let mut a = from_file.runtime.clone();
            let b = defaults.runtime;
            a.registrar.id = b.registrar.id;
            a.seed = b.seed;
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert_eq!(from_file.enrp, defaults.enrp);
            assert_eq!(from_file.log_level, defaults.log_level);
        }
    }

    fn enrp_of(args: &[&str]) -> (EnrpEndpoints, enrp::Config) {
        let cli = Cli::parse_from(std::iter::once("x").chain(args.iter().copied()));
        let s = settings(&cli, &FileConfig::default(), 2, 1).unwrap();
        (s.enrp, s.runtime.registrar.enrp.expect("ENRP is on"))
    }

    #[test]
    fn enrp_is_off_without_an_endpoint_and_takes_rsplib_defaults_with_one() {
        let s = settings(&Cli::default(), &FileConfig::default(), 2, 1).unwrap();
        assert_eq!(s.enrp, EnrpEndpoints::default());
        assert_eq!(s.runtime.registrar.enrp, None);

        let (endpoints, c) = enrp_of(&["--enrp", "tcp://127.0.0.1:0"]);
        assert_eq!(
            endpoints.listen,
            vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())]
        );
        assert_eq!(endpoints.announce_group, None);
        assert_eq!(c, enrp::Config::default());
        assert_eq!(c.heartbeat, Duration::from_micros(2_444_444));
    }

    #[test]
    fn enrp_flags_set_endpoints_peers_group_and_timers() {
        let (endpoints, c) = enrp_of(&[
            "--enrp",
            "sctp://0.0.0.0:9901",
            "--enrp",
            "tcp://[::]:9902",
            "--peer",
            "192.0.2.10:9901",
            "--peer",
            "tcp://[2001:db8::1]:9902",
            "--enrp-announce-group",
            "239.0.0.51:9901",
            "--peer-heartbeat-cycle",
            "1000",
            "--peer-max-time-last-heard",
            "2000",
            "--peer-max-time-no-response",
            "3000",
            "--mentor-discovery-timeout",
            "4000",
            "--takeover-expiry",
            "6000",
        ]);
        assert_eq!(
            endpoints.listen,
            vec![
                Endpoint::Sctp("0.0.0.0:9901".parse().unwrap()),
                Endpoint::Tcp("[::]:9902".parse().unwrap())
            ]
        );
        assert_eq!(
            endpoints.announce_group,
            Some("239.0.0.51:9901".parse().unwrap())
        );
        assert_eq!(
            c.peers,
            vec![
                PeerAddress {
                    transport: Transport::Sctp,
                    addr: "192.0.2.10:9901".parse().unwrap()
                },
                PeerAddress {
                    transport: Transport::Tcp,
                    addr: "[2001:db8::1]:9902".parse().unwrap()
                },
            ]
        );
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(c.max_time_last_heard, Duration::from_secs(2));
        assert_eq!(c.max_time_no_response, Duration::from_secs(3));
        assert_eq!(c.mentor_discovery, Duration::from_secs(4));
        assert_eq!(c.takeover_expiry, Duration::from_secs(6));
        // The runtime fills these in from what it binds and joins.
        assert!(c.endpoints.is_empty());
        assert!(!c.multicast);
    }

    #[test]
    fn the_enrp_section_sets_what_flags_do_not() {
        let f = file(
            "[enrp]\nlisten = [\"tcp://127.0.0.1:9901\"]\npeers = [\"tcp://127.0.0.2:9901\"]\n\
             heartbeat_ms = 900\ntakeover_winner = \"highest\"\nchecksum = \"rfc1071\"\n\
             table_chunk_elements = 1024\nrsplib_compatible = false\n",
        )
        .unwrap();
        let s = settings(&Cli::default(), &f, 2, 1).unwrap();
        let c = s.runtime.registrar.enrp.unwrap();
        assert_eq!(
            s.enrp.listen,
            vec![Endpoint::Tcp("127.0.0.1:9901".parse().unwrap())]
        );
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.heartbeat, Duration::from_millis(900));
        assert_eq!(c.takeover_winner, TakeoverWinner::Highest);
        assert_eq!(c.checksum, ChecksumMode::Rfc1071);
        assert_eq!(c.table_chunk_elements, 1024);
        assert!(!c.rsplib_compatible);

        // Flags replace the file's lists and values.
        let cli = Cli::parse_from([
            "x",
            "--enrp",
            "sctp://127.0.0.1:9999",
            "--peer",
            "127.0.0.3:9901",
            "--peer-heartbeat-cycle",
            "100",
        ]);
        let s = settings(&cli, &f, 2, 1).unwrap();
        let c = s.runtime.registrar.enrp.unwrap();
        assert_eq!(
            s.enrp.listen,
            vec![Endpoint::Sctp("127.0.0.1:9999".parse().unwrap())]
        );
        assert_eq!(c.peers[0].addr, "127.0.0.3:9901".parse().unwrap());
        assert_eq!(c.heartbeat, Duration::from_millis(100));
    }

    #[test]
    fn bad_enrp_values_get_errors_that_name_the_option() {
        let on = ["--enrp", "sctp://0.0.0.0:9901"];
        let cases: &[(&[&str], &str)] = &[
            (&["--enrp", "udp://0.0.0.0:9901"], "invalid ENRP endpoint"),
            (&["--enrp", "0.0.0.0:9901"], "no scheme"),
            (
                &["--peer", "10.0.0.1:9901"],
                "need an ENRP endpoint (--enrp",
            ),
            (
                &["--enrp-announce-group", "239.0.0.51:9901"],
                "needs an ENRP endpoint (--enrp)",
            ),
            (&[on[0], on[1], "--peer", "nowhere"], "invalid peer"),
            (
                &[on[0], on[1], "--peer", "udp://10.0.0.1:1"],
                "unknown scheme",
            ),
            (&[on[0], on[1], "--peer", "10.0.0.1:0"], "port 0"),
            (&[on[0], on[1], "--peer", "0.0.0.0:9901"], "one registrar"),
            (
                &[on[0], on[1], "--peer", "sctp://127.0.0.1:9901"],
                "own ENRP endpoint",
            ),
            (
                &[
                    on[0],
                    on[1],
                    "--peer",
                    "10.0.0.1:9901",
                    "--peer",
                    "10.0.0.1:9901",
                ],
                "given twice",
            ),
            (&[on[0], on[1], on[0], on[1]], "given twice"),
            (
                &[on[0], on[1], "--enrp-announce-group", "10.0.0.1:9901"],
                "not a multicast address",
            ),
            (&["--peer-heartbeat-cycle", "0"], "--peer-heartbeat-cycle"),
            (
                &["--peer-max-time-last-heard", "86400001"],
                "--peer-max-time-last-heard",
            ),
            (
                &["--peer-max-time-no-response", "0"],
                "--peer-max-time-no-response",
            ),
            (
                &["--mentor-discovery-timeout", "0"],
                "--mentor-discovery-timeout",
            ),
            (&["--takeover-expiry", "0"], "--takeover-expiry"),
        ];
        for (args, want) in cases {
            let cli = Cli::parse_from(std::iter::once("x").chain(args.iter().copied()));
            let err = settings(&cli, &FileConfig::default(), 2, 1)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
        // A peer on another transport or port than our endpoint is someone else.
        enrp_of(&[on[0], on[1], "--peer", "tcp://127.0.0.1:9901"]);
        enrp_of(&[on[0], on[1], "--peer", "127.0.0.1:9902"]);

        let on = "[enrp]\nlisten = [\"sctp://0.0.0.0:9901\"]\n";
        for (text, want) in [
            ("takeover_winner = \"first\"\n", "enrp.takeover_winner"),
            ("checksum = \"crc32\"\n", "enrp.checksum"),
            ("table_chunk_elements = 0\n", "enrp.table_chunk_elements"),
            ("table_chunk_elements = 1025\n", "enrp.table_chunk_elements"),
            ("mentor_discovery_ms = 0\n", "enrp.mentor_discovery_ms"),
        ] {
            let f = file(&format!("{on}{text}")).unwrap();
            let err = settings(&Cli::default(), &f, 2, 1).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = file("[enrp]\nheartbeat = 5\n").unwrap_err().to_string();
        assert!(err.contains("heartbeat"), "{err}");
    }
}
