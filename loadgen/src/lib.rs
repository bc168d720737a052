//! The load generator: simulated pool elements and pool users, and its reports.

pub mod report;
