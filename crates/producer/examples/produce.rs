//! Produces records to a topic and waits for every acknowledgement.
//!
//! `cargo run -p krab-producer --example produce -- 127.0.0.1:9092 my-topic 100000`

use krab_producer::{Producer, ProducerConfig, Record};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    // One Arc<str> for the topic: every record clones it instead of allocating a string.
    let topic: std::sync::Arc<str> = args.next().unwrap_or_else(|| "krab-example".into()).into();
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(10_000);

    let producer = Producer::connect(ProducerConfig::new(&bootstrap)?).await?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let record = Record::new(topic.clone(), format!("value-{i}")).key(format!("key-{}", i % 100));
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    let mut last = None;
    for d in deliveries {
        last = Some(d.await?);
    }
    let elapsed = started.elapsed();
    println!(
        "{count} records acknowledged in {elapsed:?} ({:.0} records/s); last: {last:?}",
        count as f64 / elapsed.as_secs_f64()
    );
    producer.close(std::time::Duration::from_secs(5)).await?;
    Ok(())
}
