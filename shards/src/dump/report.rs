//! A dump as people read it (a table) and as programs do (JSON): the registrar, its
//! peers, every pool with its policy and PEs, and the totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use rserpool::enrp::dump::Dump;
use rserpool::handlespace::Policy;
use rserpool::wire::{
    PolicyParam, PoolElement, RegistrationLife, SctpTransport, ServerTransport, TransportUse,
    UserTransport,
};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// The whole dump; IDs in hex as the table shows them (`0x0000002a`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The endpoint asked, as given (`tcp://…` or `sctp://…`).
    pub endpoint: String,
    /// The registrar's server ID.
    pub registrar: String,
    pub peers: Vec<PeerRow>,
    pub pools: Vec<PoolRow>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct PeerRow {
    pub id: String,
    pub transport: Transport,
}

#[derive(Debug, Serialize)]
pub struct PoolRow {
    /// Printable handles as text, others as `0x` and hex.
    pub handle: String,
    /// The pool's policy type (its first PE's: RFC 5352 §3.1 allows one per pool).
    pub policy: String,
    pub elements: Vec<ElementRow>,
}

#[derive(Debug, Serialize)]
pub struct ElementRow {
    pub id: String,
    /// Its home registrar's server ID.
    pub home: String,
    /// Registration Life as sent (milliseconds for RSPLIB and for this registrar by
    /// default); `null`: infinite.
    pub registration_life: Option<u32>,
    pub policy: PolicyRow,
    pub user_transport: Transport,
    /// Where its home reaches it for ASAP (RFC 5354 §3.10); `null` if not given.
    pub asap_transport: Option<Transport>,
}

#[derive(Debug, Serialize)]
pub struct PolicyRow {
    pub name: String,
    /// The policy's values by name (`weight`, `load`, …), in wire order.
    pub values: Values,
}

/// Named values, kept in order (a JSON object).
#[derive(Debug)]
pub struct Values(Vec<(String, u32)>);

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A transport parameter: kind (`sctp`, `tcp`, `udp`, `udp_lite`, `dccp`, `opaque`),
/// addresses and port, and what the kind adds.
#[derive(Debug, Serialize)]
pub struct Transport {
    pub kind: &'static str,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// SCTP's Transport Use (RSPLIB writes it into TCP's and UDP's reserved field too):
    /// `data_only` or `data_plus_control`; `null` where there is none.
    pub transport_use: Option<String>,
    /// DCCP's service code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_code: Option<u32>,
    /// An opaque transport's bytes, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opaque: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub pools: usize,
    pub elements: usize,
    /// PEs per home registrar ID.
    pub elements_by_home: BTreeMap<String, usize>,
}

impl Report {
    pub fn new(endpoint: &crate::Endpoint, dump: &Dump) -> Self {
        let mut pools: Vec<PoolRow> = Vec::new();
        let mut by_home: BTreeMap<String, usize> = BTreeMap::new();
        for ((handle, _), e) in &dump.elements {
            let handle = handle.to_string();
            if pools.last().is_none_or(|p| p.handle != handle) {
                pools.push(PoolRow {
                    handle,
                    policy: policy_name(&e.policy),
                    elements: Vec::new(),
                });
            }
            *by_home.entry(e.home.to_string()).or_default() += 1;
            if let Some(p) = pools.last_mut() {
                p.elements.push(element(e));
            }
        }
        Self {
            endpoint: endpoint.to_string(),
            registrar: dump.registrar.to_string(),
            peers: dump
                .peers
                .iter()
                .map(|p| PeerRow {
                    id: p.server_id.to_string(),
                    transport: server(&p.transport),
                })
                .collect(),
            totals: Totals {
                pools: pools.len(),
                elements: dump.elements.len(),
                elements_by_home: by_home,
            },
            pools,
        }
    }

    /// The table, one line per peer and per PE.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "registrar {} at {}", self.registrar, self.endpoint);
        let _ = writeln!(out);
        if self.peers.is_empty() {
            let _ = writeln!(out, "peers: none");
        } else {
            let _ = writeln!(out, "peers: {}", self.peers.len());
            let mut rows = vec![cells(["  peer ID", "transport", "addresses"])];
            rows.extend(self.peers.iter().map(|p| {
                cells([
                    &format!("  {}", p.id),
                    p.transport.kind,
                    &addresses(&p.transport),
                ])
            }));
            columns(&mut out, &rows);
        }
        for p in &self.pools {
            let _ = writeln!(out);
            let n = p.elements.len();
            let _ = writeln!(
                out,
                "pool {}: policy {}, {n} PE{}",
                p.handle,
                p.policy,
                if n == 1 { "" } else { "s" }
            );
            let mut rows = vec![cells([
                "  PE ID",
                "home",
                "life",
                "policy values",
                "user transport",
                "ASAP transport",
            ])];
            rows.extend(p.elements.iter().map(|e| {
                let life = e
                    .registration_life
                    .map_or_else(|| "infinite".to_owned(), |ms| format!("{ms} ms"));
                let values = match e.policy.values.0.as_slice() {
                    [] => "-".to_owned(),
                    v => v
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                let values = if e.policy.name == p.policy {
                    values
                } else {
                    format!("{} {values}", e.policy.name)
                };
                let asap = e
                    .asap_transport
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), transport);
                cells([
                    &format!("  {}", e.id),
                    &e.home,
                    &life,
                    &values,
                    &transport(&e.user_transport),
                    &asap,
                ])
            }));
            columns(&mut out, &rows);
        }
        let _ = writeln!(out);
        let t = &self.totals;
        let homes = t
            .elements_by_home
            .iter()
            .map(|(home, n)| format!("{home}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "total: {} pool{}, {} PE{}{}",
            t.pools,
            if t.pools == 1 { "" } else { "s" },
            t.elements,
            if t.elements == 1 { "" } else { "s" },
            if homes.is_empty() {
                String::new()
            } else {
                format!(" (by home: {homes})")
            }
        );
        out
    }

    pub fn json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

fn cells<const N: usize>(c: [&str; N]) -> Vec<String> {
    c.iter().map(|s| (*s).to_owned()).collect()
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn columns(out: &mut String, rows: &[Vec<String>]) {
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n).map(width).collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == n {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn element(e: &PoolElement) -> ElementRow {
    ElementRow {
        id: e.id.to_string(),
        home: e.home.to_string(),
        registration_life: (e.registration_life != RegistrationLife::INFINITE)
            .then_some(e.registration_life.0),
        policy: PolicyRow {
            name: policy_name(&e.policy),
            values: policy_values(&e.policy),
        },
        user_transport: user(&e.user_transport),
        asap_transport: e.asap_transport.as_ref().map(sctp),
    }
}

/// The policy type's name in snake case (`weighted_round_robin`), hex if unknown.
fn policy_name(p: &PolicyParam) -> String {
    p.kind.to_string().to_ascii_lowercase()
}

/// The values by the names the core gives them; a policy it cannot read keeps its raw
/// values as `value1`, `value2`, ….
fn policy_values(p: &PolicyParam) -> Values {
    let named: Vec<(&str, u32)> = match Policy::from_param(p) {
        Ok(Policy::RoundRobin | Policy::Random) => vec![],
        Ok(Policy::WeightedRoundRobin { weight } | Policy::WeightedRandom { weight }) => {
            vec![("weight", weight)]
        }
        Ok(Policy::Priority { priority }) => vec![("priority", priority)],
        Ok(Policy::LeastUsed { load } | Policy::RandomizedLeastUsed { load }) => {
            vec![("load", load)]
        }
        Ok(
            Policy::LeastUsedDegradation {
                load,
                load_degradation,
            }
            | Policy::PriorityLeastUsed {
                load,
                load_degradation,
            }
            | Policy::RandomizedPriorityLeastUsed {
                load,
                load_degradation,
            }
            | Policy::RandomizedLeastUsedDegradation {
                load,
                load_degradation,
            }
            | Policy::PriorityLeastUsedDegradation {
                load,
                load_degradation,
            }
            | Policy::RandomizedPriorityLeastUsedDegradation {
                load,
                load_degradation,
            },
        ) => vec![("load", load), ("load_degradation", load_degradation)],
        Ok(Policy::WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        }) => vec![
            ("weight", weight),
            ("weight_dpf", weight_dpf),
            ("distance", distance),
        ],
        Ok(Policy::LeastUsedDpf {
            load,
            load_dpf,
            distance,
        }) => vec![
            ("load", load),
            ("load_dpf", load_dpf),
            ("distance", distance),
        ],
        Ok(Policy::LeastUsedDegradationDpf {
            load,
            load_degradation,
            load_dpf,
            distance,
        }) => vec![
            ("load", load),
            ("load_degradation", load_degradation),
            ("load_dpf", load_dpf),
            ("distance", distance),
        ],
        Err(_) => {
            return Values(
                p.values()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("value{}", i + 1), *v))
                    .collect(),
            );
        }
    };
    Values(named.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn transport_use(u: TransportUse) -> String {
    match u {
        TransportUse::DATA_ONLY => "data_only".to_owned(),
        TransportUse::DATA_PLUS_CONTROL => "data_plus_control".to_owned(),
        other => other.to_string(),
    }
}

fn sctp(s: &SctpTransport) -> Transport {
    Transport {
        kind: "sctp",
        addresses: s.addresses.clone(),
        port: s.port,
        transport_use: Some(transport_use(s.transport_use)),
        service_code: None,
        opaque: None,
    }
}

fn server(t: &ServerTransport) -> Transport {
    match t {
        ServerTransport::Sctp(s) => sctp(s),
        ServerTransport::Tcp(t) => Transport {
            kind: "tcp",
            addresses: vec![t.address],
            port: t.port,
            transport_use: None,
            service_code: None,
            opaque: None,
        },
    }
}

fn user(t: &UserTransport) -> Transport {
    let ip = |kind, t: &rserpool::wire::IpTransport| Transport {
        kind,
        addresses: vec![t.address],
        port: t.port,
        // RSPLIB's Transport Use in the RFC's reserved field.
        transport_use: Some(transport_use(TransportUse(t.reserved))),
        service_code: None,
        opaque: None,
    };
    match t {
        UserTransport::Sctp(s) => sctp(s),
        UserTransport::Tcp(t) => ip("tcp", t),
        UserTransport::Udp(t) => ip("udp", t),
        UserTransport::UdpLite(t) => ip("udp_lite", t),
        UserTransport::Dccp(d) => Transport {
            kind: "dccp",
            addresses: vec![d.address],
            port: d.port,
            transport_use: None,
            service_code: Some(d.service_code),
            opaque: None,
        },
        UserTransport::Opaque(bytes) => Transport {
            kind: "opaque",
            addresses: Vec::new(),
            port: 0,
            transport_use: None,
            service_code: None,
            opaque: Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        },
    }
}

/// `10.0.0.1 port 9901`, `10.0.0.1,[2001:db8::1] port 9901`.
fn addresses(t: &Transport) -> String {
    let list = t
        .addresses
        .iter()
        .map(|a| match a {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        })
        .collect::<Vec<_>>()
        .join(",");
    format!("{list} port {}", t.port)
}

/// A transport for the table: kind, addresses and port, and what the kind adds.
fn transport(t: &Transport) -> String {
    match t.kind {
        "opaque" => format!("opaque 0x{}", t.opaque.as_deref().unwrap_or_default()),
        kind => {
            let mut s = format!("{kind} {}", addresses(t));
            if let Some(code) = t.service_code {
                let _ = write!(s, " service {code}");
            }
            if t.transport_use.as_deref() == Some("data_plus_control") {
                s.push_str(" data+control");
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use rserpool::wire::{IpTransport, PolicyType, ServerInformation};
    use rserpool::{PoolElementId, PoolHandle, RegistrarId};

    use super::*;

    fn pe(id: u32, home: u32, policy: PolicyParam, user: UserTransport) -> PoolElement {
        PoolElement {
            id: PoolElementId(id),
            home: RegistrarId(home),
            registration_life: RegistrationLife(5000),
            user_transport: user,
            policy,
            asap_transport: None,
        }
    }

    #[test]
    fn policies_transports_and_totals_read_as_written() {
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut dump = Dump {
            registrar: RegistrarId(0x2a),
            peers: vec![ServerInformation {
                server_id: RegistrarId(0x2b),
                transport: ServerTransport::Sctp(SctpTransport {
                    port: 9901,
                    transport_use: TransportUse::DATA_ONLY,
                    addresses: vec!["192.0.2.1".parse().unwrap(), v6],
                }),
            }],
            ..Dump::default()
        };
        let weighted = PolicyParam::new(PolicyType::WEIGHTED_ROUND_ROBIN, &[7]).unwrap();
        let lud = PolicyParam::new(PolicyType::LEAST_USED_DEGRADATION, &[100, 5]).unwrap();
        let odd = PolicyParam::new(PolicyType(0x4000_00ff), &[1, 2]).unwrap();
        let sctp = UserTransport::Sctp(SctpTransport {
            port: 20,
            transport_use: TransportUse::DATA_PLUS_CONTROL,
            addresses: vec!["192.0.2.5".parse().unwrap(), v6],
        });
        let tcp = UserTransport::Tcp(IpTransport {
            port: 21,
            reserved: 0,
            address: v6,
        });
        let mut infinite = pe(3, 0x2b, lud, UserTransport::Opaque(vec![0xab, 0x01]));
        infinite.registration_life = RegistrationLife::INFINITE;
        for (handle, e) in [
            ("w", pe(1, 0x2a, weighted, sctp)),
            ("w", pe(2, 0x2b, weighted, tcp)),
            ("x", infinite),
            ("y", pe(4, 0x2a, odd, UserTransport::Opaque(Vec::new()))),
        ] {
            dump.elements.insert((PoolHandle::from(handle), e.id), e);
        }
        let r = Report::new(
            &crate::Endpoint::Tcp("127.0.0.1:9901".parse().unwrap()),
            &dump,
        );
        let table = r.table();
        for line in [
            "registrar 0x0000002a at tcp://127.0.0.1:9901",
            "  0x0000002b  sctp       192.0.2.1,[2001:db8::7] port 9901",
            "pool w: policy weighted_round_robin, 2 PEs",
            "  0x00000001  0x0000002a  5000 ms  weight=7       sctp 192.0.2.5,[2001:db8::7] port 20 data+control  -",
            "  0x00000002  0x0000002b  5000 ms  weight=7       tcp [2001:db8::7] port 21",
            "pool x: policy least_used_degradation, 1 PE",
            "infinite  load=100 load_degradation=5  opaque 0xab01",
            "pool y: policy 0x400000ff, 1 PE",
            "value1=1 value2=2",
            "total: 3 pools, 4 PEs (by home: 0x0000002a: 2, 0x0000002b: 2)",
        ] {
            assert!(table.contains(line), "{line:?} in\n{table}");
        }
        let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let x = &json["pools"][1]["elements"][0];
        assert_eq!(x["registration_life"], serde_json::Value::Null);
        assert_eq!(
            x["policy"]["values"],
            serde_json::json!({"load": 100, "load_degradation": 5})
        );
        assert_eq!(x["user_transport"]["opaque"], "ab01");
        assert_eq!(json["peers"][0]["transport"]["addresses"][1], "2001:db8::7");
        assert_eq!(json["totals"]["elements"], 4);
    }
}
