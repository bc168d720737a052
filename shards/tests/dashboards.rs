//! The Prometheus alert rules and the Grafana dashboard in `deploy/` name only metrics
//! the registrar exports: a registrar (with ENRP) is scraped, every PromQL expression
//! of the rules and panels is tokenized, and each metric name must be a sample name of
//! the scrape. promtool checks and unit-tests the rules where it is installed.

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{GUARD, Kind, Lab, promtool};

const RULES: &str = "deploy/prometheus/rserpool-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/rserpool-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/rserpool-registrar.json";

/// Series Prometheus makes itself for every target, not the registrar.
const SYNTHETIC: [&str; 1] = ["up"];

/// PromQL words that take a label list: `by (…)` and the like.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL words that are not metric names when not followed by `(`: the grouping
/// words and these.
const KEYWORDS: [&str; 5] = ["bool", "and", "or", "unless", "offset"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The metric names a PromQL expression selects: identifiers outside label matchers
/// (`{…}`), ranges (`[…]`) and strings, not followed by `(` (functions, and the label
/// lists of `by (…)` and the like, which are skipped), and not keywords.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // Skips from an opening bracket to its closing one, over strings.
    let skip = |i: &mut usize, open: char, close: char| {
        let mut depth = 0;
        while *i < chars.len() {
            match chars[*i] {
                '"' | '\'' | '`' => skip_string(&chars, i),
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        *i += 1;
                        return;
                    }
                }
                _ => {}
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            skip(&mut i, '{', '}');
        } else if c == '[' {
            skip(&mut i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            skip_string(&chars, &mut i);
            i += 1;
        } else if c.is_ascii_digit() || c == '$' {
            // A number or duration (`5m`, `1e3`), or a Grafana variable.
            while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.' || chars[i] == '$') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            // A call, or an aggregation with its grouping first (`sum by (le) (…)`).
            let rest: String = chars[j..].iter().take(8).collect();
            let call = chars.get(j) == Some(&'(')
                || ["by", "without"].iter().any(|k| {
                    rest.strip_prefix(k)
                        .is_some_and(|r| r.starts_with([' ', '(']))
                });
            if call && GROUPING.contains(&word.as_str()) {
                i = j;
                skip(&mut i, '(', ')');
            } else if !call
                && !GROUPING.contains(&word.as_str())
                && !KEYWORDS.contains(&word.as_str())
            {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Moves `i` from a string's opening quote to its closing one.
fn skip_string(chars: &[char], i: &mut usize) {
    let quote = chars[*i];
    *i += 1;
    while *i < chars.len() && chars[*i] != quote {
        if chars[*i] == '\\' && quote != '`' {
            *i += 1;
        }
        *i += 1;
    }
}

/// Every `expr:` of the rules file (inline, or a `|` block of deeper-indented lines).
fn rule_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value == "|" || value == ">" {
            let indent = line.len() - line.trim_start().len();
            let body: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            out.push(body.join("\n"));
        } else {
            out.push(value.to_owned());
        }
    }
    out
}

/// Every `expr` of the dashboard's panel targets, and its variables' queries.
fn dashboard_expressions(json: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    for var in json["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["query"]["query"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

/// The sample names of a scrape (`_bucket`, `_sum`, `_count` as written).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            l[..end].to_owned()
        })
        .collect()
}

/// The names in `exprs` that `exported` lacks, with the expression naming them.
fn unknown(exprs: &[String], exported: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in exprs {
        for name in metric_names(e) {
            if !exported.contains(&name) && !SYNTHETIC.contains(&name.as_str()) {
                out.push((name, e.clone()));
            }
        }
    }
    out
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_tokenizer_finds_metric_names_only() {
    let e = r#"histogram_quantile(0.99, sum by (le, reason) (rate(a_seconds_bucket{instance=~"$instance",x="{b}"}[$__rate_interval]))) > 0.001"#;
    assert_eq!(metric_names(e), ["a_seconds_bucket"]);
    let e =
        "sum without (shard) (b_total offset 5m) / on (instance) group_left c unless d == bool 1e3";
    assert_eq!(metric_names(e), ["b_total", "c", "d"]);
    assert_eq!(
        metric_names("label_values(rserpool_up, instance)"),
        ["rserpool_up", "instance"]
    );
    let exported: BTreeSet<String> = ["x_total".to_owned()].into();
    let missing = unknown(&["sum(rate(nope_total[5m])) + up".to_owned()], &exported);
    assert_eq!(
        missing.len(),
        1,
        "a name the registrar does not export is caught"
    );
    assert_eq!(missing[0].0, "nope_total");
}

#[test]
fn every_rule_and_panel_names_an_exported_metric() {
    use common::scenarios::enrp_registrar;

    // With ENRP, so its families are all there; TLS families are rendered by the same
    // code the scrape uses when TLS is configured.
    let (config, enrp) = enrp_registrar(0x10, Kind::Tcp, Vec::new());
    let lab = Lab::with(Kind::Tcp, config, enrp);
    let server = lab.serve_metrics();
    let mut text = scrape(server.addr());
    rserpool_shards::metrics::render::render_tls(&mut text, Default::default());
    let exported = sample_names(&text);
    assert!(exported.contains("rserpool_enrp_synchronised"), "{text}");

    let rules = std::fs::read_to_string(repo(RULES)).expect("the alert rules");
    let rule_exprs = rule_expressions(&rules);
    assert!(rule_exprs.len() >= 8, "{rule_exprs:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let panel_exprs = dashboard_expressions(&dashboard);
    assert!(panel_exprs.len() >= 10, "{panel_exprs:?}");
    // `label_values(m, instance)`: the second argument is a label, not a metric.
    let panel_exprs: Vec<String> = panel_exprs
        .into_iter()
        .map(|e| e.replace(", instance)", ")"))
        .collect();
    for (what, exprs) in [
        ("alert rule", &rule_exprs),
        ("dashboard panel", &panel_exprs),
    ] {
        let missing = unknown(exprs, &exported);
        assert!(
            missing.is_empty(),
            "{what}s name metrics the registrar does not export: {missing:#?}"
        );
    }
    drop(server);
    lab.finish();

    let Some(promtool) = promtool() else { return };
    for args in [["check", "rules", RULES], ["test", "rules", RULE_TESTS]] {
        let out = Command::new(&promtool)
            .args(&args[..2])
            .arg(repo(args[2]))
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
