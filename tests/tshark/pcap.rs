//! The capture: checksums, IPv4/SCTP/TCP packet builders and a classic libpcap file.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Frame, Proto};

// ---------------------------------------------------------------------------------------
// Checksums.
// ---------------------------------------------------------------------------------------

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), as SCTP uses it (RFC 9260 App. A).
pub(crate) fn crc32c(data: &[u8]) -> u32 {
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
pub(crate) fn inet_checksum(parts: &[&[u8]]) -> u16 {
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

pub(crate) const PR: [u8; 4] = [192, 0, 2, 1];
pub(crate) const PEER_PR: [u8; 4] = [192, 0, 2, 2];
pub(crate) const PE: [u8; 4] = [192, 0, 2, 10];
pub(crate) const PORT_ASAP: u16 = 3863;
pub(crate) const PORT_ENRP: u16 = 9901;
/// No Wireshark dissector is registered on it, so port-based lookup only finds ours.
pub(crate) const EPHEMERAL_PORT: u16 = 49152;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_SCTP: u8 = 132;

pub(crate) fn ipv4(id: u16, src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
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
pub(crate) struct SctpAssoc {
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) vtag: u32,
    pub(crate) tsn: u32,
    pub(crate) ssn: u16,
}

impl SctpAssoc {
    /// One IPv4 packet: common header + one unfragmented DATA chunk on stream 0.
    pub(crate) fn data(&mut self, ip_id: u16, ppid: u32, payload: &[u8]) -> Vec<u8> {
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

pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;

/// One side of a TCP connection: address, port and next sequence number.
#[derive(Clone, Copy)]
pub(crate) struct TcpEnd {
    pub(crate) ip: [u8; 4],
    pub(crate) port: u16,
    pub(crate) seq: u32,
}

/// A client→server TCP connection with its handshake. Wireshark 4.0 dissects ASAP and
/// raises no expert item even without the SYNs (checked with editcap), but a complete
/// stream keeps sequence analysis quiet in any version: with `tcp.no_subdissector_on_error`
/// a "previous segment not captured" error would skip ASAP altogether.
pub(crate) struct TcpConn {
    pub(crate) client: TcpEnd,
    pub(crate) server: TcpEnd,
}

pub(crate) fn tcp_segment(
    from: TcpEnd,
    to: TcpEnd,
    flags: u8,
    payload: &[u8],
    ip_id: u16,
) -> Vec<u8> {
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
    pub(crate) fn handshake(&mut self, ip_id: u16) -> [Vec<u8>; 3] {
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
    pub(crate) fn send(&mut self, ip_id: u16, payload: &[u8]) -> Vec<u8> {
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
pub(crate) const LINKTYPE_RAW: u32 = 101;

#[derive(Clone, Debug)]
pub(crate) enum Expect {
    /// A TCP handshake segment: no RSerPool payload.
    Transport,
    /// Exactly this message, alone in its SCTP DATA chunk or TCP segment.
    Message(Frame),
}

pub(crate) struct Capture {
    pub(crate) pcap: Vec<u8>,
    pub(crate) expected: Vec<Expect>,
    pub(crate) ip_id: u16,
}

impl Capture {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(2); // room for the handshake's second id
        self.ip_id
    }

    pub(crate) fn push(&mut self, packet: &[u8], expect: Expect) {
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
    pub(crate) fn of(frames: &[Frame]) -> Self {
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
pub(crate) struct TempPcap {
    pub(crate) path: PathBuf,
}

impl TempPcap {
    pub(crate) fn write(label: &str, bytes: &[u8]) -> Self {
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
