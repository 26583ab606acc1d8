//! Startup, readiness and shutdown budgets.

use std::time::Duration;

use super::{ConfigError, STATISTICS_INTERVAL};

/// Twice the interval of librdkafka's statistics, which report whether a broker is up: one
/// missed report is not an outage.
const MIN_BROKER_DOWN_GRACE: Duration = STATISTICS_INTERVAL.saturating_mul(2);

/// How long the relay waits at startup and shutdown, and when it reports not ready.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Lifecycle")]
pub struct Lifecycle {
    /// Budget for draining on SIGTERM: in-flight requests and the producer flush.
    #[arg(long, env = "BP_RELAY_SHUTDOWN_GRACE", default_value = "20s", value_parser = super::parse_duration)]
    pub shutdown_grace: Duration,

    /// Give up (exit 69) when the brokers or the topics are not confirmed within this time.
    /// Unset: wait for them as long as it takes, serving /healthz, /readyz 503 and 503 to deliveries.
    #[arg(long, env = "BP_RELAY_STARTUP_TIMEOUT", value_parser = super::parse_duration)]
    pub startup_timeout: Option<Duration>,

    /// Time a broker may stay unreachable before /readyz reports not ready.
    #[arg(long, env = "BP_RELAY_BROKER_DOWN_GRACE", default_value = "3s", value_parser = super::parse_duration)]
    pub broker_down_grace: Duration,

    /// Producer queue fill (0..1, messages or bytes) above which /readyz reports not ready.
    #[arg(long, env = "BP_RELAY_QUEUE_HIGH_WATER", default_value_t = 0.8)]
    pub queue_high_water: f64,

    /// Smallest replication factor of a topic before /readyz reports not ready, naming it
    /// (read from the brokers at startup and every 30 s). Default: min(3, brokers).
    #[arg(long, env = "BP_RELAY_MIN_REPLICATION_FACTOR")]
    pub min_replication_factor: Option<u32>,

    /// Smallest min.insync.replicas of a topic before /readyz reports not ready. Default: 2
    /// where the topic's replication factor is 3 or more, else 1.
    #[arg(long, env = "BP_RELAY_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<u32>,

    /// Stay ready with topics that allow unclean leader election (it can lose acknowledged
    /// records).
    #[arg(long, env = "BP_RELAY_ALLOW_UNCLEAN_LEADER_ELECTION", value_parser = super::on_off())]
    pub allow_unclean_leader_election: bool,
}

impl Lifecycle {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.queue_high_water > 0.0 && self.queue_high_water <= 1.0) {
            return Err(ConfigError::new(format!(
                "--queue-high-water must be in (0, 1], got {}",
                self.queue_high_water
            )));
        }
        // librdkafka reports the brokers' state once a second: a shorter grace flaps readiness.
        if self.broker_down_grace < MIN_BROKER_DOWN_GRACE {
            return Err(ConfigError::new(format!(
                "--broker-down-grace must be at least {} (the brokers' state is reported every {}), got {}",
                humantime::format_duration(MIN_BROKER_DOWN_GRACE),
                humantime::format_duration(STATISTICS_INTERVAL),
                humantime::format_duration(self.broker_down_grace)
            )));
        }
        if self
            .startup_timeout
            .is_some_and(|timeout| timeout.is_zero())
        {
            return Err(ConfigError::new("--startup-timeout must be above 0"));
        }
        Ok(())
    }
}
