//! ASAP and ENRP over TCP: each message framed by its own header (reference §2.4). The
//! helper lives in the core ([`rserpool::wire::framing`]), shared with the load
//! generator; the runtime and the `dump` client name it from here.

pub(crate) use rserpool::wire::framing::{Frame, MAX_FRAME, next};
