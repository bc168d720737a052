//! Bytes as hexadecimal text, two digits a byte: configuration (pool patterns `hex:…`)
//! and command lines (the load generator's `--answer-hex`).

use std::fmt::Write as _;

/// `bytes` as lowercase hexadecimal digits, two per byte.
pub fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes that `hex` spells, two digits each (either case); `None` for an odd count
/// or anything that is not a hexadecimal digit (a sign included).
pub fn decode(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let value = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    digits
        .chunks(2)
        .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_spelt_and_what_is_not_hex_refused() {
        let all: Vec<u8> = (0..=255).collect();
        let hex = encode(&all);
        assert_eq!(&hex[..8], "00010203");
        assert_eq!(decode(&hex).as_deref(), Some(&all[..]));
        assert_eq!(decode("0aFf").as_deref(), Some(&[0x0a, 0xff][..]));
        assert_eq!(decode(""), Some(Vec::new()));
        for bad in ["0", "0g", "+f", " 1", "\u{e9}"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
