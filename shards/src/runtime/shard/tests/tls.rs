//! `tls://` listeners seen from the registrar: a connection is shown to it only once
//! its handshake is done, with the client certificate's identity in its
//! [`ConnInfo::identity`]; one whose handshake fails is never shown, nor taken down.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::*;
use crate::tls::{ClientAuth, TlsConfig, TlsServer};

/// A CA, a server certificate for localhost and a client certificate with CN "pe-42",
/// written as PEM files; the credentials loaded with `auth`, the CA and the client's.
fn credentials(
    auth: ClientAuth,
) -> (
    Arc<TlsServer>,
    CertificateDer<'static>,
    (CertificateDer<'static>, String),
) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let issue = |params: CertificateParams| {
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &ca, &ca_key).unwrap(), key)
    };
    let (server, server_key) = issue(CertificateParams::new(vec!["localhost".into()]).unwrap());
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "pe-42");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (client, client_key) = issue(params);

    let dir: PathBuf = std::env::temp_dir().join(format!(
        "rserpool-shard-tls-{}-{auth:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsConfig {
        cert: file("cert.pem", server.pem()),
        key: file("key.pem", server_key.serialize_pem()),
        client_ca: Some(file("ca.pem", ca.pem())),
        client_auth: auth,
        peers: Vec::new(),
    };
    let loaded = Arc::new(TlsServer::load(files).unwrap());
    let _ = std::fs::remove_dir_all(dir);
    (
        loaded,
        ca.der().clone(),
        (client.der().clone(), client_key.serialize_pem()),
    )
}

/// On a thread: connects over TLS (with `cert` if given), sends `message`, and keeps
/// the connection open until the far end closes it.
fn client(
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    cert: Option<(CertificateDer<'static>, String)>,
    message: Vec<u8>,
) {
    std::thread::spawn(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![cert],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(GUARD)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, stream);
        let _ = tls.write_all(&message).and_then(|()| tls.flush());
        let mut sink = Vec::new();
        let _ = tls.read_to_end(&mut sink);
    });
}

fn ups(s: &Shard) -> Vec<ConnInfo> {
    s.ctx
        .told
        .iter()
        .filter_map(|t| match t {
            Told::Up(_, info) => Some(info.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tls_connection_comes_up_after_its_handshake_with_the_client_identity() {
    let (server, ca, cert) = credentials(ClientAuth::Optional);
    let any = "127.0.0.1:0".parse().unwrap();
    let asap = net::socket::tcp_listener(any).unwrap();
    let enrp_l = net::socket::tcp_listener(any).unwrap();
    let (asap_addr, enrp_addr) = (asap.local_addr().unwrap(), enrp_l.local_addr().unwrap());
    let mut s = shard(Sockets {
        tls: vec![
            (asap, Protocol::Asap, server.clone()),
            (enrp_l, Protocol::Enrp, server.clone()),
        ],
        ..Sockets::default()
    });

    // A peer registrar with a certificate: its ENRP message arrives decrypted, on a
    // connection that came up with its identity.
    client(enrp_addr, ca.clone(), Some(cert), enrp(7));
    s.io_until("the ENRP message arrives", |s| {
        s.ctx
            .told
            .iter()
            .any(|t| matches!(t, Told::Enrp(_, m) if *m == enrp(7)))
    });
    let up = ups(&s);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].protocol, Protocol::Enrp);
    assert_eq!(up[0].identity.as_deref(), Some("pe-42"));
    assert_eq!(up[0].local_port, enrp_addr.port());

    // A client without one (optional): up, without an identity.
    client(asap_addr, ca, None, enrp(8));
    s.io_until("the second connection comes up", |s| ups(s).len() == 2);
    let up = ups(&s);
    assert_eq!(up[1].protocol, Protocol::Asap);
    assert_eq!(up[1].identity, None);
    let f = server.figures();
    assert_eq!(
        (f.handshakes, f.client_certificates, f.handshake_failures),
        (2, 1, 0)
    );
}

#[test]
fn a_failed_handshake_is_never_shown_to_the_registrar() {
    let (server, ca, _) = credentials(ClientAuth::Required);
    let listener = net::socket::tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut s = shard(Sockets {
        tls: vec![(listener, Protocol::Asap, server.clone())],
        ..Sockets::default()
    });
    client(addr, ca, None, enrp(9));
    s.io_until("the handshake fails", |_| {
        server.figures().handshake_failures == 1
    });
    // The failure is counted as the connection closes, in the same step: neither up
    // nor down, the registrar never had it.
    assert!(s.ctx.told.is_empty(), "{:?}", s.ctx.told);
    assert_eq!(server.figures().handshake_failures, 1);
}
