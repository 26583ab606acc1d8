//! The shared replay guard (`--replay-store` on a real Redis): a captured set of X-AUTHVIA-*
//! headers cannot carry a second body through another replica, nor after a restart; a store
//! that does not answer fails closed (503, nothing written) and turns readiness false.

use std::time::Duration;

use http::StatusCode;

use crate::helpers::*;

fn with_store(redis: &DedicatedRedis) -> RelayOptions {
    let (url, password_file) = (redis.url(), redis.password_file());
    RelayOptions::default().flags(&[
        "--replay-store",
        &url,
        "--replay-store-password-file",
        &password_file,
    ])
}

async fn ready(relay: &TestRelay) {
    eventually("the relay to be ready", Duration::from_secs(15), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_body_with_the_same_headers_is_refused_by_another_replica_and_after_a_restart() {
    let redis = DedicatedRedis::start().await;
    let first = spawn_relay(with_store(&redis)).await;
    let second = spawn_relay(with_store(&redis)).await;
    ready(&first).await;
    ready(&second).await;
    let headers = signed_headers(SECRET);

    let original = post(
        &first.url(PROCESS_PATH),
        headers.clone(),
        process_body("original"),
    )
    .await;
    assert_eq!(original.status, StatusCode::OK, "{}", original.text());
    let redelivered = post(
        &second.url(PROCESS_PATH),
        headers.clone(),
        process_body("original"),
    )
    .await;
    assert_eq!(
        redelivered.status,
        StatusCode::OK,
        "the same body again is a redelivery, on any replica: {}",
        redelivered.text()
    );
    let forged = post(
        &second.url(PROCESS_PATH),
        headers.clone(),
        process_body("forged"),
    )
    .await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "replayed_signature"),
        "{}",
        forged.text()
    );

    // A relay started after the first delivery (a restart) asks the same store.
    first.stop().await;
    let restarted = spawn_relay(with_store(&redis)).await;
    ready(&restarted).await;
    let forged_again = post(
        &restarted.url(PROCESS_PATH),
        headers.clone(),
        process_body("forged-again"),
    )
    .await;
    assert_eq!(
        forged_again.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        forged_again.text()
    );

    // The same headers on the other route are the same signing, bound to its first route:
    // refused with the other route's body and with the original one, on every replica.
    for (relay, body) in [
        (&second, bp_relay::demo::samples::ACTION.to_vec()),
        (&restarted, process_body("original")),
    ] {
        let other_route = post(&relay.url(ACTION_PATH), headers.clone(), body).await;
        assert_eq!(
            (other_route.status, other_route.code().as_str()),
            (StatusCode::UNAUTHORIZED, "replayed_signature"),
            "{}",
            other_route.text()
        );
    }

    assert_eq!(
        second.topics.processes.count().await,
        1,
        "only the redelivery was written through the second relay"
    );
    assert_eq!(
        restarted.topics.processes.count().await,
        0,
        "nothing written for the forgeries"
    );
    for relay in [&second, &restarted] {
        assert_eq!(
            (
                relay.topics.actions.count().await,
                relay.topics.dead_letter.count().await
            ),
            (0, 0),
            "nothing written on the other route, nor dead-lettered"
        );
    }
    assert_eq!(
        second.metrics().await["bp_relay_signature_failures_total{reason=\"replayed_signature\"}"],
        2.0
    );
    second.stop().await;
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_fails_closed_and_makes_the_relay_unready() {
    let redis = DedicatedRedis::start().await;
    let relay = spawn_relay(with_store(&redis).flags(&["--ack-timeout", "2s"])).await;
    ready(&relay).await;
    assert_eq!(
        relay.send_process(&process_body("before")).await.status,
        StatusCode::OK
    );

    redis.stop().await;
    let during = relay.send_process(&process_body("during")).await;
    assert_eq!(
        (during.status, during.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "replay_store_unavailable"),
        "{}",
        during.text()
    );
    assert_eq!(during.headers["retry-after"], "5");
    eventually(
        "/readyz to say replay_store_down",
        Duration::from_secs(10),
        || async {
            let answer = relay.admin_get("/readyz").await;
            answer.status == StatusCode::SERVICE_UNAVAILABLE
                && answer.text().contains("replay_store_down")
        },
    )
    .await;
    assert_eq!(
        relay.topics.processes.count().await,
        1,
        "nothing written while the store is down"
    );

    redis.restart().await;
    ready(&relay).await;
    let after = relay.send_process(&process_body("after")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_store_password_keeps_the_relay_unready_and_takes_nothing() {
    let redis = DedicatedRedis::start().await;
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-the-password").unwrap();
    let relay = spawn_relay(RelayOptions::default().flags(&[
        "--replay-store",
        &redis.url(),
        "--replay-store-password-file",
        &wrong.path().display().to_string(),
        "--ack-timeout",
        "2s",
    ]))
    .await;
    let answer = relay.send_process(&process_body("refused")).await;
    assert_eq!(
        answer.code(),
        "replay_store_unavailable",
        "{}",
        answer.text()
    );
    assert!(relay
        .admin_get("/readyz")
        .await
        .text()
        .contains("replay_store_down"));
    assert_eq!(relay.topics.processes.count().await, 0);
    relay.stop().await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A relay whose replay store is `redis` as the ACL user `user` with `password`.
fn as_user(
    redis: &DedicatedRedis,
    user: &str,
    password: &str,
    dir: &std::path::Path,
) -> RelayOptions {
    let file = dir.join(user);
    std::fs::write(&file, password).unwrap();
    RelayOptions::default().flags(&[
        "--replay-store",
        &redis.url_of(user),
        "--replay-store-password-file",
        &file.display().to_string(),
        "--ack-timeout",
        "2s",
    ])
}

async fn unready_naming(relay: &TestRelay, named: &str) {
    eventually(
        &format!("/readyz to say replay_store_down naming {named:?}"),
        Duration::from_secs(15),
        || async {
            let answer = relay.admin_get("/readyz").await;
            answer.status == StatusCode::SERVICE_UNAVAILABLE
                && answer.text().contains("replay_store_down")
                && answer.json()["replay_store"]
                    .as_str()
                    .is_some_and(|problem| problem.contains(named))
        },
    )
    .await;
}

async fn refused_and_nothing_written(relay: &TestRelay, what: &str) {
    let answer = relay.send_process(&process_body(what)).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "replay_store_unavailable"),
        "{what}: {}",
        answer.text()
    );
    assert_eq!(relay.topics.processes.count().await, 0, "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_answers_ping_but_refuses_the_guards_set_keeps_the_relay_unready() {
    let redis = DedicatedRedis::start().await;
    let dir = tempfile::tempdir().unwrap();
    // May PING (and INFO), not SET; may SET, but only keys outside the guard's prefix.
    redis
        .command(&[
            "ACL",
            "SETUSER",
            "pinger",
            "on",
            ">pinger-pw",
            "~*",
            "+ping",
            "+info",
        ])
        .await;
    redis
        .command(&[
            "ACL",
            "SETUSER",
            "elsewhere",
            "on",
            ">elsewhere-pw",
            "~other:*",
            "+@all",
        ])
        .await;
    // May SET on every key, but run no script: the redrive memory's lookup is refused.
    redis
        .command(&[
            "ACL",
            "SETUSER",
            "noscripts",
            "on",
            ">noscripts-pw",
            "~*",
            "+@all",
            "-@scripting",
        ])
        .await;
    for (user, password, named) in [
        ("pinger", "pinger-pw", "+set on ~<--replay-store-prefix>:*"),
        (
            "elsewhere",
            "elsewhere-pw",
            "+set on ~<--replay-store-prefix>:*",
        ),
        ("noscripts", "noscripts-pw", "+evalsha +script|load"),
    ] {
        let relay = spawn_relay(as_user(&redis, user, password, dir.path())).await;
        unready_naming(&relay, named).await;
        // Without SET nothing passes the guard (a store that runs no script still guards).
        if user != "noscripts" {
            refused_and_nothing_written(&relay, user).await;
        }
        relay.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_replica_as_the_store_keeps_the_relay_unready() {
    let primary = DedicatedRedis::start().await;
    let replica = DedicatedRedis::start().await;
    replica
        .command(&["CONFIG", "SET", "masterauth", "replay-store-pw"])
        .await;
    replica
        .command(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()])
        .await;
    let relay = spawn_relay(with_store(&replica).flags(&["--ack-timeout", "2s"])).await;
    unready_naming(&relay, "read-only replica").await;
    refused_and_nothing_written(&relay, "replica").await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_out_of_memory_refuses_with_503_and_writes_nothing_until_it_has_room() {
    let redis = DedicatedRedis::start().await;
    let relay = spawn_relay(with_store(&redis).flags(&["--ack-timeout", "2s"])).await;
    ready(&relay).await;
    assert_eq!(
        relay.send_process(&process_body("before")).await.status,
        StatusCode::OK
    );
    // noeviction (Redis' default policy) at a limit below what it holds: every SET is refused.
    redis.command(&["CONFIG", "SET", "maxmemory", "1"]).await;
    unready_naming(&relay, "out of memory").await;
    let during = relay.send_process(&process_body("during")).await;
    assert_eq!(
        (during.status, during.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "replay_store_unavailable"),
        "{}",
        during.text()
    );
    assert_eq!(relay.topics.processes.count().await, 1, "only the first");
    redis.command(&["CONFIG", "SET", "maxmemory", "0"]).await;
    ready(&relay).await;
    assert_eq!(
        relay.send_process(&process_body("after")).await.status,
        StatusCode::OK
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_cluster_as_the_store_is_refused_at_startup_with_one_line() {
    let redis = DedicatedRedis::start_with(&["--cluster-enabled", "yes"]).await;
    let (url, password_file) = (redis.url(), redis.password_file());
    let mut relay = RelayProcess::spawn(
        RelayArgs::new()
            .brokers("127.0.0.1:9")
            .signing_secrets(&["s"])
            .on_free_ports()
            .flag("--replay-store", &url)
            .flag("--replay-store-password-file", &password_file),
        &[],
    );
    let code = relay.wait_exit(Duration::from_secs(20)).await.code();
    assert_eq!(code, Some(64), "{}", relay.logs());
    eventually(
        "the one line naming the cluster",
        Duration::from_secs(5),
        || async {
            relay.logs().lines().any(|line| {
                line.starts_with("bp-relay: --replay-store: the store is a Redis Cluster")
            })
        },
    )
    .await;
    let logs = relay.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.starts_with("bp-relay"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_remembers_a_signing_for_the_window_the_ack_timeout_and_the_clock_skew() {
    let redis = DedicatedRedis::start().await;
    let relay = spawn_relay(with_store(&redis).flags(&[
        "--signature-tolerance",
        "3s",
        "--ack-timeout",
        "2s",
        "--clock-skew",
        "2s",
    ]))
    .await;
    ready(&relay).await;
    let timestamp = unix_now();
    let headers = signed_headers_at(SECRET, "remembered", timestamp);
    let answer = post(&relay.url(PROCESS_PATH), headers, process_body("kept")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let keys = redis.command(&["KEYS", "bp-relay:replay:*"]).await;
    let keys: Vec<String> = redis::from_redis_value(keys).unwrap();
    let signing: Vec<&String> = keys
        .iter()
        .filter(|key| !key.ends_with("readiness-probe"))
        .collect();
    assert_eq!(signing.len(), 1, "{keys:?}");
    let ttl: i64 = redis::from_redis_value(redis.command(&["TTL", signing[0]]).await).unwrap();
    // The window ends after timestamp + 3 s; no replica admits the signing after a further
    // 2 s (the ack timeout) + 2 s (the skew).
    let admitted_until = timestamp + 3 + 1 + 2 + 2;
    assert!(
        unix_now() + ttl >= admitted_until,
        "TTL {ttl} s: forgotten before {admitted_until}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_body_trickled_past_the_windows_end_is_stale_on_another_replica() {
    let redis = DedicatedRedis::start().await;
    let flags = ["--signature-tolerance", "3s"];
    let first = spawn_relay(with_store(&redis).flags(&flags)).await;
    let second = spawn_relay(with_store(&redis).flags(&flags)).await;
    ready(&first).await;
    ready(&second).await;
    let timestamp = unix_now();
    let headers = signed_headers_at(SECRET, "trickled", timestamp);
    let genuine = post(
        &first.url(PROCESS_PATH),
        headers.clone(),
        process_body("genuine"),
    )
    .await;
    assert_eq!(genuine.status, StatusCode::OK, "{}", genuine.text());
    // The captured headers at the window's last second, the forged body after it.
    eventually(
        "the window's last second",
        Duration::from_secs(10),
        || async { unix_now() >= timestamp + 3 },
    )
    .await;
    let held = hold(second.addr, PROCESS_PATH, headers, process_body("forged")).await;
    eventually("the window to end", Duration::from_secs(10), || async {
        unix_now() > timestamp + 3
    })
    .await;
    let forged = held.finish().await.expect("an answer");
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "stale_timestamp"),
        "{}",
        forged.text()
    );
    assert_eq!(second.topics.processes.count().await, 0);
    assert_eq!(second.topics.dead_letter.count().await, 0);
    first.stop().await;
    second.stop().await;
}

/// A delivery Authvia made: where it went, its headers and body.
struct Delivery {
    path: &'static str,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// Every record in `topics`, with the route its topic stands for (`None`: the dead letters).
async fn every_record(topics: &Topics) -> Vec<(Option<&'static str>, Vec<u8>)> {
    let mut records = Vec::new();
    for (route, topic) in [
        (Some(PROCESS_PATH), &topics.processes),
        (Some(ACTION_PATH), &topics.actions),
        (None, &topics.dead_letter),
    ] {
        let count = usize::try_from(topic.count().await).unwrap();
        for record in topic.consume(count).await {
            let value = rdkafka::Message::payload(&record)
                .unwrap_or_default()
                .to_vec();
            records.push((route, value));
        }
    }
    records
}

/// The attacker's moves with every captured delivery, against each relay: the other route
/// with the genuine body and with a forged one, the same route with a forged body (each must be
/// 401 replayed_signature), and an exact duplicate (a redelivery: 200).
async fn attack(relays: &[&TestRelay], captured: &[Delivery]) -> usize {
    let forged = process_body("forged-by-the-attacker");
    let mut moves = 0;
    for relay in relays {
        for delivery in captured {
            let other = if delivery.path == PROCESS_PATH {
                ACTION_PATH
            } else {
                PROCESS_PATH
            };
            for (path, body) in [
                (other, delivery.body.clone()),
                (other, forged.clone()),
                (delivery.path, forged.clone()),
            ] {
                let answer = post(&relay.url(path), delivery.headers.clone(), body).await;
                assert_eq!(
                    (answer.status, answer.code().as_str()),
                    (StatusCode::UNAUTHORIZED, "replayed_signature"),
                    "{path}: {}",
                    answer.text()
                );
                moves += 1;
            }
            let duplicate = post(
                &relay.url(delivery.path),
                delivery.headers.clone(),
                delivery.body.clone(),
            )
            .await;
            assert_eq!(duplicate.status, StatusCode::OK, "{}", duplicate.text());
        }
    }
    moves
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_sharing_a_store_write_only_authvias_bodies_on_their_routes_across_a_restart() {
    let redis = DedicatedRedis::start().await;
    let first = spawn_relay(with_store(&redis)).await;
    let second = spawn_relay(with_store(&redis)).await;
    ready(&first).await;
    ready(&second).await;
    let mut captured = Vec::new();
    for n in 0..4 {
        let (path, body) = if n % 2 == 0 {
            (PROCESS_PATH, process_body(&format!("genuine-{n}")))
        } else {
            let mut action = bp_relay::demo::samples::ACTION.to_vec();
            action.extend(std::iter::repeat_n(b' ', n));
            (ACTION_PATH, action)
        };
        let headers = signed_headers(SECRET);
        let relay = if n < 2 { &first } else { &second };
        let answer = post(&relay.url(path), headers.clone(), body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        captured.push(Delivery {
            path,
            headers,
            body,
        });
    }
    let mut moves = attack(&[&first, &second], &captured).await;
    let first_topics = first.topics.clone();
    first.stop().await;
    let restarted = spawn_relay(with_store(&redis)).await;
    ready(&restarted).await;
    moves += attack(&[&restarted, &second], &captured).await;

    let mut written = 0;
    for topics in [&first_topics, &second.topics, &restarted.topics] {
        for (route, value) in every_record(topics).await {
            let genuine = captured
                .iter()
                .any(|delivery| Some(delivery.path) == route && delivery.body == value);
            assert!(
                genuine,
                "a forged write on {route:?}: {:?}",
                String::from_utf8_lossy(&value)
            );
            written += 1;
        }
    }
    // The 4 deliveries, and one duplicate of each per relay per round (2 rounds x 2 relays).
    assert_eq!(written, 4 + 4 * 4, "after {moves} refused attacker moves");
    second.stop().await;
    restarted.stop().await;
}
