//! TLS material for Kafka's SSL listeners, made with rcgen when a cluster starts with
//! `KafkaOptions::tls`: a test CA, one broker certificate for the DNS name `localhost` only
//! (so that connecting by `127.0.0.1` is a host-name mismatch), a client certificate signed by
//! the same CA (the brokers trust it for mutual TLS), and an unrelated CA (a wrong trust anchor).
//!
//! Kafka reads PEM stores (`ssl.keystore.type=PEM`): the keystore file holds the certificate and
//! an unencrypted PKCS#8 key (rcgen writes PKCS#8), the truststore file the CA certificate.

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::fs;
use std::path::{Path, PathBuf};

/// The files, all PEM.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA that signed the broker and client certificates.
    pub(crate) ca: PathBuf,
    /// A CA that signed nothing here.
    pub(crate) other_ca: PathBuf,
    /// The brokers' keystore: certificate for `localhost` and its key.
    pub(crate) broker_keystore: PathBuf,
    /// The client certificate and its key, for the mTLS listener.
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn new_leaf(ca: &Issuer<'static, KeyPair>, cn: &str, names: &[&str]) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl TlsFiles {
    /// Makes every file in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca_pem, ca) = new_ca("krab-it test CA")?;
        let (other_pem, _) = new_ca("krab-it unrelated CA")?;
        let (broker_cert, broker_key) = new_leaf(&ca, "localhost", &["localhost"])?;
        let (client_cert, client_key) = new_leaf(&ca, "krab-it-client", &["krab-it-client"])?;
        let files = Self {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            broker_keystore: dir.join("broker-keystore.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        fs::write(&files.ca, ca_pem)?;
        fs::write(&files.other_ca, other_pem)?;
        fs::write(&files.broker_keystore, format!("{broker_cert}{broker_key}"))?;
        fs::write(&files.client_cert, client_cert)?;
        fs::write(&files.client_key, client_key)?;
        Ok(files)
    }

    /// The broker settings for SSL listeners using these files; `mtls` names the listener that
    /// requires client certificates.
    pub(crate) fn server_properties(&self, mtls: &str) -> Vec<(String, String)> {
        vec![
            ("ssl.keystore.type".into(), "PEM".into()),
            ("ssl.keystore.location".into(), self.broker_keystore.display().to_string()),
            ("ssl.truststore.type".into(), "PEM".into()),
            ("ssl.truststore.location".into(), self.ca.display().to_string()),
            ("ssl.client.auth".into(), "none".into()),
            (format!("listener.name.{}.ssl.client.auth", mtls.to_ascii_lowercase()), "required".into()),
        ]
    }
}
