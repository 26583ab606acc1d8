//! The `bp-relay` binary as an operator runs it: exit codes on bad configuration, the SIGTERM
//! drain, the embedded quick start with `bp-relay sign`, and logs free of secrets and bodies.

mod support;

use std::{process::Command, time::Duration};

use http::StatusCode;
use support::{process::Process, *};

const BIN: &str = env!("CARGO_BIN_EXE_bp-relay");

fn run_to_end(args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).args(args).output().unwrap();
    (output.status.code().unwrap(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_configuration_exits_64_with_one_line_before_binding() {
    let cases: &[&[&str]] = &[
        &["--kafka-brokers", "127.0.0.1:9", "--signing-secrets", "s", "--ack-timeout", "5s"],
        &["--kafka-brokers", "127.0.0.1:9", "--signing-secrets", "s", "--listen", "not-an-address"],
        &["--kafka-brokers", "127.0.0.1:9"],
        &["--kafka-brokers", "127.0.0.1:9", "--signing-secrets-file", "/nonexistent/secrets"],
        &["--kafka-brokers", "127.0.0.1:9", "--signing-secrets", "s", "--kafka-option", "no.such.property=1"],
    ];
    for args in cases {
        let (code, stderr) = run_to_end(args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("bp-relay")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line expected:\n{stderr}");
        assert!(!stderr.contains("\"s\""));
    }
}

#[test]
fn check_config_accepts_a_good_configuration_and_refuses_a_bad_one_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, "whsec_a\nwhsec_b\n").unwrap();
    // Port 9 (discard): nothing answers there, and check-config must not need it to.
    let good = ["--kafka-brokers", "127.0.0.1:9", "--signing-secrets-file", secrets.to_str().unwrap(), "check-config"];
    let output = Command::new(BIN).args(good).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "bp-relay: configuration OK");
    let (code, stderr) = run_to_end(&["--kafka-brokers", "127.0.0.1:9", "--signing-secrets-file", secrets.to_str().unwrap(), "--kafka-option", "linger.ms=banana", "check-config"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("linger.ms"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_topics_are_named_at_startup_with_exit_69() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let absent = unique("absent");
    let mut args = topics.args();
    let actions_flag = args.iter().position(|a| a == "--actions-topic").unwrap();
    args[actions_flag + 1] = absent.clone();
    args.extend(["--startup-timeout".into(), "2s".into(), "--signing-secrets".into(), SECRET.into(), "--listen".into(), "127.0.0.1:0".into(), "--admin-listen".into(), "127.0.0.1:0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stderr) = run_to_end(&args);
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains(&absent) && stderr.contains("missing"), "{stderr}");
    assert!(!stderr.contains(&topics.processes), "only missing topics are named: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_every_2xx_is_in_kafka() {
    let topics = Topics::create(&bootstrap(), 3).await;
    let mut args = topics.args();
    // A long linger keeps requests in flight long enough to be caught by the signal.
    args.extend(["--signing-secrets", SECRET, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--kafka-linger", "1s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::spawn(&args, &[]);
    let (ingress, admin) = process.started().await;

    let mut requests = Vec::new();
    for n in 0..30 {
        let url = format!("http://{ingress}/webhooks/business-processes");
        requests.push(tokio::spawn(async move {
            let body = format!(r#"{{"id":"drain-{n}","partner":"P","merchant":"M","customer":"c","status":"scheduled","expiration":"2026-12-01T00:00:00Z","actions":[],"addresses":[]}}"#);
            let mut request = http::Request::post(url).body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
            *request.headers_mut() = signed_headers(SECRET);
            try_send(request).await
        }));
    }
    let inflight_gauge = || {
        let admin = admin.clone();
        async move {
            let answer = send(http::Request::get(format!("http://{admin}/metrics")).body(Default::default()).unwrap()).await;
            parse_metrics(&answer.text()).get("bp_relay_inflight_requests").copied().unwrap_or(0.0)
        }
    };
    eventually("requests to be in flight", Duration::from_secs(10), || async { inflight_gauge().await >= 10.0 }).await;
    let in_flight_at_signal = inflight_gauge().await;
    process.signal("TERM");

    // Requests the relay had accepted are answered; ones that raced the listener's closing may
    // see a refused or reset connection (the sender retries those). None may see a 2xx that
    // is not in Kafka.
    let mut acked = Vec::new();
    for request in requests {
        let Ok(answer) = request.await.unwrap() else { continue };
        assert_eq!(answer.status, StatusCode::OK, "an answered request is durable: {}", answer.text());
        let ack = answer.json();
        acked.push((ack["partition"].as_i64().unwrap() as i32, ack["offset"].as_i64().unwrap()));
    }
    assert!(acked.len() as f64 >= in_flight_at_signal, "{} answered 2xx, {in_flight_at_signal} were in flight at SIGTERM", acked.len());
    assert_eq!(process.exit_code(Duration::from_secs(25)).await, 0, "{}", process.all_logs());
    let records = consume(&topics.bootstrap, &topics.processes, acked.len());
    for (partition, offset) in acked {
        assert!(
            records.iter().any(|r| rdkafka::Message::partition(r) == partition && rdkafka::Message::offset(r) == offset),
            "acknowledged record {partition}/{offset} is in Kafka"
        );
    }
    let logs = process.all_logs();
    assert!(logs.contains("SIGTERM received."), "{logs}");
    assert!(!logs.contains(SECRET), "logs never contain the signing secret");
    assert!(!logs.contains("\"merchant\""), "logs never contain bodies");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_quick_start_acknowledges_a_signed_sample() {
    let mut process = Process::spawn(&["--embedded-kafka", "--signing-secrets", "whsec_demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], &[]);
    let (ingress, _admin) = process.started().await;
    let sample_path = format!("{}/../shared/spec/samples/bp-in-progress.json", env!("CARGO_MANIFEST_DIR"));
    let url = format!("http://{ingress}/webhooks/business-processes");
    let sign = Command::new(BIN).args(["sign", "--secret", "whsec_demo", "--url", &url, &sample_path]).output().unwrap();
    let stdout = String::from_utf8_lossy(&sign.stdout);
    assert!(sign.status.success(), "{stdout}{}", String::from_utf8_lossy(&sign.stderr));
    assert!(stdout.starts_with("200 ") && stdout.contains("\"offset\":0"), "{stdout}");
    let wrong = Command::new(BIN).args(["sign", "--secret", "not-the-secret", "--url", &url, &sample_path]).output().unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).starts_with("401 "));
    assert!(process.all_logs().contains("Embedded Kafka"));
    process.signal("INT");
    assert_eq!(process.exit_code(Duration::from_secs(25)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_contain_secrets_or_sample_bodies() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let mut args = topics.args();
    args.extend(["--signing-secrets", SECRET, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::spawn(&args, &[]);
    let (ingress, _admin) = process.started().await;
    let url = format!("http://{ingress}/webhooks/business-processes");
    let bodies: Vec<Vec<u8>> = ["bp-minimal.json", "bp-in-progress.json", "bp-failed-expired.json", "bp-resolved-uuid-v5.json"]
        .into_iter()
        .map(sample)
        .chain([fixture("subscription-test-payload.json"), br#"{"id": 5, "customer": "Jane Roe"}"#.to_vec()])
        .collect();
    for body in &bodies {
        assert_eq!(post(&url, signed_headers(SECRET), body.clone()).await.status, StatusCode::OK);
    }
    assert_eq!(post(&url, signed_headers("whsec_wrong_one"), bodies[0].clone()).await.status, StatusCode::UNAUTHORIZED);
    process.signal("TERM");
    assert_eq!(process.exit_code(Duration::from_secs(25)).await, 0);

    let logs = process.all_logs();
    assert!(logs.contains("Request answered."), "the run did log requests");
    for secret in [SECRET, "whsec_wrong_one"] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    // Values that only occur inside the bodies: none may reach the logs.
    for needle in ["jane.roe@example.com", "Jane Roe", "+15125550199", "Zoë", "AVIDM9K3L8", "cust-004817", "Authvia subscription verification", "monthly-invoice-collection"] {
        assert!(!logs.contains(needle), "body content {needle:?} reached the logs");
    }
}
