//! Connection security settings by Kafka's property names (`security.protocol`, `ssl.*`,
//! `sasl.*`), parsed here once for the producer and the consumer alike. Plain data: files are
//! read when a connection transport is built ([`TlsTransport`](crate::TlsTransport)), not here.

use crate::sasl::{SaslConfig, SaslMechanism, Secret, TokenProvider, UnsecuredJwt};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// `security.protocol`: how bytes travel to the brokers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// `PLAINTEXT`: TCP.
    #[default]
    Plaintext,
    /// `SSL`: TLS over TCP.
    Ssl,
    /// `SASL_PLAINTEXT`: SASL authentication over TCP.
    SaslPlaintext,
    /// `SASL_SSL`: SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections authenticate with SASL.
    pub fn is_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    /// Whether connections use TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
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

/// The `sasl.*` settings as given, checked together by [`SecurityConfig::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SaslSettings {
    /// `sasl.mechanism` (librdkafka's `sasl.mechanisms` too).
    pub mechanism: Option<SaslMechanism>,
    /// `sasl.username`.
    pub username: Option<String>,
    /// `sasl.password`.
    pub password: Option<Secret>,
    /// `sasl.oauthbearer.config` with `enable.sasl.oauthbearer.unsecure.jwt=true`: unsecured JWTs.
    pub unsecured_jwt: Option<UnsecuredJwt>,
    /// `enable.sasl.oauthbearer.unsecure.jwt`.
    pub unsecure_jwt_enabled: bool,
    /// A token provider given in code ([`SecurityConfig::sasl`]).
    pub token_provider: Option<TokenProviderRef>,
}

/// A shared [`TokenProvider`], compared by identity.
#[derive(Clone)]
pub struct TokenProviderRef(pub Arc<dyn TokenProvider>);

impl fmt::Debug for TokenProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider")
    }
}

impl PartialEq for TokenProviderRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TokenProviderRef {}

/// The security settings of a client: the protocol, the TLS settings (`SSL`, `SASL_SSL`) and
/// the SASL settings (`SASL_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// `security.protocol`. Default `PLAINTEXT`.
    pub protocol: SecurityProtocol,
    /// The `ssl.*` settings, used when `protocol` is `SSL` or `SASL_SSL`.
    pub tls: TlsSettings,
    /// The `sasl.*` settings, used when `protocol` is `SASL_PLAINTEXT` or `SASL_SSL`.
    pub sasl: SaslSettings,
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
pub const SECURITY_PROPERTIES: [&str; 13] = [
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.password",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "enable.sasl.oauthbearer.unsecure.jwt",
    "sasl.jaas.config",
];

impl SecurityConfig {
    /// TLS with these settings (`security.protocol=SSL`).
    pub fn tls(settings: TlsSettings) -> Self {
        Self { protocol: SecurityProtocol::Ssl, tls: settings, sasl: SaslSettings::default() }
    }

    /// SASL with these settings, over TLS when `tls` is given (`SASL_SSL`), else over TCP
    /// (`SASL_PLAINTEXT`).
    pub fn sasl(sasl: SaslConfig, tls: Option<TlsSettings>) -> Self {
        let protocol = if tls.is_some() { SecurityProtocol::SaslSsl } else { SecurityProtocol::SaslPlaintext };
        let password = (!sasl.password.expose().is_empty()).then(|| sasl.password.clone());
        let settings = SaslSettings {
            mechanism: Some(sasl.mechanism),
            username: (!sasl.username.is_empty()).then(|| sasl.username.clone()),
            password,
            unsecured_jwt: None,
            unsecure_jwt_enabled: false,
            token_provider: sasl.token_provider.clone().map(TokenProviderRef),
        };
        Self { protocol, tls: tls.unwrap_or_default(), sasl: settings }
    }

    /// The SASL configuration connections use: `None` unless `protocol` is `SASL_*`; an error
    /// names the missing or conflicting property.
    pub fn sasl_config(&self) -> Result<Option<SaslConfig>, InvalidSecurityProperty> {
        if !self.protocol.is_sasl() {
            return Ok(None);
        }
        let missing = |key: &'static str, reason: String| InvalidSecurityProperty { key, value: String::new(), reason };
        let s = &self.sasl;
        let mechanism = s
            .mechanism
            .ok_or_else(|| missing("sasl.mechanism", format!("required with security.protocol={}", self.protocol)))?;
        match mechanism {
            SaslMechanism::OAuthBearer => {
                let provider: Arc<dyn TokenProvider> = match (&s.token_provider, &s.unsecured_jwt) {
                    (Some(p), _) => p.0.clone(),
                    (None, Some(jwt)) if s.unsecure_jwt_enabled => Arc::new(jwt.clone()),
                    (None, Some(_)) => {
                        return Err(missing(
                            "enable.sasl.oauthbearer.unsecure.jwt",
                            "sasl.oauthbearer.config makes unsecured tokens: set this to true to use them".into(),
                        ));
                    }
                    (None, None) => {
                        return Err(missing(
                            "sasl.oauthbearer.config",
                            "OAUTHBEARER needs a token provider (in code) or unsecured tokens".into(),
                        ));
                    }
                };
                let mut c = SaslConfig::oauthbearer(UnsecuredJwt::new(""));
                c.token_provider = Some(provider);
                Ok(Some(c))
            }
            m => {
                let user = s.username.clone().filter(|u| !u.is_empty());
                let user = user.ok_or_else(|| missing("sasl.username", format!("required with {m}")))?;
                let password =
                    s.password.clone().ok_or_else(|| missing("sasl.password", format!("required with {m}")))?;
                let mut c = SaslConfig::plain(user, password);
                c.mechanism = m;
                Ok(Some(c))
            }
        }
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
                    "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
                    "SASL_SSL" => SecurityProtocol::SaslSsl,
                    _ => return Err(bad("security.protocol", "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")),
                };
            }
            k @ ("sasl.mechanism" | "sasl.mechanisms") => {
                let key = if k == "sasl.mechanism" { "sasl.mechanism" } else { "sasl.mechanisms" };
                self.sasl.mechanism = Some(SaslMechanism::from_name(value).ok_or_else(|| {
                    bad(key, "expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (GSSAPI is not supported)")
                })?);
            }
            "sasl.username" => self.sasl.username = Some(value.to_string()),
            "sasl.password" => self.sasl.password = Some(Secret::new(value)),
            "sasl.oauthbearer.config" => {
                self.sasl.unsecured_jwt =
                    Some(UnsecuredJwt::from_config(value).map_err(|e| bad("sasl.oauthbearer.config", &e))?);
            }
            "enable.sasl.oauthbearer.unsecure.jwt" => {
                self.sasl.unsecure_jwt_enabled = match value.trim() {
                    v if v.eq_ignore_ascii_case("true") => true,
                    v if v.eq_ignore_ascii_case("false") => false,
                    _ => return Err(bad("enable.sasl.oauthbearer.unsecure.jwt", "expected true or false")),
                };
            }
            "sasl.jaas.config" => {
                return Err(InvalidSecurityProperty {
                    key: "sasl.jaas.config",
                    value: "****".into(),
                    reason: "JAAS is Java's: give sasl.mechanism, sasl.username and sasl.password".into(),
                });
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

    /// Checks the rules between settings: a client key and certificate come together; `SASL_*`
    /// has a mechanism and its credentials.
    pub fn validate(&self) -> Result<(), InvalidSecurityProperty> {
        self.sasl_config()?;
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
    fn sasl_settings_are_read_and_checked_together() {
        let mut c = SecurityConfig::default();
        c.set("security.protocol", "sasl_ssl").unwrap();
        assert_eq!(c.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.validate().unwrap_err().key, "sasl.mechanism");
        c.set("sasl.mechanism", "SCRAM-SHA-512").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "sasl.username");
        c.set("sasl.username", "alice").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "sasl.password");
        c.set("sasl.password", "s3cret-s3cret").unwrap();
        let sasl = c.sasl_config().unwrap().unwrap();
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str(), sasl.password.expose()),
            (SaslMechanism::ScramSha512, "alice", "s3cret-s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        c.set("sasl.mechanisms", "OAUTHBEARER").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "sasl.oauthbearer.config");
        c.set("sasl.oauthbearer.config", "principal=admin").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "enable.sasl.oauthbearer.unsecure.jwt");
        c.set("enable.sasl.oauthbearer.unsecure.jwt", "true").unwrap();
        assert!(c.sasl_config().unwrap().unwrap().token_provider.is_some());
        assert_eq!(c.set("sasl.mechanism", "GSSAPI").unwrap_err().key, "sasl.mechanism");
        let e = c.set("sasl.jaas.config", "org.apache... password=\"x\";").unwrap_err();
        assert!(!e.to_string().contains("password=") && e.key == "sasl.jaas.config", "{e}");
        c.set("security.protocol", "SSL").unwrap();
        assert_eq!(c.sasl_config(), Ok(None));
    }

    #[test]
    fn bad_values_are_rejected_by_name() {
        let mut c = SecurityConfig::default();
        assert_eq!(c.set("security.protocol", "TLS").unwrap_err().key, "security.protocol");
        assert_eq!(c.set("ssl.endpoint.identification.algorithm", "dns").unwrap_err().key.len(), 37);
        assert_eq!(c.set("ssl.ca.location", " ").unwrap_err().key, "ssl.ca.location");
        assert_eq!(c.set("ssl.key.password", "x").unwrap_err().key, "ssl.key.password");
        assert_eq!(c.protocol, SecurityProtocol::Plaintext);
        c.set("ssl.certificate.location", "/c.pem").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "ssl.key.location");
    }
}
