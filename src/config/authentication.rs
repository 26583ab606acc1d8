//! How deliveries are authenticated: Authvia's signing secrets, the timestamp window and the
//! replay guard's memory.

use std::{path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use super::{parse_secret, read_secret_file, ConfigError};

/// Signature verification settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Signing")]
pub struct Authentication {
    /// Signing secrets of the business-processes route's Subscription, and of the actions
    /// route's unless it has its own list; comma-separated, several accepted during rotation.
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub signing_secrets: Vec<SecretString>,

    /// File with the --signing-secrets list, one per line (as a Kubernetes Secret is mounted).
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS_FILE")]
    pub signing_secrets_file: Option<PathBuf>,

    /// The actions route's own signing secrets (its Subscription's), comma-separated: then the
    /// actions route verifies only with these and the business-processes route never does.
    #[arg(long, env = "BP_RELAY_ACTIONS_SIGNING_SECRETS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub actions_signing_secrets: Vec<SecretString>,

    /// File with the --actions-signing-secrets list, one per line (as a Kubernetes Secret is
    /// mounted).
    #[arg(long, env = "BP_RELAY_ACTIONS_SIGNING_SECRETS_FILE")]
    pub actions_signing_secrets_file: Option<PathBuf>,

    /// How long a secret removed from a secrets file (either route's) stays valid after the
    /// file changed (the files are read again every 2 s).
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

    /// How long after its signing a delivery answered 5xx is remembered for Authvia's retries:
    /// a retry with its original signing, route and body is accepted outside the window, and
    /// a retry of one whose record landed after all is answered with that record. Authvia
    /// retries for about 102 hours; 0 turns the memory off.
    #[arg(long, env = "BP_RELAY_REDRIVE_HORIZON", default_value = "108h", value_parser = super::parse_duration)]
    pub redrive_horizon: Duration,

    /// Entries of the redrive memory in this process (its memory bound, about 200 bytes
    /// each): a 5xx'd delivery takes one for its fate and one per signing it came with.
    #[arg(long, env = "BP_RELAY_REDRIVE_CAPACITY", default_value_t = 100_000)]
    pub redrive_capacity: u64,

    /// This process is the only writer of its topics (one replica): a redrive of a record that
    /// landed after its 503 is answered with it while no newer record of its key was written.
    /// Off with several replicas, which cannot see each other's writes: such a redrive is
    /// written again (a duplicate) rather than risk hiding a real repeat of its body.
    #[arg(long, env = "BP_RELAY_SINGLE_WRITER", default_value = "on", value_parser = super::on_off(), action = clap::ArgAction::Set)]
    pub single_writer: bool,

    /// Accept unsigned deliveries. For local experiments only: logs a warning at startup.
    #[arg(long, env = "BP_RELAY_INSECURE_SKIP_SIGNATURE", value_parser = super::on_off())]
    pub insecure_skip_signature: bool,
}

impl Authentication {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let lists = self.secret_lists();
        let has_secrets = lists.processes.is_given();
        let actions_own = lists.actions.is_some();
        match (has_secrets, self.insecure_skip_signature) {
            (false, false) if actions_own => Err(ConfigError::new(
                "--actions-signing-secrets(-file) needs the business-processes route's list too: set --signing-secrets or --signing-secrets-file",
            )),
            (false, false) => Err(ConfigError::new(
                "no signing secret: set --signing-secrets or --signing-secrets-file (or, for local experiments only, --insecure-skip-signature)",
            )),
            (_, true) if has_secrets || actions_own => Err(ConfigError::new(
                "--insecure-skip-signature contradicts the signing secrets given; drop one",
            )),
            _ if self.signature_tolerance.is_zero() => Err(ConfigError::new("--signature-tolerance must be above 0")),
            _ if self.replay_capacity == 0 => Err(ConfigError::new("--replay-capacity must be at least 1")),
            _ if self.redrive_capacity == 0 => Err(ConfigError::new("--redrive-capacity must be at least 1")),
            _ if !self.redrive_horizon.is_zero() && self.redrive_horizon <= self.signature_tolerance => {
                Err(ConfigError::new(format!(
                    "--redrive-horizon must be longer than --signature-tolerance ({}), or 0 to turn the redrive memory off, got {}",
                    humantime::format_duration(self.signature_tolerance),
                    humantime::format_duration(self.redrive_horizon)
                )))
            }
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

    /// Where each route's signing secrets come from.
    pub fn secret_lists(&self) -> SecretLists {
        let actions = SecretList {
            file_flag: "--actions-signing-secrets-file",
            values: self.actions_signing_secrets.clone(),
            file: self.actions_signing_secrets_file.clone(),
        };
        SecretLists {
            processes: SecretList {
                file_flag: "--signing-secrets-file",
                values: self.signing_secrets.clone(),
                file: self.signing_secrets_file.clone(),
            },
            actions: actions.is_given().then_some(actions),
        }
    }
}

/// One list of signing secrets: its flag's values and the lines of its file, which is read
/// again on rotation.
#[derive(Debug, Clone)]
pub struct SecretList {
    file_flag: &'static str,
    values: Vec<SecretString>,
    file: Option<PathBuf>,
}

impl SecretList {
    fn is_given(&self) -> bool {
        !self.values.is_empty() || self.file.is_some()
    }

    /// Whether part of the list is a file (which rotation reads again).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// The secrets from the flag and the file together.
    ///
    /// # Errors
    /// The secrets file cannot be read or holds no secret.
    pub fn read(&self) -> Result<Vec<SecretString>, ConfigError> {
        let mut secrets = self.values.clone();
        if let Some(path) = &self.file {
            let text = read_secret_file(path, self.file_flag)?;
            let from_file: Vec<SecretString> = text
                .expose_secret()
                .lines()
                .flat_map(|line| line.split(','))
                .filter_map(|secret| parse_secret(secret).ok())
                .collect();
            if from_file.is_empty() {
                return Err(ConfigError::new(format!(
                    "{} {} holds no secret",
                    self.file_flag,
                    path.display()
                )));
            }
            secrets.extend(from_file);
        }
        Ok(secrets)
    }
}

/// Each route's list: the business-processes route's, which is the actions route's too unless
/// that has its own.
#[derive(Debug, Clone)]
pub struct SecretLists {
    /// The business-processes route's list (`--signing-secrets`, `--signing-secrets-file`).
    pub processes: SecretList,
    /// The actions route's own list (`--actions-signing-secrets[-file]`), if it has one.
    pub actions: Option<SecretList>,
}

/// The secrets of each route, read from [`SecretLists`].
pub struct RouteSecrets {
    /// The business-processes route's (and the actions route's, without `actions`).
    pub processes: Vec<SecretString>,
    /// The actions route's own, if it has a list of its own.
    pub actions: Option<Vec<SecretString>>,
}

impl SecretLists {
    /// Whether a list has a file (which rotation reads again).
    pub fn has_file(&self) -> bool {
        self.processes.has_file() || self.actions.as_ref().is_some_and(SecretList::has_file)
    }

    /// Both routes' secrets.
    ///
    /// # Errors
    /// A file cannot be read or holds no secret, or one secret is in both lists: a route's own
    /// list is there so that a signing for one route does not verify on the other, which a
    /// secret in both would silently undo.
    pub fn read(&self) -> Result<RouteSecrets, ConfigError> {
        let processes = self.processes.read()?;
        let actions = self.actions.as_ref().map(SecretList::read).transpose()?;
        let shared = actions.as_ref().is_some_and(|actions| {
            actions.iter().any(|action| {
                processes
                    .iter()
                    .any(|process| process.expose_secret() == action.expose_secret())
            })
        });
        if shared {
            return Err(ConfigError::new(
                "a secret is in both the business-processes route's list (--signing-secrets, --signing-secrets-file) and the actions route's (--actions-signing-secrets, --actions-signing-secrets-file): give each route its Subscription's own secret, or drop the actions route's list to share one",
            ));
        }
        Ok(RouteSecrets { processes, actions })
    }
}
