//! The `bp-relay` binary run as an operator runs it, with its JSON log lines collected.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::eventually;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_bp-relay");

/// Runs the binary with `args` to its end (on a blocking thread): (exit code, stdout, stderr).
pub async fn run_to_end(args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run bp-relay");
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `bp-relay` process. Killed on drop.
pub struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts the binary with `args` (JSON logs at info) and extra environment.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bp-relay");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        Process { child, logs }
    }

    /// Waits for the log line whose `message` starts with `message`; returns its `field`.
    pub async fn logged(&self, message: &str, field: &str) -> String {
        let mut found = None;
        eventually(
            &format!("the relay to log {message:?}"),
            Duration::from_secs(30),
            || {
                found = self.logs.lock().unwrap().iter().find_map(|line| {
                    let json: serde_json::Value = serde_json::from_str(line).ok()?;
                    if !json["message"].as_str()?.starts_with(message) {
                        return None;
                    }
                    json[field].as_str().map(str::to_owned)
                });
                let done = found.is_some();
                async move { done }
            },
        )
        .await;
        found.unwrap()
    }

    /// Waits until the relay listens; returns the (ingress, admin) addresses. Deliveries may
    /// still get 503 `starting` until it has confirmed its topics (see [`Process::started`]).
    pub async fn listening(&self) -> (SocketAddr, SocketAddr) {
        let address = |text: String| {
            text.parse()
                .unwrap_or_else(|error| panic!("address {text:?}: {error}"))
        };
        (
            address(self.logged("bp-relay started.", "ingress").await),
            address(self.logged("bp-relay started.", "admin").await),
        )
    }

    /// Waits until the relay listens and has confirmed its topics; returns the (ingress, admin)
    /// addresses.
    pub async fn started(&self) -> (SocketAddr, SocketAddr) {
        let addresses = self.listening().await;
        self.logged("Kafka topics found", "message").await;
        addresses
    }

    /// Sends a signal (`TERM`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits, polling, for the exit code; fails after `within`.
    pub async fn exit_code(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(
                Instant::now() < deadline,
                "bp-relay did not exit within {within:?}:\n{}",
                self.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the process printed so far.
    pub fn all_logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
