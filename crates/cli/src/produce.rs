//! `krab produce`: records from stdin or a file, one per line or split by `--delimiter`, with
//! an optional key (`-K SEP`), headers (`-H name=value`) and partition (`-p`). Reports what was
//! read, delivered and failed; Ctrl-C stops reading, delivers what was accepted, reports it,
//! and exits with 130.

use crate::Outcome;
use crate::bench::Histogram;
use crate::connect::Settings;
use crate::format::unescape;
use crate::progress::{Counters, DisplayArgs, Progress, Total, mb};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use krab_producer::{DeliveryFuture, ErrorKind, Producer, Record};
use krab_protocol::error_code::ErrorCode;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    #[arg(short = 't', long = "topic")]
    pub(crate) topic: String,
    /// Read records from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// What separates records [default: \n]; escapes \n \t \r \0 \\.
    #[arg(short = 'D', long, value_name = "SEP")]
    pub(crate) delimiter: Option<String>,
    /// Split each record at the first SEP into key and value (no SEP: no key).
    #[arg(short = 'K', long = "key-separator", value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// A header for every record, name=value (repeatable; `name` alone: a null value).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    pub(crate) headers: Vec<String>,
    /// Send every record to this partition (default: by key, as Java's producer).
    #[arg(short = 'p', long)]
    pub(crate) partition: Option<i32>,
    /// Compression: none, gzip, snappy, lz4, zstd (compression.type).
    #[arg(short = 'z', long, value_name = "CODEC")]
    pub(crate) compression: Option<String>,
    /// Acknowledgements: 0, 1, all (acks).
    #[arg(long, value_name = "ACKS")]
    pub(crate) acks: Option<String>,
    /// The idempotent producer (enable.idempotence=true; on by default with acks=all).
    #[arg(long)]
    pub(crate) idempotence: bool,
}

/// The producer settings the subcommand's own flags stand for (they win over -X and -F).
pub(crate) fn flag_properties(
    compression: &Option<String>,
    acks: &Option<String>,
    idempotence: bool,
) -> Vec<(&'static str, String)> {
    let mut extra = Vec::new();
    if let Some(c) = compression {
        extra.push(("compression.type", c.clone()));
    }
    if let Some(a) = acks {
        extra.push(("acks", a.clone()));
    }
    if idempotence {
        extra.push(("enable.idempotence", "true".into()));
    }
    extra
}

/// Splits a byte stream into records at a delimiter, across reads.
#[derive(Debug)]
pub(crate) struct Splitter {
    delimiter: Vec<u8>,
    pending: Vec<u8>,
}

impl Splitter {
    pub(crate) fn new(delimiter: Vec<u8>) -> Splitter {
        assert!(!delimiter.is_empty(), "a delimiter is never empty");
        Splitter { delimiter, pending: Vec::new() }
    }

    /// Takes the next bytes read; returns the records they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        // A delimiter may straddle reads: search from where a match could start.
        let from = self.pending.len().saturating_sub(self.delimiter.len() - 1);
        self.pending.extend_from_slice(bytes);
        let mut records = Vec::new();
        let mut start = 0;
        let mut at = from;
        while let Some(i) = find(&self.pending[at..], &self.delimiter) {
            let end = at + i;
            records.push(self.pending[start..end].to_vec());
            start = end + self.delimiter.len();
            at = start;
        }
        self.pending.drain(..start);
        records
    }

    /// The last record, if the input did not end with a delimiter.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return haystack.iter().position(|&b| b == needle[0]);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Key and value of a record split at the first `separator` (none found: no key).
pub(crate) fn split_key<'a>(record: &'a [u8], separator: &[u8]) -> (Option<&'a [u8]>, &'a [u8]) {
    match find(record, separator) {
        Some(i) => (Some(&record[..i]), &record[i + separator.len()..]),
        None => (None, record),
    }
}

/// A `-H` header: `name=value`, or `name` for a null value.
pub(crate) fn parse_header(s: &str) -> Result<(String, Option<Bytes>)> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(Bytes::copy_from_slice(v.as_bytes()))),
        None => (s, None),
    };
    if name.is_empty() {
        bail!("-H {s}: a header needs a name (name=value)");
    }
    Ok((name.to_string(), value))
}

/// What became of the records handed to a [`Collector`].
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) first_error: Option<String>,
    /// Acknowledgement latencies (send accepted → delivered), when asked for.
    pub(crate) latency: Option<Histogram>,
}

/// Awaits delivery futures as they complete (in any order), counting outcomes and, if asked,
/// timing each from its send.
pub(crate) struct Collector {
    tx: mpsc::Sender<(Instant, u64, DeliveryFuture)>,
    task: tokio::task::JoinHandle<Deliveries>,
}

impl Collector {
    pub(crate) fn start(counters: Arc<Counters>, latency: bool) -> Collector {
        let (tx, mut rx) = mpsc::channel::<(Instant, u64, DeliveryFuture)>(1 << 16);
        let task = tokio::spawn(async move {
            let mut out = Deliveries { latency: latency.then(Histogram::default), ..Default::default() };
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    next = rx.recv(), if open => match next {
                        Some((sent, bytes, f)) => pending.push(async move { (sent, bytes, f.await) }),
                        None => open = false,
                    },
                    Some((sent, bytes, outcome)) = pending.next(), if !pending.is_empty() => {
                        match outcome {
                            Ok(_) => {
                                out.delivered += 1;
                                counters.add(1, bytes);
                                if let Some(h) = &mut out.latency {
                                    h.record(sent.elapsed());
                                }
                            }
                            Err(e) => {
                                out.failed += 1;
                                out.first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    else => break,
                }
            }
            out
        });
        Collector { tx, task }
    }

    pub(crate) async fn add(&self, sent: Instant, bytes: u64, f: DeliveryFuture) {
        // The task ends only after the sender is dropped.
        let _ = self.tx.send((sent, bytes, f)).await;
    }

    pub(crate) async fn finish(self) -> Deliveries {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

/// Connects a producer and checks the topic (and partition) exist, so a typo fails at once
/// rather than after `max.block.ms`.
pub(crate) async fn connect_checked(
    settings: &Settings,
    config: krab_producer::ProducerConfig,
    topic: &str,
    partition: Option<i32>,
) -> Result<Producer> {
    let auto_create = config.allow_auto_create_topics;
    let producer =
        Producer::connect(config).await.with_context(|| format!("connecting to {}", settings.bootstrap()))?;
    // A broker that creates topics on demand may still answer "unknown" while it does (Kafka 4
    // does): ask again for a few seconds before calling the topic missing.
    let started = Instant::now();
    let snapshot = loop {
        let snapshot = producer
            .cluster()
            .fetch_metadata(Some(&[topic.to_string()]))
            .await
            .with_context(|| format!("looking up topic `{topic}`"))?;
        let missing = snapshot.topic(topic).is_none_or(|t| t.error == ErrorCode::UnknownTopicOrPartition);
        if !missing || !auto_create || started.elapsed() > Duration::from_secs(3) {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    match snapshot.topic(topic) {
        Some(t) if t.error == ErrorCode::UnknownTopicOrPartition => bail!("topic `{topic}` does not exist"),
        Some(t) if t.error.is_err() && !t.error.is_retriable() => {
            bail!("topic `{topic}`: {}", t.error)
        }
        Some(t) => {
            let count = t.partitions.len();
            if let Some(p) = partition.filter(|&p| count > 0 && (p < 0 || p as usize >= count)) {
                bail!("topic `{topic}` has no partition {p} (it has {count})");
            }
        }
        None => bail!("topic `{topic}` does not exist"),
    }
    Ok(producer)
}

pub(crate) async fn run(settings: &Settings, display: &DisplayArgs, args: ProduceArgs) -> Result<Outcome> {
    let delimiter = match &args.delimiter {
        Some(d) => unescape(d, "--delimiter")?,
        None => b"\n".to_vec(),
    };
    let key_separator = args.key_separator.as_deref().map(|k| unescape(k, "-K")).transpose()?;
    let headers = args.headers.iter().map(|h| parse_header(h)).collect::<Result<Vec<_>>>()?;
    let (mut input, total): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, Total) = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            (Box::new(file), Total::Bytes(len))
        }
        None => (Box::new(tokio::io::stdin()), Total::Unknown),
    };
    let config = settings.producer_config(&flag_properties(&args.compression, &args.acks, args.idempotence))?;
    let delivery_timeout = config.effective_delivery_timeout();
    let producer = connect_checked(settings, config, &args.topic, args.partition).await?;
    let mut interrupts = crate::interrupts();
    let progress = Progress::start(format!("produce {}", args.topic), display.mode(false), total);
    let counters = progress.counters();
    let collector = Collector::start(counters.clone(), false);
    let topic: Arc<str> = args.topic.as_str().into();
    let started = Instant::now();
    let (mut read, mut accepted, mut refused) = (0u64, 0u64, 0u64);
    let mut first_refusal: Option<String> = None;
    let mut splitter = Splitter::new(delimiter);
    let mut buf = vec![0u8; 64 * 1024];
    let mut interrupted = false;
    let mut fatal: Option<anyhow::Error> = None;
    'reading: loop {
        let n = tokio::select! {
            biased;
            _ = crate::interrupted(&mut interrupts) => { interrupted = true; break 'reading; }
            n = input.read(&mut buf) => n.context("reading the input")?,
        };
        counters.input.fetch_add(n as u64, Ordering::Relaxed);
        let records = if n == 0 { splitter.finish().into_iter().collect() } else { splitter.feed(&buf[..n]) };
        for raw in records {
            read += 1;
            let (key, value) = match &key_separator {
                Some(sep) => split_key(&raw, sep),
                None => (None, raw.as_slice()),
            };
            let mut record = Record::new(topic.clone(), Bytes::copy_from_slice(value));
            record.key = key.map(Bytes::copy_from_slice);
            record.partition = args.partition;
            record.headers.clone_from(&headers);
            let bytes = (record.key.as_ref().map_or(0, Bytes::len) + value.len()) as u64;
            let sent = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = crate::interrupted(&mut interrupts) => { interrupted = true; break 'reading; }
                r = producer.send(record) => r,
            };
            match outcome {
                Ok(f) => {
                    accepted += 1;
                    collector.add(sent, bytes, f).await;
                }
                Err(e) if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Config) => {
                    fatal = Some(anyhow::Error::new(e).context("producing"));
                    break 'reading;
                }
                Err(e) => {
                    refused += 1;
                    first_refusal.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if n == 0 {
            break;
        }
    }
    // Deliver what was accepted: at most the delivery timeout, as the producer would anyway.
    let flushed = producer.flush_within(delivery_timeout + Duration::from_secs(5)).await;
    let deliveries = collector.finish().await;
    let _ = producer.close(Duration::from_secs(5)).await;
    progress.finish().await;
    let took = started.elapsed();
    let failed = deliveries.failed + refused;
    if display.summaries() || interrupted || failed > 0 {
        eprintln!(
            "krab produce: {read} records read, {accepted} accepted, {} delivered ({:.2} MB), {failed} failed, to \"{}\" in {:.2} s{}",
            deliveries.delivered,
            mb(counters.bytes.load(Ordering::Relaxed)),
            args.topic,
            took.as_secs_f64(),
            if interrupted { " (interrupted)" } else { "" },
        );
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if let Err(e) = flushed {
        return Err(anyhow::Error::new(e).context("delivering the records"));
    }
    if failed > 0 {
        let why = deliveries.first_error.or(first_refusal).unwrap_or_default();
        bail!("{failed} of {read} records not delivered; first failure: {why}");
    }
    Ok(if interrupted { Outcome::Interrupted } else { Outcome::Done })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(delimiter: &[u8], chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = Splitter::new(delimiter.to_vec());
        let mut out: Vec<Vec<u8>> = chunks.iter().flat_map(|c| s.feed(c)).collect();
        out.extend(s.finish());
        out
    }

    #[test]
    fn lines_split_across_reads() {
        let want: Vec<Vec<u8>> = vec![b"a".to_vec(), b"bc".to_vec(), b"".to_vec(), b"d".to_vec()];
        assert_eq!(split_all(b"\n", &[b"a\nbc\n\nd\n"]), want);
        assert_eq!(split_all(b"\n", &[b"a\nb", b"c\n", b"\nd"]), want, "no delimiter at the end");
        assert_eq!(split_all(b"\n", &[b""]), Vec::<Vec<u8>>::new());
        assert_eq!(split_all(b"\n", &[b"\n"]), vec![b"".to_vec()]);
    }

    #[test]
    fn multi_byte_delimiters_straddle_reads() {
        let want: Vec<Vec<u8>> = vec![b"one".to_vec(), b"two\nlines".to_vec(), b"three".to_vec()];
        assert_eq!(split_all(b"\n--\n", &[b"one\n-", b"-\ntwo\nlines\n--", b"\nthree"]), want);
        for cut in 0..20 {
            let text = b"one\n--\ntwo\nlines\n--\nthree\n--\n";
            let (a, b) = text.split_at(cut.min(text.len()));
            assert_eq!(split_all(b"\n--\n", &[a, b]), want, "cut at {cut}");
        }
        assert_eq!(split_all(b"||", &[b"a|b||c|", b"|"]), vec![b"a|b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        assert_eq!(split_key(b"user-1:hello:world", b":"), (Some(&b"user-1"[..]), &b"hello:world"[..]));
        assert_eq!(split_key(b"no separator", b":"), (None, &b"no separator"[..]));
        assert_eq!(split_key(b":empty key", b":"), (Some(&b""[..]), &b"empty key"[..]));
        assert_eq!(split_key(b"k\t\tv", b"\t\t"), (Some(&b"k"[..]), &b"v"[..]));
    }

    #[test]
    fn headers_parse() {
        assert_eq!(parse_header("trace=abc=1").unwrap(), ("trace".into(), Some(Bytes::from_static(b"abc=1"))));
        assert_eq!(parse_header("empty=").unwrap(), ("empty".into(), Some(Bytes::new())));
        assert_eq!(parse_header("flag").unwrap(), ("flag".into(), None));
        assert!(parse_header("=v").is_err());
    }

    #[test]
    fn flags_become_producer_properties() {
        let p = flag_properties(&Some("zstd".into()), &Some("1".into()), true);
        assert_eq!(
            p,
            vec![("compression.type", "zstd".into()), ("acks", "1".into()), ("enable.idempotence", "true".into())]
        );
        assert!(flag_properties(&None, &None, false).is_empty());
    }
}
