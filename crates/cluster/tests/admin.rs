//! Admin basics against the fake cluster's CreateTopics / DeleteTopics / Metadata handlers.

use krab_cluster::{ClusterError, NewTopic};
use krab_protocol::ApiKey;
use krab_protocol::error_code::ErrorCode;
use krab_testkit::FakeCluster;
use std::time::Duration;

#[tokio::test]
async fn create_list_and_delete_topics() {
    let fake = FakeCluster::new(3);
    fake.create_topic("existing", 1);
    let cluster = fake.connect(fake.config()).await.unwrap();
    let timeout = Duration::from_secs(5);

    cluster.create_topics(&[NewTopic::new("orders", 6), NewTopic::new("audit", 1)], timeout).await.unwrap();
    assert_eq!(fake.state().topics["orders"].len(), 6);
    assert_eq!(fake.requests(ApiKey::CreateTopics), 1);
    // The controller (broker 1) takes admin requests.
    assert_eq!(fake.broker(1).requests(ApiKey::CreateTopics), 1);

    match cluster.create_topics(&[NewTopic::new("existing", 1)], timeout).await {
        Err(e @ ClusterError::Broker { api: ApiKey::CreateTopics, .. }) => {
            assert_eq!(e.error_code(), Some(ErrorCode::TopicAlreadyExists));
            assert!(e.to_string().contains("existing"), "{e}");
        }
        other => panic!("expected TOPIC_ALREADY_EXISTS, got {other:?}"),
    }

    assert_eq!(cluster.list_topics().await.unwrap(), ["audit", "existing", "orders"]);
    assert_eq!(cluster.snapshot().topic("orders").unwrap().partitions.len(), 6);

    cluster.delete_topics(&["audit".to_string()], timeout).await.unwrap();
    assert_eq!(cluster.list_topics().await.unwrap(), ["existing", "orders"]);
    assert!(cluster.snapshot().topic("audit").is_none(), "a full refresh drops deleted topics");

    match cluster.delete_topics(&["audit".to_string()], timeout).await {
        Err(e) => assert_eq!(e.error_code(), Some(ErrorCode::UnknownTopicOrPartition), "{e}"),
        Ok(()) => panic!("deleting a missing topic succeeded"),
    }
}
