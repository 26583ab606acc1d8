use std::future::ready;

use prometheus::Registry;

use super::*;

const NOW: i64 = 1_767_225_600;
const HORIZON: Duration = Duration::from_secs(108 * 3600);
const SUBJECT: Subject = 42;

fn redrives(capacity: u64) -> (Arc<Redrives>, Registry) {
    let registry = Registry::new();
    let metrics = RedriveMetrics::register(&registry).unwrap();
    (
        Arc::new(Redrives::new(HORIZON, capacity, None, true, metrics)),
        registry,
    )
}

fn failed(signing: u128, binding: Binding, report: Option<LateReport>) -> Failed {
    Failed {
        signing: Some((signing, NOW)),
        binding,
        subject: SUBJECT,
        report,
        now: NOW,
    }
}

fn at(offset: i64) -> Delivered {
    Delivered {
        partition: 3,
        offset,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(1)
}

/// A series of the memory's own metrics: `name` without the `bp_relay_` prefix.
fn counted(redrives: &Redrives, name: &str, label: Option<&str>) -> i64 {
    let metrics = &redrives.metrics;
    let label = label.unwrap_or_default();
    match name {
        "redrive_entries" => metrics.entries.get(),
        "redrive_forgotten_total" => metrics.forgotten.get() as i64,
        "redrive_answers_total" => metrics.answers.with_label_values(&[label]).get() as i64,
        "late_reports_total" => metrics.late_reports.with_label_values(&[label]).get() as i64,
        _ => unreachable!("{name}"),
    }
}

/// Waits, on the paused clock's terms, until the spawned report task settled the fate.
async fn settled(redrives: &Redrives, binding: Binding) {
    for _ in 0..1000 {
        let pending = matches!(
            redrives
                .ledger()
                .fates
                .get(&binding)
                .map(|entry| &entry.value.state),
            Some(State::Pending { .. })
        );
        if !pending {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the report was never settled");
}

#[tokio::test]
async fn a_delivery_never_answered_5xx_is_written_and_not_looked_up() {
    let (redrives, _) = redrives(10);
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Ok(Claim::Write(None))
    ));
    assert!(!redrives.watches());
    assert_eq!(redrives.recall(9, soon()).await.unwrap(), None);
}

#[tokio::test]
async fn a_5xx_signing_is_recalled_with_its_route_and_body() {
    let (redrives, _registry) = redrives(10);
    redrives.failed(failed(9, 1, None));
    assert_eq!(redrives.recall(9, soon()).await.unwrap(), Some(1));
    assert_eq!(redrives.recall(8, soon()).await.unwrap(), None);
    assert_eq!(counted(&redrives, "redrive_entries", None), 2);
}

#[tokio::test]
async fn a_lost_record_is_written_again_and_the_first_2xx_closes_the_delivery() {
    let (redrives, _registry) = redrives(10);
    redrives.failed(failed(9, 1, None));
    let Ok(Claim::Write(Some(writer))) = redrives.claim(1, soon()).await else {
        panic!("a lost record is written again by the first copy");
    };
    assert!(
        matches!(redrives.claim(1, Instant::now()).await, Err(RedrivePending)),
        "while one copy writes, another waits until its deadline at most"
    );
    writer.landed(SUBJECT, at(10));
    for _ in 0..2 {
        assert!(matches!(
            redrives.claim(1, soon()).await,
            Ok(Claim::Stored(delivered)) if delivered == at(10)
        ));
    }
    assert_eq!(
        counted(&redrives, "redrive_answers_total", Some("stored")),
        2
    );
    assert_eq!(
        counted(&redrives, "redrive_answers_total", Some("written")),
        1
    );
}

#[tokio::test]
async fn a_writer_that_goes_away_leaves_the_delivery_to_the_next_copy() {
    let (redrives, _) = redrives(10);
    redrives.failed(failed(9, 1, None));
    let Ok(Claim::Write(Some(writer))) = redrives.claim(1, soon()).await else {
        panic!("written again");
    };
    drop(writer);
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Ok(Claim::Write(Some(_)))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_record_that_lands_after_its_503_answers_its_redrive() {
    let (redrives, _registry) = redrives(10);
    let (land, landing) = tokio::sync::oneshot::channel::<Delivered>();
    let report: LateReport =
        Box::pin(async move { landing.await.map_or(Fate::Failed, Fate::Landed) });
    redrives.failed(failed(9, 1, Some(report)));
    let waiter = {
        let redrives = redrives.clone();
        tokio::spawn(async move {
            match redrives.claim(1, soon()).await {
                Ok(Claim::Stored(delivered)) => Some(delivered),
                _ => None,
            }
        })
    };
    // The waiter is parked on the record; a further copy is not kept waiting.
    while !matches!(
        redrives
            .ledger()
            .fates
            .get(&1)
            .map(|entry| &entry.value.state),
        Some(State::Pending { waited: true, .. })
    ) {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Err(RedrivePending)
    ));
    land.send(at(10)).unwrap();
    assert_eq!(waiter.await.unwrap(), Some(at(10)));
    assert_eq!(counted(&redrives, "late_reports_total", Some("landed")), 1);
}

#[tokio::test(start_paused = true)]
async fn a_record_still_on_its_way_at_the_deadline_gets_503_and_a_later_copy_may_wait_again() {
    let (redrives, _) = redrives(10);
    let report: LateReport = Box::pin(std::future::pending());
    redrives.failed(failed(9, 1, Some(report)));
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Err(RedrivePending)
    ));
    assert!(
        matches!(redrives.claim(1, Instant::now()).await, Err(RedrivePending)),
        "waits again, until its own deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_record_that_timed_out_in_flight_is_written_again() {
    let (redrives, _registry) = redrives(10);
    redrives.failed(failed(9, 1, Some(Box::pin(ready(Fate::TimedOut)))));
    settled(&redrives, 1).await;
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Ok(Claim::Write(Some(_)))
    ));
    assert_eq!(
        counted(&redrives, "late_reports_total", Some("timed_out")),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeat_after_a_newer_record_of_its_key_is_written_again() {
    // A → B → A: the process went back to A; answering from memory would hide the last A.
    let (redrives, _) = redrives(10);
    redrives.failed(failed(9, 1, Some(Box::pin(ready(Fate::Landed(at(10)))))));
    settled(&redrives, 1).await;
    assert!(redrives.watches());
    redrives.written(SUBJECT + 1, at(11));
    assert!(
        matches!(redrives.claim(1, soon()).await, Ok(Claim::Stored(_))),
        "another key's record changes nothing"
    );
    redrives.written(SUBJECT, at(11));
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Ok(Claim::Write(Some(_)))
    ));
}

#[tokio::test]
async fn a_full_memory_forgets_the_oldest_first_and_counts_it() {
    let (redrives, _registry) = redrives(4);
    for n in 0..3u128 {
        redrives.failed(Failed {
            signing: Some((100 + n, NOW + n as i64)),
            binding: n,
            subject: SUBJECT,
            report: None,
            now: NOW,
        });
    }
    assert_eq!(counted(&redrives, "redrive_entries", None), 4);
    assert_eq!(counted(&redrives, "redrive_forgotten_total", None), 2);
    assert_eq!(
        redrives.recall(100, soon()).await.unwrap(),
        None,
        "the oldest signing"
    );
    assert_eq!(redrives.recall(102, soon()).await.unwrap(), Some(2));
    assert!(
        matches!(redrives.claim(0, soon()).await, Ok(Claim::Write(None))),
        "the oldest fate"
    );
}

#[tokio::test]
async fn entries_expire_at_the_horizon() {
    let (redrives, _registry) = redrives(10);
    redrives.failed(failed(9, 1, None));
    let horizon = i64::try_from(HORIZON.as_secs()).unwrap();
    redrives.failed(Failed {
        signing: Some((10, NOW + horizon)),
        binding: 2,
        subject: SUBJECT,
        report: None,
        now: NOW + horizon,
    });
    assert_eq!(redrives.recall(9, soon()).await.unwrap(), None);
    assert_eq!(
        counted(&redrives, "redrive_forgotten_total", None),
        0,
        "expired, not forgotten"
    );
    assert_eq!(counted(&redrives, "redrive_entries", None), 2);
}

#[test]
fn subjects_tell_topics_keys_and_no_key_apart() {
    assert_eq!(subject("t", Some("k")), subject("t", Some("k")));
    assert_ne!(subject("t", Some("k")), subject("u", Some("k")));
    assert_ne!(subject("t", Some("")), subject("t", None));
    assert_ne!(subject("t", Some("k")), subject("tk", None));
}

#[test]
fn of_two_records_of_one_partition_the_higher_offset_is_newer() {
    assert_eq!(newer(Some(at(5)), at(4)), at(5));
    assert_eq!(newer(Some(at(4)), at(5)), at(5));
    assert_eq!(newer(None, at(4)), at(4));
    let elsewhere = Delivered {
        partition: 0,
        offset: 1,
    };
    assert_eq!(newer(Some(at(5)), elsewhere), elsewhere);
}

#[tokio::test(start_paused = true)]
async fn reports_beyond_the_capacity_are_not_awaited_and_counted() {
    let (redrives, _registry) = redrives(1);
    redrives.failed(failed(9, 1, Some(Box::pin(std::future::pending()))));
    redrives.failed(failed(10, 2, Some(Box::pin(std::future::pending()))));
    assert_eq!(
        counted(&redrives, "late_reports_total", Some("untracked")),
        1
    );
    assert_eq!(redrives.awaiting.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn beside_other_writers_a_landed_record_does_not_answer_a_redrive() {
    let registry = Registry::new();
    let metrics = RedriveMetrics::register(&registry).unwrap();
    let redrives = Arc::new(Redrives::new(HORIZON, 10, None, false, metrics));
    redrives.failed(failed(9, 1, Some(Box::pin(ready(Fate::Landed(at(10)))))));
    settled(&redrives, 1).await;
    assert!(matches!(
        redrives.claim(1, soon()).await,
        Ok(Claim::Write(None))
    ));
    assert_eq!(
        redrives.recall(9, soon()).await.unwrap(),
        Some(1),
        "its signing is still known"
    );
}
