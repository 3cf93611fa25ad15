//! Produces to a broker while krab's metrics are served for Prometheus to scrape.
//!
//! `cargo run -p krab-producer --example prometheus -- 127.0.0.1:9092 [port] [topic] [seconds]`
//!
//! Installs the Prometheus exporter (listening on 127.0.0.1:9000, or the port given) as the
//! `metrics` recorder *before* connecting, since krab registers its metric handles once, when a
//! client and each of its connections start. Then it sends about 1,000 records per second for
//! 60 seconds (or the seconds given); `curl http://127.0.0.1:9000/metrics` shows `krab_*`.

use krab_producer::{Producer, ProducerConfig, Record};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(9000);
    let topic: std::sync::Arc<str> = args.next().unwrap_or_else(|| "krab-prometheus".into()).into();
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);

    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    PrometheusBuilder::new().with_http_listener(listen).install()?;
    // Units and help texts for the exporter (optional).
    krab_cluster::telemetry::describe();
    println!("scrape http://{listen}/metrics (krab_* metrics); producing to {topic} at {bootstrap} for {seconds} s");

    let producer = Producer::connect(ProducerConfig::new(&bootstrap)?.client_id("krab-prometheus-example")).await?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut pending = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..10 {
            let record = Record::new(topic.clone(), format!("value-{sent}")).key(format!("key-{}", sent % 100));
            pending.push(producer.send(record).await?);
            sent += 1;
        }
        if pending.len() >= 1000 {
            for delivery in pending.drain(..) {
                failed += u64::from(delivery.await.is_err());
            }
        }
    }
    for delivery in pending {
        failed += u64::from(delivery.await.is_err());
    }
    producer.close(Duration::from_secs(5)).await?;
    println!("sent {sent} records, {failed} failed");
    Ok(())
}
