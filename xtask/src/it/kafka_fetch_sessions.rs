//! `kafka/fetch-sessions`: krab's consumer and KIP-227 incremental fetch sessions on the 3-node
//! Apache Kafka, shown by decoding every Fetch request and response it exchanged (the proxies
//! record whole frames; krab-protocol's generated FetchRequest/FetchResponse decode them).
//!
//! A 9-partition topic (RF 3, three leaders per broker) is filled beforehand; krab's consumer
//! reads it, then a trickle of records goes to partition 0 alone. Asserted, per broker:
//!
//! - a session is established: the first request is full (session 0, epoch 0, every partition
//!   the broker leads) and its response carries a session id ≠ 0;
//! - the epoch goes 1, 2, 3, ... in the requests that follow, without a gap, for as long as the
//!   session lives (every request checked against the response before it);
//! - later requests carry only the partitions that changed: fewer than the full request, most of
//!   them none or partition 0 alone once the topic is drained;
//! - eviction: partition 0's leader loses krab's session mid-trickle; krab's next incremental
//!   request is answered FETCH_SESSION_ID_NOT_FOUND, and krab falls back to a full request
//!   (session 0, epoch 0, all its partitions) that opens a new session; the other brokers' sessions
//!   are untouched; every record is yielded exactly once, in order, at its produced offset.
//!
//! How the session is evicted, and why not by `max.incremental.fetch.session.cache.slots`: Kafka
//! 4.4 splits the cache into 8 shards of `slots / 8` entries each (`BrokerServer`,
//! `FetchSessionCacheShard`; a new session goes to the next shard in turn), so `slots = 1` gives
//! every shard 0 entries and the broker creates no session at all (each full response carries
//! session id 0: nothing to evict). With room, a consumer's new session may evict another
//! consumer's only if that one was created more than 120 s ago (`MIN_INCREMENTAL_FETCH_SESSION_
//! EVICTION_MS`) and holds no more partitions, or is unused for 120 s; only follower (replica)
//! sessions evict consumer sessions at once. Instead, a second client names krab's session (its
//! id, read off the recording) in a full request with epoch −1: Kafka removes any session a full
//! or final request names, from the same cache an eviction removes it from, and krab sees
//! exactly what an eviction leaves (FETCH_SESSION_ID_NOT_FOUND on its next incremental fetch).

use super::consume_support::{
    Produced, Reading, check, consumer_config, decode_request, decode_response, produce_beforehand,
};
use super::kafka_support::{KafkaCtx, kctl};
use super::support::producer_config;
use crate::proxy::{Dir, Frame};
use anyhow::{Context, Result, bail, ensure};
use krab_cluster::{Cluster, ClusterConfig, transport::parse_bootstrap};
use krab_consumer::Consumer;
use krab_producer::{Producer, Record};
use krab_protocol::messages::FetchRequest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-kafka-fetch-sessions";
const PARTITIONS: i32 = 9;
const PER_PARTITION: u64 = 300;
/// The consumer's client id (`consume_support::consumer_config`): its requests are the ones
/// decoded.
const CLIENT_ID: &str = "krab-it-consumer";
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
/// The trickle's pace: one record to partition 0 every this long.
const TRICKLE: Duration = Duration::from_millis(50);

/// One Fetch request of krab's consumer and what answered it.
#[derive(Debug, Clone)]
struct Exchange {
    session_id: i32,
    epoch: i32,
    partitions: usize,
    forgotten: usize,
    /// Top-level error code, session id.
    response: Option<(i16, i32)>,
}

/// Pairs the consumer's Fetch requests with their responses (by connection and correlation id),
/// in request order.
fn exchanges(frames: &[Frame]) -> Result<Vec<Exchange>> {
    let mut pending: HashMap<(u32, i32), (usize, i16)> = HashMap::new();
    let mut out = Vec::new();
    for f in frames {
        match f.dir {
            Dir::Request => {
                let Some((header, request)) = decode_request::<FetchRequest>(&f.bytes)? else { continue };
                if header.client_id.as_deref() != Some(CLIENT_ID) {
                    continue;
                }
                pending.insert((f.conn, header.correlation_id), (out.len(), header.request_api_version));
                out.push(Exchange {
                    session_id: request.session_id,
                    epoch: request.session_epoch,
                    partitions: request.topics.iter().map(|t| t.partitions.len()).sum(),
                    forgotten: request.forgotten_topics_data.iter().map(|t| t.partitions.len()).sum(),
                    response: None,
                });
            }
            Dir::Response => {
                let Some(id) = krab_protocol::peek_correlation_id(&f.bytes) else { continue };
                let Some((n, version)) = pending.remove(&(f.conn, id)) else { continue };
                let response = decode_response::<FetchRequest>(&f.bytes, version)?;
                out[n].response = Some((response.error_code, response.session_id));
            }
        }
    }
    Ok(out)
}

/// The `(session id, epoch)` the request after `x` must carry, if `x` was answered.
fn next_expected(x: &Exchange) -> Option<(i32, i32)> {
    let (error, session) = x.response?;
    Some(match error {
        0 if x.epoch == 0 => (session, i32::from(session != 0)),
        0 => (x.session_id, if x.epoch == i32::MAX { 1 } else { x.epoch + 1 }),
        FETCH_SESSION_ID_NOT_FOUND => (0, 0),
        _ => (x.session_id, 0),
    })
}

/// What one broker's exchanges show.
#[derive(Debug, Default)]
struct BrokerView {
    sessions: Vec<i32>,
    requests: usize,
    full: Vec<usize>,
    /// Partitions per incremental request while the topic was read from the start.
    draining: Vec<usize>,
    /// Partitions per incremental request once it was drained (the trickle to partition 0).
    incremental: Vec<usize>,
    epoch_breaks: Vec<String>,
    not_found: usize,
    /// Partitions named in forgotten-topics lists (a partition over its buffer budget leaves).
    forgotten: usize,
}

/// `drained`: the first exchange after which only the trickle changed anything (the topic read
/// to its end).
fn view(ex: &[Exchange], drained: usize) -> BrokerView {
    let mut v = BrokerView::default();
    // The close a dropped consumer sends (epoch -1) is not part of the session's life.
    let ex: Vec<(usize, &Exchange)> = ex.iter().enumerate().filter(|(_, x)| x.epoch >= 0).collect();
    v.requests = ex.len();
    for (i, &(at, x)) in ex.iter().enumerate() {
        v.forgotten += x.forgotten;
        if x.epoch == 0 {
            v.full.push(x.partitions);
        } else if at < drained {
            v.draining.push(x.partitions);
        } else {
            v.incremental.push(x.partitions);
        }
        if let Some((error, session)) = x.response {
            if error == 0 && session != 0 && v.sessions.last() != Some(&session) {
                v.sessions.push(session);
            }
            v.not_found += usize::from(error == FETCH_SESSION_ID_NOT_FOUND);
        }
        if let (Some(want), Some((_, next))) = (next_expected(x), ex.get(i + 1))
            && (next.session_id, next.epoch) != want
            && v.epoch_breaks.len() < 5
        {
            v.epoch_breaks.push(format!(
                "request #{} ({}, {}) answered {:?}, then ({}, {}) instead of {want:?}",
                i, x.session_id, x.epoch, x.response, next.session_id, next.epoch
            ));
        }
    }
    v
}

/// Sends the Fetch that removes session `id` from broker `node`'s cache (full request, epoch
/// -1), from a client of its own on the INTERNAL listeners (not krab's consumer, not through
/// a proxy). Returns the response's error code and session id.
async fn close_session(bootstrap: &str, node: i32, id: i32) -> Result<(i16, i32)> {
    let mut config = ClusterConfig::new(parse_bootstrap(bootstrap)?);
    config.connection.client_id = Some("krab-it-session-closer".into());
    let cluster = Cluster::connect(config).await?;
    let broker = cluster.broker(node).await?;
    let version = broker.version_of::<FetchRequest>()?;
    let request = FetchRequest { session_id: id, session_epoch: -1, max_wait_ms: 0, ..Default::default() };
    let response = broker.send(&request, version).await?;
    Ok((response.error_code, response.session_id))
}

/// Produces to partition 0 at the trickle's pace until stopped; returns offset → value.
fn trickle(producer: Producer, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Result<BTreeMap<i64, String>>> {
    tokio::spawn(async move {
        let topic: Arc<str> = TOPIC.into();
        let mut out = BTreeMap::new();
        let mut seq = PER_PARTITION;
        while !stop.load(Ordering::Relaxed) {
            let value = format!("0-{seq}");
            let m = producer.send(Record::new(topic.clone(), value.clone()).partition(0)).await?.await?;
            out.insert(m.offset, value);
            seq += 1;
            tokio::time::sleep(TRICKLE).await;
        }
        producer.close(Duration::from_secs(10)).await?;
        Ok(out)
    })
}

/// Polls `node`'s recording until `done` holds for the consumer's exchanges there.
async fn wait_exchanges(
    ctx: &KafkaCtx<'_>,
    node: i32,
    what: &str,
    done: impl Fn(&[Exchange]) -> bool,
) -> Result<Vec<Exchange>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ex = exchanges(&ctx.kafka.proxy(node)?.recorded())?;
        if done(&ex) {
            return Ok(ex);
        }
        ensure!(Instant::now() < deadline, "broker {node}: no {what} within 30 s; exchanges {:?}", ex.last());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let leaders = kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 3, &[])).await?;
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    for s in leaders.values() {
        *leads.entry(s.leader.context("a partition without a leader")?).or_default() += 1;
    }
    let p0_leader = leaders[&0].leader.context("partition 0 has no leader")?;
    let bootstrap = ctx.kafka.bootstrap();
    let mut produced: Produced =
        produce_beforehand(producer_config(&bootstrap)?, TOPIC, PARTITIONS, PER_PARTITION).await?;
    let prefilled: usize = produced.values().map(BTreeMap::len).sum();

    for p in ctx.kafka.proxies() {
        p.record();
    }
    let consumer = Consumer::connect(consumer_config(&bootstrap)?).await?;
    let reading = Reading::start(consumer, TOPIC, PARTITIONS, u64::MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reading.count() < prefilled {
            ensure!(Instant::now() < deadline, "read {} of {prefilled} records in 60 s", reading.count());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first request after the drain may still carry the offsets the last data moved
        // (the application can drain before the fetcher sends it); from the next one on, only
        // the trickle changes anything.
        let mut drained = BTreeMap::new();
        for (i, p) in ctx.kafka.proxies().iter().enumerate() {
            let node = i as i32 + 1;
            let n = exchanges(&p.recorded())?.len();
            wait_exchanges(ctx, node, "two more requests after the drain", |ex| ex.len() >= n + 2).await?;
            drained.insert(node, n + 1);
        }
        let writer = trickle(Producer::connect(producer_config(&bootstrap)?).await?, stop.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        // krab's session with partition 0's leader, as its last answered request shows it.
        let before = exchanges(&ctx.kafka.proxy(p0_leader)?.recorded())?;
        let (session, epoch) = before
            .iter()
            .rev()
            .find_map(|x| match x.response {
                Some((0, s)) if s != 0 && x.epoch > 0 => Some((s, x.epoch)),
                _ => None,
            })
            .context("no incremental fetch answered by partition 0's leader yet")?;
        let closed = close_session(&ctx.kafka.direct_bootstrap(), p0_leader, session).await?;
        ensure!(closed.0 == 0, "closing session {session} on broker {p0_leader} failed with error {}", closed.0);
        let seen = before.len();
        wait_exchanges(ctx, p0_leader, "new session after FETCH_SESSION_ID_NOT_FOUND", |ex| {
            let after = &ex[seen.min(ex.len())..];
            after.iter().position(|x| x.response.is_some_and(|(e, _)| e == FETCH_SESSION_ID_NOT_FOUND)).is_some_and(
                |n| after[n + 1..].iter().any(|x| x.response.is_some_and(|(e, s)| e == 0 && s != 0 && s != session)),
            )
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let trickled = writer.await??;
        anyhow::Ok((session, epoch, trickled, drained))
    }
    .await;
    if outcome.is_err() {
        stop.store(true, Ordering::Relaxed);
        reading.abort();
    }
    let (evicted, evicted_epoch, trickled, drained) = outcome?;
    let trickled_count = trickled.len();
    produced.entry(0).or_default().extend(trickled);
    let total: usize = produced.values().map(BTreeMap::len).sum();
    let (log, errors, consumer) = reading.finish(total, Duration::from_secs(60)).await?;
    // Let the last fetches' responses arrive before the recording ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recordings: Vec<Vec<Frame>> = ctx.kafka.proxies().iter().map(|p| p.take_recording()).collect();
    drop(consumer);

    let (mut problems, summary) = check(&produced, &log);
    if !errors.is_empty() {
        problems.push(format!("{} errors yielded: {:?}", errors.len(), &errors[..errors.len().min(5)]));
    }
    let mut lines = Vec::new();
    for (i, frames) in recordings.iter().enumerate() {
        let node = i as i32 + 1;
        let v = view(&exchanges(frames)?, drained.get(&node).copied().unwrap_or(0));
        let want_full = leads.get(&node).copied().unwrap_or(0);
        if want_full == 0 {
            continue;
        }
        if v.sessions.is_empty() {
            problems.push(format!("broker {node}: no session established ({} requests)", v.requests));
        }
        if v.full.first() != Some(&want_full) {
            problems.push(format!(
                "broker {node}: first full request carried {:?} partitions, it leads {want_full}",
                v.full.first()
            ));
        }
        // Drained, only partition 0 changes (on its leader): every request carries it or nothing.
        let changing = usize::from(node == p0_leader);
        if let Some(&max) = v.incremental.iter().max()
            && max > changing
        {
            problems.push(format!(
                "broker {node}: an incremental request after the drain carried {max} partitions (at most {changing} changed)"
            ));
        }
        if v.incremental.len() < 5 {
            problems.push(format!("broker {node}: only {} incremental requests", v.incremental.len()));
        }
        problems.extend(v.epoch_breaks.iter().map(|b| format!("broker {node}: {b}")));
        let evictions = if node == p0_leader { 1 } else { 0 };
        if v.not_found != evictions {
            problems.push(format!(
                "broker {node}: {} FETCH_SESSION_ID_NOT_FOUND answers, expected {evictions}",
                v.not_found
            ));
        }
        let want_sessions = 1 + evictions;
        if v.sessions.len() != want_sessions || v.full.len() != want_sessions || v.full.iter().any(|&n| n != want_full)
        {
            problems.push(format!(
                "broker {node}: sessions {:?}, full requests carrying {:?} partitions; expected {want_sessions} of each, \
                 each full request with {want_full}",
                v.sessions, v.full
            ));
        }
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
        let max = |v: &[usize]| v.iter().max().copied().unwrap_or(0);
        lines.push(format!(
            "broker {node}: sessions {:?}, {} requests: full {:?}, incremental while draining {} (mean {:.2}, max {}), \
             then {} (mean {:.2}, max {}), {} forgotten{}",
            v.sessions,
            v.requests,
            v.full,
            v.draining.len(),
            mean(&v.draining),
            max(&v.draining),
            v.incremental.len(),
            mean(&v.incremental),
            max(&v.incremental),
            v.forgotten,
            if node == p0_leader {
                format!(
                    ", {} FETCH_SESSION_ID_NOT_FOUND after session {evicted} was evicted at epoch {evicted_epoch}",
                    v.not_found
                )
            } else {
                String::new()
            }
        ));
    }
    let brokers: BTreeSet<i32> = leads.keys().copied().collect();
    ensure!(brokers.len() == 3, "the topic's leaders are on brokers {brokers:?}, not all three");
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!(
        "{total} records ({prefilled} beforehand, {trickled_count} trickled to partition 0); {summary}; {}; 1 eviction",
        lines.join("; "),
    ))
}
