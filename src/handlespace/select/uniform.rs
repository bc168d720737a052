//! Uniform random selection without repetition (RFC 5356 §4.1.3).

use super::{Slot, ensure};
use crate::rng::Rng;

const NONE: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct Uniform {
    dense: Vec<Slot>,
    pos: Vec<u32>,
}

impl Uniform {
    pub(crate) fn insert(&mut self, slot: Slot) {
        ensure(&mut self.pos, slot);
        self.pos[slot as usize] = self.dense.len() as u32;
        self.dense.push(slot);
    }

    pub(crate) fn remove(&mut self, slot: Slot) {
        let Some(&p) = self.pos.get(slot as usize) else {
            return;
        };
        if p == NONE || p as usize >= self.dense.len() {
            return;
        }
        self.dense.swap_remove(p as usize);
        if let Some(&moved) = self.dense.get(p as usize) {
            self.pos[moved as usize] = p;
        }
        self.pos[slot as usize] = NONE;
    }

    /// A partial Fisher–Yates shuffle of the first `n` positions: O(n), each PE at most
    /// once, every subset equally likely.
    pub(crate) fn select(&mut self, n: usize, rng: &mut Rng, out: &mut Vec<Slot>) {
        let len = self.dense.len();
        let m = n.min(len);
        for k in 0..m {
            let j = k + rng.below((len - k) as u64) as usize;
            self.dense.swap(k, j);
            self.pos[self.dense[k] as usize] = k as u32;
            self.pos[self.dense[j] as usize] = j as u32;
        }
        out.extend_from_slice(&self.dense[..m]);
    }
}
