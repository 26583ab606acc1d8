//! Rotation of the signing secrets without a restart. Kubernetes updates a mounted Secret in
//! place (it swaps a symlink), so the relay reads `--signing-secrets-file` again every few
//! seconds and, when the secrets changed, makes them the active keys; the ones they replace
//! stay valid for `--signing-secrets-grace`. A file that becomes unreadable or empty changes
//! nothing: the last good secrets stay in force, and the metrics say so.

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use crate::{config::Signing, metrics::Metrics, signature::Verifier};

/// How often the secrets file is read again. The kubelet itself takes up to a minute or so to
/// update a mounted Secret; this adds at most this much.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Reads the secrets again every [`RELOAD_INTERVAL`] and rotates `verifier` when they change.
/// Runs as long as the relay does.
pub async fn watch(verifier: Arc<Verifier>, signing: Signing, metrics: Metrics) {
    let mut last = signing.secrets().ok().map(|secrets| fingerprint(&secrets));
    let mut failing = false;
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        match signing.secrets() {
            Ok(secrets) => {
                metrics.signing_secrets_readable(true);
                if failing {
                    info!("The signing secrets file is readable again.");
                    failing = false;
                }
                let current = fingerprint(&secrets);
                if last != Some(current) {
                    let (active, retiring) =
                        verifier.rotate(&secrets, signing.signing_secrets_grace);
                    metrics.signing_secrets_reloaded();
                    info!(active, retiring, grace = %humantime::format_duration(signing.signing_secrets_grace), "Signing secrets reloaded; the replaced ones stay valid for the grace period.");
                    last = Some(current);
                }
            }
            Err(error) => {
                metrics.signing_secrets_readable(false);
                if !failing {
                    warn!(%error, "Cannot reload the signing secrets; the last good ones stay in force.");
                    failing = true;
                }
            }
        }
    }
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
