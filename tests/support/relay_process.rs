//! The `bp-relay` binary run as an operator runs it, for the integration tests and the fault
//! matrix: a child process with JSON logs at info, its output kept line by line (and copied to a
//! file as it comes, if asked), its addresses read from its startup line, signalled, and waited
//! for with a bound until it exits. Killed on drop, so a failing test leaves no relay behind.

use std::{
    ffi::OsStr,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use super::wait::{blocking, within};

/// The binary under test (the profile of this test build).
const BIN: &str = env!("CARGO_BIN_EXE_bp-relay");

/// How long the relay may take to log a line a test waits for: its startup line comes after it
/// has read its configuration and bound its listeners, the topics line after Kafka answered.
const LOG_BOUND: Duration = Duration::from_secs(30);

/// Its log message once it listens, with the `ingress` and `admin` addresses as fields.
const STARTED: &str = "bp-relay started.";

/// Its log message once it has confirmed its topics: deliveries are let in from then on.
const TOPICS_FOUND: &str = "Kafka topics found";

/// How many lines of its output a failure message quotes.
const TAIL_LINES: usize = 20;

/// A signal for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: drain and exit, as Kubernetes stops it.
    Term,
    /// SIGINT: the same, from a terminal.
    Int,
    /// SIGKILL: gone at once.
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Int => "INT",
            Signal::Kill => "KILL",
        }
    }
}

/// A running `bp-relay` process.
pub struct RelayProcess {
    child: Child,
    output: Arc<Output>,
}

impl RelayProcess {
    /// Starts the binary with `args` (JSON logs at info) and extra environment.
    pub fn spawn<A>(args: A, env: &[(&str, &str)]) -> RelayProcess
    where
        A: IntoIterator,
        A::Item: AsRef<OsStr>,
    {
        RelayProcess::start(args, env, None)
    }

    /// Starts the binary as [`RelayProcess::spawn`] does, also writing its output to `log` as it
    /// comes: the file outlives the test, for a reader of a failed run.
    pub fn spawn_logging_to<A>(args: A, env: &[(&str, &str)], log: &Path) -> RelayProcess
    where
        A: IntoIterator,
        A::Item: AsRef<OsStr>,
    {
        let file = File::create(log).unwrap_or_else(|error| panic!("{}: {error}", log.display()));
        RelayProcess::start(args, env, Some(file))
    }

    fn start<A>(args: A, env: &[(&str, &str)], file: Option<File>) -> RelayProcess
    where
        A: IntoIterator,
        A::Item: AsRef<OsStr>,
    {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bp-relay");
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        let output = Arc::new(Output {
            lines: Mutex::default(),
            file: file.map(Mutex::new),
            open_streams: AtomicUsize::new(streams.len()),
        });
        for stream in streams {
            let output = output.clone();
            std::thread::spawn(move || output.collect(stream));
        }
        RelayProcess { child, output }
    }

    /// Waits for the log line whose `message` starts with `message`; returns its `field`. Fails
    /// at once if the relay exits without logging it.
    pub async fn logged(&self, message: &str, field: &str) -> String {
        let mut found = None;
        let waited = within(LOG_BOUND, || {
            // Closed before the search: then every line it ever wrote is searched.
            let closed = self.output.closed();
            found = self.output.find(message, field);
            assert!(
                found.is_some() || !closed,
                "the relay exited without logging {message:?}:\n{}",
                self.log_tail()
            );
            let done = found.is_some();
            async move { done }
        })
        .await;
        assert!(
            waited.is_some(),
            "the relay did not log {message:?} within {LOG_BOUND:?}:\n{}",
            self.log_tail()
        );
        found.expect("found when the wait ended")
    }

    /// Waits until the relay listens; returns the (ingress, admin) addresses. Deliveries may
    /// still get 503 `starting` until it has confirmed its topics (see [`RelayProcess::started`]).
    pub async fn listening(&self) -> (SocketAddr, SocketAddr) {
        let address = |text: String| {
            text.parse()
                .unwrap_or_else(|error| panic!("address {text:?}: {error}"))
        };
        (
            address(self.logged(STARTED, "ingress").await),
            address(self.logged(STARTED, "admin").await),
        )
    }

    /// Waits until the relay listens and has confirmed its topics; returns the (ingress, admin)
    /// addresses.
    pub async fn started(&self) -> (SocketAddr, SocketAddr) {
        let addresses = self.listening().await;
        self.logged(TOPICS_FOUND, "message").await;
        addresses
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let status = Command::new("kill")
            .args([format!("-{}", signal.name()), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{} of the relay failed",
            signal.name()
        );
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the relay")
    }

    /// Waits until it has exited and its output is read to the end; returns how it exited.
    /// Kills it and fails after `bound`.
    pub async fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let mut status = None;
        let output = self.output.clone();
        let waited = within(bound, || {
            status = self.child.try_wait().expect("wait for the relay");
            let done = status.is_some() && output.closed();
            async move { done }
        })
        .await;
        if waited.is_none() {
            let _ = self.child.kill();
            panic!(
                "the relay did not exit within {bound:?} (killed now):\n{}",
                self.log_tail()
            );
        }
        status.expect("exited when the wait ended")
    }

    /// SIGTERM, then [`RelayProcess::wait_exit`]: how it exited after draining.
    pub async fn stop(&mut self, bound: Duration) -> ExitStatus {
        self.signal(Signal::Term);
        self.wait_exit(bound).await
    }

    /// Everything the process printed so far, stdout and stderr, line by line.
    pub fn logs(&self) -> String {
        self.output.lines.lock().unwrap().join("\n")
    }

    /// The end of its output, for failure messages.
    pub fn log_tail(&self) -> String {
        let lines = self.output.lines.lock().unwrap();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` to its end (on a blocking thread): (exit code, stdout, stderr).
pub async fn run_to_end<A>(args: A) -> (i32, String, String)
where
    A: IntoIterator,
    A::Item: AsRef<OsStr>,
{
    let mut command = Command::new(BIN);
    command.args(args);
    let output = blocking(move || command.output())
        .await
        .expect("run bp-relay");
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What the process printed, collected by one thread per stream.
struct Output {
    lines: Mutex<Vec<String>>,
    /// A copy of every line, if the test keeps one.
    file: Option<Mutex<File>>,
    /// Streams not yet read to their end.
    open_streams: AtomicUsize,
}

impl Output {
    /// Reads `stream` line by line to its end (the process exited or closed it).
    fn collect(&self, stream: impl Read) {
        let mut reader = BufReader::new(stream);
        let mut bytes = Vec::new();
        while reader
            .read_until(b'\n', &mut bytes)
            .is_ok_and(|read| read > 0)
        {
            let line = String::from_utf8_lossy(&bytes)
                .trim_end_matches('\n')
                .to_owned();
            if let Some(file) = &self.file {
                let _ = writeln!(file.lock().unwrap(), "{line}");
            }
            self.lines.lock().unwrap().push(line);
            bytes.clear();
        }
        self.open_streams.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether every stream was read to its end: nothing more will come.
    fn closed(&self) -> bool {
        self.open_streams.load(Ordering::SeqCst) == 0
    }

    /// The `field` of the first JSON line whose `message` starts with `message`.
    fn find(&self, message: &str, field: &str) -> Option<String> {
        self.lines.lock().unwrap().iter().find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            if !json["message"].as_str()?.starts_with(message) {
                return None;
            }
            json[field].as_str().map(str::to_owned)
        })
    }
}
