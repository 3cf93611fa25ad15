//! `kafka/sasl`: krab over Kafka's `SASL_SSL` listener (`KafkaOptions::sasl`): PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512 (credentials added at format by Kafka's storage tool) and
//! OAUTHBEARER with unsecured JWTs (Kafka's default validator), sessions ending after
//! `connections.max.reauth.ms`.
//!
//! - Each mechanism with the right credentials: krab produces records and reads them back.
//! - Wrong credentials for each mechanism fail `Producer::connect` with the typed
//!   authentication error naming the mechanism, not retriable, over one TCP connection (counted
//!   by a forwarder in front of node 1's listener) and within a few round trips' time.
//! - A connection outliving the session lifetime re-authenticates on the same connection and
//!   keeps working: requests every 200 ms for 2.5 session lifetimes over one connection, then one
//!   more after idling past the session's end; and a producer sending all along with every
//!   record acknowledged.

use super::kafka_support::KafkaCtx;
use super::kafka_tls::{Counting, secured_producer_config, secured_round_trip};
use super::support::ms;
use crate::brokers::kafka::{SASL_PASSWORD, SASL_REAUTH_MS, SASL_USER};
use anyhow::{Context, Result, bail, ensure};
use krab_cluster::sasl::{OAuthToken, TokenFuture, TokenProvider, UnsecuredJwt};
use krab_cluster::{Broker, BrokerAddr, ConnectionConfig, TlsTransport};
use krab_producer::{ErrorKind, Producer, Record, SaslConfig, SecurityConfig, TlsSettings};
use krab_protocol::messages::MetadataRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A provider of tokens the broker cannot parse.
struct Garbage;

impl TokenProvider for Garbage {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async { Ok(OAuthToken::new("not-a-jwt")) })
    }
}

fn mechanisms() -> Vec<SaslConfig> {
    vec![
        SaslConfig::plain(SASL_USER, SASL_PASSWORD),
        SaslConfig::scram_sha256(SASL_USER, SASL_PASSWORD),
        SaslConfig::scram_sha512(SASL_USER, SASL_PASSWORD),
        SaslConfig::oauthbearer(UnsecuredJwt::new(SASL_USER)),
    ]
}

/// A connect with wrong credentials: the typed error, one connection, quickly.
async fn refused(what: &str, sasl: SaslConfig, tls: &TlsSettings, counting: &Counting) -> Result<String> {
    let mechanism = sasl.mechanism;
    counting.take();
    let started = Instant::now();
    let bootstrap = format!("localhost:{}", counting.port);
    let config = secured_producer_config(&bootstrap, SecurityConfig::sasl(sasl, Some(tls.clone())))?;
    let err = match Producer::connect(config).await {
        Ok(p) => {
            p.close(Duration::from_secs(5)).await.ok();
            bail!("{what}: the producer connected");
        }
        Err(e) => e,
    };
    let took = started.elapsed();
    let connections = counting.take();
    ensure!(
        err.kind() == ErrorKind::Authentication(mechanism),
        "{what}: expected the authentication error of {mechanism}, got {err:#}"
    );
    ensure!(!err.is_retriable(), "{what}: an authentication failure must not be retriable: {err}");
    let text = format!("{err:#}");
    ensure!(text.contains(mechanism.name()), "{what}: the error does not name {mechanism}: {text}");
    ensure!(!text.contains(SASL_PASSWORD), "{what}: the error shows the password: {text}");
    ensure!(connections == 1, "{what}: {connections} TCP connections, expected one ({text})");
    ensure!(took < Duration::from_secs(5), "{what}: took {}", ms(took));
    let why = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<krab_cluster::ClusterError>())
        .and_then(|c| c.auth_failure())
        .map(|f| f.message.to_string())
        .unwrap_or_default();
    Ok(format!("{what} → Authentication({mechanism}) in {} (1 connection; {why})", ms(took)))
}

/// One connection through `counting`, used every 200 ms for 2.5 session lifetimes.
async fn long_lived(tls: &TlsSettings, counting: &Counting) -> Result<String> {
    counting.take();
    let transport = TlsTransport::new(tls, Duration::from_secs(10))?;
    let config = ConnectionConfig {
        client_id: Some("krab-it-sasl".into()),
        sasl: Some(SaslConfig::scram_sha512(SASL_USER, SASL_PASSWORD)),
        ..ConnectionConfig::default()
    };
    let broker = Broker::connect(transport, BrokerAddr::new("localhost", counting.port), None, config).await?;
    let lifetime = Duration::from_millis(SASL_REAUTH_MS);
    let started = Instant::now();
    let mut requests = 0u32;
    while started.elapsed() < lifetime * 5 / 2 {
        broker
            .call(|_| MetadataRequest { topics: Some(Vec::new()), ..Default::default() })
            .await
            .with_context(|| format!("request {requests} after {}", ms(started.elapsed())))?;
        requests += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Idle past the session's end: the next request re-authenticates first (Kafka takes a
    // SaslHandshake after expiry; anything else would close the connection).
    tokio::time::sleep(lifetime + Duration::from_secs(1)).await;
    broker
        .call(|_| MetadataRequest { topics: Some(Vec::new()), ..Default::default() })
        .await
        .context("the first request after idling past the session's end")?;
    requests += 1;
    let reauths = broker.reauthentications();
    let connections = counting.take();
    ensure!(connections == 1, "{connections} TCP connections for one long-lived broker connection");
    ensure!(reauths >= 3, "{reauths} re-authentications in {} of {} sessions", ms(started.elapsed()), ms(lifetime));
    Ok(format!(
        "one connection used {requests} times over {} (the last after idling past its session): {reauths} \
         re-authentications (sessions of {})",
        ms(started.elapsed()),
        ms(lifetime)
    ))
}

/// A producer sending one record every 100 ms for 2.5 session lifetimes: all acknowledged.
async fn producing_through_reauth(bootstrap: &str, tls: &TlsSettings, topic: &str) -> Result<String> {
    let sasl = SaslConfig::scram_sha256(SASL_USER, SASL_PASSWORD);
    let producer =
        Producer::connect(secured_producer_config(bootstrap, SecurityConfig::sasl(sasl, Some(tls.clone())))?)
            .await
            .context("producer connect")?;
    let topic: Arc<str> = topic.into();
    let started = Instant::now();
    let mut futures = Vec::new();
    while started.elapsed() < Duration::from_millis(SASL_REAUTH_MS) * 5 / 2 {
        futures.push(producer.send(Record::new(topic.clone(), format!("r{}", futures.len()))).await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = futures.len();
    for (i, f) in futures.into_iter().enumerate() {
        f.await.with_context(|| format!("record {i} of {n}"))?;
    }
    producer.close(Duration::from_secs(10)).await?;
    Ok(format!("{n} records sent over {} all acknowledged", ms(started.elapsed())))
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let kafka = &ctx.kafka;
    let (Some(bootstrap), Some(port), Some(files)) =
        (kafka.sasl_ssl_bootstrap(), kafka.sasl_ssl_port(), kafka.tls_files())
    else {
        bail!("the cluster was started without a SASL_SSL listener (KafkaOptions::sasl)");
    };
    let pid = std::process::id();
    let tls = TlsSettings::default().ca_location(&files.ca);
    let mut parts = Vec::new();
    for sasl in mechanisms() {
        let m = sasl.mechanism;
        let topic = format!("krab-it-sasl-{}-{pid}", m.name().to_ascii_lowercase());
        let done = secured_round_trip(ctx, &bootstrap, SecurityConfig::sasl(sasl, Some(tls.clone())), &topic)
            .await
            .with_context(|| format!("{m} over SASL_SSL"))?;
        parts.push(format!("{m}: {done}"));
    }
    let counting = Counting::start(port).await?;
    for (what, sasl) in [
        ("PLAIN, wrong password", SaslConfig::plain(SASL_USER, "wrong-password")),
        ("SCRAM-SHA-256, wrong password", SaslConfig::scram_sha256(SASL_USER, "wrong-password")),
        ("SCRAM-SHA-512, unknown user", SaslConfig::scram_sha512("mallory", SASL_PASSWORD)),
        ("OAUTHBEARER, malformed token", SaslConfig::oauthbearer(Garbage)),
    ] {
        parts.push(refused(what, sasl, &tls, &counting).await?);
    }
    parts.push(long_lived(&tls, &counting).await.context("a long-lived connection")?);
    let topic = format!("krab-it-sasl-reauth-{pid}");
    parts
        .push(producing_through_reauth(&bootstrap, &tls, &topic).await.context("producing through re-authentication")?);
    Ok(parts.join("; "))
}
