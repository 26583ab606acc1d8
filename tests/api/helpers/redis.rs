//! A Redis server of one test's own (scripts/redis.sh on a free port, in a temporary
//! directory), for the shared replay guard. Stopped on drop.

use std::{path::PathBuf, process::Command};

use super::{broker::run_script, free_port};

/// The password of a [`DedicatedRedis`] started with one.
const REDIS_PASSWORD: &str = "replay-store-pw";

pub struct DedicatedRedis {
    port: u16,
    data_dir: tempfile::TempDir,
    password_file: Option<PathBuf>,
}

impl DedicatedRedis {
    /// Starts a fresh server that requires [`REDIS_PASSWORD`], and waits until it answers.
    pub async fn start() -> DedicatedRedis {
        let data_dir = tempfile::tempdir().unwrap();
        let password_file = data_dir.path().join("password");
        std::fs::write(&password_file, REDIS_PASSWORD).unwrap();
        let redis = DedicatedRedis {
            port: free_port(),
            data_dir,
            password_file: Some(password_file),
        };
        redis.restart().await;
        redis
    }

    /// The `--replay-store` URL (without the password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A file holding the password, for `--replay-store-password-file`.
    pub fn password_file(&self) -> String {
        self.password_file
            .as_ref()
            .expect("started with a password")
            .display()
            .to_string()
    }

    /// Starts it again after [`DedicatedRedis::stop`] (empty: nothing is persisted).
    pub async fn restart(&self) {
        let mut args = vec![
            "start".to_owned(),
            "--port".to_owned(),
            self.port.to_string(),
        ];
        if let Some(file) = &self.password_file {
            args.extend(["--password-file".to_owned(), file.display().to_string()]);
        }
        self.script(args).await;
    }

    /// Stops it and waits until the process is gone.
    pub async fn stop(&self) {
        self.script(vec!["stop".to_owned()]).await;
    }

    async fn script(&self, args: Vec<String>) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_script(script(), &args, self.data_dir.path()).await;
    }
}

impl Drop for DedicatedRedis {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .output();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/redis.sh")
}
