//! `krab group`: list, describe, lag, reset-offsets, delete (krab-admin). Resetting offsets is
//! refused while the group has members: the coordinator would refuse the commit anyway, and the
//! members would overwrite it.

use crate::Outcome;
use crate::connect::Settings;
use crate::table::{Table, print, print_json};
use anyhow::{Context, Result, bail};
use krab_admin::{Admin, GroupDescription, OffsetSpec, TopicPartition};
use krab_protocol::error_code::ErrorCode;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// List the cluster's groups.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// A group's state, members and their assignments, and its offsets and lag.
    Describe {
        /// The group (repeatable).
        #[arg(short = 'G', long = "group", required = true, value_name = "GROUP")]
        groups: Vec<String>,
        /// One JSON object per group, one per line.
        #[arg(long)]
        json: bool,
    },
    /// A group's lag per partition: the log end minus the committed offset.
    Lag {
        /// The group.
        #[arg(short = 'G', long = "group", value_name = "GROUP")]
        group: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Set a group's committed offsets (the group must have no members).
    ResetOffsets(ResetArgs),
    /// Delete groups (each must have no members), with their committed offsets.
    Delete {
        /// The group (repeatable).
        #[arg(short = 'G', long = "group", required = true, value_name = "GROUP")]
        groups: Vec<String>,
    },
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
#[command(group(clap::ArgGroup::new("which").required(true).args(["topics", "all_topics"])))]
pub(crate) struct ResetArgs {
    /// The group.
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub(crate) group: String,
    /// A topic, or some of its partitions as TOPIC:P[,P...] (repeatable).
    #[arg(short = 't', long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    pub(crate) topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub(crate) all_topics: bool,
    /// To each partition's log start.
    #[arg(long)]
    pub(crate) to_earliest: bool,
    /// To each partition's log end.
    #[arg(long)]
    pub(crate) to_latest: bool,
    /// To this offset (kept inside each partition's log).
    #[arg(long, value_name = "N")]
    pub(crate) to_offset: Option<i64>,
    /// To the first record at or after this time: ms since the epoch, or
    /// YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z|+HH:MM|-HH:MM] (UTC when no zone is given).
    #[arg(long, value_name = "DATETIME")]
    pub(crate) to_datetime: Option<String>,
    /// Show the new offsets without setting them.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) async fn run(settings: &Settings, command: GroupCommand) -> Result<Outcome> {
    let admin = settings.admin().await?;
    match command {
        GroupCommand::List { json } => {
            let groups = admin.list_groups().await.context("listing groups")?;
            if json {
                for g in &groups {
                    print_json(&json!({
                        "group": g.group_id, "state": g.state, "protocol_type": g.protocol_type, "type": g.group_type,
                    }))?;
                }
            } else {
                let mut t = Table::new(&["GROUP", "STATE", "TYPE", "PROTOCOL TYPE"]);
                for g in &groups {
                    t.row(vec![g.group_id.clone(), g.state.clone(), g.group_type.clone(), g.protocol_type.clone()]);
                }
                print(&t.render())?;
            }
        }
        GroupCommand::Describe { groups, json } => {
            let described = admin.describe_groups(&groups).await.context("describing groups")?;
            for name in &groups {
                let d = match described.get(name) {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(anyhow::Error::new(e.clone()).context(format!("describing `{name}`"))),
                    None => bail!("describing `{name}`: no answer for it"),
                };
                if d.state == "Dead" {
                    bail!("group `{name}` does not exist");
                }
                let lag = lag_of(&admin, name).await?;
                let owners: BTreeMap<&TopicPartition, &str> = d
                    .members
                    .iter()
                    .flat_map(|m| m.assignment.iter().map(move |tp| (tp, m.member_id.as_str())))
                    .collect();
                if json {
                    print_json(&json!({
                        "group": d.group_id,
                        "state": d.state,
                        "protocol_type": d.protocol_type,
                        "assignor": d.protocol,
                        "members": d.members.iter().map(|m| json!({
                            "member_id": m.member_id,
                            "group_instance_id": m.group_instance_id,
                            "client_id": m.client_id,
                            "host": m.client_host,
                            "assignment": m.assignment.iter().map(|tp| json!({"topic": tp.topic, "partition": tp.partition})).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                        "offsets": lag.iter().map(|(tp, l)| json!({
                            "topic": tp.topic, "partition": tp.partition, "committed": l.committed, "end": l.end,
                            "lag": l.lag, "owner": owners.get(tp),
                        })).collect::<Vec<_>>(),
                    }))?;
                } else {
                    print(&describe_text(d, &lag, &owners))?;
                }
            }
        }
        GroupCommand::Lag { group, json } => {
            let lag = lag_of(&admin, &group).await?;
            let total: i64 = lag.values().map(|l| l.lag).sum();
            if json {
                print_json(&json!({
                    "group": group,
                    "partitions": lag.iter().map(|(tp, l)| json!({
                        "topic": tp.topic, "partition": tp.partition, "committed": l.committed, "end": l.end, "lag": l.lag,
                    })).collect::<Vec<_>>(),
                    "total": total,
                }))?;
            } else {
                let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]);
                for (tp, l) in &lag {
                    t.row(vec![
                        tp.topic.clone(),
                        tp.partition.to_string(),
                        l.committed.to_string(),
                        l.end.to_string(),
                        l.lag.to_string(),
                    ]);
                }
                print(&format!("{}total lag {total} over {} partitions\n", t.render(), lag.len()))?;
            }
        }
        GroupCommand::ResetOffsets(args) => reset(&admin, args).await?,
        GroupCommand::Delete { groups } => {
            let results = admin.delete_groups(&groups).await.context("deleting groups")?;
            let mut failed = None;
            for (name, r) in results {
                match r {
                    Ok(()) => print(&format!("deleted group \"{name}\"\n"))?,
                    Err(e) => {
                        let why = match e.error_code() {
                            Some(ErrorCode::NonEmptyGroup) => "it has members; stop them first".to_string(),
                            Some(ErrorCode::GroupIdNotFound) => "no such group".to_string(),
                            _ => e.to_string(),
                        };
                        eprintln!("krab: deleting group `{name}`: {why}");
                        failed.get_or_insert(name);
                    }
                }
            }
            if let Some(name) = failed {
                bail!("deleting groups: `{name}` (and any named above) not deleted");
            }
        }
    }
    Ok(Outcome::Done)
}

async fn lag_of(admin: &Admin, group: &str) -> Result<BTreeMap<TopicPartition, krab_admin::PartitionLag>> {
    let results = admin.group_lag(group).await.with_context(|| format!("the lag of group `{group}`"))?;
    let mut out = BTreeMap::new();
    for (tp, r) in results {
        let l = r.map_err(|e| anyhow::Error::new(e).context(format!("the end of {tp}")))?;
        out.insert(tp, l);
    }
    Ok(out)
}

fn describe_text(
    d: &GroupDescription,
    lag: &BTreeMap<TopicPartition, krab_admin::PartitionLag>,
    owners: &BTreeMap<&TopicPartition, &str>,
) -> String {
    let mut out = format!(
        "group \"{}\": state {}, protocol type {}, assignor {}, {} members\n",
        d.group_id,
        d.state,
        if d.protocol_type.is_empty() { "(none)" } else { &d.protocol_type },
        if d.protocol.is_empty() { "(none)" } else { &d.protocol },
        d.members.len()
    );
    for m in &d.members {
        let assigned: Vec<String> = m.assignment.iter().map(ToString::to_string).collect();
        let instance = m.group_instance_id.as_deref().map(|i| format!(" (instance {i})")).unwrap_or_default();
        out.push_str(&format!(
            "  member {}{instance}: client {} from {}, partitions [{}]\n",
            m.member_id,
            m.client_id,
            m.client_host,
            assigned.join(", ")
        ));
    }
    let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OWNER"]);
    for (tp, l) in lag {
        t.row(vec![
            tp.topic.clone(),
            tp.partition.to_string(),
            l.committed.to_string(),
            l.end.to_string(),
            l.lag.to_string(),
            owners.get(tp).map_or("-", |m| m).to_string(),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// `TOPIC` or `TOPIC:P[,P...]`.
pub(crate) fn parse_topic_partitions(s: &str) -> Result<(String, Option<Vec<i32>>)> {
    match s.rsplit_once(':') {
        None => Ok((s.to_string(), None)),
        Some((topic, parts)) if !topic.is_empty() => {
            let partitions = parts
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("-t {s}: expected TOPIC or TOPIC:P[,P...]"))?;
            Ok((topic.to_string(), Some(partitions)))
        }
        Some(_) => bail!("-t {s}: expected TOPIC or TOPIC:P[,P...]"),
    }
}

/// Milliseconds since the epoch from `YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z|±HH:MM]` (UTC by
/// default) or from a number of milliseconds.
pub(crate) fn parse_datetime(s: &str) -> Result<i64> {
    let t = s.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    let bad =
        || anyhow::anyhow!("--to-datetime {s}: expected ms since the epoch or YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM]");
    let (date, rest) = t.split_at(t.find(['T', ' ']).unwrap_or(t.len()));
    let rest = rest.get(1..).unwrap_or("");
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else { return Err(bad()) };
    let num = |x: &str, digits: usize| -> Result<i64> {
        if x.len() != digits || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        x.parse::<i64>().map_err(|_| bad())
    };
    let (year, month, day) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    // Time and zone.
    let (time, offset_minutes) = match rest.find(['Z', '+', '-']) {
        Some(i) => {
            let zone = &rest[i..];
            let minutes = if zone == "Z" {
                0
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let hm: Vec<&str> = zone[1..].split(':').collect();
                let [h, m] = hm.as_slice() else { return Err(bad()) };
                let (h, m) = (num(h, 2)?, num(m, 2)?);
                if h > 23 || m > 59 {
                    return Err(bad());
                }
                sign * (h * 60 + m)
            };
            (&rest[..i], minutes)
        }
        None => (rest, 0),
    };
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    if !time.is_empty() {
        let (hms, frac) = match time.split_once('.') {
            Some((hms, frac)) => (hms, Some(frac)),
            None => (time, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        match parts.as_slice() {
            [h, m] => (hour, minute) = (num(h, 2)?, num(m, 2)?),
            [h, m, sec] => (hour, minute, second) = (num(h, 2)?, num(m, 2)?, num(sec, 2)?),
            _ => return Err(bad()),
        }
        if let Some(frac) = frac {
            if frac.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            millis = format!("{frac:0<3}").parse::<i64>().map_err(|_| bad())?;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(bad());
        }
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute - offset_minutes) * 60_000 + second * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

async fn reset(admin: &Admin, args: ResetArgs) -> Result<()> {
    let group = &args.group;
    let mut described = admin.describe_groups(&[group]).await.context("describing the group")?;
    let d = match described.remove(group) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(anyhow::Error::new(e).context(format!("describing `{group}`"))),
        None => bail!("describing `{group}`: no answer for it"),
    };
    if !d.members.is_empty() || !matches!(d.state.as_str(), "Empty" | "Dead" | "") {
        bail!(
            "group `{group}` is live ({} members, state {}): stop its consumers before resetting its offsets",
            d.members.len(),
            d.state
        );
    }
    let committed = admin.list_group_offsets(group).await.context("the group's committed offsets")?;
    // The partitions to reset.
    let mut partitions: Vec<TopicPartition> = Vec::new();
    if args.all_topics {
        partitions.extend(committed.keys().cloned());
        if partitions.is_empty() {
            bail!("group `{group}` has no committed offsets (give the topics with -t)");
        }
    } else {
        let mut names = Vec::new();
        let mut picked: Vec<(String, Option<Vec<i32>>)> = Vec::new();
        for t in &args.topics {
            let (topic, parts) = parse_topic_partitions(t)?;
            names.push(topic.clone());
            picked.push((topic, parts));
        }
        let snapshot = admin.cluster().fetch_metadata(Some(&names)).await.context("fetching metadata")?;
        for (topic, parts) in picked {
            let info = match snapshot.topic(&topic) {
                Some(t) if t.error.is_ok() => t,
                _ => bail!("topic `{topic}` does not exist"),
            };
            match parts {
                None => partitions.extend(info.partitions.iter().map(|p| TopicPartition::new(&topic, p.partition))),
                Some(parts) => {
                    for p in parts {
                        if info.partition(p).is_none() {
                            bail!("topic `{topic}` has no partition {p}");
                        }
                        partitions.push(TopicPartition::new(&topic, p));
                    }
                }
            }
        }
    }
    let ends = |spec: OffsetSpec| partitions.iter().map(|tp| (tp.clone(), spec)).collect::<Vec<_>>();
    let earliest = admin.list_offsets(&ends(OffsetSpec::Earliest)).await.context("listing offsets")?;
    let latest = admin.list_offsets(&ends(OffsetSpec::Latest)).await.context("listing offsets")?;
    let at_time = match &args.to_datetime {
        Some(dt) => {
            let ms = parse_datetime(dt)?;
            Some(admin.list_offsets(&ends(OffsetSpec::Timestamp(ms))).await.context("listing offsets by time")?)
        }
        None => None,
    };
    let get = |m: &krab_admin::Results<TopicPartition, krab_admin::ListedOffset>, tp: &TopicPartition| -> Result<i64> {
        match m.get(tp) {
            Some(Ok(o)) => Ok(o.offset),
            Some(Err(e)) => Err(anyhow::Error::new(e.clone()).context(format!("offsets of {tp}"))),
            None => bail!("no offsets for {tp}"),
        }
    };
    let mut plan: Vec<(TopicPartition, i64)> = Vec::new();
    for tp in &partitions {
        let (lo, hi) = (get(&earliest, tp)?, get(&latest, tp)?);
        let new = if args.to_earliest {
            lo
        } else if args.to_latest {
            hi
        } else if let Some(n) = args.to_offset {
            n.clamp(lo, hi)
        } else if let Some(t) = &at_time {
            // -1: no record at or after that time: the end.
            match get(t, tp)? {
                -1 => hi,
                o => o,
            }
        } else {
            bail!("no target offset given");
        };
        plan.push((tp.clone(), new));
    }
    let mut t = Table::new(&["TOPIC", "PARTITION", "OLD", "NEW"]);
    for (tp, new) in &plan {
        let old = committed.get(tp).map_or_else(|| "-".to_string(), |c| c.offset.to_string());
        t.row(vec![tp.topic.clone(), tp.partition.to_string(), old, new.to_string()]);
    }
    if args.dry_run {
        print(&format!("{}(dry run: nothing changed)\n", t.render()))?;
        return Ok(());
    }
    let results = admin.alter_group_offsets(group, &plan).await.context("setting the offsets")?;
    for (tp, r) in results {
        if let Err(e) = r {
            if e.error_code() == Some(ErrorCode::UnknownMemberId) {
                bail!("group `{group}` became live while resetting ({tp} refused): stop its consumers and try again");
            }
            return Err(anyhow::Error::new(e).context(format!("setting the offset of {tp}")));
        }
    }
    print(&format!("{}reset {} partitions of group \"{group}\"\n", t.render(), plan.len()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_partition_lists_parse() {
        assert_eq!(parse_topic_partitions("orders").unwrap(), ("orders".into(), None));
        assert_eq!(parse_topic_partitions("orders:0,2").unwrap(), ("orders".into(), Some(vec![0, 2])));
        assert!(parse_topic_partitions("orders:x").is_err());
        assert!(parse_topic_partitions(":1").is_err());
        assert!(parse_topic_partitions("orders:-1").is_err());
    }

    #[test]
    fn datetimes_parse_to_epoch_millis() {
        assert_eq!(parse_datetime("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("1970-01-01").unwrap(), 0);
        assert_eq!(parse_datetime("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("2023-11-14T22:13:20.5").unwrap(), 1_700_000_000_500);
        assert_eq!(parse_datetime("2023-11-14T23:13:20.123+01:00").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_datetime("2023-11-14T17:13-05:00").unwrap(), 1_699_999_980_000);
        assert_eq!(parse_datetime("2024-02-29T00:00:00Z").unwrap(), 1_709_164_800_000);
        for bad in ["2023-02-29", "2023-13-01", "2023-1-01", "2023-01-01T25:00", "yesterday", "2023-01-01T10:00+1"] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }
}
