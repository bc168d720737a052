//! Socket code: the only place with `unsafe`.
pub mod signals;
