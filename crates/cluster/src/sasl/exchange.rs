//! The SASL exchange over a broker connection: SaslHandshake v1 names the mechanism, then
//! SaslAuthenticate frames carry its messages (KIP-152). The broker's session lifetime (v1+)
//! says when to authenticate again on the same connection (KIP-368).

use super::mechanism::{Exchange, Step};
use super::{AuthFailure, SaslConfig, SaslMechanism};
use crate::connection::BrokerClient;
use crate::error::ClusterError;
use crate::versions::ApiVersions;
use bytes::Bytes;
use krab_protocol::error_code::ErrorCode;
use krab_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use krab_protocol::{ApiKey, Request};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// More rounds than any mechanism here needs (SCRAM has two).
const MAX_ROUNDS: usize = 8;

/// Authenticates `client` with `config`. `Ok` carries the session lifetime the broker gave, if
/// any; a refusal is [`ClusterError::Authentication`] naming the mechanism, after the round
/// trip that refused it.
pub(crate) async fn authenticate(
    client: &BrokerClient,
    versions: &ApiVersions,
    config: &SaslConfig,
    broker: &str,
    addr: &str,
) -> Result<Option<Duration>, ClusterError> {
    let mechanism = config.mechanism;
    let fail = |failure: AuthFailure| ClusterError::Authentication {
        broker: broker.to_string(),
        addr: addr.to_string(),
        failure,
    };
    let send = |request, version| send(client, broker, request, version);
    let handshake_version = versions.version_for(ApiKey::SaslHandshake)?;
    if handshake_version < 1 {
        return Err(fail(AuthFailure::new(mechanism, "the broker has no SaslHandshake v1 (KIP-152)")));
    }
    let authenticate_version = versions.version_for(ApiKey::SaslAuthenticate)?;
    let request = SaslHandshakeRequest { mechanism: mechanism.name().to_string() };
    let response = send_handshake(client, broker, &request, handshake_version).await?;
    if response.error_code != 0 {
        let code = ErrorCode::from_code(response.error_code);
        let listed = response.mechanisms.iter().any(|m| m.eq_ignore_ascii_case(mechanism.name()));
        let message = if code == ErrorCode::UnsupportedSaslMechanism && listed {
            // tansu without SASL configured answers so: it echoes the mechanism asked for.
            format!("the broker refused {mechanism} while listing it as enabled: SASL is likely not set up there")
        } else if code == ErrorCode::UnsupportedSaslMechanism {
            format!("the broker does not enable {mechanism}; it enables {}", response.mechanisms.join(", "))
        } else {
            format!("SaslHandshake refused: {code}")
        };
        return Err(fail(AuthFailure { mechanism, code: Some(code), message: message.into() }));
    }
    let token = match (&config.token_provider, mechanism) {
        (Some(provider), SaslMechanism::OAuthBearer) => match provider.token().await {
            Ok(t) => Some(t),
            Err(e) => return Err(fail(AuthFailure::new(mechanism, format!("the token provider failed: {e}")))),
        },
        (None, SaslMechanism::OAuthBearer) => {
            return Err(fail(AuthFailure::new(mechanism, "no token provider is configured")));
        }
        _ => None,
    };
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| fail(AuthFailure::new(mechanism, format!("no randomness: {e}"))))?;
    let (mut exchange, mut message) =
        Exchange::start(mechanism, &config.username, config.password.expose(), token.as_ref(), &nonce);
    for _ in 0..MAX_ROUNDS {
        let request = SaslAuthenticateRequest { auth_bytes: Bytes::from(message), ..Default::default() };
        let response = send(request, authenticate_version).await?;
        if response.error_code != 0 {
            let code = ErrorCode::from_code(response.error_code);
            let said = response.error_message.unwrap_or_default();
            let message = if said.is_empty() { code.to_string() } else { format!("{code}: {said}") };
            return Err(fail(AuthFailure { mechanism, code: Some(code), message: message.into() }));
        }
        match exchange.next(&response.auth_bytes) {
            Ok(Step::Send(next)) => message = next,
            Ok(Step::Done) => {
                let lifetime = (authenticate_version >= 1 && response.session_lifetime_ms > 0)
                    .then(|| Duration::from_millis(response.session_lifetime_ms as u64));
                return Ok(lifetime);
            }
            Err(why) => return Err(fail(AuthFailure::new(mechanism, why))),
        }
    }
    Err(fail(AuthFailure::new(mechanism, format!("no outcome after {MAX_ROUNDS} rounds"))))
}

async fn send_handshake(
    client: &BrokerClient,
    broker: &str,
    request: &SaslHandshakeRequest,
    version: i16,
) -> Result<<SaslHandshakeRequest as Request>::Response, ClusterError> {
    client.send(request, version).await.map_err(|source| ClusterError::Request {
        broker: broker.to_string(),
        api: ApiKey::SaslHandshake,
        source,
    })
}

async fn send(
    client: &BrokerClient,
    broker: &str,
    request: SaslAuthenticateRequest,
    version: i16,
) -> Result<<SaslAuthenticateRequest as Request>::Response, ClusterError> {
    client.send(&request, version).await.map_err(|source| ClusterError::Request {
        broker: broker.to_string(),
        api: ApiKey::SaslAuthenticate,
        source,
    })
}

/// Re-authentication of one connection (KIP-368). Requests hold the gate shared for their whole
/// round trip; re-authenticating holds it alone, so that no other request is written between
/// its SaslHandshake and its last SaslAuthenticate (the broker reads those as SASL frames) and
/// every earlier response has arrived. tokio's `RwLock` is fair: requests that come after a
/// waiting re-authentication queue behind it.
#[derive(Debug)]
pub(crate) struct Reauth {
    pub(crate) config: SaslConfig,
    /// When to authenticate again: between 85% and 95% of the session lifetime, as Java does.
    due: Mutex<Option<Instant>>,
    pub(crate) gate: tokio::sync::RwLock<()>,
    /// Re-authentications that succeeded.
    pub(crate) done: std::sync::atomic::AtomicU64,
}

impl Reauth {
    pub(crate) fn new(config: SaslConfig, lifetime: Option<Duration>) -> Self {
        let r = Reauth { config, due: Mutex::new(None), gate: tokio::sync::RwLock::new(()), done: Default::default() };
        r.schedule(lifetime);
        r
    }

    fn schedule(&self, lifetime: Option<Duration>) {
        let due = lifetime.map(|l| Instant::now() + l.mul_f64(0.85 + 0.1 * fastrand::f64()));
        *self.due.lock().unwrap_or_else(|p| p.into_inner()) = due;
    }

    /// Whether the session is due for re-authentication.
    pub(crate) fn is_due(&self) -> bool {
        self.due.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|d| Instant::now() >= d)
    }

    /// Re-authenticates if due (once, however many callers ask at the same time).
    pub(crate) async fn run_if_due(
        &self,
        client: &BrokerClient,
        versions: &ApiVersions,
        broker: &str,
        addr: &str,
    ) -> Result<(), ClusterError> {
        if !self.is_due() {
            return Ok(());
        }
        let _alone = self.gate.write().await;
        if !self.is_due() {
            return Ok(());
        }
        let started = Instant::now();
        match authenticate(client, versions, &self.config, broker, addr).await {
            Ok(lifetime) => {
                tracing::debug!(broker, ?lifetime, took = ?started.elapsed(), "re-authenticated");
                self.schedule(lifetime);
                self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Whatever happened, this connection's session cannot be trusted to continue.
                tracing::debug!(broker, error = %e, "re-authentication failed; closing the connection");
                client.close();
                Err(e)
            }
        }
    }
}
