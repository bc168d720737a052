//! Well-formed answers and rate limits: answers that had to be made to fit their 16-bit
//! length field, and requests refused by a per-association rate limit. Same conventions
//! as the rest of the scrape: `shard="N"` on every series, totals by `sum()`.

use rserpool::registrar::Limited;

use super::{View, family, sample, shard};

pub(super) fn render(out: &mut String, views: &[View<'_>]) {
    let name = "rserpool_asap_answers_fitted_total";
    family(
        out,
        name,
        "counter",
        "ASAP answers too long for their 16-bit length field (they echoed or quoted a huge request), by fix: sent without the quoted information (unquoted) or replaced by an ASAP_ERROR (replaced).",
    );
    for v in views {
        let a = &v.metrics.answers;
        for (fix, n) in [("unquoted", a.unquoted()), ("replaced", a.replaced())] {
            sample(out, name, &format!("{},fix=\"{fix}\"", shard(v)), n);
        }
    }
    let name = "rserpool_asap_rate_limited_total";
    family(
        out,
        name,
        "counter",
        "ASAP requests over their association's rate limit, by kind: handle resolutions (answered with cause 0x000a) and endpoint-unreachable reports (dropped).",
    );
    for v in views {
        for kind in Limited::ALL {
            let labels = format!("{},kind=\"{}\"", shard(v), kind.label());
            sample(out, name, &labels, v.metrics.answers.rate_limited(kind));
        }
    }
}
