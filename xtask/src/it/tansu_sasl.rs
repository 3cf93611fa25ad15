//! `tansu/sasl`: tansu advertises SaslHandshake (v0-1) and SaslAuthenticate (v0-2), but as run
//! here (no SASL configured) it refuses every mechanism: SaslHandshake answers
//! UNSUPPORTED_SASL_MECHANISM and lists only the mechanism asked for as enabled (a quirk), and a
//! SaslAuthenticate after it is ILLEGAL_SASL_STATE. krab must turn that into its typed
//! authentication error after the one round trip, naming the mechanism, with no retry rounds.

use super::support::ms;
use anyhow::{Result, bail, ensure};
use krab_cluster::{ClusterError, SaslConfig};
use krab_producer::{ErrorKind, Producer, ProducerConfig, SecurityConfig};
use krab_protocol::error_code::ErrorCode;
use std::time::{Duration, Instant};

pub(super) async fn run(bootstrap: &str) -> Result<String> {
    let mut parts = Vec::new();
    for sasl in [SaslConfig::plain("alice", "alice-secret"), SaslConfig::scram_sha512("alice", "alice-secret")] {
        let mechanism = sasl.mechanism;
        let mut config = ProducerConfig::new(bootstrap)?.security(SecurityConfig::sasl(sasl, None));
        config.request_timeout = Duration::from_secs(10);
        let started = Instant::now();
        let err = match Producer::connect(config).await {
            Ok(p) => {
                p.close(Duration::from_secs(5)).await.ok();
                bail!("{mechanism}: tansu accepted SASL (this scenario expects it to refuse)");
            }
            Err(e) => e,
        };
        let took = started.elapsed();
        ensure!(err.kind() == ErrorKind::Authentication(mechanism), "{mechanism}: got {err:#}");
        ensure!(!err.is_retriable(), "{mechanism}: not retriable: {err}");
        let failure = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<ClusterError>())
            .and_then(|c| c.auth_failure())
            .cloned();
        let Some(failure) = failure else { bail!("{mechanism}: no authentication failure in {err:#}") };
        ensure!(failure.code == Some(ErrorCode::UnsupportedSaslMechanism), "{mechanism}: {failure}");
        ensure!(took < Duration::from_secs(2), "{mechanism}: took {}", ms(took));
        parts.push(format!("{mechanism} → Authentication({mechanism}) in {} ({})", ms(took), failure.message));
    }
    Ok(parts.join("; "))
}
