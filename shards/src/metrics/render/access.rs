//! The access-control family: requests, ENRP connections and presences denied, per
//! rule (`rule` is the rule's name, `#N` for an unnamed rule, `default` for the default
//! verdict) and operation. Same conventions as the rest of the scrape.

use rserpool::registrar::access::Op;

use super::{View, family, sample, shard};

pub(super) fn render(out: &mut String, views: &[View<'_>]) {
    let name = "rserpool_access_denied_total";
    family(
        out,
        name,
        "counter",
        "Requests denied by access control (registrations, deregistrations and resolutions answered with cause 0x000a, unreachable reports dropped, ENRP connections closed, ENRP presences ignored), by rule and operation.",
    );
    for v in views {
        for (rule, counts) in v.metrics.access_denied.iter() {
            for op in Op::ALL {
                let labels = format!(
                    "{},rule=\"{}\",op=\"{}\"",
                    shard(v),
                    escape_label(rule),
                    op.label()
                );
                sample(out, name, &labels, counts[op.index()]);
            }
        }
    }
}

/// Label values escape backslash, double quote and newline (format 0.0.4).
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_escaped_in_labels() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
