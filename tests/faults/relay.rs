//! The `bp-relay` binary under test in a scenario: a child process
//! ([`RelayProcess`](crate::support::relay_process::RelayProcess)) on the scenario's cluster,
//! with its log kept in a file per scenario, and what the scenario reads from its admin
//! listener. Killed on drop.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use crate::{
    support::{relay_args::RelayArgs, relay_process::RelayProcess},
    verdict::LateReports,
};

/// The signing secret of every relay here.
pub const SECRET: &str = "whsec_faults_4b1e";

/// The relay's log message when a producer failed fatally (src/kafka/supervisor.rs).
const PRODUCER_REPLACED: &str = "The Kafka producer failed fatally; replacing it.";

/// A running relay.
pub struct Relay {
    /// The child process: its signals, exit and log.
    pub process: RelayProcess,
    /// The webhook ingress.
    pub ingress: SocketAddr,
    /// The admin listener (/readyz, /metrics).
    pub admin: SocketAddr,
    /// Its `--ack-timeout`: the bound on every answer.
    pub ack_timeout: Duration,
}

impl Relay {
    /// Starts the binary on `bootstrap` with `flags` (topics, timeouts...) on free ports,
    /// logging to `log` what `log_filter` (its RUST_LOG) lets through, and waits for its
    /// startup line.
    pub async fn start(
        bootstrap: &str,
        flags: &RelayArgs,
        log: PathBuf,
        log_filter: &str,
    ) -> Relay {
        let ack_timeout = flags
            .value_of("--ack-timeout")
            .map_or(Duration::from_secs(4), |value| {
                humantime::parse_duration(value)
                    .unwrap_or_else(|error| panic!("--ack-timeout {value}: {error}"))
            });
        let args = RelayArgs::new()
            .brokers(bootstrap)
            .signing_secrets(&[SECRET])
            .on_free_ports()
            .args(flags.clone());
        let process = RelayProcess::spawn_logging_to(&args, &[("RUST_LOG", log_filter)], &log);
        let (ingress, admin) = process.listening().await;
        Relay {
            process,
            ingress,
            admin,
            ack_timeout,
        }
    }

    /// The URL of the business-process route.
    pub fn process_url(&self) -> String {
        format!("http://{}/webhooks/business-processes", self.ingress)
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn ready(&self) -> bool {
        self.admin_get("/readyz")
            .await
            .is_some_and(|(status, _)| status == StatusCode::OK)
    }

    /// The value of one series of `/metrics`, labels included as the exposition writes them
    /// (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        series_value(&self.metrics_text().await, series)
    }

    /// Its `/metrics` exposition (empty if it does not answer).
    async fn metrics_text(&self) -> String {
        self.admin_get("/metrics")
            .await
            .map(|(_, text)| text)
            .unwrap_or_default()
    }

    /// Its delivery reports that came after the request had been answered 5xx
    /// (`bp_relay_late_reports_total`; all 0 from a relay without the counter).
    pub async fn late_reports(&self) -> LateReports {
        let text = self.metrics_text().await;
        let count = |outcome: &str| {
            sum_of_series(
                &text,
                "bp_relay_late_reports_total",
                &format!("outcome=\"{outcome}\""),
            ) as u64
        };
        LateReports {
            landed: count("landed"),
            failed: count("failed"),
            timed_out: count("timed_out"),
            untracked: count("untracked"),
        }
    }

    /// What its redrive memory did (issue 17), for the scenario's notes: redrives answered from
    /// a stored record, written again, or told to wait; original signings accepted outside the
    /// window; entries forgotten because the memory was full.
    pub async fn redrive_note(&self) -> String {
        let text = self.metrics_text().await;
        let answers = |answer: &str| {
            sum_of_series(
                &text,
                "bp_relay_redrive_answers_total",
                &format!("answer=\"{answer}\""),
            )
        };
        format!(
            "relay's redrive answers stored {} / written {} / pending {}, original signings accepted past the window {}, forgotten {}",
            answers("stored"),
            answers("written"),
            answers("pending"),
            series_value(&text, "bp_relay_redrive_original_signings_total"),
            series_value(&text, "bp_relay_redrive_forgotten_total")
        )
    }

    /// How many times its log says it replaced its producer after a fatal error.
    pub fn producer_replacements(&self) -> usize {
        self.process
            .logs()
            .lines()
            .filter(|line| line.contains(PRODUCER_REPLACED))
            .count()
    }

    async fn admin_get(&self, path: &str) -> Option<(StatusCode, String)> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = Request::get(format!("http://{}{path}", self.admin))
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
            .await
            .ok()?
            .ok()?;
        let status = response.status();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The value of one series (name and labels exactly as exposed) in a Prometheus text
/// exposition, 0 if absent.
fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of the series of metric `name` whose labels include `label` (`key="value"`), in a
/// Prometheus text exposition: whatever other labels the series carry.
fn sum_of_series(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            labels
                .split(',')
                .any(|pair| pair == label)
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum_of_series;

    #[test]
    fn a_labelled_counter_is_summed_over_its_other_labels() {
        let text = "# TYPE bp_relay_late_reports_total counter\n\
            bp_relay_late_reports_total{outcome=\"landed\",route=\"a\"} 3\n\
            bp_relay_late_reports_total{route=\"b\",outcome=\"landed\"} 2\n\
            bp_relay_late_reports_total{outcome=\"timed_out\"} 7\n\
            bp_relay_late_reports_total_other{outcome=\"landed\"} 100\n";
        let sum = |outcome: &str| {
            sum_of_series(
                text,
                "bp_relay_late_reports_total",
                &format!("outcome=\"{outcome}\""),
            )
        };
        assert_eq!(
            (sum("landed"), sum("timed_out"), sum("untracked")),
            (5.0, 7.0, 0.0)
        );
    }
}
