//! The admin client's settings, with Kafka's defaults and property names.

use krab_cluster::transport::{BrokerAddr, parse_bootstrap};
use krab_cluster::{ClusterConfig, SecurityConfig};
use std::time::Duration;

/// A setting that was unknown, invalid or missing, named by its Kafka property name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A property the admin client does not know.
    #[error("unknown admin property `{key}`")]
    Unknown {
        /// The property name as given.
        key: String,
    },
    /// A value that cannot be used for this property.
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

/// Settings of an [`Admin`](crate::Admin) client.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: Vec<BrokerAddr>,
    /// `client.id`. Default `"krab-admin"`.
    pub client_id: String,
    /// `request.timeout.ms`: one request's bound. Default 30 s.
    pub request_timeout: Duration,
    /// `default.api.timeout.ms`: one call's bound, retries included. Default 60 s.
    pub api_timeout: Duration,
    /// `retry.backoff.ms`: the first wait before a retry. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the cap of the growing wait. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`. Default 50 ms.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`. Default 1 s.
    pub reconnect_backoff_max: Duration,
    /// `metadata.max.age.ms`. Default 5 min.
    pub metadata_max_age: Duration,
    /// `connections.max.idle.ms`. Default 5 min (Kafka's admin default).
    pub connections_max_idle: Duration,
    /// `security.protocol`, `ssl.*` and `sasl.*`.
    pub security: SecurityConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "krab-admin".into(),
            request_timeout: Duration::from_secs(30),
            api_timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            connections_max_idle: Duration::from_secs(300),
            security: SecurityConfig::default(),
        }
    }
}

fn millis(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n <= i32::MAX as u64 => Ok(Duration::from_millis(n)),
        _ => Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: format!("expected milliseconds from 0 to {}", i32::MAX),
        }),
    }
}

impl AdminConfig {
    /// Kafka's defaults with the given `bootstrap.servers` (comma-separated `host:port`).
    pub fn new(bootstrap_servers: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        config.set("bootstrap.servers", bootstrap_servers)?;
        Ok(config)
    }

    /// A validated configuration from Kafka property names and values; unknown names are
    /// rejected.
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

    /// Sets one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match self.security.set(key, value) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(ConfigError::Invalid { key: e.key, value: e.value, reason: e.reason }),
        }
        match key.trim() {
            "bootstrap.servers" => {
                self.bootstrap_servers = parse_bootstrap(value).map_err(|e| ConfigError::Invalid {
                    key: "bootstrap.servers",
                    value: value.to_string(),
                    reason: format!("{e}; expected host:port[,host:port...]"),
                })?;
            }
            "client.id" => self.client_id = value.trim().to_string(),
            "request.timeout.ms" => self.request_timeout = millis("request.timeout.ms", value)?,
            "default.api.timeout.ms" => self.api_timeout = millis("default.api.timeout.ms", value)?,
            "retry.backoff.ms" => self.retry_backoff = millis("retry.backoff.ms", value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis("retry.backoff.max.ms", value)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = millis("reconnect.backoff.ms", value)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = millis("reconnect.backoff.max.ms", value)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis("metadata.max.age.ms", value)?,
            "connections.max.idle.ms" => self.connections_max_idle = millis("connections.max.idle.ms", value)?,
            _ => return Err(ConfigError::Unknown { key: key.to_string() }),
        }
        Ok(())
    }

    /// Checks the rules between settings: `bootstrap.servers` given, the security settings
    /// consistent, and no zero timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing { key: "bootstrap.servers" });
        }
        self.security.validate().map_err(|e| ConfigError::Invalid { key: e.key, value: e.value, reason: e.reason })?;
        for (key, d) in [("request.timeout.ms", self.request_timeout), ("default.api.timeout.ms", self.api_timeout)] {
            if d.is_zero() {
                return Err(ConfigError::Invalid { key, value: "0".into(), reason: "must be positive".into() });
            }
        }
        Ok(())
    }

    /// The cluster layer's settings these make.
    pub(crate) fn cluster_config(&self) -> ClusterConfig {
        let mut c = ClusterConfig::new(self.bootstrap_servers.clone());
        c.connection.client_id = Some(self.client_id.clone());
        c.connection.request_timeout = self.request_timeout;
        c.metadata_max_age = self.metadata_max_age;
        c.reconnect_backoff = self.reconnect_backoff;
        c.reconnect_backoff_max = self.reconnect_backoff_max;
        c.idle_timeout = self.connections_max_idle;
        c.security = self.security.clone();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_by_kafka_names_and_rejections_by_name() {
        let c = AdminConfig::from_properties([
            ("bootstrap.servers", "a:1,b:2"),
            ("default.api.timeout.ms", "5000"),
            ("request.timeout.ms", "2000"),
            ("client.id", "ops"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers.len(), 2);
        assert_eq!(c.api_timeout, Duration::from_secs(5));
        assert_eq!(c.cluster_config().connection.request_timeout, Duration::from_secs(2));
        assert!(
            matches!(AdminConfig::from_properties([("linger.ms", "5")]), Err(ConfigError::Unknown { key }) if key == "linger.ms")
        );
        assert!(matches!(
            AdminConfig::from_properties([("bootstrap.servers", "a:1"), ("default.api.timeout.ms", "soon")]),
            Err(ConfigError::Invalid { key: "default.api.timeout.ms", .. })
        ));
        assert!(matches!(
            AdminConfig::from_properties([("bootstrap.servers", "a:1"), ("request.timeout.ms", "0")]),
            Err(ConfigError::Invalid { key: "request.timeout.ms", .. })
        ));
        assert!(matches!(
            AdminConfig::from_properties([("client.id", "x")]),
            Err(ConfigError::Missing { key: "bootstrap.servers" })
        ));
    }
}
