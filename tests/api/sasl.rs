//! Kafka over TLS and SASL, for real: a broker of the test's own with a SASL_SSL listener
//! (certificates made by scripts/kafka.sh, a PLAIN user in its JAAS configuration, a
//! SCRAM-SHA-512 user created by Kafka's storage tool). The relay publishes with either; a wrong
//! password makes startup fail with a line saying so; the password never shows.

use bp_relay::demo::samples;
use http::StatusCode;

use crate::helpers::*;

const PASSWORD: &str = "sasl-ssl-test-password-7f3c";

/// The relay's flags for the SASL_SSL listener of `broker`, as `user` with `password`.
fn sasl_args(
    broker: &DedicatedBroker,
    topics: &Topics,
    mechanism: &str,
    user: &str,
    password_file: &str,
) -> RelayArgs {
    RelayArgs::new()
        .brokers(&broker.sasl_ssl_bootstrap())
        .topics(
            &topics.processes.name,
            &topics.actions.name,
            &topics.dead_letter.name,
        )
        .flag("--kafka-security-protocol", "sasl_ssl")
        .flag("--kafka-sasl-mechanism", mechanism)
        .flag("--kafka-sasl-username", user)
        .flag("--kafka-sasl-password-file", password_file)
        .flag(
            "--kafka-ssl-ca-location",
            &broker.ca_file().display().to_string(),
        )
        .signing_secrets(&[SECRET])
        .on_free_ports()
}

fn password_file(dir: &tempfile::TempDir, password: &str) -> String {
    let path = dir.path().join("password");
    std::fs::write(&path, password).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_publishes_over_sasl_ssl_with_plain_and_scram_and_never_shows_the_password() {
    let broker = DedicatedBroker::with_sasl_ssl(PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = password_file(&dir, PASSWORD);
    for (mechanism, user) in [("PLAIN", "relay-plain"), ("SCRAM-SHA-512", "relay-scram")] {
        let topics = Topics::create(&broker.bootstrap(), 1, &[]).await;
        let args = sasl_args(&broker, &topics, mechanism, user, &password_file);
        let process = RelayProcess::spawn(&args, &[]);
        let (ingress, _admin) = process.started().await;
        let answer = post(
            &format!("http://{ingress}{PROCESS_PATH}"),
            signed_headers(SECRET),
            samples::BUSINESS_PROCESS.to_vec(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{mechanism}: {}",
            answer.text()
        );
        let records = topics.processes.consume(1).await;
        assert_eq!(
            rdkafka::Message::payload(&records[0]),
            Some(samples::BUSINESS_PROCESS),
            "{mechanism}"
        );
        assert!(
            !process.logs().contains(PASSWORD),
            "{mechanism}: the password is in the logs"
        );
    }

    // --help and check-config never print it either, even from the environment.
    let (_, help, _) = run_to_end(&["--help"]).await;
    assert!(!help.contains(PASSWORD));
    let topics = Topics::named(&broker.bootstrap());
    let args = sasl_args(&broker, &topics, "PLAIN", "relay-plain", &password_file)
        .subcommand("check-config");
    let (code, stdout, stderr) = run_to_end(&args).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_startup_with_exit_69_and_says_why() {
    let broker = DedicatedBroker::with_sasl_ssl(PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = password_file(&dir, "not-the-password");
    let topics = Topics::create(&broker.bootstrap(), 1, &[]).await;
    let args = sasl_args(&broker, &topics, "SCRAM-SHA-512", "relay-scram", &wrong)
        .flag("--startup-timeout", "5s");
    let (code, stdout, stderr) = run_to_end(&args).await;
    assert_eq!(code, 69, "{stdout}{stderr}");
    let last_line = stderr.lines().last().unwrap_or_default();
    assert!(
        last_line.contains("cannot reach Kafka") && last_line.contains("Authentication"),
        "one line that says why: {last_line}"
    );
    assert!(!stdout.contains("not-the-password") && !stderr.contains("not-the-password"));
    assert_eq!(topics.processes.count().await, 0);
}
