//! Whether the topics are as durable as the cluster allows, so that `acks=all` means what the
//! README says: the replication factor, `min.insync.replicas` and unclean leader election, read
//! from the brokers (metadata and `DescribeConfigs`) at startup and then periodically.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, ResourceSpecifier},
    client::DefaultClientContext,
    error::KafkaError,
    ClientConfig,
};

/// What a topic must have; `None` takes the default that depends on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// `--min-replication-factor`; default min(3, brokers).
    pub replication_factor: Option<u32>,
    /// `--min-insync-replicas`; default 2 where the replication factor is 3 or more, else 1.
    pub min_insync_replicas: Option<u32>,
    /// `--allow-unclean-leader-election`: off by default, an unclean election loses acked records.
    pub allow_unclean_leader_election: bool,
}

/// What the brokers say of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// The smallest replica count among its partitions.
    pub replication_factor: u32,
    /// Its effective `min.insync.replicas`.
    pub min_insync_replicas: Option<u32>,
    /// Its effective `unclean.leader.election.enable`.
    pub unclean_leader_election: Option<bool>,
}

impl Requirements {
    /// Each way `topic` is less durable than required on a cluster of `brokers`, as one line
    /// naming the topic and the setting.
    pub fn shortfalls(&self, brokers: usize, topic: &Topic) -> Vec<String> {
        let mut shortfalls = Vec::new();
        let cluster = u32::try_from(brokers).unwrap_or(u32::MAX);
        let replication = self.replication_factor.unwrap_or(cluster.clamp(1, 3));
        if topic.replication_factor < replication {
            shortfalls.push(format!(
                "topic {}: replication factor {}, below {replication} (--min-replication-factor; {brokers} brokers)",
                topic.name, topic.replication_factor
            ));
        }
        let insync = self
            .min_insync_replicas
            .unwrap_or(if topic.replication_factor >= 3 { 2 } else { 1 });
        if let Some(actual) = topic.min_insync_replicas.filter(|actual| *actual < insync) {
            shortfalls.push(format!(
                "topic {}: min.insync.replicas {actual}, below {insync} (--min-insync-replicas)",
                topic.name
            ));
        }
        if topic.unclean_leader_election == Some(true) && !self.allow_unclean_leader_election {
            shortfalls.push(format!(
                "topic {}: unclean.leader.election.enable is true (--allow-unclean-leader-election)",
                topic.name
            ));
        }
        shortfalls
    }
}

/// An admin client with the producer's settings `config` (the same brokers and credentials),
/// without idempotence (it produces nothing, so it need not ask for a producer id). Kept for
/// the relay's life: dropping one joins its threads.
///
/// # Errors
/// librdkafka refused the settings.
pub fn admin(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    let mut config = config.clone();
    config.set("enable.idempotence", "false");
    config.create()
}

/// Reads `names`' settings with `admin` within `timeout`: each topic's `min.insync.replicas`
/// and `unclean.leader.election.enable`.
///
/// # Errors
/// The brokers did not answer, or refused to describe a topic.
pub async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<(String, Option<u32>, Option<bool>)>, KafkaError> {
    let specifiers: Vec<ResourceSpecifier<'_>> = names
        .iter()
        .map(|name| ResourceSpecifier::Topic(name))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin.describe_configs(&specifiers, &options).await?;
    let mut described = Vec::new();
    for (name, result) in names.iter().zip(results) {
        let resource = result.map_err(KafkaError::AdminOp)?;
        let value = |key: &str| resource.get(key).and_then(|entry| entry.value.clone());
        described.push((
            name.clone(),
            value("min.insync.replicas").and_then(|value| value.parse().ok()),
            value("unclean.leader.election.enable").and_then(|value| value.parse().ok()),
        ));
    }
    Ok(described)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Requirements = Requirements {
        replication_factor: None,
        min_insync_replicas: None,
        allow_unclean_leader_election: false,
    };

    fn topic(replication_factor: u32, min_insync: u32, unclean: bool) -> Topic {
        Topic {
            name: "t".into(),
            replication_factor,
            min_insync_replicas: Some(min_insync),
            unclean_leader_election: Some(unclean),
        }
    }

    #[test]
    fn a_one_broker_development_cluster_is_durable_enough() {
        assert!(DEFAULTS.shortfalls(1, &topic(1, 1, false)).is_empty());
    }

    #[test]
    fn on_three_brokers_a_topic_needs_three_replicas_and_two_in_sync() {
        assert!(DEFAULTS.shortfalls(3, &topic(3, 2, false)).is_empty());
        assert!(DEFAULTS.shortfalls(5, &topic(3, 2, false)).is_empty());
        let shortfalls = DEFAULTS.shortfalls(3, &topic(1, 1, false));
        assert_eq!(shortfalls.len(), 1, "{shortfalls:?}");
        assert!(shortfalls[0].contains("topic t: replication factor 1, below 3"));
        let shortfalls = DEFAULTS.shortfalls(3, &topic(3, 1, false));
        assert_eq!(
            shortfalls,
            ["topic t: min.insync.replicas 1, below 2 (--min-insync-replicas)"]
        );
        assert_eq!(
            DEFAULTS.shortfalls(2, &topic(2, 1, false)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unclean_leader_election_is_refused_unless_allowed() {
        assert!(DEFAULTS.shortfalls(1, &topic(1, 1, true))[0]
            .contains("unclean.leader.election.enable is true"));
        let allowed = Requirements {
            allow_unclean_leader_election: true,
            ..DEFAULTS
        };
        assert!(allowed.shortfalls(1, &topic(1, 1, true)).is_empty());
    }

    #[test]
    fn the_flags_replace_the_defaults() {
        let strict = Requirements {
            replication_factor: Some(2),
            min_insync_replicas: Some(2),
            allow_unclean_leader_election: false,
        };
        assert_eq!(strict.shortfalls(1, &topic(1, 1, false)).len(), 2);
    }
}
