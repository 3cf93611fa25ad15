//! The consumer's settings, with Kafka's defaults and Kafka's property names.
//!
//! ```text
//! let config = ConsumerConfig::new("localhost:9092")?.isolation_level(IsolationLevel::ReadCommitted);
//! let config = ConsumerConfig::from_properties([("bootstrap.servers", "localhost:9092"), ("auto.offset.reset", "earliest")])?;
//! ```

use crate::records::IsolationLevel;
use krab_cluster::SecurityConfig;
use krab_cluster::transport::{BrokerAddr, parse_bootstrap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A setting that was unknown, invalid or missing, named by its Kafka property name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A property the consumer does not know.
    #[error("unknown consumer property `{key}`")]
    Unknown {
        /// The property name as given.
        key: String,
    },
    /// A value that cannot be used for this property, alone or with the other settings.
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    Invalid {
        /// The property name.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A required property that was not given.
    #[error("missing required property `{key}`")]
    Missing {
        /// The property name.
        key: &'static str,
    },
}

fn invalid(key: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, value: value.to_string(), reason: reason.into() }
}

/// Custom partition assignors of a [`ConsumerConfig`] (compared by name).
#[derive(Debug, Clone, Default)]
pub struct CustomAssignors(pub Vec<std::sync::Arc<dyn crate::group::assignor::PartitionAssignor>>);

impl PartialEq for CustomAssignors {
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().map(|a| a.name()).eq(other.0.iter().map(|a| a.name()))
    }
}

impl Eq for CustomAssignors {}

/// The consumer group protocol (`group.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GroupProtocol {
    /// `classic`: JoinGroup/SyncGroup, assignment by the group's leader (a member).
    #[default]
    Classic,
    /// `consumer`: KIP-848's ConsumerGroupHeartbeat, assignment by the coordinator
    /// (`group.remote.assignor`); brokers 4.0+.
    Consumer,
}

/// Where a partition goes when its position is out of range (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AutoOffsetReset {
    /// `earliest`: the log start offset.
    Earliest,
    /// `latest`: the log end (Kafka's default).
    #[default]
    Latest,
    /// `none`: a typed [`ErrorKind::OffsetOutOfRange`](crate::ErrorKind::OffsetOutOfRange) error
    /// naming the partition and the offsets; the partition stops until a seek.
    None,
}

impl FromStr for AutoOffsetReset {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            v if v.eq_ignore_ascii_case("earliest") => Ok(Self::Earliest),
            v if v.eq_ignore_ascii_case("latest") => Ok(Self::Latest),
            v if v.eq_ignore_ascii_case("none") => Ok(Self::None),
            _ => Err(invalid("auto.offset.reset", s, "expected one of earliest, latest, none")),
        }
    }
}

impl FromStr for IsolationLevel {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            v if v.eq_ignore_ascii_case("read_uncommitted") => Ok(Self::ReadUncommitted),
            v if v.eq_ignore_ascii_case("read_committed") => Ok(Self::ReadCommitted),
            _ => Err(invalid("isolation.level", s, "expected read_uncommitted or read_committed")),
        }
    }
}

/// The consumer's settings. Every field has Kafka's default except where noted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// `bootstrap.servers`. Required.
    pub bootstrap_servers: Vec<BrokerAddr>,
    /// `client.id`. Default `"krab"`.
    pub client_id: String,
    /// `auto.offset.reset`. Default [`AutoOffsetReset::Latest`].
    pub auto_offset_reset: AutoOffsetReset,
    /// `fetch.min.bytes`: the broker waits for this much data (up to `fetch.max.wait.ms`).
    /// Default 1.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: the most data one Fetch response carries. Default 50 MiB.
    pub fetch_max_bytes: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a Fetch waiting for `fetch.min.bytes`.
    /// Default 500 ms.
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes`: the most data per partition in one response. Default 1 MiB.
    pub max_partition_fetch_bytes: i32,
    /// `queued.max.messages.kbytes` (librdkafka's name): the global budget of fetched records
    /// buffered for the application, in KiB. Default 65536 (64 MiB). Each partition may also
    /// buffer at most twice `max.partition.fetch.bytes`; a partition over either leaves the next
    /// Fetch request until the application drains it.
    pub queued_max_kbytes: usize,
    /// `isolation.level`. Default [`IsolationLevel::ReadUncommitted`].
    pub isolation_level: IsolationLevel,
    /// `check.crcs`: verify each batch's CRC-32C. Default `true`.
    pub check_crcs: bool,
    /// `client.rack`: the rack this consumer runs in, for KIP-392 follower fetching. Default
    /// empty (fetch from leaders).
    pub client_rack: String,
    /// `request.timeout.ms`. Default 30 s; must exceed `fetch.max.wait.ms`.
    pub request_timeout: Duration,
    /// `metadata.max.age.ms`. Default 5 min.
    pub metadata_max_age: Duration,
    /// `retry.backoff.ms`: the first wait before retrying a failed request. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the cap of the growing retry wait. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `security.protocol` and `ssl.*` (`ssl.ca.location`, `ssl.certificate.location`,
    /// `ssl.key.location`, `ssl.endpoint.identification.algorithm`). Default `PLAINTEXT`.
    pub security: SecurityConfig,
    /// `group.id`: the consumer group [`Consumer::subscribe`](crate::Consumer::subscribe) joins.
    /// Default none (manual assignment only).
    pub group_id: Option<String>,
    /// `group.instance.id`: a static member's id (KIP-345). Default none (dynamic).
    pub group_instance_id: Option<String>,
    /// `group.protocol`. Default [`GroupProtocol::Classic`], as in Kafka's clients.
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the server-side assignor under `group.protocol=consumer`
    /// (`uniform`, `range`); default the broker's.
    pub group_remote_assignor: Option<String>,
    /// `partition.assignment.strategy`: assignor names in order of preference (`range`,
    /// `roundrobin`, `cooperative-sticky`). Default `range,cooperative-sticky` (Kafka's).
    pub partition_assignment_strategy: Vec<String>,
    /// Custom assignors ([`ConsumerConfig::assignor`]), usable by name in
    /// `partition.assignment.strategy`.
    pub custom_assignors: CustomAssignors,
    /// `session.timeout.ms`. Default 45 s.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`. Default 3 s.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: the longest the application may go without polling before the
    /// member leaves the group; also the rebalance timeout. Default 5 min.
    pub max_poll_interval: Duration,
    /// `enable.auto.commit`: commit positions every `auto.commit.interval.ms`, before a
    /// revocation and on close. Default `true`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`. Default 5 s.
    pub auto_commit_interval: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "krab".to_string(),
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            queued_max_kbytes: 65536,
            isolation_level: IsolationLevel::ReadUncommitted,
            check_crcs: true,
            client_rack: String::new(),
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            security: SecurityConfig::default(),
            group_id: None,
            group_instance_id: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            partition_assignment_strategy: vec!["range".into(), "cooperative-sticky".into()],
            custom_assignors: CustomAssignors::default(),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
        }
    }
}

const INT_MAX: u64 = i32::MAX as u64;
const LONG_MAX: u64 = i64::MAX as u64;

fn integer(key: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(key, value, format!("expected an integer from {min} to {max}"))),
    }
}

fn int(key: &'static str, value: &str, min: u64) -> Result<i32, ConfigError> {
    integer(key, value, min, INT_MAX).map(|n| n as i32)
}

fn millis(key: &'static str, value: &str, max: u64) -> Result<Duration, ConfigError> {
    integer(key, value, 0, max).map(Duration::from_millis)
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

impl ConsumerConfig {
    /// Kafka's defaults with the given `bootstrap.servers` (comma-separated `host:port`).
    pub fn new(bootstrap_servers: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        config.set("bootstrap.servers", bootstrap_servers)?;
        Ok(config)
    }

    /// A validated configuration from Kafka property names and string values. Later duplicates
    /// win; unknown names are rejected.
    pub fn from_properties<I, K, V>(properties: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = Self::default();
        for (key, value) in properties {
            config.set(key.as_ref(), value.as_ref())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets one property by its Kafka name; the rules between settings are
    /// [`ConsumerConfig::validate`]'s.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match self.security.set(key, value) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(ConfigError::Invalid { key: e.key, value: e.value, reason: e.reason }),
        }
        match key.trim() {
            "bootstrap.servers" => {
                self.bootstrap_servers = parse_bootstrap(value).map_err(|e| {
                    invalid("bootstrap.servers", value, format!("{e}; expected host:port[,host:port...]"))
                })?;
            }
            "client.id" => self.client_id = value.trim().to_string(),
            "auto.offset.reset" => self.auto_offset_reset = value.parse()?,
            "fetch.min.bytes" => self.fetch_min_bytes = int("fetch.min.bytes", value, 0)?,
            "fetch.max.bytes" => self.fetch_max_bytes = int("fetch.max.bytes", value, 1)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = millis("fetch.max.wait.ms", value, INT_MAX)?,
            "max.partition.fetch.bytes" => {
                self.max_partition_fetch_bytes = int("max.partition.fetch.bytes", value, 1)?;
            }
            "queued.max.messages.kbytes" => {
                self.queued_max_kbytes = integer("queued.max.messages.kbytes", value, 1, INT_MAX)? as usize;
            }
            "isolation.level" => self.isolation_level = value.parse()?,
            "check.crcs" => self.check_crcs = boolean("check.crcs", value)?,
            "client.rack" => self.client_rack = value.trim().to_string(),
            "request.timeout.ms" => self.request_timeout = millis("request.timeout.ms", value, INT_MAX)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis("metadata.max.age.ms", value, LONG_MAX)?,
            "retry.backoff.ms" => self.retry_backoff = millis("retry.backoff.ms", value, LONG_MAX)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis("retry.backoff.max.ms", value, LONG_MAX)?,
            "group.id" => self.group_id = Some(value.trim().to_string()).filter(|g| !g.is_empty()),
            "group.instance.id" => self.group_instance_id = Some(value.trim().to_string()).filter(|g| !g.is_empty()),
            "group.protocol" => match value.trim() {
                v if v.eq_ignore_ascii_case("classic") => self.group_protocol = GroupProtocol::Classic,
                v if v.eq_ignore_ascii_case("consumer") => self.group_protocol = GroupProtocol::Consumer,
                _ => return Err(invalid("group.protocol", value, "expected classic or consumer (KIP-848)")),
            },
            "group.remote.assignor" => {
                self.group_remote_assignor = Some(value.trim().to_string()).filter(|a| !a.is_empty());
            }
            "partition.assignment.strategy" => {
                let names: Vec<String> =
                    value.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
                if let Some(bad) = names.iter().find(|n| self.assignor_named(n).is_none()) {
                    return Err(invalid(
                        "partition.assignment.strategy",
                        value,
                        format!(
                            "unknown assignor `{bad}`; expected range, roundrobin, cooperative-sticky or a custom one's name"
                        ),
                    ));
                }
                self.partition_assignment_strategy = names;
            }
            "session.timeout.ms" => self.session_timeout = millis("session.timeout.ms", value, INT_MAX)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = millis("heartbeat.interval.ms", value, INT_MAX)?,
            "max.poll.interval.ms" => self.max_poll_interval = millis("max.poll.interval.ms", value, INT_MAX)?,
            "enable.auto.commit" => self.enable_auto_commit = boolean("enable.auto.commit", value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = millis("auto.commit.interval.ms", value, INT_MAX)?,
            _ => return Err(ConfigError::Unknown { key: key.to_string() }),
        }
        Ok(())
    }

    /// Checks the rules between settings:
    ///
    /// - `bootstrap.servers` is not empty;
    /// - `ssl.certificate.location` and `ssl.key.location` come together;
    /// - `request.timeout.ms` exceeds `fetch.max.wait.ms` (else every idle fetch would time out);
    /// - `max.partition.fetch.bytes` is at most `fetch.max.bytes`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing { key: "bootstrap.servers" });
        }
        self.security.validate().map_err(|e| ConfigError::Invalid { key: e.key, value: e.value, reason: e.reason })?;
        if self.request_timeout <= self.fetch_max_wait {
            return Err(invalid(
                "request.timeout.ms",
                self.request_timeout.as_millis(),
                format!("must exceed fetch.max.wait.ms ({})", self.fetch_max_wait.as_millis()),
            ));
        }
        if self.fetch_max_bytes < 1 {
            return Err(invalid("fetch.max.bytes", self.fetch_max_bytes, "must be positive"));
        }
        if self.max_partition_fetch_bytes < 1 || self.max_partition_fetch_bytes > self.fetch_max_bytes {
            return Err(invalid(
                "max.partition.fetch.bytes",
                self.max_partition_fetch_bytes,
                format!("must be from 1 to fetch.max.bytes ({})", self.fetch_max_bytes),
            ));
        }
        if self.queued_max_kbytes == 0 {
            return Err(invalid("queued.max.messages.kbytes", 0, "must be positive"));
        }
        if self.group_id.is_some() {
            if self.partition_assignment_strategy.is_empty() {
                return Err(invalid("partition.assignment.strategy", "", "name at least one assignor"));
            }
            if let Some(bad) = self.partition_assignment_strategy.iter().find(|n| self.assignor_named(n).is_none()) {
                return Err(invalid(
                    "partition.assignment.strategy",
                    bad,
                    "no built-in or custom assignor has this name",
                ));
            }
            if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
                return Err(invalid(
                    "heartbeat.interval.ms",
                    self.heartbeat_interval.as_millis(),
                    format!("must be positive and below session.timeout.ms ({})", self.session_timeout.as_millis()),
                ));
            }
            if self.auto_commit_interval.is_zero() {
                return Err(invalid("auto.commit.interval.ms", 0, "must be positive"));
            }
        }
        Ok(())
    }

    /// The global budget of buffered records, in bytes.
    pub fn buffer_budget(&self) -> usize {
        self.queued_max_kbytes.saturating_mul(1024)
    }

    /// The budget of one partition's buffered records, in bytes.
    pub fn partition_budget(&self) -> usize {
        (self.max_partition_fetch_bytes as usize).saturating_mul(2)
    }

    /// The assignor named `name`: a custom one first, else a built-in one.
    pub(crate) fn assignor_named(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<dyn crate::group::assignor::PartitionAssignor>> {
        self.custom_assignors
            .0
            .iter()
            .find(|a| a.name() == name)
            .cloned()
            .or_else(|| crate::group::assignor_by_name(name))
    }

    /// Adds a custom [`PartitionAssignor`](crate::PartitionAssignor) and makes it the preferred
    /// one (first in `partition.assignment.strategy`); the group's leader runs it when every
    /// member supports it.
    #[must_use]
    pub fn assignor(mut self, assignor: impl crate::group::assignor::PartitionAssignor) -> Self {
        let name = assignor.name().to_string();
        self.custom_assignors.0.retain(|a| a.name() != name);
        self.custom_assignors.0.push(std::sync::Arc::new(assignor));
        self.partition_assignment_strategy.retain(|n| *n != name);
        self.partition_assignment_strategy.insert(0, name);
        self
    }

    /// Sets `bootstrap.servers`.
    #[must_use]
    pub fn bootstrap_servers(mut self, brokers: impl IntoIterator<Item = BrokerAddr>) -> Self {
        self.bootstrap_servers = brokers.into_iter().collect();
        self
    }

    /// Sets `client.id`.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Sets `auto.offset.reset`.
    #[must_use]
    pub fn auto_offset_reset(mut self, reset: AutoOffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Sets `fetch.min.bytes`.
    #[must_use]
    pub fn fetch_min_bytes(mut self, bytes: i32) -> Self {
        self.fetch_min_bytes = bytes;
        self
    }

    /// Sets `fetch.max.bytes`.
    #[must_use]
    pub fn fetch_max_bytes(mut self, bytes: i32) -> Self {
        self.fetch_max_bytes = bytes;
        self
    }

    /// Sets `fetch.max.wait.ms`.
    #[must_use]
    pub fn fetch_max_wait(mut self, wait: Duration) -> Self {
        self.fetch_max_wait = wait;
        self
    }

    /// Sets `max.partition.fetch.bytes`.
    #[must_use]
    pub fn max_partition_fetch_bytes(mut self, bytes: i32) -> Self {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    /// Sets `queued.max.messages.kbytes`.
    #[must_use]
    pub fn queued_max_kbytes(mut self, kbytes: usize) -> Self {
        self.queued_max_kbytes = kbytes;
        self
    }

    /// Sets `isolation.level`.
    #[must_use]
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = level;
        self
    }

    /// Sets `security.protocol` and the `ssl.*` settings, e.g.
    /// `SecurityConfig::tls(TlsSettings::default().ca_location("ca.pem"))`.
    #[must_use]
    pub fn security(mut self, security: SecurityConfig) -> Self {
        self.security = security;
        self
    }

    /// Sets `check.crcs`.
    #[must_use]
    pub fn check_crcs(mut self, check: bool) -> Self {
        self.check_crcs = check;
        self
    }

    /// Sets `client.rack`.
    #[must_use]
    pub fn client_rack(mut self, rack: impl Into<String>) -> Self {
        self.client_rack = rack.into();
        self
    }

    /// Sets `request.timeout.ms`.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_set_typed_values() {
        let c = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1,b:2"),
            ("client.id", "me"),
            ("auto.offset.reset", "Earliest"),
            ("fetch.min.bytes", "10"),
            ("fetch.max.bytes", "1000000"),
            ("fetch.max.wait.ms", "100"),
            ("max.partition.fetch.bytes", "2000"),
            ("isolation.level", "read_committed"),
            ("check.crcs", "false"),
            ("client.rack", "r1"),
            ("request.timeout.ms", "5000"),
            ("metadata.max.age.ms", "1000"),
            ("queued.max.messages.kbytes", "16"),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers.len(), 2);
        assert_eq!(c.auto_offset_reset, AutoOffsetReset::Earliest);
        assert_eq!((c.fetch_min_bytes, c.fetch_max_bytes, c.max_partition_fetch_bytes), (10, 1_000_000, 2000));
        assert_eq!(c.fetch_max_wait, Duration::from_millis(100));
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert!(!c.check_crcs);
        assert_eq!(c.client_rack, "r1");
        assert_eq!((c.buffer_budget(), c.partition_budget()), (16 * 1024, 4000));
    }

    #[test]
    fn unknown_names_and_bad_values_are_rejected_by_name() {
        let e = ConsumerConfig::from_properties([("bootstrap.servers", "a:1"), ("fetch.maxbytes", "1")]).unwrap_err();
        assert_eq!(e, ConfigError::Unknown { key: "fetch.maxbytes".into() });
        for (key, value) in [
            ("auto.offset.reset", "smallest"),
            ("isolation.level", "committed"),
            ("check.crcs", "yes"),
            ("fetch.max.bytes", "0"),
            ("fetch.min.bytes", "-1"),
            ("max.partition.fetch.bytes", "3000000000"),
            ("group.protocol", "cooperative"),
            ("partition.assignment.strategy", "range,sticky"),
            ("session.timeout.ms", "soon"),
            ("enable.auto.commit", "maybe"),
        ] {
            let e = ConsumerConfig::from_properties([("bootstrap.servers", "a:1"), (key, value)]).unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if *k == key), "{key}: {e}");
        }
        assert_eq!(
            ConsumerConfig::from_properties([("client.id", "x")]).unwrap_err(),
            ConfigError::Missing { key: "bootstrap.servers" }
        );
        // Heartbeats must come well within the session.
        let e = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("group.id", "g"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "6000"),
        ])
        .unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { key: "heartbeat.interval.ms", .. }), "{e}");
    }

    #[test]
    fn a_custom_assignor_is_preferred_and_named_in_the_strategy() {
        use crate::group::assignor::{MemberSubscription, PartitionAssignor};
        use std::collections::BTreeMap;
        #[derive(Debug)]
        struct Everything;
        impl PartitionAssignor for Everything {
            fn name(&self) -> &str {
                "everything-to-the-first"
            }
            fn assign(
                &self,
                partitions: &BTreeMap<String, i32>,
                members: &[MemberSubscription],
            ) -> BTreeMap<String, Vec<crate::TopicPartition>> {
                let mut out: BTreeMap<String, Vec<crate::TopicPartition>> =
                    members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
                if let Some(first) = members.first() {
                    let all = partitions
                        .iter()
                        .flat_map(|(t, n)| (0..*n).map(move |p| crate::TopicPartition::new(t.as_str(), p)));
                    out.insert(first.member_id.clone(), all.collect());
                }
                out
            }
        }
        let mut c = ConsumerConfig::new("a:1").unwrap().assignor(Everything);
        assert_eq!(c.partition_assignment_strategy, ["everything-to-the-first", "range", "cooperative-sticky"]);
        assert_eq!(
            c.assignor_named("everything-to-the-first").map(|a| a.name().to_string()).as_deref(),
            Some("everything-to-the-first")
        );
        assert!(c.assignor_named("range").is_some());
        // Once registered, it can be named by property too; unknown names still fail.
        c.set("partition.assignment.strategy", "everything-to-the-first,roundrobin").unwrap();
        assert!(matches!(
            c.set("partition.assignment.strategy", "sticky"),
            Err(ConfigError::Invalid { key: "partition.assignment.strategy", .. })
        ));
        c.group_id = Some("g".into());
        c.validate().unwrap();
        c.partition_assignment_strategy = vec!["missing".into()];
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: "partition.assignment.strategy", .. })));
    }

    #[test]
    fn group_properties_set_typed_values() {
        let c = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("group.id", "billing"),
            ("group.instance.id", "billing-1"),
            ("group.protocol", "consumer"),
            ("group.remote.assignor", "uniform"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "1000"),
            ("max.poll.interval.ms", "60000"),
            ("enable.auto.commit", "false"),
            ("auto.commit.interval.ms", "1000"),
        ])
        .unwrap();
        assert_eq!(c.group_id.as_deref(), Some("billing"));
        assert_eq!(c.group_instance_id.as_deref(), Some("billing-1"));
        assert_eq!(c.group_protocol, GroupProtocol::Consumer);
        assert_eq!(c.group_remote_assignor.as_deref(), Some("uniform"));
        assert_eq!(c.partition_assignment_strategy, ["cooperative-sticky"]);
        assert_eq!(c.session_timeout, Duration::from_secs(6));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.max_poll_interval, Duration::from_secs(60));
        assert!(!c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(1));
    }

    #[test]
    fn cross_setting_rules_name_the_property() {
        let e = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("fetch.max.wait.ms", "500"),
            ("request.timeout.ms", "500"),
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "request.timeout.ms", .. }), "{e}");
        let e = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("fetch.max.bytes", "100"),
            ("max.partition.fetch.bytes", "200"),
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "max.partition.fetch.bytes", .. }), "{e}");
    }

    #[test]
    fn security_properties_are_read_by_kafka_names() {
        let c = ConsumerConfig::from_properties([
            ("bootstrap.servers", "localhost:9093"),
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ("ssl.certificate.location", "/etc/kafka/client.pem"),
            ("ssl.key.location", "/etc/kafka/client.key"),
            ("ssl.endpoint.identification.algorithm", ""),
        ])
        .unwrap();
        assert_eq!(c.security.protocol, krab_cluster::SecurityProtocol::Ssl);
        assert_eq!(c.security.tls.key_location.as_deref(), Some(std::path::Path::new("/etc/kafka/client.key")));
        assert!(!c.security.tls.verify_host_name);
        let sasl = ConsumerConfig::from_properties([("bootstrap.servers", "a:1"), ("security.protocol", "SASL_SSL")]);
        assert!(matches!(&sasl, Err(ConfigError::Invalid { key: "sasl.mechanism", .. })), "{sasl:?}");
        let sasl = ConsumerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "alice"),
            ("sasl.password", "pw-not-shown"),
        ])
        .unwrap();
        assert_eq!(sasl.security.protocol, krab_cluster::SecurityProtocol::SaslSsl);
        assert!(!format!("{sasl:?}").contains("pw-not-shown"));
        let half =
            ConsumerConfig::from_properties([("bootstrap.servers", "a:1"), ("ssl.certificate.location", "/c.pem")]);
        assert!(matches!(half, Err(ConfigError::Invalid { key: "ssl.key.location", .. })), "{half:?}");
    }
}
