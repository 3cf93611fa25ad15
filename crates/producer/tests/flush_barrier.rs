//! `flush()` is a barrier over the records sent before it, and only those: records sent after
//! it, even a continuous stream of them, do not hold it back.

mod support;

use krab_producer::{Producer, ProducerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{Harness, settle};

/// Keeps sending to `topic` until `stop` is set (one record every 10 ms of tokio time),
/// counting the records accepted.
fn keep_sending(producer: Producer, topic: &'static str, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let record = krab_producer::Record::new(topic, bytes::Bytes::from_static(b"later"));
            match producer.send(record).await {
                Ok(d) => drop(d),
                Err(_) => return,
            }
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    sent
}

fn config(c: ProducerConfig) -> ProducerConfig {
    c.max_block(Duration::from_secs(60)).delivery_timeout(Duration::from_secs(120))
}

/// Once a flush is under way, another task keeps sending to a topic the cluster does not have
/// (its records wait for metadata up to `max.block.ms`): the flush returns once the records
/// sent before it are acknowledged, not when the later records stop waiting.
#[tokio::test(start_paused = true)]
async fn flush_does_not_wait_for_later_records_of_a_missing_topic() {
    let h = Harness::start(1, &[("t", 1)], config).await;
    let before = h.send("t", Some(0), "before").await;
    let flush = {
        let producer = h.producer.clone();
        tokio::spawn(async move { producer.flush().await })
    };
    tokio::task::yield_now().await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = keep_sending(h.producer.clone(), "missing", stop.clone());
    let flushed = tokio::time::timeout(Duration::from_secs(10), flush).await;
    stop.store(true, Ordering::Relaxed);
    flushed.expect("flush returns while later records keep waiting").expect("joined").expect("flushed");
    assert!(sent.load(Ordering::Relaxed) > 0, "the other task sent during the flush");
    settle(before, Duration::ZERO).await.expect("the earlier record was acknowledged before flush returned");
}

/// Records waiting for a missing topic when flush is called are covered by it: flush returns
/// only when they stop waiting (here: failing at `max.block.ms`).
#[tokio::test(start_paused = true)]
async fn flush_covers_earlier_records_of_a_missing_topic() {
    let h = Harness::start(1, &[("t", 1)], |c| config(c).max_block(Duration::from_secs(5))).await;
    let missing = h.send("missing", None, "early").await;
    let started = tokio::time::Instant::now();
    h.producer.flush_within(Duration::from_secs(30)).await.expect("flushed");
    assert!(started.elapsed() >= Duration::from_secs(5), "flush waited for the waiting record");
    let e = settle(missing, Duration::ZERO).await.expect_err("the topic never appeared");
    assert_eq!(e.kind(), krab_producer::ErrorKind::UnknownTopic, "{e}");
}

/// A record sent before the flush to a topic still waiting for metadata is covered: the flush
/// returns only after the topic appears and that record is acknowledged, while another task
/// keeps sending to the same topic all along.
#[tokio::test(start_paused = true)]
async fn flush_covers_earlier_records_waiting_for_metadata_amid_a_stream() {
    let h = Harness::start(1, &[("t", 1)], config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let early = h.send("late", Some(0), "early").await;
    let sent = keep_sending(h.producer.clone(), "late", stop.clone());
    let flush = {
        let producer = h.producer.clone();
        tokio::spawn(async move { producer.flush().await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!flush.is_finished(), "the record sent before flush is still waiting for its topic");
    h.fake.create_topic("late", 1);
    let flushed = tokio::time::timeout(Duration::from_secs(10), flush).await;
    stop.store(true, Ordering::Relaxed);
    flushed.expect("flush returns while the stream goes on").expect("joined").expect("flushed");
    assert!(sent.load(Ordering::Relaxed) > 5);
    let meta = settle(early, Duration::ZERO).await.expect("acknowledged before flush returned");
    assert_eq!(meta.offset, 0);
}

/// A flush with another task streaming to a healthy topic returns once its own records are in.
#[tokio::test(start_paused = true)]
async fn flush_does_not_wait_for_a_stream_to_a_healthy_topic() {
    let h = Harness::start(1, &[("t", 1), ("busy", 2)], config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let _sent = keep_sending(h.producer.clone(), "busy", stop.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = h.send("t", Some(0), "before").await;
    let flushed = tokio::time::timeout(Duration::from_secs(10), h.producer.flush()).await;
    stop.store(true, Ordering::Relaxed);
    flushed.expect("flush returns").expect("flushed");
    settle(before, Duration::ZERO).await.expect("acknowledged before flush returned");
}
