//! Conformance tests of the codec, grouped by RFC section and named after the
//! requirement they check.

mod craft;
mod framing;
mod messages;
mod params;
mod roundtrip;
mod unknown;
mod vectors;

use super::{AsapMessage, DecodeError, Decoded, EnrpMessage};

/// Parses a hex dump whose lines may start with an offset column (`0010  ...`).
pub(super) fn hex(dump: &str) -> Vec<u8> {
    dump.lines()
        .flat_map(|line| {
            let mut words = line.split_whitespace().peekable();
            if words.peek().is_some_and(|w| w.len() == 4) {
                words.next();
            }
            words
                .map(|w| u8::from_str_radix(w, 16).expect("hex byte"))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(super) fn asap(buf: &[u8]) -> Result<Decoded<AsapMessage>, DecodeError> {
    AsapMessage::decode(buf)
}

pub(super) fn enrp(buf: &[u8]) -> Result<Decoded<EnrpMessage>, DecodeError> {
    EnrpMessage::decode(buf)
}

pub(super) fn encode_asap(m: &AsapMessage) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

pub(super) fn encode_enrp(m: &EnrpMessage) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}
