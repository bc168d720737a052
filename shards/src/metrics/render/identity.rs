//! PE identity, unreachable reports and per-association limits: registrations refused
//! because another live association owns the PE, reports ignored as repeats, probes
//! sent and answered, and refusals per limit. Same conventions as the rest of the
//! scrape: `shard="N"` on every series, totals by `sum()`.
//!
//! Takeover refusals and probes are counted by the pool's writer shard; answered
//! probes and limit refusals by the shard serving the association.

use rserpool::registrar::{AssociationLimit, Metrics};

use super::{View, family, sample, shard};

pub(super) fn render(out: &mut String, views: &[View<'_>]) {
    type Pick = fn(&Metrics) -> u64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "rserpool_registration_takeovers_refused_total",
            "Registrations of a PE identifier another live association of this registrar registered, refused with cause 0x000a (Rejected due to security considerations).",
            Metrics::takeovers_refused,
        ),
        (
            "rserpool_unreachable_reports_repeated_total",
            "Endpoint-unreachable reports ignored because the same association had already reported the PE (each reporter counts once).",
            Metrics::repeated_reports,
        ),
        (
            "rserpool_unreachable_probes_total",
            "Keep-alives sent to check a PE reported unreachable by max_bad_pe_reports associations, instead of removing it at once (RFC 5352 §3.5).",
            Metrics::probes,
        ),
        (
            "rserpool_unreachable_probes_answered_total",
            "Probes the PE answered: the reports against it were void and start over.",
            Metrics::probes_answered,
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "counter", help);
        for v in views {
            sample(out, name, &shard(v), pick(v.metrics));
        }
    }
    let name = "rserpool_association_limit_refusals_total";
    family(
        out,
        name,
        "counter",
        "Registrations refused with cause 0x0006 (Lack of Resources) by a per-association limit, by limit (limits.max_pes_per_association, limits.max_pools_per_association).",
    );
    for v in views {
        for limit in AssociationLimit::ALL {
            let labels = format!("{},limit=\"{}\"", shard(v), limit.label());
            sample(out, name, &labels, v.metrics.limit_refusals(limit));
        }
    }
}
