//! The access-control part of the configuration: `[access]` and its `[[access.rule]]`s,
//! checked into the core's [`Rules`], and the start-up warning for an open registrar
//! that listens beyond loopback.

use rserpool::registrar::access::{Op, Ops, Rule, Rules, Verdict};
use serde::Deserialize;

use super::{ConfigError, Settings};

/// `[access]` as written; see deploy/registrar.toml for each key and its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// `"allow"` (default) or `"deny"`: the verdict when no rule covers a request.
    pub default: Option<String>,
    /// The rules, in order: the first that covers a request decides.
    #[serde(default)]
    pub rule: Vec<RuleSection>,
}

/// One `[[access.rule]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub name: Option<String>,
    pub action: Option<String>,
    pub ops: Option<Vec<String>>,
    pub from: Option<Vec<String>>,
    pub tls_identity: Option<String>,
    pub pools: Option<Vec<String>>,
}

fn verdict(what: &str, s: &str) -> Result<Verdict, ConfigError> {
    match s {
        "allow" => Ok(Verdict::Allow),
        "deny" => Ok(Verdict::Deny),
        other => Err(ConfigError::Invalid(format!(
            "{what} must be \"allow\" or \"deny\", not {other:?}"
        ))),
    }
}

/// Checks the section into the core's rules. Unnamed rules are called `#N` (their
/// position, from 1).
pub(super) fn rules(a: &AccessSection) -> Result<Rules, ConfigError> {
    let default = verdict("access.default", a.default.as_deref().unwrap_or("allow"))?;
    if a.rule.len() > usize::from(u16::MAX) {
        return Err(ConfigError::Invalid(format!(
            "at most {} access rules, not {}",
            u16::MAX,
            a.rule.len()
        )));
    }
    let mut rules = Vec::with_capacity(a.rule.len());
    for (i, r) in a.rule.iter().enumerate() {
        let name = r.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        let invalid =
            |why: String| ConfigError::Invalid(format!("access rule {} ({name}): {why}", i + 1));
        if r.name.is_some() && (name.is_empty() || name == "default" || name.starts_with('#')) {
            return Err(invalid(
                "the name must not be empty, \"default\" or start with '#'".into(),
            ));
        }
        if rules.iter().any(|x: &Rule| x.name == name) {
            return Err(invalid("another rule has this name".into()));
        }
        let Some(action) = &r.action else {
            return Err(invalid("no action (\"allow\" or \"deny\")".into()));
        };
        let verdict = verdict("action", action).map_err(|e| invalid(e.to_string()))?;
        let ops = match r.ops.as_deref() {
            None | Some([]) => {
                return Err(invalid(
                    "no ops (register, resolve, unreachable, enrp, or all)".into(),
                ));
            }
            Some(list) => list.iter().try_fold(Ops::NONE, |set, o| match o.as_str() {
                "all" => Ok(Ops::ALL),
                _ => Op::from_label(o).map(|op| set.with(op)).ok_or_else(|| {
                    invalid(format!(
                        "unknown op {o:?} (register, resolve, unreachable, enrp, or all)"
                    ))
                }),
            })?,
        };
        let from = r
            .from
            .iter()
            .flatten()
            .map(|n| n.parse().map_err(|e| invalid(format!("{e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if r.from.as_ref().is_some_and(|f| f.is_empty()) {
            return Err(invalid(
                "from = [] covers nobody; leave it out to cover every source".into(),
            ));
        }
        let pools = r
            .pools
            .iter()
            .flatten()
            .map(|p| p.parse().map_err(|e| invalid(format!("{e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if r.pools.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(invalid(
                "pools = [] covers no pool; leave it out (or write \"*\") for every pool".into(),
            ));
        }
        rules.push(Rule {
            name,
            verdict,
            ops,
            from,
            identity: r.tls_identity.clone(),
            pools,
        });
    }
    Ok(Rules::new(rules, default))
}

/// The warning to log at start-up when anyone may do anything (no rule, default allow)
/// and ASAP or ENRP listens on an address beyond loopback.
pub fn open_warning(s: &Settings) -> Option<String> {
    if !s.runtime.registrar.access.is_open() {
        return None;
    }
    let wide: Vec<String> = s
        .runtime
        .asap
        .iter()
        .chain(&s.enrp.listen)
        .filter(|e| !e.addr().ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    (!wide.is_empty()).then(|| {
        format!(
            "no access rules: anyone who reaches {} may register into, resolve and report on every pool, and peer over ENRP (see [access] in deploy/registrar.toml)",
            wide.join(" ")
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Cli, FileConfig, settings};
    use super::*;
    use clap::Parser;

    fn parse(text: &str) -> Result<Rules, ConfigError> {
        let f = FileConfig::parse(text, Path::new("test.toml"))?;
        Ok(settings(&Cli::default(), &f, 1, 1)?
            .runtime
            .registrar
            .access)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn rules_are_read_in_order_with_their_defaults() {
        let rules = parse(
            r#"
[access]
default = "deny"
[[access.rule]]
name = "pe"
action = "allow"
ops = ["register", "unreachable"]
from = ["10.0.0.0/8", "2001:db8::/32"]
pools = ["Pool", "app-*", "hex:ff00"]
[[access.rule]]
action = "deny"
ops = ["all"]
tls_identity = "pe.example"
"#,
        )
        .unwrap();
        assert_eq!(rules.default_verdict(), Verdict::Deny);
        let [pe, second] = rules.rules() else {
            panic!("{rules:?}")
        };
        assert_eq!(pe.name, "pe");
        assert_eq!(pe.verdict, Verdict::Allow);
        assert!(pe.ops.contains(Op::Register) && pe.ops.contains(Op::Unreachable));
        assert!(!pe.ops.contains(Op::Resolve));
        assert_eq!(pe.from.len(), 2);
        assert_eq!(pe.pools.len(), 3);
        assert_eq!(second.name, "#2");
        assert_eq!(second.ops, Ops::ALL);
        assert!(second.from.is_empty() && second.pools.is_empty());
        assert_eq!(second.identity.as_deref(), Some("pe.example"));
        assert_eq!(rules.labels(), ["pe", "#2", "default"]);
    }

    #[test]
    fn no_section_is_open() {
        assert!(parse("").unwrap().is_open());
        assert!(parse("[access]\ndefault = \"allow\"\n").unwrap().is_open());
    }

    #[test]
    fn mistakes_are_named() {
        let rule = |body: &str| format!("[[access.rule]]\n{body}\n");
        for (text, says) in [
            (
                "[access]\ndefault = \"drop\"\n".to_owned(),
                "access.default",
            ),
            (rule("ops = [\"resolve\"]"), "no action"),
            (rule("action = \"allow\""), "no ops"),
            (rule("action = \"allow\"\nops = []"), "no ops"),
            (
                rule("action = \"permit\"\nops = [\"resolve\"]"),
                "\"permit\"",
            ),
            (
                rule("action = \"allow\"\nops = [\"query\"]"),
                "unknown op \"query\"",
            ),
            (
                rule("action = \"allow\"\nops = [\"all\"]\nfrom = [\"10.0.0.0/33\"]"),
                "10.0.0.0/33",
            ),
            (
                rule("action = \"allow\"\nops = [\"all\"]\nfrom = []"),
                "from = []",
            ),
            (
                rule("action = \"allow\"\nops = [\"all\"]\npools = []"),
                "pools = []",
            ),
            (
                rule("action = \"allow\"\nops = [\"all\"]\npools = [\"hex:zz\"]"),
                "hex:zz",
            ),
            (
                rule("name = \"default\"\naction = \"allow\"\nops = [\"all\"]"),
                "\"default\"",
            ),
            (
                format!(
                    "{}{}",
                    rule("name = \"a\"\naction = \"allow\"\nops = [\"all\"]"),
                    rule("name = \"a\"\naction = \"deny\"\nops = [\"all\"]")
                ),
                "access rule 2 (a): another rule has this name",
            ),
            (
                rule("action = \"allow\"\nops = [\"all\"]\nport = 1"),
                "port",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    /// The commented examples in deploy/registrar.toml's `[access]` section parse and
    /// mean what they say.
    #[test]
    fn the_examples_in_deploy_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/registrar.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let section = &text[text.find("\n[access]").expect("an [access] section")..];
        let examples: Vec<&str> = section
            .split("\n#\n")
            .filter(|block| block.contains("# [[access.rule]]") || block.contains("# default"))
            .collect();
        let uncomment = |block: &str| -> String {
            block
                .lines()
                .filter_map(|l| l.strip_prefix("# ").or((l == "#").then_some("")))
                .filter(|l| !l.starts_with(' ') && !l.ends_with(':'))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let locked = format!(
            "[access]\n{}{}{}{}",
            uncomment(examples[0]),
            uncomment(examples[1]),
            uncomment(examples[2]),
            uncomment(examples[3])
        );
        let rules = parse(&locked).unwrap();
        assert_eq!(rules.labels(), ["pe-subnet", "pu", "peers", "default"]);
        let ip = |s: &str| -> Vec<std::net::IpAddr> { vec![s.parse().unwrap()] };
        let check = |addr: &str, op, pool: &[u8]| {
            rules.check(&rules.grant(&ip(addr), None), op, pool).verdict
        };
        assert_eq!(check("10.1.2.3", Op::Register, b"app-x"), Verdict::Allow);
        assert_eq!(check("10.2.2.3", Op::Register, b"Pool"), Verdict::Deny);
        assert_eq!(check("10.2.2.3", Op::Resolve, b"Pool"), Verdict::Allow);
        assert_eq!(check("10.9.0.2", Op::Enrp, b""), Verdict::Allow);
        assert_eq!(check("10.9.0.3", Op::Enrp, b""), Verdict::Deny);
        assert_eq!(check("192.0.2.1", Op::Resolve, b"Pool"), Verdict::Deny);

        let open = format!("{}{}", uncomment(examples[4]), uncomment(examples[5]));
        let rules = parse(&open).unwrap();
        assert_eq!(rules.default_verdict(), Verdict::Allow);
        let check = |addr: &str, pool: &[u8]| {
            rules
                .check(&rules.grant(&ip(addr), None), Op::Register, pool)
                .verdict
        };
        assert_eq!(check("10.1.0.1", b"billing"), Verdict::Allow);
        assert_eq!(check("192.0.2.1", b"billing"), Verdict::Deny);
        assert_eq!(check("192.0.2.1", b"other"), Verdict::Allow);
    }

    #[test]
    fn an_open_registrar_beyond_loopback_is_warned_about() {
        let f = FileConfig::default();
        let s = settings(&Cli::default(), &f, 1, 1).unwrap();
        let w = open_warning(&s).expect("0.0.0.0 is beyond loopback");
        assert!(w.contains("tcp://0.0.0.0:3863"), "{w}");
        let local = Cli::parse_from(["x", "--asap", "tcp://127.0.0.1:3863"]);
        assert_eq!(open_warning(&settings(&local, &f, 1, 1).unwrap()), None);
        let enrp = Cli::parse_from([
            "x",
            "--asap",
            "tcp://[::1]:3863",
            "--enrp",
            "sctp://192.0.2.1:9901",
        ]);
        let w = open_warning(&settings(&enrp, &f, 1, 1).unwrap()).unwrap();
        assert!(
            w.contains("sctp://192.0.2.1:9901") && !w.contains("::1"),
            "{w}"
        );
        let ruled = FileConfig::parse(
            "[[access.rule]]\naction = \"allow\"\nops = [\"all\"]\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(
            open_warning(&settings(&Cli::default(), &ruled, 1, 1).unwrap()),
            None
        );
    }
}
