//! One pool: its fixed attributes, its elements and its selection structure.

use std::collections::HashMap;
use std::sync::Arc;

use super::Hasher;
use super::element::{Element, Record};
use super::select::{Selector, Slot};
use crate::ids::{PoolElementId, PoolHandle};
use crate::rng::Rng;
use crate::wire::{self, PolicyType, TransportUse, UserTransport, Writer};

/// The user transport protocol of a pool (all its PEs share it, RFC 5352 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Sctp,
    Tcp,
    Udp,
    UdpLite,
    Dccp,
    Opaque,
}

impl TransportKind {
    pub fn of(t: &UserTransport) -> Self {
        match t {
            UserTransport::Sctp(_) => Self::Sctp,
            UserTransport::Tcp(_) => Self::Tcp,
            UserTransport::Udp(_) => Self::Udp,
            UserTransport::UdpLite(_) => Self::UdpLite,
            UserTransport::Dccp(_) => Self::Dccp,
            UserTransport::Opaque(_) => Self::Opaque,
        }
    }
}

/// The Transport Use a PE declares: the SCTP field, or for TCP/UDP the reserved field in
/// which RSPLIB carries it (reference §4.4); data only for the others.
pub(crate) fn transport_use(t: &UserTransport) -> TransportUse {
    match t {
        UserTransport::Sctp(s) => s.transport_use,
        UserTransport::Tcp(t) | UserTransport::Udp(t) | UserTransport::UdpLite(t) => {
            TransportUse(t.reserved)
        }
        UserTransport::Dccp(_) | UserTransport::Opaque(_) => TransportUse::DATA_ONLY,
    }
}

/// The policy of the PE in `slot`, if any: what the selection structures ask for (they
/// keep none, to stay small).
fn policy_in(slots: &[Option<Element>], slot: Slot) -> Option<super::Policy> {
    slots
        .get(slot as usize)
        .and_then(Option::as_ref)
        .map(Element::policy)
}

/// Bytes of a message's common header (RFC 5354 §3): type, flags and length.
pub(crate) const HEADER_ROOM: usize = 4;

/// A pool. Created by its first registration, deleted with its last PE (RFC 5351 §2.1).
#[derive(Debug)]
pub struct Pool {
    /// Shared with the expiry entries of the pool's PEs.
    pub(crate) handle: Arc<PoolHandle>,
    /// Room for a message header (`HEADER_ROOM` zero bytes), then `handle` as a Pool
    /// Handle parameter, padded: encoded once with the pool, since every positive
    /// resolution answer echoes it, right after its header ([`Pool::headed_handle_param`]).
    headed_handle_param: Box<[u8]>,
    pub(crate) policy_type: PolicyType,
    pub(crate) transport: TransportKind,
    pub(crate) transport_use: TransportUse,
    /// RSPLIB's default `MaxIncrement` for the pool's policy type (fixed with it).
    pub(crate) default_increment: usize,
    slots: Vec<Option<Element>>,
    free: Vec<Slot>,
    by_id: HashMap<PoolElementId, Slot, Hasher>,
    pub(crate) selector: Selector,
}

impl Pool {
    pub(crate) fn new(handle: PoolHandle, first: &Record, hasher: Hasher) -> Self {
        let policy = first.policy();
        let param_len = (4 + handle.len()).next_multiple_of(4);
        let mut headed = Vec::with_capacity(HEADER_ROOM + param_len);
        headed.extend_from_slice(&[0; HEADER_ROOM]);
        let mut w = Writer::new(&mut headed);
        wire::encode_handle(&handle, &mut w);
        w.finish();
        Self {
            handle: Arc::new(handle),
            headed_handle_param: headed.into_boxed_slice(),
            policy_type: policy.kind(),
            transport: first.transport(),
            transport_use: first.transport_use(),
            default_increment: policy.default_increment(),
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::with_hasher(hasher),
            selector: Selector::new(policy),
        }
    }

    pub fn handle(&self) -> &PoolHandle {
        &self.handle
    }

    /// The pool's handle as a Pool Handle parameter (RFC 5354 §3.9), padded: what a
    /// resolution answer echoes, byte for byte what [`wire::encode_handle`] writes.
    pub fn handle_param(&self) -> &[u8] {
        self.headed_handle_param
            .get(HEADER_ROOM..)
            .unwrap_or_default()
    }

    /// [`Pool::handle_param`] after `HEADER_ROOM` (4) zero bytes, room for the header
    /// of the message that carries it: how a resolution answer starts, in one copy (its
    /// header is then filled in).
    pub fn headed_handle_param(&self) -> &[u8] {
        &self.headed_handle_param
    }

    /// The policy type every PE of this pool uses.
    pub fn policy_type(&self) -> PolicyType {
        self.policy_type
    }

    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    pub fn transport_use(&self) -> TransportUse {
        self.transport_use
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn element(&self, id: PoolElementId) -> Option<&Element> {
        let slot = *self.by_id.get(&id)?;
        self.slot(slot)
    }

    /// Every element, in no particular order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.slots.iter().flatten()
    }

    /// Accumulated LUD-style degradation of a PE (0 where the policy keeps none).
    pub fn degradation(&self, id: PoolElementId) -> Option<u32> {
        let slot = *self.by_id.get(&id)?;
        Some(self.selector.degradation(slot))
    }

    pub(crate) fn slot(&self, slot: Slot) -> Option<&Element> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(crate) fn slot_of(&self, id: PoolElementId) -> Option<Slot> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn element_mut(&mut self, id: PoolElementId) -> Option<&mut Element> {
        let slot = *self.by_id.get(&id)?;
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub(crate) fn insert(&mut self, element: Element) {
        let id = element.id();
        let policy = element.policy();
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(element);
                s
            }
            None => {
                self.slots.push(Some(element));
                (self.slots.len() - 1) as Slot
            }
        };
        self.by_id.insert(id, slot);
        self.selector.insert(slot, policy);
    }

    /// Replaces a PE's attributes (re-registration); returns the old element.
    pub(crate) fn replace(&mut self, slot: Slot, element: Element) -> Option<Element> {
        let policy = element.policy();
        let old = self.slots.get_mut(slot as usize)?.replace(element);
        self.selector.update(slot, policy);
        old
    }

    /// Selects up to `n` PEs with the pool's policy ([`Selector::select`]).
    pub(crate) fn select(
        &mut self,
        n: usize,
        increment: usize,
        rng: &mut Rng,
        out: &mut Vec<Slot>,
    ) {
        self.select_by(n, increment, rng, out, true);
    }

    /// [`Pool::select`]; with `shortcut` false, an ordered pool steps every handed-out
    /// PE through its policy even where its policy keeps the order
    /// ([`super::select::Ordered::select_fixed`] not taken).
    fn select_by(
        &mut self,
        n: usize,
        increment: usize,
        rng: &mut Rng,
        out: &mut Vec<Slot>,
        shortcut: bool,
    ) {
        let slots = &self.slots;
        let policy_of = |s: Slot| policy_in(slots, s);
        match &mut self.selector {
            Selector::Ordered(ordered) if !shortcut => ordered.select(n, increment, out, policy_of),
            selector => selector.select(n, increment, rng, out, policy_of),
        }
    }

    /// [`Pool::select`], handing each selected element, best first, to `visit` with
    /// the pool's [`Pool::headed_handle_param`], so that no list of them is needed. A pool
    /// whose policy keeps the order is read straight off its rings
    /// ([`super::select::Ordered::select_fixed`]); any other selects into `picks`
    /// (scratch, cleared first).
    #[inline]
    pub(crate) fn select_each(
        &mut self,
        n: usize,
        increment: usize,
        rng: &mut Rng,
        picks: &mut Vec<Slot>,
        mut visit: impl FnMut(&[u8], &Element),
    ) {
        if let Selector::Ordered(ordered) = &mut self.selector
            && ordered.fixed_order()
        {
            let (slots, handle_param) = (&self.slots, &*self.headed_handle_param);
            ordered.select_fixed(n, increment, |s| {
                if let Some(Some(e)) = slots.get(s as usize) {
                    visit(handle_param, e);
                }
            });
            return;
        }
        picks.clear();
        self.select(n, increment, rng, picks);
        for &s in picks.iter() {
            if let Some(e) = self.slot(s) {
                visit(&self.headed_handle_param, e);
            }
        }
    }

    /// [`Pool::select`] without the fixed-order shortcut
    /// ([`super::select::Ordered::select_fixed`]): every handed-out PE of an ordered
    /// pool steps through its policy. The reference the shortcut is tested against.
    #[cfg(test)]
    pub(crate) fn select_stepwise(
        &mut self,
        n: usize,
        increment: usize,
        rng: &mut Rng,
        out: &mut Vec<Slot>,
    ) {
        self.select_by(n, increment, rng, out, false);
    }

    pub(crate) fn remove(&mut self, id: PoolElementId) -> Option<Element> {
        let slot = self.by_id.remove(&id)?;
        self.selector.remove(slot);
        let e = self.slots.get_mut(slot as usize)?.take();
        self.free.push(slot);
        e
    }
}
