//! `krab bench`: krab's own quick benchmark against a cluster. `produce` sends N records of a
//! given size (optionally paced) and reports records/s, MB/s and the acknowledgement latency
//! (send accepted → acknowledged) at p50, p99, p99.9 and max; `consume` reads N records (or
//! everything up to the end) from the beginning and reports records/s and MB/s.

use crate::Outcome;
use crate::connect::Settings;
use crate::produce::{Collector, connect_checked, flag_properties};
use crate::progress::{DisplayArgs, Progress, Total, mb, si};
use crate::table::{print, print_json};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use krab_admin::{Admin, OffsetSpec};
use krab_consumer::{Consumer, Offset, TopicPartition};
use krab_producer::Record;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Produce records as fast as possible (or at --rate) and time their acknowledgements.
    Produce(ProduceBench),
    /// Read records from the beginning of a topic.
    Consume(ConsumeBench),
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProduceBench {
    /// The topic (it must exist, or the brokers auto-create it).
    #[arg(short = 't', long = "topic")]
    pub(crate) topic: String,
    /// Records to send.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Records per second (0: as fast as they are taken).
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', long, value_name = "CODEC")]
    pub(crate) compression: Option<String>,
    /// Acknowledgements: 0, 1, all.
    #[arg(long)]
    pub(crate) acks: Option<String>,
    /// The idempotent producer (on by default with acks=all).
    #[arg(long)]
    pub(crate) idempotence: bool,
    /// The report as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConsumeBench {
    /// The topic.
    #[arg(short = 't', long = "topic")]
    pub(crate) topic: String,
    /// Records to read [default: everything up to the end at start].
    #[arg(long)]
    pub(crate) records: Option<u64>,
    /// The report as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A latency histogram: exact below 128 µs, then 64 buckets per power of two (under 1.6 %
/// error), and the exact maximum.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; 128 + 58 * 64], total: 0, max: 0 }
    }
}

impl Histogram {
    fn index(micros: u64) -> usize {
        if micros < 128 {
            return micros as usize;
        }
        let msb = 63 - micros.leading_zeros() as u64;
        let shift = msb - 6;
        let top = micros >> shift;
        (128 + (shift - 1) * 64 + (top - 64)) as usize
    }

    /// The middle of a bucket's range, in µs.
    fn value(index: usize) -> u64 {
        if index < 128 {
            return index as u64;
        }
        let shift = (index as u64 - 128) / 64 + 1;
        let top = (index as u64 - 128) % 64 + 64;
        (top << shift) + (1 << shift) / 2
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(1 << 62);
        self.counts[Self::index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The latency at quantile `q` (0..=1); zero when empty.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(Self::value(i).min(self.max));
            }
        }
        Duration::from_micros(self.max)
    }

    pub(crate) fn max(&self) -> Duration {
        Duration::from_micros(self.max)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The payload: the same bytes for every record (no allocation per record), word-like so that
/// compression has something to do.
fn payload(size: usize) -> Bytes {
    const WORDS: &[&str] = &["krab", "kafka", "record", "batch", "partition", "leader", "offset", "broker", "topic"];
    let mut out = Vec::with_capacity(size + 16);
    let mut x: u32 = 0x9e37_79b9;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(WORDS[x as usize % WORDS.len()].as_bytes());
        out.push(b' ');
    }
    out.truncate(size);
    Bytes::from(out)
}

pub(crate) async fn run(settings: &Settings, display: &DisplayArgs, command: BenchCommand) -> Result<Outcome> {
    match command {
        BenchCommand::Produce(b) => produce(settings, display, b).await,
        BenchCommand::Consume(b) => consume(settings, display, b).await,
    }
}

async fn produce(settings: &Settings, display: &DisplayArgs, b: ProduceBench) -> Result<Outcome> {
    let config = settings.producer_config(&flag_properties(&b.compression, &b.acks, b.idempotence))?;
    let delivery_timeout = config.effective_delivery_timeout();
    let producer = connect_checked(settings, config, &b.topic, None).await?;
    let mut interrupts = crate::interrupts();
    let progress =
        Progress::start(format!("bench produce {}", b.topic), display.mode(false), Total::Records(b.records));
    let collector = Collector::start(progress.counters(), true);
    let topic: Arc<str> = b.topic.as_str().into();
    let value = payload(b.size);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut interrupted = false;
    let mut refused = None;
    while sent < b.records {
        if b.rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / b.rate as f64);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::select! {
                    biased;
                    _ = crate::interrupted(&mut interrupts) => { interrupted = true; break; }
                    _ = tokio::time::sleep(due - now) => {}
                }
            }
        }
        let at = Instant::now();
        let r = tokio::select! {
            biased;
            _ = crate::interrupted(&mut interrupts) => { interrupted = true; break; }
            r = producer.send(Record::new(topic.clone(), value.clone())) => r,
        };
        match r {
            Ok(f) => collector.add(at, b.size as u64, f).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        sent += 1;
    }
    let flushed = producer.flush_within(delivery_timeout + Duration::from_secs(5)).await;
    let took = started.elapsed();
    let d = collector.finish().await;
    let _ = producer.close(Duration::from_secs(5)).await;
    progress.finish().await;
    if let Some(e) = refused {
        return Err(anyhow::Error::new(e).context(format!("sending record {sent}")));
    }
    flushed.context("delivering the records")?;
    let h = d.latency.unwrap_or_default();
    let secs = took.as_secs_f64().max(1e-6);
    let bytes = d.delivered * b.size as u64;
    if b.json {
        print_json(&json!({
            "bench": "produce", "topic": b.topic, "records": d.delivered, "failed": d.failed, "size": b.size,
            "seconds": secs, "records_per_s": d.delivered as f64 / secs, "mb_per_s": mb(bytes) / secs,
            "latency_ms": {"p50": ms(h.quantile(0.5)), "p99": ms(h.quantile(0.99)), "p999": ms(h.quantile(0.999)), "max": ms(h.max())},
        }))?;
    } else {
        print(&format!(
            "krab bench produce: {} records of {} B to \"{}\" in {secs:.2} s: {} records/s, {:.2} MB/s; \
             ack latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} timed); {} failed\n",
            d.delivered,
            b.size,
            b.topic,
            si(d.delivered as f64 / secs),
            mb(bytes) / secs,
            ms(h.quantile(0.5)),
            ms(h.quantile(0.99)),
            ms(h.quantile(0.999)),
            ms(h.max()),
            h.count(),
            d.failed,
        ))?;
    }
    if d.failed > 0 {
        bail!("{} records not delivered; first failure: {}", d.failed, d.first_error.unwrap_or_default());
    }
    Ok(if interrupted { Outcome::Interrupted } else { Outcome::Done })
}

async fn consume(settings: &Settings, display: &DisplayArgs, b: ConsumeBench) -> Result<Outcome> {
    let config = settings.consumer_config(&[("group.id", String::new())])?;
    let mut consumer =
        Consumer::connect(config).await.with_context(|| format!("connecting to {}", settings.bootstrap()))?;
    let snapshot =
        consumer.cluster().fetch_metadata(Some(std::slice::from_ref(&b.topic))).await.context("fetching metadata")?;
    let partitions: Vec<i32> = match snapshot.topic(&b.topic) {
        Some(t) if t.error.is_ok() => t.partitions.iter().map(|p| p.partition).collect(),
        _ => bail!("topic `{}` does not exist", b.topic),
    };
    let admin = Admin::with_cluster(consumer.cluster().clone(), &settings.admin_config()?);
    let asked =
        |spec| partitions.iter().map(|&p| (krab_admin::TopicPartition::new(&b.topic, p), spec)).collect::<Vec<_>>();
    let lo = admin.list_offsets(&asked(OffsetSpec::Earliest)).await.context("listing offsets")?;
    let hi = admin.list_offsets(&asked(OffsetSpec::Latest)).await.context("listing offsets")?;
    let mut available = 0u64;
    for (tp, end) in &hi {
        let end = end.as_ref().map_err(|e| anyhow::Error::new(e.clone()).context(format!("the end of {tp}")))?;
        let start = lo.get(tp).and_then(|r| r.as_ref().ok()).map_or(0, |o| o.offset);
        available += (end.offset - start).max(0) as u64;
    }
    let want = b.records.unwrap_or(available);
    if want > available {
        bail!("topic `{}` holds {available} records, fewer than the {want} asked for", b.topic);
    }
    consumer.assign(partitions.iter().map(|&p| (TopicPartition::new(b.topic.as_str(), p), Offset::Earliest)));
    let mut interrupts = crate::interrupts();
    let progress = Progress::start(format!("bench consume {}", b.topic), display.mode(false), Total::Records(want));
    let counters = progress.counters();
    let started = Instant::now();
    let (mut read, mut bytes) = (0u64, 0u64);
    let mut interrupted = false;
    while read < want {
        let next = tokio::select! {
            biased;
            _ = crate::interrupted(&mut interrupts) => { interrupted = true; break; }
            n = consumer.next() => n,
        };
        match next {
            Some(Ok(r)) => {
                let n = (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64;
                read += 1;
                bytes += n;
                counters.add(1, n);
            }
            Some(Err(e)) if e.is_retriable() => eprintln!("krab: {e} (retrying)"),
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("consuming")),
            None => break,
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    progress.finish().await;
    let _ = consumer.close().await;
    if b.json {
        print_json(&json!({
            "bench": "consume", "topic": b.topic, "records": read, "bytes": bytes, "seconds": secs,
            "records_per_s": read as f64 / secs, "mb_per_s": mb(bytes) / secs,
        }))?;
    } else {
        print(&format!(
            "krab bench consume: {read} records ({:.2} MB) from \"{}\" in {secs:.2} s: {} records/s, {:.2} MB/s\n",
            mb(bytes),
            b.topic,
            si(read as f64 / secs),
            mb(bytes) / secs
        ))?;
    }
    Ok(if interrupted { Outcome::Interrupted } else { Outcome::Done })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for us in 1..=100_000u64 {
            h.record(Duration::from_micros(us));
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q).as_micros() as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), Duration::from_micros(100_000));
        assert_eq!(h.count(), 100_000);
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn buckets_cover_every_value() {
        for v in [0u64, 1, 127, 128, 129, 1000, 1 << 20, (1 << 40) + 12345, 1 << 62] {
            let i = Histogram::index(v);
            assert!(i < Histogram::default().counts.len(), "{v}");
            let mid = Histogram::value(i) as f64;
            assert!((mid - v as f64).abs() <= (v as f64 / 64.0).max(0.5), "{v}: bucket middle {mid}");
        }
        let mut h = Histogram::default();
        h.record(Duration::from_secs(3));
        assert_eq!(h.quantile(0.5), h.max().min(h.quantile(0.5)));
    }

    #[test]
    fn payloads_have_the_size_asked() {
        assert_eq!(payload(100).len(), 100);
        assert_eq!(payload(0).len(), 0);
        assert_eq!(payload(1).len(), 1);
        assert_eq!(payload(4096), payload(4096));
    }
}
