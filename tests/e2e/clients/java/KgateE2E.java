// End-to-end check of a Kafka endpoint (normally kgate) with the official Java client.
//
// Usage: java -cp <jars>:<classes> KgateE2E <bootstrap> <topic> <group> <records> <compression>
//   compression: none | lz4 | zstd | gzip | snappy
//
// Steps:
//   1. Admin: create <topic> with 3 partitions (an existing topic is fine), describeCluster().
//   2. Produce <records> keyed records, idempotent, acks=all.
//   3. Consume them in group <group> from earliest, committing offsets with commitSync().
//      Check: no duplicates, nothing missing, offsets and per-key sequences increasing.
//   4. Close the consumer, produce 50 more, start a new consumer in the same group and check
//      that it gets exactly those 50 (resumes from the committed offsets).
//   5. Collect every broker address the client learned (describeCluster, partition leaders,
//      group coordinator).
// The last line on stdout is one JSON object. Exit 0 on success, 1 on failure.
// Library logging goes to stderr (slf4j without a binding is a no-op).
//
// Environment knobs (optional):
//   KGATE_E2E_DEADLINE_S  per consume phase deadline in seconds (default 60)

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KgateE2E {
    static final int PARTITIONS = 3;
    static final int KEYS = 12;
    static final int RESUME_RECORDS = 50;

    // ---- result state (also read by the watchdog) ----
    static final Map<String, Object> out = Collections.synchronizedMap(new LinkedHashMap<>());
    static final Set<String> brokers = Collections.synchronizedSet(new TreeSet<>());
    static final List<String> errors = Collections.synchronizedList(new ArrayList<>());
    static volatile boolean printed = false;
    static final long started = System.nanoTime();

    /** One produced record: key, per-key sequence, and where the broker put it. */
    static final class Sent {
        final String key;
        final int seq;
        int partition = -1;
        long offset = -1;
        Sent(String key, int seq) { this.key = key; this.seq = seq; }
    }

    /** Outcome of one consume phase. */
    static final class Phase {
        int consumed;          // records of this run seen (including duplicates)
        int duplicates;
        int missing;
        int unexpected;        // records of this run that should not be seen in this phase
        int foreign;           // records from other runs (other run id)
        int offsetMismatch;    // consumed at another partition/offset than the producer was told
        boolean orderOk = true;
        Set<TopicPartition> assigned = new HashSet<>();
    }

    public static void main(String[] args) {
        if (args.length != 5) {
            System.err.println("usage: KgateE2E <bootstrap> <topic> <group> <records> <compression>");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        String group = args[2];
        int records;
        try {
            records = Integer.parseInt(args[3]);
        } catch (NumberFormatException e) {
            System.err.println("records must be an integer: " + args[3]);
            System.exit(2);
            return;
        }
        String compression = args[4].toLowerCase();
        if (!Set.of("none", "lz4", "zstd", "gzip", "snappy").contains(compression)) {
            System.err.println("compression must be one of none|lz4|zstd|gzip|snappy");
            System.exit(2);
        }
        long deadlineS = envLong("KGATE_E2E_DEADLINE_S", 60);

        out.put("client", "java");
        out.put("bootstrap", bootstrap);
        out.put("topic", topic);
        out.put("group", group);
        out.put("compression", compression);
        out.put("produced", 0);
        out.put("consumed", 0);
        out.put("resumed_consumed", 0);
        out.put("duplicates", 0);
        out.put("missing", records);
        out.put("order_ok", false);
        out.put("resumed_ok", false);

        // Watchdog: whatever hangs, print the JSON and exit within a bound.
        long watchdogMs = (2 * deadlineS + 40) * 1000;
        Thread wd = new Thread(() -> {
            try {
                Thread.sleep(watchdogMs);
            } catch (InterruptedException e) {
                return;
            }
            errors.add("watchdog: run exceeded " + watchdogMs + " ms");
            finish(false);
            Runtime.getRuntime().halt(1);
        }, "kgate-e2e-watchdog");
        wd.setDaemon(true);
        wd.start();

        boolean ok;
        try {
            ok = run(bootstrap, topic, group, records, compression, deadlineS);
        } catch (Throwable t) {
            errors.add(describe(t));
            t.printStackTrace(System.err);
            ok = false;
        }
        finish(ok);
        System.exit(ok ? 0 : 1);
    }

    static boolean run(String bootstrap, String topic, String group, int records, String compression,
                       long deadlineS) throws Exception {
        String runId = UUID.randomUUID().toString().substring(0, 8);
        out.put("run_id", runId);

        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        common.put("client.id", "kgate-e2e-java-" + runId);
        common.put("request.timeout.ms", "15000");
        common.put("default.api.timeout.ms", "30000");
        common.put("reconnect.backoff.max.ms", "1000");
        common.put("retry.backoff.ms", "100");

        try (Admin admin = Admin.create(withAll(common, Map.of(
                AdminClientConfig.CLIENT_ID_CONFIG, "kgate-e2e-java-admin-" + runId)))) {

            // ---- 1. topic + cluster ----
            long t0 = System.nanoTime();
            try {
                admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1)))
                        .all().get(30, TimeUnit.SECONDS);
                out.put("topic_created", true);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof TopicExistsException) {
                    out.put("topic_created", false);
                } else {
                    throw e;
                }
            }
            int partitions = waitForTopic(admin, topic, 30_000);
            out.put("partitions", partitions);

            DescribeClusterResult dc = admin.describeCluster();
            Collection<Node> nodes = dc.nodes().get(30, TimeUnit.SECONDS);
            Node controller = dc.controller().get(30, TimeUnit.SECONDS);
            String clusterId = dc.clusterId().get(30, TimeUnit.SECONDS);
            List<String> nodeList = new ArrayList<>();
            for (Node n : nodes) {
                nodeList.add(n.id() + "@" + addr(n));
                brokers.add(addr(n));
            }
            out.put("cluster_nodes", nodeList);
            out.put("cluster_id", clusterId);
            if (controller != null && !controller.isEmpty() && controller.id() >= 0) {
                out.put("controller", addr(controller));
                out.put("controller_id", controller.id());
                brokers.add(addr(controller));
            } else {
                out.put("controller", null);
            }
            out.put("setup_ms", ms(t0));

            // ---- 2. produce phase 1 ----
            Properties pp = withAll(common, Map.of(
                    ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true",
                    ProducerConfig.ACKS_CONFIG, "all",
                    ProducerConfig.COMPRESSION_TYPE_CONFIG, compression,
                    ProducerConfig.LINGER_MS_CONFIG, "5",
                    ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "45000",
                    ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5",
                    ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName(),
                    ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName()));
            pp.put(ProducerConfig.CLIENT_ID_CONFIG, "kgate-e2e-java-producer-" + runId);

            Map<String, Sent> phase1 = new LinkedHashMap<>();
            Map<String, Sent> phase2 = new LinkedHashMap<>();
            int[] nextSeq = new int[KEYS];
            t0 = System.nanoTime();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                produce(producer, topic, runId, records, 0, nextSeq, phase1);
                out.put("produced", phase1.size());
                out.put("produce_ms", ms(t0));
                for (PartitionInfo pi : producer.partitionsFor(topic)) {
                    if (pi.leader() != null && !pi.leader().isEmpty()) brokers.add(addr(pi.leader()));
                }

                // ---- 3. consume phase 1 ----
                t0 = System.nanoTime();
                Phase p1 = consume(common, topic, group, runId, phase1, Set.of(), deadlineS, "c1");
                out.put("consumed", p1.consumed);
                out.put("duplicates", p1.duplicates);
                out.put("missing", p1.missing);
                out.put("unexpected", p1.unexpected);
                out.put("foreign", p1.foreign);
                out.put("offset_mismatch", p1.offsetMismatch);
                out.put("order_ok", p1.orderOk);
                out.put("consume_ms", ms(t0));

                // ---- 4. produce 50 more, resume in the same group ----
                t0 = System.nanoTime();
                produce(producer, topic, runId, RESUME_RECORDS, records, nextSeq, phase2);
                out.put("produced", phase1.size() + phase2.size());

                Phase p2 = consume(common, topic, group, runId, phase2, phase1.keySet(), deadlineS, "c2");
                out.put("resumed_consumed", p2.consumed);
                out.put("resumed_duplicates", p2.duplicates);
                out.put("resumed_missing", p2.missing);
                out.put("resumed_redelivered", p2.unexpected);
                out.put("resumed_offset_mismatch", p2.offsetMismatch);
                boolean resumedOk = p2.consumed == RESUME_RECORDS && p2.duplicates == 0 && p2.missing == 0
                        && p2.unexpected == 0 && p2.orderOk && p2.offsetMismatch == 0;
                out.put("resumed_ok", resumedOk);
                out.put("resume_ms", ms(t0));

                // ---- 5. coordinator ----
                try {
                    ConsumerGroupDescription gd = admin.describeConsumerGroups(List.of(group))
                            .describedGroups().get(group).get(30, TimeUnit.SECONDS);
                    Node coord = gd.coordinator();
                    if (coord != null && !coord.isEmpty()) {
                        out.put("coordinator", addr(coord));
                        out.put("coordinator_id", coord.id());
                        brokers.add(addr(coord));
                    } else {
                        out.put("coordinator", null);
                    }
                    out.put("group_state", String.valueOf(gd.state()));
                } catch (ExecutionException e) {
                    errors.add("describeConsumerGroups: " + describe(e.getCause()));
                }

                // committed offsets as the admin sees them (sanity: must be at the end of the log)
                try {
                    Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                            .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
                    Map<String, Long> c = new LinkedHashMap<>();
                    for (int p = 0; p < partitions; p++) {
                        OffsetAndMetadata om = committed.get(new TopicPartition(topic, p));
                        c.put(String.valueOf(p), om == null ? null : om.offset());
                    }
                    out.put("committed", c);
                } catch (ExecutionException e) {
                    errors.add("listConsumerGroupOffsets: " + describe(e.getCause()));
                }

                boolean ok = p1.duplicates == 0 && p1.missing == 0 && p1.unexpected == 0 && p1.orderOk
                        && p1.offsetMismatch == 0 && resumedOk && errors.isEmpty();
                if (!ok && errors.isEmpty()) errors.add("verification failed");
                return ok;
            }
        }
    }

    /** Produces n records with keys k00..k11 round robin; value = runId|key|seq|index. */
    static void produce(KafkaProducer<String, String> producer, String topic, String runId, int n, int firstIndex,
                        int[] nextSeq, Map<String, Sent> sent) throws Exception {
        List<Future<RecordMetadata>> futures = new ArrayList<>(n);
        List<Sent> order = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int index = firstIndex + i;
            int k = index % KEYS;
            String key = String.format("k%02d", k);
            int seq = nextSeq[k]++;
            Sent s = new Sent(key, seq);
            String id = key + "|" + seq;
            sent.put(id, s);
            order.add(s);
            String value = runId + "|" + key + "|" + seq + "|" + index;
            futures.add(producer.send(new ProducerRecord<>(topic, key, value)));
        }
        producer.flush();
        for (int i = 0; i < n; i++) {
            RecordMetadata md = futures.get(i).get(45, TimeUnit.SECONDS);
            order.get(i).partition = md.partition();
            order.get(i).offset = md.offset();
        }
    }

    /**
     * Consumes in a fresh consumer of the group until every expected record was seen and the
     * consumer's positions passed the last offset the producer was acknowledged for in every
     * partition (so duplicates written before it would be noticed), or the deadline passes.
     * Commits with commitSync after every batch and once more before closing.
     *
     * consumer.endOffsets()/ListOffsets is deliberately not used: tansu 0.6 (memory storage)
     * answers "latest" with the last batch's base offset + 1, wrong for multi-record batches.
     */
    static Phase consume(Properties common, String topic, String group, String runId, Map<String, Sent> expected,
                         Set<String> forbidden, long deadlineS, String tag) {
        Properties cp = withAll(common, Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest",
                ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false",
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000",
                ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000",
                ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "20000",
                ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName(),
                ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName()));
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "kgate-e2e-java-" + tag + "-" + runId);

        Phase ph = new Phase();
        Map<String, Integer> seen = new HashMap<>();
        Map<Integer, Long> lastOffset = new HashMap<>();
        Map<String, Integer> lastSeq = new HashMap<>();
        Map<String, Integer> keyPartition = new HashMap<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(deadlineS);
        Map<TopicPartition, Long> endOffsets = new HashMap<>();
        for (Sent s : expected.values()) {
            endOffsets.merge(new TopicPartition(topic, s.partition), s.offset + 1, Math::max);
        }

        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp);
        try {
            consumer.subscribe(List.of(topic));
            while (System.nanoTime() < deadline) {
                ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : batch) {
                    String[] parts = r.value() == null ? new String[0] : r.value().split("\\|");
                    if (parts.length != 4 || !parts[0].equals(runId)) {
                        ph.foreign++;
                        continue;
                    }
                    String key = parts[1];
                    int seq = Integer.parseInt(parts[2]);
                    String id = key + "|" + seq;
                    ph.consumed++;
                    if (!key.equals(r.key())) {
                        ph.orderOk = false;
                        errors.add(tag + ": key mismatch " + r.key() + " vs value " + r.value());
                    }
                    // per-partition offsets strictly increasing
                    Long lo = lastOffset.get(r.partition());
                    if (lo != null && r.offset() <= lo) {
                        ph.orderOk = false;
                        errors.add(tag + ": offset went " + lo + " -> " + r.offset() + " on partition " + r.partition());
                    }
                    lastOffset.put(r.partition(), r.offset());
                    // per-key (hence per-partition) sequence strictly increasing; a key stays in one partition
                    Integer kp = keyPartition.putIfAbsent(key, r.partition());
                    if (kp != null && kp != r.partition()) {
                        ph.orderOk = false;
                        errors.add(tag + ": key " + key + " seen on partitions " + kp + " and " + r.partition());
                    }
                    Integer ls = lastSeq.get(key);
                    if (ls != null && seq <= ls) {
                        ph.orderOk = false;
                        if (errors.size() < 20) errors.add(tag + ": key " + key + " seq went " + ls + " -> " + seq);
                    }
                    lastSeq.put(key, seq);

                    if (forbidden.contains(id)) {
                        ph.unexpected++;
                        continue;
                    }
                    Sent s = expected.get(id);
                    if (s == null) {
                        ph.unexpected++;
                        continue;
                    }
                    if (s.partition != r.partition() || s.offset != r.offset()) ph.offsetMismatch++;
                    int c = seen.merge(id, 1, Integer::sum);
                    if (c > 1) ph.duplicates++;
                }
                if (!batch.isEmpty()) consumer.commitSync(Duration.ofSeconds(15));
                ph.assigned.addAll(consumer.assignment());

                // Finish only once the consumer really joined the group (non-empty assignment):
                // leaving tansu 0.6 in the middle of a first join wedges the group for good.
                if (seen.size() >= expected.size() && !consumer.assignment().isEmpty()) {
                    // Everything seen: make sure the positions also passed the acknowledged
                    // offsets, so that duplicates in between would have been noticed too.
                    if (consumer.assignment().containsAll(endOffsets.keySet())) {
                        boolean atEnd = true;
                        for (Map.Entry<TopicPartition, Long> e : endOffsets.entrySet()) {
                            if (consumer.position(e.getKey(), Duration.ofSeconds(15)) < e.getValue()) atEnd = false;
                        }
                        if (atEnd) break;
                    }
                }
            }
            if (seen.size() < expected.size()) {
                errors.add(tag + ": deadline " + deadlineS + " s passed with " + seen.size() + "/" + expected.size()
                        + " records seen, assignment " + consumer.assignment());
            }
            consumer.commitSync(Duration.ofSeconds(15));
            for (PartitionInfo pi : consumer.partitionsFor(topic, Duration.ofSeconds(15))) {
                if (pi.leader() != null && !pi.leader().isEmpty()) brokers.add(addr(pi.leader()));
            }
            for (List<PartitionInfo> l : consumer.listTopics(Duration.ofSeconds(15)).values()) {
                for (PartitionInfo pi : l) {
                    if (pi.leader() != null && !pi.leader().isEmpty()) brokers.add(addr(pi.leader()));
                }
            }
        } catch (RuntimeException e) {
            errors.add(tag + ": " + describe(e));
            e.printStackTrace(System.err);
        } finally {
            try {
                consumer.close(Duration.ofSeconds(10));
            } catch (RuntimeException e) {
                errors.add(tag + " close: " + describe(e));
            }
        }
        ph.missing = expected.size() - seen.size();
        return ph;
    }

    /** Waits until the topic has leaders for all partitions; returns the partition count. */
    static int waitForTopic(Admin admin, String topic, long timeoutMs) throws Exception {
        long end = System.currentTimeMillis() + timeoutMs;
        Exception last = null;
        while (System.currentTimeMillis() < end) {
            try {
                TopicDescription td = admin.describeTopics(List.of(topic)).allTopicNames()
                        .get(10, TimeUnit.SECONDS).get(topic);
                boolean leaders = true;
                for (TopicPartitionInfo p : td.partitions()) {
                    if (p.leader() == null || p.leader().isEmpty()) leaders = false;
                    else brokers.add(addr(p.leader()));
                }
                if (leaders && !td.partitions().isEmpty()) return td.partitions().size();
            } catch (ExecutionException e) {
                last = e;
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("topic " + topic + " not ready after " + timeoutMs + " ms", last);
    }

    // ---- helpers ----

    static synchronized void finish(boolean ok) {
        if (printed) return;
        printed = true;
        out.put("brokers", new ArrayList<>(brokers));
        out.put("elapsed_ms", ms(started));
        out.put("ok", ok);
        if (!ok || !errors.isEmpty()) {
            List<String> e = new ArrayList<>(errors);
            out.put("error", e.isEmpty() ? "failed" : String.join("; ", e.subList(0, Math.min(e.size(), 10))));
        }
        System.out.flush();
        System.err.flush();
        System.out.println(json(out));
        System.out.flush();
    }

    static Properties withAll(Properties base, Map<String, String> extra) {
        Properties p = new Properties();
        p.putAll(base);
        p.putAll(extra);
        return p;
    }

    static String addr(Node n) {
        return n.host() + ":" + n.port();
    }

    static long ms(long t0) {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    }

    static long envLong(String name, long dflt) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) return dflt;
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            return dflt;
        }
    }

    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        while (t != null) {
            if (sb.length() > 0) sb.append(" <- ");
            sb.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
            t = t.getCause();
        }
        return sb.toString();
    }

    static String json(Object o) {
        StringBuilder sb = new StringBuilder();
        writeJson(sb, o);
        return sb.toString();
    }

    static void writeJson(StringBuilder sb, Object o) {
        if (o == null) {
            sb.append("null");
        } else if (o instanceof Boolean || o instanceof Integer || o instanceof Long) {
            sb.append(o);
        } else if (o instanceof Map) {
            sb.append('{');
            boolean first = true;
            synchronized (o) {
                for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                    if (!first) sb.append(',');
                    first = false;
                    writeJson(sb, String.valueOf(e.getKey()));
                    sb.append(':');
                    writeJson(sb, e.getValue());
                }
            }
            sb.append('}');
        } else if (o instanceof Collection) {
            sb.append('[');
            boolean first = true;
            for (Object x : (Collection<?>) o) {
                if (!first) sb.append(',');
                first = false;
                writeJson(sb, x);
            }
            sb.append(']');
        } else {
            String s = o.toString();
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                        else sb.append(c);
                }
            }
            sb.append('"');
        }
    }
}
