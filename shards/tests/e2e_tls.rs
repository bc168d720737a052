//! ASAP over TLS (`tls://` endpoints) end to end: a throwaway CA, server and client
//! certificates are made at test time (rcgen); clients are blocking rustls streams.
//! Counters are waited for with bounded polling, never a sleep as synchronisation.

mod common;

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rserpool::enrp::PeerAddress;
use rserpool::registrar::Transport;
use rserpool::wire::AsapMessage;
use rserpool_shards::net::ring::IoMode;
use rserpool_shards::runtime::{self, Handle};
use rserpool_shards::tls::{ClientAuth, TlsConfig, TlsFigures};
use rserpool_shards::{Endpoint, EnrpEndpoints, RuntimeConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use common::scenarios::enrp_registrar;
use common::{GUARD, Kind, assert_accepted, element, encode, registrar_config};

/// A CA and what it signed, as PEM.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, PEM.
struct Issued {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        Self { ca, ca_key }
    }

    /// A server certificate for localhost and 127.0.0.1, with `cn`.
    fn server(&self, cn: &str) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(common::LOCALHOST));
        params.distinguished_name.push(DnType::CommonName, cn);
        // A registrar shows it as a client too, when it dials a peer.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(params)
    }

    /// A client certificate whose subject common name is `cn`.
    fn client(&self, cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rserpool-tls-{}-{test}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the server's credentials (and the client CA) into `dir`.
fn write_files(dir: &Path, pki: &Pki, server: &Issued, auth: ClientAuth) -> TlsConfig {
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, &server.cert).unwrap();
    std::fs::write(&key, &server.key).unwrap();
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    TlsConfig {
        cert,
        key,
        client_ca: (auth != ClientAuth::Off).then_some(ca),
        client_auth: auth,
        peers: Vec::new(),
    }
}

/// A registrar of two shards serving ASAP on tls:// and, for comparison, tcp://.
/// Keep-alives are an hour apart, so a client only hears answers.
fn start(tls: TlsConfig) -> Handle {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut registrar = registrar_config(0x0a0b_0c0d, Duration::from_secs(3600));
    registrar.keep_alive_interval = Duration::from_secs(3600);
    let config = RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: IoMode::default(),
        asap: vec![Endpoint::Tls(any), Endpoint::Tcp(any)],
        registrar,
        seed: 7,
        announce_group: None,
    };
    runtime::start_with_tls(config, EnrpEndpoints::default(), Some(tls))
        .expect("the runtime starts")
}

/// A blocking ASAP client over TLS.
struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Client {
    /// Connects to `addr` trusting `ca`, showing `cert` if given; the handshake runs
    /// with the first message.
    fn connect(addr: SocketAddr, ca: CertificateDer<'static>, cert: Option<&Issued>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some(c) => builder
                .with_client_auth_cert(
                    vec![c.der.clone()],
                    PrivateKeyDer::from_pem_slice(c.key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(GUARD)).unwrap();
        Self {
            tls: rustls::StreamOwned::new(conn, stream),
        }
    }

    /// Sends `m` and returns the next message, or the error that ended the connection.
    fn ask(&mut self, m: &AsapMessage) -> io::Result<AsapMessage> {
        self.tls.write_all(&encode(m))?;
        self.tls.flush()?;
        self.read()
    }

    /// The next message; panics if there is none.
    fn next(&mut self) -> AsapMessage {
        self.read().expect("a message")
    }

    fn read(&mut self) -> io::Result<AsapMessage> {
        let mut msg = vec![0u8; 4];
        self.tls.read_exact(&mut msg)?;
        let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
        msg.resize(len.next_multiple_of(4).max(4), 0);
        self.tls.read_exact(&mut msg[4..])?;
        Ok(AsapMessage::decode(&msg)
            .expect("the registrar's answer decodes")
            .message)
    }

    fn register(&mut self, pool: &str, id: u32) -> io::Result<AsapMessage> {
        self.ask(&AsapMessage::Registration {
            handle: pool.into(),
            element: element(Kind::Tcp, id),
        })
    }

    fn resolve(&mut self, pool: &str) -> Vec<u32> {
        match self.ask(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: pool.into(),
            items: Some(16),
        }) {
            Ok(AsapMessage::HandleResolutionResponse {
                elements,
                error: None,
                ..
            }) => elements.iter().map(|e| e.id.0).collect(),
            other => panic!("expected a positive resolution, got {other:?}"),
        }
    }

    /// The certificate the server showed.
    fn server_cert(&self) -> CertificateDer<'static> {
        self.tls.conn.peer_certificates().unwrap()[0].clone()
    }
}

/// Polls the registrar's TLS counters until `check` holds (bounded by [`GUARD`]).
fn wait_figures(handle: &Handle, what: &str, check: impl Fn(&TlsFigures) -> bool) -> TlsFigures {
    let end = Instant::now() + GUARD;
    loop {
        let f = handle.tls_figures().expect("TLS is configured");
        if check(&f) {
            return f;
        }
        assert!(Instant::now() < end, "gave up waiting: {what} ({f:?})");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_tls_client_registers_and_another_resolves() {
    let pki = Pki::new("test CA");
    let dir = scratch("basic");
    let handle = start(write_files(
        &dir,
        &pki,
        &pki.server("registrar"),
        ClientAuth::Off,
    ));
    let addr = handle.tls_addr().expect("a tls:// endpoint");

    let mut pe = Client::connect(addr, pki.ca_der(), None);
    assert_accepted(&pe.register("tls-pool", 7).unwrap(), 7);
    let mut pu = Client::connect(addr, pki.ca_der(), None);
    assert_eq!(pu.resolve("tls-pool"), vec![7]);
    let f = handle.tls_figures().unwrap();
    assert_eq!((f.handshakes, f.handshake_failures), (2, 0), "{f:?}");
    assert_eq!(f.client_certificates, 0);

    // Two requests in one record, then one cut over two records: the framing inside
    // TLS keeps what is not whole yet.
    let resolution = encode(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: "tls-pool".into(),
        items: Some(4),
    });
    let twice = [resolution.as_slice(), resolution.as_slice()].concat();
    pu.tls.write_all(&twice).unwrap();
    pu.tls.flush().unwrap();
    let (head, tail) = resolution.split_at(6);
    pu.tls.write_all(head).unwrap();
    pu.tls.flush().unwrap();
    pu.tls.write_all(tail).unwrap();
    pu.tls.flush().unwrap();
    for _ in 0..3 {
        match pu.next() {
            AsapMessage::HandleResolutionResponse {
                elements,
                error: None,
                ..
            } => assert_eq!(elements.len(), 1),
            other => panic!("expected a resolution response, got {other:?}"),
        }
    }

    // The metrics endpoint shows the same.
    let server = handle
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut http = TcpStream::connect(server.addr()).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("rserpool_tls_handshakes_total{result=\"ok\"} 2"),
        "{body}"
    );
    drop((pe, pu));
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plain_tcp_on_the_tls_port_is_refused_and_harms_no_one() {
    let pki = Pki::new("test CA");
    let dir = scratch("plain");
    let handle = start(write_files(
        &dir,
        &pki,
        &pki.server("registrar"),
        ClientAuth::Off,
    ));
    let addr = handle.tls_addr().unwrap();
    let mut pe = Client::connect(addr, pki.ca_der(), None);
    assert_accepted(&pe.register("mixed", 1).unwrap(), 1);

    // An ASAP registration in the clear where TLS is expected.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(GUARD)).unwrap();
    plain
        .write_all(&encode(&AsapMessage::Registration {
            handle: "mixed".into(),
            element: element(Kind::Tcp, 2),
        }))
        .unwrap();
    // At most a TLS alert comes back, then the end of the connection; never ASAP.
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        got.is_empty() || got[0] == 0x15,
        "expected nothing or a TLS alert, got {got:02x?}"
    );
    wait_figures(&handle, "the failed handshake is counted", |f| {
        f.handshake_failures == 1
    });

    // The TLS client is unharmed, and PE 2 never got in.
    assert_eq!(pe.resolve("mixed"), vec![1]);
    drop(pe);
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn required_client_certificates_refuse_a_client_without_one() {
    let pki = Pki::new("test CA");
    let stranger = Pki::new("another CA");
    let dir = scratch("mtls");
    let handle = start(write_files(
        &dir,
        &pki,
        &pki.server("registrar"),
        ClientAuth::Required,
    ));
    let addr = handle.tls_addr().unwrap();

    // No certificate: the handshake fails (in TLS 1.3 the client learns it on its
    // first read), and no registration gets through.
    let mut anonymous = Client::connect(addr, pki.ca_der(), None);
    assert!(anonymous.register("secure", 1).is_err());
    wait_figures(&handle, "the refusal is counted", |f| {
        f.handshake_failures == 1
    });
    // A certificate the configured CA did not sign: refused too.
    let forged = stranger.client("pe-1");
    let mut impostor = Client::connect(addr, pki.ca_der(), Some(&forged));
    assert!(impostor.register("secure", 1).is_err());
    wait_figures(&handle, "the second refusal is counted", |f| {
        f.handshake_failures == 2
    });

    // A signed certificate: welcome.
    let mut pe = Client::connect(addr, pki.ca_der(), Some(&pki.client("pe-1")));
    assert_accepted(&pe.register("secure", 1).unwrap(), 1);
    assert_eq!(pe.resolve("secure"), vec![1]);
    let f = handle.tls_figures().unwrap();
    assert_eq!(
        (f.handshakes, f.client_certificates, f.handshake_failures),
        (1, 1, 2),
        "{f:?}"
    );
    drop(pe);
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn optional_client_certificates_let_a_client_without_one_in() {
    let pki = Pki::new("test CA");
    let dir = scratch("optional");
    let handle = start(write_files(
        &dir,
        &pki,
        &pki.server("registrar"),
        ClientAuth::Optional,
    ));
    let addr = handle.tls_addr().unwrap();
    let mut anonymous = Client::connect(addr, pki.ca_der(), None);
    assert_accepted(&anonymous.register("open", 1).unwrap(), 1);
    let mut signed = Client::connect(addr, pki.ca_der(), Some(&pki.client("pe-2")));
    assert_accepted(&signed.register("open", 2).unwrap(), 2);
    let f = handle.tls_figures().unwrap();
    assert_eq!((f.handshakes, f.client_certificates), (2, 1), "{f:?}");
    drop((anonymous, signed));
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_serves_new_certificates_to_new_handshakes_and_keeps_old_ones_on_a_bad_file() {
    let pki = Pki::new("test CA");
    let dir = scratch("reload");
    let first = pki.server("registrar-1");
    let files = write_files(&dir, &pki, &first, ClientAuth::Off);
    let handle = start(files.clone());
    let addr = handle.tls_addr().unwrap();

    let mut before = Client::connect(addr, pki.ca_der(), None);
    assert_accepted(&before.register("reload", 1).unwrap(), 1);
    assert_eq!(before.server_cert(), first.der);

    let second = pki.server("registrar-2");
    std::fs::write(&files.cert, &second.cert).unwrap();
    std::fs::write(&files.key, &second.key).unwrap();
    handle.reload_tls().unwrap().expect("the reload succeeds");
    let mut after = Client::connect(addr, pki.ca_der(), None);
    assert_eq!(after.resolve("reload"), vec![1]);
    assert_eq!(after.server_cert(), second.der);
    // The connection made before keeps working.
    assert_eq!(before.resolve("reload"), vec![1]);

    // A key that does not fit the certificate: refused, named, and the second
    // certificate stays in force.
    std::fs::write(&files.key, pki.server("other").key).unwrap();
    let err = handle.reload_tls().unwrap().unwrap_err().to_string();
    assert!(err.contains("key.pem"), "{err}");
    let mut later = Client::connect(addr, pki.ca_der(), None);
    assert_eq!(later.resolve("reload"), vec![1]);
    assert_eq!(later.server_cert(), second.der);
    let f = handle.tls_figures().unwrap();
    assert_eq!((f.reloads, f.reload_failures), (1, 1), "{f:?}");
    drop((before, after, later));
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_credentials_are_a_start_up_error_naming_the_file() {
    let pki = Pki::new("test CA");
    let dir = scratch("bad");
    let files = write_files(&dir, &pki, &pki.server("registrar"), ClientAuth::Off);
    let starts = |tls: TlsConfig| {
        let config = RuntimeConfig {
            shards: 1,
            pin_cores: false,
            io_mode: IoMode::default(),
            asap: vec![Endpoint::Tls("127.0.0.1:0".parse().unwrap())],
            registrar: registrar_config(1, Duration::from_secs(3600)),
            seed: 7,
            announce_group: None,
        };
        runtime::start_with_tls(config, EnrpEndpoints::default(), Some(tls))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let missing = TlsConfig {
        cert: dir.join("missing.pem"),
        ..files.clone()
    };
    let err = starts(missing);
    assert!(err.contains("missing.pem"), "{err}");

    let other = dir.join("other-key.pem");
    std::fs::write(&other, pki.server("other").key).unwrap();
    let err = starts(TlsConfig {
        key: other,
        ..files.clone()
    });
    assert!(
        err.contains("cert.pem") && err.contains("other-key.pem"),
        "{err}"
    );

    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let err = starts(TlsConfig { key: junk, ..files });
    assert!(err.contains("junk.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The binary rereads its credentials on SIGHUP: a handshake after it sees the new
/// certificate.
#[test]
fn sighup_reloads_the_certificate_of_the_binary() {
    let pki = Pki::new("test CA");
    let dir = scratch("sighup");
    let first = pki.server("registrar-1");
    let files = write_files(&dir, &pki, &first, ClientAuth::Off);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
        .args(["--shards", "1", "--no-pin", "--allow-loopback"])
        .args(["--asap", &format!("tls://127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .args(["--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_line = |what: &str| {
        lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no log line {what:?}"))
    };
    wait_line("registrar started");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut before = Client::connect(addr, pki.ca_der(), None);
    assert_accepted(&before.register("hup", 1).unwrap(), 1);
    assert_eq!(before.server_cert(), first.der);

    let second = pki.server("registrar-2");
    std::fs::write(&files.cert, &second.cert).unwrap();
    std::fs::write(&files.key, &second.key).unwrap();
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-HUP");
    wait_line("TLS credentials reloaded");
    let mut after = Client::connect(addr, pki.ca_der(), None);
    assert_eq!(after.resolve("hup"), vec![1]);
    assert_eq!(after.server_cert(), second.der);
    drop((before, after));

    signal("-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--peer tls://`: B dials A's tls:// ENRP endpoint, which requires client
/// certificates, showing its own certificate and checking A's against the CA; a PE
/// registered at B is then resolved at A.
#[test]
fn a_registrar_dials_a_peer_over_tls_and_they_share_pes() {
    let pki = Pki::new("scope CA");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let runtime_config = |registrar| RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: IoMode::default(),
        asap: vec![Endpoint::Tls(any)],
        registrar,
        seed: 7,
        announce_group: None,
    };
    let dir_a = scratch("peer-a");
    let files_a = write_files(
        &dir_a,
        &pki,
        &pki.server("registrar-a"),
        ClientAuth::Required,
    );
    let (config_a, _) = enrp_registrar(0x10, Kind::Tcp, Vec::new());
    let a = runtime::start_with_tls(
        runtime_config(config_a),
        EnrpEndpoints {
            listen: vec![Endpoint::Tls(any)],
            announce_group: None,
        },
        Some(files_a),
    )
    .expect("A starts");
    let a_enrp = a.enrp_endpoints()[0].addr();

    let dir_b = scratch("peer-b");
    let mut files_b = write_files(&dir_b, &pki, &pki.server("registrar-b"), ClientAuth::Off);
    files_b.client_ca = Some(dir_b.join("ca.pem"));
    files_b.peers = vec![a_enrp];
    let peer_a = PeerAddress {
        transport: Transport::Tcp,
        addr: a_enrp,
    };
    let (config_b, enrp_b) = enrp_registrar(0x20, Kind::Tcp, vec![peer_a]);
    let b =
        runtime::start_with_tls(runtime_config(config_b), enrp_b, Some(files_b)).expect("B starts");

    let mut pe = Client::connect(b.tls_addr().unwrap(), pki.ca_der(), None);
    assert_accepted(&pe.register("scope", 5).unwrap(), 5);
    let mut pu = Client::connect(a.tls_addr().unwrap(), pki.ca_der(), Some(&pki.client("pu")));
    let end = Instant::now() + GUARD;
    loop {
        let answer = pu
            .ask(&AsapMessage::HandleResolution {
                subscribe: false,
                handle: "scope".into(),
                items: Some(4),
            })
            .unwrap();
        if let AsapMessage::HandleResolutionResponse {
            elements,
            error: None,
            ..
        } = &answer
            && elements.iter().any(|e| e.id.0 == 5)
        {
            break;
        }
        assert!(Instant::now() < end, "A never resolved B's PE: {answer:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A saw two certified clients: B (its ENRP connection) and the PU.
    let f = a.tls_figures().unwrap();
    assert_eq!(f.client_certificates, 2, "{f:?}");
    drop((pe, pu));
    b.shutdown().unwrap();
    a.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}
