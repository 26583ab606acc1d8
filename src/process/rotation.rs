//! Rotation of the signing secrets without a restart. Kubernetes updates a mounted Secret in
//! place (it swaps a symlink), so the relay reads each route's list (`--signing-secrets-file`,
//! `--actions-signing-secrets-file`) again every few seconds and, when a route's secrets
//! changed, makes them that route's active keys; the ones they replace stay valid for
//! `--signing-secrets-grace`. A file that becomes unreadable or empty, or a secret that would
//! be in both routes' lists, changes nothing: the last good secrets stay in force on both
//! routes, and the metrics say so.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use crate::{
    config::{RouteSecrets, SecretLists},
    ingress::metrics::Metrics,
    ingress::signature::RouteVerifiers,
    ingress::webhook::EventKind,
};

/// How often the secrets files are read again. The kubelet itself takes up to a minute or so to
/// update a mounted Secret; this adds at most this much.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Reads every route's secrets again every [`RELOAD_INTERVAL`] and rotates the verifier of
/// each route whose list changed. Runs as long as the relay does.
pub async fn watch(
    verifiers: RouteVerifiers,
    lists: SecretLists,
    grace: Duration,
    metrics: Metrics,
) {
    let mut reload = Reload::new(verifiers, lists, grace);
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        reload.once(&metrics);
    }
}

/// The reloading state: the lists, each route's verifier, and what was applied last.
struct Reload {
    verifiers: RouteVerifiers,
    lists: SecretLists,
    grace: Duration,
    // The fingerprint of each route's list as last applied, by the order of `EventKind::ALL`.
    last: [Option<[u8; 32]>; 2],
    failing: bool,
}

impl Reload {
    fn new(verifiers: RouteVerifiers, lists: SecretLists, grace: Duration) -> Self {
        let last = lists
            .read()
            .map(|secrets| fingerprints(&secrets))
            .unwrap_or_default();
        Self {
            verifiers,
            lists,
            grace,
            last,
            failing: false,
        }
    }

    /// Reads the lists and applies what changed. A list that cannot be read, or lists that
    /// share a secret, change nothing: the last good keys stay in force, on both routes.
    fn once(&mut self, metrics: &Metrics) {
        let secrets = match self.lists.read() {
            Ok(secrets) => secrets,
            Err(error) => {
                metrics.signing_secrets_readable(false);
                if !self.failing {
                    warn!(%error, "Cannot reload the signing secrets; the last good ones stay in force.");
                    self.failing = true;
                }
                return;
            }
        };
        metrics.signing_secrets_readable(true);
        if self.failing {
            info!("The signing secrets files are readable again.");
            self.failing = false;
        }
        let current = fingerprints(&secrets);
        for (index, route) in EventKind::ALL.into_iter().enumerate() {
            let Some(list) = own_list(&secrets, route) else {
                continue;
            };
            if self.last[index] != current[index] {
                let (active, retiring) = self.verifiers.of(route).rotate(list, self.grace);
                metrics.signing_secrets_reloaded();
                info!(route = route.label(), active, retiring, grace = %humantime::format_duration(self.grace), "Signing secrets reloaded; the replaced ones stay valid for the grace period.");
            }
        }
        self.last = current;
    }
}

/// The list `route` verifies with, if it is its own (without one of its own, the actions route
/// shares the business-processes route's verifier, rotated with it).
fn own_list(secrets: &RouteSecrets, route: EventKind) -> Option<&[SecretString]> {
    match route {
        EventKind::BusinessProcess => Some(&secrets.processes),
        EventKind::Action => secrets.actions.as_deref(),
    }
}

/// Each route's fingerprint, by the order of `EventKind::ALL`.
fn fingerprints(secrets: &RouteSecrets) -> [Option<[u8; 32]>; 2] {
    EventKind::ALL.map(|route| own_list(secrets, route).map(fingerprint))
}

/// A digest of the secrets, to notice a change without keeping a copy.
fn fingerprint(secrets: &[SecretString]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for secret in secrets {
        hasher.update(secret.expose_secret().as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::{
        path::{Path, PathBuf},
        time::{SystemTime, UNIX_EPOCH},
    };

    use clap::Parser;

    use super::*;
    use crate::{
        config::Config,
        ingress::signature::{signed_headers, SignatureError, Verifier},
    };

    /// A directory laid out like a mounted Secret, updated the way the kubelet does it: the
    /// file is a symlink through `..data`, which is swapped to a new directory by a rename.
    struct Mounted {
        dir: tempfile::TempDir,
        version: u32,
    }

    impl Mounted {
        fn new(content: &str) -> Mounted {
            let mut mounted = Mounted {
                dir: tempfile::tempdir().unwrap(),
                version: 0,
            };
            mounted.update(content);
            std::os::unix::fs::symlink("..data/secrets", mounted.file()).unwrap();
            mounted
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("secrets")
        }

        fn update(&mut self, content: &str) {
            self.version += 1;
            let version = format!("..2026_12_03_{:04}", self.version);
            std::fs::create_dir(self.dir.path().join(&version)).unwrap();
            std::fs::write(self.dir.path().join(&version).join("secrets"), content).unwrap();
            let staged = self.dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(Path::new(&version), &staged).unwrap();
            std::fs::rename(&staged, self.dir.path().join("..data")).unwrap();
        }
    }

    const TOLERANCE: Duration = Duration::from_secs(300);

    /// What a route's verifier answers for a signing made now with `secret`.
    fn verifies(verifiers: &RouteVerifiers, route: EventKind, secret: &str) -> bool {
        let now = SystemTime::now();
        let timestamp = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let headers = signed_headers(secret, "v", timestamp).unwrap();
        match verifiers.of(route).verify(&headers, now) {
            Ok(_) => true,
            Err(SignatureError::Mismatch) => false,
            Err(other) => panic!("{other}"),
        }
    }

    fn setup(
        args: &[&str],
        grace: &str,
    ) -> (Reload, RouteVerifiers, Metrics, prometheus::Registry) {
        let config = Config::try_parse_from(
            [
                "bp-relay",
                "--kafka-brokers",
                "k:9092",
                "--signing-secrets-grace",
                grace,
            ]
            .iter()
            .chain(args),
        )
        .unwrap();
        config.validate().unwrap();
        let lists = config.authentication.secret_lists();
        let secrets = lists.read().unwrap();
        let verifiers = match &secrets.actions {
            None => RouteVerifiers::shared(Verifier::new(&secrets.processes, TOLERANCE)),
            Some(actions) => RouteVerifiers::per_route(
                Verifier::new(&secrets.processes, TOLERANCE),
                Verifier::new(actions, TOLERANCE),
            ),
        };
        let reload = Reload::new(
            verifiers.clone(),
            lists,
            config.authentication.signing_secrets_grace,
        );
        let registry = prometheus::Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        (reload, verifiers, metrics, registry)
    }

    #[test]
    fn the_actions_routes_own_file_rotates_that_route_alone() {
        let mut actions = Mounted::new("actions-old\n");
        let file = actions.file().display().to_string();
        let (mut reload, verifiers, metrics, registry) = setup(
            &[
                "--signing-secrets",
                "processes",
                "--actions-signing-secrets-file",
                &file,
            ],
            "1h",
        );
        assert!(verifies(&verifiers, EventKind::Action, "actions-old"));
        assert!(!verifies(&verifiers, EventKind::Action, "actions-new"));

        actions.update("actions-new\n");
        reload.once(&metrics);
        assert!(verifies(&verifiers, EventKind::Action, "actions-new"));
        assert!(
            verifies(&verifiers, EventKind::Action, "actions-old"),
            "the replaced secret lasts the grace"
        );
        for secret in ["actions-new", "actions-old"] {
            assert!(
                !verifies(&verifiers, EventKind::BusinessProcess, secret),
                "{secret} never verifies on the other route"
            );
        }
        assert!(verifies(
            &verifiers,
            EventKind::BusinessProcess,
            "processes"
        ));
        assert!(!verifies(&verifiers, EventKind::Action, "processes"));
        assert!(exposes(
            &registry,
            "bp_relay_signing_secrets_reloads_total 1"
        ));
    }

    #[test]
    fn a_grace_of_zero_retires_the_replaced_actions_secret_at_once() {
        let mut actions = Mounted::new("actions-old\n");
        let file = actions.file().display().to_string();
        let (mut reload, verifiers, metrics, _) = setup(
            &[
                "--signing-secrets",
                "processes",
                "--actions-signing-secrets-file",
                &file,
            ],
            "0s",
        );
        actions.update("actions-new\n");
        reload.once(&metrics);
        assert!(!verifies(&verifiers, EventKind::Action, "actions-old"));
        assert!(verifies(&verifiers, EventKind::Action, "actions-new"));
    }

    #[test]
    fn a_secret_moved_into_both_lists_or_an_empty_file_changes_nothing() {
        let mut actions = Mounted::new("actions\n");
        let file = actions.file().display().to_string();
        let (mut reload, verifiers, metrics, registry) = setup(
            &[
                "--signing-secrets",
                "processes",
                "--actions-signing-secrets-file",
                &file,
            ],
            "0s",
        );
        for broken in ["processes\n", "", "actions\nprocesses\n"] {
            actions.update(broken);
            reload.once(&metrics);
            assert!(
                exposes(&registry, "bp_relay_signing_secrets_readable 0"),
                "{broken:?}"
            );
            assert!(
                verifies(&verifiers, EventKind::Action, "actions"),
                "{broken:?}"
            );
            assert!(
                !verifies(&verifiers, EventKind::Action, "processes"),
                "{broken:?}: the other route's secret is not taken"
            );
        }
        actions.update("actions\n");
        reload.once(&metrics);
        assert!(exposes(&registry, "bp_relay_signing_secrets_readable 1"));
        assert!(
            exposes(&registry, "bp_relay_signing_secrets_reloads_total 0"),
            "nothing changed"
        );
    }

    #[test]
    fn without_its_own_list_the_actions_route_rotates_with_the_shared_file() {
        let mut shared = Mounted::new("old\n");
        let file = shared.file().display().to_string();
        let (mut reload, verifiers, metrics, _) = setup(&["--signing-secrets-file", &file], "0s");
        shared.update("new\n");
        reload.once(&metrics);
        for route in EventKind::ALL {
            assert!(verifies(&verifiers, route, "new"), "{route:?}");
            assert!(!verifies(&verifiers, route, "old"), "{route:?}");
        }
    }

    /// Whether `line` (a metric and its value) is in the text exposition of `registry`.
    fn exposes(registry: &prometheus::Registry, line: &str) -> bool {
        String::from_utf8(crate::ingress::metrics::encode(registry).1)
            .unwrap()
            .lines()
            .any(|exposed| exposed == line)
    }
}
