package dev.bprelay.consumer;

import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Utils;

/**
 * Reads a bp-relay topic from the beginning with the plain Java Kafka client and checks every
 * record against the bp-relay record contract (CloudEvents 1.0 Kafka binding, binary mode; see
 * docs/asyncapi.yaml). Prints one JSON line and exits 0 only if exactly {@code --expect} records
 * were read and all of them passed; 1 otherwise; 2 on usage errors.
 *
 * <p>It is also the reference consumer for downstream teams: see README.md beside pom.xml.
 */
public final class ContractCheck {

    static final String TYPE_BP = "business_processes.update";
    static final String TYPE_ACTION = "business_processes_actions.update";
    static final Set<String> TYPES = Set.of(TYPE_BP, TYPE_ACTION);
    static final Set<String> DEAD_LETTER_REASONS = Set.of(
            "not_json", "not_an_object", "missing_key", "invalid_key", "missing_field", "invalid_field");
    static final Map<String, String> ROUTE_TO_TYPE = Map.of(
            "business-processes", TYPE_BP,
            "business-process-actions", TYPE_ACTION);

    /** W3C Trace Context, version 00: lowercase hex only. */
    static final Pattern TRACEPARENT = Pattern.compile("^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$");
    /** RFC 3339 date-time (section 5.6); the relay writes UTC with milliseconds. */
    static final Pattern RFC3339 = Pattern.compile(
            "^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$");
    static final Pattern DECIMAL = Pattern.compile("^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?$");
    static final Pattern SHA256_HEX = Pattern.compile("^[0-9a-f]{64}$");

    static final int MAX_FAILURES_LISTED = 50;
    static final int MAX_DETAIL_CHARS = 160;

    private static final String USAGE = String.join("\n",
            "usage: ContractCheck --bootstrap HOST:PORT --topic TOPIC --expect N",
            "                     [--timeout-seconds S] [--dead-letter] [--type CE_TYPE]",
            "                     [--ce-source SOURCE] [--key-pointer POINTER|none]",
            "  --bootstrap        Kafka bootstrap servers",
            "  --topic            topic to read from the beginning (all partitions are assigned)",
            "  --expect           exact number of records the topic must hold",
            "  --timeout-seconds  give up after S seconds (default 30)",
            "  --dead-letter      check the dead-letter contract (null key allowed, any value bytes,",
            "                     bp_relay_* headers required)",
            "  --type             require this ce_type on every record",
            "  --ce-source        require this exact ce_source on every record",
            "  --key-pointer      JSON pointer in the value that must equal the key; default by",
            "                     ce_type: /id (business process), /businessProcess (action);",
            "                     'none' disables this check (ignored with --dead-letter)",
            "exit: 0 all N records read and valid; 1 otherwise; 2 usage error");

    // ---- options ---------------------------------------------------------------------------
    String bootstrap;
    String topic;
    long expect = -1;
    long timeoutSeconds = 30;
    boolean deadLetter;
    String requiredType;
    String requiredSource;
    String keyPointer; // null: default per ce_type; "none": disabled

    // ---- results ---------------------------------------------------------------------------
    long records;
    long ok;
    long failureCount;
    final List<String> failures = new ArrayList<>();
    int partitionCount;

    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String m) {
            super(m);
        }
    }

    public static void main(String[] args) {
        ContractCheck c = new ContractCheck();
        try {
            c.parseArgs(args);
        } catch (UsageException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(2);
            return;
        }
        int code;
        try {
            code = c.run();
        } catch (RuntimeException e) {
            c.fail(-1, -1, "consumer", e.getClass().getSimpleName() + ": " + e.getMessage());
            code = 1;
        }
        System.out.println(c.summaryJson());
        System.out.flush();
        System.exit(code);
    }

    void parseArgs(String[] args) throws UsageException {
        for (int a = 0; a < args.length; a++) {
            String opt = args[a];
            switch (opt) {
                case "--dead-letter":
                    deadLetter = true;
                    continue;
                case "-h":
                case "--help":
                    throw new UsageException("help requested");
                default:
                    break;
            }
            if (a + 1 >= args.length) {
                throw new UsageException("missing value for " + opt);
            }
            String v = args[++a];
            switch (opt) {
                case "--bootstrap":
                    bootstrap = v;
                    break;
                case "--topic":
                    topic = v;
                    break;
                case "--expect":
                    expect = parseLong(opt, v, 0);
                    break;
                case "--timeout-seconds":
                    timeoutSeconds = parseLong(opt, v, 1);
                    break;
                case "--type":
                    if (!TYPES.contains(v)) {
                        throw new UsageException("--type must be one of " + TYPES);
                    }
                    requiredType = v;
                    break;
                case "--ce-source":
                    requiredSource = v;
                    break;
                case "--key-pointer":
                    if (!v.equals("none") && !v.isEmpty() && !v.startsWith("/")) {
                        throw new UsageException("--key-pointer must be a JSON pointer (/a/b) or 'none'");
                    }
                    keyPointer = v;
                    break;
                default:
                    throw new UsageException("unknown option " + opt);
            }
        }
        if (bootstrap == null || bootstrap.isBlank()) {
            throw new UsageException("--bootstrap is required");
        }
        if (topic == null || topic.isBlank()) {
            throw new UsageException("--topic is required");
        }
        if (expect < 0) {
            throw new UsageException("--expect is required");
        }
    }

    private static long parseLong(String opt, String v, long min) throws UsageException {
        try {
            long n = Long.parseLong(v);
            if (n < min) {
                throw new UsageException(opt + " must be >= " + min);
            }
            return n;
        } catch (NumberFormatException e) {
            throw new UsageException(opt + " needs an integer, got '" + clip(v) + "'");
        }
    }

    int run() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "bp-relay-contract-check");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        // No group: partitions are assigned manually and nothing is committed.
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
        // Only committed records if the producer ever uses transactions.
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");

        long deadline = System.nanoTime() + Duration.ofSeconds(timeoutSeconds).toNanos();
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p);
        try {
            List<PartitionInfo> parts = waitForPartitions(consumer, deadline);
            if (parts.isEmpty()) {
                fail(-1, -1, "topic", "topic '" + clip(topic) + "' not found (or broker unreachable) within "
                        + timeoutSeconds + "s");
                return 1;
            }
            partitionCount = parts.size();
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : parts) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);

            // Read until N records were seen, then on until the end offsets as of that moment, so
            // that more than N records is detected too (exactly N are required).
            Map<TopicPartition, Long> ends = null;
            while (System.nanoTime() < deadline) {
                long leftMs = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(Math.min(500, leftMs)));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    records++;
                    if (check(r)) {
                        ok++;
                    }
                }
                if (records >= expect && ends == null) {
                    ends = consumer.endOffsets(tps);
                }
                if (ends != null && reached(consumer, ends)) {
                    break;
                }
            }
            if (ends == null || !reached(consumer, ends)) {
                if (records >= expect) {
                    fail(-1, -1, "timeout", "timed out after " + timeoutSeconds
                            + "s before reaching the end of the topic");
                }
            }
        } finally {
            // No group and no commits: nothing to wait for on close.
            consumer.close(CloseOptions.timeout(Duration.ofSeconds(1)));
        }
        if (records != expect) {
            fail(-1, -1, "count", "expected exactly " + expect + " records, read " + records);
        }
        return (records == expect && ok == records && failureCount == 0) ? 0 : 1;
    }

    private List<PartitionInfo> waitForPartitions(KafkaConsumer<byte[], byte[]> consumer, long deadline) {
        while (true) {
            List<PartitionInfo> parts;
            try {
                long leftMs = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
                parts = consumer.partitionsFor(topic, Duration.ofMillis(Math.min(5000, leftMs)));
            } catch (org.apache.kafka.common.errors.TimeoutException
                    | org.apache.kafka.common.errors.UnknownTopicOrPartitionException e) {
                parts = null;
            }
            if (parts != null && !parts.isEmpty()) {
                return parts;
            }
            if (System.nanoTime() >= deadline) {
                return List.of();
            }
            sleep(250);
        }
    }

    private static boolean reached(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> ends) {
        for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    /** Checks one record; records every problem found; returns true when it has none. */
    boolean check(ConsumerRecord<byte[], byte[]> r) {
        int partition = r.partition();
        long offset = r.offset();
        long before = failureCount;

        // Every header must appear at most once.
        Map<String, String> h = new HashMap<>();
        for (Header hd : r.headers()) {
            String name = hd.key();
            if (h.containsKey(name)) {
                fail(partition, offset, name, "header appears more than once");
                continue;
            }
            if (hd.value() == null) {
                h.put(name, null);
                fail(partition, offset, name, "header has a null value");
                continue;
            }
            String v = utf8(hd.value());
            if (v == null) {
                fail(partition, offset, name, "header value is not valid UTF-8");
            }
            h.put(name, v);
        }

        // ---- key & partition (the Java default partitioner for keyed records) ----
        byte[] keyBytes = r.key();
        String key = null;
        if (keyBytes == null) {
            if (!deadLetter) {
                fail(partition, offset, "key", "key is null");
            }
        } else {
            key = utf8(keyBytes);
            if (key == null) {
                fail(partition, offset, "key", "key is not valid UTF-8");
            } else if (key.isEmpty()) {
                fail(partition, offset, "key", "key is empty");
            }
            int expected = Utils.toPositive(Utils.murmur2(keyBytes)) % partitionCount;
            if (partition != expected) {
                fail(partition, offset, "partition", "record is in partition " + partition
                        + " but murmur2(key) % " + partitionCount + " = " + expected);
            }
        }

        // ---- CloudEvents binary-mode headers ----
        String spec = h.get("ce_specversion");
        if (!"1.0".equals(spec)) {
            fail(partition, offset, "ce_specversion", "want '1.0', got " + show(spec));
        }
        String id = h.get("ce_id");
        String hash = sha256Hex(r.value() == null ? new byte[0] : r.value());
        if (id == null) {
            fail(partition, offset, "ce_id", "missing");
        } else if (!SHA256_HEX.matcher(id).matches()) {
            fail(partition, offset, "ce_id", "not 64 lowercase hex characters: " + show(id));
        } else if (!id.equals(hash)) {
            fail(partition, offset, "ce_id", "is not sha256(value): got " + id + ", value hashes to " + hash);
        }
        String source = h.get("ce_source");
        if (source == null || source.isEmpty()) {
            fail(partition, offset, "ce_source", "missing or empty");
        } else if (requiredSource != null && !requiredSource.equals(source)) {
            fail(partition, offset, "ce_source", "want " + show(requiredSource) + ", got " + show(source));
        }
        String type = h.get("ce_type");
        if (type == null || !TYPES.contains(type)) {
            fail(partition, offset, "ce_type", "want one of " + new java.util.TreeSet<>(TYPES) + ", got " + show(type));
        } else if (requiredType != null && !requiredType.equals(type)) {
            fail(partition, offset, "ce_type", "want " + show(requiredType) + ", got " + show(type));
        }
        String subject = h.get("ce_subject");
        if (key != null) {
            if (!key.equals(subject)) {
                fail(partition, offset, "ce_subject", "must equal the key " + show(key) + ", got " + show(subject));
            }
        } else if (keyBytes == null && h.containsKey("ce_subject")) {
            fail(partition, offset, "ce_subject", "present on a record without key");
        }
        // content-type: required on the two business topics. On the dead-letter topic the value
        // may not be JSON at all, so the header is optional there (any media type if present).
        String ct = h.get("content-type");
        if (!deadLetter && !"application/json".equals(ct)) {
            fail(partition, offset, "content-type", "want 'application/json', got " + show(ct));
        } else if (deadLetter && ct != null && ct.isBlank()) {
            fail(partition, offset, "content-type", "present but empty");
        }
        String time = h.get("ce_time");
        if (time == null) {
            fail(partition, offset, "ce_time", "missing");
        } else if (!RFC3339.matcher(time).matches()) {
            fail(partition, offset, "ce_time", "not an RFC 3339 date-time: " + show(time));
        } else {
            try {
                OffsetDateTime.parse(time.toUpperCase(java.util.Locale.ROOT), DateTimeFormatter.ISO_OFFSET_DATE_TIME)
                        .toInstant();
            } catch (DateTimeParseException e) {
                fail(partition, offset, "ce_time", "not a valid instant: " + show(time));
            }
        }
        String tp = h.get("ce_traceparent");
        if (tp == null) {
            fail(partition, offset, "ce_traceparent", "missing");
        } else {
            java.util.regex.Matcher m = TRACEPARENT.matcher(tp);
            if (!m.matches()) {
                fail(partition, offset, "ce_traceparent", "not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>): "
                        + show(tp));
            } else if (m.group(1).chars().allMatch(c -> c == '0') || m.group(2).chars().allMatch(c -> c == '0')) {
                fail(partition, offset, "ce_traceparent", "all-zero trace-id or parent-id is invalid: " + show(tp));
            }
        }
        String pv = h.get("ce_processversion");
        if (pv != null) {
            if (!DECIMAL.matcher(pv).matches()) {
                fail(partition, offset, "ce_processversion", "not a decimal number: " + show(pv));
            }
            if (TYPE_ACTION.equals(type)) {
                fail(partition, offset, "ce_processversion", "only business process records carry it");
            }
        }

        // ---- value ----
        Object doc = null;
        String jsonError = null;
        try {
            doc = MiniJson.parse(r.value() == null ? new byte[0] : r.value());
        } catch (MiniJson.JsonException e) {
            jsonError = e.getMessage();
        }
        if (!deadLetter) {
            if (jsonError != null) {
                fail(partition, offset, "value", "not JSON: " + jsonError);
            } else if (!(doc instanceof Map)) {
                fail(partition, offset, "value", "not a JSON object");
            } else {
                checkBody(partition, offset, type, key, pv, doc);
            }
        } else {
            checkDeadLetter(partition, offset, h, type);
        }
        return failureCount == before;
    }

    private void checkBody(int partition, long offset, String type, String key, String pv, Object doc) {
        // The key is taken from the body: by default /id for a process and /businessProcess for an
        // action (the relay's pointers are configurable; pass --key-pointer to match).
        String ptr = keyPointer;
        if (ptr == null) {
            ptr = TYPE_ACTION.equals(type) ? "/businessProcess" : TYPE_BP.equals(type) ? "/id" : "none";
        }
        if (!ptr.equals("none") && key != null) {
            Object k = MiniJson.pointer(doc, ptr);
            if (!(k instanceof String)) {
                fail(partition, offset, "key", "value has no string at " + ptr);
            } else if (!k.equals(key)) {
                fail(partition, offset, "key", "key " + show(key) + " differs from the value at " + ptr);
            }
        }
        if (TYPE_BP.equals(type)) {
            Object version = MiniJson.pointer(doc, "/version");
            if (version instanceof BigDecimal) {
                if (pv == null) {
                    fail(partition, offset, "ce_processversion", "missing although the value has a numeric version");
                } else if (DECIMAL.matcher(pv).matches() && new BigDecimal(pv).compareTo((BigDecimal) version) != 0) {
                    fail(partition, offset, "ce_processversion", show(pv) + " differs from the value's version "
                            + ((BigDecimal) version).toPlainString());
                }
            } else if (pv != null) {
                fail(partition, offset, "ce_processversion", "present although the value has no numeric version");
            }
        }
    }

    private void checkDeadLetter(int partition, long offset, Map<String, String> h, String type) {
        String reason = h.get("bp_relay_dead_letter_reason");
        if (reason == null || !DEAD_LETTER_REASONS.contains(reason)) {
            fail(partition, offset, "bp_relay_dead_letter_reason", "want one of " + new java.util.TreeSet<>(DEAD_LETTER_REASONS)
                    + ", got " + show(reason));
        }
        String detail = h.get("bp_relay_dead_letter_detail");
        if (detail == null || detail.isBlank()) {
            fail(partition, offset, "bp_relay_dead_letter_detail", "missing or empty");
        }
        String route = h.get("bp_relay_route");
        if (route == null || !ROUTE_TO_TYPE.containsKey(route)) {
            fail(partition, offset, "bp_relay_route", "want one of " + new java.util.TreeSet<>(ROUTE_TO_TYPE.keySet()) + ", got " + show(route));
        } else if (type != null && TYPES.contains(type) && !ROUTE_TO_TYPE.get(route).equals(type)) {
            fail(partition, offset, "bp_relay_route", "route " + route + " does not match ce_type " + type);
        }
    }

    // ---- helpers ---------------------------------------------------------------------------

    void fail(int partition, long offset, String check, String detail) {
        failureCount++;
        if (failures.size() < MAX_FAILURES_LISTED) {
            StringBuilder b = new StringBuilder("{");
            if (partition >= 0) {
                b.append("\"partition\":").append(partition).append(",\"offset\":").append(offset).append(',');
            }
            b.append("\"check\":").append(jsonString(check)).append(",\"detail\":").append(jsonString(detail));
            failures.add(b.append('}').toString());
        }
    }

    String summaryJson() {
        StringBuilder b = new StringBuilder();
        b.append("{\"records\":").append(records)
                .append(",\"ok\":").append(ok)
                .append(",\"failures\":[").append(String.join(",", failures)).append(']');
        if (failureCount > failures.size()) {
            b.append(",\"failures_not_listed\":").append(failureCount - failures.size());
        }
        b.append(",\"expected\":").append(expect)
                .append(",\"topic\":").append(jsonString(topic == null ? "" : topic))
                .append(",\"partitions\":").append(partitionCount)
                .append(",\"mode\":").append(jsonString(deadLetter ? "dead-letter" : "records"))
                .append('}');
        return b.toString();
    }

    static String sha256Hex(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Strict UTF-8 decoding; null when the bytes are not UTF-8. */
    static String utf8(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b))
                    .toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }

    static String show(String v) {
        return v == null ? "(absent)" : "'" + clip(v) + "'";
    }

    static String clip(String v) {
        return v.length() <= MAX_DETAIL_CHARS ? v : v.substring(0, MAX_DETAIL_CHARS) + "...";
    }

    static String jsonString(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
