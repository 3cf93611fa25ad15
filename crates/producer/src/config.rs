//! The producer's settings, with Kafka's defaults and Kafka's property names.
//!
//! Build one with [`ProducerConfig::new`] and the builder-style setters, or from Java-style
//! properties with [`ProducerConfig::from_properties`]:
//!
//! ```text
//! let config = ProducerConfig::new("localhost:9092")?.acks(Acks::Leader).linger(Duration::from_millis(20));
//! let config = ProducerConfig::from_properties([("bootstrap.servers", "localhost:9092"), ("acks", "1")])?;
//! ```
//!
//! Two settings follow Kafka's "explicitly set or not" rules, so they are `Option`s whose `None`
//! means "not set": [`ProducerConfig::enable_idempotence`] (see [`ProducerConfig::idempotence`])
//! and [`ProducerConfig::delivery_timeout`] (see [`ProducerConfig::effective_delivery_timeout`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use krab_cluster::SecurityConfig;
use krab_cluster::transport::{BrokerAddr, parse_bootstrap};
use krab_protocol::records::Compression;

use crate::partitioner::PartitionerKind;

/// The most requests in flight per connection with which the idempotent producer keeps order.
const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = 5;

/// The delivery timeout when it is not set (Kafka's 120 s).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// A setting that was unknown, invalid or missing, named by its Kafka property name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A property the producer does not know.
    #[error("unknown producer property `{key}`")]
    Unknown {
        /// The property name as given.
        key: String,
    },
    /// A value that cannot be used for this property, alone or with the other settings.
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    Invalid {
        /// The property name.
        key: &'static str,
        /// The offending value, as given (or as formatted, for typed settings).
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

/// How many replicas must have a record before the leader acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum Acks {
    /// `acks=0`: no acknowledgement; the broker sends no response.
    None = 0,
    /// `acks=1`: the leader has written the record.
    Leader = 1,
    /// `acks=all` (`-1`): every in-sync replica has the record.
    #[default]
    All = -1,
}

impl Acks {
    /// The value of the `acks` field of a Produce request.
    pub fn as_i16(self) -> i16 {
        self as i16
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

impl FromStr for Acks {
    type Err = ConfigError;

    /// `0`, `1`, `-1` or `all` (any case), as Kafka's `acks` property.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" => Ok(Acks::All),
            v if v.eq_ignore_ascii_case("all") => Ok(Acks::All),
            _ => Err(invalid("acks", s, "expected one of 0, 1, -1, all")),
        }
    }
}

/// The producer's settings. Fields hold typed values; every field has Kafka's default except
/// where noted. See [`ProducerConfig::validate`] for the rules between fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// `bootstrap.servers`: brokers to fetch the first metadata from. Required.
    pub bootstrap_servers: Vec<BrokerAddr>,
    /// `client.id`: sent with every request. Default `"krab"` (Java generates `producer-N`).
    pub client_id: String,
    /// `acks`. Default [`Acks::All`].
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records. Default 5 ms, Kafka's default since
    /// 4.0 (KIP-1030; 0 before).
    pub linger: Duration,
    /// `batch.size`: bytes at which a partition's batch is complete. Default 16384. A record
    /// larger than this gets a batch of its own; 0 disables batching, as in Kafka.
    pub batch_size: usize,
    /// `buffer.memory`: bytes of records waiting to be sent, across all partitions. Default 32 MiB.
    pub buffer_memory: usize,
    /// `compression.type`. Default [`Compression::None`].
    pub compression: Compression,
    /// `delivery.timeout.ms`: the bound on the time between `send` and its outcome, retries
    /// included. `None` (not set) means [`DEFAULT_DELIVERY_TIMEOUT`], raised to
    /// `linger + request_timeout` if that is larger; a set value must be at least that sum. Use
    /// [`ProducerConfig::effective_delivery_timeout`].
    pub delivery_timeout: Option<Duration>,
    /// `request.timeout.ms`: how long to wait for a response to one request. Default 30 s.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: the first wait before retrying. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the cap of the exponentially growing retry wait. Default 1 s. As in
    /// Kafka, a `retry_backoff` above it means a constant wait of `retry_backoff_max`.
    pub retry_backoff_max: Duration,
    /// `max.in.flight.requests.per.connection`. Default 5; at least 1.
    pub max_in_flight: usize,
    /// `enable.idempotence`. `None` (not set) means on, unless `acks` or `max_in_flight` rule it
    /// out, in which case it is quietly off, as in Kafka; `Some(true)` with such settings is an
    /// error. Use [`ProducerConfig::idempotence`].
    pub enable_idempotence: Option<bool>,
    /// `max.request.size`: the largest Produce request, and so the largest record. Default 1 MiB.
    pub max_request_size: usize,
    /// `metadata.max.age.ms`: metadata older than this is refreshed. Default 5 min.
    pub metadata_max_age: Duration,
    /// `partitioner`: krab's name for the strategy placing records without an explicit
    /// partition. Default [`PartitionerKind::Default`] (Java-compatible).
    pub partitioner: PartitionerKind,
    /// `allow.auto.create.topics`: whether metadata requests let the broker create a missing
    /// topic. Default `true`, as the Java producer always asks.
    pub allow_auto_create_topics: bool,
    /// `max.block.ms`: how long `send` waits for buffer room, and how long a record waits for
    /// its topic's metadata, before failing with a typed error. Default 60 s.
    pub max_block: Duration,
    /// `retries`: how often a failed batch is retried (0: never; a retry also needs time left
    /// in `delivery.timeout.ms`). Default `i32::MAX`, as in Kafka.
    pub retries: u32,
    /// `compression.level` (KIP-390): the codec's level (gzip 1..=9, zstd 1..=22; ignored by
    /// snappy and lz4). `None`: the codec's default.
    pub compression_level: Option<i32>,
    /// `reconnect.backoff.ms`: the first wait before reconnecting to a broker. Default 50 ms.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the cap of the growing reconnect wait. Default 1 s.
    pub reconnect_backoff_max: Duration,
    /// `security.protocol` and `ssl.*` (`ssl.ca.location`, `ssl.certificate.location`,
    /// `ssl.key.location`, `ssl.endpoint.identification.algorithm`). Default `PLAINTEXT`.
    pub security: SecurityConfig,
}

impl Default for ProducerConfig {
    /// Kafka's defaults, with no bootstrap servers (which [`ProducerConfig::validate`] rejects).
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "krab".to_string(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            compression: Compression::None,
            delivery_timeout: None,
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight: 5,
            enable_idempotence: None,
            max_request_size: 1024 * 1024,
            metadata_max_age: Duration::from_secs(5 * 60),
            partitioner: PartitionerKind::Default,
            allow_auto_create_topics: true,
            max_block: Duration::from_secs(60),
            retries: i32::MAX as u32,
            compression_level: None,
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            security: SecurityConfig::default(),
        }
    }
}

const INT_MAX: u64 = i32::MAX as u64;
const LONG_MAX: u64 = i64::MAX as u64;

/// A non-negative integer no larger than `max` (Java's `INT` or `LONG` range).
fn integer(key: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(key, value, format!("expected an integer from {min} to {max}"))),
    }
}

fn size(key: &'static str, value: &str, max: u64) -> Result<usize, ConfigError> {
    let n = integer(key, value, 0, max)?;
    usize::try_from(n).map_err(|_| invalid(key, value, "too large for this platform"))
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

fn compression(value: &str) -> Result<Compression, ConfigError> {
    let name = value.trim();
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .find(|c| c.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| invalid("compression.type", value, "expected one of none, gzip, snappy, lz4, zstd"))
}

impl ProducerConfig {
    /// Kafka's defaults with the given `bootstrap.servers` list (comma-separated `host:port`).
    pub fn new(bootstrap_servers: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        config.set("bootstrap.servers", bootstrap_servers)?;
        Ok(config)
    }

    /// Kafka's defaults with the given bootstrap brokers.
    pub fn from_brokers(brokers: impl IntoIterator<Item = BrokerAddr>) -> Self {
        Self { bootstrap_servers: brokers.into_iter().collect(), ..Self::default() }
    }

    /// A validated configuration from Kafka property names and string values, e.g. read from a
    /// `.properties` file. Later duplicates win. `bootstrap.servers` is required; unknown names
    /// are rejected (krab has no `key.serializer` and the like).
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

    /// Sets one property by its Kafka name. Values are checked alone; the rules between
    /// settings are [`ProducerConfig::validate`]'s.
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
            "acks" => self.acks = value.parse()?,
            "linger.ms" => self.linger = millis("linger.ms", value, LONG_MAX)?,
            "batch.size" => self.batch_size = size("batch.size", value, INT_MAX)?,
            "buffer.memory" => self.buffer_memory = size("buffer.memory", value, LONG_MAX)?,
            "compression.type" => self.compression = compression(value)?,
            "delivery.timeout.ms" => self.delivery_timeout = Some(millis("delivery.timeout.ms", value, INT_MAX)?),
            "request.timeout.ms" => self.request_timeout = millis("request.timeout.ms", value, INT_MAX)?,
            "retry.backoff.ms" => self.retry_backoff = millis("retry.backoff.ms", value, LONG_MAX)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis("retry.backoff.max.ms", value, LONG_MAX)?,
            "max.in.flight.requests.per.connection" => {
                let key = "max.in.flight.requests.per.connection";
                self.max_in_flight = usize::try_from(integer(key, value, 1, INT_MAX)?)
                    .map_err(|_| invalid(key, value, "too large for this platform"))?;
            }
            "enable.idempotence" => self.enable_idempotence = Some(boolean("enable.idempotence", value)?),
            "max.request.size" => self.max_request_size = size("max.request.size", value, INT_MAX)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis("metadata.max.age.ms", value, LONG_MAX)?,
            "partitioner" => {
                self.partitioner = value.parse().map_err(|e: crate::partitioner::UnknownPartitioner| {
                    invalid("partitioner", value, e.to_string())
                })?;
            }
            "partitioner.class" => {
                return Err(invalid(
                    "partitioner.class",
                    value,
                    "krab cannot load Java classes: set `partitioner` to default, murmur2_random, uniform_sticky or \
                     round_robin, or implement krab's `Partitioner` trait",
                ));
            }
            "allow.auto.create.topics" => {
                self.allow_auto_create_topics = boolean("allow.auto.create.topics", value)?;
            }
            "max.block.ms" => self.max_block = millis("max.block.ms", value, LONG_MAX)?,
            "retries" => self.retries = integer("retries", value, 0, INT_MAX)? as u32,
            "compression.level" => {
                let level = value
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| invalid("compression.level", value, "expected an integer"))?;
                self.compression_level = Some(level);
            }
            "reconnect.backoff.ms" => self.reconnect_backoff = millis("reconnect.backoff.ms", value, LONG_MAX)?,
            "reconnect.backoff.max.ms" => {
                self.reconnect_backoff_max = millis("reconnect.backoff.max.ms", value, LONG_MAX)?;
            }
            _ => return Err(ConfigError::Unknown { key: key.to_string() }),
        }
        Ok(())
    }

    /// Checks the rules between settings, naming the property to change:
    ///
    /// - `bootstrap.servers` is not empty;
    /// - `ssl.certificate.location` and `ssl.key.location` come together;
    /// - with `enable.idempotence` set to `true`: `acks` is `all` and
    ///   `max.in.flight.requests.per.connection` is at most 5 (Kafka's rules);
    /// - a set `delivery.timeout.ms` is at least `linger.ms + request.timeout.ms` (Kafka's rule);
    /// - `request.timeout.ms` and `max.request.size` are positive, `max.in.flight...` at least 1;
    /// - `batch.size` is at most `max.request.size` and at most `buffer.memory`;
    /// - `compression.type` is compiled into this build of `krab-protocol`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing { key: "bootstrap.servers" });
        }
        self.security.validate().map_err(|e| ConfigError::Invalid { key: e.key, value: e.value, reason: e.reason })?;
        if self.max_in_flight == 0 {
            return Err(invalid("max.in.flight.requests.per.connection", 0, "must be at least 1"));
        }
        if self.enable_idempotence == Some(true) {
            if self.acks != Acks::All {
                return Err(invalid(
                    "acks",
                    self.acks,
                    "the idempotent producer (enable.idempotence=true) needs acks=all",
                ));
            }
            if self.max_in_flight > MAX_IN_FLIGHT_FOR_IDEMPOTENCE {
                return Err(invalid(
                    "max.in.flight.requests.per.connection",
                    self.max_in_flight,
                    format!(
                        "the idempotent producer (enable.idempotence=true) needs at most \
                         {MAX_IN_FLIGHT_FOR_IDEMPOTENCE} requests in flight"
                    ),
                ));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request.timeout.ms", 0, "must be positive"));
        }
        if let Some(delivery) = self.delivery_timeout {
            let floor = self.linger.saturating_add(self.request_timeout);
            if delivery < floor {
                return Err(invalid(
                    "delivery.timeout.ms",
                    delivery.as_millis(),
                    format!(
                        "must be at least linger.ms + request.timeout.ms = {} + {}",
                        self.linger.as_millis(),
                        self.request_timeout.as_millis()
                    ),
                ));
            }
        }
        if self.max_request_size == 0 {
            return Err(invalid("max.request.size", 0, "must be positive"));
        }
        if self.batch_size > self.max_request_size {
            return Err(invalid(
                "batch.size",
                self.batch_size,
                format!(
                    "must be at most max.request.size ({}): a full batch could never be sent",
                    self.max_request_size
                ),
            ));
        }
        if self.batch_size > self.buffer_memory {
            return Err(invalid(
                "batch.size",
                self.batch_size,
                format!("must be at most buffer.memory ({}): a full batch could never be buffered", self.buffer_memory),
            ));
        }
        if !self.compression.is_available() {
            return Err(invalid(
                "compression.type",
                self.compression,
                format!("this build of krab-protocol lacks its `{}` feature", self.compression),
            ));
        }
        Ok(())
    }

    /// Whether the producer is idempotent: as set, or, when not set, whenever `acks` is `all`
    /// and at most 5 requests may be in flight (Kafka's rule).
    pub fn idempotence(&self) -> bool {
        self.enable_idempotence.unwrap_or(self.acks == Acks::All && self.max_in_flight <= MAX_IN_FLIGHT_FOR_IDEMPOTENCE)
    }

    /// The delivery timeout in force: as set, or, when not set, [`DEFAULT_DELIVERY_TIMEOUT`]
    /// raised to `linger + request_timeout` if that is larger (Kafka's rule).
    pub fn effective_delivery_timeout(&self) -> Duration {
        self.delivery_timeout
            .unwrap_or_else(|| DEFAULT_DELIVERY_TIMEOUT.max(self.linger.saturating_add(self.request_timeout)))
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

    /// Sets `acks`.
    #[must_use]
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Sets `linger.ms`.
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets `batch.size`, in bytes.
    #[must_use]
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// Sets `buffer.memory`, in bytes.
    #[must_use]
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// Sets `compression.type`.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets `delivery.timeout.ms` explicitly.
    #[must_use]
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = Some(timeout);
        self
    }

    /// Sets `request.timeout.ms`.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets `retry.backoff.ms`.
    #[must_use]
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Sets `retry.backoff.max.ms`.
    #[must_use]
    pub fn retry_backoff_max(mut self, backoff: Duration) -> Self {
        self.retry_backoff_max = backoff;
        self
    }

    /// Sets `max.in.flight.requests.per.connection`.
    #[must_use]
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Sets `enable.idempotence` explicitly.
    #[must_use]
    pub fn enable_idempotence(mut self, enable: bool) -> Self {
        self.enable_idempotence = Some(enable);
        self
    }

    /// Sets `max.request.size`, in bytes.
    #[must_use]
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// Sets `metadata.max.age.ms`.
    #[must_use]
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.metadata_max_age = age;
        self
    }

    /// Sets `partitioner`.
    #[must_use]
    pub fn partitioner(mut self, kind: PartitionerKind) -> Self {
        self.partitioner = kind;
        self
    }

    /// Sets `max.block.ms`.
    #[must_use]
    pub fn max_block(mut self, timeout: Duration) -> Self {
        self.max_block = timeout;
        self
    }

    /// Sets `retries` (0: no retry).
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets `compression.level`.
    #[must_use]
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = Some(level);
        self
    }

    /// Sets `security.protocol` and the `ssl.*` settings, e.g.
    /// `SecurityConfig::tls(TlsSettings::default().ca_location("ca.pem"))`.
    #[must_use]
    pub fn security(mut self, security: SecurityConfig) -> Self {
        self.security = security;
        self
    }

    /// Sets `reconnect.backoff.ms` and `reconnect.backoff.max.ms`.
    #[must_use]
    pub fn reconnect_backoff(mut self, backoff: Duration, max: Duration) -> Self {
        self.reconnect_backoff = backoff;
        self.reconnect_backoff_max = max;
        self
    }

    /// Sets `allow.auto.create.topics`.
    #[must_use]
    pub fn allow_auto_create_topics(mut self, allow: bool) -> Self {
        self.allow_auto_create_topics = allow;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(extra: &[(&str, &str)]) -> Result<ProducerConfig, ConfigError> {
        ProducerConfig::from_properties([("bootstrap.servers", "b1:9092")].iter().chain(extra).copied())
    }

    fn invalid_key<T: fmt::Debug>(result: Result<T, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = ProducerConfig::new("localhost:9092").unwrap();
        assert_eq!(c.bootstrap_servers, [BrokerAddr::new("localhost", 9092)]);
        assert_eq!(c.client_id, "krab");
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 16384);
        assert_eq!(c.buffer_memory, 33_554_432);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.effective_delivery_timeout(), Duration::from_secs(120));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.retry_backoff, Duration::from_millis(100));
        assert_eq!(c.retry_backoff_max, Duration::from_secs(1));
        assert_eq!(c.max_in_flight, 5);
        assert!(c.idempotence());
        assert_eq!(c.max_request_size, 1_048_576);
        assert_eq!(c.metadata_max_age, Duration::from_secs(300));
        assert_eq!(c.partitioner, PartitionerKind::Default);
        assert!(c.allow_auto_create_topics);
        c.validate().unwrap();
        assert_eq!(props(&[]).unwrap(), c.bootstrap_servers(vec![BrokerAddr::new("b1", 9092)]));
    }

    #[test]
    fn every_property_parses() {
        let c = props(&[
            ("bootstrap.servers", " a:1, [::1]:2 ,b:3"),
            ("client.id", "svc"),
            ("acks", "1"),
            ("linger.ms", "20"),
            ("batch.size", "1000"),
            ("buffer.memory", "1000000"),
            ("compression.type", "zstd"),
            ("delivery.timeout.ms", "60000"),
            ("request.timeout.ms", "10000"),
            ("retry.backoff.ms", "50"),
            ("retry.backoff.max.ms", "2000"),
            ("max.in.flight.requests.per.connection", "10"),
            ("enable.idempotence", "false"),
            ("max.request.size", "2000000"),
            ("metadata.max.age.ms", "1000"),
            ("partitioner", "round_robin"),
            ("allow.auto.create.topics", "FALSE"),
        ])
        .unwrap();
        let addrs = [BrokerAddr::new("a", 1), BrokerAddr::new("::1", 2), BrokerAddr::new("b", 3)];
        let want = ProducerConfig::from_brokers(addrs)
            .client_id("svc")
            .acks(Acks::Leader)
            .linger(Duration::from_millis(20))
            .batch_size(1000)
            .buffer_memory(1_000_000)
            .compression(Compression::Zstd)
            .delivery_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(10))
            .retry_backoff(Duration::from_millis(50))
            .retry_backoff_max(Duration::from_secs(2))
            .max_in_flight(10)
            .enable_idempotence(false)
            .max_request_size(2_000_000)
            .metadata_max_age(Duration::from_secs(1))
            .partitioner(PartitionerKind::RoundRobin)
            .allow_auto_create_topics(false);
        assert_eq!(c, want);
        assert!(!c.idempotence());
    }

    #[test]
    fn enumerated_values() {
        for (value, acks) in
            [("0", Acks::None), ("1", Acks::Leader), ("-1", Acks::All), ("all", Acks::All), ("ALL", Acks::All)]
        {
            let c = props(&[("acks", value), ("enable.idempotence", "false")]).unwrap();
            assert_eq!(c.acks, acks);
        }
        assert_eq!((Acks::None.as_i16(), Acks::Leader.as_i16(), Acks::All.as_i16()), (0, 1, -1));
        for (value, codec) in [
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ] {
            assert_eq!(props(&[("compression.type", value)]).unwrap().compression, codec);
        }
        for (value, kind) in [
            ("default", PartitionerKind::Default),
            ("murmur2_random", PartitionerKind::Default),
            ("uniform_sticky", PartitionerKind::UniformSticky),
            ("round_robin", PartitionerKind::RoundRobin),
        ] {
            assert_eq!(props(&[("partitioner", value)]).unwrap().partitioner, kind);
        }
    }

    #[test]
    fn unknown_names_are_named() {
        for key in ["key.serializer", "transactional.id", "linger", "LINGER.MS"] {
            assert_eq!(props(&[(key, "1")]), Err(ConfigError::Unknown { key: key.to_string() }));
        }
    }

    #[test]
    fn retries_max_block_compression_level_and_reconnect_backoff_are_read() {
        let c = props(&[
            ("retries", "0"),
            ("max.block.ms", "1500"),
            ("compression.level", "7"),
            ("reconnect.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "400"),
        ])
        .unwrap();
        assert_eq!(c.retries, 0);
        assert_eq!(c.max_block, Duration::from_millis(1500));
        assert_eq!(c.compression_level, Some(7));
        assert_eq!(
            (c.reconnect_backoff, c.reconnect_backoff_max),
            (Duration::from_millis(20), Duration::from_millis(400))
        );
        let d = ProducerConfig::default();
        assert_eq!((d.retries, d.max_block), (i32::MAX as u32, Duration::from_secs(60)));
        assert!(props(&[("retries", "-1")]).is_err());
        assert!(props(&[("compression.level", "high")]).is_err());
    }

    #[test]
    fn invalid_values_are_named() {
        for (key, value) in [
            ("bootstrap.servers", "no-port"),
            ("bootstrap.servers", " , "),
            ("acks", "2"),
            ("acks", "leader"),
            ("linger.ms", "-1"),
            ("linger.ms", "5ms"),
            ("batch.size", "2147483648"),
            ("buffer.memory", "lots"),
            ("compression.type", "brotli"),
            ("delivery.timeout.ms", "2147483648"),
            ("request.timeout.ms", "1.5"),
            ("retry.backoff.ms", ""),
            ("retry.backoff.max.ms", "-100"),
            ("max.in.flight.requests.per.connection", "0"),
            ("enable.idempotence", "yes"),
            ("max.request.size", "-1"),
            ("metadata.max.age.ms", "soon"),
            ("partitioner", "murmur2"),
            ("partitioner.class", "org.apache.kafka.clients.producer.RoundRobinPartitioner"),
            ("allow.auto.create.topics", "1"),
        ] {
            let err = props(&[(key, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, value: v, .. } if *k == key && v == value),
                "{key}={value}: {err:?}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = props(&[("partitioner.class", "x.Y")]).unwrap_err().to_string();
        assert!(err.contains("`partitioner`"), "{err}");
        assert!(matches!(ProducerConfig::new("nope"), Err(ConfigError::Invalid { key: "bootstrap.servers", .. })));
    }

    #[test]
    fn bootstrap_servers_are_required() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(ProducerConfig::from_properties(none), Err(ConfigError::Missing { key: "bootstrap.servers" }));
        assert_eq!(
            ProducerConfig::from_properties([("acks", "1")]),
            Err(ConfigError::Missing { key: "bootstrap.servers" })
        );
        assert_eq!(ProducerConfig::default().validate(), Err(ConfigError::Missing { key: "bootstrap.servers" }));
        assert_eq!(
            ConfigError::Missing { key: "bootstrap.servers" }.to_string(),
            "missing required property `bootstrap.servers`"
        );
    }

    #[test]
    fn idempotence_follows_kafkas_rules() {
        // Not set: on by default, quietly off when acks or in-flight rule it out.
        assert!(props(&[]).unwrap().idempotence());
        assert!(!props(&[("acks", "1")]).unwrap().idempotence());
        assert!(!props(&[("acks", "0")]).unwrap().idempotence());
        assert!(!props(&[("max.in.flight.requests.per.connection", "6")]).unwrap().idempotence());
        assert!(props(&[("max.in.flight.requests.per.connection", "1")]).unwrap().idempotence());
        // Set to true: the conflicting setting is an error, named.
        assert_eq!(invalid_key(props(&[("enable.idempotence", "true"), ("acks", "1")])), "acks");
        assert_eq!(
            invalid_key(props(&[("enable.idempotence", "true"), ("max.in.flight.requests.per.connection", "6")])),
            "max.in.flight.requests.per.connection"
        );
        assert!(props(&[("enable.idempotence", "true"), ("acks", "-1")]).unwrap().idempotence());
        // Set to false: anything goes.
        assert!(!props(&[("enable.idempotence", "false"), ("acks", "1")]).unwrap().idempotence());
        // The same through the builder.
        let c = ProducerConfig::new("b:1").unwrap().enable_idempotence(true).acks(Acks::None);
        assert_eq!(invalid_key(c.validate()), "acks");
    }

    #[test]
    fn delivery_timeout_covers_linger_and_request_timeout() {
        // Set explicitly below linger + request timeout: an error naming delivery.timeout.ms.
        let short = [("delivery.timeout.ms", "30000"), ("linger.ms", "1")];
        assert_eq!(invalid_key(props(&short)), "delivery.timeout.ms");
        let exact = props(&[("delivery.timeout.ms", "30001"), ("linger.ms", "1")]).unwrap();
        assert_eq!(exact.effective_delivery_timeout(), Duration::from_millis(30_001));
        // Not set: the default is raised to the sum instead.
        let long = props(&[("request.timeout.ms", "200000"), ("linger.ms", "100")]).unwrap();
        assert_eq!(long.delivery_timeout, None);
        assert_eq!(long.effective_delivery_timeout(), Duration::from_millis(200_100));
        let c = ProducerConfig::new("b:1").unwrap().request_timeout(Duration::from_secs(200));
        c.validate().unwrap();
        assert_eq!(invalid_key(c.delivery_timeout(Duration::from_secs(120)).validate()), "delivery.timeout.ms");
    }

    #[test]
    fn sizes_and_timeouts_fit_together() {
        assert_eq!(invalid_key(props(&[("batch.size", "2000000")])), "batch.size");
        assert_eq!(invalid_key(props(&[("batch.size", "20000"), ("max.request.size", "10000")])), "batch.size");
        assert_eq!(invalid_key(props(&[("buffer.memory", "1000")])), "batch.size");
        assert_eq!(invalid_key(props(&[("max.request.size", "0"), ("batch.size", "0")])), "max.request.size");
        assert_eq!(invalid_key(props(&[("request.timeout.ms", "0")])), "request.timeout.ms");
        let c = ProducerConfig::new("b:1").unwrap().max_in_flight(0).enable_idempotence(false);
        assert_eq!(invalid_key(c.validate()), "max.in.flight.requests.per.connection");
        // Batching off and retry backoff above its cap are allowed, as in Kafka.
        props(&[("batch.size", "0"), ("retry.backoff.ms", "5000")]).unwrap();
    }

    #[test]
    fn later_duplicates_win_and_values_are_trimmed() {
        let c = props(&[("linger.ms", "1"), ("linger.ms", " 7 "), ("acks", " all ")]).unwrap();
        assert_eq!(c.linger, Duration::from_millis(7));
        assert_eq!(c.acks, Acks::All);
        let owned: Vec<(String, String)> = vec![("bootstrap.servers".into(), "h:1".into())];
        ProducerConfig::from_properties(owned).unwrap();
    }

    #[test]
    fn security_properties_are_read_by_kafka_names() {
        let c = ProducerConfig::from_properties([
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
        let sasl = ProducerConfig::from_properties([("bootstrap.servers", "a:1"), ("security.protocol", "SASL_SSL")]);
        assert!(matches!(&sasl, Err(ConfigError::Invalid { key: "sasl.mechanism", .. })), "{sasl:?}");
        let sasl = ProducerConfig::from_properties([
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
            ProducerConfig::from_properties([("bootstrap.servers", "a:1"), ("ssl.certificate.location", "/c.pem")]);
        assert!(matches!(half, Err(ConfigError::Invalid { key: "ssl.key.location", .. })), "{half:?}");
    }
}
