//! The part of librdkafka's statistics the relay reads: the queue's fill and each broker's
//! state, round trip and error counters. Read straight from the JSON librdkafka emits every
//! interval, skipping the rest (per-topic and per-partition figures, most of the document):
//! it is parsed on the thread that hands out delivery reports, so a full parse would delay
//! them once a second.

use std::{borrow::Cow, collections::HashMap};

use serde::Deserialize;

/// One statistics report.
#[derive(Debug, Deserialize)]
pub struct Statistics<'a> {
    /// Records waiting in the producer's queue, and its bound.
    pub msg_cnt: u64,
    pub msg_max: u64,
    /// Bytes waiting in the producer's queue, and its bound.
    pub msg_size: u64,
    pub msg_size_max: u64,
    /// Every broker librdkafka knows, by name (bootstrap entries included).
    #[serde(borrow)]
    pub brokers: HashMap<Cow<'a, str>, Broker<'a>>,
}

/// One broker's connection, as librdkafka reports it.
#[derive(Debug, Deserialize)]
pub struct Broker<'a> {
    /// `host:port/id`.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The broker's id; -1 for a bootstrap entry that stands for a configured address.
    pub nodeid: i32,
    /// Where librdkafka has it from: `configured`, `learned` (from metadata), `internal`, …
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    /// `UP`, `DOWN`, `CONNECT`, …
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    /// Round trip over the last interval, when there was one.
    pub rtt: Option<Window>,
    /// Totals since the client started.
    pub txerrs: u64,
    pub txretries: u64,
    pub req_timeouts: u64,
}

/// A rolling window's summary; only its mean is read.
#[derive(Debug, Deserialize)]
pub struct Window {
    /// Microseconds.
    pub avg: i64,
}

impl<'a> Statistics<'a> {
    /// Reads one report.
    ///
    /// # Errors
    /// The JSON is not a statistics report.
    pub fn parse(json: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as librdkafka 2.x writes it (abridged: fewer brokers and partitions), fields the
    /// relay does not read included.
    const REPORT: &str = r#"{
      "name": "rdkafka#producer-1", "client_id": "bp-relay", "type": "producer", "ts": 1, "time": 1,
      "age": 1, "replyq": 0, "msg_cnt": 3, "msg_size": 4096, "msg_max": 100000,
      "msg_size_max": 268435456, "simple_cnt": 0, "metadata_cache_cnt": 1,
      "brokers": {
        "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1,
          "nodename": "127.0.0.1:9092", "source": "configured", "state": "INIT", "txerrs": 0, "txretries": 0,
          "req_timeouts": 0, "req": {"Produce": 0}, "toppars": {}},
        "b1:9092/1": {"name": "b1:9092/1", "nodeid": 1, "nodename": "b1:9092",
          "source": "learned", "state": "UP",
          "stateage": 5, "txerrs": 2, "txretries": 1, "req_timeouts": 4,
          "rtt": {"min": 1, "max": 9, "avg": 1500, "sum": 3, "cnt": 2, "stddev": 0,
                  "p50": 1, "p75": 1, "p90": 1, "p95": 1, "p99": 1, "p99_99": 1,
                  "outofrange": 0, "hdrsize": 11376},
          "toppars": {"t-0": {"topic": "t", "partition": 0}}}
      },
      "topics": {"t": {"topic": "t", "age": 1, "metadata_age": 1,
        "batchsize": {"min": 1, "max": 1, "avg": 1},
        "partitions": {"0": {"partition": 0, "broker": 1, "leader": 1, "msgq_cnt": 0,
                             "txmsgs": 10, "acked_msgid": 10}}}},
      "tx": 1, "tx_bytes": 1, "rx": 1, "rx_bytes": 1, "txmsgs": 10, "txmsg_bytes": 1,
      "rxmsgs": 0, "rxmsg_bytes": 0
    }"#;

    #[test]
    fn a_report_gives_the_queue_and_each_broker_and_skips_the_rest() {
        let stats = Statistics::parse(REPORT.as_bytes()).unwrap();
        assert_eq!(
            (
                stats.msg_cnt,
                stats.msg_max,
                stats.msg_size,
                stats.msg_size_max
            ),
            (3, 100_000, 4096, 268_435_456)
        );
        assert_eq!(stats.brokers.len(), 2);
        let broker = &stats.brokers["b1:9092/1"];
        assert_eq!((broker.nodeid, broker.state.as_ref()), (1, "UP"));
        assert_eq!(broker.rtt.as_ref().map(|rtt| rtt.avg), Some(1500));
        assert_eq!(
            (broker.txerrs, broker.txretries, broker.req_timeouts),
            (2, 1, 4)
        );
        let bootstrap = &stats.brokers["127.0.0.1:9092/bootstrap"];
        assert_eq!(
            (bootstrap.nodeid, bootstrap.source.as_ref()),
            (-1, "configured")
        );
        assert!(bootstrap.rtt.is_none());
    }

    #[test]
    fn a_report_without_the_queue_is_not_read() {
        assert!(Statistics::parse(br#"{"brokers": {}}"#).is_err());
        assert!(Statistics::parse(b"not json").is_err());
    }
}
