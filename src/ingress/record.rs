//! The record contract: CloudEvents 1.0, Kafka protocol binding, binary mode.
//!
//! The value is the request body, byte for byte; the key is the process id; the event
//! attributes travel as `ce_*` headers. [`Outgoing::new`] chooses the topic: the route's own for a
//! delivery that parsed, the dead-letter topic for one that did not. Consumer teams rely on
//! every name here: change one only together with README.md ("Record contract") and
//! docs/asyncapi.yaml.

use std::borrow::Cow;

use bytes::Bytes;
use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

use crate::{
    config::Topics,
    ingress::replay::Digest,
    ingress::traceparent::TraceParent,
    ingress::webhook::{EventKind, RejectReason, Rejection, Webhook},
};

/// A record and the topic it goes to.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub record: Record,
    /// Why the delivery went to the dead-letter topic, if it did.
    pub rejection: Option<Rejection>,
}

impl<'a> Outgoing<'a> {
    /// The record for a delivery and its topic: the route's topic when the body parsed, the
    /// dead-letter topic when it did not.
    pub fn new(
        topics: &'a Topics,
        envelope: &Envelope,
        parsed: Result<Webhook, Rejection>,
        body: Bytes,
    ) -> Outgoing<'a> {
        match parsed {
            Ok(webhook) => {
                let topic = match envelope.kind {
                    EventKind::BusinessProcess => &topics.topic,
                    EventKind::Action => &topics.actions_topic,
                };
                Outgoing {
                    topic,
                    record: Record::accepted(envelope, &topics.ce_source, &webhook, body),
                    rejection: None,
                }
            }
            Err(rejection) => {
                let record = Record::dead_letter(envelope, &topics.ce_source, &rejection, body);
                Outgoing {
                    topic: &topics.dead_letter_topic,
                    record,
                    rejection: Some(rejection),
                }
            }
        }
    }
}

/// The `bp_relay_route` value of a dead letter: the path segment of the route it came in on.
/// Part of the record contract (consumers match it against `ce_type`), spelled like the URL
/// rather than like the metric label.
pub fn route_header(kind: EventKind) -> &'static str {
    match kind {
        EventKind::BusinessProcess => "business-processes",
        EventKind::Action => "business-process-actions",
    }
}

/// Header names of the contract.
pub mod header {
    /// CloudEvents spec version, always `1.0`.
    pub const SPECVERSION: &str = "ce_specversion";
    /// SHA-256 hex of the value: identical for redeliveries of the same body.
    pub const ID: &str = "ce_id";
    /// The configured source.
    pub const SOURCE: &str = "ce_source";
    /// The Authvia subscription type.
    pub const TYPE: &str = "ce_type";
    /// The process id.
    pub const SUBJECT: &str = "ce_subject";
    /// Receipt time at the relay, RFC 3339 UTC.
    pub const TIME: &str = "ce_time";
    /// The process version, when the body has one.
    pub const PROCESS_VERSION: &str = "ce_processversion";
    /// W3C traceparent (CloudEvents distributed-tracing extension).
    pub const TRACEPARENT: &str = "ce_traceparent";
    /// Media type of the value.
    pub const CONTENT_TYPE: &str = "content-type";
    /// Dead letters only: the closed reason code.
    pub const DEAD_LETTER_REASON: &str = "bp_relay_dead_letter_reason";
    /// Dead letters only: a human-readable explanation (never payload values).
    pub const DEAD_LETTER_DETAIL: &str = "bp_relay_dead_letter_detail";
    /// Dead letters only: the route the delivery came in on.
    pub const ROUTE: &str = "bp_relay_route";
}

/// `ce_time`: RFC 3339, UTC, exactly three fraction digits (`2026-11-29T09:00:00.120Z`).
const CE_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// What the relay knows about a delivery besides its body.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Which subscription type (from the URL path).
    pub kind: EventKind,
    /// SHA-256 of the body.
    pub digest: Digest,
    /// When the request arrived.
    pub received: OffsetDateTime,
    /// The trace this delivery belongs to.
    pub traceparent: TraceParent,
}

/// A record ready for the producer.
#[derive(Debug, Clone)]
pub struct Record {
    /// The key, when there is one (dead letters may have none).
    pub key: Option<String>,
    /// The request body, unchanged.
    pub value: Bytes,
    /// The CloudEvents headers.
    pub headers: Headers,
}

/// A record's headers, in the order the contract lists them: names from [`header`], values as
/// text (the fixed ones borrowed, not copied). Free of the Kafka client, which copies them into
/// its own at send time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(&'static str, Cow<'static, str>)>);

impl Headers {
    /// Room for every header a record can carry (base eight plus version or dead-letter three).
    const CAPACITY: usize = 11;

    fn push(&mut self, name: &'static str, value: impl Into<Cow<'static, str>>) {
        self.0.push((name, value.into()));
    }

    /// The value of the header `name`, if the record has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// How many headers the record carries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it carries none (never, for a record of the contract).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(name, value)| (*name, value.as_ref()))
    }
}

impl Record {
    /// The record for a delivery that parsed as a business process or action.
    pub fn accepted(envelope: &Envelope, source: &str, webhook: &Webhook, body: Bytes) -> Record {
        let mut headers = base_headers(envelope, source, Some(&webhook.key), JSON);
        if let Some(version) = &webhook.version {
            headers.push(header::PROCESS_VERSION, version.clone());
        }
        Record {
            key: Some(webhook.key.clone()),
            value: body,
            headers,
        }
    }

    /// The dead-letter record for an authenticated delivery that did not parse.
    pub fn dead_letter(
        envelope: &Envelope,
        source: &str,
        rejection: &Rejection,
        body: Bytes,
    ) -> Record {
        // A body that is not JSON must not be labelled as JSON.
        let content_type = if rejection.reason == RejectReason::NotJson {
            OCTET_STREAM
        } else {
            JSON
        };
        let mut headers = base_headers(envelope, source, rejection.key.as_deref(), content_type);
        headers.push(header::DEAD_LETTER_REASON, rejection.reason.code());
        headers.push(header::DEAD_LETTER_DETAIL, rejection.detail.clone());
        headers.push(header::ROUTE, route_header(envelope.kind));
        Record {
            key: rejection.key.clone(),
            value: body,
            headers,
        }
    }
}

const JSON: &str = "application/json";
const OCTET_STREAM: &str = "application/octet-stream";

fn base_headers(
    envelope: &Envelope,
    source: &str,
    subject: Option<&str>,
    content_type: &'static str,
) -> Headers {
    // A UTC time always formats; the fallback keeps the header present regardless.
    let time = envelope
        .received
        .to_offset(time::UtcOffset::UTC)
        .format(CE_TIME)
        .unwrap_or_else(|_| envelope.received.unix_timestamp().to_string());
    let mut headers = Headers(Vec::with_capacity(Headers::CAPACITY));
    headers.push(header::SPECVERSION, "1.0");
    headers.push(header::ID, hex::encode(envelope.digest));
    headers.push(header::SOURCE, source.to_owned());
    headers.push(header::TYPE, envelope.kind.event_type());
    if let Some(subject) = subject {
        headers.push(header::SUBJECT, subject.to_owned());
    }
    headers.push(header::TIME, time);
    headers.push(header::TRACEPARENT, envelope.traceparent.to_string());
    headers.push(header::CONTENT_TYPE, content_type);
    headers
}

/// Receipt time truncated to milliseconds, the precision `ce_time` promises.
pub fn now_millis() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            kind: EventKind::BusinessProcess,
            digest: [0xab; 32],
            received: OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_000_000).unwrap(),
            traceparent: TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .unwrap(),
        }
    }

    fn header_map(headers: &Headers) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    #[test]
    fn accepted_record_carries_the_cloudevents_headers() {
        let webhook = Webhook {
            key: "p-1".into(),
            version: Some("4".into()),
        };
        let record = Record::accepted(&envelope(), "urn:test", &webhook, Bytes::from_static(b"{}"));
        assert_eq!(record.key.as_deref(), Some("p-1"));
        assert_eq!(&record.value[..], b"{}");
        let expected = [
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", "ab".repeat(32)),
            ("ce_source", "urn:test".into()),
            ("ce_type", "business_processes.update".into()),
            ("ce_subject", "p-1".into()),
            ("ce_time", "2026-01-01T00:00:00.123Z".into()),
            (
                "ce_traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ),
            ("content-type", "application/json".into()),
            ("ce_processversion", "4".into()),
        ];
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(header_map(&record.headers), expected);
    }

    #[test]
    fn dead_letter_without_key_has_no_subject_and_names_the_reason() {
        let rejection = Rejection {
            reason: RejectReason::NotJson,
            detail: "body is not JSON".into(),
            key: None,
        };
        let record = Record::dead_letter(
            &envelope(),
            "urn:test",
            &rejection,
            Bytes::from_static(b"ping"),
        );
        assert_eq!(record.key, None);
        let headers = header_map(&record.headers);
        assert!(!headers.iter().any(|(k, _)| k == "ce_subject"));
        assert!(headers.contains(&("bp_relay_dead_letter_reason".into(), "not_json".into())));
        assert!(headers.contains(&("bp_relay_route".into(), "business-processes".into())));
        assert!(headers.contains(&("content-type".into(), "application/octet-stream".into())));
    }
}
