//! `krab topic`: create, delete, list, describe, alter configs, add partitions (krab-admin).

use crate::Outcome;
use crate::connect::{Settings, split_property};
use crate::table::{Table, ids, print, print_json};
use anyhow::{Context, Result, bail};
use krab_admin::{AlterConfigOp, ConfigResource, ConfigSource, ErrorCode, NewPartitions, NewTopic, TopicDescription};
use krab_protocol::Uuid;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// Delete topics.
    Delete {
        /// The topics.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// List topics with their partition counts.
    List {
        /// Include internal topics.
        #[arg(long)]
        internal: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Describe topics: partitions, leaders, replicas, ISR and configs.
    Describe {
        /// The topics.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Show every config, defaults included (by default only those set on the topic).
        #[arg(long)]
        all_configs: bool,
        /// One JSON object per topic, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Set or delete topic configs (incrementally: other configs stay as they are).
    AlterConfig {
        /// The topic.
        topic: String,
        /// Set a config (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a config's setting, back to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to more partitions.
    AddPartitions {
        /// The topic.
        topic: String,
        /// The partition count afterwards.
        #[arg(long, value_name = "N")]
        total: i32,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CreateArgs {
    /// The topic.
    pub(crate) topic: String,
    /// Partitions [default: the broker's num.partitions].
    #[arg(long, value_name = "N")]
    pub(crate) partitions: Option<i32>,
    /// Replicas of each partition [default: the broker's default.replication.factor].
    #[arg(long, short = 'r', value_name = "N")]
    pub(crate) replication_factor: Option<i16>,
    /// A topic config (repeatable), e.g. --config retention.ms=86400000.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub(crate) configs: Vec<String>,
    /// Succeed when the topic exists already.
    #[arg(long)]
    pub(crate) if_not_exists: bool,
}

pub(crate) async fn run(settings: &Settings, command: TopicCommand) -> Result<Outcome> {
    let admin = settings.admin().await?;
    match command {
        TopicCommand::Create(args) => {
            let mut topic =
                NewTopic::new(&args.topic, args.partitions.unwrap_or(-1), args.replication_factor.unwrap_or(-1));
            topic.partitions = args.partitions;
            topic.replication_factor = args.replication_factor;
            for c in &args.configs {
                let (k, v) = split_property(c).map_err(|_| anyhow::anyhow!("--config {c}: expected KEY=VALUE"))?;
                topic = topic.config(k, v);
            }
            let mut created = admin.create_topics(&[topic]).await.context("creating the topic")?;
            match created.remove(&args.topic) {
                Some(Ok(c)) => {
                    let shape = if c.partitions >= 0 {
                        format!(" with {} partitions, replication factor {}", c.partitions, c.replication_factor)
                    } else {
                        String::new()
                    };
                    print(&format!("created topic \"{}\"{shape}\n", args.topic))?;
                }
                Some(Err(e)) if args.if_not_exists && e.error_code() == Some(ErrorCode::TopicAlreadyExists) => {
                    print(&format!("topic \"{}\" exists already\n", args.topic))?;
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context(format!("creating topic `{}`", args.topic))),
                None => bail!("creating topic `{}`: the controller did not answer for it", args.topic),
            }
        }
        TopicCommand::Delete { topics } => {
            let results = admin.delete_topics(&topics).await.context("deleting topics")?;
            let mut failed = None;
            for (name, r) in results {
                match r {
                    Ok(()) => print(&format!("deleted topic \"{name}\"\n"))?,
                    Err(e) => {
                        eprintln!("krab: deleting topic `{name}`: {e}");
                        failed.get_or_insert(name);
                    }
                }
            }
            if let Some(name) = failed {
                bail!("deleting topics: `{name}` (and any named above) not deleted");
            }
        }
        TopicCommand::List { internal, json } => {
            let topics = admin.list_topics().await.context("listing topics")?;
            let topics: Vec<_> = topics.into_iter().filter(|t| internal || !t.internal).collect();
            if json {
                for t in &topics {
                    print_json(&json!({"name": t.name, "partitions": t.partitions, "internal": t.internal}))?;
                }
            } else {
                let mut table = Table::new(&["TOPIC", "PARTITIONS"]);
                for t in &topics {
                    let name = if t.internal { format!("{} (internal)", t.name) } else { t.name.clone() };
                    table.row(vec![name, t.partitions.to_string()]);
                }
                print(&table.render())?;
            }
        }
        TopicCommand::Describe { topics, all_configs, json } => {
            let described = admin.describe_topics(&topics).await.context("describing topics")?;
            for name in &topics {
                let d = match described.get(name) {
                    Some(Ok(d)) => d,
                    Some(Err(e)) if e.error_code() == Some(ErrorCode::UnknownTopicOrPartition) => {
                        bail!("topic `{name}` does not exist")
                    }
                    Some(Err(e)) => return Err(anyhow::Error::new(e.clone()).context(format!("describing `{name}`"))),
                    None => bail!("describing `{name}`: no answer for it"),
                };
                if json {
                    print_json(&description_json(d, all_configs))?;
                } else {
                    print(&description_text(d, all_configs))?;
                }
            }
        }
        TopicCommand::AlterConfig { topic, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("alter-config: nothing to change (give --set KEY=VALUE or --delete KEY)");
            }
            let mut ops = Vec::new();
            for s in &set {
                let (k, v) = split_property(s).map_err(|_| anyhow::anyhow!("--set {s}: expected KEY=VALUE"))?;
                ops.push(AlterConfigOp::Set(k, v));
            }
            ops.extend(delete.iter().map(|k| AlterConfigOp::Delete(k.clone())));
            let resource = ConfigResource::Topic(topic.clone());
            let mut results =
                admin.incremental_alter_configs(&[(resource.clone(), ops)]).await.context("altering configs")?;
            match results.remove(&resource) {
                Some(Ok(())) => print(&format!("altered the configs of topic \"{topic}\"\n"))?,
                Some(Err(e)) => return Err(anyhow::Error::new(e).context(format!("altering the configs of `{topic}`"))),
                None => bail!("altering the configs of `{topic}`: no answer for it"),
            }
        }
        TopicCommand::AddPartitions { topic, total } => {
            let mut results = admin
                .create_partitions(&[(topic.clone(), NewPartitions::increase_to(total))])
                .await
                .context("adding partitions")?;
            match results.remove(&topic) {
                Some(Ok(())) => print(&format!("topic \"{topic}\" now has {total} partitions\n"))?,
                Some(Err(e)) => return Err(anyhow::Error::new(e).context(format!("adding partitions to `{topic}`"))),
                None => bail!("adding partitions to `{topic}`: no answer for it"),
            }
        }
    }
    Ok(Outcome::Done)
}

fn replication_factor(d: &TopicDescription) -> usize {
    d.partitions.iter().map(|p| p.replicas.len()).max().unwrap_or(0)
}

fn shown(c: &krab_admin::ConfigEntry, all: bool) -> bool {
    all || c.source == ConfigSource::DynamicTopic
}

fn source_name(s: ConfigSource) -> &'static str {
    match s {
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker => "broker",
        ConfigSource::DynamicDefaultBroker => "broker default",
        ConfigSource::StaticBroker => "broker file",
        ConfigSource::Default => "default",
        ConfigSource::DynamicBrokerLogger => "broker logger",
        _ => "unknown",
    }
}

pub(crate) fn description_text(d: &TopicDescription, all_configs: bool) -> String {
    let mut out = format!(
        "topic \"{}\"{}: {} partitions, replication factor {}{}\n",
        d.name,
        if d.id == Uuid::ZERO { String::new() } else { format!(" (id {})", d.id) },
        d.partitions.len(),
        replication_factor(d),
        if d.internal { ", internal" } else { "" },
    );
    let configs: Vec<_> = d.configs.iter().filter(|c| shown(c, all_configs)).collect();
    if configs.is_empty() {
        out.push_str("  configs: none set on the topic\n");
    } else {
        out.push_str("  configs:\n");
        for c in configs {
            let value = if c.sensitive { "(sensitive)" } else { c.value.as_deref().unwrap_or("(none)") };
            out.push_str(&format!("    {}={value} ({})\n", c.name, source_name(c.source)));
        }
    }
    for p in &d.partitions {
        out.push_str(&format!(
            "  partition {}: leader {}, replicas {}, isr {}\n",
            p.partition,
            p.leader.map_or_else(|| "none".into(), |l| l.to_string()),
            ids(&p.replicas),
            ids(&p.isr)
        ));
    }
    out
}

pub(crate) fn description_json(d: &TopicDescription, all_configs: bool) -> Value {
    let configs: Map<String, Value> = d
        .configs
        .iter()
        .filter(|c| shown(c, all_configs))
        .map(|c| (c.name.clone(), c.value.clone().map_or(Value::Null, Value::String)))
        .collect();
    json!({
        "name": d.name,
        "id": if d.id == Uuid::ZERO { Value::Null } else { Value::String(d.id.to_string()) },
        "internal": d.internal,
        "partition_count": d.partitions.len(),
        "replication_factor": replication_factor(d),
        "configs": configs,
        "partitions": d.partitions.iter().map(|p| json!({
            "partition": p.partition, "leader": p.leader, "replicas": p.replicas, "isr": p.isr,
        })).collect::<Vec<_>>(),
    })
}
