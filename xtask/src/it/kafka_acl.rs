//! `kafka/acl`: Kafka's `StandardAuthorizer` (`KafkaOptions::acl`) guarding a topic against a
//! SASL user, with every step done through krab's admin client over PLAINTEXT (a super user).
//!
//! - A SCRAM-SHA-256 user `bob` is created with the admin client (salted here; described
//!   afterwards) and logs in over `SASL_SSL`.
//! - A topic gets an ACL for `User:admin` only, so `bob` is denied it: his produce and his
//!   consume each fail with TOPIC_AUTHORIZATION_FAILED as a typed, non-retriable error, at once
//!   (not after retrying until a timeout).
//! - ACLs allowing `bob` Write, Read and Describe are created: his next produce succeeds and he
//!   reads back what he wrote. Deleting his ACLs returns exactly the three bindings.

use super::admin_support::{admin, all, eventually};
use super::kafka_support::KafkaCtx;
use super::kafka_tls::secured_producer_config;
use super::support::ms;
use anyhow::{Context, Result, bail, ensure};
use krab_admin::{
    AclBinding, AclFilter, AclOperation, ErrorCode, NewTopic, ResourceType, ScramAlteration, ScramMechanism, Secret,
};
use krab_consumer::{Consumer, ConsumerConfig, Offset};
use krab_producer::{ErrorKind, Producer, Record, SaslConfig, SecurityConfig, TlsSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-acl";
const USER: &str = "bob";
const PASSWORD: &str = "bob-secret";

fn bob(tls: &TlsSettings) -> SecurityConfig {
    SecurityConfig::sasl(SaslConfig::scram_sha256(USER, PASSWORD), Some(tls.clone()))
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let kafka = &ctx.kafka;
    let (Some(sasl_bootstrap), Some(files)) = (kafka.sasl_ssl_bootstrap(), kafka.tls_files()) else {
        bail!("the cluster was started without a SASL_SSL listener (KafkaOptions::sasl)");
    };
    let tls = TlsSettings::default().ca_location(&files.ca);
    let admin = admin(&kafka.bootstrap()).await.context("admin connect")?;

    let upsert = ScramAlteration::Upsert {
        user: USER.into(),
        mechanism: ScramMechanism::Sha256,
        iterations: 4096,
        password: Secret::new(PASSWORD),
    };
    all("alter_user_scram_credentials", admin.alter_user_scram_credentials(&[upsert]).await?)?;
    let users = [USER.to_string()];
    let (creds, _) = eventually("bob's SCRAM credential", Duration::from_secs(20), || async {
        let mut d = admin.describe_user_scram_credentials(Some(&users)).await?;
        Ok(match d.remove(USER) {
            Some(Ok(c)) if !c.is_empty() => Some(c),
            _ => None,
        })
    })
    .await?;
    ensure!(
        creds.len() == 1 && creds[0].mechanism == ScramMechanism::Sha256 && creds[0].iterations == 4096,
        "bob's credentials {creds:?}"
    );

    all("create the topic", admin.create_topics(&[NewTopic::new(TOPIC, 2, 3)]).await?)?;
    let admin_only = AclBinding::allow_topic(TOPIC, "User:admin", AclOperation::All);
    all("create the admin's ACL", admin.create_acls(std::slice::from_ref(&admin_only)).await?)?;
    let topic_acls = AclFilter::resource(ResourceType::Topic, TOPIC);
    eventually("the admin's ACL described", Duration::from_secs(20), || async {
        Ok(admin.describe_acls(&topic_acls).await?.contains(&admin_only).then_some(()))
    })
    .await?;

    // bob logs in (his credential may reach the SASL_SSL brokers a moment after the call).
    let (producer, _) = eventually("bob logged in", Duration::from_secs(20), || async {
        let mut config = secured_producer_config(&sasl_bootstrap, bob(&tls))?;
        config.client_id = "krab-it-acl-bob".into();
        match Producer::connect(config).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if matches!(e.kind(), ErrorKind::Authentication(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let topic: Arc<str> = TOPIC.into();
    let started = Instant::now();
    let refused = producer.send(Record::new(topic.clone(), "denied").partition(0)).await?.await;
    let produce_took = started.elapsed();
    let err = match refused {
        Ok(m) => bail!("bob's record was written at {}@{} without an ACL", m.partition, m.offset),
        Err(e) => e,
    };
    ensure!(err.kind() == ErrorKind::Broker(ErrorCode::TopicAuthorizationFailed), "bob's produce: {err:#}");
    ensure!(!err.is_retriable(), "TOPIC_AUTHORIZATION_FAILED must not be retriable: {err}");
    ensure!(produce_took < Duration::from_secs(10), "the refusal took {} (retried?)", ms(produce_took));

    let consumer_config = || -> Result<ConsumerConfig> {
        Ok(ConsumerConfig::new(&sasl_bootstrap)?
            .security(bob(&tls))
            .client_id("krab-it-acl-bob")
            .request_timeout(Duration::from_secs(10)))
    };
    let mut consumer = Consumer::connect(consumer_config()?).await.context("bob's consumer")?;
    consumer.assign([(krab_consumer::TopicPartition::new(TOPIC, 0), Offset::Earliest)]);
    let started = Instant::now();
    let item =
        tokio::time::timeout(Duration::from_secs(30), consumer.poll_batch(10)).await.context("bob's consume hung")?;
    let consume_took = started.elapsed();
    let err = match item {
        Err(e) => e,
        Ok(batch) => bail!("bob read {} records without an ACL", batch.iter().map(|b| b.records.len()).sum::<usize>()),
    };
    ensure!(
        err.kind() == krab_consumer::ErrorKind::Broker(ErrorCode::TopicAuthorizationFailed),
        "bob's consume: {err:#}"
    );
    ensure!(!err.is_retriable(), "TOPIC_AUTHORIZATION_FAILED must not be retriable: {err}");
    drop(consumer);

    let grants: Vec<AclBinding> = [AclOperation::Write, AclOperation::Read, AclOperation::Describe]
        .into_iter()
        .map(|op| AclBinding::allow_topic(TOPIC, format!("User:{USER}"), op))
        .collect();
    let granted_at = Instant::now();
    all("create bob's ACLs", admin.create_acls(&grants).await?)?;
    let mut attempts = 0;
    let (written, _) = eventually("bob's produce allowed", Duration::from_secs(30), || {
        attempts += 1;
        let (producer, topic) = (&producer, topic.clone());
        async move {
            match producer.send(Record::new(topic, "allowed").partition(0)).await?.await {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == ErrorKind::Broker(ErrorCode::TopicAuthorizationFailed) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await?;
    let allowed_after = granted_at.elapsed();
    producer.close(Duration::from_secs(10)).await?;

    let mut consumer = Consumer::connect(consumer_config()?).await.context("bob's consumer")?;
    consumer.assign([(krab_consumer::TopicPartition::new(TOPIC, 0), Offset::At(written.offset))]);
    let batch = tokio::time::timeout(Duration::from_secs(30), consumer.poll_batch(1))
        .await
        .context("bob's read hung")?
        .context("bob's read")?;
    let read = batch.into_iter().flat_map(|b| b.records).next().context("bob read nothing")?;
    ensure!(read.offset == written.offset && read.value.as_deref() == Some(&b"allowed"[..]), "bob read {read:?}");
    drop(consumer);

    let bobs = AclFilter { principal: Some(format!("User:{USER}")), ..AclFilter::resource(ResourceType::Topic, TOPIC) };
    let mut deleted = all("delete bob's ACLs", admin.delete_acls(std::slice::from_ref(&bobs)).await?)?;
    let mut deleted = deleted.remove(&bobs).unwrap_or_default();
    deleted.sort();
    let mut want = grants.clone();
    want.sort();
    ensure!(deleted == want, "deleted {deleted:?}");
    all("delete the admin's ACL", admin.delete_acls(&[admin_only.to_filter()]).await?)?;
    all("delete the topic", admin.delete_topics(&[TOPIC]).await?)?;
    Ok(format!(
        "SCRAM user bob created by the admin client ({:?}, 4096 iterations); denied: produce → TOPIC_AUTHORIZATION_FAILED in {}, \
         consume → TOPIC_AUTHORIZATION_FAILED in {} (typed, not retriable); allowed by 3 ACLs: produce acknowledged {} later \
         ({attempts} attempt(s)), read back; 3 ACLs deleted",
        creds[0].mechanism,
        ms(produce_took),
        ms(consume_took),
        ms(allowed_after)
    ))
}
