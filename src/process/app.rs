//! The assembled service: [`App::build`] turns a [`Config`] into live objects (validated
//! settings, the producer, checked topics, metrics, bound listeners); [`App::run`] serves until
//! `shutdown` resolves, then drains within the grace period. [`check`] runs the same
//! preparation without contacting a broker, for `bp-relay check-config`.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hyper::service::service_fn;
use prometheus::Registry;
use rdkafka::error::KafkaError;
use tokio::{
    net::{TcpListener, TcpSocket},
    task::JoinSet,
    time::Instant,
};
use tracing::{error, info, warn};

use crate::{
    config::{Config, ConfigError},
    health::Health,
    ingress::http::Ingress,
    ingress::metrics::Metrics,
    ingress::publish::Publish,
    ingress::replay::RedisGuard,
    ingress::server::{self, Limits},
    ingress::signature::RouteVerifiers,
    kafka::{self, ClientMetrics, EmbeddedKafka, ProducerGaveUp, Publisher, TopicCheckError},
    process::admin::Admin,
    process::parts::Parts,
    process::rotation,
};

/// Stands in for the embedded cluster's address, known only once it runs, in `check`.
const EMBEDDED_PLACEHOLDER: &str = "127.0.0.1:9092";

/// How long the admin listener's last scrapes may take once the ingress has drained.
const ADMIN_DRAIN: Duration = Duration::from_secs(1);

/// Why the app could not start. Each maps to a distinct exit code (sysexits.h).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration value is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka refused the client configuration.
    #[error("Kafka client configuration refused: {}", describe_refusal(.0))]
    KafkaConfig(#[source] KafkaError),
    /// The embedded mock cluster did not start.
    #[error("cannot start the embedded Kafka: {0}")]
    Embedded(#[source] KafkaError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Metric registration failed (a programming error).
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl BuildError {
    /// The process exit code: 64 configuration, 71 OS, 70 internal. (Kafka is not contacted
    /// before the app runs: see [`RunError`] for 69.)
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::KafkaConfig(_) => 64,
            Self::Bind { .. } => 71,
            Self::Embedded(_) | Self::Metrics(_) => 70,
        }
    }
}

/// Everything [`App::build`] checks before it contacts Kafka: the rules of the configuration,
/// readable secrets, and librdkafka's acceptance of the client configuration (properties, TLS
/// files). For `bp-relay check-config`.
///
/// # Errors
/// See [`BuildError`]; only its configuration variants occur.
pub fn check(config: &Config) -> Result<(), BuildError> {
    config.validate()?;
    let brokers = config
        .kafka
        .kafka_brokers
        .as_deref()
        .unwrap_or(EMBEDDED_PLACEHOLDER);
    // Creating the producer is where librdkafka validates; it is dropped before it sends
    // anything that matters.
    Prepared::kafka(config, brokers)?;
    Ok(())
}

/// What the relay is made of before it listens.
struct Prepared<P> {
    registry: Registry,
    health: Arc<Health>,
    metrics: Metrics,
    parts: Parts<P>,
}

impl Prepared<Publisher> {
    /// The parts of a relay publishing to Kafka at `brokers`.
    fn kafka(config: &Config, brokers: &str) -> Result<Self, BuildError> {
        let registry = Registry::new();
        let health = health(config);
        let client_config = kafka::client_config(
            &config.kafka,
            brokers,
            config.listeners.max_body.as_u64(),
            config.message_timeout(),
        )?;
        let publisher = Publisher::build(
            &client_config,
            ClientMetrics::register(&registry)?,
            health.clone(),
        )
        .map_err(BuildError::KafkaConfig)?;
        Self::with(config, registry, health, publisher)
    }
}

impl<P: Publish> Prepared<P> {
    fn with(
        config: &Config,
        registry: Registry,
        health: Arc<Health>,
        publisher: P,
    ) -> Result<Self, BuildError> {
        let metrics = Metrics::register(&registry)?;
        let parts = Parts::build(config, publisher, metrics.clone(), health.clone())?;
        Ok(Self {
            registry,
            health,
            metrics,
            parts,
        })
    }
}

fn health(config: &Config) -> Arc<Health> {
    Arc::new(Health::new(
        config.lifecycle.broker_down_grace,
        config.lifecycle.queue_high_water,
    ))
}

/// The relay, built and bound, not yet serving.
pub struct App<P = Publisher> {
    ingress_listener: TcpListener,
    admin_listener: TcpListener,
    ingress: Arc<Ingress<P>>,
    admin: Arc<Admin>,
    health: Arc<Health>,
    metrics: Metrics,
    ingress_limits: Limits,
    admin_limits: Limits,
    shutdown_grace: Duration,
    // Every task that runs as long as the app (probes, the producer's supervisor, startup and
    // the durability watch, secrets rotation): aborted when the set is dropped. Each ends with
    // why the app must stop, if it must.
    tasks: JoinSet<Option<RunError>>,
    // Dropped with the app, after the producer has flushed.
    _embedded: Option<EmbeddedKafka>,
}

impl App<Publisher> {
    /// Builds the relay for `config`. Everything that can be wrong with the configuration or
    /// the topics fails here, before a port is bound.
    ///
    /// # Errors
    /// See [`BuildError`].
    pub async fn build(config: &Config) -> Result<App, BuildError> {
        config.validate()?;
        let embedded = start_embedded(config)?;
        let brokers = embedded
            .as_ref()
            .map(EmbeddedKafka::bootstrap_servers)
            .or_else(|| config.kafka.kafka_brokers.clone())
            .ok_or_else(|| {
                ConfigError::new("--kafka-brokers is required, or --embedded-kafka for a demo")
            })?;
        let prepared = Prepared::kafka(config, &brokers)?;
        // Listeners first: /healthz answers and deliveries get 503 `starting` while Kafka or the
        // topics are not there yet, instead of a crash loop.
        prepared.health.startup_checking();
        let publisher = prepared.parts.ingress.publisher().clone();
        // Aborted on drop, also if binding a listener fails below.
        let mut tasks = JoinSet::new();
        let probe = publisher
            .clone()
            .probe_brokers(config.topics.topic.clone(), prepared.health.clone());
        tasks.spawn(async move {
            probe.await;
            None
        });
        let supervisor = publisher.clone().supervise();
        tasks.spawn(async move { Some(RunError::ProducerGaveUp(supervisor.await)) });
        let topics = config.topics.names().map(str::to_owned).to_vec();
        // The embedded mock cluster is not durable by design: nothing to check there.
        let durability = embedded
            .is_none()
            .then_some(kafka::durability::Requirements {
                replication_factor: config.lifecycle.min_replication_factor,
                min_insync_replicas: config.lifecycle.min_insync_replicas,
                allow_unclean_leader_election: config.lifecycle.allow_unclean_leader_election,
            });
        let startup = confirm_topics(
            publisher,
            topics,
            config.lifecycle.startup_timeout,
            prepared.health.clone(),
            durability,
        );
        tasks.spawn(async move { startup.await.err().map(RunError::Startup) });
        Self::bind(config, prepared, embedded, tasks).await
    }
}

/// Waits for the topics, then lets deliveries in, then watches their durability (if there are
/// `durability` requirements) for as long as the app runs; fails when `--startup-timeout` runs
/// out.
async fn confirm_topics(
    publisher: Publisher,
    topics: Vec<String>,
    timeout: Option<Duration>,
    health: Arc<Health>,
    durability: Option<kafka::durability::Requirements>,
) -> Result<(), TopicCheckError> {
    publisher.await_topics(&topics, timeout, &health).await?;
    // Lets deliveries in.
    health.startup_done();
    info!(?topics, "Kafka topics found; accepting deliveries.");
    if let Some(requirements) = durability {
        publisher
            .watch_durability(topics, requirements, health)
            .await;
    }
    Ok(())
}

impl<P: Publish> App<P> {
    /// Reloads the signing secrets files while running, when there is one (either route's).
    fn watch_signing_secrets(&mut self, config: &Config, verifiers: Option<RouteVerifiers>) {
        let lists = config.authentication.secret_lists();
        if let (Some(verifiers), true) = (verifiers, lists.has_file()) {
            let task = rotation::watch(
                verifiers,
                lists,
                config.authentication.signing_secrets_grace,
                self.metrics.clone(),
            );
            self.tasks.spawn(async move {
                task.await;
                None
            });
        }
    }

    /// Probes a shared replay store for readiness; until its first answer the relay is not ready.
    fn probe_replay_store(&mut self, store: Option<Arc<RedisGuard>>) {
        if let Some(store) = store {
            self.health
                .set_replay_store(Some("not probed yet".to_owned()));
            let probe = store.probe(self.health.clone());
            self.tasks.spawn(async move {
                probe.await;
                None
            });
        }
    }
}

impl<P: Publish> App<P> {
    /// Builds the relay with another publisher than Kafka: the same ingress, listeners and
    /// metrics, for measuring the HTTP side alone. Readiness never sees a broker.
    ///
    /// # Errors
    /// See [`BuildError`].
    pub async fn build_with(config: &Config, publisher: P) -> Result<Self, BuildError> {
        config.validate()?;
        let prepared = Prepared::with(config, Registry::new(), health(config), publisher)?;
        Self::bind(config, prepared, None, JoinSet::new()).await
    }

    async fn bind(
        config: &Config,
        prepared: Prepared<P>,
        embedded: Option<EmbeddedKafka>,
        tasks: JoinSet<Option<RunError>>,
    ) -> Result<Self, BuildError> {
        let Prepared {
            registry,
            health,
            metrics,
            parts:
                Parts {
                    ingress,
                    verifiers,
                    store,
                },
        } = prepared;
        refuse_an_unsupported_store(store.as_deref()).await?;
        let mut app = App {
            ingress_listener: bind(config.listeners.listen).await?,
            admin_listener: bind(config.listeners.admin_listen).await?,
            ingress: Arc::new(ingress),
            admin: Arc::new(Admin::new(registry, health.clone(), metrics.clone())),
            health,
            metrics,
            ingress_limits: Limits::webhook(&config.listeners),
            admin_limits: Limits::admin(&config.listeners),
            shutdown_grace: config.lifecycle.shutdown_grace,
            tasks,
            _embedded: embedded,
        };
        app.probe_replay_store(store);
        app.watch_signing_secrets(config, verifiers);
        Ok(app)
    }

    /// The bound webhook address (useful with port 0).
    pub fn ingress_addr(&self) -> SocketAddr {
        local_addr(&self.ingress_listener)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        local_addr(&self.admin_listener)
    }

    /// The publisher, for tests that inject faults into it.
    #[cfg(any(test, feature = "kafka-tests"))]
    pub fn publisher(&self) -> &P {
        self.ingress.publisher()
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails, the listener closes,
    /// in-flight requests finish and the producer flushes, all within `--shutdown-grace`.
    ///
    /// # Errors
    /// The producer kept failing fatally, or `--startup-timeout` ran out: the relay drained as
    /// on `shutdown`, and the process should exit non-zero so that it is restarted.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = self.admin.clone();
        let admin_service = service_fn(move |request| {
            let response = admin.handle(&request);
            async move { Ok::<_, Infallible>(response) }
        });
        let admin_limits = self.admin_limits;
        let admin_task = tokio::spawn(async move {
            let connections = server::serve(
                self.admin_listener,
                admin_service,
                admin_limits,
                None,
                async {
                    let _ = admin_stopped.await;
                },
            )
            .await;
            let _ = tokio::time::timeout(ADMIN_DRAIN, connections.shutdown()).await;
        });

        let ingress = self.ingress.clone();
        let service = service_fn(move |request| {
            let ingress = ingress.clone();
            async move { Ok::<_, Infallible>(ingress.handle(request).await) }
        });
        info!(address = %local_addr(&self.ingress_listener), "Accepting webhooks.");
        let health = self.health.clone();
        let mut tasks = std::mem::take(&mut self.tasks);
        let (gave_up_tx, gave_up) = tokio::sync::oneshot::channel();
        let connections = server::serve(
            self.ingress_listener,
            service,
            self.ingress_limits,
            Some(self.metrics.clone()),
            async move {
                let failure = tokio::select! {
                    () = shutdown => None,
                    error = why_stopped(&mut tasks) => Some(error),
                };
                // The probes, the supervisor and the watches end with serving.
                drop(tasks);
                if let Some(error) = failure {
                    error!(%error, "Shutting down so that the process is restarted.");
                    let _ = gave_up_tx.send(error);
                }
                // Before the listener closes: the load balancer stops sending here first.
                health.start_draining();
            },
        )
        .await;

        let deadline = Instant::now() + self.shutdown_grace;
        info!(grace = %humantime::format_duration(self.shutdown_grace), "Draining: no new connections; finishing in-flight requests.");
        if tokio::time::timeout_at(deadline, connections.shutdown())
            .await
            .is_err()
        {
            warn!("In-flight requests were still running when the grace period ended.");
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if self.ingress.publisher().flush(remaining).await {
            info!("Producer flushed; shutdown complete.");
        } else {
            warn!("Producer flush did not finish in the grace period; records still queued may be lost.");
        }
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        gave_up.await.map_or(Ok(()), Err)
    }
}

/// Why a running relay stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The producer kept failing fatally.
    #[error(transparent)]
    ProducerGaveUp(#[from] ProducerGaveUp),
    /// `--startup-timeout` ran out before the brokers and topics were confirmed.
    #[error(transparent)]
    Startup(#[from] TopicCheckError),
    /// A background task (a probe, the supervisor, startup, rotation) panicked: a bug.
    #[error("a background task failed: {0}")]
    Panicked(String),
}

impl RunError {
    /// The process exit code (sysexits.h): 69, Kafka unavailable, when Kafka is why; 70,
    /// internal, for a panic.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ProducerGaveUp(_) | Self::Startup(_) => 69,
            Self::Panicked(_) => 70,
        }
    }
}

/// How long startup asks a shared replay store what it is; one that does not answer by then
/// is probed for readiness as the relay runs.
const STORE_INSPECTION: Duration = Duration::from_secs(2);

/// Refuses to start on a shared replay store that answers as a Redis Cluster or a Redis older
/// than 7.0: neither can serve as the guard, and no retry changes that.
async fn refuse_an_unsupported_store(store: Option<&RedisGuard>) -> Result<(), BuildError> {
    if let Some(store) = store {
        if let Some(reason) = store.unsupported(STORE_INSPECTION).await {
            return Err(ConfigError::new(format!("--replay-store: {reason}")).into());
        }
    }
    Ok(())
}

/// Resolves with the first reason a background task gives for stopping the app: the producer's
/// supervisor gave up, `--startup-timeout` ran out, or a task panicked (a bug: the process
/// should be restarted). Never while they run as they should.
async fn why_stopped(tasks: &mut JoinSet<Option<RunError>>) -> RunError {
    loop {
        match tasks.join_next().await {
            Some(Ok(Some(error))) => return error,
            // Done with nothing to report (startup confirmed the topics and has no
            // durability to watch).
            Some(Ok(None)) => {}
            Some(Err(error)) => {
                let task = error.to_string();
                return RunError::Panicked(task);
            }
            None => std::future::pending().await,
        }
    }
}

/// librdkafka's reason for refusing a property, naming the property once and its value only
/// when librdkafka did not (values may be credentials, which it never echoes).
fn describe_refusal(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, _) if description.contains(key.as_str()) => {
            description.clone()
        }
        KafkaError::ClientConfig(_, description, key, _) => format!("{key}: {description}"),
        KafkaError::ClientCreation(description) => description.clone(),
        other => other.to_string(),
    }
}

fn start_embedded(config: &Config) -> Result<Option<EmbeddedKafka>, BuildError> {
    if !config.kafka.embedded_kafka {
        return Ok(None);
    }
    let topics = config.topics.names();
    let embedded = EmbeddedKafka::start(&topics).map_err(BuildError::Embedded)?;
    let brokers = embedded.bootstrap_servers();
    warn!(bootstrap = %brokers, ?topics, "Embedded Kafka (in-memory mock cluster) started: for demos only, nothing is durable. Read records with: kcat -C -b {brokers} -t {} -J -e", topics[0]);
    Ok(Some(embedded))
}

/// Connections the kernel completes and queues for the relay to accept (capped by the kernel's
/// `net.core.somaxconn`). Above tokio's 1024, so that a burst, or the connections waiting while
/// the webhook listener is at `--max-connections`, queue instead of having their handshakes
/// dropped and retried seconds later.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr`; the IPv6 wildcard `[::]` falls back to `0.0.0.0` on a host without IPv6 (it
/// is dual stack where IPv6 is on: IPv4 clients arrive as mapped addresses).
async fn bind(addr: SocketAddr) -> Result<TcpListener, BuildError> {
    match listen(addr) {
        Err(error) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && ipv6_is_off(&error) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            info!(%addr, fallback = %v4, "IPv6 is off on this host; listening on IPv4 only.");
            listen(v4).map_err(|source| BuildError::Bind { addr: v4, source })
        }
        result => result.map_err(|source| BuildError::Bind { addr, source }),
    }
}

/// A listener on `addr` with the relay's backlog.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's TcpListener::bind: a restarted relay can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Whether a bind failed because the host has no IPv6 (disabled in the kernel, or no address).
fn ipv6_is_off(error: &io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    error.kind() == io::ErrorKind::AddrNotAvailable || error.raw_os_error() == Some(EAFNOSUPPORT)
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    // A bound listener always has an address; the fallback only keeps this total.
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn check_args(extra: &[&str]) -> Result<(), BuildError> {
        let args = [
            "bp-relay",
            "--kafka-brokers",
            "127.0.0.1:9092",
            "--signing-secrets",
            "s",
        ]
        .iter()
        .chain(extra);
        check(&Config::try_parse_from(args).unwrap())
    }

    /// Compiles only while the relay can run on any runtime thread (`tokio::spawn`).
    #[allow(dead_code)]
    fn run_is_send(app: App, shutdown: std::future::Ready<()>) {
        fn spawnable<T: Send + 'static>(_: T) {}
        spawnable(app.run(shutdown));
    }

    /// On the real broker (feature `kafka-tests`); the fatal errors are injected.
    #[cfg(feature = "kafka-tests")]
    #[tokio::test(flavor = "multi_thread")]
    async fn a_producer_that_keeps_failing_fatally_ends_the_run_with_an_error() {
        use crate::kafka::test_broker;
        let bootstrap = test_broker::bootstrap();
        let processes = test_broker::fresh_topic("app-bp").await;
        let actions = test_broker::fresh_topic("app-actions").await;
        let dead_letter = test_broker::fresh_topic("app-dlq").await;
        let args = [
            "bp-relay",
            "--kafka-brokers",
            &bootstrap,
            "--topic",
            &processes,
            "--actions-topic",
            &actions,
            "--dead-letter-topic",
            &dead_letter,
            "--signing-secrets",
            "s",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        let app = App::build(&Config::try_parse_from(args).unwrap())
            .await
            .unwrap();
        let publisher = app.publisher().clone();
        let run = tokio::spawn(app.run(std::future::pending()));
        // Each injection fails the producer in service (a no-op on one already failed).
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            while !run.is_finished() {
                publisher.inject_fatal_error();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "the relay stopped itself within 30 s");
        assert!(
            run.await.unwrap().is_err(),
            "and says why, for a non-zero exit"
        );
    }

    #[tokio::test]
    async fn the_wildcard_listener_takes_ipv4_clients_too() {
        let listener = bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
            .await
            .unwrap();
        let port = local_addr(&listener).port();
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("an IPv4 client reaches [::] (dual stack) or its IPv4 fallback");
    }

    #[test]
    fn check_validates_the_rules_itself_and_names_a_refused_property_once() {
        let error = check_args(&["--ack-timeout", "5s"]).unwrap_err();
        assert_eq!(error.exit_code(), 64);
        let error = check_args(&["--kafka-option", "foo=bar"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Kafka client configuration refused: No such configuration property: "foo""#
        );
        assert_eq!(error.exit_code(), 64);
        assert!(
            check_args(&["--embedded-kafka"]).is_err(),
            "brokers and the embedded cluster exclude each other"
        );
        check_args(&[]).unwrap();
        let error = check_args(&["--actions-signing-secrets", "s"]).unwrap_err();
        assert!(
            error.to_string().starts_with("a secret is in both"),
            "{error}"
        );
        assert_eq!(error.exit_code(), 64, "the same secret on both routes");
        check_args(&["--actions-signing-secrets", "t"]).unwrap();
    }
}
