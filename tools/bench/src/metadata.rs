//! The `metadata` workload: Metadata requests for one topic, back-to-back, `concurrency` at a
//! time, over ONE broker connection. It measures the cluster layer's request path (encode,
//! correlate, write, read, decode) with a broker whose work per request is small.

use crate::report::{Progress, Report, measure};
use crate::{Client, Common};
use anyhow::{Context, Result, bail, ensure};
use krab_cluster::transport::parse_bootstrap;
use krab_cluster::{Cluster, ClusterConfig};
use krab_protocol::messages::MetadataRequest;
use krab_protocol::messages::metadata::MetadataRequestTopic;
use std::sync::Arc;
use std::time::Duration;

const WORKLOAD: &str = "metadata";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn run(common: &Common, topic: &str) -> Result<Report> {
    match common.client {
        Client::Krab => krab(common, topic),
        Client::Rdkafka => rdkafka(common, topic),
    }
}

fn broker_port(bootstrap: &str) -> Result<u16> {
    let addrs = parse_bootstrap(bootstrap)?;
    ensure!(addrs.len() == 1, "give exactly one bootstrap server");
    Ok(addrs[0].port)
}

/// krab: `concurrency` tasks share one `BrokerClient` (one pipelined connection).
fn krab(common: &Common, topic: &str) -> Result<Report> {
    let rt = crate::runtime(common.threads)?;
    let port = broker_port(&common.bootstrap)?;
    let mut cfg = ClusterConfig::new(parse_bootstrap(&common.bootstrap)?);
    cfg.connection.client_id = Some("krab-bench".into());
    cfg.connection.request_timeout = REQUEST_TIMEOUT;
    // Every task has one request in flight: none ever waits for a slot.
    cfg.connection.max_in_flight = common.concurrency;
    let (client, version) = rt.block_on(async {
        let cluster = Cluster::connect(cfg).await.context("connecting")?;
        // Right after bootstrap this is the bootstrap connection: the only one open.
        let broker = cluster.any_broker().await?;
        let version = broker.version_of::<MetadataRequest>()?;
        anyhow::Ok((broker.client().clone(), version))
    })?;
    let request = Arc::new(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some(topic.to_string()), ..Default::default() }]),
        // The field exists from v4 on; older versions always allow (its default).
        allow_auto_topic_creation: version < 4,
        ..Default::default()
    });
    // One request checked before the clock starts: the topic exists and has partitions.
    let first = rt.block_on(client.send(&*request, version))?;
    let t = first.topics.first().context("no topic in the Metadata response")?;
    ensure!(t.error_code == 0 && !t.partitions.is_empty(), "topic {topic}: error {} {:?}", t.error_code, t.partitions);

    let progress = Arc::new(Progress::default());
    let window = std::thread::scope(|s| {
        let measuring = s.spawn(|| measure(&progress, common.warmup, common.seconds, port));
        rt.block_on(async {
            let tasks: Vec<_> = (0..common.concurrency)
                .map(|_| {
                    let (client, request, progress) = (client.clone(), request.clone(), progress.clone());
                    tokio::spawn(async move {
                        while progress.running() {
                            match client.send(&*request, version).await {
                                Ok(_) => progress.completed(),
                                Err(e) => progress.fail(format!("Metadata v{version}: {e}")),
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                if let Err(e) = task.await {
                    progress.fail(format!("task panicked: {e}"));
                }
            }
        });
        measuring.join().unwrap_or_else(|_| bail!("the measuring thread panicked"))
    })?;
    Ok(Report {
        client: Client::Krab,
        workload: WORKLOAD,
        concurrency: common.concurrency,
        window,
        note: format!(
            "Metadata v{version}; {} tasks on a {} tokio runtime share one BrokerClient (one pipelined connection)",
            common.concurrency,
            crate::runtime_name(common.threads)
        ),
    })
}

/// librdkafka: `concurrency` OS threads call the blocking `fetch_metadata` on one client; librdkafka
/// queues their requests onto its broker thread, which pipelines them on its connection.
fn rdkafka(common: &Common, topic: &str) -> Result<Report> {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, Producer};

    let port = broker_port(&common.bootstrap)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &common.bootstrap)
        .set("client.id", "rdkafka-bench")
        .set("socket.timeout.ms", REQUEST_TIMEOUT.as_millis().to_string())
        .create()
        .context("creating the librdkafka producer")?;
    let client = producer.client();
    // One request checked before the clock starts: the topic exists and has partitions.
    let first = client.fetch_metadata(Some(topic), REQUEST_TIMEOUT).context("first Metadata")?;
    let t = first.topics().first().context("no topic in the Metadata response")?;
    ensure!(t.error().is_none() && !t.partitions().is_empty(), "topic {topic}: {:?}", t.error());

    let progress = Progress::default();
    let window = std::thread::scope(|s| {
        for _ in 0..common.concurrency {
            s.spawn(|| {
                while progress.running() {
                    match client.fetch_metadata(Some(topic), REQUEST_TIMEOUT) {
                        Ok(_) => progress.completed(),
                        Err(e) => progress.fail(format!("fetch_metadata: {e}")),
                    }
                }
            });
        }
        measure(&progress, common.warmup, common.seconds, port)
    })?;
    Ok(Report {
        client: Client::Rdkafka,
        workload: WORKLOAD,
        concurrency: common.concurrency,
        note: format!(
            "{} OS threads call the blocking fetch_metadata on one BaseProducer; librdkafka multiplexes \
             them onto its broker connection(s) ({} open)",
            common.concurrency, window.connections
        ),
        window,
    })
}
