//! Per-connection state and the registration address rules (RFC 5352 §2.2.1, §3.1).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::supervision::{AsKey, Key};
use super::{AssociationLimit, ConnInfo};
use crate::handlespace::Hasher;
use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::{SctpTransport, TransportUse, UserTransport};

/// PEs a connection keeps in a list before it hashes them.
const FEW: usize = 8;

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) info: ConnInfo,
    /// PEs registered through this connection (confirmed by their writers).
    pes: Pes,
    /// Per-association limits ([`super::Config::max_pes_per_association`], …): what
    /// this connection asked for and holds.
    quota: Quota,
    /// What access control lets this connection do (worked out at conn-up).
    pub(super) grant: super::access::Grant,
}

/// What counts against an association's limits. Registrations in flight count, so a
/// client pipelining requests cannot overshoot while the writers answer.
#[derive(Debug, Default)]
struct Quota {
    /// Registrations sent to writers and not answered yet.
    pending: usize,
    /// Pools this connection created and still has PEs in, with how many. (Std's
    /// keyed SipHash: the handles come from the network, and most connections create
    /// no pool, so these maps stay empty and unallocated.)
    created: HashMap<PoolHandle, u32>,
    /// Registrations in flight that create a pool, by pool.
    creating: HashMap<PoolHandle, u32>,
}

/// A set of PEs: a short list (a PE's own connection carries one, and a list is
/// checked faster than a hash is computed), a hashed set beyond [`FEW`].
#[derive(Debug)]
enum Pes {
    Few(Vec<Key>, Hasher),
    Many(HashSet<Key, Hasher>),
}

impl Conn {
    /// A connection with no PE yet; `hasher` keys its set of PEs once they are many.
    pub(super) fn new(info: ConnInfo, hasher: Hasher) -> Self {
        Self {
            info,
            pes: Pes::Few(Vec::new(), hasher),
            quota: Quota::default(),
            grant: super::access::Grant::default(),
        }
    }

    /// PEs registered through this connection.
    pub(super) fn len(&self) -> usize {
        match &self.pes {
            Pes::Few(list, _) => list.len(),
            Pes::Many(set) => set.len(),
        }
    }

    /// Checks a registration against the per-association limits and, if it passes,
    /// counts it as in flight until [`Conn::answered`]. `pool_exists`: the pool is in
    /// this shard's replica (else the registration creates it). A re-registration of
    /// one of its PEs is always let through.
    pub(super) fn admit(
        &mut self,
        handle: &PoolHandle,
        id: PoolElementId,
        pool_exists: bool,
        max_pes: usize,
        max_pools: usize,
    ) -> Result<(), AssociationLimit> {
        let q = &self.quota;
        let known = self.has(handle, id);
        if !known && self.len().saturating_add(q.pending) >= max_pes {
            return Err(AssociationLimit::Pes);
        }
        let creates = !pool_exists && !q.created.contains_key(handle);
        let another = creates && !q.creating.contains_key(handle);
        if another && q.created.len() + q.creating.len() >= max_pools {
            return Err(AssociationLimit::Pools);
        }
        let q = &mut self.quota;
        q.pending += 1;
        if creates {
            *q.creating.entry(handle.clone()).or_default() += 1;
        }
        Ok(())
    }

    /// The writer answered a registration [`Conn::admit`] let through; call before
    /// [`Conn::add`]ing an accepted one.
    pub(super) fn answered(&mut self, handle: &PoolHandle, accepted: bool) {
        let q = &mut self.quota;
        q.pending = q.pending.saturating_sub(1);
        if let Some(n) = q.creating.get_mut(handle) {
            *n -= 1;
            if *n == 0 {
                q.creating.remove(handle);
            }
            if accepted && !q.created.contains_key(handle) {
                q.created.insert(handle.clone(), 0);
            }
        }
    }

    /// Pools this connection created and still has PEs in (or is creating).
    #[cfg(test)]
    pub(super) fn pools_created(&self) -> usize {
        self.quota.created.len() + self.quota.creating.len()
    }

    pub(super) fn has(&self, handle: &PoolHandle, id: PoolElementId) -> bool {
        match &self.pes {
            Pes::Few(list, _) => list.iter().any(|k| k.id == id && k.handle == *handle),
            Pes::Many(set) => set.contains(&(handle, id) as &dyn AsKey),
        }
    }

    pub(super) fn add(&mut self, handle: PoolHandle, id: PoolElementId) {
        if !self.quota.created.is_empty()
            && self.quota.created.contains_key(&handle)
            && !self.has(&handle, id)
            && let Some(n) = self.quota.created.get_mut(&handle)
        {
            *n += 1;
        }
        match &mut self.pes {
            Pes::Few(list, hasher) => {
                if list.iter().any(|k| k.id == id && k.handle == handle) {
                    return;
                }
                if list.len() < FEW {
                    list.push(Key { handle, id });
                    return;
                }
                let mut set = HashSet::with_capacity_and_hasher(FEW * 2, hasher.clone());
                set.extend(list.drain(..));
                set.insert(Key { handle, id });
                self.pes = Pes::Many(set);
            }
            Pes::Many(set) => {
                set.insert(Key { handle, id });
            }
        }
    }

    pub(super) fn remove(&mut self, handle: &PoolHandle, id: PoolElementId) -> bool {
        let removed = self.remove_pe(handle, id);
        if removed
            && !self.quota.created.is_empty()
            && let Some(n) = self.quota.created.get_mut(handle)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.quota.created.remove(handle);
            }
        }
        removed
    }

    fn remove_pe(&mut self, handle: &PoolHandle, id: PoolElementId) -> bool {
        match &mut self.pes {
            Pes::Few(list, _) => {
                match list.iter().position(|k| k.id == id && k.handle == *handle) {
                    Some(i) => {
                        list.swap_remove(i);
                        true
                    }
                    None => false,
                }
            }
            Pes::Many(set) => set.remove(&(handle, id) as &dyn AsKey),
        }
    }

    pub(super) fn into_pes(self) -> impl Iterator<Item = (PoolHandle, PoolElementId)> {
        let keys: Box<dyn Iterator<Item = Key>> = match self.pes {
            Pes::Few(list, _) => Box::new(list.into_iter()),
            Pes::Many(set) => Box::new(set.into_iter()),
        };
        keys.map(|k| (k.handle, k.id))
    }
}

/// Whether an address may be handed to pool users: never unspecified or multicast, never
/// link-local (a PU cannot know the interface; RSPLIB drops them too), loopback only when
/// configured.
pub(super) fn usable(addr: &IpAddr, allow_loopback: bool) -> bool {
    let addr = canonical(addr);
    if addr.is_unspecified() || addr.is_multicast() {
        return false;
    }
    if addr.is_loopback() {
        return allow_loopback;
    }
    match addr {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_broadcast(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (RSPLIB encodes them as IPv4
/// parameters too, reference §4.3).
fn canonical(addr: &IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*addr, IpAddr::V4),
        v4 => *v4,
    }
}

fn same(a: &IpAddr, b: &IpAddr) -> bool {
    canonical(a) == canonical(b)
}

/// RFC 5352 §2.2.1 / reference §6.1 V2: the user transport may name only addresses of
/// the registering connection, of usable scope. Returns the transport with the others
/// removed, or `None` if none is left. An opaque transport has no address to check.
pub(super) fn filter_user_transport(
    t: &UserTransport,
    info: &ConnInfo,
    allow_loopback: bool,
) -> Option<UserTransport> {
    let ok = |a: &IpAddr| usable(a, allow_loopback) && info.peer_addrs.iter().any(|p| same(p, a));
    let mut t = t.clone();
    match &mut t {
        UserTransport::Sctp(s) => {
            s.addresses.retain(ok);
            if s.addresses.is_empty() {
                return None;
            }
        }
        UserTransport::Tcp(x) | UserTransport::Udp(x) | UserTransport::UdpLite(x) => {
            if !ok(&x.address) {
                return None;
            }
        }
        UserTransport::Dccp(d) => {
            if !ok(&d.address) {
                return None;
            }
        }
        UserTransport::Opaque(_) => {}
    }
    Some(t)
}

/// Reference §6.1 V3: the ASAP transport is the connection itself, as the home PR sees
/// it (for a TCP connection, its address and port in the same form).
pub(super) fn asap_transport(info: &ConnInfo, allow_loopback: bool) -> SctpTransport {
    let usable_addrs: Vec<IpAddr> = info
        .peer_addrs
        .iter()
        .filter(|a| usable(a, allow_loopback))
        .copied()
        .collect();
    SctpTransport {
        port: info.peer_port,
        transport_use: TransportUse::DATA_ONLY,
        addresses: if usable_addrs.is_empty() {
            info.peer_addrs.clone()
        } else {
            usable_addrs
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::super::Transport;
    use super::*;
    use crate::wire::IpTransport;

    fn info(addrs: &[IpAddr]) -> ConnInfo {
        ConnInfo::new(
            Transport::Sctp,
            super::super::Protocol::Asap,
            addrs.to_vec(),
            5000,
        )
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn a_pe_set_is_the_same_set_listed_or_hashed() {
        let mut c = Conn::new(info(&[A]), Hasher::new());
        let h = |n: u32| PoolHandle::from(format!("pool-{}", n % 3).as_str());
        let mut want = std::collections::BTreeSet::new();
        for n in 0..40u32 {
            let id = PoolElementId(n % 25);
            c.add(h(n), id);
            want.insert((h(n), id));
            if n % 4 == 3 {
                let gone = (h(n / 2), PoolElementId(n / 2 % 25));
                assert_eq!(c.remove(&gone.0, gone.1), want.remove(&gone));
            }
            for m in 0..40u32 {
                let id = PoolElementId(m % 25);
                assert_eq!(c.has(&h(m), id), want.contains(&(h(m), id)), "after {n}");
            }
        }
        let mut got: Vec<_> = c.into_pes().collect();
        got.sort();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn rfc5352_s2_2_1_only_association_addresses_are_kept() {
        let t = UserTransport::Sctp(SctpTransport {
            port: 9000,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![A, B, LO],
        });
        let Some(UserTransport::Sctp(s)) = filter_user_transport(&t, &info(&[A, LO]), false) else {
            panic!("A is an association address");
        };
        assert_eq!(
            s.addresses,
            vec![A],
            "B is not ours to register; loopback not allowed"
        );
        assert!(filter_user_transport(&t, &info(&[B]), false).is_some());
        let only_lo = info(&[LO]);
        assert!(filter_user_transport(&t, &only_lo, false).is_none());
        assert!(filter_user_transport(&t, &only_lo, true).is_some());
    }

    #[test]
    fn someone_elses_tcp_address_is_refused() {
        let t = UserTransport::Tcp(IpTransport {
            port: 80,
            reserved: 0,
            address: B,
        });
        assert!(filter_user_transport(&t, &info(&[A]), true).is_none());
        assert!(filter_user_transport(&t, &info(&[B]), true).is_some());
    }

    #[test]
    fn scopes() {
        assert!(!usable(&IpAddr::V4(Ipv4Addr::UNSPECIFIED), true));
        assert!(!usable(&IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1)), true));
        assert!(!usable(
            &IpAddr::V6("fe80::1".parse::<Ipv6Addr>().unwrap()),
            true
        ));
        assert!(!usable(&IpAddr::V6(Ipv6Addr::LOCALHOST), false));
        assert!(usable(
            &IpAddr::V6("::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap()),
            false
        ));
        assert!(same(
            &IpAddr::V6("::ffff:192.0.2.10".parse::<Ipv6Addr>().unwrap()),
            &A
        ));
    }
}
