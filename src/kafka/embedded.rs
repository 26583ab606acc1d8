//! The embedded quick start: librdkafka's in-process mock cluster, so `bp-relay
//! --embedded-kafka` runs on a machine without Kafka. It keeps records in memory only.

use rdkafka::{error::KafkaError, mocking::MockCluster, producer::DefaultProducerContext};

/// A one-broker mock cluster with the relay's topics. Dropping it stops the cluster.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

/// Partitions of each embedded topic.
const PARTITIONS: i32 = 3;

impl EmbeddedKafka {
    /// Starts the mock cluster and creates `topics` on it.
    ///
    /// # Errors
    /// librdkafka could not start the cluster or create a topic.
    pub fn start(topics: &[&str]) -> Result<EmbeddedKafka, KafkaError> {
        let cluster = MockCluster::new(1)?;
        for topic in topics {
            cluster.create_topic(topic, PARTITIONS, 1)?;
        }
        Ok(EmbeddedKafka { cluster })
    }

    /// The bootstrap address clients (kcat, the relay) connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
