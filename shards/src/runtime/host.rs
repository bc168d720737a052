//! The host addresses a wildcard ENRP endpoint advertises where no connection says
//! which of ours a peer reaches (the multicast presence): the interfaces' addresses of
//! the endpoints' families, best first.

use std::net::IpAddr;

use crate::Endpoint;
use crate::net;

/// The addresses to fill `enrp::Config::host_addrs` with, for these bound ENRP
/// endpoints; empty when none is a wildcard (each then names its own address) or the
/// interfaces cannot be read (said in a warning).
pub(super) fn for_endpoints(endpoints: &[Endpoint]) -> Vec<IpAddr> {
    let wildcards: Vec<IpAddr> = endpoints
        .iter()
        .map(|e| e.addr().ip())
        .filter(IpAddr::is_unspecified)
        .collect();
    if wildcards.is_empty() {
        return Vec::new();
    }
    // Every wildcard serves IPv4: 0.0.0.0, and [::] as a dual-stack socket (IPV6_V6ONLY
    // off, the sockets' default here).
    let v6 = wildcards.iter().any(IpAddr::is_ipv6);
    match net::ifaddrs::interface_addrs() {
        Ok(all) => select(&all, true, v6),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the interfaces' addresses; a wildcard ENRP endpoint advertises none on the multicast group");
            Vec::new()
        }
    }
}

/// From the interfaces' addresses, those of the wanted families: routable ones first,
/// then link-local ones (RSPLIB drops those, and loopback ones, from a Server
/// Information); loopback only if there is nothing else (a host alone on loopback).
/// Unspecified and multicast addresses never.
pub(super) fn select(all: &[IpAddr], v4: bool, v6: bool) -> Vec<IpAddr> {
    let usable: Vec<IpAddr> = all
        .iter()
        .map(|a| a.to_canonical())
        .filter(|a| if a.is_ipv4() { v4 } else { v6 })
        .filter(|a| !a.is_unspecified() && !a.is_multicast())
        .fold(Vec::new(), |mut out, a| {
            if !out.contains(&a) {
                out.push(a);
            }
            out
        });
    let rank = |a: &IpAddr| {
        if a.is_loopback() {
            2
        } else if link_local(a) {
            1
        } else {
            0
        }
    };
    let mut out: Vec<IpAddr> = usable.iter().copied().filter(|a| rank(a) < 2).collect();
    // Stable: the kernel's order within each rank.
    out.sort_by_key(rank);
    if out.is_empty() {
        out = usable.into_iter().filter(IpAddr::is_loopback).collect();
    }
    out
}

fn link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        // fe80::/10 (Ipv6Addr::is_unicast_link_local is stable since 1.84).
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn routable_addresses_come_first_then_link_local_and_never_loopback_beside_them() {
        let all = ips(&[
            "127.0.0.1",
            "::1",
            "169.254.7.7",
            "192.0.2.2",
            "fe80::fc:ff:fe00:1",
            "fd00::2",
            "10.1.1.1",
            "192.0.2.2",
        ]);
        assert_eq!(
            select(&all, true, false),
            ips(&["192.0.2.2", "10.1.1.1", "169.254.7.7"])
        );
        assert_eq!(
            select(&all, false, true),
            ips(&["fd00::2", "fe80::fc:ff:fe00:1"])
        );
        assert_eq!(
            select(&all, true, true),
            ips(&[
                "192.0.2.2",
                "fd00::2",
                "10.1.1.1",
                "169.254.7.7",
                "fe80::fc:ff:fe00:1"
            ])
        );
    }

    #[test]
    fn loopback_only_when_there_is_nothing_else() {
        let all = ips(&["127.0.0.1", "::1", "0.0.0.0", "224.0.0.1"]);
        assert_eq!(select(&all, true, false), ips(&["127.0.0.1"]));
        assert_eq!(select(&all, true, true), ips(&["127.0.0.1", "::1"]));
        assert_eq!(
            select(&ips(&["127.0.0.1", "fd00::2"]), true, false),
            ips(&["127.0.0.1"])
        );
        assert!(select(&[], true, true).is_empty());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(
            select(&ips(&["::ffff:192.0.2.9"]), true, false),
            ips(&["192.0.2.9"])
        );
    }

    #[test]
    fn only_wildcard_endpoints_need_host_addresses() {
        let specific = [Endpoint::Tcp("127.0.0.1:9901".parse().unwrap())];
        assert!(for_endpoints(&specific).is_empty());
        // This host has at least loopback up.
        let wildcard = [Endpoint::Tcp("0.0.0.0:9901".parse().unwrap())];
        let got = for_endpoints(&wildcard);
        assert!(
            !got.is_empty() && got.iter().all(IpAddr::is_ipv4),
            "{got:?}"
        );
    }
}
