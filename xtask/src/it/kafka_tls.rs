//! `kafka/tls`: krab over Kafka's SSL listeners. The cluster runs with `KafkaOptions::tls`: an
//! `SSL` listener and an `MTLS` listener (`ssl.client.auth=required`) beside PLAINTEXT, with a
//! CA and certificates made by rcgen at start (the broker certificate names `localhost` only).
//!
//! - Over TLS and over mTLS, krab produces records and its consumer reads them back: every
//!   acknowledged (partition, offset) holds exactly the key and value sent, nothing else.
//! - A wrong CA, a wrong host name (`127.0.0.1` for a `localhost` certificate) and a missing
//!   client certificate each fail `Producer::connect` (and `Consumer::connect`) with the typed TLS
//!   error within one TCP connection, counted by a TCP forwarder in front of node 1's listener
//!   (the suite's fault proxies parse Kafka frames and so stay off the TLS listeners).

use super::kafka_support::{KafkaCtx, kctl};
use super::support::ms;
use anyhow::{Context, Result, bail, ensure};
use krab_consumer::{Consumer, ConsumerConfig, Offset};
use krab_producer::{ErrorKind, Producer, ProducerConfig, Record, SecurityConfig, TlsFailureKind, TlsSettings};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;
const RECORDS: usize = 3000;

/// Forwards TCP connections from a loopback port to `127.0.0.1:upstream`, counting them.
pub(super) struct Counting {
    /// The port to connect to.
    pub(super) port: u16,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    pub(super) async fn start(upstream: u16) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
            }
        });
        Ok(Self { port, accepted, task })
    }

    /// Connections accepted since the last call.
    pub(super) fn take(&self) -> u64 {
        self.accepted.swap(0, Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn producer_config(bootstrap: &str, tls: TlsSettings) -> Result<ProducerConfig> {
    secured_producer_config(bootstrap, SecurityConfig::tls(tls))
}

/// A producer config for a secured listener.
pub(super) fn secured_producer_config(bootstrap: &str, security: SecurityConfig) -> Result<ProducerConfig> {
    let mut c = ProducerConfig::new(bootstrap)?.security(security);
    c.client_id = "krab-it-tls".into();
    c.request_timeout = Duration::from_secs(10);
    Ok(c)
}

/// Produces `RECORDS` keyed records and reads them back with krab's consumer, over the same
/// settings; checks that every acknowledged offset holds exactly its record.
async fn round_trip(ctx: &KafkaCtx<'_>, bootstrap: &str, tls: TlsSettings, topic: &str) -> Result<String> {
    secured_round_trip(ctx, bootstrap, SecurityConfig::tls(tls), topic).await
}

/// [`round_trip`] with any security settings.
pub(super) async fn secured_round_trip(
    ctx: &KafkaCtx<'_>,
    bootstrap: &str,
    security: SecurityConfig,
    topic: &str,
) -> Result<String> {
    let name = topic.to_string();
    kctl(&ctx.kafka, move |k| k.create_topic(&name, PARTITIONS, 3, &[]).map(|_| ())).await?;
    let started = Instant::now();
    let producer =
        Producer::connect(secured_producer_config(bootstrap, security.clone())?).await.context("producer connect")?;
    let topic_name: Arc<str> = topic.into();
    let mut futures = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        futures
            .push(producer.send(Record::new(topic_name.clone(), format!("tls-value-{i}")).key(format!("k{i}"))).await?);
    }
    let mut expected = BTreeMap::new();
    for (i, f) in futures.into_iter().enumerate() {
        let m = f.await.with_context(|| format!("record {i}"))?;
        ensure!(expected.insert((m.partition, m.offset), (format!("k{i}"), format!("tls-value-{i}"))).is_none());
    }
    producer.close(Duration::from_secs(10)).await?;
    let produced = started.elapsed();

    let config = ConsumerConfig::new(bootstrap)?
        .security(security)
        .client_id("krab-it-tls")
        .request_timeout(Duration::from_secs(10));
    let mut consumer = Consumer::connect(config).await.context("consumer connect")?;
    consumer.assign((0..PARTITIONS).map(|p| (krab_consumer::TopicPartition::new(topic, p), Offset::Earliest)));
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < RECORDS {
        ensure!(Instant::now() < deadline, "read back {} of {RECORDS} records in 60 s", got.len());
        let Ok(batch) = tokio::time::timeout(Duration::from_millis(200), consumer.poll_batch(500)).await else {
            continue;
        };
        for rec in batch?.into_iter().flat_map(|b| b.records) {
            let text = |b: &Option<bytes::Bytes>| b.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
            let record = (text(&rec.key).unwrap_or_default(), text(&rec.value).unwrap_or_default());
            if got.insert((rec.partition, rec.offset), record).is_some() {
                bail!("partition {} offset {} was read twice", rec.partition, rec.offset);
            }
        }
    }
    ensure!(got == expected, "the records read back differ from those acknowledged");
    Ok(format!("{RECORDS} records produced in {} and read back exactly in {}", ms(produced), ms(started.elapsed())))
}

/// What a failed connect showed: the TLS failure kind and how long it took.
async fn failure(what: &str, config: ProducerConfig, counting: &Counting, want: TlsFailureKind) -> Result<String> {
    counting.take();
    let started = Instant::now();
    let err = match Producer::connect(config).await {
        Ok(p) => {
            p.close(Duration::from_secs(5)).await.ok();
            bail!("{what}: the producer connected");
        }
        Err(e) => e,
    };
    let took = started.elapsed();
    let connections = counting.take();
    ensure!(err.kind() == ErrorKind::Tls(want), "{what}: expected a TLS error of kind {want:?}, got {err:#}");
    ensure!(!err.is_retriable(), "{what}: a TLS failure must not be retriable: {err}");
    ensure!(err.to_string().contains("TLS with broker bootstrap at"), "{what}: the error names no broker: {err}");
    ensure!(connections == 1, "{what}: {connections} TCP connections, expected one ({err})");
    ensure!(took < Duration::from_secs(5), "{what}: took {}", ms(took));
    let detail = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<krab_cluster::ClusterError>())
        .and_then(|c| c.tls_failure())
        .map(|f| f.detail.to_string())
        .unwrap_or_default();
    Ok(format!("{what} → {want:?} in {} (1 connection; {detail})", ms(took)))
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let kafka = &ctx.kafka;
    let (Some(ssl), Some(mtls), Some(files), Some((ssl_port, mtls_port))) =
        (kafka.tls_bootstrap(), kafka.mtls_bootstrap(), kafka.tls_files(), kafka.tls_ports())
    else {
        bail!("the cluster was started without TLS listeners (KafkaOptions::tls)");
    };
    let pid = std::process::id();
    let trusted = TlsSettings::default().ca_location(&files.ca);
    let with_cert = trusted.clone().client_certificate(&files.client_cert, &files.client_key);

    let tls = round_trip(ctx, &ssl, trusted.clone(), &format!("krab-it-tls-{pid}")).await.context("over TLS")?;
    let mtls_done =
        round_trip(ctx, &mtls, with_cert.clone(), &format!("krab-it-mtls-{pid}")).await.context("over mTLS")?;

    let to_ssl = Counting::start(ssl_port).await?;
    let to_mtls = Counting::start(mtls_port).await?;
    let wrong_ca = failure(
        "wrong CA",
        producer_config(&format!("localhost:{}", to_ssl.port), TlsSettings::default().ca_location(&files.other_ca))?,
        &to_ssl,
        TlsFailureKind::UnknownCa,
    )
    .await?;
    let wrong_name = failure(
        "wrong host name (127.0.0.1, certificate for localhost)",
        producer_config(&format!("127.0.0.1:{}", to_ssl.port), trusted.clone())?,
        &to_ssl,
        TlsFailureKind::HostNameMismatch,
    )
    .await?;
    let no_cert = failure(
        "no client certificate at the mTLS listener",
        producer_config(&format!("localhost:{}", to_mtls.port), trusted.clone())?,
        &to_mtls,
        TlsFailureKind::ClientCertificateRejected,
    )
    .await?;
    // The consumer reports the same typed failure.
    to_mtls.take();
    let config = ConsumerConfig::new(&format!("localhost:{}", to_mtls.port))?.security(SecurityConfig::tls(trusted));
    match Consumer::connect(config).await {
        Err(e) if e.kind() == krab_consumer::ErrorKind::Tls(TlsFailureKind::ClientCertificateRejected) => {}
        Err(e) => bail!("consumer without a client certificate: expected the typed TLS error, got {e:#}"),
        Ok(_) => bail!("consumer without a client certificate connected"),
    }
    ensure!(to_mtls.take() == 1, "the consumer's failed connect used more than one connection");
    // The opt-out accepts the name mismatch (and still checks the chain, as the hermetic tests show).
    let p = Producer::connect(producer_config(
        &format!("127.0.0.1:{}", to_ssl.port),
        TlsSettings::default().ca_location(&files.ca).danger_accept_any_host_name(),
    )?)
    .await
    .context("danger_accept_any_host_name by 127.0.0.1")?;
    p.close(Duration::from_secs(5)).await?;
    Ok(format!("TLS: {tls}; mTLS: {mtls_done}; {wrong_ca}; {wrong_name}; {no_cert}"))
}
