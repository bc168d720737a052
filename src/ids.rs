//! Identifiers that travel on the wire and key the handlespace.

use std::fmt;

use smallvec::SmallVec;

/// A pool handle: an opaque byte string naming a pool, compared byte for byte
/// (RFC 5351 §2.1). The codec accepts any non-empty length that fits a parameter; the
/// registrar enforces [`crate::handlespace::MAX_POOL_HANDLE_LEN`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolHandle(SmallVec<[u8; 32]>);

impl PoolHandle {
    pub fn new(bytes: &[u8]) -> Self {
        Self(SmallVec::from_slice(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for PoolHandle {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes())
    }
}

impl From<&[u8]> for PoolHandle {
    fn from(b: &[u8]) -> Self {
        Self::new(b)
    }
}

impl std::borrow::Borrow<[u8]> for PoolHandle {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for PoolHandle {
    /// Printable ASCII as text, anything else as hex, so a handle from the network can
    /// always be logged safely.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() && self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            for &b in self.0.iter() {
                write!(f, "{}", b as char)?;
            }
            Ok(())
        } else {
            f.write_str("0x")?;
            for b in self.0.iter() {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolHandle({self})")
    }
}

/// A pool element identifier: chosen by the PE, never by the registrar (RFC 5352 §3.1).
/// Zero is invalid (RFC 5525 range, RSPLIB rejects it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PoolElementId(pub u32);

/// An ENRP server (registrar) identifier; zero means "unknown / none" (RFC 5353 §2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RegistrarId(pub u32);

impl RegistrarId {
    pub const NONE: Self = Self(0);
}

macro_rules! hex_id {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#010x}", self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({:#010x})"), self.0)
            }
        }
    };
}
hex_id!(PoolElementId);
hex_id!(RegistrarId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_display_is_safe_for_binary() {
        assert_eq!(PoolHandle::from("EchoPool").to_string(), "EchoPool");
        assert_eq!(PoolHandle::new(&[0, 1, 0xff]).to_string(), "0x0001ff");
        assert_eq!(PoolHandle::new(&[]).to_string(), "0x");
    }

    #[test]
    fn ids_print_in_hex() {
        assert_eq!(PoolElementId(0x1a2b3c4d).to_string(), "0x1a2b3c4d");
        assert_eq!(format!("{:?}", RegistrarId(1)), "RegistrarId(0x00000001)");
    }
}
