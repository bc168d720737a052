//! TLS credentials for ASAP and ENRP over TCP (`tls://` endpoints): the server's
//! certificate chain and key, the optional client-certificate check (mTLS), their reload
//! on SIGHUP, and the handshake counters. The per-connection TLS state lives in the
//! runtime ([`crate::runtime`]'s TCP side), which feeds rustls the bytes the ring received
//! and sends what rustls wrote: rustls does no I/O of its own.
//!
//! A reload builds a whole new [`rustls::ServerConfig`] from the files; new handshakes
//! use it, connections already up keep the one they started with. A file that cannot
//! be read or does not fit keeps the old configuration in force.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Whether clients (PEs, PUs, peer registrars) must show a certificate signed by the
/// configured CA bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for; no client has a TLS identity.
    Off,
    /// A certificate is asked for; a client without one is let in without an identity,
    /// one with a certificate the CA did not sign is refused.
    Optional,
    /// A client without a certificate the CA signed is refused in the handshake.
    Required,
}

/// Where the credentials are, as configured (`[tls]`, `--tls-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates (PEM); needed unless
    /// `client_auth` is [`ClientAuth::Off`].
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Peer registrars dialled over TLS (`--peer tls://ADDR:PORT`): their certificate
    /// must name the address dialled and be signed by `client_ca`; ours is shown to
    /// them as a client certificate.
    pub peers: Vec<SocketAddr>,
}

/// Why credentials could not be loaded; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("TLS file {path}: {why}")]
    Bad { path: PathBuf, why: String },
    #[error("TLS certificate {cert} and key {key} do not fit together: {why}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
}

/// Handshake and reload counts since start ([`TlsServer::figures`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsFigures {
    /// Handshakes completed: with clients on `tls://` endpoints, and with peers
    /// dialled over TLS.
    pub handshakes: u64,
    /// Of those, the ones where the client showed a verified certificate.
    pub client_certificates: u64,
    /// Handshakes that failed, either way (bad or missing client certificate, a
    /// peer's certificate the CA did not sign, not TLS at all, protocol error, peer
    /// gone mid-handshake).
    pub handshake_failures: u64,
    /// Reloads that took effect.
    pub reloads: u64,
    /// Reloads refused because a file was bad (the old credentials stayed).
    pub reload_failures: u64,
}

/// One reading of the files: what a handshake uses.
#[derive(Clone, Debug)]
struct Credentials {
    server: Arc<rustls::ServerConfig>,
    /// For peers dialled over TLS, if any.
    client: Option<Arc<rustls::ClientConfig>>,
}

/// The credentials, shared by every shard; reloadable.
#[derive(Debug)]
pub struct TlsServer {
    files: TlsConfig,
    current: RwLock<Credentials>,
    handshakes: AtomicU64,
    client_certificates: AtomicU64,
    handshake_failures: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl TlsServer {
    /// Loads the credentials; an error names the file at fault.
    pub fn load(files: TlsConfig) -> Result<Self, TlsError> {
        let config = credentials(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(config),
            handshakes: AtomicU64::new(0),
            client_certificates: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// Reads the files again (SIGHUP). New handshakes use what was read; on an error
    /// the credentials in force stay, and the error is logged and returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        match credentials(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.files.cert.display(), "TLS credentials reloaded");
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "TLS reload failed; the previous credentials stay in force");
                Err(e)
            }
        }
    }

    /// The configuration a new server handshake uses.
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .server
            .clone()
    }

    /// The client configuration for dialling `peer`, if it is a peer dialled over TLS.
    pub(crate) fn client_for(&self, peer: SocketAddr) -> Option<Arc<rustls::ClientConfig>> {
        if !self.files.peers.contains(&peer) {
            return None;
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .client
            .clone()
    }

    /// Counts a finished handshake (`verified`: the client showed a certificate).
    pub(crate) fn handshake_done(&self, verified: bool) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        if verified {
            self.client_certificates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed handshake.
    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn figures(&self) -> TlsFigures {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TlsFigures {
            handshakes: get(&self.handshakes),
            client_certificates: get(&self.client_certificates),
            handshake_failures: get(&self.handshake_failures),
            reloads: get(&self.reloads),
            reload_failures: get(&self.reload_failures),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |why: String| TlsError::Bad {
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Reads the files into the server configuration and, with peers dialled over TLS,
/// the client one: TLS 1.3 and 1.2, the ring provider.
fn credentials(files: &TlsConfig) -> Result<Credentials, TlsError> {
    let server = server_config(files)?;
    let client = if files.peers.is_empty() {
        None
    } else {
        Some(client_config(files)?)
    };
    Ok(Credentials { server, client })
}

/// Trust anchors from a PEM bundle.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Bad {
            path: path.to_owned(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| TlsError::Bad {
        path: path.to_owned(),
        why: format!("no PEM private key: {e}"),
    })
}

/// The client side, for peers dialled over TLS: their certificates are checked against
/// the CA bundle, and ours is shown.
fn client_config(files: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let Some(ca) = &files.client_ca else {
        return Err(TlsError::Bad {
            path: files.cert.clone(),
            why: "peers dialled over TLS need a CA bundle (tls.client_ca) to check them".into(),
        });
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Bad {
            path: files.cert.clone(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map(Arc::new)
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why: e.to_string(),
        })
}

/// The server side.
fn server_config(files: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Bad {
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    let builder = match (files.client_auth, &files.client_ca) {
        (ClientAuth::Off, _) => builder.with_no_client_auth(),
        (mode, ca) => {
            // The configuration check makes sure a mode other than off has a CA file.
            let Some(ca) = ca else {
                return Err(TlsError::Bad {
                    path: files.cert.clone(),
                    why: "client certificates are asked for but no CA bundle is set".into(),
                });
            };
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?.into(), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::Bad {
                path: ca.clone(),
                why: format!("no client verifier: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why: e.to_string(),
        })?;
    Ok(Arc::new(config))
}

/// The identity a verified client certificate stands for: its subject's common name,
/// else its first DNS name (subject alternative name). `None` if it has neither or
/// cannot be parsed (it was verified, so that is not expected).
pub(crate) fn identity(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    common_name(cert.subject()).or_else(|| cert.valid_dns_names().next().map(str::to_owned))
}

/// The first CN attribute (OID 2.5.4.3) of a DER Name's contents (X.501: a SEQUENCE OF
/// SET OF {OID, value}), if it is a UTF8String, PrintableString or IA5String.
fn common_name(name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut rdns = name;
    while let Some((tag, set, rest)) = tlv(rdns) {
        rdns = rest;
        if tag != 0x31 {
            continue;
        }
        let mut attrs = set;
        while let Some((tag, attr, rest)) = tlv(attrs) {
            attrs = rest;
            let Some((0x06, oid, value)) = (tag == 0x30).then(|| tlv(attr)).flatten() else {
                continue;
            };
            if oid == CN
                && let Some((0x0c | 0x13 | 0x16, text, _)) = tlv(value)
            {
                return std::str::from_utf8(text).ok().map(str::to_owned);
            }
        }
    }
    None
}

/// One DER TLV at the start of `input`: its tag, its value and what follows, or `None`
/// if it runs past the input.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_found_among_other_attributes() {
        // C=DE, CN=pe-1
        let name = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D', b'E', 0x31,
            0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04, b'p', b'e', b'-', b'1',
        ];
        assert_eq!(common_name(&name).as_deref(), Some("pe-1"));
        assert_eq!(common_name(&name[..13]), None);
    }

    #[test]
    fn the_identity_is_the_common_name_else_the_first_dns_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["pe.example".into(), "b.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pe-7");
        let cert = params.clone().self_signed(&key).unwrap();
        assert_eq!(identity(cert.der()).as_deref(), Some("pe-7"));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "operator");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(identity(cert.der()).as_deref(), Some("pe.example"));
        assert_eq!(identity(&CertificateDer::from(vec![0x30, 0x03, 1])), None);
    }

    #[test]
    fn a_truncated_name_gives_none_without_panicking() {
        let name = [
            0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04, b'p', b'e', b'-',
            b'1',
        ];
        for cut in 0..name.len() {
            assert_eq!(common_name(&name[..cut]), None, "cut at {cut}");
        }
        assert_eq!(tlv(&[0x30, 0x84, 1, 0, 0, 0]), None);
    }
}
