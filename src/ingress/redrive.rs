//! The redrive memory: deliveries the relay answered 5xx after they passed the signature and
//! replay checks, remembered for as long as Authvia retries them (`--redrive-horizon`).
//!
//! Authvia retries a failed delivery for about four days and does not say whether a retry is
//! signed afresh or carries the first attempt's X-AUTHVIA-* headers. Two things are remembered:
//! - **Signings** ([`Redrives::recall`]): each 5xx'd signing, bound to its route and body. A
//!   genuine signing outside the timestamp window is accepted when, and only when, it is such a
//!   signing, on that route, with that body: a captured request buys nothing it could not buy
//!   inside the window. In this process, or in the shared replay store (`--replay-store`), where
//!   every replica and restart sees them.
//! - **Fates** ([`Redrives::claim`]), in this process: for each 5xx'd delivery (its route and
//!   body), whether its record is still on its way, landed after all (where), or is lost. A
//!   redrive of a delivery whose record landed is answered with that record and writes nothing,
//!   while that record is still the latest the relay wrote for its key; otherwise (an A → B → A
//!   repeat is a real event) it is written again. The first 2xx closes a delivery: later copies
//!   get that record. At most one copy waits for a record on its way; others get 503 at once.
//!
//! Answering from memory needs the relay to see every record of the key: with several replicas
//! (`--single-writer off`) a redrive is written again instead, a duplicate rather than a hidden
//! repeat.
//!
//! Bounded: `--redrive-capacity` entries (a signing or a fate each), the oldest forgotten first
//! when full (counted in `bp_relay_redrive_forgotten_total`). A forgotten signing turns its
//! delivery's original-signed retries into 401 `stale_timestamp`; a forgotten fate turns a
//! redrive of a record that landed into a second record. A restart forgets the fates, and the
//! signings unless they are in the shared store (docs/reliability.md, "Redrive").
//!
//! Nothing here is touched on the way of a delivery that never failed, except one atomic load
//! per answer.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sha2::{Digest as _, Sha256};
use tokio::{sync::watch, time::Instant};

use crate::{
    ingress::publish::{Delivered, Fate, LateReport},
    ingress::replay::{first_128_bits, Binding, RedisGuard, StoreError},
    ingress::warning::RepeatedWarning,
};

/// A signing's fingerprint (see [`crate::ingress::replay::Signing`]).
pub type Fingerprint = u128;

/// A record's topic and key: 128 bits of SHA-256, so that an entry's size does not depend on
/// the key's length.
pub type Subject = u128;

/// The subject of a record with `key` (none for a dead letter without one) on `topic`.
pub fn subject(topic: &str, key: Option<&str>) -> Subject {
    let mut hasher = Sha256::new();
    hasher.update(topic.as_bytes());
    hasher.update([0]);
    if let Some(key) = key {
        hasher.update([1]);
        hasher.update(key.as_bytes());
    }
    first_128_bits(&hasher.finalize().into())
}

/// How long a late report is awaited at most: librdkafka reports within its message timeout
/// (at most 5 minutes), or drops the report with the producer. A bound all the same.
const REPORT_BOUND: Duration = Duration::from_secs(600);

/// The late reports' label of a report not awaited (see [`Fate::LABELS`]).
const UNTRACKED: &str = "untracked";

/// The redrive memory's own metrics.
#[derive(Clone)]
pub struct RedriveMetrics {
    entries: IntGauge,
    forgotten: IntCounter,
    answers: IntCounterVec,
    original_signings: IntCounter,
    late_reports: IntCounterVec,
}

impl RedriveMetrics {
    /// Creates the metrics and registers them on `registry`.
    ///
    /// # Errors
    /// A metric is already registered there (a programming error caught at startup).
    pub fn register(registry: &Registry) -> prometheus::Result<RedriveMetrics> {
        let metrics = RedriveMetrics {
            entries: IntGauge::new(
                "bp_relay_redrive_entries",
                "Entries of the redrive memory in this process: signings and fates of deliveries answered 5xx.",
            )?,
            forgotten: IntCounter::new(
                "bp_relay_redrive_forgotten_total",
                "Entries of the redrive memory forgotten before --redrive-horizon: it was full (--redrive-capacity), or the shared replay store refused a signing. An original-signed retry of such a delivery gets 401, a redrive of a record that landed writes it again.",
            )?,
            answers: IntCounterVec::new(
                Opts::new(
                    "bp_relay_redrive_answers_total",
                    "Redrives of a delivery answered 5xx before, by answer: stored (200 naming the record that landed, nothing written), written (written again), pending (503: another copy waits for its record).",
                ),
                &["answer"],
            )?,
            original_signings: IntCounter::new(
                "bp_relay_redrive_original_signings_total",
                "Retries accepted outside the timestamp window because they carry the original signing, route and body of a delivery answered 5xx.",
            )?,
            late_reports: IntCounterVec::new(
                Opts::new(
                    "bp_relay_late_reports_total",
                    "Records whose request was answered 5xx while the producer still held them, by their final report: landed, failed, timed_out (may have landed), untracked (not awaited: the memory was full).",
                ),
                &["outcome"],
            )?,
        };
        for answer in Answer::ALL {
            metrics.answers.with_label_values(&[answer.label()]);
        }
        for outcome in Fate::LABELS {
            metrics.late_reports.with_label_values(&[outcome]);
        }
        registry.register(Box::new(metrics.entries.clone()))?;
        registry.register(Box::new(metrics.forgotten.clone()))?;
        registry.register(Box::new(metrics.answers.clone()))?;
        registry.register(Box::new(metrics.original_signings.clone()))?;
        registry.register(Box::new(metrics.late_reports.clone()))?;
        Ok(metrics)
    }
}

/// How a redrive of a remembered delivery was answered (a closed set: metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Stored,
    Written,
    Pending,
}

impl Answer {
    const ALL: [Answer; 3] = [Self::Stored, Self::Written, Self::Pending];

    fn label(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Written => "written",
            Self::Pending => "pending",
        }
    }
}

/// What a delivery that passed the signature and replay checks does next.
pub enum Claim<'a> {
    /// Write it. The writer, if the delivery is remembered, settles its fate.
    Write(Option<Writer<'a>>),
    /// Its record landed and is still the latest of its key: answer with it, write nothing.
    Stored(Delivered),
}

/// Another copy of the delivery already waits for its record on its way: 503 at once.
#[derive(Debug, thiserror::Error)]
#[error("another copy of this delivery waits for its record, which may still land")]
pub struct RedrivePending;

/// The right to write a remembered delivery. Dropped without an outcome (the request went
/// away), the delivery counts as lost: the next copy writes it.
pub struct Writer<'a> {
    redrives: &'a Redrives,
    binding: Binding,
    ticket: u64,
    settled: bool,
}

impl Writer<'_> {
    /// The record landed: later copies get it.
    pub fn landed(mut self, subject: Subject, delivered: Delivered) {
        self.redrives
            .settle(self.binding, self.ticket, Fate::Landed(delivered));
        self.redrives.written(subject, delivered);
        self.settled = true;
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Landed, or taken over by a newer state (a 5xx remembered with its report): a no-op.
        if !self.settled {
            self.redrives
                .settle(self.binding, self.ticket, Fate::Failed);
        }
    }
}

/// A delivery answered 5xx, to remember.
pub struct Failed {
    /// Its signing and the Unix second it was signed at (none without signatures).
    pub signing: Option<(Fingerprint, i64)>,
    /// Its route and body.
    pub binding: Binding,
    /// Its record's topic and key.
    pub subject: Subject,
    /// The record's report, when the producer still holds it.
    pub report: Option<LateReport>,
    /// Unix second of the answer.
    pub now: i64,
}

/// The memory of deliveries answered 5xx (see the module's documentation).
pub struct Redrives {
    ledger: Mutex<Ledger>,
    // Fates remembered: while none is (the usual case), a delivery passes without the lock.
    fates: AtomicUsize,
    // Subjects watched: while none is, a 2xx is not looked up.
    subjects: AtomicUsize,
    horizon: i64,
    capacity: usize,
    // Signings in the shared replay store, under their own prefix; else in the ledger.
    shared: Option<Arc<RedisGuard>>,
    // The only writer of its topics: a landed record may answer a redrive (see `new`).
    single_writer: bool,
    metrics: RedriveMetrics,
    tickets: AtomicU64,
    // Late reports being awaited, each by a task: at most `capacity`.
    awaiting: AtomicUsize,
    full_warning: RepeatedWarning,
}

/// Everything remembered in this process, under one lock: the paths that take it are rare (a
/// 5xx, a stale signing, a redrive, a 2xx while some fate is remembered).
#[derive(Default)]
struct Ledger {
    signings: HashMap<Fingerprint, Remembered<Binding>>,
    fates: HashMap<Binding, Remembered<Entry>>,
    /// The newest record the relay wrote for each subject a fate names.
    subjects: HashMap<Subject, Watched>,
    /// Each entry with its expiry, soonest on top; an entry whose expiry moved later is found
    /// again under its new expiry (the old one is skipped).
    expiries: BinaryHeap<Reverse<(i64, Slot)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Signing(Fingerprint),
    Fate(Binding),
}

struct Remembered<T> {
    value: T,
    until: i64,
}

struct Entry {
    state: State,
    subject: Subject,
}

enum State {
    /// A record is on its way: a late report awaited, or a copy being written. Replacing the
    /// state drops the sender, which wakes the copy waiting for it.
    Pending {
        ticket: u64,
        settled: watch::Sender<()>,
        waited: bool,
    },
    Landed(Delivered),
    Lost,
}

struct Watched {
    newest: Option<Delivered>,
    fates: usize,
}

impl Redrives {
    /// A memory of `capacity` entries, each kept `horizon` after its signing's time; signings
    /// in `shared` if given. Only a `single_writer` (the one relay writing its topics) answers
    /// a redrive with a record that landed: it alone sees every newer record of the key.
    pub fn new(
        horizon: Duration,
        capacity: u64,
        shared: Option<Arc<RedisGuard>>,
        single_writer: bool,
        metrics: RedriveMetrics,
    ) -> Self {
        metrics.entries.set(0);
        Self {
            ledger: Mutex::new(Ledger::default()),
            fates: AtomicUsize::new(0),
            subjects: AtomicUsize::new(0),
            horizon: i64::try_from(horizon.as_secs()).unwrap_or(i64::MAX),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            shared,
            single_writer,
            metrics,
            tickets: AtomicU64::new(0),
            awaiting: AtomicUsize::new(0),
            full_warning: RepeatedWarning::new(),
        }
    }

    /// Whether signings outside the window are looked up at all (`--redrive-horizon` above 0).
    pub fn is_on(&self) -> bool {
        self.horizon > 0
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic elsewhere cannot leave the ledger half-updated in a way that matters more
        // than losing the request: its data stays usable.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The route and body a 5xx'd `signing` came with, if it is remembered. Waits for the
    /// shared store until `deadline` at most.
    ///
    /// # Errors
    /// The shared store did not answer: the retry cannot be checked (503).
    pub async fn recall(
        &self,
        signing: Fingerprint,
        deadline: Instant,
    ) -> Result<Option<Binding>, StoreError> {
        if !self.is_on() {
            return Ok(None);
        }
        if let Some(store) = &self.shared {
            return store.recall_redrive(signing, deadline).await;
        }
        Ok(self
            .ledger()
            .signings
            .get(&signing)
            .map(|remembered| remembered.value))
    }

    /// A retry with its original signing was accepted outside the window.
    pub fn original_signing_accepted(&self) {
        self.metrics.original_signings.inc();
    }

    /// What to do with a delivery bound to `binding`, waiting until `deadline` at most while
    /// another copy's record is on its way.
    ///
    /// # Errors
    /// [`RedrivePending`]: another copy already waits for that record, or it is still on its
    /// way at the deadline.
    pub async fn claim(
        &self,
        binding: Binding,
        deadline: Instant,
    ) -> Result<Claim<'_>, RedrivePending> {
        if !self.single_writer || self.fates.load(Ordering::Acquire) == 0 {
            return Ok(Claim::Write(None));
        }
        let mut waited = false;
        loop {
            let mut settled = {
                let mut ledger = self.ledger();
                let Some(entry) = ledger.fates.get(&binding) else {
                    return Ok(Claim::Write(None));
                };
                let subject = entry.value.subject;
                let newest = ledger.subjects.get(&subject).and_then(|w| w.newest);
                let entry = &mut ledger.fates.get_mut(&binding).expect("just found").value;
                match &mut entry.state {
                    State::Landed(delivered) if newest == Some(*delivered) => {
                        self.answered(Answer::Stored);
                        return Ok(Claim::Stored(*delivered));
                    }
                    State::Landed(_) | State::Lost => {
                        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
                        entry.state = State::Pending {
                            ticket,
                            settled: watch::channel(()).0,
                            waited: false,
                        };
                        self.answered(Answer::Written);
                        return Ok(Claim::Write(Some(Writer {
                            redrives: self,
                            binding,
                            ticket,
                            settled: false,
                        })));
                    }
                    State::Pending { waited: true, .. } => {
                        self.answered(Answer::Pending);
                        return Err(RedrivePending);
                    }
                    State::Pending {
                        waited: taken,
                        settled,
                        ..
                    } => {
                        if waited {
                            // Woken, and still on its way: a new record took its place.
                            self.answered(Answer::Pending);
                            return Err(RedrivePending);
                        }
                        *taken = true;
                        settled.subscribe()
                    }
                }
            };
            waited = true;
            // Closed when the state is replaced: the record's fate is known.
            if tokio::time::timeout_at(deadline, settled.changed())
                .await
                .is_err()
            {
                if let Some(entry) = self.ledger().fates.get_mut(&binding) {
                    if let State::Pending { waited, .. } = &mut entry.value.state {
                        *waited = false;
                    }
                }
                self.answered(Answer::Pending);
                return Err(RedrivePending);
            }
        }
    }

    fn answered(&self, answer: Answer) {
        self.metrics
            .answers
            .with_label_values(&[answer.label()])
            .inc();
    }

    /// A record of `subject` landed at `delivered`: a remembered record of the same subject is
    /// no longer the latest. One atomic load while no fate is remembered.
    pub fn written(&self, subject: Subject, delivered: Delivered) {
        if self.subjects.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(watched) = self.ledger().subjects.get_mut(&subject) {
            watched.newest = Some(newer(watched.newest, delivered));
        }
    }

    /// Whether any subject is watched: a 2xx must then be told with [`Redrives::written`].
    pub fn watches(&self) -> bool {
        self.subjects.load(Ordering::Acquire) > 0
    }

    /// Remembers a delivery answered 5xx: its signing, for its original-signed retries, and its
    /// fate, awaiting its report if the producer still holds the record.
    pub fn failed(self: &Arc<Self>, failed: Failed) {
        if !self.is_on() {
            return;
        }
        let Failed {
            signing,
            binding,
            subject,
            report,
            now,
        } = failed;
        let until = signing
            .map_or(now, |(_, signed_at)| signed_at)
            .saturating_add(self.horizon);
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let report = report.filter(|_| self.await_report());
        let awaited = report.is_some();
        {
            let mut ledger = self.ledger();
            if let (Some((fingerprint, _)), None) = (signing, &self.shared) {
                self.remember_signing(&mut ledger, fingerprint, binding, until, now);
            }
            let state = if awaited {
                State::Pending {
                    ticket,
                    settled: watch::channel(()).0,
                    waited: false,
                }
            } else {
                State::Lost
            };
            self.remember_fate(&mut ledger, binding, subject, state, until, now);
        }
        if let (Some((fingerprint, _)), Some(store)) = (signing, &self.shared) {
            let redrives = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let capacity = redrives.capacity as u64;
                match store
                    .remember_redrive(fingerprint, binding, until, capacity)
                    .await
                {
                    Ok(0) => {}
                    Ok(forgotten) => {
                        redrives.metrics.forgotten.inc_by(forgotten);
                        redrives.warn_full(now);
                    }
                    Err(error) => {
                        redrives.metrics.forgotten.inc();
                        tracing::warn!(%error, "The replay store did not take a 5xx'd delivery's signing: its original-signed retries will get 401 stale_timestamp (bp_relay_redrive_forgotten_total).");
                    }
                }
            });
        }
        if let Some(report) = report {
            let redrives = self.clone();
            tokio::spawn(async move {
                let fate = tokio::time::timeout(REPORT_BOUND, report)
                    .await
                    .unwrap_or(Fate::TimedOut);
                redrives
                    .metrics
                    .late_reports
                    .with_label_values(&[fate.label()])
                    .inc();
                redrives.settle(binding, ticket, fate);
                if let Fate::Landed(delivered) = fate {
                    redrives.written(subject, delivered);
                }
                redrives.awaiting.fetch_sub(1, Ordering::Release);
            });
        }
    }

    /// Takes one of the `--redrive-capacity` places for a report to await, or counts it as
    /// untracked (its record's fate unknown: a redrive writes it again).
    fn await_report(&self) -> bool {
        let taken = self
            .awaiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |awaiting| {
                (awaiting < self.capacity).then_some(awaiting + 1)
            })
            .is_ok();
        if !taken {
            self.metrics
                .late_reports
                .with_label_values(&[UNTRACKED])
                .inc();
        }
        taken
    }

    fn remember_signing(
        &self,
        ledger: &mut Ledger,
        fingerprint: Fingerprint,
        binding: Binding,
        until: i64,
        now: i64,
    ) {
        if ledger.signings.contains_key(&fingerprint) {
            // The same signing: the same timestamp, the same expiry.
            return;
        }
        self.make_room(ledger, now);
        ledger.signings.insert(
            fingerprint,
            Remembered {
                value: binding,
                until,
            },
        );
        ledger
            .expiries
            .push(Reverse((until, Slot::Signing(fingerprint))));
        self.metrics.entries.inc();
    }

    fn remember_fate(
        &self,
        ledger: &mut Ledger,
        binding: Binding,
        subject: Subject,
        state: State,
        until: i64,
        now: i64,
    ) {
        if let Some(known) = ledger.fates.get_mut(&binding) {
            known.until = known.until.max(until);
            // A record that landed stays the answer; anything else takes the new state.
            if !matches!(known.value.state, State::Landed(_)) {
                known.value.state = state;
            }
            ledger
                .expiries
                .push(Reverse((known.until, Slot::Fate(binding))));
            return;
        }
        self.make_room(ledger, now);
        ledger.fates.insert(
            binding,
            Remembered {
                value: Entry { state, subject },
                until,
            },
        );
        ledger.expiries.push(Reverse((until, Slot::Fate(binding))));
        self.fates.fetch_add(1, Ordering::Release);
        let watched = ledger.subjects.entry(subject).or_insert_with(|| {
            self.subjects.fetch_add(1, Ordering::Release);
            Watched {
                newest: None,
                fates: 0,
            }
        });
        watched.fates += 1;
        self.metrics.entries.inc();
    }

    /// Settles the fate a writer or a report with `ticket` was responsible for (unless
    /// another took over meanwhile).
    fn settle(&self, binding: Binding, ticket: u64, fate: Fate) {
        let mut ledger = self.ledger();
        let Some(entry) = ledger.fates.get_mut(&binding) else {
            return;
        };
        if !matches!(entry.value.state, State::Pending { ticket: mine, .. } if mine == ticket) {
            return;
        }
        entry.value.state = match fate {
            Fate::Landed(delivered) => State::Landed(delivered),
            Fate::Failed | Fate::TimedOut => State::Lost,
        };
    }

    /// Forgets expired entries, then, while the memory is full, the ones expiring soonest.
    fn make_room(&self, ledger: &mut Ledger, now: i64) {
        while let Some(&Reverse((until, slot))) = ledger.expiries.peek() {
            let expired = until <= now;
            if !expired && ledger.signings.len() + ledger.fates.len() < self.capacity {
                break;
            }
            ledger.expiries.pop();
            if self.forget(ledger, slot, until) && !expired {
                self.metrics.forgotten.inc();
                self.warn_full(now);
            }
        }
    }

    /// Forgets `slot` if `until` is still its expiry; returns whether it did.
    fn forget(&self, ledger: &mut Ledger, slot: Slot, until: i64) -> bool {
        match slot {
            Slot::Signing(fingerprint) => {
                if ledger.signings.get(&fingerprint).map(|s| s.until) != Some(until) {
                    return false;
                }
                ledger.signings.remove(&fingerprint);
            }
            Slot::Fate(binding) => {
                if ledger.fates.get(&binding).map(|f| f.until) != Some(until) {
                    return false;
                }
                let Some(entry) = ledger.fates.remove(&binding) else {
                    return false;
                };
                self.fates.fetch_sub(1, Ordering::Release);
                let subject = entry.value.subject;
                if let Some(watched) = ledger.subjects.get_mut(&subject) {
                    watched.fates -= 1;
                    if watched.fates == 0 {
                        ledger.subjects.remove(&subject);
                        self.subjects.fetch_sub(1, Ordering::Release);
                    }
                }
            }
        }
        self.metrics.entries.dec();
        true
    }

    fn warn_full(&self, now: i64) {
        if self.full_warning.due(now) {
            tracing::warn!("The redrive memory is full: the oldest 5xx'd deliveries are forgotten before --redrive-horizon, and their original-signed retries will get 401 (raise --redrive-capacity; bp_relay_redrive_forgotten_total counts them).");
        }
    }
}

/// The later of two records of one subject: the higher offset on one partition; a record on
/// another partition (the topic was repartitioned) is taken as the newer.
fn newer(known: Option<Delivered>, landed: Delivered) -> Delivered {
    match known {
        Some(known) if known.partition == landed.partition && known.offset > landed.offset => known,
        _ => landed,
    }
}

#[cfg(test)]
mod tests;
