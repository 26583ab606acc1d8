//! How deliveries are authenticated: Authvia's signing secrets, the timestamp window and the
//! replay guard's memory.

use std::{path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use super::{parse_secret, read_secret_file, ConfigError};

/// Signature verification settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Signing")]
pub struct Signing {
    /// Subscription signing secrets, comma-separated; several are accepted during rotation.
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub signing_secrets: Vec<SecretString>,

    /// File with signing secrets, one per line (as a Kubernetes Secret is mounted).
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS_FILE")]
    pub signing_secrets_file: Option<PathBuf>,

    /// How long a secret removed from --signing-secrets-file stays valid after the file
    /// changed (the file is read again every 2 s).
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS_GRACE", default_value = "10m", value_parser = super::parse_duration)]
    pub signing_secrets_grace: Duration,

    /// Accepted distance between X-AUTHVIA-TIMESTAMP and now, in the past and the future.
    #[arg(long, env = "BP_RELAY_SIGNATURE_TOLERANCE", default_value = "5m", value_parser = super::parse_duration)]
    pub signature_tolerance: Duration,

    /// How far apart the clocks of the replicas may be: the replay guard remembers a signing
    /// this much longer (besides --ack-timeout) after its window, so no replica still admits
    /// it once the guard forgot it.
    #[arg(long, env = "BP_RELAY_CLOCK_SKEW", default_value = "2s", value_parser = super::parse_duration)]
    pub clock_skew: Duration,

    /// Signings remembered by the in-memory replay guard (its memory bound). Size it for the
    /// delivery rate times twice --signature-tolerance.
    #[arg(long, env = "BP_RELAY_REPLAY_CAPACITY", default_value_t = 100_000)]
    pub replay_capacity: u64,

    /// A Redis shared by every replica as the replay guard (redis://host:6379/0, or rediss://
    /// for TLS), instead of the process's memory. Unreachable: requests get 503, never pass unguarded.
    #[arg(long, env = "BP_RELAY_REPLAY_STORE", value_parser = parse_secret, hide_env_values = true)]
    pub replay_store: Option<SecretString>,

    /// File holding the replay store's password (as a Kubernetes Secret is mounted).
    #[arg(long, env = "BP_RELAY_REPLAY_STORE_PASSWORD_FILE")]
    pub replay_store_password_file: Option<PathBuf>,

    /// Prefix of the replay store's keys (several relays can share one Redis).
    #[arg(
        long,
        env = "BP_RELAY_REPLAY_STORE_PREFIX",
        default_value = "bp-relay:replay"
    )]
    pub replay_store_prefix: String,

    /// Accept unsigned deliveries. For local experiments only: logs a warning at startup.
    #[arg(long, env = "BP_RELAY_INSECURE_SKIP_SIGNATURE", value_parser = super::on_off())]
    pub insecure_skip_signature: bool,
}

impl Signing {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let has_secrets = !self.signing_secrets.is_empty() || self.signing_secrets_file.is_some();
        match (has_secrets, self.insecure_skip_signature) {
            (false, false) => Err(ConfigError::new(
                "no signing secret: set --signing-secrets or --signing-secrets-file (or, for local experiments only, --insecure-skip-signature)",
            )),
            (true, true) => Err(ConfigError::new(
                "--insecure-skip-signature contradicts the signing secrets given; drop one",
            )),
            _ if self.signature_tolerance.is_zero() => Err(ConfigError::new("--signature-tolerance must be above 0")),
            _ if self.replay_capacity == 0 => Err(ConfigError::new("--replay-capacity must be at least 1")),
            _ if self.replay_store_password_file.is_some() && self.replay_store.is_none() => {
                Err(ConfigError::new("--replay-store-password-file needs --replay-store"))
            }
            _ => Ok(()),
        }
    }

    /// The replay store's password from its file, if one is configured.
    ///
    /// # Errors
    /// The file cannot be read or is empty.
    pub fn replay_store_password(&self) -> Result<Option<SecretString>, ConfigError> {
        let Some(path) = &self.replay_store_password_file else {
            return Ok(None);
        };
        let text = read_secret_file(path, "--replay-store-password-file")?;
        parse_secret(text.expose_secret()).map(Some).map_err(|_| {
            ConfigError::new(format!(
                "--replay-store-password-file {} is empty",
                path.display()
            ))
        })
    }

    /// The signing secrets from the flag and the file together.
    ///
    /// # Errors
    /// The secrets file cannot be read or holds no secret.
    pub fn secrets(&self) -> Result<Vec<SecretString>, ConfigError> {
        let mut secrets = self.signing_secrets.clone();
        if let Some(path) = &self.signing_secrets_file {
            let text = read_secret_file(path, "--signing-secrets-file")?;
            let from_file: Vec<SecretString> = text
                .expose_secret()
                .lines()
                .flat_map(|line| line.split(','))
                .filter_map(|secret| parse_secret(secret).ok())
                .collect();
            if from_file.is_empty() {
                return Err(ConfigError::new(format!(
                    "--signing-secrets-file {} holds no secret",
                    path.display()
                )));
            }
            secrets.extend(from_file);
        }
        Ok(secrets)
    }
}
