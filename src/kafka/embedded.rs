//! The embedded quick start: librdkafka's in-process mock cluster, so `bp-relay
//! --embedded-kafka` runs on a machine without Kafka. It keeps records in memory only.
//!
//! The mock cluster is not `Send`, so it lives on a thread of its own, which keeps it until
//! [`EmbeddedKafka`] is dropped: the app that owns it can then run on any runtime thread.

use std::{
    sync::mpsc,
    thread::{self, JoinHandle},
};

use rdkafka::{error::KafkaError, mocking::MockCluster, producer::DefaultProducerContext};

/// A one-broker mock cluster with the relay's topics. Dropping it stops the cluster.
pub struct EmbeddedKafka {
    bootstrap_servers: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Partitions of each embedded topic.
const PARTITIONS: i32 = 3;

impl EmbeddedKafka {
    /// Starts the mock cluster and creates `topics` on it.
    ///
    /// # Errors
    /// librdkafka could not start the cluster or create a topic.
    pub fn start(topics: &[&str]) -> Result<EmbeddedKafka, KafkaError> {
        let topics: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        let (started, bootstrap) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("embedded-kafka".to_owned())
            .spawn(move || {
                let cluster = match create(&topics) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(cluster.bootstrap_servers()));
                // Until the owner is dropped (the sender goes away with it).
                let _ = stopped.recv();
                drop(cluster);
            })
            .map_err(|_| KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail))?;
        let bootstrap_servers = bootstrap.recv().unwrap_or(Err(KafkaError::MockCluster(
            rdkafka::types::RDKafkaErrorCode::Fail,
        )))?;
        Ok(EmbeddedKafka {
            bootstrap_servers,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bootstrap address clients (kcat, the relay) connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn create(topics: &[String]) -> Result<MockCluster<'static, DefaultProducerContext>, KafkaError> {
    let cluster = MockCluster::new(1)?;
    for topic in topics {
        cluster.create_topic(topic, PARTITIONS, 1)?;
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_cluster_can_move_between_threads_and_stops_when_dropped() {
        fn assert_send<T: Send>(_: &T) {}
        let embedded = EmbeddedKafka::start(&["a", "b"]).unwrap();
        assert_send(&embedded);
        assert!(embedded.bootstrap_servers().contains(':'));
        thread::spawn(move || drop(embedded)).join().unwrap();
    }
}
