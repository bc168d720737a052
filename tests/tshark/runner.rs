//! Finding (or installing) tshark, running it, and parsing its fields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------
// Running tshark.
// ---------------------------------------------------------------------------------------

/// Wireshark expert severities (epan/proto.h PI_*); warning and error fail a frame.
pub(crate) const PI_WARN: u32 = 0x0060_0000;

/// Preferences passed on every run. Checksum verification is off by default in IP, TCP
/// and SCTP; turned on, a wrong checksum is an expert error and a right one reads "Good".
///
/// No preference is needed for ASAP over TCP: the dissector registers `tcp.port` 3863 with
/// `dissector_add_uint_with_preference`, which is on by default (`tshark -G decodes` lists
/// `tcp.port 3863 asap`). Only a user's "Decode As" entries could turn it off, and
/// `tshark_cmd` hides the user's configuration.
pub(crate) const PREFS: &[&str] = &[
    "ip.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
    "sctp.checksum:CRC 32c",
];

/// The tshark binary, installed on first use if missing. The outcome is cached, so
/// concurrent tests run apt-get at most once and all fail alike if it did not work.
pub(crate) fn tshark() -> &'static Path {
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

pub(crate) fn runs(tshark: &Path) -> bool {
    let mut cmd = Command::new(tshark);
    cmd.arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().is_ok_and(|s| s.success())
}

pub(crate) fn install_tshark() {
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

pub(crate) fn tshark_cmd(pcap: &Path) -> Command {
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

pub(crate) fn run(mut cmd: Command) -> String {
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
pub(crate) struct Dissected {
    pub(crate) protocols: String,
    /// (Message Type, Message Length) of every ASAP / ENRP message in the frame, outer
    /// first.
    pub(crate) asap: Vec<(u8, u16)>,
    pub(crate) enrp: Vec<(u8, u16)>,
    /// Checksum status of IPv4 and of TCP or SCTP; 1 is "Good" (epan/proto.h
    /// PROTO_CHECKSUM_E_GOOD), anything else means unverified or bad.
    pub(crate) ip_checksum: Vec<u32>,
    pub(crate) l4_checksum: Vec<u32>,
    /// `_ws.malformed` / `_ws.short` / `_ws.unreassembled`: a dissector threw. These are
    /// not listed in `frame.protocols`, so they are asked for as fields.
    pub(crate) malformed: String,
    pub(crate) severities: Vec<u32>,
    pub(crate) expert: String,
}

impl Dissected {
    pub(crate) fn summary(&self) -> String {
        let list = |ms: &[(u8, u16)]| -> Vec<String> {
            ms.iter()
                .map(|(t, l)| format!("type {t:#04x} length {l}"))
                .collect()
        };
        let (asap, enrp) = (list(&self.asap), list(&self.enrp));
        format!("ASAP {asap:?} ENRP {enrp:?} ({})", self.protocols)
    }
}

pub(crate) const FIELDS: &[&str] = &[
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

pub(crate) fn dissect(pcap: &Path) -> BTreeMap<usize, Dissected> {
    let mut cmd = tshark_cmd(pcap);
    cmd.args(["-T", "fields", "-E", "separator=|"]);
    cmd.args(["-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    run(cmd).lines().map(parse_line).collect()
}

pub(crate) fn parse_line(line: &str) -> (usize, Dissected) {
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

pub(crate) fn verbose(pcap: &Path, frame: usize) -> String {
    let mut cmd = tshark_cmd(pcap);
    cmd.args(["-V", "-x", "-Y", &format!("frame.number=={frame}")]);
    run(cmd)
}
