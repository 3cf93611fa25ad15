//! SASL authentication: the mechanisms (sans I/O, [`mechanism`]), the exchange over a broker
//! connection (SaslHandshake v1, then SaslAuthenticate frames, KIP-152) and the settings.
//!
//! [`Broker::connect`](crate::Broker::connect) authenticates right after ApiVersions when the
//! connection's [`ConnectionConfig::sasl`](crate::ConnectionConfig::sasl) is set, and again on
//! the same connection before the session lifetime the broker gave ends (KIP-368).

mod exchange;
mod mechanism;
mod oauth;

pub(crate) use exchange::{Reauth, authenticate};
pub use oauth::{OAuthToken, TokenFuture, TokenProvider, UnsecuredJwt};

use std::fmt;
use std::sync::Arc;

/// `sasl.mechanism`: how the client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`: user name and password in the clear (use it over TLS only).
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677): the password never crosses the wire.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628, KIP-255): a bearer token from a [`TokenProvider`].
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of this name (case-insensitive), if krab has it.
    pub fn from_name(name: &str) -> Option<Self> {
        [SaslMechanism::Plain, SaslMechanism::ScramSha256, SaslMechanism::ScramSha512, SaslMechanism::OAuthBearer]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A secret (a password, a token): its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Arc::from(secret.into()))
    }

    /// The secret itself, for the code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// The SASL settings of a connection: a mechanism and its credentials.
#[derive(Clone)]
#[non_exhaustive]
pub struct SaslConfig {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// `sasl.username` (PLAIN, SCRAM).
    pub username: String,
    /// `sasl.password` (PLAIN, SCRAM).
    pub password: Secret,
    /// Where OAUTHBEARER tokens come from.
    pub token_provider: Option<Arc<dyn TokenProvider>>,
}

impl SaslConfig {
    /// PLAIN with this user name and password.
    pub fn plain(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::with_password(SaslMechanism::Plain, username, password)
    }

    /// SCRAM-SHA-256 with this user name and password.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::with_password(SaslMechanism::ScramSha256, username, password)
    }

    /// SCRAM-SHA-512 with this user name and password.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::with_password(SaslMechanism::ScramSha512, username, password)
    }

    /// OAUTHBEARER with tokens from `provider` (asked again at each re-authentication).
    pub fn oauthbearer(provider: impl TokenProvider) -> Self {
        Self {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: Secret::new(""),
            token_provider: Some(Arc::new(provider)),
        }
    }

    fn with_password(mechanism: SaslMechanism, username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self { mechanism, username: username.into(), password: password.into(), token_provider: None }
    }
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("token_provider", &self.token_provider.as_ref().map(|_| "..."))
            .finish()
    }
}

impl PartialEq for SaslConfig {
    fn eq(&self, other: &Self) -> bool {
        self.mechanism == other.mechanism
            && self.username == other.username
            && self.password == other.password
            && match (&self.token_provider, &other.token_provider) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for SaslConfig {}

/// Why SASL authentication with a broker failed. Not retriable: `connect` returns it after one
/// attempt, and a broker that refused it stays in backoff with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SASL {mechanism} authentication failed: {message}")]
pub struct AuthFailure {
    /// The mechanism tried.
    pub mechanism: SaslMechanism,
    /// The broker's error code, when it answered with one (SASL_AUTHENTICATION_FAILED,
    /// UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE).
    pub code: Option<krab_protocol::error_code::ErrorCode>,
    /// What went wrong, in the broker's words where it gave some.
    pub message: Arc<str>,
}

impl AuthFailure {
    pub(crate) fn new(mechanism: SaslMechanism, message: impl Into<Arc<str>>) -> Self {
        Self { mechanism, code: None, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_display() {
        let c = SaslConfig::scram_sha512("alice", "hunter2-very-secret");
        let shown = format!("{c:?} {} {:?}", c.password, c.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("ScramSha512"), "{shown}");
        assert_eq!(c.password.expose(), "hunter2-very-secret");
    }

    #[test]
    fn mechanisms_by_name() {
        assert_eq!(SaslMechanism::from_name("scram-sha-256"), Some(SaslMechanism::ScramSha256));
        assert_eq!(SaslMechanism::from_name(" OAUTHBEARER "), Some(SaslMechanism::OAuthBearer));
        assert_eq!(SaslMechanism::from_name("GSSAPI"), None);
        for m in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
            assert_eq!(SaslMechanism::from_name(m.name()), Some(m));
        }
    }
}
