//! The one place the relay's shared parts are built from a [`Config`]: the authenticator with
//! its replay guard, the redrive memory, the body budget, the ingress over a publisher. The app
//! serves them (and hands the secrets' verifiers to rotation, the shared store to its readiness
//! probe); tests, benches and fuzz targets build the very same parts over an in-memory
//! publisher ([`Parts::over`]).

use std::sync::Arc;

use prometheus::Registry;
use secrecy::ExposeSecret;
use tracing::warn;

use crate::{
    config::{Config, ConfigError},
    health::Health,
    ingress::http::Ingress,
    ingress::metrics::Metrics,
    ingress::publish::Publish,
    ingress::redrive::Redrives,
    ingress::replay::{MemoryGuard, RedisGuard, ReplayGuard},
    ingress::signature::{Authenticator, RouteVerifiers, Window},
};

/// A relay's parts, built once.
pub struct Parts<P> {
    /// The webhook handler and everything it holds.
    pub ingress: Ingress<P>,
    /// Each route's signature verifier, if signatures are checked: rotation replaces their keys.
    pub verifiers: Option<RouteVerifiers>,
    /// The shared replay store, if one is configured: readiness probes it.
    pub store: Option<Arc<RedisGuard>>,
}

impl<P: Publish> Parts<P> {
    /// The parts for `config`, publishing through `publisher`, reporting into `metrics` and
    /// `health`. Reads the signing secrets.
    ///
    /// # Errors
    /// A secrets file cannot be read or holds no secret; the replay store's URL is not one, or
    /// its password file cannot be read.
    pub fn build(
        config: &Config,
        publisher: P,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Result<Self, ConfigError> {
        let store = shared_store(config)?;
        let authenticator = authenticator(config, &metrics, store.clone())?;
        let verifiers = authenticator.verifiers().cloned();
        let redrives = Arc::new(Redrives::new(
            config.authentication.redrive_horizon,
            config.authentication.redrive_capacity,
            store.clone(),
            config.authentication.single_writer,
            metrics.redrive(),
        ));
        let ingress = Ingress::new(config, authenticator, redrives, publisher, metrics, health);
        Ok(Self {
            ingress,
            verifiers,
            store,
        })
    }

    /// The ingress for `config` over `publisher` alone, with a registry of its own and no
    /// startup to wait for: the fixture of handler tests, property tests, fuzz targets and the
    /// handler benchmark.
    ///
    /// # Errors
    /// As [`Parts::build`].
    ///
    /// # Panics
    /// When a metric is registered twice: a programming error, which the app reports at startup.
    pub fn over(config: &Config, publisher: P) -> Result<(Ingress<P>, Registry), ConfigError> {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).expect("the relay's metrics register once");
        let health = Arc::new(Health::new(
            config.lifecycle.broker_down_grace,
            config.lifecycle.queue_high_water,
        ));
        let parts = Self::build(config, publisher, metrics, health)?;
        Ok((parts.ingress, registry))
    }
}

/// How requests are authenticated, with the replay guard in `store` if there is one, else in
/// memory.
fn authenticator(
    config: &Config,
    metrics: &Metrics,
    store: Option<Arc<RedisGuard>>,
) -> Result<Authenticator, ConfigError> {
    let authentication = &config.authentication;
    if authentication.insecure_skip_signature {
        warn!("SIGNATURE VERIFICATION IS OFF (--insecure-skip-signature): anyone who can reach this port can write to Kafka. Never run like this in production.");
        return Ok(Authenticator::Skipped);
    }
    let window = Window {
        tolerance: authentication.signature_tolerance,
        margin: config.kafka.ack_timeout + authentication.clock_skew,
    };
    let secrets = authentication.secret_lists().read()?;
    let replay = match store {
        Some(store) => ReplayGuard::Shared(store),
        None => ReplayGuard::Memory(MemoryGuard::new(
            authentication.replay_capacity,
            metrics.replay_guard(),
        )),
    };
    Ok(match &secrets.actions {
        None => Authenticator::signed(&secrets.processes, window, replay),
        Some(actions) => {
            Authenticator::signed_per_route(&secrets.processes, actions, window, replay)
        }
    })
}

/// The shared replay store, if one is configured (with signatures checked).
fn shared_store(config: &Config) -> Result<Option<Arc<RedisGuard>>, ConfigError> {
    let authentication = &config.authentication;
    let Some(url) = authentication
        .replay_store
        .as_ref()
        .filter(|_| !authentication.insecure_skip_signature)
    else {
        return Ok(None);
    };
    let password = authentication.replay_store_password()?;
    let store = RedisGuard::new(
        url.expose_secret(),
        password.as_ref().map(ExposeSecret::expose_secret),
        &authentication.replay_store_prefix,
    )
    // Redis' messages name the part of the URL that is wrong, never the password.
    .map_err(|error| ConfigError::new(format!("--replay-store: {error}")))?;
    Ok(Some(Arc::new(store)))
}
