//! The assembled service: [`App::build`] turns a validated [`Config`] into live objects (the
//! producer, checked topics, metrics, bound listeners); [`App::run`] serves until `shutdown`
//! resolves, then drains within the grace period.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use prometheus::Registry;
use rdkafka::error::KafkaError;
use tokio::{net::TcpListener, sync::Semaphore, time::Instant};
use tracing::{debug, info, warn};

use crate::{
    admin::Admin,
    config::{Config, ConfigError},
    health::Health,
    http::{Authentication, Ingress, Topics},
    kafka::{self, Publisher, TopicCheckError},
    metrics::Metrics,
    replay::ReplayGuard,
    signature::Verifier,
    webhook::Rules,
};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the app could not start. Each maps to a distinct exit code (sysexits.h).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration value is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka refused the client configuration.
    #[error("Kafka client configuration refused: {0}")]
    KafkaConfig(#[source] KafkaError),
    /// Kafka unreachable or topics missing.
    #[error(transparent)]
    Topics(#[from] TopicCheckError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Metric registration failed (a programming error).
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl BuildError {
    /// The process exit code: 64 configuration, 69 Kafka unavailable, 71 OS, 70 internal.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::KafkaConfig(_) => 64,
            Self::Topics(_) => 69,
            Self::Bind { .. } => 71,
            Self::Metrics(_) => 70,
        }
    }
}

/// Everything [`App::build`] checks before it contacts Kafka: secrets are readable and
/// librdkafka accepts the client configuration. For `bp-relay check-config`.
///
/// # Errors
/// See [`BuildError`]; only its configuration variants occur.
pub fn check(config: &Config, brokers: &str) -> Result<(), BuildError> {
    authentication(config)?;
    let client_config = kafka::client_config(config, brokers)?;
    let metrics = Metrics::register(&Registry::new())?;
    let health = Arc::new(Health::new(config.broker_down_grace, config.queue_high_water));
    // Creating the producer is where librdkafka validates properties and TLS files; it is
    // dropped before it sends anything that matters.
    Publisher::build(&client_config, kafka::Context::new(metrics, health)).map_err(BuildError::KafkaConfig)?;
    Ok(())
}

/// The relay, built and bound, not yet serving.
pub struct App {
    ingress_listener: TcpListener,
    admin_listener: TcpListener,
    ingress: Arc<Ingress>,
    admin: Arc<Admin>,
    health: Arc<Health>,
    publisher: Publisher,
    shutdown_grace: Duration,
}

impl App {
    /// Builds the relay for `config`, publishing to `brokers`. Everything that can be wrong
    /// with the configuration or the topics fails here, before a port is bound.
    ///
    /// # Errors
    /// See [`BuildError`].
    pub async fn build(config: &Config, brokers: &str) -> Result<App, BuildError> {
        let authentication = authentication(config)?;
        let registry = Registry::new();
        let metrics = Metrics::register(&registry)?;
        let health = Arc::new(Health::new(config.broker_down_grace, config.queue_high_water));
        let client_config = kafka::client_config(config, brokers)?;
        let context = kafka::Context::new(metrics.clone(), health.clone());
        let publisher = Publisher::build(&client_config, context).map_err(BuildError::KafkaConfig)?;
        let topics = Topics {
            processes: config.topic.clone(),
            actions: config.actions_topic.clone(),
            dead_letter: config.dead_letter_topic.clone(),
        };
        let wanted = [topics.processes.clone(), topics.actions.clone(), topics.dead_letter.clone()];
        publisher.check_topics(&wanted, config.startup_timeout).await?;
        health.broker_seen_up(std::time::Instant::now());
        info!(brokers, topics = ?wanted, "Kafka topics found.");

        let ingress_listener = bind(config.listen).await?;
        let admin_listener = bind(config.admin_listen).await?;
        let ingress = Arc::new(Ingress {
            authentication,
            rules: rules(config),
            topics,
            source: config.ce_source.clone(),
            publisher: publisher.clone(),
            metrics: metrics.clone(),
            max_body: config.max_body.as_u64(),
            ack_timeout: config.ack_timeout,
            inflight: Semaphore::new(config.max_inflight),
        });
        let admin = Arc::new(Admin { registry, health: health.clone(), metrics });
        Ok(App {
            ingress_listener,
            admin_listener,
            ingress,
            admin,
            health,
            publisher,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The bound webhook address (useful with port 0).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_listener.local_addr().unwrap_or_else(|_| unreachable_addr())
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener.local_addr().unwrap_or_else(|_| unreachable_addr())
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails, the listener closes,
    /// in-flight requests finish and the producer flushes, all within `--shutdown-grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let App { ingress_listener, admin_listener, ingress, admin, health, publisher, shutdown_grace } = self;
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(serve_admin(admin_listener, admin, admin_stopped));
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        info!(address = %ingress_listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "Accepting webhooks.");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = ingress_listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let ingress = ingress.clone();
                        let service = service_fn(move |request| ingress.clone().handle(request));
                        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                debug!(%error, "Connection ended with an error.");
                            }
                        });
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(error) => {
                        warn!(%error, "Accepting a connection failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        let drain = Drain { health, publisher, grace: shutdown_grace };
        drain.run(graceful, ingress_listener).await;
        let _ = admin_stop.send(());
        let _ = admin_task.await;
    }

}

/// The ordered, bounded shutdown: readiness fails, the listener closes, in-flight requests
/// finish, the producer flushes, all before `grace` has passed.
struct Drain {
    health: Arc<Health>,
    publisher: Publisher,
    grace: Duration,
}

impl Drain {
    async fn run(self, graceful: GracefulShutdown, listener: TcpListener) {
        let deadline = Instant::now() + self.grace;
        self.health.start_draining();
        drop(listener);
        info!(grace = %humantime::format_duration(self.grace), "Draining: no new connections; finishing in-flight requests.");
        if tokio::time::timeout_at(deadline, graceful.shutdown()).await.is_err() {
            warn!("In-flight requests were still running when the grace period ended.");
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self.publisher.flush(remaining).await {
            Ok(()) => info!("Producer flushed; shutdown complete."),
            Err(error) => warn!(%error, queued = self.publisher.queue_len(), "Producer flush did not finish in the grace period."),
        }
    }
}

fn authentication(config: &Config) -> Result<Authentication, ConfigError> {
    if config.insecure_skip_signature {
        warn!("SIGNATURE VERIFICATION IS OFF (--insecure-skip-signature): anyone who can reach this port can write to Kafka. Never run like this in production.");
        return Ok(Authentication::Skipped);
    }
    let secrets = config.signing_secrets()?;
    Ok(Authentication::Signed {
        verifier: Verifier::new(&secrets, config.signature_tolerance),
        replay: ReplayGuard::new(config.signature_tolerance, config.replay_capacity),
    })
}

fn rules(config: &Config) -> Rules {
    Rules {
        process_key: config.key_pointer.clone(),
        action_key: config.actions_key_pointer.clone(),
        version: config.version_pointer.clone(),
        process_required: config.required_fields.clone(),
        action_required: config.actions_required_fields.clone(),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr).await.map_err(|source| BuildError::Bind { addr, source })
}

fn unreachable_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

async fn serve_admin(listener: TcpListener, admin: Arc<Admin>, stop: tokio::sync::oneshot::Receiver<()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let admin = admin.clone();
                let service = service_fn(move |request| admin.clone().handle(request));
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                tokio::spawn(connection);
            }
            _ = &mut stop => return,
        }
    }
}
