//! The `bp-relay` binary run as an operator runs it, with its JSON log lines collected.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::eventually;

/// A running `bp-relay` process. Killed on drop.
pub struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts the binary with `args` (JSON logs at info) and extra environment.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bp-relay"))
            .args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bp-relay");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn Read + Send>; 2] = [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
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
        eventually(&format!("the relay to log {message:?}"), Duration::from_secs(30), || {
            found = self.logs.lock().unwrap().iter().find_map(|line| {
                let json: serde_json::Value = serde_json::from_str(line).ok()?;
                if !json["message"].as_str()?.starts_with(message) {
                    return None;
                }
                json[field].as_str().map(str::to_owned)
            });
            let done = found.is_some();
            async move { done }
        })
        .await;
        found.unwrap()
    }

    /// Waits for the startup line; returns the (ingress, admin) addresses.
    pub async fn started(&self) -> (String, String) {
        (self.logged("bp-relay started.", "ingress").await, self.logged("bp-relay started.", "admin").await)
    }

    /// Sends a signal (`TERM`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits, polling, for the exit code; fails after `within`.
    pub async fn exit_code(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < deadline, "bp-relay did not exit within {within:?}:\n{}", self.all_logs());
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
    }
}
