//! What every scenario must show, from its ledger and the records read back:
//! - every 2xx names the record that is at that topic, partition and offset, with the exact
//!   key and bytes of the delivery (on the partition its key hashes to);
//! - no answer took longer than `--ack-timeout` + 0.5 s;
//! - a signed delivery is answered 2xx or 503, an unauthenticated one 401, and nothing is
//!   written for a 401;
//! - nothing is written that was not sent;
//! - a lost connection only where the scenario takes the relay away.
//!
//! Delivery is at least once, so two things are counted, not failed: a 503'd delivery that lands
//! all the same (the broker got it, the acknowledgement came too late), and a delivery written
//! twice (seen after every broker was paused: one request, two copies at consecutive offsets,
//! the producer's resend after its request timed out). Authvia retries a 503 and consumers
//! deduplicate on `ce_id`.

use std::{collections::HashMap, time::Duration, time::Instant};

use http::StatusCode;

use crate::{
    load::{Entry, Outcome},
    readback::Record,
};

/// Slack on top of `--ack-timeout` for the answer to travel and the client to read it.
const ANSWER_SLACK: Duration = Duration::from_millis(500);

/// Violations listed in a failure, at most.
const SHOWN: usize = 12;

/// A scenario's numbers, one line of the summary.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Signed deliveries sent.
    pub sent: usize,
    pub ok: usize,
    pub unavailable: usize,
    /// Any other answer to a signed delivery, or none (a lost connection).
    pub other: usize,
    /// Unauthenticated requests sent, and how many got 401.
    pub unauthenticated: usize,
    pub refused: usize,
    /// Records in the scenario's topics.
    pub records: usize,
    /// 503'd deliveries whose record is in Kafka all the same.
    pub landed_after_503: usize,
    /// Deliveries whose connection was lost (no answer) and whose record is in Kafka.
    pub landed_after_lost: usize,
    /// Extra copies: records beyond the first of one delivery.
    pub duplicates: usize,
    pub max_latency: Duration,
}

impl Counts {
    /// The line printed per scenario.
    pub fn line(&self) -> String {
        format!(
            "sent {} / 2xx {} / 503 {} / other {} / records {} / landed after 503 {} (duplicates {}, unauthenticated {}, 401 {}; slowest answer {:.2} s)",
            self.sent,
            self.ok,
            self.unavailable,
            self.other,
            self.records,
            self.landed_after_503,
            self.duplicates,
            self.unauthenticated,
            self.refused,
            self.max_latency.as_secs_f64()
        )
    }
}

/// What the scenario tolerates beyond the rules above.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allowances {
    /// Requests may lose their connection once the relay is killed or stopped at this instant.
    pub lost_after: Option<Instant>,
}

/// Checks the ledger against the records of the scenario's topics (`processes` is the topic
/// every delivery belongs in). Returns the counts and every violation found.
pub fn judge(
    entries: &[Entry],
    records: &[Record],
    processes: &str,
    ack_timeout: Duration,
    allowances: Allowances,
) -> (Counts, Vec<String>) {
    let mut violations = Vec::new();
    let mut counts = Counts {
        records: records.len(),
        ..Counts::default()
    };
    let mut by_key: HashMap<&[u8], Vec<&Record>> = HashMap::new();
    for record in records {
        by_key
            .entry(record.key.as_deref().unwrap_or_default())
            .or_default()
            .push(record);
        if record.topic != processes {
            violations.push(format!(
                "a record in {} (only valid business processes were sent): {}/{}",
                record.topic, record.partition, record.offset
            ));
        }
    }
    let sent: HashMap<&[u8], &Entry> = entries
        .iter()
        .map(|entry| (entry.delivery.key.as_bytes(), entry))
        .collect();
    for (key, found) in &by_key {
        let name = String::from_utf8_lossy(key);
        match sent.get(key) {
            None => violations.push(format!("a record nobody sent: key {name:?}")),
            Some(entry) if !entry.delivery.signed => violations.push(format!(
                "{name}: unauthenticated (answered {:?}) but written",
                entry.status()
            )),
            Some(_) => counts.duplicates += found.len() - 1,
        }
    }

    for entry in entries {
        counts.max_latency = counts.max_latency.max(entry.latency());
        let key = entry.delivery.key.as_str();
        let landed = by_key.contains_key(key.as_bytes());
        if entry.latency() > ack_timeout + ANSWER_SLACK {
            violations.push(format!(
                "{key}: answered after {:.2} s ({:?})",
                entry.latency().as_secs_f64(),
                entry.status()
            ));
        }
        if !entry.delivery.signed {
            counts.unauthenticated += 1;
            match &entry.outcome {
                Outcome::Answered { status, .. } if *status == StatusCode::UNAUTHORIZED => {
                    counts.refused += 1
                }
                Outcome::Lost(_) if lost_allowed(entry, allowances) => {}
                outcome => violations.push(format!("{key}: unauthenticated, answered {outcome:?}")),
            }
            continue;
        }
        counts.sent += 1;
        match &entry.outcome {
            Outcome::Answered { status, ack, .. } if status.is_success() => {
                counts.ok += 1;
                if let Err(problem) =
                    check_ack(entry, ack.as_ref(), by_key.get(key.as_bytes()), processes)
                {
                    violations.push(format!("{key}: 2xx, but {problem}"));
                }
            }
            Outcome::Answered { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                counts.unavailable += 1;
                counts.landed_after_503 += usize::from(landed);
            }
            Outcome::Answered { status, code, .. } => {
                counts.other += 1;
                violations.push(format!(
                    "{key}: answered {status} {code:?}, neither 2xx nor 503"
                ));
            }
            Outcome::Lost(error) => {
                counts.other += 1;
                counts.landed_after_lost += usize::from(landed);
                if !lost_allowed(entry, allowances) {
                    violations.push(format!("{key}: no answer: {error}"));
                }
            }
        }
    }
    (counts, violations)
}

fn lost_allowed(entry: &Entry, allowances: Allowances) -> bool {
    allowances.lost_after.is_some_and(|at| entry.answered >= at)
}

/// The record a 2xx names is there, with the delivery's key and bytes, on its key's partition.
fn check_ack(
    entry: &Entry,
    ack: Option<&crate::load::Ack>,
    found: Option<&Vec<&Record>>,
    processes: &str,
) -> Result<(), String> {
    let ack = ack.ok_or("no topic, partition and offset in the body")?;
    if ack.topic != processes {
        return Err(format!("the body names topic {}", ack.topic));
    }
    if ack.partition != entry.delivery.partition() {
        return Err(format!(
            "on partition {}, its key hashes to {}",
            ack.partition,
            entry.delivery.partition()
        ));
    }
    let record = found
        .and_then(|records| {
            records
                .iter()
                .find(|record| record.partition == ack.partition && record.offset == ack.offset)
        })
        .ok_or_else(|| {
            format!(
                "no record with its key at {}/{} (its key is at {:?})",
                ack.partition,
                ack.offset,
                found.map(|records| records
                    .iter()
                    .map(|r| (r.partition, r.offset))
                    .collect::<Vec<_>>())
            )
        })?;
    if record.payload != entry.delivery.body {
        return Err(format!(
            "the record at {}/{} holds other bytes",
            ack.partition, ack.offset
        ));
    }
    Ok(())
}

/// The first violations, for a failure message.
pub fn summarize(violations: &[String]) -> String {
    let mut text: Vec<String> = violations.iter().take(SHOWN).cloned().collect();
    if violations.len() > SHOWN {
        text.push(format!("... and {} more", violations.len() - SHOWN));
    }
    text.join("\n")
}

/// The judge must catch what the scenarios are there to catch.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Ack, Delivery};

    const TOPIC: &str = "bp";
    const BUDGET: Duration = Duration::from_secs(4);

    fn entry(key: &str, signed: bool, status: u16, ack: Option<Ack>, latency: Duration) -> Entry {
        let sent = Instant::now();
        let outcome = Outcome::Answered {
            status: StatusCode::from_u16(status).unwrap(),
            code: None,
            ack,
        };
        Entry {
            delivery: Delivery::new(key.to_owned(), signed),
            sent,
            answered: sent + latency,
            outcome,
        }
    }

    fn acked(key: &str, offset: i64) -> (Entry, Record) {
        let delivery = Delivery::new(key.to_owned(), true);
        let ack = Ack {
            topic: TOPIC.to_owned(),
            partition: delivery.partition(),
            offset,
        };
        let record = Record {
            topic: TOPIC.to_owned(),
            partition: ack.partition,
            offset,
            key: Some(key.as_bytes().to_vec()),
            payload: delivery.body.to_vec(),
        };
        (
            entry(key, true, 200, Some(ack), Duration::from_millis(5)),
            record,
        )
    }

    fn violations(entries: &[Entry], records: &[Record]) -> Vec<String> {
        judge(entries, records, TOPIC, BUDGET, Allowances::default()).1
    }

    #[test]
    fn a_clean_ledger_passes_and_a_503_that_landed_is_counted() {
        let (ok, ok_record) = acked("k1", 0);
        let (mut late, late_record) = acked("k2", 1);
        late.outcome = Outcome::Answered {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: Some("kafka_timeout".into()),
            ack: None,
        };
        let refused = entry("k3", false, 401, None, Duration::from_millis(1));
        let (counts, found) = judge(
            &[ok, late, refused],
            &[ok_record, late_record],
            TOPIC,
            BUDGET,
            Allowances::default(),
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            (
                counts.sent,
                counts.ok,
                counts.unavailable,
                counts.landed_after_503,
                counts.refused
            ),
            (2, 1, 1, 1, 1)
        );
    }

    #[test]
    fn a_2xx_whose_record_is_missing_or_different_fails() {
        let (ok, mut record) = acked("k1", 7);
        assert_eq!(
            violations(std::slice::from_ref(&ok), &[]).len(),
            1,
            "missing"
        );
        record.offset = 8;
        assert_eq!(
            violations(std::slice::from_ref(&ok), std::slice::from_ref(&record)).len(),
            1,
            "elsewhere"
        );
        record.offset = 7;
        record.payload = b"{}".to_vec();
        assert_eq!(violations(&[ok], &[record]).len(), 1, "other bytes");
    }

    #[test]
    fn a_written_401_a_stranger_and_a_late_answer_fail_and_a_duplicate_is_counted() {
        let (ok, record) = acked("k1", 0);
        let refused = entry("k2", false, 401, None, Duration::from_millis(1));
        let written = Record {
            key: Some(b"k2".to_vec()),
            offset: 1,
            ..record.clone()
        };
        let stranger = Record {
            key: Some(b"nobody".to_vec()),
            offset: 2,
            ..record.clone()
        };
        let twice = Record {
            offset: 3,
            ..record.clone()
        };
        let (counts, found) = judge(
            &[ok.clone(), refused],
            &[record.clone(), written, stranger, twice],
            TOPIC,
            BUDGET,
            Allowances::default(),
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(counts.duplicates, 1);
        let slow = Entry {
            answered: ok.sent + BUDGET + Duration::from_millis(600),
            ..ok
        };
        assert_eq!(violations(&[slow], &[record]).len(), 1);
    }

    #[test]
    fn a_lost_connection_fails_unless_the_scenario_took_the_relay_away() {
        let sent = Instant::now();
        let lost = Entry {
            delivery: Delivery::new("k1".into(), true),
            sent,
            answered: sent,
            outcome: Outcome::Lost("reset".into()),
        };
        assert_eq!(violations(std::slice::from_ref(&lost), &[]).len(), 1);
        let allowed = judge(
            &[lost],
            &[],
            TOPIC,
            BUDGET,
            Allowances {
                lost_after: Some(sent),
            },
        )
        .1;
        assert!(allowed.is_empty(), "{allowed:?}");
    }
}
