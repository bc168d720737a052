//! The Prometheus text exposition format (version 0.0.4) of the shards' snapshots.
//!
//! Label convention: every series of a per-shard figure carries `shard="N"`, and there
//! is no precomputed total: the registrar's figure is the sum over shards, done by the
//! query (`sum(rate(x[1m]))`, `histogram_quantile(0.99, sum by (le)
//! (rate(x_bucket[1m])))`), which stays right when a shard misses a scrape (its series
//! only has a gap). The exceptions do not add up and say so in their HELP: the replica
//! gauges (every shard holds every pool: take `max`). Registrar-wide figures that are
//! not per shard (connections, TLS, `process_*`, `rserpool_up`, `rserpool_shards`)
//! carry no `shard` label. The ENRP families are in the `enrp` submodule.

mod access;
mod answers;
mod enrp;
mod identity;
mod tls;

pub use tls::render as render_tls;

use std::fmt::{Display, Write as _};
use std::time::Duration;

use rserpool::registrar::{Gauges, Histogram, Metrics, RemovalReason};
use rserpool::wire::{AsapType, CauseCode};

use crate::runtime::Snapshot;

/// ASAP messages a registrar is sent (RFC 5352 §2.2, by PEs and PUs): their series are
/// always shown. Another type (a well-formed message meant for a PE or PU) appears
/// only once one arrived.
const RECEIVED: [AsapType; 6] = [
    AsapType::REGISTRATION,
    AsapType::DEREGISTRATION,
    AsapType::HANDLE_RESOLUTION,
    AsapType::ENDPOINT_KEEP_ALIVE_ACK,
    AsapType::ENDPOINT_UNREACHABLE,
    AsapType::ERROR,
];

/// ASAP messages a registrar sends; it encodes no other type.
const SENT: [AsapType; 6] = [
    AsapType::REGISTRATION_RESPONSE,
    AsapType::DEREGISTRATION_RESPONSE,
    AsapType::HANDLE_RESOLUTION_RESPONSE,
    AsapType::ENDPOINT_KEEP_ALIVE,
    AsapType::SERVER_ANNOUNCE,
    AsapType::ERROR,
];

/// RFC 5354 causes the registrar sends; `unspecified`, `non_unique_pe_identifier` and
/// `other` (a non-RFC code) are shown only if ever counted.
const CAUSES_SENT: [CauseCode; 9] = [
    CauseCode::UNRECOGNIZED_PARAMETER,
    CauseCode::UNRECOGNIZED_MESSAGE,
    CauseCode::INVALID_VALUES,
    CauseCode::INCONSISTENT_POOLING_POLICY,
    CauseCode::LACK_OF_RESOURCES,
    CauseCode::INCONSISTENT_TRANSPORT_TYPE,
    CauseCode::INCONSISTENT_DATA_CONTROL,
    CauseCode::UNKNOWN_POOL_HANDLE,
    CauseCode::REJECTED_SECURITY,
];

/// One shard's figures and the `shard` label they are shown under.
struct View<'a> {
    shard: String,
    metrics: &'a Metrics,
    gauges: &'a Gauges,
    mesh_spills: u64,
    mesh_waits: u64,
    enrp_synchronised: Option<bool>,
}

/// Renders a scrape: `snapshots[i]` is shard `i`'s, `None` if it did not answer within
/// `timeout` (said in a comment and by `rserpool_shard_up`).
pub fn render(snapshots: &[Option<Snapshot>], timeout: Duration) -> String {
    let mut out = String::with_capacity(64 << 10);
    let views: Vec<View<'_>> = snapshots
        .iter()
        .flatten()
        .map(|s| View {
            shard: s.shard.to_string(),
            metrics: &s.metrics,
            gauges: &s.gauges,
            mesh_spills: s.mesh_spills,
            mesh_waits: s.mesh_waits,
            enrp_synchronised: s.enrp_synchronised,
        })
        .collect();
    for (i, _) in snapshots.iter().enumerate().filter(|(_, s)| s.is_none()) {
        let _ = writeln!(
            out,
            "# shard {i} did not answer within {timeout:?}: its series are left out of this scrape"
        );
    }

    process(&mut out, snapshots);
    gauges(&mut out, &views);
    counters(&mut out, &views);
    mesh(&mut out, &views);
    histograms(&mut out, &views);
    enrp::render(&mut out, &views);
    answers::render(&mut out, &views);
    identity::render(&mut out, &views);
    access::render(&mut out, &views);
    out
}

fn process(out: &mut String, snapshots: &[Option<Snapshot>]) {
    family(out, "rserpool_up", "gauge", "1 while the registrar runs.");
    sample(out, "rserpool_up", "", 1);
    family(
        out,
        "rserpool_shards",
        "gauge",
        "Shards (threads) the registrar runs.",
    );
    sample(out, "rserpool_shards", "", snapshots.len());
    family(
        out,
        "rserpool_shard_up",
        "gauge",
        "1 if the shard answered this scrape in time, 0 if not (busy or stopped).",
    );
    for (i, s) in snapshots.iter().enumerate() {
        sample(
            out,
            "rserpool_shard_up",
            &format!("shard=\"{i}\""),
            u8::from(s.is_some()),
        );
    }
}

fn gauges(out: &mut String, views: &[View<'_>]) {
    type Pick = fn(&Gauges) -> usize;
    let summed: [(&str, &str, Pick); 4] = [
        (
            "rserpool_pools",
            "Pools the shard writes (is the single writer of); the sum over shards counts every pool once.",
            |g| g.written_pools,
        ),
        (
            "rserpool_pool_elements",
            "Pool elements in the pools the shard writes; the sum over shards counts every PE once.",
            |g| g.written_elements,
        ),
        (
            "rserpool_associations",
            "TCP connections and SCTP associations the shard serves.",
            |g| g.connections,
        ),
        (
            "rserpool_supervised_pool_elements",
            "Pool elements registered through the shard's connections, which it supervises with keep-alives.",
            |g| g.supervised,
        ),
    ];
    for (name, help, pick) in summed {
        family(out, name, "gauge", help);
        for v in views {
            sample(out, name, &shard(v), pick(v.gauges));
        }
    }
    // Every shard holds a full replica: these do not add up (take max).
    let replica: [(&str, &str, Pick); 2] = [
        (
            "rserpool_replica_pools",
            "Pools in the shard's replica of the handlespace (every shard holds all of them: take max, not sum).",
            |g| g.replica_pools,
        ),
        (
            "rserpool_replica_pool_elements",
            "Pool elements in the shard's replica of the handlespace (every shard holds all of them: take max, not sum).",
            |g| g.replica_elements,
        ),
    ];
    for (name, help, pick) in replica {
        family(out, name, "gauge", help);
        for v in views {
            sample(out, name, &shard(v), pick(v.gauges));
        }
    }
}

fn counters(out: &mut String, views: &[View<'_>]) {
    type Count = fn(&Metrics, AsapType) -> u64;
    let families: [(&str, &str, &[AsapType], Count); 2] = [
        (
            "rserpool_asap_messages_received_total",
            "Well-formed ASAP messages received, by type (malformed ones: rserpool_asap_malformed_messages_total). Types a registrar is not sent appear once one arrived.",
            &RECEIVED,
            Metrics::received,
        ),
        (
            "rserpool_asap_messages_sent_total",
            "ASAP messages queued for sending, by type (server announces included).",
            &SENT,
            Metrics::sent,
        ),
    ];
    for (name, help, always, count) in families {
        family(out, name, "counter", help);
        for v in views {
            for &t in AsapType::ALL {
                let n = count(v.metrics, t);
                if n > 0 || always.contains(&t) {
                    sample(out, name, &format!("{},type=\"{}\"", shard(v), lower(t)), n);
                }
            }
        }
    }

    let name = "rserpool_asap_errors_total";
    family(
        out,
        name,
        "counter",
        "RFC 5354 error causes sent, in the Operation Error of responses and in ASAP_ERROR, by cause.",
    );
    for v in views {
        for &c in CauseCode::ALL.iter().filter(|c| c.is_standard()) {
            let n = v.metrics.errors(c);
            if n > 0 || CAUSES_SENT.contains(&c) {
                let labels = format!("{},cause=\"{}\"", shard(v), lower(c));
                sample(out, name, &labels, n);
            }
        }
        if v.metrics.other_errors() > 0 {
            let labels = format!("{},cause=\"other\"", shard(v));
            sample(out, name, &labels, v.metrics.other_errors());
        }
    }

    let name = "rserpool_asap_malformed_messages_total";
    family(
        out,
        name,
        "counter",
        "ASAP messages that could not be decoded (answered with ASAP_ERROR where RFC 5354 says so).",
    );
    for v in views {
        sample(out, name, &shard(v), v.metrics.malformed());
    }

    let name = "rserpool_pe_removals_total";
    family(
        out,
        name,
        "counter",
        "Pool elements removed, by reason, counted by the pool's writer shard.",
    );
    for v in views {
        for r in RemovalReason::ALL {
            let labels = format!("{},reason=\"{}\"", shard(v), r.label());
            sample(out, name, &labels, v.metrics.removals(r));
        }
    }
}

/// The mesh between shards: a spill is a message whose receiver's queue was full, kept
/// in the sender's bounded overflow list; a wait, that list full too.
fn mesh(out: &mut String, views: &[View<'_>]) {
    type Pick = fn(&View<'_>) -> u64;
    let families: [(&str, &str, Pick); 2] = [
        (
            "rserpool_mesh_spills_total",
            "Messages to other shards that found the receiving shard's queue full and waited in the sending shard's overflow list.",
            |v| v.mesh_spills,
        ),
        (
            "rserpool_mesh_waits_total",
            "Times a shard's overflow list was full too, so that it held its input back until other shards read their queues.",
            |v| v.mesh_waits,
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "counter", help);
        for v in views {
            sample(out, name, &shard(v), pick(v));
        }
    }
}

fn histograms(out: &mut String, views: &[View<'_>]) {
    type Pick = fn(&Metrics) -> &Histogram;
    let plain: [(&str, &str, Pick); 3] = [
        (
            "rserpool_handle_resolution_seconds",
            "Registrar-side service time of a handle resolution: from the moment the shard took the request off the socket (the time its registrar was given for that input) to the answer being queued for sending (for an answer written straight into the connection's send buffer, to the start of the loop turn's sends).",
            |m| &m.handle_resolution,
        ),
        (
            "rserpool_registration_seconds",
            "Registrar-side service time of a registration: request taken off the socket to response queued for sending, including the round trip to the pool's writer shard.",
            |m| &m.registration,
        ),
        (
            "rserpool_keep_alive_rtt_seconds",
            "Round trip of a keep-alive: from the shard's turn that sent ENDPOINT_KEEP_ALIVE to the one that took its ENDPOINT_KEEP_ALIVE_ACK off the socket.",
            |m| &m.keep_alive_rtt,
        ),
    ];
    for (name, help, pick) in plain {
        family(out, name, "histogram", help);
        for v in views {
            histogram(out, name, &shard(v), pick(v.metrics));
        }
    }
    let name = "rserpool_failure_detection_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from a pool element's last sign of life (registration, re-registration or keep-alive acknowledgement) to its removal, by reason; measured by the shard supervising it, when it decides (keep_alive_timeout, connection_lost) or learns from the pool's writer (unreachable_reports, expired).",
    );
    for v in views {
        for r in RemovalReason::ALL.into_iter().filter(|r| r.is_failure()) {
            let labels = format!("{},reason=\"{}\"", shard(v), r.label());
            histogram(out, name, &labels, v.metrics.failure_detection(r));
        }
    }
}

/// `_bucket` series in ascending `le`, then `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (bound, n) in h.cumulative() {
        let le = bound.map_or_else(|| "+Inf".to_owned(), seconds);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(h.sum()));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// The connection limits' figures (process-wide, without a `shard` label: admission
/// is registrar-wide): open connections, refusals at accept by reason, closures by
/// the runtime by reason, and connections whose framing broke by transport.
pub fn connections(out: &mut String, c: &crate::runtime::ConnCounters) {
    family(
        out,
        "rserpool_connections_open",
        "gauge",
        "Accepted TCP connections open now (what limits.max_connections and limits.max_connections_per_source count).",
    );
    sample(out, "rserpool_connections_open", "", c.open);
    let name = "rserpool_connections_refused_total";
    family(
        out,
        name,
        "counter",
        "TCP connections closed at accept: reason=\"max_connections\" (the registrar's cap), \"per_source\" (the source address's cap), \"accept_failed\" (no descriptor or memory for an accept; the listener backs off and retries), \"no_descriptors\" (accepted with the descriptor kept spare for this while out of descriptors, and closed at once).",
    );
    for (reason, v) in [
        ("max_connections", c.refused_total),
        ("per_source", c.refused_per_source),
        ("accept_failed", c.accept_failures),
        ("no_descriptors", c.refused_no_descriptors),
    ] {
        sample(out, name, &format!("reason=\"{reason}\""), v);
    }
    let name = "rserpool_connections_closed_total";
    family(
        out,
        name,
        "counter",
        "Connections the registrar closed to protect itself: reason=\"message_timeout\" (a started message did not arrive whole in time), \"idle_timeout\" (no whole message after accept), \"slow_consumer\" (its own unsent bytes passed the cap), \"shard_backlog\" (the largest backlog when a shard's unsent bytes passed the cap).",
    );
    for (reason, v) in [
        ("message_timeout", c.closed_message_timeout),
        ("idle_timeout", c.closed_idle_timeout),
        ("slow_consumer", c.closed_slow_consumer),
        ("shard_backlog", c.closed_shard_backlog),
    ] {
        sample(out, name, &format!("reason=\"{reason}\""), v);
    }
    let name = "rserpool_broken_framing_total";
    family(
        out,
        name,
        "counter",
        "Connections closed because their framing broke: TCP, a Message Length below 4; SCTP, a message longer than any ASAP or ENRP message.",
    );
    sample(out, name, "transport=\"tcp\"", c.broken_framing_tcp);
    sample(out, name, "transport=\"sctp\"", c.broken_framing_sctp);
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(super) fn sample(out: &mut String, name: &str, labels: &str, value: impl Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn shard(v: &View<'_>) -> String {
    format!("shard=\"{}\"", v.shard)
}

/// A code's constant name as a label value: `HANDLE_RESOLUTION` → `handle_resolution`.
fn lower(code: impl Display) -> String {
    code.to_string().to_ascii_lowercase()
}

/// HELP text escapes backslash and newline (format 0.0.4).
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A duration in seconds, exact and without exponent: 0.000005, 0.0025, 1, 10.
fn seconds(d: Duration) -> String {
    let frac = d.subsec_nanos();
    if frac == 0 {
        return d.as_secs().to_string();
    }
    let digits = format!("{frac:09}");
    format!("{}.{}", d.as_secs(), digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    use rserpool::registrar::{
        Config, ConnId, ConnInfo, Protocol, Registrar, Router, ShardId, Transmit, Transport,
    };
    use rserpool::wire::AsapMessage;

    use super::*;

    /// Series → value, from the text format.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("series and value");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    /// A one-shard registrar that answered `resolutions` requests for an unknown pool,
    /// each queued `took` after it arrived.
    fn shard(index: u16, resolutions: u32, took: Duration) -> Snapshot {
        let mut r = Registrar::new(Config::default(), ShardId(index), Router::new(1, 1), 1);
        let now = Instant::now();
        let conn = ConnId(1);
        r.handle_conn_up(
            now,
            conn,
            ConnInfo::new(
                Transport::Tcp,
                Protocol::Asap,
                vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
                1,
            ),
        );
        let mut req = Vec::new();
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: "nope".into(),
            items: None,
        }
        .encode(&mut req);
        for _ in 0..resolutions {
            r.handle_asap(now, conn, &req);
            while let Some(t) = r.poll_transmit() {
                if let Transmit::Asap {
                    served: Some(s), ..
                } = t
                {
                    r.handle_queued(now + took, s);
                }
            }
        }
        Snapshot {
            shard: index,
            metrics: r.metrics().clone(),
            gauges: r.gauges(),
            mesh_spills: 2 + 3 * u64::from(index),
            mesh_waits: u64::from(index),
            enrp_synchronised: None,
        }
    }

    /// The sum of `name{shard="N",rest}` over every shard in the scrape (what a
    /// query's `sum()` gives).
    fn total(m: &BTreeMap<String, f64>, name: &str, rest: &str) -> f64 {
        m.iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .and_then(|k| k.strip_prefix("{shard=\""))
                    .and_then(|k| k.split_once('"'))
                    .is_some_and(|(_, tail)| {
                        tail == format!(",{rest}}}") || (rest.is_empty() && tail == "}")
                    })
            })
            .map(|(_, v)| v)
            .sum()
    }

    #[test]
    fn every_figure_is_shown_per_shard_and_no_total_is_precomputed() {
        let text = render(
            &[
                Some(shard(0, 2, Duration::from_micros(20))),
                Some(shard(1, 3, Duration::from_micros(300))),
            ],
            Duration::from_secs(1),
        );
        assert!(!text.contains("shard=\"all\""), "{text}");
        let m = parse(&text);
        let v = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no {k}"));
        let name = "rserpool_handle_resolution_seconds";
        for (shard, count, sum) in [("0", 2.0, 0.00004), ("1", 3.0, 0.0009)] {
            assert_eq!(v(&format!("{name}_count{{shard=\"{shard}\"}}")), count);
            let got = v(&format!("{name}_sum{{shard=\"{shard}\"}}"));
            assert!((got - sum).abs() < 1e-12, "{shard}: {got}");
        }
        assert_eq!(total(&m, &format!("{name}_count"), ""), 5.0);
        // sum by (le): the registrar's distribution, bucket by bucket.
        let bucket = |le: &str| total(&m, &format!("{name}_bucket"), &format!("le=\"{le}\""));
        assert_eq!(
            (
                bucket("0.00001"),
                bucket("0.00002"),
                bucket("0.0005"),
                bucket("+Inf")
            ),
            (0.0, 2.0, 5.0, 5.0)
        );
        assert_eq!(
            total(
                &m,
                "rserpool_asap_errors_total",
                "cause=\"unknown_pool_handle\""
            ),
            5.0
        );
        assert_eq!(
            total(
                &m,
                "rserpool_asap_messages_received_total",
                "type=\"handle_resolution\""
            ),
            5.0
        );
        assert_eq!(total(&m, "rserpool_mesh_spills_total", ""), 7.0);
        assert_eq!(total(&m, "rserpool_mesh_waits_total", ""), 1.0);
        assert_eq!(total(&m, "rserpool_associations", ""), 2.0);
        assert_eq!(v("rserpool_up"), 1.0);
        assert_eq!(v("rserpool_shards"), 2.0);
        v("rserpool_replica_pools{shard=\"1\"}");
        // HELP and TYPE once per family, before its samples.
        for family in ["rserpool_pools", name, "rserpool_asap_errors_total"] {
            assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1);
        }
    }

    #[test]
    fn message_types_and_causes_the_registrar_never_meets_are_left_out_until_counted() {
        let text = render(&[Some(shard(0, 1, Duration::ZERO))], Duration::from_secs(1));
        for never in [
            "type=\"cookie\"",
            "type=\"business_card\"",
            "cause=\"unspecified\"",
            "cause=\"other\"",
        ] {
            assert!(!text.contains(never), "{never}");
        }
        let received = "rserpool_asap_messages_received_total{shard=\"0\",type=";
        assert!(!text.contains(&format!("{received}\"registration_response\"")));
        let m = parse(&text);
        for series in [
            "rserpool_asap_messages_received_total{shard=\"0\",type=\"endpoint_keep_alive_ack\"}",
            "rserpool_asap_messages_sent_total{shard=\"0\",type=\"server_announce\"}",
            "rserpool_asap_errors_total{shard=\"0\",cause=\"rejected_security\"}",
        ] {
            assert_eq!(m.get(series), Some(&0.0), "{series}");
        }
    }

    #[test]
    fn a_shard_that_did_not_answer_is_named_and_left_out() {
        let text = render(
            &[Some(shard(0, 1, Duration::ZERO)), None],
            Duration::from_secs(1),
        );
        assert!(
            text.contains("# shard 1 did not answer within 1s"),
            "{text}"
        );
        let m = parse(&text);
        assert_eq!(m.get("rserpool_shard_up{shard=\"0\"}"), Some(&1.0));
        assert_eq!(m.get("rserpool_shard_up{shard=\"1\"}"), Some(&0.0));
        let others = m.keys().filter(|k| !k.starts_with("rserpool_shard_up{"));
        assert!(
            others.into_iter().all(|k| !k.contains("shard=\"1\"")),
            "only shard 0's series"
        );
        assert_eq!(
            m.get("rserpool_handle_resolution_seconds_count{shard=\"0\"}"),
            Some(&1.0)
        );
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(Duration::from_micros(5)), "0.000005");
        assert_eq!(seconds(Duration::from_micros(2_500)), "0.0025");
        assert_eq!(seconds(Duration::from_secs(10)), "10");
        assert_eq!(seconds(Duration::from_millis(12_500)), "12.5");
        assert_eq!(seconds(Duration::from_nanos(1)), "0.000000001");
        assert_eq!(seconds(Duration::ZERO), "0");
    }

    #[test]
    fn help_text_is_escaped() {
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }
}
