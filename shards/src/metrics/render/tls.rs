//! The TLS families: handshakes done and failed, client certificates verified, and
//! credential reloads. They count the whole process (every shard's `tls://`
//! connections share one set of credentials), so they carry no `shard` label, and
//! they are shown only when TLS is configured.

use crate::tls::TlsFigures;

use super::{family, sample};

/// Appends the TLS families to a scrape.
pub fn render(out: &mut String, f: TlsFigures) {
    let name = "rserpool_tls_handshakes_total";
    family(
        out,
        name,
        "counter",
        "TLS handshakes, with clients on tls:// endpoints and with peers dialled over TLS, by result: ok, or failed (no or a bad client certificate where one is required, a peer certificate the CA did not sign, not TLS at all, a protocol error, the peer gone mid-handshake).",
    );
    sample(out, name, "result=\"ok\"", f.handshakes);
    sample(out, name, "result=\"failed\"", f.handshake_failures);
    let name = "rserpool_tls_client_certificates_total";
    family(
        out,
        name,
        "counter",
        "Completed TLS handshakes in which the client showed a certificate the configured CA signed.",
    );
    sample(out, name, "", f.client_certificates);
    let name = "rserpool_tls_reloads_total";
    family(
        out,
        name,
        "counter",
        "Rereads of the TLS certificate, key and CA files (SIGHUP) by result; on failed the previous credentials stayed in force.",
    );
    sample(out, name, "result=\"ok\"", f.reloads);
    sample(out, name, "result=\"failed\"", f.reload_failures);
}
