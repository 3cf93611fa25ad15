//! `kafka/rf1-restart`: an RF=1 topic whose broker is `kill -9`ed and restarted 10 s later. Its
//! partition has no leader meanwhile; records buffered for it must be delivered after the restart
//! (the producer keeps polling for a leader), none lost or duplicated, while the topic's other
//! partitions keep flowing.

use super::kafka_support::{KafkaCtx, METADATA, Monitor, Producing, check_log, kctl, read_back};
use super::support::{ms, producer_config};
use super::test_cluster::{Caps, require};
use anyhow::{Context, Result, bail};
use krab_producer::Producer;
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-rf1-restart";
const PARTITIONS: i32 = 3;

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    require(&*ctx.kafka, Caps { broker_down: true, dedupes: true, counts_requests: true, ..Caps::default() })?;
    let parts = kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 1, &[("min.insync.replicas", "1")])).await?;
    let (&victim_partition, state) = parts.iter().next().context("no partitions")?;
    let victim = state.leader.context("no leader")?;
    let mut config = producer_config(&ctx.kafka.bootstrap())?;
    config.linger = Duration::from_millis(5);
    config.request_timeout = Duration::from_secs(5);
    config.delivery_timeout = Some(Duration::from_secs(60));
    let producer = Producer::connect(config).await?;
    let monitor = Monitor::start(&producer, TOPIC);
    let run = Producing::start(producer.clone(), TOPIC, 30_000, 1_000);
    let outcome = async {
        run.wait_sent(3_000).await?;
        let metadata_before = ctx.kafka.requests(METADATA);
        let killed_at = Instant::now();
        kctl(&ctx.kafka, move |k| k.kill(victim)).await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let sent_during = run.sent();
        kctl(&ctx.kafka, move |k| k.restart(victim)).await?;
        let restarted_at = Instant::now();
        anyhow::Ok((killed_at, restarted_at, sent_during, metadata_before))
    }
    .await;
    let (killed_at, restarted_at, sent_during, metadata_before) = run.unless_failed(outcome)?;
    let delivered = run.finish().await?;
    producer.flush().await?;
    let metadata = ctx.kafka.requests(METADATA) - metadata_before;
    let log = monitor.finish().await?;
    producer.close(Duration::from_secs(10)).await?;
    let first_ack_after = log
        .times
        .get(&victim_partition)
        .and_then(|t| t.iter().find(|&&at| at > restarted_at))
        .map(|&at| at - restarted_at);
    let others_gap = (0..PARTITIONS)
        .filter(|&p| p != victim_partition)
        .map(|p| log.max_gap(p, killed_at, restarted_at))
        .max()
        .unwrap_or_default();
    let (records, extents, how) = read_back(ctx, TOPIC, PARTITIONS).await?;
    let check = check_log(&records, &extents, &delivered, PARTITIONS, |_| false);
    if !check.problems.is_empty() {
        bail!("{}", check.problems.join("; "));
    }
    let Some(first_ack_after) = first_ack_after else {
        bail!("partition {victim_partition} was never acknowledged after broker {victim} came back")
    };
    Ok(format!(
        "broker {victim} (sole replica of partition {victim_partition}) down 10 s with {sent_during} records sent by then; \
         first ack after restart {}; other partitions' longest ack gap while it was down {}; {metadata} Metadata requests; \
         {}; {how}",
        ms(first_ack_after),
        ms(others_gap),
        check.summary()
    ))
}
