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
    server_args: Vec<String>,
}

impl DedicatedRedis {
    /// Starts a fresh server that requires [`REDIS_PASSWORD`], and waits until it answers.
    pub async fn start() -> DedicatedRedis {
        Self::start_with(&[]).await
    }

    /// [`DedicatedRedis::start`] with more redis-server arguments (`--cluster-enabled yes`).
    pub async fn start_with(server_args: &[&str]) -> DedicatedRedis {
        let data_dir = tempfile::tempdir().unwrap();
        let password_file = data_dir.path().join("password");
        std::fs::write(&password_file, REDIS_PASSWORD).unwrap();
        let redis = DedicatedRedis {
            port: free_port(),
            data_dir,
            password_file: Some(password_file),
            server_args: server_args.iter().map(|arg| arg.to_string()).collect(),
        };
        redis.restart().await;
        redis
    }

    /// The `--replay-store` URL (without the password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The `--replay-store` URL of the ACL user `user` (without the password).
    pub fn url_of(&self, user: &str) -> String {
        format!("redis://{user}@127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command as the default user (with the password), e.g. `ACL SETUSER ...`.
    pub async fn command(&self, args: &[&str]) -> redis::Value {
        let url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port);
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("redis {args:?}: {error}"))
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
        for arg in &self.server_args {
            args.extend(["--server-arg".to_owned(), arg.clone()]);
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
