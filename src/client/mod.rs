//! The client side of ASAP as sans-IO state machines: a pool element that registers,
//! answers keep-alives, re-registers and deregisters ([`PoolElementClient`]), and pool
//! user helpers to resolve a handle and read the answer ([`resolution_request`],
//! [`Resolved`]). The load generator drives thousands of them; application code can use
//! them with any transport.

mod pe;
mod pu;

pub use pe::{PeEvent, PeState, PoolElementClient};
pub use pu::{Resolved, resolution_request};
