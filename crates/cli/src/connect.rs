//! The connection options every subcommand shares, and the client configs they make.
//!
//! Settings are Kafka property names, gathered in this order (a later one wins): the bootstrap
//! from `$KRAB_BOOTSTRAP` (else `localhost:9092`), the `-F` properties file, the TLS and SASL
//! flags, every `-X key=value`, and `-b`. Each client takes the properties it knows; a
//! property only another krab client knows is skipped for this one (`-X fetch.max.wait.ms=50`
//! does not stop `krab produce`), and a property no krab client knows is an error.

use anyhow::{Context, Result, bail};
use krab_admin::{Admin, AdminConfig};
use krab_consumer::ConsumerConfig;
use krab_producer::ProducerConfig;
use std::path::{Path, PathBuf};

/// Where to connect, and how.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct ConnectArgs {
    /// Bootstrap brokers, host:port[,host:port...] [default: $KRAB_BOOTSTRAP, else localhost:9092].
    #[arg(short = 'b', long = "bootstrap", global = true, value_name = "BROKERS")]
    pub(crate) bootstrap: Option<String>,
    /// A Kafka property (repeatable), e.g. -X linger.ms=5 -X client.id=ops.
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub(crate) properties: Vec<String>,
    /// A Java-style properties file of Kafka properties (client.properties).
    #[arg(short = 'F', long = "config-file", value_name = "FILE", global = true)]
    pub(crate) config_file: Option<PathBuf>,
    /// Connect over TLS (security.protocol=SSL, or SASL_SSL with SASL).
    #[arg(long, global = true)]
    pub(crate) tls: bool,
    /// The CA certificates (PEM) to trust instead of the system roots (ssl.ca.location; implies --tls).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) ca: Option<PathBuf>,
    /// The client certificate (PEM) for mutual TLS (ssl.certificate.location; implies --tls).
    #[arg(long, value_name = "FILE", global = true, requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// The client certificate's private key, unencrypted PEM (ssl.key.location).
    #[arg(long, value_name = "FILE", global = true, requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (sasl.mechanism).
    #[arg(long, value_name = "MECHANISM", global = true)]
    pub(crate) sasl_mechanism: Option<String>,
    /// SASL user name (sasl.username).
    #[arg(long, value_name = "USER", global = true)]
    pub(crate) sasl_username: Option<String>,
    /// SASL password (sasl.password) [default: $KRAB_SASL_PASSWORD].
    #[arg(long, value_name = "PASSWORD", global = true)]
    pub(crate) sasl_password: Option<String>,
}

/// Which of krab's clients a config is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    Producer,
    Consumer,
    Admin,
}

/// Java clients' properties that mean nothing to krab (it sends and returns bytes as they are):
/// skipped with a note, so that a Java client's properties file works as it is.
const JAVA_ONLY: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "interceptor.classes",
    "metric.reporters",
];

/// The connection settings, as Kafka properties in the order they apply.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    properties: Vec<(String, String)>,
}

impl Settings {
    /// Gathers the properties from the options, the properties file and the environment.
    pub(crate) fn from_args(args: &ConnectArgs) -> Result<Self> {
        let env_bootstrap = std::env::var("KRAB_BOOTSTRAP").ok().filter(|b| !b.trim().is_empty());
        let file = match &args.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the properties file {}", path.display()))?;
                parse_properties(&text).with_context(|| format!("properties file {}", path.display()))?
            }
            None => Vec::new(),
        };
        let password = args.sasl_password.clone().or_else(|| std::env::var("KRAB_SASL_PASSWORD").ok());
        Self::assemble(args, env_bootstrap, file, password)
    }

    fn assemble(
        args: &ConnectArgs,
        env_bootstrap: Option<String>,
        file: Vec<(String, String)>,
        password: Option<String>,
    ) -> Result<Self> {
        let mut properties =
            vec![("bootstrap.servers".to_string(), env_bootstrap.unwrap_or_else(|| "localhost:9092".to_string()))];
        properties.extend(file);
        let tls = args.tls || args.ca.is_some() || args.cert.is_some();
        let sasl = args.sasl_mechanism.is_some();
        let protocol = match (tls, sasl) {
            (true, true) => Some("SASL_SSL"),
            (true, false) => Some("SSL"),
            (false, true) => Some("SASL_PLAINTEXT"),
            (false, false) => None,
        };
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let flags = [
            protocol.map(|p| ("security.protocol", p.to_string())),
            args.ca.as_deref().map(|p| ("ssl.ca.location", path(p))),
            args.cert.as_deref().map(|p| ("ssl.certificate.location", path(p))),
            args.key.as_deref().map(|p| ("ssl.key.location", path(p))),
            args.sasl_mechanism.clone().map(|m| ("sasl.mechanism", m)),
            args.sasl_username.clone().map(|u| ("sasl.username", u)),
            password.map(|p| ("sasl.password", p)),
        ];
        properties.extend(flags.into_iter().flatten().map(|(k, v)| (k.to_string(), v)));
        for p in &args.properties {
            let (k, v) = split_property(p)?;
            properties.push((k, v));
        }
        if let Some(b) = &args.bootstrap {
            properties.push(("bootstrap.servers".to_string(), b.clone()));
        }
        Ok(Settings { properties })
    }

    /// The bootstrap servers that apply (for messages).
    pub(crate) fn bootstrap(&self) -> &str {
        self.properties.iter().rev().find(|(k, _)| k == "bootstrap.servers").map_or("", |(_, v)| v.as_str())
    }

    /// The properties `client` takes, in order, with `client.id` defaulted to `krab-cli`.
    fn for_client(&self, client: Client) -> Result<Vec<(String, String)>> {
        let mut out = vec![("client.id".to_string(), "krab-cli".to_string())];
        for (k, v) in &self.properties {
            if JAVA_ONLY.contains(&k.as_str()) {
                continue;
            }
            match knows(client, k) {
                Known::Yes => out.push((k.clone(), v.clone())),
                Known::Elsewhere => {}
                Known::Nowhere => bail!("unknown property `{k}`: no krab client (producer, consumer, admin) has it"),
            }
        }
        Ok(out)
    }

    /// A producer config from the properties, then `extra` (the subcommand's own flags, which win).
    pub(crate) fn producer_config(&self, extra: &[(&str, String)]) -> Result<ProducerConfig> {
        let mut config = ProducerConfig::default();
        for (k, v) in self
            .for_client(Client::Producer)?
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra.iter().map(|(k, v)| (*k, v.as_str())))
        {
            config.set(k, v).context("producer configuration")?;
        }
        config.validate().context("producer configuration")?;
        Ok(config)
    }

    /// A consumer config from the properties, then `extra`.
    pub(crate) fn consumer_config(&self, extra: &[(&str, String)]) -> Result<ConsumerConfig> {
        let mut config = ConsumerConfig::default();
        for (k, v) in self
            .for_client(Client::Consumer)?
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra.iter().map(|(k, v)| (*k, v.as_str())))
        {
            config.set(k, v).context("consumer configuration")?;
        }
        config.validate().context("consumer configuration")?;
        Ok(config)
    }

    /// An admin config from the properties.
    pub(crate) fn admin_config(&self) -> Result<AdminConfig> {
        let mut config = AdminConfig::default();
        for (k, v) in self.for_client(Client::Admin)? {
            config.set(&k, &v).context("admin configuration")?;
        }
        config.validate().context("admin configuration")?;
        Ok(config)
    }

    /// Connects an admin client.
    pub(crate) async fn admin(&self) -> Result<Admin> {
        let config = self.admin_config()?;
        Admin::connect(config).await.with_context(|| format!("connecting to {}", self.bootstrap()))
    }
}

enum Known {
    Yes,
    Elsewhere,
    Nowhere,
}

/// Whether `client` takes `key`, or only another krab client does, or none. A client "takes" a
/// key when setting it does not answer "unknown" (an invalid value still means known).
fn knows(client: Client, key: &str) -> Known {
    // A value that is valid for most properties; only unknown-ness matters here.
    let probe = |c: Client| -> bool {
        let unknown_producer =
            |r: Result<(), krab_producer::ConfigError>| matches!(r, Err(krab_producer::ConfigError::Unknown { .. }));
        let unknown_consumer =
            |r: Result<(), krab_consumer::ConfigError>| matches!(r, Err(krab_consumer::ConfigError::Unknown { .. }));
        let unknown_admin =
            |r: Result<(), krab_admin::ConfigError>| matches!(r, Err(krab_admin::ConfigError::Unknown { .. }));
        match c {
            Client::Producer => !unknown_producer(ProducerConfig::default().set(key, "1")),
            Client::Consumer => !unknown_consumer(ConsumerConfig::default().set(key, "1")),
            Client::Admin => !unknown_admin(AdminConfig::default().set(key, "1")),
        }
    };
    if probe(client) {
        Known::Yes
    } else if [Client::Producer, Client::Consumer, Client::Admin].into_iter().any(probe) {
        Known::Elsewhere
    } else {
        Known::Nowhere
    }
}

/// `key=value` (the value may contain `=`).
pub(crate) fn split_property(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("`-X {s}`: expected KEY=VALUE"),
    }
}

/// Parses a Java `.properties` file: `key=value`, `key: value` or `key value` per logical line;
/// `#` and `!` start comments; a line ending in an odd number of backslashes continues on the
/// next one (its leading blanks dropped); escapes `\t \n \r \f \\ \uXXXX`, and any other escaped
/// character stands for itself (so `\=` and `\:` are part of a key).
pub(crate) fn parse_properties(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, first)) = lines.next() {
        let mut logical = first.trim_start_matches([' ', '\t', '\x0c']).to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_continued(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches([' ', '\t', '\x0c'])),
                None => break,
            }
        }
        let (key, value) = split_logical(&logical);
        let key = unescape_java(&key).with_context(|| format!("line {}", number + 1))?;
        let value = unescape_java(&value).with_context(|| format!("line {}", number + 1))?;
        out.push((key, value));
    }
    Ok(out)
}

fn ends_continued(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or blank (blanks around it dropped).
fn split_logical(line: &str) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut key = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            key.push(c);
            key.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\x0c' {
            break;
        }
        key.push(c);
        i += 1;
    }
    // Blanks, then at most one `=` or `:`, then blanks.
    while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\x0c') {
        i += 1;
    }
    if i < chars.len() && matches!(chars[i], '=' | ':') {
        i += 1;
        while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\x0c') {
            i += 1;
        }
    }
    (key, chars[i..].iter().collect())
}

fn unescape_java(s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .with_context(|| format!("bad escape \\u{hex}"))?;
                out.push(char::from_u32(code).with_context(|| format!("\\u{hex} is not a character"))?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_files_parse_like_java() {
        let text = "\
# a comment
! another
bootstrap.servers=k1:9092,k2:9092
   security.protocol : SASL_SSL
sasl.mechanism SCRAM-SHA-512
sasl.password=p\\=ss\\:w\\u00f6rd
ssl.ca.location = /etc/kafka/ca\\
                  .pem
key\\ with\\ blanks=v

empty=
tabbed\\tvalue=a\\tb
";
        let p = parse_properties(text).unwrap();
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.password"), Some("p=ss:wörd"));
        assert_eq!(get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(get("key with blanks"), Some("v"));
        assert_eq!(get("empty"), Some(""));
        assert_eq!(get("tabbed\tvalue"), Some("a\tb"));
        assert_eq!(p.len(), 8);
        assert!(parse_properties("a=\\u12").is_err());
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(
            parse_properties("a=b\\\\\nc=d").unwrap(),
            vec![("a".into(), "b\\".into()), ("c".into(), "d".into())]
        );
    }

    fn args(f: impl FnOnce(&mut ConnectArgs)) -> ConnectArgs {
        let mut a = ConnectArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn later_sources_win_and_flags_map_to_property_names() {
        let a = args(|a| {
            a.ca = Some("ca.pem".into());
            a.sasl_mechanism = Some("PLAIN".into());
            a.sasl_username = Some("alice".into());
            a.properties = vec!["linger.ms=7".into(), "bootstrap.servers=x:1".into()];
        });
        let file = vec![("bootstrap.servers".into(), "file:1".into()), ("security.protocol".into(), "SSL".into())];
        let s = Settings::assemble(&a, Some("env:1".into()), file, Some("secret".into())).unwrap();
        assert_eq!(s.bootstrap(), "x:1");
        let get = |k: &str| s.properties.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("security.protocol").as_deref(), Some("SASL_SSL"));
        assert_eq!(get("ssl.ca.location").as_deref(), Some("ca.pem"));
        assert_eq!(get("sasl.password").as_deref(), Some("secret"));
        let with_b = args(|a| {
            a.bootstrap = Some("b:1".into());
            a.properties = vec!["bootstrap.servers=x:1".into()];
        });
        assert_eq!(Settings::assemble(&with_b, None, vec![], None).unwrap().bootstrap(), "b:1");
        assert_eq!(
            Settings::assemble(&ConnectArgs::default(), None, vec![], None).unwrap().bootstrap(),
            "localhost:9092"
        );
        assert!(Settings::assemble(&args(|a| a.properties = vec!["novalue".into()]), None, vec![], None).is_err());
    }

    #[test]
    fn each_client_takes_its_own_properties() {
        let a = args(|a| {
            a.properties = vec![
                "linger.ms=5".into(),
                "fetch.max.wait.ms=50".into(),
                "default.api.timeout.ms=9000".into(),
                "key.serializer=org.apache.kafka.common.serialization.StringSerializer".into(),
            ];
        });
        let s = Settings::assemble(&a, None, vec![], None).unwrap();
        let p = s.producer_config(&[("acks", "1".into())]).unwrap();
        assert_eq!(p.linger, std::time::Duration::from_millis(5));
        assert_eq!(p.acks, krab_producer::Acks::Leader);
        assert_eq!(p.client_id, "krab-cli");
        let c = s.consumer_config(&[]).unwrap();
        assert_eq!(c.fetch_max_wait, std::time::Duration::from_millis(50));
        let admin = s.admin_config().unwrap();
        assert_eq!(admin.api_timeout, std::time::Duration::from_secs(9));
        let bad =
            Settings::assemble(&args(|a| a.properties = vec!["no.such.thing=1".into()]), None, vec![], None).unwrap();
        let e = bad.producer_config(&[]).unwrap_err();
        assert!(e.to_string().contains("no.such.thing"), "{e}");
        let invalid =
            Settings::assemble(&args(|a| a.properties = vec!["acks=some".into()]), None, vec![], None).unwrap();
        assert!(format!("{:#}", invalid.producer_config(&[]).unwrap_err()).contains("acks"));
    }
}
