//! Connection security settings by Kafka's property names (`security.protocol`, `ssl.*`), parsed
//! here once for the producer and the consumer alike. Plain data: files are read when a
//! connection transport is built ([`TlsTransport`](crate::TlsTransport)), not here.

use std::fmt;
use std::path::PathBuf;

/// `security.protocol`: how bytes travel to the brokers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// `PLAINTEXT`: TCP.
    #[default]
    Plaintext,
    /// `SSL`: TLS over TCP.
    Ssl,
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
        })
    }
}

/// TLS settings (`ssl.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// `ssl.ca.location`: a PEM file of CA certificates to trust instead of the system roots.
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: the client certificate chain (PEM), for mutual TLS.
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: the client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1,
    /// unencrypted).
    pub key_location: Option<PathBuf>,
    /// Whether the broker's certificate must match the host name connected to
    /// (`ssl.endpoint.identification.algorithm=https`, the default; `""` turns it off).
    pub verify_host_name: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self { ca_location: None, certificate_location: None, key_location: None, verify_host_name: true }
    }
}

impl TlsSettings {
    /// Trusts the CA certificates of this PEM file instead of the system roots.
    pub fn ca_location(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_location = Some(path.into());
        self
    }

    /// Presents this client certificate chain and key (PEM files) to brokers that ask.
    pub fn client_certificate(mut self, certificate: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.certificate_location = Some(certificate.into());
        self.key_location = Some(key.into());
        self
    }

    /// DANGER: accepts a broker certificate issued for any host name, as long as its chain is
    /// trusted. Anyone holding any certificate from the trusted CAs can then impersonate the
    /// brokers. Kafka's `ssl.endpoint.identification.algorithm=""`.
    pub fn danger_accept_any_host_name(mut self) -> Self {
        self.verify_host_name = false;
        self
    }
}

/// The security settings of a client: the protocol and, for `SSL`, the TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// `security.protocol`. Default `PLAINTEXT`.
    pub protocol: SecurityProtocol,
    /// The `ssl.*` settings, used when `protocol` is `SSL`.
    pub tls: TlsSettings,
}

/// A security property with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value `{value}` for `{key}`: {reason}")]
pub struct InvalidSecurityProperty {
    /// The property name.
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// The property names [`SecurityConfig::set`] knows.
pub const SECURITY_PROPERTIES: [&str; 6] = [
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.password",
];

impl SecurityConfig {
    /// TLS with these settings (`security.protocol=SSL`).
    pub fn tls(settings: TlsSettings) -> Self {
        Self { protocol: SecurityProtocol::Ssl, tls: settings }
    }

    /// Sets one property by its Kafka name. `Ok(false)`: not a security property (the caller
    /// looks further); `Ok(true)`: set.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, InvalidSecurityProperty> {
        let bad = |key: &'static str, reason: &str| InvalidSecurityProperty {
            key,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let path = |key: &'static str| {
            let v = value.trim();
            if v.is_empty() { Err(bad(key, "expected a file path")) } else { Ok(Some(PathBuf::from(v))) }
        };
        match key.trim() {
            "security.protocol" => {
                self.protocol = match value.trim().to_ascii_uppercase().as_str() {
                    "PLAINTEXT" => SecurityProtocol::Plaintext,
                    "SSL" => SecurityProtocol::Ssl,
                    "SASL_PLAINTEXT" | "SASL_SSL" => {
                        return Err(bad("security.protocol", "SASL is not supported yet: use PLAINTEXT or SSL"));
                    }
                    _ => return Err(bad("security.protocol", "expected PLAINTEXT or SSL")),
                };
            }
            "ssl.ca.location" => self.tls.ca_location = path("ssl.ca.location")?,
            "ssl.certificate.location" => self.tls.certificate_location = path("ssl.certificate.location")?,
            "ssl.key.location" => self.tls.key_location = path("ssl.key.location")?,
            "ssl.endpoint.identification.algorithm" => {
                self.tls.verify_host_name = match value.trim() {
                    v if v.eq_ignore_ascii_case("https") => true,
                    "" => false,
                    _ => return Err(bad("ssl.endpoint.identification.algorithm", "expected `https` or empty")),
                };
            }
            "ssl.key.password" => {
                return Err(bad(
                    "ssl.key.password",
                    "encrypted private keys are not supported: give an unencrypted key",
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the rules between settings: a client key and certificate come together.
    pub fn validate(&self) -> Result<(), InvalidSecurityProperty> {
        let t = &self.tls;
        match (&t.certificate_location, &t.key_location) {
            (Some(_), None) => Err(InvalidSecurityProperty {
                key: "ssl.key.location",
                value: String::new(),
                reason: "`ssl.certificate.location` is set: its private key is needed too".into(),
            }),
            (None, Some(k)) => Err(InvalidSecurityProperty {
                key: "ssl.certificate.location",
                value: String::new(),
                reason: format!("`ssl.key.location` is set ({}): its certificate is needed too", k.display()),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_are_read() {
        let mut c = SecurityConfig::default();
        for (k, v) in [
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("ssl.certificate.location", "/c.pem"),
            ("ssl.key.location", "/k.pem"),
            ("ssl.endpoint.identification.algorithm", ""),
        ] {
            assert_eq!(c.set(k, v), Ok(true), "{k}");
        }
        assert_eq!(c.protocol, SecurityProtocol::Ssl);
        assert_eq!(c.tls.ca_location.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert!(!c.tls.verify_host_name);
        assert_eq!(c.set("ssl.endpoint.identification.algorithm", "HTTPS"), Ok(true));
        assert!(c.tls.verify_host_name);
        assert!(c.validate().is_ok());
        assert_eq!(c.set("linger.ms", "5"), Ok(false));
    }

    #[test]
    fn sasl_and_bad_values_are_rejected_by_name() {
        let mut c = SecurityConfig::default();
        for p in ["SASL_SSL", "sasl_plaintext"] {
            let e = c.set("security.protocol", p).unwrap_err();
            assert!(e.reason.contains("not supported yet"), "{e}");
        }
        assert_eq!(c.set("security.protocol", "TLS").unwrap_err().key, "security.protocol");
        assert_eq!(c.set("ssl.endpoint.identification.algorithm", "dns").unwrap_err().key.len(), 37);
        assert_eq!(c.set("ssl.ca.location", " ").unwrap_err().key, "ssl.ca.location");
        assert_eq!(c.set("ssl.key.password", "x").unwrap_err().key, "ssl.key.password");
        assert_eq!(c.protocol, SecurityProtocol::Plaintext);
        c.set("ssl.certificate.location", "/c.pem").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "ssl.key.location");
    }
}
