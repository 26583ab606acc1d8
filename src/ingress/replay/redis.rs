//! The shared replay store: one Redis key per signing, holding its binding to a route and body,
//! set only if absent, expiring once no replica can admit the signing any more. Every replica asks the same store, so a captured set
//! of headers cannot carry a second body through another replica, or after a restart.

use std::{
    future::Future,
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{aio::ConnectionManager, aio::ConnectionManagerConfig, Client, RedisError, Script};
use tokio::{sync::OnceCell, time::Instant};

use super::{Binding, Signing};
use crate::health::Health;

/// How often a running relay probes the store for readiness.
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

    /// One exchange with the store on the shared connection, answered before `deadline`.
    async fn exchange<T, Request, Answer>(
        &self,
        deadline: Instant,
        request: Request,
    ) -> Result<T, StoreError>
    where
        Request: FnOnce(ConnectionManager) -> Answer,
        Answer: Future<Output = Result<T, RedisError>>,
    {
        let exchange = async { request(self.connection().await?).await };
        let answer = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| StoreError::Timeout)?;
        Ok(answer?)
    }

    /// The binding remembered for `signing`: `bound` if it is new. One atomic round trip:
    /// `SET key bound NX GET EX ttl` stores the binding unless the key exists and returns what
    /// was there.
    pub(super) async fn remember(
        &self,
        signing: Signing<'_>,
        bound: Binding,
        deadline: Instant,
    ) -> Result<Binding, StoreError> {
        let key = format!("{}:{:032x}", self.prefix, signing.fingerprint());
        let ttl = (signing.remember_until - unix_now()).max(1);
        let command = remember_command(&key, &bound.to_be_bytes(), ttl);
        let previous = self
            .exchange(deadline, |mut connection| async move {
                command
                    .query_async::<Option<Vec<u8>>>(&mut connection)
                    .await
            })
            .await?;
        Ok(previous.map_or(bound, |bytes| remembered_binding(&bytes)))
    }

    /// Remembers a 5xx'd delivery's signing bound to its route and body until Unix second
    /// `until`, in the redrive memory's own keys (`<prefix>:redrive:*`) and budget: at most
    /// `capacity` signings, the soonest to expire forgotten first when full. Returns how many
    /// live signings it forgot for room.
    ///
    /// # Errors
    /// No answer within [`RESPONSE_TIMEOUT`], a failed connection, or the store refused the
    /// script (out of memory, an ACL without scripting).
    pub(crate) async fn remember_redrive(
        &self,
        signing: u128,
        bound: Binding,
        until: i64,
        capacity: u64,
    ) -> Result<u64, StoreError> {
        let (expiries, bindings) = self.redrive_keys();
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        self.exchange(deadline, |mut connection| async move {
            REMEMBER_REDRIVE
                .key(expiries)
                .key(bindings)
                .arg(format!("{signing:032x}"))
                .arg(&bound.to_be_bytes()[..])
                .arg(until)
                .arg(unix_now())
                .arg(capacity)
                .invoke_async::<u64>(&mut connection)
                .await
        })
        .await
    }

    /// The route and body a 5xx'd `signing` is bound to, if the store remembers it.
    ///
    /// # Errors
    /// No answer before `deadline`, or a failed connection.
    pub(crate) async fn recall_redrive(
        &self,
        signing: u128,
        deadline: Instant,
    ) -> Result<Option<Binding>, StoreError> {
        let (expiries, bindings) = self.redrive_keys();
        let found = self
            .exchange(deadline, |mut connection| async move {
                RECALL_REDRIVE
                    .key(expiries)
                    .key(bindings)
                    .arg(format!("{signing:032x}"))
                    .arg(unix_now())
                    .invoke_async::<Option<Vec<u8>>>(&mut connection)
                    .await
            })
            .await?;
        Ok(found.map(|bytes| remembered_binding(&bytes)))
    }

    /// The redrive memory's keys: each signing's expiry (a sorted set), its binding (a hash).
    fn redrive_keys(&self) -> (String, String) {
        (
            format!("{}:redrive:expiries", self.prefix),
            format!("{}:redrive:bindings", self.prefix),
        )
    }

    /// Probes the store every [`PROBE_INTERVAL`], forever, with the guard's own command on a
    /// key under the guard's own prefix, and tells `health` whether it was carried out within
    /// [`RESPONSE_TIMEOUT`], and if not, why: a store that answers `PING` but refuses the guard
    /// (an ACL without `SET` or without the prefix's keys, a read-only replica, a Redis too old
    /// for `SET ... NX GET`, out of memory) makes the relay unready, naming the refusal.
    pub async fn probe(self: Arc<Self>, health: Arc<Health>) {
        let mut was_up = false;
        let mut last_problem = None;
        loop {
            let mut problem = self
                .check(RESPONSE_TIMEOUT)
                .await
                .err()
                .map(|error| describe(&error));
            // What the store says of itself, each time it starts to answer: a Redis Cluster
            // or an old version may take the guard's command for one key and not another.
            if problem.is_none() && !was_up {
                problem = self.unsupported(RESPONSE_TIMEOUT).await;
            }
            let up = problem.is_none();
            match &problem {
                Some(problem) if last_problem.as_ref() != Some(problem) => {
                    tracing::warn!(problem, "The replay store cannot serve as the replay guard: deliveries get 503 and the relay is unready until it can.")
                }
                None if !was_up => tracing::info!("The replay store serves as the replay guard."),
                _ => {}
            }
            health.set_replay_store(problem.clone());
            was_up = up;
            last_problem = problem;
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Carries out the guard's own command (`SET key value NX GET EX ttl`) on the probe's key,
    /// and the redrive memory's lookup script, within `timeout` each.
    ///
    /// # Errors
    /// No answer in time, a failed connection, or the store refused the command.
    pub async fn check(&self, timeout: Duration) -> Result<(), StoreError> {
        let key = format!("{}:{PROBE_KEY}", self.prefix);
        let command = remember_command(&key, &[0; 16], PROBE_TTL_SECONDS);
        self.exchange(Instant::now() + timeout, |mut connection| async move {
            command
                .query_async::<Option<Vec<u8>>>(&mut connection)
                .await
        })
        .await?;
        // And the redrive memory's lookup: a store that takes SET but no script (an ACL
        // without `@scripting`) would answer every original-signed retry with 503.
        let (expiries, bindings) = self.redrive_keys();
        self.exchange(Instant::now() + timeout, |mut connection| async move {
            RECALL_REDRIVE
                .key(expiries)
                .key(bindings)
                .arg(PROBE_KEY)
                .arg(unix_now())
                .invoke_async::<Option<Vec<u8>>>(&mut connection)
                .await
        })
        .await?;
        Ok(())
    }

    /// Why the store cannot serve as the guard by what it says of itself (`INFO server`): a
    /// Redis Cluster (the relay speaks to one node), or a version before 7.0. `None` when it
    /// qualifies, or does not say (no answer, or `INFO` not permitted: the probe's command
    /// tells then).
    pub async fn unsupported(&self, timeout: Duration) -> Option<String> {
        let info = self
            .exchange(Instant::now() + timeout, |mut connection| async move {
                redis::cmd("INFO")
                    .arg("server")
                    .query_async::<String>(&mut connection)
                    .await
            })
            .await
            .ok()?;
        unsupported_server(&info)
    }
}

/// Remembers a signing (ARGV[1]) bound to ARGV[2] until ARGV[3], at ARGV[4], in at most ARGV[5]
/// entries: drops up to 100 expired ones, then, for a new signing while full, the soonest to
/// expire (returning how many of those). `GT` keeps the later expiry of a signing seen again.
static REMEMBER_REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4], 'LIMIT', 0, 100)
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
local forgotten = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  while redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) do
    local oldest = redis.call('ZPOPMIN', KEYS[1])
    redis.call('HDEL', KEYS[2], oldest[1])
    forgotten = forgotten + 1
  end
end
redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return forgotten
",
    )
});

/// The binding of signing ARGV[1] if it has not expired at ARGV[2].
static RECALL_REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= tonumber(ARGV[2]) then
  return false
end
return redis.call('HGET', KEYS[2], ARGV[1])
",
    )
});

/// The probe's key, under the guard's prefix: no fingerprint (32 hex digits) looks like it.
const PROBE_KEY: &str = "readiness-probe";
const PROBE_TTL_SECONDS: i64 = 5;

/// The first version with `SET ... NX GET` (6.2 has `GET`, but not together with `NX`).
const MIN_VERSION: (u32, u32) = (7, 0);

/// Why a server described by `INFO server` cannot serve as the guard, if it cannot.
fn unsupported_server(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("redis_mode") == Some("cluster") {
        return Some("the store is a Redis Cluster, which the replay guard does not support: point --replay-store at a standalone Redis (or the primary of a replicated one)".to_owned());
    }
    let version = field("redis_version")?;
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return None;
    };
    ((major, minor) < MIN_VERSION).then(|| {
        format!(
            "the store runs Redis {version}: the replay guard needs 7.0 or newer (SET ... NX GET)"
        )
    })
}

/// What a failed probe or guard command says about the store, for `/readyz` and the log
/// (Redis' errors name the command and the user, never the password).
pub fn describe(error: &StoreError) -> String {
    let StoreError::Redis(redis) = error else {
        return error.to_string();
    };
    let detail = redis.to_string();
    let why = match redis.code() {
        Some("NOPERM") => "the store's user may not run the guard's commands on the guard's keys (ACL: it needs +set on ~<--replay-store-prefix>:*, and +evalsha +script|load for the redrive memory's scripts)",
        Some("READONLY") => "the store is a read-only replica: point --replay-store at the primary",
        Some("OOM") => "the store is out of memory and refuses writes: give it room for the window's signings (it must run with maxmemory-policy noeviction)",
        Some("MOVED" | "ASK" | "CLUSTERDOWN" | "CROSSSLOT") => "the store is a Redis Cluster, which the replay guard does not support",
        Some("WRONGPASS" | "NOAUTH") => "the store refuses the relay's credentials",
        _ if redis.kind() == redis::ErrorKind::AuthenticationFailed => {
            "the store refuses the relay's credentials"
        }
        Some("ERR") if detail.contains("syntax") => "the store does not know SET ... NX GET: the replay guard needs Redis 7.0 or newer",
        _ => return format!("the replay store failed: {detail}"),
    };
    format!("{why} ({detail})")
}

/// The binding stored under a key; anything but our own 16 bytes (written by something else) is
/// treated as another binding, so the request is refused rather than admitted.
/// The guard's one command: `SET key value NX GET EX ttl` stores `value` unless the key exists,
/// and returns what was there. The probe runs the same command, so readiness tests what
/// requests need.
fn remember_command(key: &str, value: &[u8], ttl: i64) -> redis::Cmd {
    let mut command = redis::cmd("SET");
    command
        .arg(key)
        .arg(value)
        .arg("NX")
        .arg("GET")
        .arg("EX")
        .arg(ttl);
    command
}

fn remembered_binding(bytes: &[u8]) -> Binding {
    <[u8; 16]>::try_from(bytes).map_or(!0, u128::from_be_bytes)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_or_a_redis_before_7_0_is_unsupported() {
        let info = |version: &str, mode: &str| {
            format!("# Server\r\nredis_version:{version}\r\nredis_mode:{mode}\r\nos:Linux\r\n")
        };
        assert_eq!(unsupported_server(&info("7.0.15", "standalone")), None);
        assert_eq!(unsupported_server(&info("7.2.4", "standalone")), None);
        assert!(unsupported_server(&info("7.2.4", "cluster"))
            .unwrap()
            .contains("Redis Cluster"));
        assert!(unsupported_server(&info("6.2.14", "standalone"))
            .unwrap()
            .contains("needs 7.0 or newer"));
        assert_eq!(unsupported_server("no fields"), None);
    }
}
