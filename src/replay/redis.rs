//! The shared replay store: one Redis key per signing, set only if absent, expiring when the
//! signing's timestamp leaves the window. Every replica asks the same store, so a captured set
//! of headers cannot carry a second body through another replica, or after a restart.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{aio::ConnectionManager, aio::ConnectionManagerConfig, Client, RedisError};
use tokio::{sync::OnceCell, time::Instant};

use super::Signing;
use crate::health::Health;

/// How often a running relay pings the store for readiness.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one connection attempt and one command may take; the request's own deadline is
/// the other bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared store did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer before the request's deadline.
    #[error("the replay store did not answer in time")]
    Timeout,
    /// The connection or the command failed.
    #[error("the replay store failed: {0}")]
    Redis(#[from] RedisError),
}

/// Signings remembered in Redis.
pub struct RedisGuard {
    client: Client,
    // Connected on first use (building the guard needs no runtime and contacts nothing);
    // reconnects by itself after a failure.
    connection: OnceCell<ConnectionManager>,
    prefix: String,
}

impl RedisGuard {
    /// A guard on the store at `url` (`redis://` or `rediss://` for TLS, with the password in
    /// the URL or given apart), its keys named `<prefix>:<fingerprint>`.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn new(url: &str, password: Option<&str>, prefix: &str) -> Result<Self, RedisError> {
        let mut info: redis::ConnectionInfo = url.parse()?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Ok(Self {
            client: Client::open(info)?,
            connection: OnceCell::new(),
            prefix: prefix.to_owned(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        self.connection
            .get_or_try_init(|| async {
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    /// The body remembered for `signing`: `body` if it is new. One atomic round trip:
    /// `SET key body NX GET EX ttl` stores the body unless the key exists and returns what was
    /// there.
    pub(super) async fn remember(
        &self,
        signing: Signing<'_>,
        body: u128,
        deadline: Instant,
    ) -> Result<u128, StoreError> {
        let key = format!("{}:{:032x}", self.prefix, signing.fingerprint());
        let ttl = (signing.expires_at - unix_now()).max(1);
        let exchange = async {
            let mut connection = self.connection().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(&body.to_be_bytes()[..])
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(ttl)
                .query_async::<Option<Vec<u8>>>(&mut connection)
                .await
        };
        let previous = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| StoreError::Timeout)??;
        Ok(previous.map_or(body, |bytes| remembered_body(&bytes)))
    }

    /// Pings the store every [`PROBE_INTERVAL`], forever, and tells `health` whether it
    /// answered within [`RESPONSE_TIMEOUT`]: a relay that cannot check bodies is not ready.
    pub async fn probe(self: Arc<Self>, health: Arc<Health>) {
        let mut was_up = true;
        loop {
            let result = self.ping(RESPONSE_TIMEOUT).await;
            let up = result.is_ok();
            health.set_replay_store_up(up);
            match result {
                Err(error) if was_up => {
                    tracing::warn!(%error, "The replay store does not answer: deliveries get 503 until it does.")
                }
                Ok(()) if !was_up => tracing::info!("The replay store answers again."),
                _ => {}
            }
            was_up = up;
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Asks the store for a PONG within `timeout`.
    ///
    /// # Errors
    /// No answer in time, or a failed connection.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let exchange = async {
            let mut connection = self.connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| StoreError::Timeout)??;
        Ok(())
    }
}

/// The body stored under a key; anything but our own 16 bytes (written by something else) is
/// treated as another body, so the request is refused rather than admitted.
fn remembered_body(bytes: &[u8]) -> u128 {
    <[u8; 16]>::try_from(bytes).map_or(!0, u128::from_be_bytes)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}
