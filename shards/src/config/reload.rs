//! SIGHUP: the config file read again, compared with the settings in force. What a
//! running registrar can take (log level, `[limits]`, `[access]`) is applied; what
//! shapes state built at start (endpoints, shards, ID, ENRP, metrics...) is named as
//! waiting for a restart. Flags keep winning over the file, as at start.
//!
//! [`diff`] and [`pinned`] are pure, so what a reload reports is tested without a
//! running registrar; the binary applies the result.

use std::path::Path;
use std::time::Duration;

use rserpool::registrar::access::{Rule, Verdict};
use rserpool::registrar::{Config, RateLimit};

use super::{Cli, ConfigError, FileConfig, Settings, settings};

/// Whether a changed setting is in force now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Applied,
    /// Not applied until the registrar restarts.
    Restart,
}

/// One setting that differs between the settings in force and the file's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The config file's name of the setting (`limits.max_connections_per_source`).
    pub name: &'static str,
    pub old: String,
    pub new: String,
    pub effect: Effect,
}

impl std::fmt::Display for Change {
    /// `name old -> new`; a value too large to print (ENRP's settings) is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.old.is_empty() && self.new.is_empty() {
            write!(f, "{} changed", self.name)
        } else {
            write!(f, "{} {} -> {}", self.name, self.old, self.new)
        }
    }
}

/// A setting given on the command line that the file now sets otherwise: the flag
/// keeps winning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub name: &'static str,
    pub flag: String,
    pub file: String,
}

impl std::fmt::Display for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stays {} (given on the command line; the file says {})",
            self.name, self.flag, self.file
        )
    }
}

/// The file at `path` read and checked again, as at start (`cores` and `random` as
/// given then, so defaults drawn at start do not count as changes).
pub fn reread(
    cli: &Cli,
    path: &Path,
    cores: usize,
    random: u64,
) -> Result<(Settings, FileConfig), ConfigError> {
    let file = FileConfig::load(path)?;
    let s = settings(cli, &file, cores, random)?;
    Ok((s, file))
}

/// The settings in force after a reload from `old` to `new`: the reloadable ones of
/// `new`, the others as they run.
pub fn merge(old: &Settings, new: &Settings) -> Settings {
    let mut s = old.clone();
    s.log_level = new.log_level.clone();
    s.conn_limits = new.conn_limits;
    let (r, n) = (&mut s.runtime.registrar, &new.runtime.registrar);
    r.access = n.access.clone();
    r.resolution_rate = n.resolution_rate;
    r.unreachable_rate = n.unreachable_rate;
    r.resolution_answer_bytes = n.resolution_answer_bytes;
    r.max_pes_per_association = n.max_pes_per_association;
    r.max_pools_per_association = n.max_pools_per_association;
    s
}

/// Every setting that differs between `old` (in force) and `new` (the file), in the
/// order of the config file.
pub fn diff(old: &Settings, new: &Settings) -> Vec<Change> {
    let (a, b) = (entries(old), entries(new));
    let mut changes = Vec::new();
    // The order of the rules is named only when it is all that changed about which
    // rules there are; a rule added or removed has its own line below.
    let names = |s: &Settings| {
        let mut n: Vec<String> = s.runtime.registrar.access.labels();
        n.sort();
        n
    };
    let same_rules = names(old) == names(new);
    for ((name, effect, x), (_, _, y)) in a.iter().zip(&b) {
        if x != y && (*name != "access.order" || same_rules) {
            let shown = |v: &Value| match v {
                Value::Shown(s) => s.clone(),
                Value::Compared(_) => String::new(),
            };
            changes.push(Change {
                name,
                old: shown(x),
                new: shown(y),
                effect: *effect,
            });
        }
    }
    // Rules by name: one line per rule added, removed or changed.
    let rules = |s: &Settings| -> Vec<(String, String)> {
        s.runtime
            .registrar
            .access
            .rules()
            .iter()
            .map(|r| (r.name.clone(), rule(r)))
            .collect()
    };
    let (ra, rb) = (rules(old), rules(new));
    let find = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "none".to_owned(), |(_, r)| r.clone())
    };
    let mut names: Vec<&String> = ra.iter().map(|(n, _)| n).collect();
    names.extend(
        rb.iter()
            .map(|(n, _)| n)
            .filter(|n| !ra.iter().any(|(m, _)| m == *n)),
    );
    for name in names {
        let (x, y) = (find(&ra, name), find(&rb, name));
        if x != y {
            changes.push(Change {
                name: "access.rule",
                old: format!("{name}: {x}"),
                new: y,
                effect: Effect::Applied,
            });
        }
    }
    changes
}

/// The reloadable settings given as flags that the file sets otherwise.
pub fn pinned(cli: &Cli, file: &FileConfig) -> Vec<Pinned> {
    let r = &file.registrar;
    let l = &file.limits;
    let s = |v: Option<String>| v;
    let text = |v: Option<u64>| v.map(|v| v.to_string());
    let count = |v: Option<usize>| v.map(|v| v.to_string());
    let rate = |v: Option<u32>| v.map(|v| v.to_string());
    let list: [(&'static str, Option<String>, Option<String>); 9] = [
        (
            "registrar.log_level",
            s(cli.log_level.clone()),
            s(r.log_level.clone()),
        ),
        (
            "limits.max_resolution_rate",
            rate(cli.max_resolution_rate),
            rate(l.max_resolution_rate),
        ),
        (
            "limits.max_unreachable_rate",
            rate(cli.max_unreachable_rate),
            rate(l.max_unreachable_rate),
        ),
        (
            "limits.max_pes_per_association",
            count(cli.max_pes_per_association),
            count(l.max_pes_per_association),
        ),
        (
            "limits.max_pools_per_association",
            count(cli.max_pools_per_association),
            count(l.max_pools_per_association),
        ),
        (
            "limits.message_timeout_ms",
            text(cli.message_timeout),
            text(l.message_timeout_ms),
        ),
        (
            "limits.idle_timeout_ms",
            text(cli.idle_timeout),
            text(l.idle_timeout_ms),
        ),
        (
            "limits.max_connections",
            count(cli.max_connections),
            count(l.max_connections),
        ),
        (
            "limits.max_connections_per_source",
            count(cli.max_connections_per_source),
            count(l.max_connections_per_source),
        ),
    ];
    list.into_iter()
        .filter_map(|(name, flag, file)| match (flag, file) {
            (Some(flag), Some(file)) if flag != file => Some(Pinned { name, flag, file }),
            _ => None,
        })
        .collect()
}

/// A setting's value: printed, or (too large to print) only compared.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Shown(String),
    Compared(String),
}

/// Every setting the diff looks at, by its config file name.
fn entries(s: &Settings) -> Vec<(&'static str, Effect, Value)> {
    use Effect::{Applied, Restart};
    let r: &Config = &s.runtime.registrar;
    let l = &s.conn_limits;
    let h = &r.handlespace;
    let v = |x: &dyn std::fmt::Display| Value::Shown(x.to_string());
    let ms = |d: Duration| Value::Shown(d.as_millis().to_string());
    let opt = |x: Option<String>| Value::Shown(x.unwrap_or_else(|| "none".into()));
    let list = |e: &[crate::Endpoint]| {
        Value::Shown(
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    let rate = |x: Option<RateLimit>| Value::Shown(x.map_or(0, |x| x.per_second).to_string());
    let burst = |x: Option<RateLimit>| opt(x.map(|x| x.burst.to_string()));
    let rules = &r.access;
    vec![
        ("registrar.id", Restart, v(&r.id)),
        ("registrar.shards", Restart, v(&s.runtime.shards)),
        ("registrar.pin_cores", Restart, v(&s.runtime.pin_cores)),
        (
            "registrar.busy_poll",
            Restart,
            v(&(s.runtime.io_mode == crate::net::ring::IoMode::BusyPoll)),
        ),
        ("registrar.seed", Restart, v(&s.runtime.seed)),
        ("registrar.log_level", Applied, v(&s.log_level)),
        ("registrar.log_format", Restart, v(&s.log_format)),
        ("asap.listen", Restart, list(&s.runtime.asap)),
        (
            "asap.keep_alive_interval_ms",
            Restart,
            ms(r.keep_alive_interval),
        ),
        (
            "asap.keep_alive_timeout_ms",
            Restart,
            ms(r.keep_alive_timeout),
        ),
        (
            "asap.max_resolution_items",
            Restart,
            v(&r.max_resolution_items),
        ),
        (
            "asap.resolution_items_limit",
            Restart,
            v(&r.resolution_items_limit),
        ),
        ("asap.max_bad_pe_reports", Restart, v(&r.max_bad_pe_reports)),
        (
            "asap.registration_life_unit",
            Restart,
            v(&match r.life_unit {
                rserpool::wire::LifeUnit::Milliseconds => "ms",
                rserpool::wire::LifeUnit::Seconds => "s",
            }),
        ),
        ("asap.enforce_lifetime", Restart, v(&r.enforce_lifetime)),
        ("asap.allow_loopback", Restart, v(&r.allow_loopback)),
        (
            "asap.announce_group",
            Restart,
            opt(s.runtime.announce_group.map(|g| g.to_string())),
        ),
        (
            "asap.announce_interval_ms",
            Restart,
            opt(r.announce_interval.map(|d| d.as_millis().to_string())),
        ),
        ("limits.max_pool_handle_len", Restart, v(&h.max_handle_len)),
        ("limits.max_pools", Restart, v(&h.max_pools)),
        ("limits.max_pool_elements", Restart, v(&h.max_pool_elements)),
        ("limits.max_elements", Restart, v(&h.max_elements)),
        (
            "limits.max_resolution_rate",
            Applied,
            rate(r.resolution_rate),
        ),
        ("limits.resolution_burst", Applied, burst(r.resolution_rate)),
        (
            "limits.max_unreachable_rate",
            Applied,
            rate(r.unreachable_rate),
        ),
        (
            "limits.unreachable_burst",
            Applied,
            burst(r.unreachable_rate),
        ),
        (
            "limits.max_answer_bytes",
            Applied,
            v(&r.resolution_answer_bytes),
        ),
        (
            "limits.max_pes_per_association",
            Applied,
            v(&r.max_pes_per_association),
        ),
        (
            "limits.max_pools_per_association",
            Applied,
            v(&r.max_pools_per_association),
        ),
        ("limits.message_timeout_ms", Applied, ms(l.message_timeout)),
        (
            "limits.idle_timeout_ms",
            Applied,
            ms(l.idle_timeout.unwrap_or_default()),
        ),
        ("limits.max_connections", Applied, v(&l.max_connections)),
        (
            "limits.max_connections_per_source",
            Applied,
            v(&l.max_connections_per_source),
        ),
        (
            "limits.max_unsent_per_connection",
            Applied,
            v(&l.max_unsent_per_connection),
        ),
        (
            "limits.max_unsent_per_shard",
            Applied,
            v(&l.max_unsent_per_shard),
        ),
        (
            "access.default",
            Applied,
            v(&verdict(rules.default_verdict())),
        ),
        (
            "access.order",
            Applied,
            opt(Some(
                rules
                    .rules()
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .filter(|o| !o.is_empty())),
        ),
        ("enrp.listen", Restart, list(&s.enrp.listen)),
        (
            "enrp.announce_group",
            Restart,
            opt(s.enrp.announce_group.map(|g| g.to_string())),
        ),
        (
            "enrp.peers",
            Restart,
            Value::Shown(r.enrp.as_ref().map_or_else(String::new, |e| {
                e.peers
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })),
        ),
        // The timers and the rest: compared, too many to print.
        ("enrp", Restart, Value::Compared(format!("{:?}", r.enrp))),
        (
            "metrics.listen",
            Restart,
            opt(s.metrics.map(|m| m.to_string())),
        ),
        ("tls", Restart, Value::Compared(format!("{:?}", s.tls))),
    ]
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

/// A rule as one line: `deny resolve from 10.0.0.0/8 pools app-*`.
fn rule(r: &Rule) -> String {
    use rserpool::registrar::access::{Op, PoolPattern};
    let ops: Vec<&str> = Op::ALL
        .into_iter()
        .filter(|o| r.ops.contains(*o))
        .map(Op::label)
        .collect();
    let mut line = format!("{} {}", verdict(r.verdict), ops.join(","));
    if !r.from.is_empty() {
        let from: Vec<String> = r.from.iter().map(ToString::to_string).collect();
        line += &format!(" from {}", from.join(","));
    }
    if let Some(id) = &r.identity {
        line += &format!(" identity {id}");
    }
    if !r.pools.is_empty() {
        let pools: Vec<String> = r
            .pools
            .iter()
            .map(|p| match p {
                PoolPattern::Exact(h) => String::from_utf8_lossy(h).into_owned(),
                PoolPattern::Prefix(h) => format!("{}*", String::from_utf8_lossy(h)),
            })
            .collect();
        line += &format!(" pools {}", pools.join(","));
    }
    line
}

/// Whether access rules or limits changed: the runtime needs a [`crate::runtime::Reload`].
pub fn needs_runtime_reload(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| c.effect == Effect::Applied && c.name != "registrar.log_level")
}

#[cfg(test)]
mod tests;
