//! Everything that talks to Kafka: the [`Publisher`] over librdkafka's producer, the
//! classification of its errors, the client settings, statistics, the replacement of a producer
//! that failed fatally, and the embedded mock cluster.
//! It reports into its own [`ClientMetrics`] and the shared readiness state, never upward.
//!
//! Nothing here waits without a bound: enqueueing never blocks (a full queue is an immediate
//! [`FailureReason::QueueFull`]), and the delivery report is awaited until a deadline only.

mod context;
pub mod durability;
mod embedded;
mod generation;
mod settings;
pub mod statistics;
mod supervisor;
#[cfg(all(test, feature = "kafka-tests"))]
pub(crate) mod test_broker;
mod wakeup;

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use arc_swap::ArcSwap;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, Producer},
    ClientConfig,
};
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};
use tracing::{info, warn};

pub use context::{ClientMetrics, Context};
pub use embedded::EmbeddedKafka;
pub use settings::client_config;
pub use supervisor::ProducerGaveUp;

use generation::Generation;

use crate::{
    health::Health,
    ingress::publish::{Delivered, FailureReason, Fate, Publish, PublishError, Unacknowledged},
    ingress::record::{self, Record},
};

/// How often startup asks again for topics that are not there yet: soon at first (they may be
/// created together with the relay), then every few seconds.
const TOPIC_RECHECK_INTERVAL: Duration = Duration::from_millis(250);
const TOPIC_RECHECK_MAX_INTERVAL: Duration = Duration::from_secs(4);

/// How often a running relay asks a broker for metadata, and how long it waits for the answer:
/// with the default `--broker-down-grace` of 3 s, a broker that stops answering makes the relay
/// unready within about 6 s, and ready again within about 1 s of answering.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the topics' durability is read from the brokers.
const DURABILITY_INTERVAL: Duration = Duration::from_secs(30);

/// Classifies a librdkafka error.
pub fn classify(error: &KafkaError) -> FailureReason {
    use RDKafkaErrorCode as Code;
    let Some(code) = error.rdkafka_error_code() else {
        return FailureReason::Other;
    };
    match code {
        Code::QueueFull => FailureReason::QueueFull,
        Code::MessageTimedOut | Code::RequestTimedOut | Code::OperationTimedOut => FailureReason::Timeout,
        Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge => {
            FailureReason::MessageTooLarge
        }
        Code::UnknownTopic | Code::UnknownTopicOrPartition | Code::UnknownPartition | Code::InvalidTopic => {
            FailureReason::UnknownTopic
        }
        Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::SaslAuthenticationFailed
        | Code::Authentication
        | Code::TransactionalIdAuthorizationFailed => FailureReason::Authorization,
        Code::AllBrokersDown
        | Code::BrokerTransportFailure
        | Code::Resolve
        | Code::SSL
        | Code::NetworkException
        | Code::LeaderNotAvailable
        | Code::NotLeaderForPartition
        | Code::BrokerNotAvailable
        | Code::NotEnoughReplicas
        | Code::NotEnoughReplicasAfterAppend
        | Code::KafkaStorageError
        | Code::PurgeQueue
        | Code::PurgeInflight
        // The producer failed fatally; the supervisor is replacing it.
        | Code::Fatal
        // The idempotent producer's fatal errors, as a delivery report may carry them: the
        // supervisor replaces the producer, a retry goes to the new one.
        | Code::OutOfOrderSequenceNumber
        | Code::UnknownProducerId
        | Code::InvalidProducerEpoch
        | Code::GaplessGuarantee
        | Code::ProducerFenced => FailureReason::Transport,
        _ => FailureReason::Other,
    }
}

/// A record's fate from its delivery report, once the request was answered.
fn fate<Canceled>(report: Result<context::Report, Canceled>) -> Fate {
    match report {
        Ok(Ok(delivered)) => Fate::Landed(delivered),
        // librdkafka gave up on it, possibly while a produce request carrying it was in
        // flight: the broker may have stored it.
        Ok(Err(error)) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) => {
            Fate::TimedOut
        }
        Ok(Err(_)) => Fate::Failed,
        // The producer was dropped with the record (replaced after a fatal error): unknown.
        Err(_canceled) => Fate::TimedOut,
    }
}

/// Why a record was not acknowledged in time: a slow broker while one is up, else no broker.
fn timed_out(generation: &Generation) -> FailureReason {
    if generation.any_broker_up.load(Ordering::Relaxed) {
        FailureReason::Timeout
    } else {
        FailureReason::Transport
    }
}

/// Why startup could not confirm the topics.
#[derive(Debug, thiserror::Error)]
pub enum TopicCheckError {
    /// Metadata could not be fetched in time.
    #[error("cannot reach Kafka at {brokers} to check topics within {timeout}: {source}{}", last_error.as_ref().map(|error| format!(" (last client error: {error})")).unwrap_or_default())]
    Unreachable {
        brokers: String,
        timeout: humantime::FormattedDuration,
        #[source]
        source: KafkaError,
        /// What librdkafka last reported (a refused password, a TLS failure, a name that does
        /// not resolve): the reason behind "unreachable".
        last_error: Option<String>,
    },
    /// Topics the relay writes to are absent (or invisible to its credentials).
    #[error("Kafka topics missing at {brokers}: {} (create them, or grant the relay Describe/Write on them)", missing.join(", "))]
    Missing {
        brokers: String,
        missing: Vec<String>,
    },
}

/// Publishes records and reports where they landed, once the broker acknowledged them.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

/// What every clone of a [`Publisher`] and its supervisor share.
struct Shared {
    // The producer in service; replaced when it fails fatally.
    current: ArcSwap<Generation>,
    config: ClientConfig,
    brokers: String,
    metrics: ClientMetrics,
    health: Arc<Health>,
    error_signal: Arc<Notify>,
}

impl Publisher {
    /// Creates the producer (it connects lazily), reporting into `metrics` and `health`.
    ///
    /// # Errors
    /// librdkafka refused the configuration (an invalid pass-through property, say).
    pub fn build(
        config: &ClientConfig,
        metrics: ClientMetrics,
        health: Arc<Health>,
    ) -> Result<Publisher, KafkaError> {
        let brokers = config
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned();
        let error_signal = Arc::new(Notify::new());
        let first = Generation::build(
            config,
            Context::new(metrics.clone(), health.clone(), error_signal.clone()),
        )?;
        let shared = Shared {
            current: ArcSwap::new(first),
            config: config.clone(),
            brokers,
            metrics,
            health,
            error_signal,
        };
        Ok(Publisher {
            shared: Arc::new(shared),
        })
    }

    /// A producer with the same settings and a context of its own.
    fn build_generation(&self) -> Result<Arc<Generation>, KafkaError> {
        let shared = &self.shared;
        Generation::build(
            &shared.config,
            Context::new(
                shared.metrics.clone(),
                shared.health.clone(),
                shared.error_signal.clone(),
            ),
        )
    }

    /// The producer in service.
    fn producer(&self) -> Arc<Generation> {
        self.shared.current.load_full()
    }

    /// Makes the producer in service fail fatally, as librdkafka would after an unrecoverable
    /// idempotence error: for tests of the recovery.
    #[cfg(any(test, feature = "kafka-tests"))]
    #[allow(unsafe_code)]
    pub fn inject_fatal_error(&self) {
        let generation = self.producer();
        // SAFETY: the pointer is a live client handle (held by `generation` for the whole
        // call), and the reason is a NUL-terminated string librdkafka copies.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                generation.producer.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"injected by a test".as_ptr(),
            );
        }
    }

    /// Sends `record` to `topic` and waits for the acknowledgement until `deadline`.
    ///
    /// # Errors
    /// A full queue at once; the classified delivery error; at the deadline
    /// [`FailureReason::Transport`] when no broker is up, else [`FailureReason::Timeout`],
    /// together with the record's report still to come: it may land after its 503.
    pub async fn publish(
        &self,
        topic: &str,
        record: Record,
        deadline: Instant,
    ) -> Result<Delivered, Unacknowledged> {
        let generation = self.shared.current.load_full();
        if generation.is_fatal() {
            return Err(PublishError::because(FailureReason::Transport).into());
        }
        let (report_to, mut report) = oneshot::channel();
        // librdkafka copies key, value and headers into its queue.
        let mut base_record = BaseRecord::with_opaque_to(topic, Box::new(report_to))
            .payload(&record.value[..])
            .headers(OwnedHeaders::from(&record.headers));
        if let Some(key) = &record.key {
            base_record = base_record.key(key.as_str());
        }
        generation
            .producer
            .send(base_record)
            .map_err(|(error, _)| self.failed(error, &generation))?;
        match tokio::time::timeout_at(deadline, &mut report).await {
            Err(_elapsed) => Err(Unacknowledged {
                error: PublishError::because(timed_out(&generation)),
                // librdkafka reports within `message.timeout.ms` of the send, or drops the
                // sender with the producer: the report is bounded.
                report: Some(Box::pin(async move { fate(report.await) })),
            }),
            Ok(Err(_dropped)) => {
                Err(PublishError::caused_by(FailureReason::Other, KafkaError::Canceled).into())
            }
            Ok(Ok(Err(error))) => Err(self.failed(error, &generation).into()),
            Ok(Ok(Ok(delivered))) => Ok(delivered),
        }
    }

    /// Classifies a produce error. librdkafka's own message timeout counts as our deadline (the
    /// two end together); one saying the producer failed fatally also wakes the supervisor (its
    /// error event may still be on the way).
    fn failed(&self, error: KafkaError, generation: &Generation) -> PublishError {
        let mut reason = classify(&error);
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => self.shared.error_signal.notify_one(),
            Some(RDKafkaErrorCode::MessageTimedOut) => reason = timed_out(generation),
            _ => {}
        }
        PublishError::caused_by(reason, error)
    }

    /// Waits until every topic exists, telling `health` what is missing meanwhile, and gives
    /// up after `timeout` if one is given (topics may be created together with the relay, and
    /// Kafka may come after it: without a timeout this waits as long as it takes).
    ///
    /// # Errors
    /// The time is up: the brokers were unreachable, or topics were still missing.
    pub async fn await_topics(
        &self,
        topics: &[String],
        timeout: Option<Duration>,
        health: &Health,
    ) -> Result<(), TopicCheckError> {
        let started = Instant::now();
        let mut interval = TOPIC_RECHECK_INTERVAL;
        let mut reported = None;
        loop {
            let outcome = self.missing_topics(topics, PROBE_TIMEOUT).await;
            match &outcome {
                Ok(missing) if missing.is_empty() => {
                    // A metadata answer proves a broker connection is up, and answering.
                    health.broker_seen_up(std::time::Instant::now());
                    health.broker_answered();
                    return Ok(());
                }
                Ok(missing) => health.topics_missing(missing.clone()),
                Err(_) => health.startup_checking(),
            }
            let summary = outcome.as_ref().map_err(ToString::to_string).cloned();
            if reported.as_ref() != Some(&summary) {
                match &summary {
                    Ok(missing) => warn!(?missing, "Kafka answers but topics are missing; waiting for them (deliveries get 503 meanwhile)."),
                    Err(error) => warn!(brokers = self.shared.brokers, %error, "Kafka does not answer yet; waiting for it (deliveries get 503 meanwhile)."),
                }
                reported = Some(summary);
            }
            if let Some(timeout) = timeout.filter(|timeout| started.elapsed() >= *timeout) {
                return Err(self.gave_up_on_topics(outcome, timeout));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(TOPIC_RECHECK_MAX_INTERVAL);
        }
    }

    fn gave_up_on_topics(
        &self,
        outcome: Result<Vec<String>, KafkaError>,
        timeout: Duration,
    ) -> TopicCheckError {
        let brokers = self.shared.brokers.clone();
        match outcome {
            Ok(missing) => TopicCheckError::Missing { brokers, missing },
            Err(source) => {
                let last_error = self
                    .shared
                    .current
                    .load()
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|last| last.clone());
                TopicCheckError::Unreachable {
                    brokers,
                    timeout: humantime::format_duration(timeout),
                    source,
                    last_error,
                }
            }
        }
    }

    /// The topics among `wanted` that the brokers do not report as usable (present, without
    /// error, with partitions).
    async fn missing_topics(
        &self,
        wanted: &[String],
        timeout: Duration,
    ) -> Result<Vec<String>, KafkaError> {
        let generation = self.producer();
        let metadata = tokio::task::spawn_blocking(move || {
            generation.producer.client().fetch_metadata(None, timeout)
        })
        .await
        .unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic()))?;
        let usable = |name: &String| {
            metadata.topics().iter().any(|topic| {
                topic.name() == name && topic.error().is_none() && !topic.partitions().is_empty()
            })
        };
        Ok(wanted
            .iter()
            .filter(|name| !usable(name))
            .cloned()
            .collect())
    }

    /// How `topics` fall short of `requirements`, read from the brokers: the replication
    /// factor from the metadata, the rest with `DescribeConfigs`.
    ///
    /// # Errors
    /// The brokers did not answer, or refused to describe the topics.
    pub async fn durability_shortfalls(
        &self,
        admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
        topics: &[String],
        requirements: durability::Requirements,
    ) -> Result<Vec<String>, KafkaError> {
        let generation = self.producer();
        let metadata = tokio::task::spawn_blocking(move || {
            generation
                .producer
                .client()
                .fetch_metadata(None, PROBE_TIMEOUT)
        })
        .await
        .unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic()))?;
        let described = durability::describe(admin, topics, PROBE_TIMEOUT).await?;
        let mut shortfalls = Vec::new();
        for (name, min_insync_replicas, unclean_leader_election) in described {
            let replication_factor = metadata
                .topics()
                .iter()
                .find(|topic| topic.name() == name)
                .and_then(|topic| topic.partitions().iter().map(|p| p.replicas().len()).min());
            let Some(replication_factor) = replication_factor else {
                continue;
            };
            let topic = durability::Topic {
                name,
                replication_factor: u32::try_from(replication_factor).unwrap_or(u32::MAX),
                min_insync_replicas,
                unclean_leader_election,
            };
            shortfalls.extend(requirements.shortfalls(metadata.brokers().len(), &topic));
        }
        Ok(shortfalls)
    }

    /// Reads the topics' durability every [`DURABILITY_INTERVAL`], forever, and tells `health`
    /// how they fall short; an unanswered read changes nothing (the broker probe reports that).
    pub async fn watch_durability(
        self,
        topics: Vec<String>,
        requirements: durability::Requirements,
        health: Arc<Health>,
    ) {
        let admin = match durability::admin(&self.shared.config) {
            Ok(admin) => admin,
            Err(error) => {
                warn!(%error, "Cannot build a Kafka admin client: the topics' durability is not checked.");
                return;
            }
        };
        let mut reported: Option<Result<Vec<String>, String>> = None;
        loop {
            let outcome = self
                .durability_shortfalls(&admin, &topics, requirements)
                .await;
            let summary = outcome.as_ref().map_err(ToString::to_string).cloned();
            if reported.as_ref() != Some(&summary) {
                match &summary {
                    Ok(shortfalls) if shortfalls.is_empty() => {
                        info!(?topics, "The topics are as durable as required.")
                    }
                    Ok(shortfalls) => warn!(
                        ?shortfalls,
                        "Topics are less durable than required: not ready (a 2xx would not mean what acks=all promises)."
                    ),
                    Err(error) => {
                        warn!(%error, "Cannot read the topics' configuration; readiness keeps its last answer.")
                    }
                }
                reported = Some(summary);
            }
            if let Ok(shortfalls) = outcome {
                health.set_not_durable(shortfalls);
            }
            tokio::time::sleep(DURABILITY_INTERVAL).await;
        }
    }

    /// Asks a broker for `topic`'s metadata every [`PROBE_INTERVAL`], forever, and tells
    /// `health` whether one answered within [`PROBE_TIMEOUT`]. A broker can keep its connections open and answer
    /// nothing; only an answered request proves it serves.
    /// An unanswered probe of a client left with no broker at all gives it the bootstrap servers
    /// again ([`Generation::rebootstrap_if_brokerless`]).
    pub async fn probe_brokers(self, topic: String, health: Arc<Health>) {
        loop {
            let generation = self.shared.current.load_full();
            let topic = topic.clone();
            let bootstrap = self.shared.brokers.clone();
            let sent = std::time::Instant::now();
            let (answered, rebootstrapped) = tokio::task::spawn_blocking(move || {
                let answered = generation
                    .producer
                    .client()
                    .fetch_metadata(Some(&topic), PROBE_TIMEOUT)
                    .is_ok();
                (
                    answered,
                    !answered && generation.rebootstrap_if_brokerless(&bootstrap),
                )
            })
            .await
            .unwrap_or((false, false));
            if answered {
                health.broker_answered();
            } else {
                health.broker_unanswered(sent);
            }
            if rebootstrapped {
                warn!(
                    brokers = self.shared.brokers,
                    "The Kafka client had no broker left (a metadata answer listed none while the cluster shut down); it has the bootstrap servers again."
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Waits up to `timeout` for every queued record to be delivered or to fail.
    ///
    /// # Errors
    /// Records were still queued when the time ran out.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let generation = self.producer();
        tokio::task::spawn_blocking(move || generation.producer.flush(timeout))
            .await
            .unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic()))
    }
}

impl Publish for Publisher {
    fn publish(
        &self,
        topic: &str,
        record: Record,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Delivered, Unacknowledged>> + Send {
        Publisher::publish(self, topic, record, deadline)
    }

    async fn flush(&self, timeout: Duration) -> bool {
        Publisher::flush(self, timeout).await.is_ok()
    }
}

/// A record's headers as librdkafka's.
impl From<&record::Headers> for OwnedHeaders {
    fn from(headers: &record::Headers) -> OwnedHeaders {
        let kafka = OwnedHeaders::new_with_capacity(headers.len());
        headers.iter().fold(kafka, |kafka, (key, value)| {
            kafka.insert(Header {
                key,
                value: Some(value),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_separates_back_pressure_from_terminal_errors() {
        let production = |code| KafkaError::MessageProduction(code);
        assert_eq!(
            classify(&production(RDKafkaErrorCode::QueueFull)),
            FailureReason::QueueFull
        );
        assert_eq!(
            classify(&production(RDKafkaErrorCode::MessageTimedOut)),
            FailureReason::Timeout
        );
        assert_eq!(
            classify(&production(RDKafkaErrorCode::MessageSizeTooLarge)),
            FailureReason::MessageTooLarge
        );
        assert_eq!(
            classify(&production(RDKafkaErrorCode::UnknownTopicOrPartition)),
            FailureReason::UnknownTopic
        );
        assert_eq!(
            classify(&production(RDKafkaErrorCode::TopicAuthorizationFailed)),
            FailureReason::Authorization
        );
        assert_eq!(
            classify(&production(RDKafkaErrorCode::AllBrokersDown)),
            FailureReason::Transport
        );
        assert_eq!(
            classify(&production(RDKafkaErrorCode::InvalidRecord)),
            FailureReason::Other
        );
        assert!(FailureReason::QueueFull.is_transient());
        assert!(!FailureReason::UnknownTopic.is_transient());
    }

    #[test]
    fn the_idempotent_producers_fatal_errors_are_503_kafka_unavailable() {
        for code in [
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::GaplessGuarantee,
        ] {
            let reason = classify(&KafkaError::MessageProduction(code));
            assert_eq!(
                (reason.code(), reason.is_transient()),
                ("kafka_unavailable", true),
                "{code:?}"
            );
        }
    }
}
