//! Wireshark as an independent oracle for the codec: every message we encode is written
//! into a pcap (SCTP to 3863/9901, and ASAP once more over TCP to 3863) and must dissect in
//! tshark as exactly the ASAP/ENRP message type we meant, with no malformed marker and no
//! expert item of severity warning or error.
//!
//! The pcap is built by hand (LINKTYPE_RAW, hand-rolled IPv4/SCTP/TCP with correct
//! checksums), so the test needs only std and a `tshark` binary. If tshark is missing and we
//! are root, the test installs it with apt-get; if that fails, the test fails — it never
//! passes without having run Wireshark. `TSHARK=/path/to/tshark` overrides the binary.

use std::collections::BTreeMap;

use rserpool::wire::samples;

mod pcap;
mod runner;

use pcap::*;
use runner::*;

// ---------------------------------------------------------------------------------------
// Message source: the one function to swap for `rserpool::wire::samples`.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Asap,
    Enrp,
}

#[derive(Clone, Debug)]
struct Frame {
    proto: Proto,
    msg_type: u8,
    bytes: Vec<u8>,
}

/// Every message to check: everything the codec's samples cover (every ASAP and ENRP
/// message type, flag and parameter type) encoded by our encoder, plus the reference's
/// byte-level examples (§9) as RSPLIB would send them.
fn frames() -> Vec<Frame> {
    const ASAP: &[&str] = &[
        REGISTRATION,
        // §9.2 ASAP_REGISTRATION_RESPONSE, accepted and rejected
        "03000018 0009000c 4563686f 506f6f6c 000e0008 1a2b3c4d",
        "0301002c 0009000c 4563686f 506f6f6c 000e0008 1a2b3c4d 000c0014 00050010
         0008000c 40000001 00000000",
        // §9.3 ASAP_HANDLE_RESOLUTION, plain and with the Handle Resolution Option
        "05000010 0009000c 4563686f 506f6f6c",
        "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003",
        // §9.4 ASAP_HANDLE_RESOLUTION_RESPONSE, positive and negative
        "06000040 0009000c 4563686f 506f6f6c 00080008 00000001 000a0028 1a2b3c4d
         0a0b0c0d 00015f90 00040010 23280000 00010008 c000020a 00080008 00000001",
        "06000018 0009000c 4563686f 506f6f6c 000c0008 00090004",
        // §9.4 ASAP_ENDPOINT_KEEP_ALIVE (RSPLIB format with PE Identifier)
        "0700001c 0a0b0c0d 0009000c 4563686f 506f6f6c 000e0008 1a2b3c4d",
    ];
    const ENRP: &[&str] = &[
        // §9.5 ENRP_PRESENCE with PE checksum
        "0100002c 0a0b0c0d 0f0e0d0c 000f0006 3bd90000 000b0018 0a0b0c0d 00040010
         26ad0000 00010008 c0000201",
    ];
    let encoded = |m: &dyn Fn(&mut Vec<u8>)| {
        let mut b = Vec::new();
        m(&mut b);
        b
    };
    let asap = samples::asap_messages().into_iter().map(|m| Frame {
        proto: Proto::Asap,
        msg_type: m.kind().0,
        bytes: encoded(&|b| m.encode(b)),
    });
    let enrp = samples::enrp_messages().into_iter().map(|m| Frame {
        proto: Proto::Enrp,
        msg_type: m.kind().0,
        bytes: encoded(&|b| m.encode(b)),
    });
    let vectors = ASAP.iter().map(|h| Frame::from_hex(Proto::Asap, h));
    let vectors = vectors.chain(ENRP.iter().map(|h| Frame::from_hex(Proto::Enrp, h)));
    asap.chain(enrp).chain(vectors).collect()
}

/// Reference §9.1 ASAP_REGISTRATION; also the base of the checker's negative test.
const REGISTRATION: &str = "01000038 0009000c 4563686f 506f6f6c 000a0028 1a2b3c4d 00000000
    00015f90 00040010 23280000 00010008 c000020a 00080008 00000001";

impl Frame {
    fn from_hex(proto: Proto, hex: &str) -> Self {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let byte = |p: &[u8]| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap();
        let bytes: Vec<u8> = digits.chunks(2).map(byte).collect();
        Frame {
            proto,
            msg_type: bytes[0],
            bytes,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checker.
// ---------------------------------------------------------------------------------------

/// Every problem with the dissection, as (frame number, description); empty if clean.
fn problems(expected: &[Expect], got: &BTreeMap<usize, Dissected>) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    if got.len() != expected.len() {
        let (wrote, read) = (expected.len(), got.len());
        out.push((0, format!("wrote {wrote} frames, tshark read {read}")));
    }
    for (i, want) in expected.iter().enumerate() {
        let n = i + 1;
        let Some(d) = got.get(&n) else {
            out.push((n, "missing from tshark output".into()));
            continue;
        };
        let mut bad = |p: String| out.push((n, p));
        match want {
            Expect::Transport if !d.asap.is_empty() || !d.enrp.is_empty() => {
                bad(format!(
                    "expected no ASAP/ENRP, dissected as {}",
                    d.summary()
                ));
            }
            Expect::Transport => {}
            Expect::Message(f) => {
                let (this, other) = match f.proto {
                    Proto::Asap => (&d.asap, &d.enrp),
                    Proto::Enrp => (&d.enrp, &d.asap),
                };
                // The first occurrence is the outer message: an "Unrecognized Message"
                // error cause is dissected as a nested message after it.
                if this.first().map(|m| m.0) != Some(f.msg_type) || !other.is_empty() {
                    let (proto, ty) = (f.proto, f.msg_type);
                    let got = d.summary();
                    bad(format!(
                        "expected {proto:?} type {ty:#04x}, dissected as {got}"
                    ));
                }
                // Wireshark ignores the header's Message Length (it dissects up to the
                // end of the chunk/segment), so the test checks it: RFC 5354 §4, the
                // length excludes only the final padding.
                if let Some(&(_, len)) = this.first() {
                    let len = usize::from(len);
                    if len < 4 || len.next_multiple_of(4) != f.bytes.len() {
                        let sent = f.bytes.len();
                        bad(format!(
                            "Message Length {len} does not fit the {sent} bytes sent"
                        ));
                    }
                }
            }
        }
        if !d.malformed.is_empty() {
            bad(format!("malformed: {}", d.malformed));
        }
        if d.ip_checksum != [1] || d.l4_checksum != [1] {
            let (ip, l4) = (&d.ip_checksum, &d.l4_checksum);
            bad(format!(
                "checksum status IP {ip:?} TCP/SCTP {l4:?}, want [1] (Good)"
            ));
        }
        if d.severities.iter().any(|&s| s >= PI_WARN) {
            bad(format!(
                "expert warning/error {:x?}: {}",
                d.severities, d.expert
            ));
        }
    }
    out
}

/// Dissects the capture and panics with every problem plus tshark's verbose view of (the
/// first few) failing frames.
fn assert_clean(label: &str, cap: &Capture) {
    let file = TempPcap::write(label, &cap.pcap);
    let found = problems(&cap.expected, &dissect(&file.path));
    if found.is_empty() {
        return;
    }
    let mut report = format!("{} problem(s) in {}:\n", found.len(), file.path.display());
    for (n, p) in &found {
        report += &format!("  frame {n}: {p}\n");
    }
    let mut frames: Vec<usize> = found.iter().map(|&(n, _)| n).filter(|&n| n > 0).collect();
    frames.dedup();
    for n in frames.into_iter().take(5) {
        report += &format!(
            "\n===== tshark -V, frame {n} =====\n{}",
            verbose(&file.path, n)
        );
    }
    panic!("{report}");
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[test]
fn every_message_dissects_cleanly_in_wireshark() {
    let frames = frames();
    assert!(
        frames.iter().any(|f| f.proto == Proto::Asap),
        "no ASAP frames to check"
    );
    assert!(
        frames.iter().any(|f| f.proto == Proto::Enrp),
        "no ENRP frames to check"
    );
    assert_clean("tshark", &Capture::of(&frames));
}

/// The checker must be able to fail: a parameter length running past the message, a
/// Message Length that disagrees with the bytes, a message type other than the one
/// claimed, and a broken SCTP checksum are each reported — and clean frames are not.
#[test]
fn checker_flags_broken_frames() {
    let good = Frame::from_hex(Proto::Asap, REGISTRATION);
    let mut overrun = good.clone();
    overrun.bytes[7] += 0x40; // Pool Handle parameter length 12 -> 76, past the end
    let mut long_header = good.clone();
    long_header.bytes[3] += 4; // Message Length 56 -> 60 (Wireshark itself ignores it)
    let mut mislabeled = good.clone();
    mislabeled.msg_type = 0x03;
    let cap = Capture::of(&[good, overrun, long_header, mislabeled]);
    // SCTP frames 1-4, TCP handshake 5-7, TCP data 8-11. Break the SCTP CRC of frame 1:
    // pcap header 24, record header 16, IPv4 20, checksum at SCTP offset 8.
    let mut pcap = cap.pcap.clone();
    pcap[24 + 16 + 20 + 8] ^= 0xff;

    let file = TempPcap::write("tshark-negative", &pcap);
    let found = problems(&cap.expected, &dissect(&file.path));
    let flagged = |n: usize| found.iter().any(|&(f, _)| f == n);
    let report = format!("{found:#?}");
    assert!(flagged(1), "bad CRC32c not flagged: {report}");
    assert!(
        flagged(2) && flagged(9),
        "parameter overrun not flagged: {report}"
    );
    assert!(
        flagged(3) && flagged(10),
        "bad Message Length not flagged: {report}"
    );
    assert!(
        flagged(4) && flagged(11),
        "wrong message type not flagged: {report}"
    );
    for n in [5, 6, 7, 8] {
        assert!(!flagged(n), "clean frame {n} flagged: {report}");
    }
    assert!(!flagged(0), "frame count: {report}");
}

#[test]
fn crc32c_matches_rfc_3720_vectors() {
    // RFC 3720 §B.4: 32 bytes of zeros, and "123456789" (the CRC catalogue's check value).
    assert_eq!(crc32c(&[0; 32]), 0x8a91_36aa);
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn inet_checksum_matches_rfc_1071_example() {
    // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2, so the checksum is 220d.
    assert_eq!(
        inet_checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]),
        0x220d
    );
}
