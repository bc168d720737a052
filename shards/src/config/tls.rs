//! The TLS part of the configuration: the `[tls]` section and the `--tls-*` flags,
//! checked into the files the runtime loads ([`TlsConfig`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Cli, ConfigError};
use crate::Endpoint;
use crate::tls::{ClientAuth, TlsConfig};

/// `[tls]` as written; see deploy/registrar.toml for each key and its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub client_auth: Option<String>,
}

/// The TLS credentials' files, checked for consistency (not read: the runtime loads
/// them at start). Needed when an endpoint is tls://; ignored, with a warning, otherwise.
pub(super) fn settings(
    cli: &Cli,
    t: &TlsSection,
    asap: &[Endpoint],
    enrp: &[Endpoint],
    peers: &[String],
) -> Result<Option<crate::tls::TlsConfig>, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let cert = cli.tls_cert.clone().or_else(|| t.cert.clone());
    let key = cli.tls_key.clone().or_else(|| t.key.clone());
    let client_ca = cli.tls_client_ca.clone().or_else(|| t.client_ca.clone());
    let mode = cli.tls_client_auth.as_deref().or(t.client_auth.as_deref());
    let client_auth = match (mode, &client_ca) {
        (None, None) | (Some("off"), _) => ClientAuth::Off,
        (None, Some(_)) | (Some("required"), _) => ClientAuth::Required,
        (Some("optional"), _) => ClientAuth::Optional,
        (Some(other), _) => {
            return invalid(format!(
                "TLS client auth (--tls-client-auth, tls.client_auth) must be \"off\", \"optional\" or \"required\", not {other:?}"
            ));
        }
    };
    if client_auth != ClientAuth::Off && client_ca.is_none() {
        return invalid(
            "TLS client certificates are asked for (tls.client_auth) but no CA bundle is given (--tls-client-ca, tls.client_ca)".into(),
        );
    }
    // Peers to dial over TLS; their URIs were checked with the other peers.
    let tls_peers: Vec<Endpoint> = peers
        .iter()
        .filter(|p| p.starts_with("tls://"))
        .map(|p| super::parse_uri("peer", p, None))
        .collect::<Result<_, _>>()?;
    if !tls_peers.is_empty() && client_ca.is_none() {
        return invalid(format!(
            "peer {} is dialled over TLS: a CA bundle to check its certificate is needed (--tls-client-ca, tls.client_ca)",
            tls_peers[0]
        ));
    }
    let wanted = asap
        .iter()
        .chain(enrp)
        .chain(&tls_peers)
        .find(|e| matches!(e, Endpoint::Tls(_)));
    match (cert, key, wanted) {
        (Some(cert), Some(key), _) => {
            if wanted.is_none() {
                tracing::warn!("TLS credentials are configured but no endpoint or peer is tls://");
            }
            Ok(Some(TlsConfig {
                cert,
                key,
                client_ca,
                client_auth,
                peers: tls_peers.iter().map(Endpoint::addr).collect(),
            }))
        }
        (None, None, None) => Ok(None),
        (None, _, Some(ep)) | (_, None, Some(ep)) => invalid(format!(
            "{ep} needs a certificate and a key (--tls-cert and --tls-key, or tls.cert and tls.key)"
        )),
        (Some(_), None, None) | (None, Some(_), None) => invalid(
            "TLS needs both a certificate and a key (--tls-cert and --tls-key, or tls.cert and tls.key)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{FileConfig, settings as all_settings};
    use super::*;

    fn settings_of(args: &[&str], text: &str) -> Result<Option<TlsConfig>, ConfigError> {
        let cli = Cli::parse_from(std::iter::once("x").chain(args.iter().copied()));
        let file = FileConfig::parse(text, std::path::Path::new("test.toml"))?;
        all_settings(&cli, &file, 1, 1).map(|s| s.tls)
    }

    #[test]
    fn a_tls_endpoint_takes_its_files_from_flags_or_the_file() {
        let tls = settings_of(
            &[
                "--asap",
                "tls://127.0.0.1:3864",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
            "",
        )
        .unwrap()
        .unwrap();
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.client_auth, ClientAuth::Off);
        let tls = settings_of(
            &[],
            "[asap]\nlisten = [\"tls://0.0.0.0:3864\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap()
        .unwrap();
        // A CA bundle alone asks for client certificates.
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        let tls = settings_of(
            &["--tls-client-auth", "optional"],
            "[asap]\nlisten = [\"tls://0.0.0.0:3864\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Optional);
        assert_eq!(settings_of(&[], "").unwrap(), None);
    }

    #[test]
    fn peers_dialled_over_tls_are_listed_for_the_runtime() {
        let tls = settings_of(
            &[],
            "[enrp]\nlisten = [\"tcp://127.0.0.1:9902\"]\npeers = [\"tls://192.0.2.1:9901\", \"tcp://192.0.2.2:9901\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\nclient_auth = \"off\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(tls.peers, vec!["192.0.2.1:9901".parse().unwrap()]);
        assert_eq!(tls.client_auth, ClientAuth::Off);
    }

    #[test]
    fn inconsistent_tls_settings_are_refused_with_the_key_named() {
        let err = |args: &[&str], text: &str| settings_of(args, text).unwrap_err().to_string();
        let e = err(&["--asap", "tls://127.0.0.1:3864"], "");
        assert!(
            e.contains("tls://127.0.0.1:3864") && e.contains("--tls-cert"),
            "{e}"
        );
        let e = err(
            &["--enrp", "tls://127.0.0.1:9902", "--tls-cert", "c.pem"],
            "",
        );
        assert!(e.contains("--tls-key"), "{e}");
        let e = err(
            &[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-client-auth",
                "required",
            ],
            "",
        );
        assert!(e.contains("--tls-client-ca"), "{e}");
        let e = err(&["--tls-client-auth", "sometimes"], "");
        assert!(e.contains("sometimes"), "{e}");
        let e = err(
            &[
                "--enrp",
                "tcp://127.0.0.1:9902",
                "--peer",
                "tls://127.0.0.1:9901",
            ],
            "",
        );
        assert!(
            e.contains("tls://127.0.0.1:9901") && e.contains("--tls-client-ca"),
            "{e}"
        );
        let e = err(
            &[
                "--enrp",
                "tcp://127.0.0.1:9902",
                "--peer",
                "tls://127.0.0.1:9901",
                "--tls-client-ca",
                "ca.pem",
            ],
            "",
        );
        assert!(
            e.contains("tls://127.0.0.1:9901") && e.contains("--tls-key"),
            "{e}"
        );
        let e = err(&[], "[tls]\ncertificate = \"c.pem\"\n");
        assert!(e.contains("certificate"), "{e}");
    }
}
