//! End-to-end over loopback SCTP (one-to-many socket on the registrar, one-to-one
//! clients, PPID 11). Needs kernel SCTP: run inside the SCTP lab
//! (`sctp-lab/run-tests.sh`);
//! elsewhere every test prints a SKIP line and passes.

mod common;

use common::Kind;
use common::scenarios;

fn sctp() -> bool {
    let ok = rserpool_shards::net::sctp::available();
    if !ok {
        // Written to stderr directly: libtest would swallow `println!`.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: this kernel has no SCTP (run it in the SCTP lab: sctp-lab/run-tests.sh)"
        );
    }
    ok
}

#[test]
fn sctp_registration_resolution_and_association_loss() {
    if sctp() {
        scenarios::registration_resolution_and_connection_loss(Kind::Sctp);
    }
}

#[test]
fn sctp_keep_alives_keep_live_pes_and_remove_silent_ones() {
    if sctp() {
        scenarios::keep_alives_keep_live_pes_and_remove_silent_ones(Kind::Sctp);
    }
}

#[test]
fn sctp_spoofed_deregistration_is_refused() {
    if sctp() {
        scenarios::spoofed_deregistration_is_refused(Kind::Sctp);
    }
}

#[test]
fn sctp_malformed_messages_harm_nobody() {
    if sctp() {
        scenarios::malformed_messages_harm_nobody(Kind::Sctp);
    }
}

#[test]
fn sctp_a_port_in_use_is_refused() {
    if sctp() {
        scenarios::a_port_in_use_is_refused(Kind::Sctp);
    }
}

/// ENRP over SCTP: the association to the peer starts from the ENRP socket with
/// sctp_connectx, and its notifications resolve to the registrar's connection.
#[test]
fn sctp_peers_share_their_pes() {
    if sctp() {
        scenarios::peers_share_their_pes(Kind::Sctp);
    }
}
