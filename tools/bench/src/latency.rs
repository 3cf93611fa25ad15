//! The `send-latency` workload (krab only): how long `Producer::send(record).await` takes to
//! accept a record into the buffer while the broker is slow (the driver sets a large round-trip
//! time on the mock cluster). Records go out at a steady rate in 1 ms ticks; each `send` is
//! timed alone; the buffer (`buffer.memory`) is big enough that it never fills, so `send` should
//! never wait.

use crate::procfs;
use crate::produce::Pool;
use anyhow::{Context, Result, ensure};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct LatencyArgs {
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    pub(crate) records: u64,
    pub(crate) size: usize,
    pub(crate) rate: u64,
    pub(crate) partitions: i32,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) threads: usize,
}

pub(crate) fn run(a: &LatencyArgs) -> Result<serde_json::Value> {
    use krab_producer::{Acks, Producer, ProducerConfig, Record};
    ensure!(a.records > 0 && a.rate > 0 && a.partitions > 0, "--records, --rate and --partitions must be positive");
    let pool = Pool::new(a.size);
    let rt = crate::runtime(a.threads)?;
    let (mut lat_ns, wall, max_buffered, acked) = rt.block_on(async {
        let config = ProducerConfig::new(&a.bootstrap)?
            .client_id("krab-bench")
            .acks(Acks::Leader)
            .enable_idempotence(false)
            .linger(a.linger)
            .batch_size(a.batch_size)
            .buffer_memory(a.buffer_memory);
        let producer = Producer::connect(config).await.context("connecting")?;
        let topic: Arc<str> = Arc::from(a.topic.as_str());
        let p = a.partitions as u64;
        let record = |i: u64| Record {
            topic: topic.clone(),
            partition: Some((i % p) as i32),
            key: None,
            value: Some(pool.value(i)),
            headers: Vec::new(),
            timestamp: None,
        };
        // Metadata and connections before the clock: one record per partition, delivered.
        for i in 0..p {
            drop(producer.send(record(i)).await?);
        }
        producer.flush().await?;

        let mut lat_ns = Vec::with_capacity(a.records as usize);
        let mut max_buffered = 0u64;
        let mut ticks = 0u64;
        let t0 = Instant::now();
        let tick = Duration::from_millis(1);
        let per_tick = (a.rate as f64 / 1000.0).max(1.0);
        let mut next = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut owed = 0.0f64;
        while sent < a.records {
            owed += per_tick;
            while owed >= 1.0 && sent < a.records {
                owed -= 1.0;
                let r = record(p + sent);
                let start = Instant::now();
                let fut = producer.send(r).await?;
                lat_ns.push(start.elapsed().as_nanos() as u64);
                drop(fut);
                sent += 1;
            }
            ticks += 1;
            if ticks.is_multiple_of(100) {
                // Records sent and not yet acknowledged: what the slow broker makes the buffer hold.
                let acked: u64 = producer.stats().values().map(|s| s.acked).sum();
                max_buffered = max_buffered.max((p + sent).saturating_sub(acked));
            }
            next += tick;
            tokio::time::sleep_until(next).await;
        }
        let wall = t0.elapsed().as_secs_f64();
        producer.flush().await?;
        let acked: u64 = producer.stats().values().map(|s| s.acked).sum();
        producer.close(Duration::from_secs(10)).await?;
        anyhow::Ok((lat_ns, wall, max_buffered, acked))
    })?;
    ensure!(acked == a.records + a.partitions as u64, "{acked} acked of {}", a.records + a.partitions as u64);
    lat_ns.sort_unstable();
    let pct = |q: f64| {
        let i = ((lat_ns.len() as f64 * q).ceil() as usize).clamp(1, lat_ns.len()) - 1;
        lat_ns[i] as f64 / 1000.0
    };
    let mean = lat_ns.iter().sum::<u64>() as f64 / lat_ns.len() as f64 / 1000.0;
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(serde_json::json!({
        "client": "krab",
        "workload": "send-latency",
        "records": a.records,
        "rate_target": a.rate,
        "rate": round(a.records as f64 / wall),
        "p50_us": round(pct(0.50)),
        "p99_us": round(pct(0.99)),
        "p999_us": round(pct(0.999)),
        "max_us": round(*lat_ns.last().unwrap_or(&0) as f64 / 1000.0),
        "mean_us": round(mean),
        "over_1ms": lat_ns.iter().filter(|&&n| n > 1_000_000).count(),
        "max_unacked_records": max_buffered,
        "buffer_memory_mb": round(a.buffer_memory as f64 / 1e6),
        "peak_rss_mb": round(procfs::peak_rss_mb().unwrap_or(f64::NAN)),
        "note": format!(
            "{} records of {} B at {}/s in 1 ms ticks, each send().await timed alone; {} tokio runtime",
            a.records,
            a.size,
            a.rate,
            crate::runtime_name(a.threads)
        ),
    }))
}
