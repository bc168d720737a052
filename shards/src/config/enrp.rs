//! The ENRP part of the configuration: the `[enrp]` section and the ENRP flags, checked
//! into where shard 0 serves ENRP ([`EnrpEndpoints`]) and the ENRP server's settings.

use std::net::SocketAddr;
use std::time::Duration;

use rserpool::enrp::{self, PeerAddress, TABLE_CHUNK_CEILING, TakeoverWinner};
use rserpool::handlespace::ChecksumMode;
use rserpool::registrar::Transport;
use serde::Deserialize;

use super::{Cli, ConfigError, millis, parse_uri};
use crate::{Endpoint, EnrpEndpoints};

/// `[enrp]` as written; see deploy/registrar.toml for each key and its default.
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

/// Parses an ENRP endpoint: `tcp://ADDR:PORT` or `sctp://ADDR:PORT`.
pub fn parse_enrp_endpoint(uri: &str) -> Result<Endpoint, ConfigError> {
    parse_uri("ENRP endpoint", uri, None)
}

/// Parses a peer: `tcp://ADDR:PORT`, `tls://ADDR:PORT` (TCP to the core, dialled over
/// TLS by the runtime), `sctp://ADDR:PORT`, or `ADDR:PORT` for SCTP (as RSPLIB's
/// `-peer`).
pub fn parse_peer(uri: &str) -> Result<PeerAddress, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid(format!("invalid peer {uri:?}: {why}"));
    let (transport, addr) = match parse_uri("peer", uri, Some(Endpoint::Sctp))? {
        Endpoint::Sctp(a) => (Transport::Sctp, a),
        Endpoint::Tcp(a) => (Transport::Tcp, a),
        // Dialled over TLS by the runtime ([`crate::tls::TlsConfig::peers`]); TCP
        // to the core.
        Endpoint::Tls(a) => (Transport::Tcp, a),
    };
    if addr.port() == 0 {
        return Err(bad("port 0"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(bad("not the address of one registrar"));
    }
    Ok(PeerAddress { transport, addr })
}

/// Parses the ENRP endpoint of a registrar to dump: `tcp://ADDR:PORT`,
/// `sctp://ADDR:PORT`, or `ADDR:PORT` for SCTP (as RSPLIB's `hsdump`).
pub fn parse_dump_target(uri: &str) -> Result<Endpoint, ConfigError> {
    let ep = parse_uri("registrar ENRP endpoint", uri, Some(Endpoint::Sctp))?;
    if matches!(ep, Endpoint::Tls(_)) {
        return Err(ConfigError::Invalid(format!(
            "invalid registrar ENRP endpoint {uri:?}: dump does not speak TLS"
        )));
    }
    let addr = ep.addr();
    if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(ConfigError::Invalid(format!(
            "invalid registrar ENRP endpoint {uri:?}: not the address and port of one registrar"
        )));
    }
    Ok(ep)
}

/// Where to serve ENRP and, when there is somewhere, the ENRP server's settings (`None`:
/// ENRP is off). Timers are checked even then.
pub(super) fn settings(
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
                Endpoint::Tcp(a) | Endpoint::Tls(a) => (Transport::Tcp, a),
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
        // Filled in by the runtime from the endpoints it binds and the host's
        // interfaces, and `multicast` from the group it joins.
        endpoints: Vec::new(),
        host_addrs: Vec::new(),
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
    use std::path::Path;

    use clap::Parser as _;

    use super::*;
    use crate::config::{FileConfig, settings};

    fn file(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("test.toml"))
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
