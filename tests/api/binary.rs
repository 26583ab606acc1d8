//! The `bp-relay` binary as an operator runs it: exit codes on bad configuration, `check-config`,
//! the SIGTERM drain, the embedded quick start with `bp-relay sign`, and logs free of secrets
//! and bodies.

use std::{net::SocketAddr, time::Duration};

use bp_relay::demo::samples;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use rdkafka::Message;

use crate::helpers::*;

/// The flags of a relay on `topics` with the test secret, on port 0, as a child process.
fn child_args(topics: &Topics) -> RelayArgs {
    topics.args().signing_secrets(&[SECRET]).on_free_ports()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_64_with_one_line_before_binding() {
    // The ingress port is taken: a relay that bound before checking its configuration would
    // exit 71 instead.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--signing-secrets", "s", "--ack-timeout", "5s"],
            "--ack-timeout",
        ),
        (&[], "--signing-secrets"),
        (
            &["--signing-secrets-file", "/nonexistent/secrets"],
            "/nonexistent/secrets",
        ),
        (
            &[
                "--signing-secrets",
                "s",
                "--kafka-option",
                "no.such.property=1",
            ],
            "no.such.property",
        ),
        (
            &["--signing-secrets", "s", "--kafka-option", "linger.ms=1"],
            "--kafka-linger",
        ),
        (
            &["--signing-secrets", "s", "--kafka-option", "acks=1"],
            "--kafka-option acks is reserved",
        ),
    ];
    for (case, named) in cases {
        let args = RelayArgs::new()
            .brokers("127.0.0.1:9")
            .flag("--listen", &listen)
            .flag("--admin-listen", "127.0.0.1:0")
            .args(case.iter().copied());
        let (code, _stdout, stderr) = run_to_end(&args).await;
        assert_eq!(code, 64, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("bp-relay"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line expected:\n{stderr}");
        assert!(
            lines[0].contains(named),
            "{args:?}: the line names {named:?}: {stderr}"
        );
        assert!(
            !stderr.contains("\"s\""),
            "the secret is not echoed: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_flag_or_malformed_value_exits_64_with_clap_s_message() {
    let (code, _stdout, stderr) = run_to_end(&["--bad-flag"]).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.starts_with("error:") && stderr.contains("'--bad-flag'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Usage:") && stderr.lines().count() > 1,
        "clap's whole message, with the usage line: {stderr}"
    );

    let (code, _stdout, stderr) = run_to_end(
        &RelayArgs::new()
            .brokers("127.0.0.1:9")
            .signing_secrets(&["s"])
            .flag("--listen", "not-an-address"),
    )
    .await;
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.starts_with("error:")
            && stderr.contains("not-an-address")
            && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"s\""),
        "the secret is not echoed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_accepts_a_good_configuration_and_refuses_a_bad_one_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, "whsec_a\nwhsec_b\n").unwrap();
    let secrets = secrets.to_str().unwrap();
    // Port 9 (discard): nothing answers there, and check-config must not need it to.
    let flags = RelayArgs::new()
        .brokers("127.0.0.1:9")
        .flag("--signing-secrets-file", secrets);
    let args = flags.clone().subcommand("check-config");
    let (code, stdout, stderr) = run_to_end(&args).await;
    assert_eq!(code, 0, "{args:?}: {stderr}");
    assert_eq!(stdout.trim(), "bp-relay: configuration OK", "{args:?}");
    // The relay's flags come after the subcommand: before it they would be the relay's own, so
    // the mix is refused rather than half applied.
    let flags_first = flags.clone().args(["check-config"]);
    let (code, _stdout, stderr) = run_to_end(&flags_first).await;
    assert_eq!(code, 64, "{flags_first:?}: {stderr}");
    let with_option = |option: &str| args.clone().flag("--kafka-option", option);

    // librdkafka refuses the value of a property it knows.
    let (code, _stdout, stderr) = run_to_end(&with_option("socket.keepalive.enable=banana")).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("socket.keepalive.enable"), "{stderr}");
    // A property the relay sets itself is refused, naming the flag to use.
    let (code, _stdout, stderr) = run_to_end(&with_option("linger.ms=20")).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("linger.ms") && stderr.contains("--kafka-linger"),
        "{stderr}"
    );
    // Other spellings librdkafka reads as a reserved property, and its test settings.
    for (option, named) in [
        (
            "topic.message.timeout.ms=0",
            "--kafka-option topic.message.timeout.ms (librdkafka reads it as message.timeout.ms) is reserved",
        ),
        (
            "topic.partitioner=random",
            "--kafka-option topic.partitioner (librdkafka reads it as partitioner) is reserved",
        ),
        (
            "test.mock.num.brokers=3",
            "--kafka-option test.mock.num.brokers is reserved",
        ),
        (
            "topic.delivery.timeout.ms=1",
            "(librdkafka reads it as message.timeout.ms) is reserved",
        ),
    ] {
        let (code, stdout, stderr) = run_to_end(&with_option(option)).await;
        assert_eq!((code, stdout.as_str()), (64, ""), "{option}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{option}: one line: {stderr}");
        assert!(lines[0].contains(named), "{option}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_topics_are_named_at_startup_with_exit_69() {
    let topics = Topics::create(&bootstrap(), 1, &[]).await;
    let absent = unique("absent");
    let args = RelayArgs::new()
        .brokers(&bootstrap())
        .topics(&topics.processes.name, &absent, &topics.dead_letter.name)
        .signing_secrets(&[SECRET])
        .on_free_ports()
        .flag("--startup-timeout", "2s");
    let (code, _stdout, stderr) = run_to_end(&args).await;
    assert_eq!(code, 69, "{stderr}");
    assert!(
        stderr.contains(&absent) && stderr.contains("missing"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&topics.processes.name),
        "only missing topics are named: {stderr}"
    );
}

/// The in-flight gauge of a relay's admin listener.
async fn in_flight(admin: SocketAddr) -> f64 {
    scrape(admin)
        .await
        .get("bp_relay_inflight_requests")
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_answers_every_request_in_flight_and_every_2xx_is_in_kafka() {
    const HELD: usize = 10;
    let topics = Topics::create(&bootstrap(), 3, &[]).await;
    // The whole budget: the held requests must be finished within it.
    let args = child_args(&topics).flag("--ack-timeout", "4900ms");
    let mut process = RelayProcess::spawn(&args, &[]);
    let (ingress, admin) = process.started().await;

    // Requests the signal catches in flight: headers and half the body sent, the rest held back.
    let mut held = Vec::new();
    for n in 0..HELD {
        held.push(
            hold(
                ingress,
                PROCESS_PATH,
                signed_headers(SECRET),
                process_body(&format!("drain-held-{n}")),
            )
            .await,
        );
    }
    eventually(
        "the held requests to be in flight",
        Duration::from_secs(10),
        || async { in_flight(admin).await >= HELD as f64 },
    )
    .await;
    // And a burst racing the signal: each is accepted (and then answered) or refused.
    let racing: Vec<_> = (0..20)
        .map(|n| {
            let mut request = http::Request::post(format!("http://{ingress}{PROCESS_PATH}"))
                .body(Full::new(Bytes::from(process_body(&format!(
                    "drain-racing-{n}"
                )))))
                .unwrap();
            *request.headers_mut() = signed_headers(SECRET);
            tokio::spawn(try_send(request))
        })
        .collect();
    process.signal(Signal::Term);
    eventually(
        "the relay to start draining",
        Duration::from_secs(10),
        || async {
            admin_get(admin, "/readyz")
                .await
                .text()
                .contains("draining")
        },
    )
    .await;

    let mut acked = Vec::new();
    for request in held {
        let answer = request
            .finish()
            .await
            .expect("a request in flight at SIGTERM is answered");
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "a request in flight at SIGTERM is made durable: {}",
            answer.text()
        );
        acked.push(answer.json());
    }
    // Racing requests the relay had accepted are answered; ones that raced the listener's
    // closing may see a refused or reset connection (the sender retries those). None may see a
    // 2xx that is not in Kafka.
    for request in racing {
        let Ok(answer) = request.await.unwrap() else {
            continue;
        };
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "an answered request is durable: {}",
            answer.text()
        );
        acked.push(answer.json());
    }
    assert_eq!(
        process.wait_exit(Duration::from_secs(25)).await.code(),
        Some(0),
        "{}",
        process.logs()
    );
    let records = topics.processes.consume(acked.len()).await;
    for ack in acked {
        let (partition, offset) = (
            ack["partition"].as_i64().unwrap() as i32,
            ack["offset"].as_i64().unwrap(),
        );
        assert!(
            records
                .iter()
                .any(|r| r.partition() == partition && r.offset() == offset),
            "acknowledged record {partition}/{offset} is in Kafka"
        );
    }
    let logs = process.logs();
    assert!(logs.contains("SIGTERM received."), "{logs}");
    assert!(
        !logs.contains(SECRET),
        "logs never contain the signing secret"
    );
    assert!(!logs.contains("\"merchant\""), "logs never contain bodies");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_quick_start_acknowledges_signed_samples_and_refuses_a_wrong_secret() {
    let mut process = RelayProcess::spawn(
        RelayArgs::new()
            .switch("--embedded-kafka")
            .signing_secrets(&["whsec_demo"])
            .on_free_ports(),
        &[],
    );
    let (ingress, _admin) = process.started().await;
    let url = format!("http://{ingress}{PROCESS_PATH}");

    // Without a file, `sign` sends the bp-in-progress sample.
    let (code, stdout, stderr) =
        run_to_end(&["sign", "--secret", "whsec_demo", "--url", &url]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("200 ") && stdout.contains("\"offset\":0"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let minimal = dir.path().join("bp-minimal.json");
    std::fs::write(&minimal, samples::get("bp-minimal.json")).unwrap();
    let (code, stdout, stderr) = run_to_end(&[
        "sign",
        "--secret",
        "whsec_demo",
        "--url",
        &url,
        minimal.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("200 "), "{stdout}");
    let (code, stdout, _stderr) =
        run_to_end(&["sign", "--secret", "not-the-secret", "--url", &url]).await;
    assert_ne!(code, 0);
    assert!(stdout.starts_with("401 "), "{stdout}");
    // A mounted secrets file as the relay reads it: the first secret, without its newline.
    let secrets = dir.path().join("signing-secrets");
    std::fs::write(&secrets, "whsec_demo\nwhsec_next\n").unwrap();
    let (code, stdout, stderr) = run_to_end(&[
        "sign",
        "--secret-file",
        secrets.to_str().unwrap(),
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("200 "), "{stdout}");

    let embedded = process.logged("Embedded Kafka", "bootstrap").await;
    let records = Topic::on(&embedded, "authvia.business-processes")
        .consume(3)
        .await;
    for body in [samples::BUSINESS_PROCESS, samples::get("bp-minimal.json")] {
        assert!(
            records.iter().any(|r| r.payload() == Some(body)),
            "each signed sample is a record"
        );
    }
    process.signal(Signal::Int);
    assert_eq!(
        process.wait_exit(Duration::from_secs(25)).await.code(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_contain_secrets_or_sample_bodies() {
    let topics = Topics::create(&bootstrap(), 1, &[]).await;
    // Every request logged, 2xx answers included.
    let args = child_args(&topics).flag("--access-log", "all");
    let mut process = RelayProcess::spawn(&args, &[]);
    let (ingress, _admin) = process.started().await;
    let url = format!("http://{ingress}{PROCESS_PATH}");
    let bodies: Vec<Vec<u8>> = samples::BUSINESS_PROCESSES
        .iter()
        .map(|(_, body)| body.to_vec())
        .chain([
            fixture("subscription-test-payload.json"),
            br#"{"id": 5, "customer": "Jane Roe"}"#.to_vec(),
        ])
        .collect();
    for body in &bodies {
        assert_eq!(
            post(&url, signed_headers(SECRET), body.clone())
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        post(&url, signed_headers("whsec_wrong_one"), bodies[0].clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(process.stop(Duration::from_secs(25)).await.code(), Some(0));

    let logs = process.logs();
    assert_eq!(
        logs.matches("\"outcome\":\"published\"").count(),
        samples::BUSINESS_PROCESSES.len(),
        "every 2xx was logged:\n{logs}"
    );
    assert!(
        logs.contains("\"outcome\":\"dead_lettered\""),
        "dead letters are logged"
    );
    assert!(
        logs.contains("\"code\":\"signature_mismatch\""),
        "the 401 is logged"
    );
    for secret in [SECRET, "whsec_wrong_one"] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    // Values that only occur inside the bodies: none may reach the logs.
    for needle in [
        "jane.roe@example.com",
        "Jane Roe",
        "+15125550199",
        "Zoë",
        "AVIDM9K3L8",
        "cust-004817",
        "Authvia subscription verification",
        "monthly-invoice-collection",
    ] {
        assert!(
            !logs.contains(needle),
            "body content {needle:?} reached the logs"
        );
    }
}
