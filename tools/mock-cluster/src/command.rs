//! The line protocol: parsing one stdin line into a [`Command`] and running it.

use crate::cluster::{MockCluster, error_code};
use std::fmt::Write as _;
use std::str::FromStr;

/// Largest `COUNT` of one `err`/`brokererr` command.
const MAX_ERRORS: usize = 100_000;
/// Largest RTT in milliseconds (one hour).
const MAX_RTT_MS: i32 = 3_600_000;
/// Most partitions of a created topic.
const MAX_PARTITIONS: i32 = 10_000;

/// One parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Create { topic: String, partitions: i32, rf: i32 },
    Leader { topic: String, partition: i32, broker: i32 },
    Down(i32),
    Up(i32),
    Err { api_key: i16, code: i32, count: usize },
    BrokerErr { broker: i32, api_key: i16, code: i32, count: usize, rtt_ms: i32 },
    ClearErr(i16),
    Rtt { broker: i32, ms: i32 },
    TrackStart,
    TrackStop,
    TrackReset,
    Count { api_key: i16, broker: Option<i32> },
    Counts { broker: Option<i32> },
    Bootstrap,
    Quit,
}

/// Parses `what` as a number in `range`.
fn num<T>(what: &str, s: Option<&str>, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + std::fmt::Display,
{
    let s = s.ok_or_else(|| format!("missing {what}"))?;
    let v: T = s.parse().map_err(|_| format!("{what} `{s}` is not a number"))?;
    if !range.contains(&v) {
        return Err(format!("{what} {v} out of range {}..={}", range.start(), range.end()));
    }
    Ok(v)
}

fn broker(s: Option<&str>) -> Result<i32, String> {
    num("BROKER", s, -1..=i32::MAX)
}

fn api_key(s: Option<&str>) -> Result<i16, String> {
    num("APIKEY", s, 0..=i16::MAX)
}

fn topic(s: Option<&str>) -> Result<String, String> {
    let t = s.ok_or("missing TOPIC")?;
    if t.len() > 249 {
        return Err("TOPIC longer than 249 bytes".to_owned());
    }
    Ok(t.to_owned())
}

impl Command {
    /// Parses one command line (words separated by whitespace).
    pub(crate) fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else {
            return Err("empty command".to_owned());
        };
        let mut w = || words.next();
        let cmd = match verb {
            "create" => Command::Create {
                topic: topic(w())?,
                partitions: num("PARTITIONS", w(), 1..=MAX_PARTITIONS)?,
                rf: num("RF", w(), 1..=i32::from(i16::MAX))?,
            },
            "leader" => Command::Leader {
                topic: topic(w())?,
                partition: num("PARTITION", w(), 0..=i32::MAX)?,
                broker: broker(w())?,
            },
            "down" => Command::Down(broker(w())?),
            "up" => Command::Up(broker(w())?),
            "err" => Command::Err {
                api_key: api_key(w())?,
                code: num("ERRCODE", w(), i32::MIN..=i32::MAX)?,
                count: num("COUNT", w(), 1..=MAX_ERRORS)?,
            },
            "brokererr" => Command::BrokerErr {
                broker: num("BROKER", w(), 0..=i32::MAX)?,
                api_key: api_key(w())?,
                code: num("ERRCODE", w(), i32::MIN..=i32::MAX)?,
                count: num("COUNT", w(), 1..=MAX_ERRORS)?,
                rtt_ms: match w() {
                    None => 0,
                    s => num("RTT_MS", s, 0..=MAX_RTT_MS)?,
                },
            },
            "clearerr" => Command::ClearErr(api_key(w())?),
            "rtt" => Command::Rtt { broker: broker(w())?, ms: num("MS", w(), 0..=MAX_RTT_MS)? },
            "track" => match w() {
                Some("start") => Command::TrackStart,
                Some("stop") => Command::TrackStop,
                Some("reset") => Command::TrackReset,
                _ => return Err("usage: track start|stop|reset".to_owned()),
            },
            "count" => Command::Count {
                api_key: api_key(w())?,
                broker: match w() {
                    None => None,
                    s => Some(num("BROKER", s, 0..=i32::MAX)?),
                },
            },
            "counts" => Command::Counts {
                broker: match w() {
                    None => None,
                    s => Some(num("BROKER", s, 0..=i32::MAX)?),
                },
            },
            "bootstrap" => Command::Bootstrap,
            "quit" => Command::Quit,
            other => return Err(format!("unknown command `{other}`")),
        };
        if let Some(extra) = words.next() {
            return Err(format!("unexpected argument `{extra}` after `{verb}`"));
        }
        Ok(cmd)
    }

    /// Runs the command; `Ok(Some(data))` is answered `OK data`.
    pub(crate) fn run(&self, mc: &MockCluster) -> Result<Option<String>, String> {
        let err = |e: crate::cluster::MockError| e.to_string();
        match self {
            Command::Create { topic, partitions, rf } => mc.create_topic(topic, *partitions, *rf).map_err(err)?,
            Command::Leader { topic, partition, broker } => mc.set_leader(topic, *partition, *broker).map_err(err)?,
            Command::Down(b) => mc.broker_down(*b).map_err(err)?,
            Command::Up(b) => mc.broker_up(*b).map_err(err)?,
            Command::Err { api_key, code, count } => mc.push_errors(*api_key, error_code(*code).map_err(err)?, *count),
            Command::BrokerErr { broker, api_key, code, count, rtt_ms } => {
                let code = error_code(*code).map_err(err)?;
                mc.push_broker_errors(*broker, *api_key, code, *count, *rtt_ms).map_err(err)?
            }
            Command::ClearErr(key) => mc.clear_errors(*key),
            Command::Rtt { broker, ms } => mc.set_rtt(*broker, *ms).map_err(err)?,
            Command::TrackStart => mc.start_tracking(),
            Command::TrackStop => mc.stop_tracking(),
            Command::TrackReset => mc.reset_tracking(),
            Command::Count { api_key, broker } => {
                let n = mc.request_counts(*broker).get(api_key).copied().unwrap_or(0);
                return Ok(Some(n.to_string()));
            }
            Command::Counts { broker } => {
                let mut data = String::new();
                for (key, n) in mc.request_counts(*broker) {
                    if !data.is_empty() {
                        data.push(' ');
                    }
                    let _ = write!(data, "{key}:{n}");
                }
                return Ok((!data.is_empty()).then_some(data));
            }
            Command::Bootstrap => return Ok(Some(mc.bootstrap().to_owned())),
            Command::Quit => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn parses_every_command() {
        assert_eq!(Command::parse("create t 12 3"), Ok(Command::Create { topic: "t".into(), partitions: 12, rf: 3 }));
        assert_eq!(
            Command::parse("  leader t 0 2 "),
            Ok(Command::Leader { topic: "t".into(), partition: 0, broker: 2 })
        );
        assert_eq!(Command::parse("down -1"), Ok(Command::Down(-1)));
        assert_eq!(Command::parse("up 3"), Ok(Command::Up(3)));
        assert_eq!(Command::parse("err 3 6 2"), Ok(Command::Err { api_key: 3, code: 6, count: 2 }));
        assert_eq!(
            Command::parse("brokererr 1 0 7 1"),
            Ok(Command::BrokerErr { broker: 1, api_key: 0, code: 7, count: 1, rtt_ms: 0 })
        );
        assert_eq!(
            Command::parse("brokererr 1 0 7 1 50"),
            Ok(Command::BrokerErr { broker: 1, api_key: 0, code: 7, count: 1, rtt_ms: 50 })
        );
        assert_eq!(Command::parse("clearerr 3"), Ok(Command::ClearErr(3)));
        assert_eq!(Command::parse("rtt 2 100"), Ok(Command::Rtt { broker: 2, ms: 100 }));
        assert_eq!(Command::parse("track start"), Ok(Command::TrackStart));
        assert_eq!(Command::parse("track stop"), Ok(Command::TrackStop));
        assert_eq!(Command::parse("track reset"), Ok(Command::TrackReset));
        assert_eq!(Command::parse("count 3"), Ok(Command::Count { api_key: 3, broker: None }));
        assert_eq!(Command::parse("count 3 2"), Ok(Command::Count { api_key: 3, broker: Some(2) }));
        assert_eq!(Command::parse("counts"), Ok(Command::Counts { broker: None }));
        assert_eq!(Command::parse("bootstrap"), Ok(Command::Bootstrap));
        assert_eq!(Command::parse("quit"), Ok(Command::Quit));
    }

    #[test]
    fn rejects_bad_input() {
        for line in [
            "",
            "   ",
            "frob",
            "create",
            "create t",
            "create t 0 1",
            "create t -3 1",
            "create t 3 0",
            "create t x 1",
            "create t 3 1 extra",
            "leader t -1 1",
            "leader t 0",
            "down",
            "down -2",
            "down 99999999999",
            "err -1 6 1",
            "err 40000 6 1",
            "err 3 6 0",
            "err 3 6 1000000000",
            "rtt 1 -5",
            "track",
            "track go",
            "count",
            "count x",
            "brokererr -1 0 7 1",
        ] {
            assert!(Command::parse(line).is_err(), "{line:?} should be rejected");
        }
        let long = format!("create {} 1 1", "t".repeat(250));
        assert!(Command::parse(&long).is_err());
    }
}
