//! "2xx means durable, checked": the relay reads its topics' replication factor,
//! `min.insync.replicas` and unclean leader election from the broker and is unready, naming the
//! topic and the setting, while a topic is less durable than required. A one-broker
//! development setup stays ready.

use std::time::Duration;

use http::StatusCode;

use crate::helpers::*;

/// Waits until `/readyz` says `topics_not_durable` with a shortfall containing `named`.
async fn unready_naming(relay: &TestRelay, named: &str) {
    eventually(
        &format!("/readyz to say topics_not_durable naming {named:?}"),
        Duration::from_secs(20),
        || async {
            let answer = relay.admin_get("/readyz").await;
            answer.status == StatusCode::SERVICE_UNAVAILABLE
                && answer.text().contains("topics_not_durable")
                && answer.json()["not_durable"]
                    .as_array()
                    .is_some_and(|shortfalls| {
                        shortfalls
                            .iter()
                            .any(|line| line.as_str().is_some_and(|line| line.contains(named)))
                    })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_broker_development_setup_stays_ready() {
    let relay = spawn_relay(RelayOptions::default()).await;
    eventually("the relay to be ready", Duration::from_secs(15), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;
    assert!(!relay
        .admin_get("/readyz")
        .await
        .text()
        .contains("topics_not_durable"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_below_the_required_replication_factor_makes_the_relay_unready() {
    let relay =
        spawn_relay(RelayOptions::default().flags(&["--min-replication-factor", "2"])).await;
    let named = format!(
        "topic {}: replication factor 1, below 2 (--min-replication-factor; 1 brokers)",
        relay.topics.processes.name
    );
    unready_naming(&relay, &named).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unclean_leader_election_or_too_few_in_sync_replicas_make_the_relay_unready() {
    let unclean = spawn_relay(
        RelayOptions::default().process_topic_config("unclean.leader.election.enable", "true"),
    )
    .await;
    let named = format!(
        "topic {}: unclean.leader.election.enable is true",
        unclean.topics.processes.name
    );
    unready_naming(&unclean, &named).await;
    unclean.stop().await;

    let few = spawn_relay(
        RelayOptions::default()
            .process_topic_config("min.insync.replicas", "1")
            .flags(&["--min-insync-replicas", "2"]),
    )
    .await;
    let named = format!(
        "topic {}: min.insync.replicas 1, below 2",
        few.topics.processes.name
    );
    unready_naming(&few, &named).await;
    few.stop().await;
}
