//! Hand-built wire input for the robustness tests: built with the crate's writer so
//! lengths and padding stay right unless a test breaks them on purpose.

use crate::wire::{DecodeError, DecodeErrorKind, Writer, message};

pub(super) const ECHO: &[u8] = b"EchoPool";

pub(super) fn kind<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> DecodeErrorKind {
    r.expect_err("must be rejected").kind
}

pub(super) fn err<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> DecodeError {
    r.expect_err("must be rejected")
}

/// A message with the given type, flags and body, built with the crate's writer.
pub(super) fn msg(kind: u8, flags: u8, body: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, kind, flags, body);
    out
}

pub(super) fn handle(w: &mut Writer<'_>) {
    w.tlv(0x0009, |w| w.put_bytes(ECHO));
}

pub(super) fn pe_id(w: &mut Writer<'_>) {
    w.tlv(0x000e, |w| w.put_u32(0x1a2b_3c4d));
}

pub(super) fn ipv4(w: &mut Writer<'_>) {
    w.tlv(0x0001, |w| w.put_bytes(&[192, 0, 2, 10]));
}

pub(super) fn sctp(w: &mut Writer<'_>) {
    w.tlv(0x0004, |w| {
        w.put_u32(0x2328_0000);
        ipv4(w);
    });
}

pub(super) fn rr(w: &mut Writer<'_>) {
    w.tlv(0x0008, |w| w.put_u32(1));
}

/// A Pool Element whose children are written by `children`.
pub(super) fn pe(w: &mut Writer<'_>, children: impl FnOnce(&mut Writer<'_>)) {
    w.tlv(0x000a, |w| {
        w.put_u32(0x1a2b_3c4d);
        w.put_u32(0);
        w.put_u32(90_000);
        children(w);
    });
}
