//! Socket code: the only place with `unsafe`.
