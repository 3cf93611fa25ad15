//! `kafka/read-committed`: Kafka's Java client (`transactions`) writes committed and aborted
//! transactions, with plain records written amid each, to a 4-partition topic on the 3-node
//! Apache Kafka; krab's consumer reads them back.
//!
//! 1. A first run writes 6 transactions (even ones committed, odd ones aborted) and leaves a 7th
//!    open, its plain record amid it. While it is open: the last stable offset of every partition
//!    is the open transaction's first offset there; `read_committed` yields exactly the committed
//!    and plain records before it, in log order, its position stops at the LSO and nothing more
//!    comes for 2 s; `read_uncommitted` yields every record up to the high watermark.
//! 2. A second run with the same transactional id fences the hanging producer, which aborts the
//!    open transaction, and writes 2 more. The `read_committed` consumer that stopped at the LSO
//!    goes on with exactly the rest (the plain record written amid the aborted transaction
//!    included); fresh consumers read the whole log: `read_committed` exactly the committed and
//!    plain records, `read_uncommitted` all of them. No control record is ever yielded (every
//!    value is one the writer wrote; each partition holds its records plus one marker per
//!    transaction), and krab's `read_committed` view equals the Java consumer's.

use super::consume_support::{consumer_config, read_for, read_to_ends, read_until};
use super::kafka_support::{KafkaCtx, kctl};
use anyhow::{Context, Result, bail, ensure};
use krab_consumer::{Consumer, ConsumerRecord, IsolationLevel, TopicPartition};
use std::collections::BTreeMap;
use std::time::Duration;

const TOPIC: &str = "krab-it-kafka-read-committed";
const PARTITIONS: i32 = 4;
/// Resolved transactions of the first run (then one is left open).
const FIRST: u32 = 6;
/// Transactions of the second run.
const SECOND: u32 = 2;
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One record as the `transactions` subcommand writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Committed,
    Aborted,
    /// Of the transaction left open (aborted later).
    Open,
    Plain,
}

/// Per partition, the records one `transactions` run writes, in log order: for transaction t,
/// `<c|a|o>-t-p`, then `p-t` on partition t % P, then `<c|a|o>-t-(p+P)`.
fn written(transactions: u32, open: bool) -> BTreeMap<i32, Vec<(Kind, String)>> {
    let mut out: BTreeMap<i32, Vec<(Kind, String)>> = BTreeMap::new();
    for t in 0..transactions + u32::from(open) {
        let (kind, prefix) = match (t == transactions, t % 2 == 0) {
            (true, _) => (Kind::Open, "o"),
            (false, true) => (Kind::Committed, "c"),
            (false, false) => (Kind::Aborted, "a"),
        };
        for p in 0..PARTITIONS {
            let log = out.entry(p).or_default();
            log.push((kind, format!("{prefix}-{t}-{p}")));
            if t as i32 % PARTITIONS == p {
                log.push((Kind::Plain, format!("p-{t}")));
            }
            log.push((kind, format!("{prefix}-{t}-{}", p + PARTITIONS)));
        }
    }
    out
}

type Values = BTreeMap<i32, Vec<String>>;

fn select(log: &BTreeMap<i32, Vec<(Kind, String)>>, keep: impl Fn(Kind) -> bool) -> Values {
    log.iter().map(|(p, l)| (*p, l.iter().filter(|(k, _)| keep(*k)).map(|(_, v)| v.clone()).collect())).collect()
}

fn concat(a: &Values, b: &Values) -> Values {
    (0..PARTITIONS)
        .map(|p| {
            let mut v = a.get(&p).cloned().unwrap_or_default();
            v.extend(b.get(&p).cloned().unwrap_or_default());
            (p, v)
        })
        .collect()
}

/// The values yielded per partition, checking offsets only grow within a partition.
fn values(records: &[ConsumerRecord]) -> Result<Values> {
    let mut out: Values = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        if let Some(l) = last.insert(r.partition, r.offset) {
            ensure!(r.offset > l, "partition {}: offset {} yielded after {l}", r.partition, r.offset);
        }
        let v = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        out.entry(r.partition).or_default().push(v);
    }
    Ok(out)
}

/// Compares what was yielded with what must be, per partition; names the first difference.
fn same(what: &str, got: &Values, want: &Values) -> Result<()> {
    for p in 0..PARTITIONS {
        let (g, w) = (&got[&p], &want[&p]);
        if g != w {
            let at = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
            bail!(
                "{what}, partition {p}: yielded {} records, expected {}; first difference at #{at}: {:?} instead of {:?}",
                g.len(),
                w.len(),
                g.get(at),
                w.get(at)
            );
        }
    }
    Ok(())
}

fn count(v: &Values) -> usize {
    v.values().map(Vec::len).sum()
}

async fn consumer(ctx: &KafkaCtx<'_>, isolation: IsolationLevel) -> Result<Consumer> {
    let config = consumer_config(&ctx.kafka.bootstrap())?.isolation_level(isolation);
    Ok(Consumer::connect(config).await?)
}

async fn ends(ctx: &KafkaCtx<'_>, isolation: IsolationLevel) -> Result<BTreeMap<i32, i64>> {
    let level = isolation.as_i8();
    kctl(&ctx.kafka, move |k| k.end_offsets(TOPIC, level)).await
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 3, &[])).await?;
    let bootstrap = ctx.kafka.bootstrap();
    let id = format!("krab-it-read-committed-{}", std::process::id());

    // 1. Six resolved transactions and a seventh left open.
    let (open, summary) = ctx.java.transactions_left_open(&bootstrap, TOPIC, PARTITIONS, FIRST, &id).await?;
    let first = written(FIRST, true);
    let first_all = select(&first, |_| true);
    let first_committed_before_open: Values = first
        .iter()
        .map(|(p, l)| {
            let before = l.iter().take_while(|(k, _)| *k != Kind::Open);
            (*p, before.filter(|(k, _)| matches!(k, Kind::Committed | Kind::Plain)).map(|(_, v)| v.clone()).collect())
        })
        .collect();
    let wrote = |k: &str| summary[k].as_u64().unwrap_or(u64::MAX);
    ensure!(
        (wrote("committed"), wrote("aborted"), wrote("plain"), wrote("open"))
            == (24, 24, u64::from(FIRST) + 1, 2 * PARTITIONS as u64),
        "the Java producer reports {summary}"
    );
    let lso = ends(ctx, IsolationLevel::ReadCommitted).await?;
    let hw = ends(ctx, IsolationLevel::ReadUncommitted).await?;

    let mut all = consumer(ctx, IsolationLevel::ReadUncommitted).await?;
    let uncommitted = read_to_ends(&mut all, TOPIC, &hw, READ_TIMEOUT).await?;
    same("read_uncommitted, transaction open", &values(&uncommitted)?, &first_all)?;
    // The LSO is where the open transaction starts on each partition.
    for p in 0..PARTITIONS {
        let first_open = uncommitted
            .iter()
            .find(|r| r.partition == p && r.value.as_deref().is_some_and(|v| v.starts_with(b"o-")))
            .with_context(|| format!("partition {p}: no record of the open transaction"))?;
        ensure!(
            lso[&p] == first_open.offset && lso[&p] < hw[&p],
            "partition {p}: last stable offset {} (high watermark {}), the open transaction starts at {}",
            lso[&p],
            hw[&p],
            first_open.offset
        );
    }
    drop(all);

    let mut committed = consumer(ctx, IsolationLevel::ReadCommitted).await?;
    let before = read_to_ends(&mut committed, TOPIC, &lso, READ_TIMEOUT).await?;
    same("read_committed, transaction open", &values(&before)?, &first_committed_before_open)?;
    let beyond = read_for(&mut committed, Duration::from_secs(2)).await?;
    ensure!(
        beyond.is_empty(),
        "read_committed yielded {} records past the last stable offset while the transaction was open: {:?}",
        beyond.len(),
        beyond.iter().take(3).map(|r| (r.partition, r.offset)).collect::<Vec<_>>()
    );
    for p in 0..PARTITIONS {
        let at = committed.position(&TopicPartition::new(TOPIC, p))?;
        ensure!(at == Some(lso[&p]), "partition {p}: read_committed position {at:?}, last stable offset {}", lso[&p]);
    }

    // 2. The same transactional id again: the open transaction is aborted, two more written.
    open.halt().await?;
    ctx.java.transactions(&bootstrap, TOPIC, PARTITIONS, SECOND, &id).await?;
    let second = written(SECOND, false);
    let resolved = |k: Kind| matches!(k, Kind::Committed | Kind::Plain);
    let want_committed = concat(&select(&first, resolved), &select(&second, resolved));
    let want_all = concat(&first_all, &select(&second, |_| true));
    let lso = ends(ctx, IsolationLevel::ReadCommitted).await?;
    let hw = ends(ctx, IsolationLevel::ReadUncommitted).await?;
    ensure!(lso == hw, "no transaction is open, yet last stable offsets {lso:?} differ from high watermarks {hw:?}");

    // The consumer that stopped at the LSO goes on with exactly the rest.
    let rest = read_until(&mut committed, TOPIC, &lso, READ_TIMEOUT).await?;
    let resumed = concat(&values(&before)?, &values(&rest)?);
    same("read_committed, resumed after the abort", &resumed, &want_committed)?;
    drop(committed);

    let mut fresh = consumer(ctx, IsolationLevel::ReadCommitted).await?;
    let read_committed = values(&read_to_ends(&mut fresh, TOPIC, &lso, READ_TIMEOUT).await?)?;
    same("read_committed", &read_committed, &want_committed)?;
    drop(fresh);
    let mut fresh = consumer(ctx, IsolationLevel::ReadUncommitted).await?;
    let everything = read_to_ends(&mut fresh, TOPIC, &hw, READ_TIMEOUT).await?;
    let read_uncommitted = values(&everything)?;
    same("read_uncommitted", &read_uncommitted, &want_all)?;
    drop(fresh);
    // Offsets not yielded are the control markers: one per transaction on each partition.
    let transactions = (FIRST + 1 + SECOND) as i64;
    for p in 0..PARTITIONS {
        let records = read_uncommitted[&p].len() as i64;
        ensure!(
            hw[&p] - records == transactions,
            "partition {p}: {records} records in {} offsets, expected {transactions} control markers",
            hw[&p]
        );
    }

    // The Java consumer's read_committed view is krab's.
    let (java, _) = ctx.java.consume(&bootstrap, TOPIC, PARTITIONS, "read_committed").await?;
    let mut java_values: Values = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let mut sorted = java.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let v = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        java_values.entry(r.partition).or_default().push(v);
    }
    same("the Java client's read_committed", &java_values, &read_committed)?;

    Ok(format!(
        "while open: read_committed {} of {} records, stopped at the LSO on {PARTITIONS} partitions (0 more in 2 s); \
         after the abort: read_committed {} (committed {} + plain {}; resumed consumer: {} more), \
         read_uncommitted {}, {} control markers never yielded; the Java client agrees",
        count(&first_committed_before_open),
        count(&first_all),
        count(&read_committed),
        count(&concat(&select(&first, |k| k == Kind::Committed), &select(&second, |k| k == Kind::Committed))),
        count(&concat(&select(&first, |k| k == Kind::Plain), &select(&second, |k| k == Kind::Plain))),
        rest.len(),
        count(&read_uncommitted),
        transactions * PARTITIONS as i64,
    ))
}
