//! The load generator: simulated pool elements and pool users, and its reports.

pub mod conn;
pub mod pe;
pub mod report;
pub mod scenario;
