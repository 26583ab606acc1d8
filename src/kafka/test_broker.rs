//! The real broker the unit tests of this module use (feature `kafka-tests`; `scripts/test.sh`
//! starts it and names it in `BP_RELAY_TEST_KAFKA`): a fresh topic per test, so that tests
//! sharing the broker do not see each other's records.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    ClientConfig,
};

/// How long creating a topic and seeing its leader may take.
const WITHIN: Duration = Duration::from_secs(30);

/// Bootstrap servers of the shared test broker.
pub(crate) fn bootstrap() -> String {
    std::env::var("BP_RELAY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Creates a topic of one partition no other test uses, and waits until it has a leader.
pub(crate) async fn fresh_topic(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "unit.{prefix}.{}.{stamp}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(WITHIN));
    let created = tokio::time::timeout(
        WITHIN,
        admin.create_topics(
            &[NewTopic::new(&name, 1, TopicReplication::Fixed(1))],
            &options,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("creating {name} within {WITHIN:?}"))
    .unwrap();
    for result in created {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
    tokio::time::timeout(WITHIN, async {
        // The controller answers before every broker's metadata knows the topic.
        while !has_leader(&admin, &name) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} has a leader within {WITHIN:?}"));
    name
}

fn has_leader(admin: &AdminClient<DefaultClientContext>, topic: &str) -> bool {
    admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(2))
        .is_ok_and(|metadata| {
            metadata.topics().iter().any(|found| {
                found.error().is_none()
                    && !found.partitions().is_empty()
                    && found.partitions().iter().all(|p| p.leader() >= 0)
            })
        })
}
