//! `kafka/idempotent-stall`: 5 requests in flight per partition with idempotence; a leader is
//! `SIGSTOP`ped for 40 s with `delivery.timeout.ms=30000`. Requests to it time out, the controller
//! fences it and moves its partitions, the producer retries there. Every record must end
//! acknowledged exactly once or failed with a timeout error, and no record may be in the log
//! twice — even after the frozen broker comes back and its unreplicated appends are truncated.

use super::kafka_support::{KafkaCtx, METADATA, Producing, check_log, is_timeout_error, kctl, read_back};
use super::support::producer_config;
use super::test_cluster::{Caps, require};
use anyhow::{Context, Result, bail};
use krab_producer::{Compression, Producer};
use std::time::Duration;

const TOPIC: &str = "krab-it-idempotent-stall";
const PARTITIONS: i32 = 6;

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    require(&*ctx.kafka, Caps { freeze: true, dedupes: true, counts_requests: true, ..Caps::default() })?;
    let parts = kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])).await?;
    let victim = parts.get(&0).and_then(|p| p.leader).context("partition 0 has no leader")?;
    let led: Vec<i32> = parts.iter().filter(|(_, s)| s.leader == Some(victim)).map(|(p, _)| *p).collect();
    let mut config = producer_config(&ctx.kafka.bootstrap())?;
    config.max_in_flight = 5;
    config.compression = Compression::Lz4;
    config.request_timeout = Duration::from_secs(10);
    config.delivery_timeout = Some(Duration::from_secs(30));
    config.enable_idempotence = Some(true);
    let producer = Producer::connect(config).await?;
    let run = Producing::start(producer.clone(), TOPIC, 60_000, 1_000);
    let outcome = async {
        run.wait_sent(5_000).await?;
        let before = ctx.kafka.requests(METADATA);
        kctl(&ctx.kafka, move |k| k.freeze(victim, true)).await?;
        tokio::time::sleep(Duration::from_secs(40)).await;
        kctl(&ctx.kafka, move |k| k.freeze(victim, false)).await?;
        anyhow::Ok(ctx.kafka.requests(METADATA) - before)
    }
    .await;
    let metadata = run.unless_failed(outcome)?;
    let delivered = run.finish().await?;
    producer.flush().await?;
    producer.close(Duration::from_secs(10)).await?;
    kctl(&ctx.kafka, |k| k.wait_isr_full(TOPIC, Duration::from_secs(60))).await?;
    let (records, extents, how) = read_back(ctx, TOPIC, PARTITIONS).await?;
    let check = check_log(&records, &extents, &delivered, PARTITIONS, is_timeout_error);
    if !check.problems.is_empty() {
        bail!("{}", check.problems.join("; "));
    }
    Ok(format!(
        "broker {victim} (leader of partitions {led:?}) frozen 40 s; {}; {metadata} Metadata requests during the stall; {how}",
        check.summary()
    ))
}
