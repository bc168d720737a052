//! A table of connections indexed by [`ConnId::slot`] instead of hashed: the runtime's
//! own ids ([`ConnId::new`]) have small dense slots, so a lookup is an index and a
//! compare. The registrar's ids ([`ConnId::is_outbound`]: ENRP peers, adoptions) are
//! few and go to a small map beside.

use std::collections::HashMap;

use rserpool::registrar::ConnId;

#[derive(Debug)]
pub(super) struct ConnTable<T> {
    slots: Vec<Option<(ConnId, T)>>,
    outbound: HashMap<ConnId, T>,
    len: usize,
}

impl<T> Default for ConnTable<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            outbound: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> ConnTable<T> {
    #[inline]
    pub(super) fn get(&self, id: &ConnId) -> Option<&T> {
        if id.is_outbound() {
            return self.outbound.get(id);
        }
        match self.slots.get(id.slot()) {
            Some(Some((k, v))) if k == id => Some(v),
            _ => None,
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut T> {
        if id.is_outbound() {
            return self.outbound.get_mut(id);
        }
        match self.slots.get_mut(id.slot()) {
            Some(Some((k, v))) if k == id => Some(v),
            _ => None,
        }
    }

    pub(super) fn contains_key(&self, id: &ConnId) -> bool {
        self.get(id).is_some()
    }

    /// Adds `id`, replacing what its slot held (the runtime never gives a live slot
    /// out twice, so that is only ever a forgotten entry).
    pub(super) fn insert(&mut self, id: ConnId, value: T) {
        if id.is_outbound() {
            if self.outbound.insert(id, value).is_none() {
                self.len += 1;
            }
            return;
        }
        let slot = id.slot();
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        if self.slots[slot].replace((id, value)).is_none() {
            self.len += 1;
        }
    }

    pub(super) fn remove(&mut self, id: &ConnId) -> Option<T> {
        let removed = if id.is_outbound() {
            self.outbound.remove(id)
        } else {
            match self.slots.get_mut(id.slot()) {
                Some(entry @ Some(_)) if entry.as_ref().is_some_and(|(k, _)| k == id) => {
                    entry.take().map(|(_, v)| v)
                }
                _ => None,
            }
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Whether no connection is in the table.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry with its id, slots first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots
            .iter()
            .filter_map(|e| e.as_ref().map(|(k, v)| (*k, v)))
            .chain(self.outbound.iter().map(|(k, v)| (*k, v)))
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots
            .iter_mut()
            .filter_map(|e| e.as_mut().map(|(_, v)| v))
            .chain(self.outbound.values_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_outbound_ids_are_kept_apart_and_stale_ids_miss() {
        let mut t = ConnTable::default();
        let a = ConnId::new(3, 1);
        let stale = ConnId::new(3, 0);
        let out = ConnId(ConnId::OUTBOUND + 3);
        t.insert(a, "a");
        t.insert(out, "out");
        assert_eq!(t.get(&a), Some(&"a"));
        assert_eq!(t.get(&out), Some(&"out"));
        assert_eq!(t.get(&stale), None);
        assert_eq!(t.remove(&stale), None);
        assert_eq!(t.remove(&a), Some("a"));
        assert!(!t.contains_key(&a));
        assert_eq!(t.values_mut().count(), 1);
        assert_eq!(t.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![out]);
        assert!(!t.is_empty());
    }
}
