//! The PE checksum of RFC 5353 §3.6: an RFC 1071 Internet checksum over, for each PE of
//! one owner, its pool handle zero-padded to 4 bytes followed by its PE identifier.
//!
//! Kept as an unfolded 64-bit sum of 16-bit words so that it updates incrementally and
//! adds across shards: the sum of the shards' [`ChecksumSum`]s is the sum of the whole
//! set, and [`ChecksumSum::finish`] folds and complements only at the end.

use std::ops::{Add, AddAssign, SubAssign};

use crate::ids::{PoolElementId, PoolHandle};

/// Unfolded one's-complement sum of a set of PEs' checksum blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChecksumSum(pub u64);

impl ChecksumSum {
    /// The raw 16-bit word sum of one PE's block.
    pub fn of_element(handle: &PoolHandle, id: PoolElementId) -> Self {
        let h = handle.as_bytes();
        let mut sum = 0u64;
        let mut words = h.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        // An odd final byte is the high half of a word whose low half is zero padding.
        if let [last] = words.remainder() {
            sum += u64::from(*last) << 8;
        }
        // Padding to 4 bytes adds only zero words; the PE ID starts 4-aligned.
        sum += u64::from(id.0 >> 16) + u64::from(id.0 & 0xffff);
        Self(sum)
    }

    /// Folds the carries and complements: the value sent in ENRP_PRESENCE. An empty set
    /// gives 0xFFFF.
    pub fn finish(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

impl Add for ChecksumSum {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self(self.0 + o.0)
    }
}

impl AddAssign for ChecksumSum {
    fn add_assign(&mut self, o: Self) {
        self.0 += o.0;
    }
}

impl SubAssign for ChecksumSum {
    fn sub_assign(&mut self, o: Self) {
        self.0 -= o.0;
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

    #[test]
    fn rfc5353_s3_6_worked_value() {
        // Reference §6.14 / §9.5: "EchoPool", 0x1A2B3C4D → 0x3BD9.
        let s = ChecksumSum::of_element(&PoolHandle::from("EchoPool"), PoolElementId(0x1a2b_3c4d));
        assert_eq!(s.0, 0x1c425);
        assert_eq!(s.finish(), 0x3bd9);
    }

    #[test]
    fn empty_set_is_ffff() {
        assert_eq!(ChecksumSum::default().finish(), 0xffff);
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
    }
}
