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
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use rserpool::wire::samples;

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
// Checksums.
// ---------------------------------------------------------------------------------------

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), as SCTP uses it (RFC 9260 App. A).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The Internet checksum (RFC 1071) over several slices, as if concatenated; every slice
/// but the last must have even length.
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

// ---------------------------------------------------------------------------------------
// Packet builders: IPv4, SCTP (one DATA chunk), TCP.
// ---------------------------------------------------------------------------------------

const PR: [u8; 4] = [192, 0, 2, 1];
const PEER_PR: [u8; 4] = [192, 0, 2, 2];
const PE: [u8; 4] = [192, 0, 2, 10];
const PORT_ASAP: u16 = 3863;
const PORT_ENRP: u16 = 9901;
/// No Wireshark dissector is registered on it, so port-based lookup only finds ours.
const EPHEMERAL_PORT: u16 = 49152;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_SCTP: u8 = 132;

fn ipv4(id: u16, src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("packet fits IPv4");
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]); // DF, TTL 64, checksum 0 for now
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let sum = inet_checksum(&[&p]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// One direction of an SCTP association; Wireshark needs no INIT to dissect DATA chunks.
struct SctpAssoc {
    src: [u8; 4],
    dst: [u8; 4],
    src_port: u16,
    dst_port: u16,
    vtag: u32,
    tsn: u32,
    ssn: u16,
}

impl SctpAssoc {
    /// One IPv4 packet: common header + one unfragmented DATA chunk on stream 0.
    fn data(&mut self, ip_id: u16, ppid: u32, payload: &[u8]) -> Vec<u8> {
        let chunk_len = u16::try_from(16 + payload.len()).expect("chunk fits");
        let mut s = Vec::new();
        s.extend_from_slice(&self.src_port.to_be_bytes());
        s.extend_from_slice(&self.dst_port.to_be_bytes());
        s.extend_from_slice(&self.vtag.to_be_bytes());
        s.extend_from_slice(&[0; 4]); // checksum, filled below
        s.extend_from_slice(&[0, 0x03]); // type DATA, flags B|E
        s.extend_from_slice(&chunk_len.to_be_bytes()); // RFC 9260 §3.2: without padding
        s.extend_from_slice(&self.tsn.to_be_bytes());
        s.extend_from_slice(&0u16.to_be_bytes()); // stream 0, as RSPLIB uses
        s.extend_from_slice(&self.ssn.to_be_bytes());
        s.extend_from_slice(&ppid.to_be_bytes());
        s.extend_from_slice(payload);
        s.resize(s.len().next_multiple_of(4), 0);
        // RFC 9260 App. A: CRC32c over the packet with a zero checksum field, stored in
        // network byte order of the reflected value, i.e. little-endian.
        let crc = crc32c(&s);
        s[8..12].copy_from_slice(&crc.to_le_bytes());
        self.tsn = self.tsn.wrapping_add(1);
        self.ssn = self.ssn.wrapping_add(1);
        ipv4(ip_id, self.src, self.dst, IPPROTO_SCTP, &s)
    }
}

const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// One side of a TCP connection: address, port and next sequence number.
#[derive(Clone, Copy)]
struct TcpEnd {
    ip: [u8; 4],
    port: u16,
    seq: u32,
}

/// A client→server TCP connection with its handshake. Wireshark 4.0 dissects ASAP and
/// raises no expert item even without the SYNs (checked with editcap), but a complete
/// stream keeps sequence analysis quiet in any version: with `tcp.no_subdissector_on_error`
/// a "previous segment not captured" error would skip ASAP altogether.
struct TcpConn {
    client: TcpEnd,
    server: TcpEnd,
}

fn tcp_segment(from: TcpEnd, to: TcpEnd, flags: u8, payload: &[u8], ip_id: u16) -> Vec<u8> {
    let ack = if flags & TCP_ACK != 0 { to.seq } else { 0 };
    let mut t = Vec::new();
    t.extend_from_slice(&from.port.to_be_bytes());
    t.extend_from_slice(&to.port.to_be_bytes());
    t.extend_from_slice(&from.seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags]); // 20-byte header, no options
    t.extend_from_slice(&65535u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(payload);
    let len = u16::try_from(t.len()).expect("segment fits").to_be_bytes();
    let pseudo = [&from.ip[..], &to.ip[..], &[0, IPPROTO_TCP], &len[..]].concat();
    let sum = inet_checksum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    ipv4(ip_id, from.ip, to.ip, IPPROTO_TCP, &t)
}

impl TcpConn {
    /// SYN, SYN-ACK, ACK; leaves both sequence numbers one past the SYNs.
    fn handshake(&mut self, ip_id: u16) -> [Vec<u8>; 3] {
        let (c, s) = (&mut self.client, &mut self.server);
        let syn = tcp_segment(*c, *s, TCP_SYN, &[], ip_id);
        c.seq = c.seq.wrapping_add(1);
        let syn_ack = tcp_segment(*s, *c, TCP_SYN | TCP_ACK, &[], ip_id);
        s.seq = s.seq.wrapping_add(1);
        let ack = tcp_segment(*c, *s, TCP_ACK, &[], ip_id.wrapping_add(1));
        [syn, syn_ack, ack]
    }

    /// One message per segment: Wireshark's ASAP dissector does not reassemble or split
    /// TCP (no `tcp_dissect_pdus`), it takes each segment's payload as one message.
    fn send(&mut self, ip_id: u16, payload: &[u8]) -> Vec<u8> {
        let seg = tcp_segment(self.client, self.server, TCP_PSH | TCP_ACK, payload, ip_id);
        let len = u32::try_from(payload.len()).expect("segment fits");
        self.client.seq = self.client.seq.wrapping_add(len);
        seg
    }
}

// ---------------------------------------------------------------------------------------
// The capture: a classic libpcap file plus what each frame must dissect as.
// ---------------------------------------------------------------------------------------

/// LINKTYPE_RAW: each record is a bare IPv4/IPv6 packet.
const LINKTYPE_RAW: u32 = 101;

#[derive(Clone, Debug)]
enum Expect {
    /// A TCP handshake segment: no RSerPool payload.
    Transport,
    /// Exactly this message, alone in its SCTP DATA chunk or TCP segment.
    Message(Frame),
}

struct Capture {
    pcap: Vec<u8>,
    expected: Vec<Expect>,
    ip_id: u16,
}

impl Capture {
    fn new() -> Self {
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // µs timestamps, LE
        pcap.extend_from_slice(&2u16.to_le_bytes());
        pcap.extend_from_slice(&4u16.to_le_bytes());
        pcap.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        pcap.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        pcap.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        pcap.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        Capture {
            pcap,
            expected: Vec::new(),
            ip_id: 1,
        }
    }

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(2); // room for the handshake's second id
        self.ip_id
    }

    fn push(&mut self, packet: &[u8], expect: Expect) {
        // Fixed timestamps, 1 ms apart: the file is byte-for-byte reproducible.
        let n = u32::try_from(self.expected.len()).unwrap();
        let len = u32::try_from(packet.len()).unwrap();
        self.pcap.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        self.pcap.extend_from_slice(&(n * 1000).to_le_bytes());
        self.pcap.extend_from_slice(&len.to_le_bytes()); // captured length
        self.pcap.extend_from_slice(&len.to_le_bytes()); // original length
        self.pcap.extend_from_slice(packet);
        self.expected.push(expect);
    }

    /// Every frame over SCTP, then every ASAP frame again over one TCP connection.
    fn of(frames: &[Frame]) -> Self {
        let mut cap = Capture::new();
        let mut asap = SctpAssoc {
            src: PE,
            dst: PR,
            src_port: EPHEMERAL_PORT,
            dst_port: PORT_ASAP,
            vtag: 0x1122_3344,
            tsn: 1000,
            ssn: 0,
        };
        let mut enrp = SctpAssoc {
            src: PR,
            dst: PEER_PR,
            src_port: PORT_ENRP,
            dst_port: PORT_ENRP,
            vtag: 0x5566_7788,
            tsn: 5000,
            ssn: 0,
        };
        for f in frames {
            let id = cap.next_ip_id();
            let packet = match f.proto {
                Proto::Asap => asap.data(id, 11, &f.bytes),
                Proto::Enrp => enrp.data(id, 12, &f.bytes),
            };
            cap.push(&packet, Expect::Message(f.clone()));
        }

        let mut tcp = TcpConn {
            client: TcpEnd {
                ip: PE,
                port: EPHEMERAL_PORT,
                seq: 0x0100_0000,
            },
            server: TcpEnd {
                ip: PR,
                port: PORT_ASAP,
                seq: 0x7000_0000,
            },
        };
        let id = cap.next_ip_id();
        for seg in tcp.handshake(id) {
            cap.push(&seg, Expect::Transport);
        }
        for f in frames.iter().filter(|f| f.proto == Proto::Asap) {
            let id = cap.next_ip_id();
            let seg = tcp.send(id, &f.bytes);
            cap.push(&seg, Expect::Message(f.clone()));
        }
        cap
    }
}

/// A pcap file in the temp dir, removed on drop unless the test failed or
/// `RSERPOOL_KEEP_PCAP` is set.
struct TempPcap {
    path: PathBuf,
}

impl TempPcap {
    fn write(label: &str, bytes: &[u8]) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("rserpool-{label}-{}-{nanos}.pcap", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, bytes).expect("write pcap");
        TempPcap { path }
    }
}

impl Drop for TempPcap {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("RSERPOOL_KEEP_PCAP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running tshark.
// ---------------------------------------------------------------------------------------

/// Wireshark expert severities (epan/proto.h PI_*); warning and error fail a frame.
const PI_WARN: u32 = 0x0060_0000;

/// Preferences passed on every run. Checksum verification is off by default in IP, TCP
/// and SCTP; turned on, a wrong checksum is an expert error and a right one reads "Good".
///
/// No preference is needed for ASAP over TCP: the dissector registers `tcp.port` 3863 with
/// `dissector_add_uint_with_preference`, which is on by default (`tshark -G decodes` lists
/// `tcp.port 3863 asap`). Only a user's "Decode As" entries could turn it off, and
/// `tshark_cmd` hides the user's configuration.
const PREFS: &[&str] = &[
    "ip.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
    "sctp.checksum:CRC 32c",
];

/// The tshark binary, installed on first use if missing. The outcome is cached, so
/// concurrent tests run apt-get at most once and all fail alike if it did not work.
fn tshark() -> &'static Path {
    static TSHARK: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = TSHARK.get_or_init(|| {
        if let Some(path) = std::env::var_os("TSHARK") {
            let path = PathBuf::from(path);
            return match runs(&path) {
                true => Ok(path),
                false => Err(format!("TSHARK={} does not run", path.display())),
            };
        }
        let path = PathBuf::from("tshark");
        if !runs(&path) {
            install_tshark();
        }
        match runs(&path) {
            true => Ok(path),
            false => Err(
                "tshark is not installed and could not be installed (needs root \
                          and apt-get); install Wireshark's tshark or set TSHARK=/path"
                    .into(),
            ),
        }
    });
    match found {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn runs(tshark: &Path) -> bool {
    let mut cmd = Command::new(tshark);
    cmd.arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().is_ok_and(|s| s.success())
}

fn install_tshark() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(1).map(str::to_owned)
        });
    if uid.as_deref() != Some("0") {
        eprintln!("tshark missing and not running as root: not installing it");
        return;
    }
    let apt = |args: &[&str]| {
        eprintln!("running apt-get {}", args.join(" "));
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = ["install", "-y", "--no-install-recommends", "tshark"];
    if !apt(&install) {
        apt(&["update"]);
        apt(&install);
    }
}

fn tshark_cmd(pcap: &Path) -> Command {
    let mut cmd = Command::new(tshark());
    // A personal configuration directory that does not exist (tshark does not create it
    // when reading): a user's preferences or Decode As entries cannot change the result.
    let pid = std::process::id();
    let config = std::env::temp_dir().join(format!("rserpool-tshark-no-config-{pid}"));
    cmd.env("WIRESHARK_CONFIG_DIR", config);
    cmd.arg("-n").arg("-r").arg(pcap);
    for pref in PREFS {
        cmd.arg("-o").arg(pref);
    }
    cmd
}

fn run(mut cmd: Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("spawn tshark");
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        status.success(),
        "tshark failed ({status}): {stderr}\ncommand: {cmd:?}"
    );
    String::from_utf8(stdout).expect("tshark output is UTF-8")
}

/// What tshark made of one frame.
#[derive(Debug, Default)]
struct Dissected {
    protocols: String,
    /// (Message Type, Message Length) of every ASAP / ENRP message in the frame, outer
    /// first.
    asap: Vec<(u8, u16)>,
    enrp: Vec<(u8, u16)>,
    /// Checksum status of IPv4 and of TCP or SCTP; 1 is "Good" (epan/proto.h
    /// PROTO_CHECKSUM_E_GOOD), anything else means unverified or bad.
    ip_checksum: Vec<u32>,
    l4_checksum: Vec<u32>,
    /// `_ws.malformed` / `_ws.short` / `_ws.unreassembled`: a dissector threw. These are
    /// not listed in `frame.protocols`, so they are asked for as fields.
    malformed: String,
    severities: Vec<u32>,
    expert: String,
}

impl Dissected {
    fn summary(&self) -> String {
        let list = |ms: &[(u8, u16)]| -> Vec<String> {
            ms.iter()
                .map(|(t, l)| format!("type {t:#04x} length {l}"))
                .collect()
        };
        let (asap, enrp) = (list(&self.asap), list(&self.enrp));
        format!("ASAP {asap:?} ENRP {enrp:?} ({})", self.protocols)
    }
}

const FIELDS: &[&str] = &[
    "frame.number",
    "frame.protocols",
    "asap.message_type",
    "asap.message_length",
    "enrp.message_type",
    "enrp.message_length",
    "ip.checksum.status",
    "tcp.checksum.status",
    "sctp.checksum.status",
    "_ws.malformed",
    "_ws.short",
    "_ws.unreassembled",
    "_ws.expert.severity",
    "_ws.expert.message", // last: free text, may contain the separator
];

fn dissect(pcap: &Path) -> BTreeMap<usize, Dissected> {
    let mut cmd = tshark_cmd(pcap);
    cmd.args(["-T", "fields", "-E", "separator=|"]);
    cmd.args(["-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    run(cmd).lines().map(parse_line).collect()
}

fn parse_line(line: &str) -> (usize, Dissected) {
    let values: Vec<&str> = line.splitn(FIELDS.len(), '|').collect();
    assert_eq!(values.len(), FIELDS.len(), "unexpected tshark line: {line}");
    let field = |name: &str| values[FIELDS.iter().position(|&f| f == name).unwrap()];
    // Integers print in decimal, or in hex for BASE_HEX fields.
    let ints = |name: &str| -> Vec<u32> {
        let parse = |v: &str| match v.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        };
        let list = field(name).split(',').filter(|v| !v.is_empty());
        list.map(|v| parse(v).unwrap_or_else(|| panic!("{name} not an integer: {line}")))
            .collect()
    };
    let messages = |proto: &str| -> Vec<(u8, u16)> {
        let types = ints(&format!("{proto}.message_type"));
        let lens = ints(&format!("{proto}.message_length"));
        let pairs = types.into_iter().zip(lens);
        pairs
            .map(|(t, l)| (u8::try_from(t).unwrap(), u16::try_from(l).unwrap()))
            .collect()
    };
    let malformed = ["_ws.malformed", "_ws.short", "_ws.unreassembled"].map(field);
    let d = Dissected {
        protocols: field("frame.protocols").to_owned(),
        asap: messages("asap"),
        enrp: messages("enrp"),
        ip_checksum: ints("ip.checksum.status"),
        l4_checksum: [ints("tcp.checksum.status"), ints("sctp.checksum.status")].concat(),
        malformed: malformed.concat(),
        severities: ints("_ws.expert.severity"),
        expert: field("_ws.expert.message").to_owned(),
    };
    (field("frame.number").parse().expect("frame number"), d)
}

fn verbose(pcap: &Path, frame: usize) -> String {
    let mut cmd = tshark_cmd(pcap);
    cmd.args(["-V", "-x", "-Y", &format!("frame.number=={frame}")]);
    run(cmd)
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
