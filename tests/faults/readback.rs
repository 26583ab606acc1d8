//! Reading a scenario's topics back, whole: every record up to each partition's high watermark
//! (the records every in-sync replica has), read once the relay has stopped writing.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig, Message, Offset, TopicPartitionList,
};

use crate::support::wait::blocking;

/// How long reading one topic may take.
const READ_BOUND: Duration = Duration::from_secs(60);

/// One record as stored.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Its timestamp (the producer's create time), Unix milliseconds: when the relay produced it.
    pub timestamp_ms: Option<i64>,
}

/// Every record of `topic`, from the beginning to the high watermarks read at the start.
pub async fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    blocking(move || read_blocking(&bootstrap, &topic)).await
}

fn read_blocking(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "faults-readback")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let deadline = Instant::now() + READ_BOUND;
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = watermarks(&consumer, topic, partition.id(), deadline);
        if high > low {
            ends.insert(partition.id(), high);
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Offset(low))
                .unwrap();
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return records;
    }
    consumer.assign(&assignment).expect("assign");
    let mut last_error = None;
    while !ends.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions {ends:?} not read to their end within {READ_BOUND:?} (last error: {last_error:?})"
        );
        // Errors right after a fault (a leader moving) pass; the deadline bounds them.
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(error)) => {
                last_error = Some(error);
                continue;
            }
            Some(Ok(message)) => message,
        };
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
        records.push(Record {
            topic: topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            timestamp_ms: message.timestamp().to_millis(),
        });
    }
    records
}

/// The low and high watermark of one partition. Right after leadership moved, the new leader
/// answers OffsetNotAvailable until its high watermark has caught up: asked again until
/// `deadline`.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> (i64, i64) {
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(watermarks) => return watermarks,
            Err(error) if Instant::now() < deadline => {
                eprintln!("{topic}/{partition}: watermarks not yet: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                panic!("{topic}/{partition}: no watermarks within {READ_BOUND:?}: {error}")
            }
        }
    }
}
