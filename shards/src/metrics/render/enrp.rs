//! The ENRP families (RFC 5353): peers by state, messages by type, peer updates
//! applied and refused, audits, takeovers, and the time a peer's update takes to reach
//! its pool's writer, and whether the start-up synchronisation is over. Same
//! conventions as the rest of the scrape: `shard="N"` per shard, totals by `sum()`.
//!
//! Shard 0 runs the ENRP server, so it alone counts messages, audits, takeovers and
//! peers; every writer shard counts the peer updates it applied or refused, and the
//! time they took to reach it.

use rserpool::enrp::{PeerState, Refusal};
use rserpool::registrar::Metrics;
use rserpool::wire::EnrpType;

use super::{View, family, histogram, lower, sample, shard};

pub(super) fn render(out: &mut String, views: &[View<'_>]) {
    peers(out, views);
    messages(out, views);
    updates(out, views);
    audits_and_takeovers(out, views);
    let name = "rserpool_enrp_peer_update_apply_seconds";
    family(
        out,
        name,
        "histogram",
        "A peer registrar's change (ENRP handle update or handle table entry) from the moment the ENRP shard took it off the connection to its application by the pool's writer shard, counted by the writer.",
    );
    for v in views {
        histogram(out, name, &shard(v), &v.metrics.enrp.update_apply);
    }
}

fn peers(out: &mut String, views: &[View<'_>]) {
    let name = "rserpool_enrp_peers";
    family(
        out,
        name,
        "gauge",
        "Peer registrars the ENRP server knows, by state (active, probing: asked for a presence, dead: being taken over, unidentified: configured and not heard from yet). The ENRP server runs on shard 0; the other shards report 0, so the sum over shards is shard 0's figure.",
    );
    for v in views {
        for s in PeerState::ALL {
            let labels = format!("{},state=\"{}\"", shard(v), s.label());
            sample(out, name, &labels, v.gauges.enrp_peers[s as usize]);
        }
    }
    let name = "rserpool_enrp_synchronised";
    family(
        out,
        name,
        "gauge",
        "1 once the ENRP start-up is over (RFC 5353 section 3.2: the mentor's handle table downloaded, or no mentor heard within the discovery time), 0 before; shown by the shard running the ENRP server.",
    );
    for v in views {
        if let Some(synced) = v.enrp_synchronised {
            sample(out, name, &shard(v), u8::from(synced));
        }
    }
}

fn messages(out: &mut String, views: &[View<'_>]) {
    type Pick = fn(&Metrics, EnrpType) -> u64;
    let families: [(&str, &str, Pick); 2] = [
        (
            "rserpool_enrp_messages_received_total",
            "Well-formed ENRP messages received from peer registrars (and the multicast group), by type (malformed ones: rserpool_enrp_malformed_messages_total).",
            |m, t| m.enrp.received(t),
        ),
        (
            "rserpool_enrp_messages_sent_total",
            "ENRP messages queued for sending to peer registrars (and the multicast group), by type.",
            |m, t| m.enrp.sent(t),
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "counter", help);
        for v in views {
            for &t in EnrpType::ALL {
                let labels = format!("{},type=\"{}\"", shard(v), lower(t));
                sample(out, name, &labels, pick(v.metrics, t));
            }
        }
    }
    let name = "rserpool_enrp_malformed_messages_total";
    family(
        out,
        name,
        "counter",
        "ENRP messages that could not be decoded (answered with ENRP_ERROR where RFC 5354 says so).",
    );
    for v in views {
        sample(out, name, &shard(v), v.metrics.enrp.malformed);
    }
}

fn updates(out: &mut String, views: &[View<'_>]) {
    type Pick = fn(&Metrics) -> u64;
    let plain: [(&str, &str, Pick); 2] = [
        (
            "rserpool_enrp_handle_updates_sent_total",
            "ENRP_HANDLE_UPDATEs (ADD_PE and DEL_PE) sent about this registrar's own pool elements, one per peer.",
            |m| m.enrp.updates_sent,
        ),
        (
            "rserpool_enrp_peer_updates_applied_total",
            "Changes from peer registrars (handle updates, handle table entries, purges, takeovers) applied by the pool's writer shard.",
            |m| m.enrp.updates_applied,
        ),
    ];
    for (name, help, pick) in plain {
        family(out, name, "counter", help);
        for v in views {
            sample(out, name, &shard(v), pick(v.metrics));
        }
    }
    let name = "rserpool_enrp_peer_updates_refused_total";
    family(
        out,
        name,
        "counter",
        "Changes from peer registrars refused, by reason: not_its_home (a peer may change only the pool elements it is home of), ours (it would take one of this registrar's own), pool_rules (the pool refused it, RFC 5352 section 3.1), unknown_element (removal of a pool element not there), wrong_sender (the sender is not the peer of its connection).",
    );
    for v in views {
        for r in Refusal::ALL {
            let labels = format!("{},reason=\"{}\"", shard(v), r.label());
            sample(out, name, &labels, v.metrics.enrp.refused(r));
        }
    }
}

fn audits_and_takeovers(out: &mut String, views: &[View<'_>]) {
    let name = "rserpool_enrp_audits_total";
    family(
        out,
        name,
        "counter",
        "Audits of a peer (RFC 5353 section 3.6: its presence's checksum differed, so its own pool elements were downloaded), by stage: started, completed (the last table chunk arrived).",
    );
    for v in views {
        let e = &v.metrics.enrp;
        for (stage, n) in [
            ("started", e.audits_started),
            ("completed", e.audits_completed),
        ] {
            sample(out, name, &format!("{},stage=\"{stage}\"", shard(v)), n);
        }
    }
    let name = "rserpool_enrp_audit_purged_total";
    family(
        out,
        name,
        "counter",
        "Pool elements an audit removed because their home registrar no longer listed them.",
    );
    for v in views {
        sample(out, name, &shard(v), v.metrics.enrp.audit_purged);
    }
    let name = "rserpool_enrp_takeovers_total";
    family(
        out,
        name,
        "counter",
        "Takeovers of a dead peer's pool elements this registrar began (RFC 5353 section 3.5), by outcome: started, completed (its pool elements adopted), aborted (the peer came back, or another registrar won).",
    );
    for v in views {
        let e = &v.metrics.enrp;
        for (outcome, n) in [
            ("started", e.takeovers_started),
            ("completed", e.takeovers_completed),
            ("aborted", e.takeovers_aborted),
        ] {
            sample(out, name, &format!("{},outcome=\"{outcome}\"", shard(v)), n);
        }
    }
    let name = "rserpool_enrp_adopted_pool_elements_total";
    family(
        out,
        name,
        "counter",
        "Pool elements this registrar adopted in takeovers (now its own, supervised with keep-alives).",
    );
    for v in views {
        sample(out, name, &shard(v), v.metrics.enrp.adopted);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rserpool::registrar::{Gauges, Metrics};

    use super::super::render;
    use crate::runtime::Snapshot;

    /// Series → value, from the text format.
    fn parse(text: &str) -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(series, value)| (series.to_owned(), value.parse().expect("a number")))
            .collect()
    }

    #[test]
    fn enrp_figures_are_shown_per_shard() {
        // Shard 0 runs ENRP: peers, updates sent, an audit, a takeover; both shards
        // write pools and apply peers' updates.
        let mut m0 = Metrics::default();
        m0.enrp.updates_sent = 3;
        m0.enrp.updates_applied = 1;
        m0.enrp.audits_started = 2;
        m0.enrp.audits_completed = 1;
        m0.enrp.takeovers_started = 1;
        m0.enrp.adopted = 4;
        m0.enrp.update_apply.record(Duration::from_micros(40));
        let g0 = Gauges {
            enrp_peers: [2, 1, 0, 1],
            ..Gauges::default()
        };
        let mut m1 = Metrics::default();
        m1.enrp.updates_applied = 2;
        m1.enrp.update_apply.record(Duration::from_micros(200));
        m1.enrp.update_apply.record(Duration::from_micros(300));
        let snapshots = [
            Some(Snapshot {
                shard: 0,
                metrics: m0,
                gauges: g0,
                mesh_spills: 0,
                mesh_waits: 0,
                enrp_synchronised: Some(true),
            }),
            Some(Snapshot {
                shard: 1,
                metrics: m1,
                gauges: Gauges::default(),
                mesh_spills: 0,
                mesh_waits: 0,
                enrp_synchronised: None,
            }),
        ];
        let text = render(&snapshots, Duration::from_secs(1));
        let m = parse(&text);
        let v = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no {k}"));

        let peers = |shard: &str, state: &str| {
            v(&format!(
                "rserpool_enrp_peers{{shard=\"{shard}\",state=\"{state}\"}}"
            ))
        };
        assert_eq!(
            (peers("0", "active"), peers("1", "active")),
            (2.0, 0.0),
            "the ENRP shard's figure; the others 0, so sum() is right"
        );
        assert_eq!(peers("0", "probing"), 1.0);
        assert_eq!(peers("0", "dead"), 0.0);
        assert_eq!(peers("0", "unidentified"), 1.0);
        assert_eq!(v("rserpool_enrp_synchronised{shard=\"0\"}"), 1.0);
        assert!(!m.contains_key("rserpool_enrp_synchronised{shard=\"1\"}"));

        let applied = |shard: &str| {
            v(&format!(
                "rserpool_enrp_peer_updates_applied_total{{shard=\"{shard}\"}}"
            ))
        };
        assert_eq!((applied("0"), applied("1")), (1.0, 2.0));
        assert_eq!(
            v("rserpool_enrp_handle_updates_sent_total{shard=\"0\"}"),
            3.0
        );
        assert_eq!(
            v("rserpool_enrp_audits_total{shard=\"0\",stage=\"started\"}"),
            2.0
        );
        assert_eq!(
            v("rserpool_enrp_takeovers_total{shard=\"0\",outcome=\"aborted\"}"),
            0.0
        );
        assert_eq!(
            v("rserpool_enrp_adopted_pool_elements_total{shard=\"0\"}"),
            4.0
        );
        let h = "rserpool_enrp_peer_update_apply_seconds";
        let count = |shard: &str| v(&format!("{h}_count{{shard=\"{shard}\"}}"));
        assert_eq!(count("0") + count("1"), 3.0);
        let bucket = |le: &str| {
            v(&format!("{h}_bucket{{shard=\"0\",le=\"{le}\"}}"))
                + v(&format!("{h}_bucket{{shard=\"1\",le=\"{le}\"}}"))
        };
        assert_eq!(
            (bucket("0.00005"), bucket("0.0002"), bucket("0.0005")),
            (1.0, 2.0, 3.0)
        );

        // Every RFC 5353 message type and every refusal, by name; removals by a peer.
        for t in [
            "presence",
            "handle_table_request",
            "handle_table_response",
            "handle_update",
            "list_request",
            "list_response",
            "init_takeover",
            "init_takeover_ack",
            "takeover_server",
            "error",
        ] {
            for dir in ["received", "sent"] {
                v(&format!(
                    "rserpool_enrp_messages_{dir}_total{{shard=\"1\",type=\"{t}\"}}"
                ));
            }
        }
        for r in [
            "not_its_home",
            "ours",
            "pool_rules",
            "unknown_element",
            "wrong_sender",
        ] {
            v(&format!(
                "rserpool_enrp_peer_updates_refused_total{{shard=\"1\",reason=\"{r}\"}}"
            ));
        }
        v("rserpool_pe_removals_total{shard=\"1\",reason=\"peer\"}");
        v("rserpool_enrp_malformed_messages_total{shard=\"0\"}");
        v("rserpool_enrp_audit_purged_total{shard=\"0\"}");

        // HELP and TYPE once per family.
        for family in [
            "rserpool_enrp_peers",
            "rserpool_enrp_messages_received_total",
            "rserpool_enrp_peer_updates_refused_total",
            h,
        ] {
            assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1);
            assert_eq!(text.matches(&format!("# HELP {family} ")).count(), 1);
        }
    }
}
