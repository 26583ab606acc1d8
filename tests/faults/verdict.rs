//! What every scenario must show, from its ledger (every attempt, retries included) and the
//! records read back:
//! - every 2xx names the record that is at that topic, partition and offset, with the exact
//!   key and bytes of the delivery (on the partition its key hashes to) — a retry's 2xx
//!   answered from memory too;
//! - no answer took longer than `--ack-timeout` + 0.5 s;
//! - a signed delivery is answered 2xx or 503; a retry carrying its original signing after the
//!   window may get 401 `stale_timestamp` (the relay did not remember it), a fresh signing never
//!   a 401; an unauthenticated one gets 401, and nothing is written for it;
//! - nothing is written that was not sent;
//! - a lost connection only where the scenario takes the relay away;
//! - no signed delivery is missing once its retries are over (issue 17, item 3), except one whose
//!   relay was taken away and whose original signing was stale before a relay was back;
//! - no delivery is written twice, except where the relay cannot know a record's fate: a relay
//!   killed or stopped with the record unanswered, a producer replaced after a fatal error, a
//!   record librdkafka timed out in flight (`bp_relay_late_reports_total{outcome="timed_out"}`,
//!   each one excusing one copy of a delivery answered 5xx), and what librdkafka resends under a
//!   new epoch after such a timeout (two copies from one request: seen with every broker paused
//!   or two stopped, a whole in-flight window of one partition written again, 2xx'd records
//!   included). Each duplicate is counted with its cause; one without a cause fails the
//!   scenario.
//!
//! Each record is attributed to the attempt during which the relay produced it: its create time
//! falls between that attempt's send and answer (attempts of one delivery never overlap). A 2xx
//! naming a record an earlier attempt produced was answered from memory.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use http::StatusCode;

use crate::{
    load::{Entry, Outcome, Signing},
    readback::Record,
};

/// Slack on top of `--ack-timeout` for the answer to travel and the client to read it.
const ANSWER_SLACK: Duration = Duration::from_millis(500);

/// Violations listed in a failure, at most.
const SHOWN: usize = 12;

/// The error code of a signing outside the window.
const STALE: &str = "stale_timestamp";

/// Delivery reports the relay got after it had answered the request 5xx
/// (`bp_relay_late_reports_total` by outcome).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LateReports {
    pub landed: u64,
    pub failed: u64,
    /// Timed out by librdkafka: the record may have landed, the relay cannot know.
    pub timed_out: u64,
    /// Not kept: a bound was reached.
    pub untracked: u64,
}

/// Why a delivery has more than one record: one count per extra copy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateCauses {
    /// The relay that had the record unanswered was killed or stopped.
    pub relay_killed: usize,
    /// The relay replaced its producer after a fatal error.
    pub producer_replaced: usize,
    /// librdkafka timed a record out in flight.
    pub timed_out: usize,
    /// Copies produced during the same attempt as another copy: one request written twice by
    /// the producer itself. librdkafka resends what it had in flight under a new epoch once a
    /// record timed out in flight (the idempotent producer's epoch bump): excused when the
    /// relay reported a record timed out, unexplained otherwise.
    pub producer_resend: usize,
    /// None of these: a broken promise.
    pub unexplained: usize,
}

impl DuplicateCauses {
    pub fn total(&self) -> usize {
        self.relay_killed
            + self.producer_replaced
            + self.timed_out
            + self.producer_resend
            + self.unexplained
    }
}

/// What the retries did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Retries {
    /// Retries sent with the first attempt's headers, and signed afresh.
    pub original: usize,
    pub fresh: usize,
    /// Signed deliveries retried at least once.
    pub deliveries: usize,
    /// Retries answered 2xx.
    pub ok: usize,
    /// Retries with the original signing answered 401 `stale_timestamp`.
    pub stale: usize,
    /// 2xx (of retries) naming a record an earlier attempt produced.
    pub from_memory: usize,
}

/// A scenario's numbers, one line of the summary. `sent` to `other` count first attempts.
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
    /// Records produced during an attempt answered 503: they landed all the same.
    pub landed_after_503: usize,
    /// Records produced during an attempt whose connection was lost.
    pub landed_after_lost: usize,
    /// Records whose create time falls in none of their delivery's attempts: none is expected
    /// (the relay leaves the timestamp to the producer); their copies cannot be explained.
    pub unattributed: usize,
    /// Signed deliveries without a record, and how many of them are excused (their relay was
    /// taken away and their original signing was stale before a relay was back).
    pub missing: usize,
    pub missing_excused: usize,
    /// Extra copies (records beyond the first of one delivery), by cause.
    pub duplicates: DuplicateCauses,
    pub retries: Retries,
    pub late: LateReports,
    pub max_latency: Duration,
}

impl Counts {
    /// The line printed per scenario.
    pub fn line(&self) -> String {
        format!(
            "sent {} / 2xx {} / 503 {} / other {} / records {} ({} not attributed to an attempt) / landed after 503 {} / missing {} / duplicates {}; {}; {}; {} (unauthenticated {}, 401 {}; slowest answer {:.2} s)",
            self.sent,
            self.ok,
            self.unavailable,
            self.other,
            self.records,
            self.unattributed,
            self.landed_after_503,
            self.missing_text(),
            self.duplicates.total(),
            self.duplicates_text(),
            self.late_text(),
            self.retries_text(),
            self.unauthenticated,
            self.refused,
            self.max_latency.as_secs_f64()
        )
    }

    pub fn missing_text(&self) -> String {
        if self.missing_excused == 0 {
            self.missing.to_string()
        } else {
            format!(
                "{} ({} excused: relay away past the window)",
                self.missing, self.missing_excused
            )
        }
    }

    pub fn duplicates_text(&self) -> String {
        let d = &self.duplicates;
        format!(
            "duplicates by cause: relay killed {}, producer replaced {}, timed out {}, producer resend after a timeout {}, unexplained {}",
            d.relay_killed, d.producer_replaced, d.timed_out, d.producer_resend, d.unexplained
        )
    }

    pub fn late_text(&self) -> String {
        let l = &self.late;
        format!(
            "late reports landed {} (caught {} of the records that landed after a 503) / timed_out {} / failed {} / untracked {}",
            l.landed,
            self.caught_text(),
            l.timed_out,
            l.failed,
            l.untracked
        )
    }

    /// What share of the records that landed after a 503 the relay learnt of (issue 17, item 2).
    pub fn caught_text(&self) -> String {
        if self.landed_after_503 == 0 {
            return "n/a".to_owned();
        }
        format!(
            "{:.0}%",
            100.0 * self.late.landed as f64 / self.landed_after_503 as f64
        )
    }

    pub fn retries_text(&self) -> String {
        let r = &self.retries;
        format!(
            "retries {} original / {} fresh of {} deliveries: 2xx {} ({} from memory), 401 stale {}",
            r.original, r.fresh, r.deliveries, r.ok, r.from_memory, r.stale
        )
    }
}

/// What the scenario tolerates beyond the rules above, and what its relays reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allowances {
    /// The relay was killed or stopped at this instant (and replaced): requests may lose their
    /// connection from then on, and the record of an attempt sent before it, or that lost its
    /// connection to it, may be written again (the fates died with the relay).
    pub lost_after: Option<Instant>,
    /// Producers the relays replaced after a fatal error (their logs say so).
    pub producer_replacements: usize,
    /// The relays' late delivery reports (the last relay's, when one replaced another).
    pub late: LateReports,
}

/// Which attempt of the ledger produced each record: index into `entries`.
type Attribution = HashMap<(i32, i64), usize>;

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
        late: allowances.late,
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
    let mut attempts: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        attempts
            .entry(entry.delivery.key.as_bytes())
            .or_default()
            .push(index);
    }
    let attribution = attribute(entries, &by_key, &attempts);
    for (key, found) in &by_key {
        let name = String::from_utf8_lossy(key);
        match attempts.get(key).map(|indices| &entries[indices[0]]) {
            None => violations.push(format!("a record nobody sent: key {name:?}")),
            Some(entry) if !entry.delivery.signed => violations.push(format!(
                "{name}: unauthenticated (answered {:?}) but written",
                entry.status()
            )),
            Some(_) if found.len() > 1 => {
                let unexplained_before = counts.duplicates.unexplained;
                explain_duplicates(
                    found,
                    entries,
                    &attribution,
                    allowances,
                    &mut counts.duplicates,
                );
                if counts.duplicates.unexplained > unexplained_before {
                    violations.push(format!(
                        "{name}: written {} times, none of the causes the relay cannot know: {}",
                        found.len(),
                        history(found, entries, &attribution, &attempts[key])
                    ));
                }
            }
            Some(_) => {}
        }
    }
    for record in records {
        let Some(&index) = attribution.get(&(record.partition, record.offset)) else {
            counts.unattributed += 1;
            continue;
        };
        match &entries[index].outcome {
            Outcome::Answered { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                counts.landed_after_503 += 1
            }
            Outcome::Lost(_) => counts.landed_after_lost += 1,
            Outcome::Answered { .. } => {}
        }
    }

    for (index, entry) in entries.iter().enumerate() {
        counts.max_latency = counts.max_latency.max(entry.latency());
        let key = entry.delivery.key.as_str();
        if entry.latency() > ack_timeout + ANSWER_SLACK {
            violations.push(format!(
                "{key}: attempt {} answered after {:.2} s ({:?})",
                entry.attempt,
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
        if entry.is_retry() {
            judge_retry(entry, allowances, &mut counts.retries, &mut violations);
        } else {
            counts.sent += 1;
            judge_first(entry, allowances, &mut counts, &mut violations);
        }
        if let Outcome::Answered { status, ack, .. } = &entry.outcome {
            if status.is_success() {
                match check_ack(entry, ack.as_ref(), by_key.get(key.as_bytes()), processes) {
                    Err(problem) => violations.push(format!(
                        "{key}: attempt {} 2xx, but {problem}",
                        entry.attempt
                    )),
                    Ok((partition, offset)) => {
                        let producer = attribution.get(&(partition, offset));
                        if entry.is_retry() && producer.is_some_and(|&at| at != index) {
                            counts.retries.from_memory += 1;
                        }
                    }
                }
            }
        }
    }
    for (key, indices) in &attempts {
        let first = &entries[indices[0]];
        if !first.delivery.signed || by_key.contains_key(key) {
            continue;
        }
        counts.missing += 1;
        let tried: Vec<&Entry> = indices.iter().map(|&index| &entries[index]).collect();
        if tried.iter().any(|entry| entry.is_2xx()) {
            continue; // The 2xx's own check failed already.
        }
        if missing_excused(&tried, allowances) {
            counts.missing_excused += 1;
        } else {
            violations.push(format!(
                "{}: missing after {} attempts: {}",
                first.delivery.key,
                tried.len(),
                answers(&tried)
            ));
        }
    }
    counts.retries.deliveries = attempts
        .values()
        .filter(|indices| indices.len() > 1)
        .count();
    (counts, violations)
}

/// A first attempt: 2xx or 503, or a lost connection where allowed.
fn judge_first(
    entry: &Entry,
    allowances: Allowances,
    counts: &mut Counts,
    violations: &mut Vec<String>,
) {
    let key = &entry.delivery.key;
    match &entry.outcome {
        Outcome::Answered { status, .. } if status.is_success() => counts.ok += 1,
        Outcome::Answered { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
            counts.unavailable += 1
        }
        Outcome::Answered { status, code, .. } => {
            counts.other += 1;
            violations.push(format!(
                "{key}: answered {status} {code:?}, neither 2xx nor 503"
            ));
        }
        Outcome::Lost(error) => {
            counts.other += 1;
            if !lost_allowed(entry, allowances) {
                violations.push(format!("{key}: no answer: {error}"));
            }
        }
    }
}

/// A retry: 2xx or 503, a 401 `stale_timestamp` only to its original signing, or a lost
/// connection where allowed.
fn judge_retry(
    entry: &Entry,
    allowances: Allowances,
    retries: &mut Retries,
    violations: &mut Vec<String>,
) {
    let key = &entry.delivery.key;
    match entry.signing {
        Signing::Original => retries.original += 1,
        Signing::Fresh => retries.fresh += 1,
    }
    let what = format!(
        "{key}: retry {} ({:?} signing)",
        entry.attempt, entry.signing
    );
    match &entry.outcome {
        Outcome::Answered { status, .. } if status.is_success() => retries.ok += 1,
        Outcome::Answered { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {}
        Outcome::Answered { status, code, .. }
            if *status == StatusCode::UNAUTHORIZED
                && entry.signing == Signing::Original
                && code.as_deref() == Some(STALE) =>
        {
            retries.stale += 1
        }
        Outcome::Answered { status, code, .. } => {
            violations.push(format!("{what} answered {status} {code:?}"))
        }
        Outcome::Lost(error) => {
            if !lost_allowed(entry, allowances) {
                violations.push(format!("{what}: no answer: {error}"));
            }
        }
    }
}

fn lost_allowed(entry: &Entry, allowances: Allowances) -> bool {
    allowances.lost_after.is_some_and(|at| entry.answered >= at)
}

/// A missing delivery is excused only where no relay could have taken its retries: its relay
/// was taken away (a connection lost), and by the time one was back its original signing was
/// stale.
fn missing_excused(tried: &[&Entry], allowances: Allowances) -> bool {
    allowances.lost_after.is_some()
        && tried
            .iter()
            .any(|entry| matches!(entry.outcome, Outcome::Lost(_)))
        && tried
            .iter()
            .any(|entry| entry.signing == Signing::Original && entry.code() == Some(STALE))
}

/// For each record, the attempt of its delivery during which it was produced (its create time
/// between the attempt's send and answer, to the millisecond).
fn attribute(
    entries: &[Entry],
    by_key: &HashMap<&[u8], Vec<&Record>>,
    attempts: &HashMap<&[u8], Vec<usize>>,
) -> Attribution {
    let mut attribution = Attribution::new();
    for (key, records) in by_key {
        let Some(indices) = attempts.get(key) else {
            continue;
        };
        for record in records {
            let Some(produced) = record.timestamp_ms else {
                continue;
            };
            let producer = indices.iter().copied().find(|&index| {
                let entry = &entries[index];
                let from = unix_ms(entry.sent_at);
                let until = unix_ms(entry.sent_at + entry.latency()) + 1;
                (from..=until).contains(&produced)
            });
            if let Some(index) = producer {
                attribution.insert((record.partition, record.offset), index);
            }
        }
    }
    attribution
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Gives each extra copy of one delivery a cause. A second copy produced during the same
/// attempt as another is the producer's own resend; the other extra copies are explained by the
/// attempts not answered 2xx that produced one (the copies whose fate the relay may not have
/// known).
fn explain_duplicates(
    found: &[&Record],
    entries: &[Entry],
    attribution: &Attribution,
    allowances: Allowances,
    causes: &mut DuplicateCauses,
) {
    let extra = found.len() - 1;
    let mut producers: Vec<usize> = found
        .iter()
        .filter_map(|record| attribution.get(&(record.partition, record.offset)).copied())
        .collect();
    let attributed = producers.len();
    producers.sort_unstable();
    producers.dedup();
    let resent = attributed - producers.len();
    if allowances.late.timed_out > 0 {
        causes.producer_resend += resent;
    } else {
        causes.unexplained += resent;
    }
    let unanswered: Vec<&Entry> = producers
        .iter()
        .map(|&index| &entries[index])
        .filter(|entry| !entry.is_2xx())
        .take(extra - resent)
        .collect();
    for entry in &unanswered {
        // Answered before the kill by the relay that died with the record's fate, or cut off
        // by its death (sent whenever: the relay lives a moment after the harness notes the kill).
        let cut_off = lost_allowed(entry, allowances) && matches!(entry.outcome, Outcome::Lost(_));
        if cut_off || allowances.lost_after.is_some_and(|at| entry.sent < at) {
            causes.relay_killed += 1;
        } else if allowances.producer_replacements > 0 {
            causes.producer_replaced += 1;
        } else if (causes.timed_out as u64) < allowances.late.timed_out {
            causes.timed_out += 1;
        } else {
            causes.unexplained += 1;
        }
    }
    causes.unexplained += extra - resent - unanswered.len();
}

/// One delivery's records and attempts, for a violation.
fn history(
    found: &[&Record],
    entries: &[Entry],
    attribution: &Attribution,
    indices: &[usize],
) -> String {
    let records: Vec<String> = found
        .iter()
        .map(|record| {
            let by = attribution
                .get(&(record.partition, record.offset))
                .map_or("no attempt".to_owned(), |&index| {
                    format!("attempt {}", entries[index].attempt)
                });
            format!("{}/{} by {by}", record.partition, record.offset)
        })
        .collect();
    let tried: Vec<&Entry> = indices.iter().map(|&index| &entries[index]).collect();
    format!("records [{}]; {}", records.join(", "), answers(&tried))
}

/// The answers of a delivery's attempts, in order.
fn answers(tried: &[&Entry]) -> String {
    tried
        .iter()
        .map(|entry| {
            let answer = match &entry.outcome {
                Outcome::Answered { status, code, .. } => {
                    format!(
                        "{}{}",
                        status.as_u16(),
                        code.as_deref()
                            .map_or(String::new(), |code| format!(" {code}"))
                    )
                }
                Outcome::Lost(_) => "lost".to_owned(),
            };
            format!("#{} {:?}: {answer}", entry.attempt, entry.signing)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The record a 2xx names is there, with the delivery's key and bytes, on its key's partition:
/// its partition and offset.
fn check_ack(
    entry: &Entry,
    ack: Option<&crate::load::Ack>,
    found: Option<&Vec<&Record>>,
    processes: &str,
) -> Result<(i32, i64), String> {
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
    Ok((ack.partition, ack.offset))
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

    fn answer(status: u16, code: Option<&str>, ack: Option<Ack>) -> Outcome {
        Outcome::Answered {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.map(str::to_owned),
            ack,
        }
    }

    /// Attempt `attempt` of `delivery`, sent `at` after a common start, answered 5 ms later.
    fn attempt(delivery: &Delivery, attempt: u32, at: Duration, outcome: Outcome) -> Entry {
        let (start, start_at) = origin();
        let signing = if attempt == 0 {
            Signing::Original
        } else {
            delivery.retry_signing
        };
        Entry {
            delivery: delivery.clone(),
            attempt,
            signing,
            sent: start + at,
            sent_at: start_at + at,
            answered: start + at + Duration::from_millis(5),
            outcome,
        }
    }

    /// One start for every entry of a test run.
    fn origin() -> (Instant, SystemTime) {
        static ORIGIN: std::sync::OnceLock<(Instant, SystemTime)> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(|| (Instant::now(), SystemTime::now()))
    }

    fn entry(key: &str, signed: bool, status: u16, ack: Option<Ack>, latency: Duration) -> Entry {
        let mut entry = attempt(
            &Delivery::new(key.to_owned(), signed),
            0,
            Duration::ZERO,
            answer(status, None, ack),
        );
        entry.answered = entry.sent + latency;
        entry
    }

    fn ack(delivery: &Delivery, offset: i64) -> Ack {
        Ack {
            topic: TOPIC.to_owned(),
            partition: delivery.partition(),
            offset,
        }
    }

    /// The record `delivery`'s attempt `during` produced at `offset`.
    fn record(delivery: &Delivery, offset: i64, during: &Entry) -> Record {
        Record {
            topic: TOPIC.to_owned(),
            partition: delivery.partition(),
            offset,
            key: Some(delivery.key.as_bytes().to_vec()),
            payload: delivery.body.to_vec(),
            timestamp_ms: Some(unix_ms(during.sent_at) + 1),
        }
    }

    fn acked(key: &str, offset: i64) -> (Entry, Record) {
        let delivery = Delivery::new(key.to_owned(), true);
        let ok = attempt(
            &delivery,
            0,
            Duration::ZERO,
            answer(200, None, Some(ack(&delivery, offset))),
        );
        let record = record(&delivery, offset, &ok);
        (ok, record)
    }

    fn violations(entries: &[Entry], records: &[Record]) -> Vec<String> {
        judge(entries, records, TOPIC, BUDGET, Allowances::default()).1
    }

    /// A delivery answered 503 whose record landed all the same (offset 0), then retried
    /// (`fresh` or with its original signing) and answered 200 with a second record (offset 1).
    fn landed_then_written_again(key: &str, fresh: bool) -> (Vec<Entry>, Vec<Record>) {
        let signing = if fresh {
            Signing::Fresh
        } else {
            Signing::Original
        };
        let delivery = Delivery::new(key.to_owned(), true).retried_with(signing);
        let first = attempt(
            &delivery,
            0,
            Duration::ZERO,
            answer(503, Some("kafka_timeout"), None),
        );
        let retry = attempt(
            &delivery,
            1,
            Duration::from_secs(5),
            answer(200, None, Some(ack(&delivery, 1))),
        );
        let records = vec![record(&delivery, 0, &first), record(&delivery, 1, &retry)];
        (vec![first, retry], records)
    }

    #[test]
    fn a_clean_ledger_passes_and_a_503_that_landed_is_counted() {
        let (ok, ok_record) = acked("k1", 0);
        let delivery = Delivery::new("k2".to_owned(), true);
        let late = attempt(
            &delivery,
            0,
            Duration::ZERO,
            answer(503, Some("kafka_timeout"), None),
        );
        let late_record = record(&delivery, 1, &late);
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
                counts.refused,
                counts.missing,
                counts.duplicates.total(),
                counts.unattributed
            ),
            (2, 1, 1, 1, 1, 0, 0, 0)
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
    fn a_written_401_a_stranger_a_late_answer_and_a_second_copy_of_a_2xx_fail() {
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
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            (
                counts.duplicates.unexplained,
                counts.duplicates.producer_resend,
                counts.unattributed
            ),
            (1, 0, 1),
            "the stranger is attributed to no attempt"
        );
        let slow = Entry {
            answered: ok.sent + BUDGET + Duration::from_millis(600),
            ..ok
        };
        assert_eq!(violations(&[slow], &[record]).len(), 1);
    }

    #[test]
    fn a_lost_connection_fails_unless_the_scenario_took_the_relay_away() {
        let (ok, record) = acked("k1", 0);
        let lost = Entry {
            outcome: Outcome::Lost("reset".into()),
            ..ok
        };
        assert_eq!(
            violations(std::slice::from_ref(&lost), std::slice::from_ref(&record)).len(),
            1
        );
        let allowed = judge(
            std::slice::from_ref(&lost),
            &[record],
            TOPIC,
            BUDGET,
            Allowances {
                lost_after: Some(lost.sent),
                ..Allowances::default()
            },
        );
        assert!(allowed.1.is_empty(), "{:?}", allowed.1);
        assert_eq!(allowed.0.landed_after_lost, 1);
    }

    #[test]
    fn a_duplicate_fails_unless_the_relay_could_not_know() {
        let (entries, records) = landed_then_written_again("k1", true);
        let judged = |allowances| judge(&entries, &records, TOPIC, BUDGET, allowances);

        let (counts, found) = judged(Allowances::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("written 2 times"), "{found:?}");
        assert_eq!(
            (
                counts.duplicates.unexplained,
                counts.duplicates.producer_resend
            ),
            (1, 0)
        );
        assert_eq!(
            (
                counts.landed_after_503,
                counts.retries.fresh,
                counts.retries.ok
            ),
            (1, 1, 1)
        );

        let (counts, found) = judged(Allowances {
            lost_after: Some(entries[0].sent + Duration::from_millis(1)),
            ..Allowances::default()
        });
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(counts.duplicates.relay_killed, 1);

        // Sent just after the harness noted the kill, cut off by it.
        let mut cut_off = entries.clone();
        cut_off[0].outcome = Outcome::Lost("reset".into());
        let (counts, found) = judge(
            &cut_off,
            &records,
            TOPIC,
            BUDGET,
            Allowances {
                lost_after: Some(entries[0].sent - Duration::from_millis(1)),
                ..Allowances::default()
            },
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(counts.duplicates.relay_killed, 1);

        let (counts, found) = judged(Allowances {
            producer_replacements: 1,
            ..Allowances::default()
        });
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(counts.duplicates.producer_replaced, 1);

        let timed_out = LateReports {
            timed_out: 1,
            ..LateReports::default()
        };
        let (counts, found) = judged(Allowances {
            late: timed_out,
            ..Allowances::default()
        });
        assert!(found.is_empty(), "{found:?}");
        assert_eq!((counts.duplicates.timed_out, counts.late.timed_out), (1, 1));
    }

    #[test]
    fn two_copies_from_one_request_are_excused_only_after_a_record_timed_out() {
        let (ok, record) = acked("k1", 0);
        let resent = Record {
            offset: 66,
            ..record.clone()
        };
        let records = [record, resent];
        let (counts, found) = judge(
            std::slice::from_ref(&ok),
            &records,
            TOPIC,
            BUDGET,
            Allowances::default(),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(counts.duplicates.unexplained, 1);
        let (counts, found) = judge(
            &[ok],
            &records,
            TOPIC,
            BUDGET,
            Allowances {
                late: LateReports {
                    timed_out: 1,
                    ..LateReports::default()
                },
                ..Allowances::default()
            },
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            (
                counts.duplicates.producer_resend,
                counts.duplicates.timed_out,
                counts.duplicates.unexplained
            ),
            (1, 0, 0)
        );
    }

    #[test]
    fn timed_out_reports_excuse_no_more_duplicates_than_they_count() {
        let (mut entries, mut records) = landed_then_written_again("k1", true);
        let (more_entries, more_records) = landed_then_written_again("k2", false);
        entries.extend(more_entries);
        records.extend(more_records);
        let (counts, found) = judge(
            &entries,
            &records,
            TOPIC,
            BUDGET,
            Allowances {
                late: LateReports {
                    timed_out: 1,
                    ..LateReports::default()
                },
                ..Allowances::default()
            },
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (counts.duplicates.timed_out, counts.duplicates.unexplained),
            (1, 1)
        );
    }

    #[test]
    fn a_delivery_missing_after_its_retries_fails() {
        let delivery = Delivery::new("k1".to_owned(), true).retried_with(Signing::Original);
        let entries = [
            attempt(
                &delivery,
                0,
                Duration::ZERO,
                answer(503, Some("kafka_timeout"), None),
            ),
            attempt(
                &delivery,
                1,
                Duration::from_secs(1),
                answer(503, Some("kafka_timeout"), None),
            ),
            attempt(
                &delivery,
                2,
                Duration::from_secs(9),
                answer(401, Some(STALE), None),
            ),
        ];
        let (counts, found) = judge(&entries, &[], TOPIC, BUDGET, Allowances::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("missing after 3 attempts"), "{found:?}");
        assert_eq!(
            (
                counts.missing,
                counts.missing_excused,
                counts.retries.original,
                counts.retries.stale
            ),
            (1, 0, 2, 1)
        );
    }

    #[test]
    fn a_delivery_is_missing_excused_only_when_its_relay_was_away_past_the_window() {
        let delivery = Delivery::new("k1".to_owned(), true).retried_with(Signing::Original);
        let entries = [
            attempt(&delivery, 0, Duration::ZERO, Outcome::Lost("reset".into())),
            attempt(
                &delivery,
                1,
                Duration::from_secs(1),
                Outcome::Lost("refused".into()),
            ),
            attempt(
                &delivery,
                2,
                Duration::from_secs(9),
                answer(401, Some(STALE), None),
            ),
        ];
        let away = Allowances {
            lost_after: Some(entries[0].sent),
            ..Allowances::default()
        };
        let (counts, found) = judge(&entries, &[], TOPIC, BUDGET, away);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!((counts.missing, counts.missing_excused), (1, 1));

        // A refusal other than stale_timestamp, or any 401 to a fresh signing, is not excused.
        let mut replayed = entries.clone();
        replayed[2].outcome = answer(401, Some("replayed"), None);
        assert_eq!(judge(&replayed, &[], TOPIC, BUDGET, away).1.len(), 2);
        let mut fresh = entries.clone();
        fresh[2].signing = Signing::Fresh;
        assert_eq!(judge(&fresh, &[], TOPIC, BUDGET, away).1.len(), 2);
    }

    #[test]
    fn a_retry_answered_from_memory_must_name_the_record_that_landed() {
        let delivery = Delivery::new("k1".to_owned(), true).retried_with(Signing::Original);
        let first = attempt(
            &delivery,
            0,
            Duration::ZERO,
            answer(503, Some("kafka_timeout"), None),
        );
        let landed = record(&delivery, 4, &first);
        let retry = |offset| {
            attempt(
                &delivery,
                1,
                Duration::from_secs(9),
                answer(200, None, Some(ack(&delivery, offset))),
            )
        };
        let (counts, found) = judge(
            &[first.clone(), retry(4)],
            std::slice::from_ref(&landed),
            TOPIC,
            BUDGET,
            Allowances::default(),
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            (
                counts.retries.from_memory,
                counts.retries.ok,
                counts.records,
                counts.duplicates.total()
            ),
            (1, 1, 1, 0)
        );

        let (counts, found) = judge(
            &[first, retry(5)],
            &[landed],
            TOPIC,
            BUDGET,
            Allowances::default(),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("no record with its key at"), "{found:?}");
        assert_eq!(counts.retries.from_memory, 0);
    }
}
