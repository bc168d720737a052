//! The load generator: simulated pool elements and pool users, and its reports.
//!
//! No `unsafe` here: socket and process details live in `rserpool_shards::net`.
#![forbid(unsafe_code)]

pub mod churn;
pub mod conn;
pub mod echo;
pub mod failover;
pub mod farm;
pub mod pe;
pub mod propagation;
pub mod report;
pub mod scenario;
pub mod scope;
pub mod takeover;
