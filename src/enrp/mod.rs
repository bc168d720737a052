//! The ENRP server (RFC 5353): registrars of one operational scope keep one handlespace.
//!
//! Placeholder while the machine is written.

mod config;

pub use config::{Config, PeerAddress, TABLE_CHUNK_CEILING, TakeoverWinner};
