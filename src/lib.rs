//! Sans-IO core of an RSerPool registrar (RFC 5351–5356).
//!
//! This crate does no I/O, reads no clock and owns no global state: time is passed in,
//! randomness comes from a seeded [`rng::Rng`] owned by the state that uses it, and every
//! output is returned to the caller. The runtime (`shards/`) and the load generator
//! (`loadgen/`) drive it.
//!
//! - [`wire`]: the ASAP and ENRP codec (RFC 5352, 5353, 5354), exact to the byte.
//! - [`handlespace`]: pools, pool elements, every selection policy of RFC 5356 plus
//!   RSPLIB's extensions, per-owner PE checksums and lifetime expiry.
//! - [`client`]: the pool element and pool user side of ASAP, for the load generator and
//!   for applications.
//! - [`registrar`]: the registrar's ASAP server procedures as a per-shard state machine
//!   (registration, deregistration, resolution, keep-alive supervision, failure reports),
//!   with the pool-writer protocol between shards.
//! - [`enrp`]: the ENRP server (RFC 5353) that keeps one handlespace across the
//!   registrars of an operational scope, as a state machine one shard runs.
//! - [`hex`]: bytes as hexadecimal text, for configuration and command lines.
#![forbid(unsafe_code)]
// A library speaks through return values and `tracing`, never stdout.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod client;
pub mod enrp;
pub mod handlespace;
pub mod hex;
pub mod ids;
pub mod registrar;
pub mod rng;
pub mod wire;

pub use ids::{PoolElementId, PoolHandle, RegistrarId};
