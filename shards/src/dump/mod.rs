//! `rserpool-registrar dump URI`: the handlespace of any registrar, ours or RSPLIB's
//! `rspregistrar`, taken over ENRP as RSPLIB's `hsdump` takes it. The exchange is the
//! core's sans-IO [`Dumper`]; this module moves its bytes over one blocking connection
//! (`conn`) and prints what came back ([`report`]).
//!
//! The registrar sees the dump as a peer that introduced itself, asked for the peer
//! list and the whole handle table, and went away.

mod conn;
pub mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rserpool::RegistrarId;
use rserpool::enrp::dump::{Dump, Dumper, Step};
use rserpool::wire::{EnrpMessage, EnrpType, PPID_ENRP};

use crate::Endpoint;
use crate::config::{ConfigError, parse_dump_target};
use conn::Conn;
use report::Report;

/// `dump`'s arguments.
// The docs are `--help` text, where `[ADDR]:PORT` is address syntax, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The ENRP endpoint of a registrar (ours or RSPLIB's rspregistrar): tcp://ADDR:PORT,
    /// sctp://ADDR:PORT, or ADDR:PORT for SCTP as RSPLIB's hsdump (IPv6 as [ADDR]:PORT).
    #[arg(value_name = "URI")]
    pub uri: String,
    /// Also write the dump as JSON to FILE; "-" writes it to standard output instead of
    /// the table.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
    /// Seconds the whole dump may take, connecting included (fractions allowed).
    /// Default 10.
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
}

/// Why a dump failed, naming the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Target(#[from] ConfigError),
    #[error("invalid --timeout {0}: expected seconds above 0")]
    BadTimeout(f64),
    #[error("cannot connect to {target}: {source}{hint}")]
    Connect {
        target: Endpoint,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("{target} did not complete the dump within {timeout:?}: {progress}")]
    Timeout {
        target: Endpoint,
        timeout: Duration,
        progress: String,
    },
    #[error("{target} (registrar {registrar}) refused the handle table request (R flag)")]
    Refused {
        target: Endpoint,
        registrar: RegistrarId,
    },
    #[error("undecodable answer from {target}: {error}{detail}")]
    Undecodable {
        target: Endpoint,
        error: String,
        /// Its PPID if not ENRP's, and its first bytes.
        detail: String,
    },
    #[error("{target} closed the connection before the dump was complete: {progress}")]
    Closed { target: Endpoint, progress: String },
    #[error("connection to {target} failed: {source}")]
    Io {
        target: Endpoint,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Runs the subcommand: the dump, then the table on standard output and the JSON where
/// `--json` says. `random` picks our server ID for the exchange.
pub fn run(args: &DumpArgs, random: u64) -> Result<(), DumpError> {
    let target = parse_dump_target(&args.uri)?;
    let seconds = args.timeout.unwrap_or(10.0);
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
        return Err(DumpError::BadTimeout(seconds));
    }
    let timeout = Duration::from_secs_f64(seconds);
    // RFC 5353 §2.1: a random non-zero ID.
    let id = RegistrarId((random as u32).max(1));
    let dump = fetch(&target, timeout, id)?;
    let report = Report::new(&target, &dump);
    let stdout = |text: &str| {
        use std::io::Write as _;
        std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|source| DumpError::Write {
                path: "standard output".into(),
                source,
            })
    };
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => stdout(&report.json()),
        Some(path) => {
            std::fs::write(path, report.json()).map_err(|source| DumpError::Write {
                path: path.display().to_string(),
                source,
            })?;
            stdout(&report.table())
        }
        None => stdout(&report.table()),
    }
}

/// Takes the dump: PRESENCE, LIST_REQUEST and HANDLE_TABLE_REQUEST, then a round per
/// "more to send", until the last chunk, a refusal, or `timeout` after the start.
pub fn fetch(target: &Endpoint, timeout: Duration, id: RegistrarId) -> Result<Dump, DumpError> {
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::open(target, timeout).map_err(|source| {
        let hint = if crate::net::sctp::is_unsupported(&source) {
            " (this kernel has no SCTP)"
        } else {
            ""
        };
        DumpError::Connect {
            target: target.clone(),
            source,
            hint,
        }
    })?;
    let io = |source| DumpError::Io {
        target: target.clone(),
        source,
    };
    let info = conn.server_information(id).map_err(io)?;
    let mut dumper = Dumper::new(id, info);
    for m in dumper.start() {
        conn.send(&m).map_err(io)?;
    }
    // ENRP_ERRORs the registrar sent: the Dumper ignores them, a failure names them.
    let mut errors: Vec<String> = Vec::new();
    loop {
        let received = match conn.recv(deadline) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(DumpError::Closed {
                    target: target.clone(),
                    progress: progress(dumper.dump(), &errors),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(DumpError::Timeout {
                    target: target.clone(),
                    timeout,
                    progress: progress(dumper.dump(), &errors),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(DumpError::Undecodable {
                    target: target.clone(),
                    error: e.to_string(),
                    detail: String::new(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let bytes = &received.bytes;
        if bytes.first() == Some(&EnrpType::ERROR.0)
            && let Ok(d) = EnrpMessage::decode(bytes)
            && let EnrpMessage::Error { error, .. } = d.message
        {
            errors.extend(error.causes.iter().map(|c| c.code.to_string()));
        }
        match dumper.on_message(bytes) {
            Ok(Step::Send(messages)) => {
                for m in messages {
                    conn.send(&m).map_err(io)?;
                }
            }
            Ok(Step::Wait) => {}
            Ok(Step::Done) => {
                let mut dump = dumper.into_dump();
                // The registrar lists us too, having just heard our PRESENCE.
                dump.peers.retain(|p| p.server_id != id);
                return Ok(dump);
            }
            Ok(Step::Refused) => {
                return Err(DumpError::Refused {
                    target: target.clone(),
                    registrar: dumper.dump().registrar,
                });
            }
            Err(e) => {
                return Err(DumpError::Undecodable {
                    target: target.clone(),
                    error: e.to_string(),
                    detail: undecodable(bytes, received.ppid),
                });
            }
        }
    }
}

/// The PPID of an undecodable message if it is not ENRP's, and its first bytes.
fn undecodable(bytes: &[u8], ppid: Option<u32>) -> String {
    let head: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let ppid = match ppid {
        Some(p) if p != PPID_ENRP => format!(", PPID {p} instead of ENRP's {PPID_ENRP}"),
        _ => String::new(),
    };
    format!(
        " ({} bytes{ppid}, starting {})",
        bytes.len(),
        head.join(" ")
    )
}

/// What had arrived when a dump stopped, for its error.
fn progress(d: &Dump, errors: &[String]) -> String {
    let mut s = if d.chunks == 0 {
        "no handle table received".to_owned()
    } else {
        format!(
            "{} handle table chunk(s) with {} PE(s) received, the last saying more was to come",
            d.chunks,
            d.elements.len()
        )
    };
    if !errors.is_empty() {
        s.push_str(&format!("; it answered ENRP_ERROR ({})", errors.join(", ")));
    }
    s
}
