//! Rotating the signing secret without a restart, the way the kubelet updates a mounted Secret:
//! the new secret verifies within seconds, the old one until the grace period ends, and a file
//! that turns empty keeps the last good secrets in force.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use http::StatusCode;

use crate::helpers::*;

const OLD: &str = "whsec_rotation_old";
const NEW: &str = "whsec_rotation_new";

/// A directory laid out like a mounted Secret: `signing-secrets` -> `..data/signing-secrets`,
/// `..data` -> a timestamped directory holding the content.
struct MountedSecret {
    dir: tempfile::TempDir,
    version: u32,
}

impl MountedSecret {
    fn new(content: &str) -> MountedSecret {
        let mut mounted = MountedSecret {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        mounted.update(content);
        std::os::unix::fs::symlink("..data/signing-secrets", mounted.file()).unwrap();
        mounted
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("signing-secrets")
    }

    /// Writes a new version and swaps `..data` to it atomically (a rename over the symlink).
    fn update(&mut self, content: &str) {
        self.version += 1;
        let version = format!("..2026_11_29_{:04}", self.version);
        std::fs::create_dir(self.dir.path().join(&version)).unwrap();
        std::fs::write(
            self.dir.path().join(&version).join("signing-secrets"),
            content,
        )
        .unwrap();
        let staged = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(Path::new(&version), &staged).unwrap();
        std::fs::rename(&staged, self.dir.path().join("..data")).unwrap();
    }
}

async fn status_signed_with(relay: &TestRelay, secret: &str, id: &str) -> StatusCode {
    post(
        &relay.url(PROCESS_PATH),
        signed_headers(secret),
        process_body(id),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_applies_within_seconds_and_the_old_one_lasts_the_grace() {
    let mut mounted = MountedSecret::new(OLD);
    let file = mounted.file().display().to_string();
    let relay = spawn_relay(RelayOptions::default().secrets(&[]).flags(&[
        "--signing-secrets-file",
        &file,
        "--signing-secrets-grace",
        "4s",
    ]))
    .await;
    assert_eq!(
        status_signed_with(&relay, OLD, "before").await,
        StatusCode::OK
    );
    assert_eq!(
        status_signed_with(&relay, NEW, "not-yet").await,
        StatusCode::UNAUTHORIZED
    );

    mounted.update(NEW);
    eventually(
        "the new secret to verify",
        Duration::from_secs(10),
        || async { status_signed_with(&relay, NEW, "new").await == StatusCode::OK },
    )
    .await;
    assert_eq!(
        status_signed_with(&relay, OLD, "in-grace").await,
        StatusCode::OK,
        "the old secret is valid during the grace"
    );
    eventually(
        "the old secret to be refused after the grace",
        Duration::from_secs(10),
        || async {
            status_signed_with(&relay, OLD, "after-grace").await == StatusCode::UNAUTHORIZED
        },
    )
    .await;
    assert_eq!(
        relay
            .metrics()
            .await
            .get("bp_relay_signing_secrets_reloads_total"),
        Some(1.0)
    );

    // An empty file is a broken rotation, not "no secrets": the last good ones stay.
    mounted.update("");
    eventually(
        "the unreadable file to be reported",
        Duration::from_secs(10),
        || async {
            relay
                .metrics()
                .await
                .get("bp_relay_signing_secrets_readable")
                == Some(0.0)
        },
    )
    .await;
    assert_eq!(
        status_signed_with(&relay, NEW, "kept").await,
        StatusCode::OK
    );
    relay.stop().await;
}

const PROCESSES: &str = "whsec_rotation_processes";
const ACTIONS_OLD: &str = "whsec_rotation_actions_old";
const ACTIONS_NEW: &str = "whsec_rotation_actions_new";

async fn action_signed_with(relay: &TestRelay, secret: &str) -> StatusCode {
    post(
        &relay.url(ACTION_PATH),
        signed_headers(secret),
        bp_relay::demo::samples::ACTION.to_vec(),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread")]
async fn the_actions_routes_own_secrets_file_rotates_and_never_verifies_the_other_route() {
    let mut mounted = MountedSecret::new(ACTIONS_OLD);
    let file = mounted.file().display().to_string();
    let relay = spawn_relay(RelayOptions::default().secrets(&[PROCESSES]).flags(&[
        "--actions-signing-secrets-file",
        &file,
        "--signing-secrets-grace",
        "4s",
    ]))
    .await;
    assert_eq!(
        action_signed_with(&relay, ACTIONS_OLD).await,
        StatusCode::OK
    );
    assert_eq!(
        action_signed_with(&relay, PROCESSES).await,
        StatusCode::UNAUTHORIZED,
        "the business-processes route's secret does not verify on the actions route"
    );

    mounted.update(ACTIONS_NEW);
    eventually(
        "the actions route's new secret to verify",
        Duration::from_secs(10),
        || async { action_signed_with(&relay, ACTIONS_NEW).await == StatusCode::OK },
    )
    .await;
    assert_eq!(
        action_signed_with(&relay, ACTIONS_OLD).await,
        StatusCode::OK,
        "the replaced secret is valid during the grace"
    );
    for secret in [ACTIONS_NEW, ACTIONS_OLD] {
        assert_eq!(
            status_signed_with(&relay, secret, "crossed").await,
            StatusCode::UNAUTHORIZED,
            "the actions route's secret never verifies on the business-processes route"
        );
    }
    assert_eq!(
        status_signed_with(&relay, PROCESSES, "own").await,
        StatusCode::OK
    );
    eventually(
        "the actions route's old secret to be refused after the grace",
        Duration::from_secs(10),
        || async { action_signed_with(&relay, ACTIONS_OLD).await == StatusCode::UNAUTHORIZED },
    )
    .await;
    assert_eq!(
        relay
            .metrics()
            .await
            .get("bp_relay_signing_secrets_reloads_total"),
        Some(1.0)
    );
    relay.stop().await;
}
