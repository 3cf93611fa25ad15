//! `krab metadata`: brokers, the controller, and topics with partitions, leaders, replicas and
//! ISR, from one Metadata request.

use crate::Outcome;
use crate::connect::Settings;
use crate::table::{ids, print, print_json};
use anyhow::{Context, Result, bail};
use krab_cluster::{ClusterSnapshot, TopicInfo};
use krab_protocol::Uuid;
use krab_protocol::error_code::ErrorCode;
use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MetadataArgs {
    /// Only these topics (repeatable); an unknown one is an error.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub(crate) topics: Vec<String>,
    /// Leave out internal topics (__consumer_offsets, ...).
    #[arg(long)]
    pub(crate) no_internal: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(settings: &Settings, args: MetadataArgs) -> Result<Outcome> {
    let admin = settings.admin().await?;
    let asked = (!args.topics.is_empty()).then_some(args.topics.as_slice());
    let snapshot = admin.cluster().fetch_metadata(asked).await.context("fetching metadata")?;
    let mut topics: Vec<&TopicInfo> = Vec::new();
    if args.topics.is_empty() {
        topics.extend(snapshot.topics.values().map(|t| &**t).filter(|t| !(args.no_internal && t.internal)));
    } else {
        for name in &args.topics {
            match snapshot.topic(name) {
                Some(t) if t.error == ErrorCode::UnknownTopicOrPartition => bail!("topic `{name}` does not exist"),
                Some(t) => topics.push(t),
                None => bail!("topic `{name}` does not exist"),
            }
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    if args.json {
        print_json(&to_json(&snapshot, &topics))?;
    } else {
        print(&to_text(&snapshot, &topics))?;
    }
    Ok(Outcome::Done)
}

fn leader(l: Option<i32>) -> String {
    l.map_or_else(|| "none".to_string(), |l| l.to_string())
}

pub(crate) fn to_text(s: &ClusterSnapshot, topics: &[&TopicInfo]) -> String {
    let mut out = String::new();
    let controller = s.controller.map_or_else(|| "unknown".to_string(), |c| c.to_string());
    out.push_str(&format!("cluster {}, controller {controller}\n", s.cluster_id.as_deref().unwrap_or("(no id)")));
    out.push_str(&format!("{} brokers:\n", s.brokers.len()));
    for b in s.brokers.values() {
        let rack = b.rack.as_deref().map(|r| format!(", rack {r}")).unwrap_or_default();
        let ctl = if s.controller == Some(b.id) { " (controller)" } else { "" };
        out.push_str(&format!("  broker {} at {}:{}{rack}{ctl}\n", b.id, b.addr.host, b.addr.port));
    }
    out.push_str(&format!("{} topics:\n", topics.len()));
    for t in topics {
        let internal = if t.internal { " (internal)" } else { "" };
        let error = if t.error.is_err() { format!(", error {}", t.error) } else { String::new() };
        out.push_str(&format!("  topic \"{}\" with {} partitions{internal}{error}:\n", t.name, t.partitions.len()));
        for p in &t.partitions {
            let error = if p.error.is_err() { format!(", error {}", p.error) } else { String::new() };
            out.push_str(&format!(
                "    partition {}: leader {}, epoch {}, replicas {}, isr {}{error}\n",
                p.partition,
                leader(p.leader),
                p.leader_epoch,
                ids(&p.replicas),
                ids(&p.isr)
            ));
        }
    }
    out
}

fn error_json(code: ErrorCode) -> Value {
    if code.is_ok() { Value::Null } else { Value::String(code.name().to_string()) }
}

pub(crate) fn to_json(s: &ClusterSnapshot, topics: &[&TopicInfo]) -> Value {
    json!({
        "cluster_id": s.cluster_id,
        "controller": s.controller,
        "brokers": s.brokers.values().map(|b| json!({
            "id": b.id, "host": b.addr.host, "port": b.addr.port, "rack": b.rack,
        })).collect::<Vec<_>>(),
        "topics": topics.iter().map(|t| json!({
            "name": t.name,
            "id": if t.id == Uuid::ZERO { Value::Null } else { Value::String(t.id.to_string()) },
            "internal": t.internal,
            "error": error_json(t.error),
            "partitions": t.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "error": error_json(p.error),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
