//! Access control: which sources may register into which pools, resolve which, report
//! unreachable PEs, and peer over ENRP (RFC 3237 §2.13.2: unauthorised registrations
//! and queries can be prohibited).
//!
//! Rules are read like a firewall's: in order, the first rule that covers the request
//! (its operation, its source, its pool) decides, allow or deny; a request no rule
//! covers gets the default verdict. With no rule and the default `Allow`, everything is
//! allowed, as before access control existed, and a request costs one flag test.
//!
//! A source is the connection's peer addresses and, over TLS with a client certificate, its
//! identity. An SCTP association matches a network only if *every* one of its peer
//! addresses is in it: a multihomed peer could move its traffic to any of its paths.
//! What depends only on the source is worked out once per connection at conn-up into a
//! [`Grant`], so a request checks its operation's short list of pool patterns, or
//! nothing at all when the verdict does not depend on the pool.

use std::net::IpAddr;
use std::sync::Arc;

mod gate;

pub(super) use gate::Gate;

/// Something a source may be allowed or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Registration (and deregistration) of PEs into a pool.
    Register,
    /// Handle resolution of a pool.
    Resolve,
    /// ASAP_ENDPOINT_UNREACHABLE reports about a pool's PEs.
    Unreachable,
    /// ENRP connections and multicast presences (no pool).
    Enrp,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Register, Op::Resolve, Op::Unreachable, Op::Enrp];

    /// Position in [`Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in the config file and in metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Op::Register => "register",
            Op::Resolve => "resolve",
            Op::Unreachable => "unreachable",
            Op::Enrp => "enrp",
        }
    }

    /// The operation named `s` in the config file.
    pub fn from_label(s: &str) -> Option<Self> {
        Op::ALL.into_iter().find(|o| o.label() == s)
    }
}

/// A set of [`Op`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ops(u8);

impl Ops {
    pub const NONE: Ops = Ops(0);
    pub const ALL: Ops = Ops(0b1111);

    #[must_use]
    pub fn with(self, op: Op) -> Self {
        Ops(self.0 | 1 << op.index())
    }

    pub fn contains(self, op: Op) -> bool {
        self.0 & 1 << op.index() != 0
    }
}

/// What a rule does with the requests it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// A rule's configuration error, worded for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("invalid network {0:?}: expected ADDR or ADDR/LEN (IPv4 or IPv6)")]
    Network(String),
    #[error("invalid pool pattern {0:?}: {1}")]
    Pool(String, &'static str),
}

/// An IPv4 or IPv6 network (CIDR). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a
/// dual-stack socket reports IPv4 peers) are matched as the IPv4 addresses they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    len: u8,
}

impl Network {
    /// `addr/len`, the host bits cleared; `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let addr = canonical(addr);
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (len <= bits).then(|| Self {
            addr: mask(addr, len),
            len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl std::str::FromStr for Network {
    type Err = AccessError;

    /// `ADDR` (one host) or `ADDR/LEN`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AccessError::Network(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len = len.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        // A mapped address given with an IPv6 length: count the length in IPv4 bits.
        let len = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                len.checked_sub(96).ok_or_else(bad)?
            }
            _ => len,
        };
        Network::new(addr, len).ok_or_else(bad)
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Which pool handles a rule covers. Handles are bytes; in the config file a pattern is
/// the handle as text (`"Pool"`), a prefix with a trailing `*` (`"app-*"`, `"*"` for
/// every pool), or either in hex after `hex:` (`"hex:00ff"`, `"hex:00*"`) for handles
/// that are not UTF-8, end in `*` or start with `hex:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolPattern {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
}

impl PoolPattern {
    pub fn matches(&self, handle: &[u8]) -> bool {
        match self {
            Self::Exact(h) => h == handle,
            Self::Prefix(p) => handle.starts_with(p),
        }
    }
}

impl std::str::FromStr for PoolPattern {
    type Err = AccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| AccessError::Pool(s.to_owned(), why);
        let (body, prefix) = match s.strip_suffix('*') {
            Some(b) => (b, true),
            None => (s, false),
        };
        let bytes = match body.strip_prefix("hex:") {
            Some(hex) => {
                if !hex.len().is_multiple_of(2) {
                    return Err(bad("odd number of hex digits"));
                }
                crate::hex::decode(hex).ok_or_else(|| bad("not hex digits"))?
            }
            None => body.as_bytes().to_vec(),
        };
        if bytes.is_empty() && !prefix {
            return Err(bad("empty; \"*\" means every pool"));
        }
        Ok(if prefix {
            Self::Prefix(bytes)
        } else {
            Self::Exact(bytes)
        })
    }
}

/// One access rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The name in logs and metrics (`rule` label); the config layer names unnamed
    /// rules by their position.
    pub name: String,
    pub verdict: Verdict,
    /// The operations it covers.
    pub ops: Ops,
    /// Source networks; empty: any source.
    pub from: Vec<Network>,
    /// The TLS client identity it covers; `None`: any. A connection without TLS has no
    /// identity, so a rule naming one covers only TLS connections proving it.
    pub identity: Option<String>,
    /// Pools it covers for register, resolve and unreachable; empty: every pool. ENRP
    /// has no pool: a rule covering ENRP covers it whatever its pools.
    pub pools: Vec<PoolPattern>,
}

impl Rule {
    /// Whether the rule covers a connection from `addrs` (all must be in its networks)
    /// with `identity`. A source with no known address is covered only by rules for
    /// any source.
    fn covers_source(&self, addrs: &[IpAddr], identity: Option<&str>) -> bool {
        let from = self.from.is_empty()
            || (!addrs.is_empty()
                && addrs
                    .iter()
                    .all(|a| self.from.iter().any(|n| n.contains(*a))));
        let who = self
            .identity
            .as_deref()
            .is_none_or(|want| identity == Some(want));
        from && who
    }

    fn covers_pool(&self, op: Op, handle: &[u8]) -> bool {
        op == Op::Enrp || self.pools.is_empty() || self.pools.iter().any(|p| p.matches(handle))
    }
}

/// The verdict on a request and the rule that gave it (`None`: the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Option<u16>,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self.verdict == Verdict::Allow
    }
}

/// The access rules, in order, and the verdict when none covers a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    rules: Arc<[Rule]>,
    default: Verdict,
}

impl Default for Rules {
    /// No rule, everything allowed.
    fn default() -> Self {
        Self::new(Vec::new(), Verdict::Allow)
    }
}

impl Rules {
    /// At most `u16::MAX` rules are kept (a decision names its rule in 16 bits).
    pub fn new(mut rules: Vec<Rule>, default: Verdict) -> Self {
        rules.truncate(usize::from(u16::MAX));
        Self {
            rules: rules.into(),
            default,
        }
    }

    /// Everything allowed: no rule and the default allows.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == Verdict::Allow
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn default_verdict(&self) -> Verdict {
        self.default
    }

    /// The `rule` label of each rule, then `"default"` for the default verdict.
    pub fn labels(&self) -> Vec<String> {
        let mut l: Vec<String> = self.rules.iter().map(|r| r.name.clone()).collect();
        l.push("default".into());
        l
    }

    fn fallback(&self) -> Decision {
        Decision {
            verdict: self.default,
            rule: None,
        }
    }

    /// Works out what a connection from `addrs` with `identity` may do.
    pub fn grant(&self, addrs: &[IpAddr], identity: Option<&str>) -> Grant {
        let scopes = Op::ALL.map(|op| {
            let mut pooled = Vec::new();
            let mut last = self.fallback();
            for (i, r) in self.rules.iter().enumerate() {
                if !r.ops.contains(op) || !r.covers_source(addrs, identity) {
                    continue;
                }
                let rule = Decision {
                    verdict: r.verdict,
                    rule: Some(i as u16),
                };
                if op == Op::Enrp || r.pools.is_empty() {
                    // Covers every pool of this source: nothing after it is reached.
                    last = rule;
                    break;
                }
                pooled.push(i as u16);
            }
            Scope {
                pooled: pooled.into(),
                last,
            }
        });
        Grant { scopes }
    }

    /// The verdict on `op` for `handle` from a connection with `grant`.
    pub fn check(&self, grant: &Grant, op: Op, handle: &[u8]) -> Decision {
        let scope = &grant.scopes[op.index()];
        for &i in scope.pooled.iter() {
            if let Some(r) = self.rules.get(usize::from(i))
                && r.covers_pool(op, handle)
            {
                return Decision {
                    verdict: r.verdict,
                    rule: Some(i),
                };
            }
        }
        scope.last
    }

    /// The verdict on `op` (any pool) from `addrs` with `identity`, worked out from the
    /// rules directly: for ENRP, which is checked once per connection or presence.
    pub fn check_source(&self, op: Op, addrs: &[IpAddr], identity: Option<&str>) -> Decision {
        self.check(&self.grant(addrs, identity), op, &[])
    }
}

/// What one connection may do, per operation: the rules that cover its source and
/// depend on the pool, in order, and the verdict when none of them covers the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    scopes: [Scope; 4],
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Scope {
    pooled: Box<[u16]>,
    last: Decision,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            pooled: Box::new([]),
            last: Decision {
                verdict: Verdict::Allow,
                rule: None,
            },
        }
    }
}

/// Denials counted per rule and operation, the last slot for the default verdict;
/// kept per shard in [`super::Metrics`] and added up when scraped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Denials {
    labels: Arc<[String]>,
    counts: Vec<[u64; 4]>,
}

impl Denials {
    /// Zero for each of `rules`' labels ([`Rules::labels`]).
    pub fn new(rules: &Rules) -> Self {
        let labels: Arc<[String]> = rules.labels().into();
        Self {
            counts: vec![[0; 4]; labels.len()],
            labels,
        }
    }

    /// These labels with the counts `old` has under the same labels (rules renamed or
    /// removed by a reload start from zero).
    #[must_use]
    pub fn with_counts_of(mut self, old: &Self) -> Self {
        for (label, counts) in self.labels.iter().zip(self.counts.iter_mut()) {
            if let Some((_, c)) = old.iter().find(|(l, _)| l == label) {
                *counts = *c;
            }
        }
        self
    }

    fn count(&mut self, d: Decision, op: Op) {
        let slot = d
            .rule
            .map_or(self.counts.len().saturating_sub(1), usize::from);
        if let Some(c) = self.counts.get_mut(slot) {
            c[op.index()] += 1;
        }
    }

    /// Each rule's label with its denials by operation (in [`Op::ALL`] order).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u64; 4])> {
        self.labels
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter())
    }

    /// Denials of `op` by the rule labelled `label`.
    pub fn by(&self, label: &str, op: Op) -> u64 {
        self.iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, c)| c[op.index()])
    }

    /// Adds another shard's denials (the same rules).
    pub fn merge(&mut self, other: &Self) {
        if self.labels.is_empty() {
            self.labels = other.labels.clone();
            self.counts = vec![[0; 4]; self.labels.len()];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

#[cfg(test)]
mod tests;
