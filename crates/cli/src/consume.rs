//! `krab consume`: records of assigned partitions (`-p`, default all) from a start offset
//! (`-o`), or as a member of a consumer group (`-G`, from its committed offsets), printed with a
//! kcat-like format string or as JSON lines. `-e` stops at the end (every partition's high
//! watermark when krab started), `-c N` after N records; in a group, what was printed is
//! committed before krab leaves.

use crate::Outcome;
use crate::connect::Settings;
use crate::format::{DEFAULT_FORMAT, Format, record_json};
use crate::progress::{DisplayArgs, Progress, Total, mb};
use anyhow::{Context, Result, bail};
use futures_util::{FutureExt, StreamExt};
use krab_admin::{Admin, OffsetSpec};
use krab_consumer::{Consumer, ConsumerRecord, Offset, TopicPartition};
use krab_protocol::error_code::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The topic (repeatable).
    #[arg(short = 't', long = "topic", required = true)]
    pub(crate) topics: Vec<String>,
    /// Where to start: beginning, end, an offset N, -N (N before the end), @TIMESTAMP (ms);
    /// in a group (-G): beginning or end where the group has no committed offset.
    #[arg(short = 'o', long, value_name = "OFFSET", allow_hyphen_values = true)]
    pub(crate) offset: Option<String>,
    /// Consume as a member of this consumer group (subscribe; committed offsets).
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// Only these partitions (repeatable or comma-separated; not with -G).
    #[arg(short = 'p', long = "partition", value_delimiter = ',', value_name = "PARTITION")]
    pub(crate) partitions: Vec<i32>,
    /// Output format: %t topic, %p partition, %o offset, %T timestamp, %k key, %s value,
    /// %h headers, %K key length, %S value length, %% percent; \n \t \r \0 \\ [default: %s\n].
    #[arg(short = 'f', long, value_name = "FORMAT", conflicts_with = "json")]
    pub(crate) format: Option<String>,
    /// One JSON object per record and line.
    #[arg(long = "json", short = 'J')]
    pub(crate) json: bool,
    /// Exit at the end: once every assigned partition reached its high watermark at start.
    #[arg(short = 'e', long = "exit")]
    pub(crate) exit_at_end: bool,
    /// Exit after this many records.
    #[arg(short = 'c', long = "count", value_name = "N")]
    pub(crate) count: Option<u64>,
}

/// Where to start reading, as `-o` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartSpec {
    Beginning,
    End,
    At(i64),
    /// This many records before each partition's end.
    FromEnd(i64),
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl StartSpec {
    pub(crate) fn parse(s: &str) -> Result<StartSpec> {
        let t = s.trim();
        let number = |n: &str| n.parse::<i64>().ok().filter(|n| *n >= 0);
        let spec = match t {
            "beginning" | "earliest" | "start" => StartSpec::Beginning,
            "end" | "latest" => StartSpec::End,
            _ if t.starts_with('@') => StartSpec::Timestamp(
                number(&t[1..])
                    .with_context(|| format!("-o {s}: expected @TIMESTAMP in milliseconds since the epoch"))?,
            ),
            _ if t.starts_with('-') => StartSpec::FromEnd(
                number(&t[1..]).with_context(|| format!("-o {s}: expected -N, N records before the end"))?,
            ),
            _ => StartSpec::At(number(t).with_context(|| {
                format!("-o {s}: expected beginning, end, an offset, -N (before the end) or @TIMESTAMP (ms)")
            })?),
        };
        Ok(spec)
    }
}

/// What `auto.offset.reset` a group member gets from `-o`.
fn group_reset(spec: Option<StartSpec>) -> Result<Option<&'static str>> {
    match spec {
        None => Ok(None),
        Some(StartSpec::Beginning) => Ok(Some("earliest")),
        Some(StartSpec::End) => Ok(Some("latest")),
        Some(other) => bail!(
            "-o {other:?} does not go with -G: a group starts at its committed offsets (beginning or end where it has none); \
             reset them with `krab group reset-offsets`"
        ),
    }
}

/// The start offset of a partition, given its log's earliest and end offsets.
pub(crate) fn start_offset(spec: StartSpec, earliest: i64, end: i64) -> Offset {
    match spec {
        StartSpec::Beginning => Offset::Earliest,
        StartSpec::End => Offset::Latest,
        StartSpec::At(o) => Offset::At(o),
        StartSpec::FromEnd(n) => Offset::At(end.saturating_sub(n).max(earliest)),
        StartSpec::Timestamp(t) => Offset::Timestamp(t),
    }
}

/// Earliest and end offsets of partitions.
async fn log_extents(admin: &Admin, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
    let asked = |spec: OffsetSpec| -> Vec<(krab_admin::TopicPartition, OffsetSpec)> {
        partitions.iter().map(|tp| (krab_admin::TopicPartition::new(&*tp.topic, tp.partition), spec)).collect()
    };
    let earliest = admin.list_offsets(&asked(OffsetSpec::Earliest)).await.context("listing offsets")?;
    let latest = admin.list_offsets(&asked(OffsetSpec::Latest)).await.context("listing offsets")?;
    let mut out = BTreeMap::new();
    for tp in partitions {
        let key = krab_admin::TopicPartition::new(&*tp.topic, tp.partition);
        let lo = match earliest.get(&key) {
            Some(Ok(o)) => o.offset,
            Some(Err(e)) => return Err(anyhow::Error::new(e.clone()).context(format!("the start of {tp}"))),
            None => bail!("no start offset for {tp}"),
        };
        let hi = match latest.get(&key) {
            Some(Ok(o)) => o.offset,
            Some(Err(e)) => return Err(anyhow::Error::new(e.clone()).context(format!("the end of {tp}"))),
            None => bail!("no end offset for {tp}"),
        };
        out.insert(tp.clone(), (lo, hi));
    }
    Ok(out)
}

/// Every partition of the topics, checking they exist.
async fn partitions_of(consumer: &Consumer, topics: &[String]) -> Result<Vec<TopicPartition>> {
    let snapshot = consumer.cluster().fetch_metadata(Some(topics)).await.context("fetching metadata")?;
    let mut out = Vec::new();
    for name in topics {
        match snapshot.topic(name) {
            None => bail!("topic `{name}` does not exist"),
            Some(t) if t.error == ErrorCode::UnknownTopicOrPartition => bail!("topic `{name}` does not exist"),
            Some(t) if t.error.is_err() => bail!("topic `{name}`: {}", t.error),
            Some(t) => out.extend(t.partitions.iter().map(|p| TopicPartition::new(name.as_str(), p.partition))),
        }
    }
    Ok(out)
}

/// How records are written out.
enum Printer {
    Format(Format),
    Json,
}

impl Printer {
    fn write(&self, r: &ConsumerRecord, line: &mut Vec<u8>) {
        match self {
            Printer::Format(f) => f.render(r, line),
            Printer::Json => {
                line.extend_from_slice(record_json(r).to_string().as_bytes());
                line.push(b'\n');
            }
        }
    }
}

pub(crate) async fn run(settings: &Settings, display: &DisplayArgs, args: ConsumeArgs) -> Result<Outcome> {
    let printer = if args.json {
        Printer::Json
    } else {
        Printer::Format(Format::parse(args.format.as_deref().unwrap_or(DEFAULT_FORMAT)).context("-f")?)
    };
    let spec = args.offset.as_deref().map(StartSpec::parse).transpose()?;
    let mut extra: Vec<(&str, String)> = Vec::new();
    match &args.group {
        Some(group) => {
            if !args.partitions.is_empty() {
                bail!("-p does not go with -G: the group's coordinator assigns the partitions");
            }
            extra.push(("group.id", group.clone()));
            if let Some(reset) = group_reset(spec)? {
                extra.push(("auto.offset.reset", reset.to_string()));
            }
        }
        // Assigned partitions: no group, whatever -F or -X say.
        None => extra.push(("group.id", String::new())),
    }
    let config = settings.consumer_config(&extra)?;
    let commits = config.enable_auto_commit;
    let consumer =
        Consumer::connect(config).await.with_context(|| format!("connecting to {}", settings.bootstrap()))?;
    let all = partitions_of(&consumer, &args.topics).await?;
    let wanted: Vec<TopicPartition> = if args.partitions.is_empty() {
        all.clone()
    } else {
        let mut picked = Vec::new();
        for &p in &args.partitions {
            let matching: Vec<_> = all.iter().filter(|tp| tp.partition == p).cloned().collect();
            if matching.is_empty() {
                bail!("no partition {p} in {}", args.topics.join(", "));
            }
            picked.extend(matching);
        }
        picked
    };
    let needs_extents = args.exit_at_end || matches!(spec, Some(StartSpec::FromEnd(_)));
    let extents = if needs_extents {
        let admin = Admin::with_cluster(consumer.cluster().clone(), &settings.admin_config()?);
        log_extents(&admin, &wanted).await?
    } else {
        BTreeMap::new()
    };
    let mut total = Total::Unknown;
    if args.group.is_some() {
        consumer.subscribe(args.topics.clone()).context("subscribing")?;
    } else {
        let spec = spec.unwrap_or(StartSpec::Beginning);
        let mut sum = Some(0u64);
        let starts: Vec<(TopicPartition, Offset)> = wanted
            .iter()
            .map(|tp| {
                let (lo, hi) = extents.get(tp).copied().unwrap_or((0, 0));
                let start = start_offset(spec, lo, hi);
                let from = match start {
                    Offset::Earliest => Some(lo),
                    Offset::Latest => Some(hi),
                    Offset::At(o) => Some(o.clamp(lo, hi)),
                    Offset::Timestamp(_) => None,
                };
                sum = sum.zip(from).map(|(s, f)| s + (hi - f).max(0) as u64);
                (tp.clone(), start)
            })
            .collect();
        if let (true, Some(n)) = (args.exit_at_end, sum) {
            total = Total::Records(n);
        }
        consumer.assign(starts);
    }
    if let Some(c) = args.count {
        total = match total {
            Total::Records(n) => Total::Records(n.min(c)),
            _ => Total::Records(c),
        };
    }
    let what = format!("consume {}", args.topics.join(","));
    let outcome = read(consumer, &printer, &args, &extents, commits, display, what, total).await?;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
async fn read(
    mut consumer: Consumer,
    printer: &Printer,
    args: &ConsumeArgs,
    extents: &BTreeMap<TopicPartition, (i64, i64)>,
    commits: bool,
    display: &DisplayArgs,
    what: String,
    total: Total,
) -> Result<Outcome> {
    let in_group = args.group.is_some();
    let mut interrupts = crate::interrupts();
    let progress = Progress::start(what, display.mode(true), total);
    let counters = progress.counters();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let mut line = Vec::with_capacity(1024);
    let mut at_end: BTreeSet<TopicPartition> = BTreeSet::new();
    let mut printed = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let started = Instant::now();
    let mut interrupted = false;
    let reached_end = |consumer: &Consumer, at_end: &mut BTreeSet<TopicPartition>| -> bool {
        let assigned = consumer.assignment();
        for tp in &assigned {
            if at_end.contains(tp) {
                continue;
            }
            let end = extents.get(tp).map_or(0, |(_, hi)| *hi);
            if consumer.position(tp).ok().flatten().is_some_and(|p| p >= end) {
                at_end.insert(tp.clone());
            }
        }
        // A group member has no partitions until the coordinator assigns them.
        !assigned.is_empty() && assigned.iter().all(|tp| at_end.contains(tp))
    };
    let (mut check_end, mut last_check) = (true, Instant::now());
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        // Checked when a record was a partition's last before its end, and every 100 ms (an
        // empty partition, a group's assignment arriving).
        if args.exit_at_end && (check_end || last_check.elapsed() >= Duration::from_millis(100)) {
            check_end = false;
            last_check = Instant::now();
            if reached_end(&consumer, &mut at_end) {
                break;
            }
        }
        let item = match consumer.next().now_or_never() {
            Some(item) => item,
            None => {
                // Nothing ready: what was printed goes out now.
                out.flush().context("writing to stdout")?;
                tokio::select! {
                    biased;
                    _ = crate::interrupted(&mut interrupts) => { interrupted = true; break; }
                    item = consumer.next() => item,
                    _ = tick.tick() => continue,
                }
            }
        };
        match item {
            None => break,
            Some(Ok(r)) => {
                line.clear();
                printer.write(&r, &mut line);
                out.write_all(&line).context("writing to stdout")?;
                printed += 1;
                let tp = TopicPartition::new(r.topic.clone(), r.partition);
                check_end |= extents.get(&tp).is_some_and(|(_, end)| r.offset + 1 >= *end);
                let bytes = r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
                counters.add(1, bytes as u64);
            }
            Some(Err(e)) if e.is_retriable() => {
                progress_note(&format!("krab: {e} (retrying)"));
            }
            Some(Err(e)) => {
                let _ = out.flush();
                return Err(anyhow::Error::new(e).context("consuming"));
            }
        }
        if *interrupts.borrow() {
            interrupted = true;
            break;
        }
    }
    out.flush().context("writing to stdout")?;
    progress.finish().await;
    if in_group && commits {
        consumer.commit().await.context("committing the group's offsets")?;
    }
    let bytes = counters.bytes.load(Ordering::Relaxed);
    if display.summaries() {
        eprintln!(
            "krab consume: {printed} records ({:.2} MB) in {:.2} s{}",
            mb(bytes),
            started.elapsed().as_secs_f64(),
            if interrupted { " (interrupted)" } else { "" }
        );
    }
    consumer.close().await.context("leaving")?;
    Ok(if interrupted { Outcome::Interrupted } else { Outcome::Done })
}

fn progress_note(text: &str) {
    eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_specs_parse() {
        assert_eq!(StartSpec::parse("beginning").unwrap(), StartSpec::Beginning);
        assert_eq!(StartSpec::parse("earliest").unwrap(), StartSpec::Beginning);
        assert_eq!(StartSpec::parse("end").unwrap(), StartSpec::End);
        assert_eq!(StartSpec::parse("42").unwrap(), StartSpec::At(42));
        assert_eq!(StartSpec::parse("0").unwrap(), StartSpec::At(0));
        assert_eq!(StartSpec::parse("-10").unwrap(), StartSpec::FromEnd(10));
        assert_eq!(StartSpec::parse("@1700000000000").unwrap(), StartSpec::Timestamp(1_700_000_000_000));
        for bad in ["", "x", "--1", "@", "@-5", "-", "1.5", "@soon"] {
            assert!(StartSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert!(StartSpec::parse("nope").unwrap_err().to_string().contains("-o nope"));
    }

    #[test]
    fn start_offsets_stay_inside_the_log() {
        assert_eq!(start_offset(StartSpec::FromEnd(10), 0, 100), Offset::At(90));
        assert_eq!(start_offset(StartSpec::FromEnd(10), 95, 100), Offset::At(95));
        assert_eq!(start_offset(StartSpec::FromEnd(0), 0, 100), Offset::At(100));
        assert_eq!(start_offset(StartSpec::At(7), 0, 100), Offset::At(7));
        assert_eq!(start_offset(StartSpec::Beginning, 3, 100), Offset::Earliest);
        assert_eq!(start_offset(StartSpec::Timestamp(5), 0, 1), Offset::Timestamp(5));
    }

    #[test]
    fn a_group_takes_only_beginning_or_end() {
        assert_eq!(group_reset(Some(StartSpec::Beginning)).unwrap(), Some("earliest"));
        assert_eq!(group_reset(Some(StartSpec::End)).unwrap(), Some("latest"));
        assert_eq!(group_reset(None).unwrap(), None);
        assert!(group_reset(Some(StartSpec::At(3))).is_err());
    }
}
