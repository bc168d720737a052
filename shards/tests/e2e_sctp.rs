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

/// `rserpool-registrar dump sctp://…` over a one-to-one association (PPID 12), as
/// RSPLIB's hsdump: every PE with its home, and the JSON alike.
#[test]
fn sctp_dump_lists_every_pe_with_its_home() {
    if !sctp() {
        return;
    }
    let (config, enrp) = scenarios::enrp_registrar(0x10, Kind::Sctp, Vec::new());
    let lab = common::Lab::with(Kind::Sctp, config, enrp);
    let uri = lab.handle.as_ref().unwrap().enrp_endpoints()[0].to_string();
    assert!(uri.starts_with("sctp://"), "{uri}");
    let pes = common::register_all(&lab, "sctp-pool", 1..=2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
        .args(["dump", &uri])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.starts_with("registrar 0x00000010 at sctp://"),
        "{table}"
    );
    assert!(
        table.contains("pool sctp-pool: policy round_robin, 2 PEs"),
        "{table}"
    );
    for id in ["0x00000001", "0x00000002"] {
        let row =
            format!("  {id}  0x00000010  600000 ms  -              sctp 127.0.0.1 port 20000");
        assert!(table.contains(&row), "{row:?} in\n{table}");
    }
    assert!(
        table.ends_with("total: 1 pool, 2 PEs (by home: 0x00000010: 2)\n"),
        "{table}"
    );
    // Plain ADDR:PORT is SCTP, as hsdump takes it.
    let plain = uri.trim_start_matches("sctp://");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
        .args(["dump", plain, "--json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["totals"]["elements_by_home"]["0x00000010"], 2);
    drop(pes);
    lab.finish();
}

/// The registrar's socket receives with a multishot recvmsg into provided buffers of
/// 2 KiB (shards/src/net/ring.rs, `MSG_BUFFERS` of them): requests sent back to back
/// on one association, more than there are buffers, are each answered, in order; and
/// a request longer than a buffer (it arrives in pieces) is put together and answered
/// like a short one.
#[test]
fn sctp_back_to_back_and_long_requests_are_answered_in_order() {
    use rserpool::wire::{AsapMessage, PPID_ASAP};
    if !sctp() {
        return;
    }
    let lab = common::Lab::start(Kind::Sctp);
    let pes = common::register_all(&lab, "burst", 1..=4);
    let raw = rserpool_shards::net::sctp::Client::connect(lab.addr).unwrap();
    raw.set_read_timeout(common::GUARD).unwrap();
    let ask = |items: u32| {
        common::encode(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: "burst".into(),
            items: Some(items),
        })
    };
    // A request of 5,000 bytes: the resolution and an unknown parameter whose type
    // says "skip" (RFC 5354 §3, action bits 10), so the answer is an ordinary one.
    let mut long = ask(3);
    let pad = 5000 - long.len();
    long.extend_from_slice(&0x8fffu16.to_be_bytes());
    long.extend_from_slice(&(pad as u16).to_be_bytes());
    long.resize(5000, 0xa5);
    long[2..4].copy_from_slice(&5000u16.to_be_bytes());
    // More requests than provided buffers, each asking for a different count, so
    // that the answers' order shows; the long one in the middle and at the end.
    let mut wants: Vec<usize> = (0..300).map(|i| i % 4 + 1).collect();
    wants[150] = 3;
    wants.push(3);
    for (i, &n) in wants.iter().enumerate() {
        if i == 150 || i == wants.len() - 1 {
            raw.send(PPID_ASAP, &long).unwrap();
        } else {
            raw.send(PPID_ASAP, &ask(n as u32)).unwrap();
        }
    }
    let mut buf = Vec::new();
    for (i, &n) in wants.iter().enumerate() {
        assert_eq!(raw.recv(&mut buf).unwrap(), Some(PPID_ASAP), "answer {i}");
        match AsapMessage::decode(&buf).unwrap().message {
            AsapMessage::HandleResolutionResponse { elements, .. } => {
                assert_eq!(elements.len(), n, "answer {i}")
            }
            other => panic!("answer {i}: {other:?}"),
        }
    }
    drop(raw);
    drop(pes);
    lab.finish();
}
