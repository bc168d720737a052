//! The fuzz oracle: decoding never panics and decode → encode → decode is stable.

use super::{AsapMessage, EnrpMessage, Span};

/// Decodes `data` as ASAP and as ENRP; for each success, checks that the re-encoded
/// message decodes to the same value and re-encodes to the same bytes, and that every
/// reported span lies inside `data`. Panics on a violation: a panic here is a codec bug.
pub fn check(data: &[u8]) {
    match AsapMessage::decode(data) {
        Ok(d) => {
            spans_inside(data, &d.unrecognized);
            let decode = |b: &[u8]| AsapMessage::decode(b).map(|d| d.message);
            stable(&d.message, |m, out| m.encode(out), decode);
        }
        Err(e) => spans_inside(data, e.span.as_slice()),
    }
    match EnrpMessage::decode(data) {
        Ok(d) => {
            spans_inside(data, &d.unrecognized);
            let decode = |b: &[u8]| EnrpMessage::decode(b).map(|d| d.message);
            stable(&d.message, |m, out| m.encode(out), decode);
        }
        Err(e) => spans_inside(data, e.span.as_slice()),
    }
}

/// The protocol layer quotes `&data[span.range()]` in error causes.
fn spans_inside(data: &[u8], spans: &[Span]) {
    for s in spans {
        let n = data.len();
        assert!(s.range().end <= n, "span {s:?} outside a {n}-byte message");
    }
}

fn stable<M: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    first: &M,
    encode: impl Fn(&M, &mut Vec<u8>),
    decode: impl Fn(&[u8]) -> Result<M, E>,
) {
    let mut bytes = Vec::new();
    encode(first, &mut bytes);
    assert_eq!(bytes.len() % 4, 0, "encoding not padded: {first:?}");
    let second = match decode(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("re-encoded message does not decode ({e:?}): {first:?} as {bytes:02x?}"),
    };
    assert_eq!(&second, first, "decode(encode(m)) != m for {bytes:02x?}");
    let mut again = Vec::new();
    encode(&second, &mut again);
    assert_eq!(again, bytes, "encoding is not stable for {first:?}");
}

/// Structure-aware mutation of valid messages, shared by the codec's fuzz test and the
/// protocol layers' garbage-input tests.
#[cfg(test)]
pub(crate) mod mutation {
    use crate::rng::Rng;
    use crate::wire::samples::{asap_messages, enrp_messages};

    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for m in asap_messages() {
            let mut b = Vec::new();
            m.encode(&mut b);
            out.push(b);
        }
        for m in enrp_messages() {
            let mut b = Vec::new();
            m.encode(&mut b);
            out.push(b);
        }
        out
    }

    pub(crate) fn pick<'s, T>(rng: &mut Rng, items: &'s [T]) -> &'s T {
        &items[rng.below(items.len() as u64) as usize]
    }

    /// Rewrites the Message Length so the mutated body is parsed instead of rejected
    /// at the door.
    pub(crate) fn fix_length(buf: &mut [u8]) {
        if buf.len() >= 4 {
            let len = u16::try_from(buf.len()).unwrap_or(u16::MAX);
            buf[2..4].copy_from_slice(&len.to_be_bytes());
        }
    }

    pub(crate) fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], buf: &mut Vec<u8>) {
        const INTERESTING: [u8; 8] = [0x00, 0x01, 0x03, 0x04, 0x7f, 0x80, 0xc0, 0xff];
        let n = buf.len().max(1) as u64;
        match rng.below(7) {
            0 => {
                for _ in 0..=rng.below(3) {
                    let bit = rng.below(n * 8) as usize;
                    if let Some(b) = buf.get_mut(bit / 8) {
                        *b ^= 1 << (bit % 8);
                    }
                }
            }
            1 => {
                let at = rng.below(n) as usize;
                let v = if rng.below(2) == 0 {
                    *pick(rng, &INTERESTING)
                } else {
                    rng.next_u64() as u8
                };
                if let Some(b) = buf.get_mut(at) {
                    *b = v;
                }
            }
            2 => buf.truncate(rng.below(n + 1) as usize),
            3 => {
                // A TLV or cause length field sits at offset 2 mod 4 in aligned layouts.
                let at = (rng.below(n / 4 + 1) * 4 + 2) as usize;
                if at + 2 <= buf.len() {
                    let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
                    let new = match rng.below(4) {
                        0 => old.wrapping_add(1 + rng.below(8) as u16),
                        1 => old.wrapping_sub(1 + rng.below(8) as u16),
                        2 => rng.below(12) as u16,
                        _ => rng.next_u64() as u16,
                    };
                    buf[at..at + 2].copy_from_slice(&new.to_be_bytes());
                }
            }
            4 => {
                let other = pick(rng, seeds);
                let cut = rng.below(n + 1) as usize;
                let from = rng.below(other.len() as u64 + 1) as usize;
                buf.truncate(cut);
                buf.extend_from_slice(&other[from..]);
            }
            5 => {
                // Insert a TLV with random type bits and a short value at an aligned offset.
                let at = (rng.below(n / 4 + 1) * 4) as usize;
                let kind = if rng.below(2) == 0 {
                    rng.below(0x12) as u16
                } else {
                    rng.next_u64() as u16
                };
                let vlen = rng.below(9) as usize;
                let mut tlv = kind.to_be_bytes().to_vec();
                tlv.extend_from_slice(&((4 + vlen) as u16).to_be_bytes());
                tlv.extend((0..vlen).map(|_| rng.next_u64() as u8));
                tlv.resize((tlv.len() + 3) & !3, 0);
                let at = at.min(buf.len());
                buf.splice(at..at, tlv);
            }
            _ => {
                let at = rng.below(n) as usize;
                let len = (rng.below(8) as usize).min(buf.len().saturating_sub(at));
                buf.drain(at..at + len);
            }
        }
        if rng.below(3) != 0 {
            fix_length(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use super::mutation::{fix_length, mutate, pick, seeds};
    use crate::rng::Rng;

    #[test]
    fn fuzz_smoke() {
        let seeds = seeds();
        for s in &seeds {
            check(s);
        }
        let mut rng = Rng::new(0x5eed_c0de);
        let mut decoded = 0usize;
        for i in 0..100_000 {
            let mut buf = pick(&mut rng, &seeds).clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &seeds, &mut buf);
            }
            if i % 2 == 0 {
                buf.truncate(buf.len().min(64));
                fix_length(&mut buf);
            }
            check(&buf);
            decoded += usize::from(crate::wire::AsapMessage::decode(&buf).is_ok())
                + usize::from(crate::wire::EnrpMessage::decode(&buf).is_ok());
        }
        // The mutations must reach the decoders' happy paths, not only the length check.
        assert!(decoded > 10_000, "only {decoded} mutants decoded");
    }

    #[test]
    fn fuzz_oracle_accepts_garbage() {
        for data in [
            &[][..],
            &[0xff; 3],
            &[0x01, 0, 0, 4],
            &[0x0a, 0, 0, 8, 0, 0, 0, 0],
        ] {
            check(data);
        }
    }
}
