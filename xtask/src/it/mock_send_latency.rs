//! `producer/mock` with 500 ms of RTT: `send` (accepting into the buffer) stays fast while the
//! flush is slow.

use super::support::*;

const PARTITIONS: i32 = 12;
use crate::brokers::mock::MockCluster;
use anyhow::{Result, ensure};
use krab_producer::{Producer, Record};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) async fn send_latency(mock: &Arc<MockCluster>) -> Result<()> {
    const N: usize = 20_000;
    let topic = "krab-it-producer-latency";
    ctl(mock, move |m| m.create_topic(topic, PARTITIONS as u32, 3)).await?;
    let mut config = producer_config(mock.bootstrap())?;
    config.buffer_memory = 64 * 1024 * 1024;
    let producer = Producer::connect(config).await?;
    // Warm up: metadata for the topic and a connection to every broker.
    for p in 0..PARTITIONS {
        producer.send(Record::new(topic, "warm-up").partition(p)).await?.await?;
    }
    ctl(mock, move |m| m.set_rtt(-1, 500)).await?;
    let result = async {
        let mut latencies = Vec::with_capacity(N);
        let mut futures = Vec::with_capacity(N);
        let started = Instant::now();
        for i in 0..N {
            let record = Record::new(topic, format!("value {i:>40}")).key(format!("key-{i}"));
            let t = Instant::now();
            let f = producer.send(record).await?;
            latencies.push(t.elapsed());
            futures.push(f);
        }
        let sending = started.elapsed();
        let acked_while_sending = producer.stats().values().map(|s| s.acked).sum::<u64>() - PARTITIONS as u64;
        producer.flush().await?;
        let flushed = started.elapsed();
        for f in futures {
            f.await?;
        }
        let slow = latencies.iter().filter(|d| **d >= Duration::from_millis(1)).count();
        latencies.sort();
        let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        let (p50, p99, max) = (pct(0.50), pct(0.99), latencies[latencies.len() - 1]);
        let us = |d: Duration| format!("{:.1}us", d.as_secs_f64() * 1e6);
        println!(
            "  {N} sends with 500 ms RTT: accepted in {sending:?}, all acknowledged after {flushed:?}; send latency \
             p50 {} p99 {} max {} ({slow} of {N} took 1 ms or more; {acked_while_sending} acknowledged while sending)",
            us(p50),
            us(p99),
            us(max)
        );
        ensure!(p99 < Duration::from_millis(1), "send p99 {p99:?} >= 1 ms while the buffer had room");
        anyhow::Ok(())
    }
    .await;
    ctl(mock, move |m| m.set_rtt(-1, 0)).await?;
    producer.close(Duration::from_secs(10)).await?;
    result
}
