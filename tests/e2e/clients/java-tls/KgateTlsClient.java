// The official Java client with extra client properties (TLS settings) from a file, for
// kgate's TLS end-to-end tests (tests/e2e/test_tls.py).
//
// Usage: java -cp <jars>:<classes> KgateTlsClient <props-file> probe     <bootstrap>
//        java -cp <jars>:<classes> KgateTlsClient <props-file> roundtrip <bootstrap> <topic> <group> <records>
//
// <props-file> is a java.util.Properties file merged into every client's configuration
// (security.protocol, ssl.keystore.*, ssl.truststore.*, timeouts, ...).
//
//   probe      Admin.describeCluster(); succeeds when the cluster answers.
//   roundtrip  create <topic> (3 partitions), produce <records> keyed records idempotently
//              with acks=all, consume them in group <group> committing with commitSync(),
//              then read the group's committed offsets back with the Admin client.
//              Checks: nothing missing, no duplicates, per-key order, committed = consumed.
//
// The last line on stdout is one JSON object: ok, error, error_class (the innermost cause's
// class), and the counts. Exit 0 when ok, 1 otherwise. A watchdog bounds the run.

import java.io.FileInputStream;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KgateTlsClient {
    static final int PARTITIONS = 3;
    static final int KEYS = 12;
    static final Map<String, Object> out = Collections.synchronizedMap(new LinkedHashMap<>());
    static volatile boolean printed = false;

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: KgateTlsClient <props-file> probe|roundtrip <bootstrap> [topic group records]");
            System.exit(2);
        }
        Properties common = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            common.load(in);
        }
        String mode = args[1];
        common.put("bootstrap.servers", args[2]);
        common.putIfAbsent("request.timeout.ms", "10000");
        common.putIfAbsent("default.api.timeout.ms", "20000");
        common.putIfAbsent("reconnect.backoff.max.ms", "1000");
        out.put("client", "java");
        out.put("mode", mode);
        out.put("ok", false);

        long watchdogMs = Long.parseLong(System.getenv().getOrDefault("KGATE_E2E_WATCHDOG_S", "120")) * 1000;
        Thread wd = new Thread(() -> {
            try {
                Thread.sleep(watchdogMs);
            } catch (InterruptedException e) {
                return;
            }
            out.put("error", "watchdog: run exceeded " + watchdogMs + " ms");
            finish();
            Runtime.getRuntime().halt(1);
        }, "watchdog");
        wd.setDaemon(true);
        wd.start();

        boolean ok = false;
        try {
            if (mode.equals("probe")) {
                ok = probe(common);
            } else if (mode.equals("roundtrip")) {
                ok = roundtrip(common, args[3], args[4], Integer.parseInt(args[5]));
            } else {
                out.put("error", "unknown mode " + mode);
            }
        } catch (Throwable t) {
            Throwable root = t;
            for (int i = 0; i < 20 && root.getCause() != null && root.getCause() != root; i++) root = root.getCause();
            out.put("error", t.toString());
            out.put("error_class", root.getClass().getName());
            out.put("error_root", String.valueOf(root.getMessage()));
            List<String> chain = new ArrayList<>();
            for (Throwable c = t; c != null && chain.size() < 10; c = c.getCause()) {
                chain.add(c.getClass().getName() + ": " + c.getMessage());
                if (c.getCause() == c) break;
            }
            out.put("error_chain", chain);
        }
        out.put("ok", ok);
        finish();
        System.exit(ok ? 0 : 1);
    }

    static synchronized void finish() {
        if (printed) return;
        printed = true;
        System.out.println(toJson(out));
        System.out.flush();
    }

    static boolean probe(Properties common) throws Exception {
        try (Admin admin = Admin.create(common)) {
            List<String> nodes = new ArrayList<>();
            for (Node n : admin.describeCluster().nodes().get(60, TimeUnit.SECONDS)) {
                nodes.add(n.id() + "@" + n.host() + ":" + n.port());
            }
            out.put("nodes", nodes);
            return !nodes.isEmpty();
        }
    }

    static boolean roundtrip(Properties common, String topic, String group, int records) throws Exception {
        String run = UUID.randomUUID().toString().substring(0, 8);
        out.put("topic", topic);
        out.put("group", group);
        try (Admin admin = Admin.create(common)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) throw e;
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (true) {
                try {
                    TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                    if (d.partitions().size() == PARTITIONS && d.partitions().stream().allMatch(p -> p.leader() != null)) break;
                } catch (ExecutionException e) {
                    // not there yet
                }
                if (System.nanoTime() > deadline) throw new IllegalStateException("topic " + topic + " did not appear");
                Thread.sleep(200);
            }

            // produce
            Properties pp = new Properties();
            pp.putAll(common);
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
            pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "45000");
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            Map<String, long[]> sent = new HashMap<>(); // value -> {partition, offset}
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                List<Future<RecordMetadata>> fs = new ArrayList<>();
                List<String> values = new ArrayList<>();
                int[] seq = new int[KEYS];
                for (int i = 0; i < records; i++) {
                    String key = String.format("k%02d", i % KEYS);
                    String value = run + "|" + key + "|" + (seq[i % KEYS]++);
                    values.add(value);
                    fs.add(producer.send(new ProducerRecord<>(topic, key, value)));
                }
                producer.flush();
                for (int i = 0; i < records; i++) {
                    RecordMetadata md = fs.get(i).get(45, TimeUnit.SECONDS);
                    sent.put(values.get(i), new long[] {md.partition(), md.offset()});
                }
            }
            out.put("produced", sent.size());

            // consume in a group, commit
            Properties cp = new Properties();
            cp.putAll(common);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
            cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            Map<String, Integer> seen = new HashMap<>();
            Map<String, Integer> lastSeq = new HashMap<>();
            Map<Integer, Long> next = new HashMap<>();
            int consumed = 0, duplicates = 0, foreign = 0, disorder = 0;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.subscribe(List.of(topic));
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (seen.size() < sent.size() && System.nanoTime() < end) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        if (r.value() == null || !sent.containsKey(r.value())) {
                            foreign++;
                            continue;
                        }
                        consumed++;
                        if (seen.merge(r.value(), 1, Integer::sum) > 1) duplicates++;
                        String[] parts = r.value().split("\\|");
                        int s = Integer.parseInt(parts[2]);
                        Integer ls = lastSeq.put(parts[1], s);
                        if (ls != null && s <= ls) disorder++;
                        next.merge(r.partition(), r.offset() + 1, Math::max);
                    }
                    consumer.commitSync();
                }
                consumer.commitSync();
            }
            out.put("consumed", consumed);
            out.put("duplicates", duplicates);
            out.put("missing", sent.size() - seen.size());
            out.put("foreign", foreign);
            out.put("disorder", disorder);

            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            Map<String, Long> c = new LinkedHashMap<>();
            boolean commitOk = true;
            for (int p = 0; p < PARTITIONS; p++) {
                OffsetAndMetadata om = committed.get(new TopicPartition(topic, p));
                Long off = om == null ? null : om.offset();
                c.put(String.valueOf(p), off);
                Long want = next.get(p);
                if (want != null && !want.equals(off)) commitOk = false;
            }
            out.put("committed", c);
            out.put("commit_ok", commitOk);
            return consumed == sent.size() && duplicates == 0 && seen.size() == sent.size() && disorder == 0
                    && commitOk && sent.size() == records;
        }
    }

    // ---- minimal JSON ----
    static String toJson(Object o) {
        if (o == null) return "null";
        if (o instanceof Boolean || o instanceof Number) return o.toString();
        if (o instanceof Map) {
            StringBuilder b = new StringBuilder("{");
            boolean first = true;
            synchronized (o) {
                for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                    if (!first) b.append(',');
                    first = false;
                    b.append(toJson(String.valueOf(e.getKey()))).append(':').append(toJson(e.getValue()));
                }
            }
            return b.append('}').toString();
        }
        if (o instanceof List) {
            StringBuilder b = new StringBuilder("[");
            boolean first = true;
            for (Object x : (List<?>) o) {
                if (!first) b.append(',');
                first = false;
                b.append(toJson(x));
            }
            return b.append(']').toString();
        }
        String s = o.toString();
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
                    else b.append(ch);
            }
        }
        return b.append('"').toString();
    }
}
