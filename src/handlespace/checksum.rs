//! The PE checksum of RFC 5353 §3.6: an RFC 1071 Internet checksum over, for each PE of
//! one home, its pool handle zero-padded to 4 bytes followed by its PE identifier.
//!
//! Kept as unfolded sums so that it updates incrementally and adds across shards: the
//! sum of the shards' [`ChecksumSum`]s is the sum of the whole set, and the fold and
//! complement happen only at the end.
//!
//! Two arithmetics are kept side by side:
//! - [`ChecksumSum::finish`]: the exact RFC 1071 value (a 64-bit accumulator never
//!   wraps).
//! - [`ChecksumSum::finish_rsplib`]: what RSPLIB's registrar sends and expects. It reads
//!   the 16-bit words in host order (little-endian), accumulates them in a wrapping
//!   32-bit integer, folds, complements and stores the result without a byte swap. Below
//!   2³² that equals the RFC value (the one's-complement sum does not depend on byte
//!   order); beyond it (about 25,000 PEs of one home) the two differ, and a peer that
//!   computes the other way sees a mismatch at every heartbeat.

use std::ops::{Add, AddAssign, SubAssign};

use crate::ids::{PoolElementId, PoolHandle};

/// Unfolded one's-complement sums of a set of PEs' checksum blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChecksumSum {
    /// Big-endian 16-bit words, exact.
    rfc: u64,
    /// Byte-swapped (little-endian read) 16-bit words, wrapping mod 2³² as RSPLIB does.
    rsplib: u32,
}

/// Which arithmetic a registrar uses for the PE checksum it sends and compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumMode {
    /// RSPLIB's: equal to RFC 1071 up to about 25,000 PEs per home, wrapping beyond.
    #[default]
    Rsplib,
    /// RFC 1071 exactly, at any size.
    Rfc1071,
}

impl ChecksumSum {
    /// The raw 16-bit word sums of one PE's block.
    pub fn of_element(handle: &PoolHandle, id: PoolElementId) -> Self {
        let mut s = Self::default();
        let h = handle.as_bytes();
        let mut words = h.chunks_exact(2);
        for w in &mut words {
            s.add_word(u16::from_be_bytes([w[0], w[1]]));
        }
        // An odd final byte is the high half of a word whose low half is zero padding.
        if let [last] = words.remainder() {
            s.add_word(u16::from(*last) << 8);
        }
        // Padding to 4 bytes adds only zero words; the PE ID starts 4-aligned.
        s.add_word((id.0 >> 16) as u16);
        s.add_word(id.0 as u16);
        s
    }

    fn add_word(&mut self, be: u16) {
        self.rfc += u64::from(be);
        self.rsplib = self.rsplib.wrapping_add(u32::from(be.swap_bytes()));
    }

    /// Folds the carries and complements: the exact RFC 1071 value. An empty set gives
    /// 0xFFFF.
    pub fn finish(self) -> u16 {
        let mut s = self.rfc;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// The value RSPLIB puts on the wire for the same set, read as our codec reads the
    /// parameter (big-endian). Equal to [`ChecksumSum::finish`] until RSPLIB's 32-bit
    /// accumulator wraps.
    pub fn finish_rsplib(self) -> u16 {
        let mut s = self.rsplib;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        // RSPLIB stores its little-endian-word result unswapped.
        (!(s as u16)).swap_bytes()
    }

    /// The checksum in the given arithmetic.
    pub fn finish_as(self, mode: ChecksumMode) -> u16 {
        match mode {
            ChecksumMode::Rsplib => self.finish_rsplib(),
            ChecksumMode::Rfc1071 => self.finish(),
        }
    }
}

impl Add for ChecksumSum {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

impl AddAssign for ChecksumSum {
    fn add_assign(&mut self, o: Self) {
        self.rfc += o.rfc;
        self.rsplib = self.rsplib.wrapping_add(o.rsplib);
    }
}

impl SubAssign for ChecksumSum {
    fn sub_assign(&mut self, o: Self) {
        self.rfc -= o.rfc;
        self.rsplib = self.rsplib.wrapping_sub(o.rsplib);
    }
}

impl std::iter::Sum for ChecksumSum {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight from the definition: pad, concatenate, sum words, fold, complement.
    fn naive(set: &[(&[u8], u32)]) -> u16 {
        let mut bytes = Vec::new();
        for (h, id) in set {
            bytes.extend_from_slice(h);
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        let mut s: u64 = bytes
            .chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// RSPLIB's arithmetic as its source describes it: little-endian words, a wrapping
    /// u32 accumulator, fold, complement, the u16 stored raw (so its little-endian bytes
    /// are what goes on the wire, and our big-endian read swaps them).
    fn rsplib_model(set: &[(&[u8], u32)]) -> u16 {
        let mut acc: u32 = 0;
        for (h, id) in set {
            let mut block = h.to_vec();
            if block.len() % 2 == 1 {
                block.push(0);
            }
            block.extend_from_slice(&id.to_be_bytes());
            for w in block.chunks(2) {
                acc = acc.wrapping_add(u32::from(u16::from_le_bytes([w[0], w[1]])));
            }
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        let raw = !(acc as u16);
        u16::from_be_bytes(raw.to_le_bytes())
    }

    #[test]
    fn rfc5353_s3_6_worked_value() {
        // Reference §6.14 / §9.5: "EchoPool", 0x1A2B3C4D → 0x3BD9.
        let s = ChecksumSum::of_element(&PoolHandle::from("EchoPool"), PoolElementId(0x1a2b_3c4d));
        assert_eq!(s.rfc, 0x1c425);
        assert_eq!(s.finish(), 0x3bd9);
        assert_eq!(s.finish_rsplib(), 0x3bd9);
    }

    #[test]
    fn empty_set_is_ffff() {
        assert_eq!(ChecksumSum::default().finish(), 0xffff);
        assert_eq!(ChecksumSum::default().finish_rsplib(), 0xffff);
    }

    #[test]
    fn odd_handles_match_the_definition() {
        let set: [(&[u8], u32); 4] = [
            (b"a", 1),
            (b"abc", 0xffff_ffff),
            (b"abcde", 7),
            (b"\xff\xff\xff", 0xfffe_0001),
        ];
        let sum: ChecksumSum = set
            .iter()
            .map(|(h, id)| ChecksumSum::of_element(&PoolHandle::new(h), PoolElementId(*id)))
            .sum();
        assert_eq!(sum.finish(), naive(&set));
        assert_eq!(sum.finish_rsplib(), rsplib_model(&set));
        assert_eq!(sum.finish_rsplib(), sum.finish(), "no wrap yet");
    }

    #[test]
    fn rsplib_arithmetic_diverges_only_once_its_accumulator_wraps() {
        // One home with many PEs of an 8-byte handle: the model of RSPLIB and ours agree
        // at every size, and equal RFC 1071 until the u32 wraps (about 25k PEs).
        let handle = PoolHandle::from("LoadPool");
        let mut rng = crate::rng::Rng::new(11);
        let mut set: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut sum = ChecksumSum::default();
        let mut diverged_at = None;
        for n in 1..=40_000u32 {
            let id = 1 + rng.below(u64::from(u32::MAX - 1)) as u32;
            set.push((handle.as_bytes().to_vec(), id));
            sum += ChecksumSum::of_element(&handle, PoolElementId(id));
            if diverged_at.is_none() && sum.finish_rsplib() != sum.finish() {
                diverged_at = Some(n);
            }
            if n % 5000 == 0 || diverged_at == Some(n) {
                let refs: Vec<(&[u8], u32)> = set.iter().map(|(h, i)| (&h[..], *i)).collect();
                assert_eq!(sum.finish_rsplib(), rsplib_model(&refs), "n = {n}");
                assert_eq!(sum.finish(), naive(&refs), "n = {n}");
            }
        }
        let at = diverged_at.expect("the u32 accumulator wraps within 40k PEs");
        assert!((15_000..40_000).contains(&at), "diverged at {at}");
        // Removing PEs again undoes the wrap exactly (wrapping subtraction).
        for (h, id) in set.drain(..) {
            sum -= ChecksumSum::of_element(&PoolHandle::new(&h), PoolElementId(id));
        }
        assert_eq!(sum, ChecksumSum::default());
    }
}
