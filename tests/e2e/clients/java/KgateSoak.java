// Soak run with the official Java client: produce and consume continuously for a while.
//
// Usage: java -cp <jars>:<classes> KgateSoak <bootstrap> <topic> <group> <seconds> <rate/s> [key=value ...]
//   key=value pairs are extra client properties for the admin, producer and consumer
//   (e.g. security.protocol=SASL_PLAINTEXT sasl.mechanism=PLAIN sasl.jaas.config=...).
//
// Creates <topic> (3 partitions) if needed, then for <seconds> a producer (idempotent,
// acks=all) sends about <rate> records a second while a consumer in group <group> reads
// them. Afterwards it waits up to 30 s for the consumer to catch up and checks that every
// acknowledged record was consumed exactly once (by value).
//
// The last line on stdout is one JSON object:
//   produced, acked, consumed, duplicates, missing, send_errors, errors[],
//   producer_metrics / consumer_metrics / admin_metrics: selected client metrics
//   (connection-close-total, connection-creation-total, successful-authentication-total,
//    successful-reauthentication-total, failed-authentication-total,
//    failed-reauthentication-total), summed over every metric with that name.
// Exit 0 when nothing went wrong, 1 otherwise.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KgateSoak {
    static final List<String> errors = Collections.synchronizedList(new ArrayList<>());
    static final String[] METRICS = {
        "connection-close-total", "connection-creation-total",
        "successful-authentication-total", "successful-reauthentication-total",
        "failed-authentication-total", "failed-reauthentication-total",
    };

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: KgateSoak <bootstrap> <topic> <group> <seconds> <rate/s> [key=value ...]");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], group = args[2];
        long seconds = Long.parseLong(args[3]);
        int rate = Integer.parseInt(args[4]);
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        common.put("request.timeout.ms", "15000");
        common.put("default.api.timeout.ms", "30000");
        common.put("reconnect.backoff.max.ms", "1000");
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq < 0) {
                System.err.println("not key=value: " + args[i]);
                System.exit(2);
            }
            common.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        String runId = UUID.randomUUID().toString().substring(0, 8);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("client", "java-soak");
        out.put("run_id", runId);

        // watchdog
        long watchdogMs = (seconds + 90) * 1000;
        Thread wd = new Thread(() -> {
            try { Thread.sleep(watchdogMs); } catch (InterruptedException e) { return; }
            errors.add("watchdog: run exceeded " + watchdogMs + " ms");
            out.put("errors", new ArrayList<>(errors));
            System.out.println(json(out));
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }, "soak-watchdog");
        wd.setDaemon(true);
        wd.start();

        Admin admin = Admin.create(withAll(common, Map.of("client.id", "soak-admin-" + runId)));
        try {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) throw e;
        }
        for (int i = 0; i < 300; i++) {  // wait until the topic has leaders
            try {
                if (admin.describeTopics(List.of(topic)).allTopicNames().get(5, TimeUnit.SECONDS)
                        .get(topic).partitions().stream().allMatch(p -> p.leader() != null)) break;
            } catch (ExecutionException e) { /* not yet */ }
            Thread.sleep(100);
        }

        Properties pp = withAll(common, Map.of(
                "client.id", "soak-producer-" + runId, "acks", "all", "enable.idempotence", "true",
                "linger.ms", "5", "delivery.timeout.ms", "60000",
                "key.serializer", StringSerializer.class.getName(),
                "value.serializer", StringSerializer.class.getName()));
        Properties cp = withAll(common, Map.of(
                "client.id", "soak-consumer-" + runId, "group.id", group, "auto.offset.reset", "earliest",
                "enable.auto.commit", "true", "session.timeout.ms", "6000", "heartbeat.interval.ms", "1000",
                "key.deserializer", StringDeserializer.class.getName(),
                "value.deserializer", StringDeserializer.class.getName()));

        Set<String> acked = ConcurrentHashMap.newKeySet();
        Map<String, Integer> seen = new ConcurrentHashMap<>();
        AtomicLong sendErrors = new AtomicLong();
        AtomicBoolean stopConsumer = new AtomicBoolean(false);
        AtomicLong consumedTotal = new AtomicLong();
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp);
        Map<String, Object>[] consumerMetrics = new Map[1];
        Thread ct = new Thread(() -> {
            try {
                consumer.subscribe(List.of(topic));
                while (!stopConsumer.get()) {
                    ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(200));
                    for (ConsumerRecord<String, String> r : recs) {
                        if (r.value() == null || !r.value().startsWith(runId + "-")) continue;
                        seen.merge(r.value(), 1, Integer::sum);
                        consumedTotal.incrementAndGet();
                    }
                }
                consumerMetrics[0] = metrics(consumer.metrics());
            } catch (Throwable t) {
                errors.add("consumer: " + t);
            } finally {
                consumer.close(Duration.ofSeconds(10));
            }
        }, "soak-consumer");
        ct.start();

        long produced = 0;
        long t0 = System.nanoTime();
        long end = t0 + TimeUnit.SECONDS.toNanos(seconds);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            while (System.nanoTime() < end) {
                long due = t0 + produced * 1_000_000_000L / Math.max(1, rate);
                long wait = due - System.nanoTime();
                if (wait > 0) Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                String v = runId + "-" + produced;
                producer.send(new ProducerRecord<>(topic, "k" + (produced % 12), v), (md, ex) -> {
                    if (ex != null) {
                        sendErrors.incrementAndGet();
                        errors.add("send " + v + ": " + ex);
                    } else {
                        acked.add(v);
                    }
                });
                produced++;
            }
            producer.flush();
            out.put("producer_metrics", metrics(producer.metrics()));
        } catch (Throwable t) {
            errors.add("producer: " + t);
        }
        // let the consumer catch up
        long catchUp = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < catchUp && !seen.keySet().containsAll(acked)) Thread.sleep(100);
        Thread.sleep(1000);  // a late duplicate would show up here
        stopConsumer.set(true);
        ct.join(20000);
        out.put("admin_metrics", metrics(admin.metrics()));
        admin.close(Duration.ofSeconds(5));

        long duplicates = seen.values().stream().filter(c -> c > 1).mapToLong(c -> c - 1).sum();
        long missing = acked.stream().filter(v -> !seen.containsKey(v)).count();
        out.put("seconds", seconds);
        out.put("produced", produced);
        out.put("acked", acked.size());
        out.put("consumed", consumedTotal.get());
        out.put("unique_consumed", seen.size());
        out.put("duplicates", duplicates);
        out.put("missing", missing);
        out.put("send_errors", sendErrors.get());
        out.put("consumer_metrics", consumerMetrics[0]);
        List<String> errs = new ArrayList<>(errors);
        out.put("errors", errs.size() > 20 ? errs.subList(0, 20) : errs);
        boolean ok = errs.isEmpty() && missing == 0 && duplicates == 0 && acked.size() == produced;
        out.put("ok", ok);
        System.out.println(json(out));
        System.out.flush();
        System.exit(ok ? 0 : 1);
    }

    static Map<String, Object> metrics(Map<MetricName, ? extends Metric> all) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (String name : METRICS) {
            double sum = 0;
            boolean found = false;
            for (Map.Entry<MetricName, ? extends Metric> e : all.entrySet()) {
                if (!e.getKey().name().equals(name)) continue;
                // per-node metrics repeat the totals of the group "*-metrics"; count the group only
                if (e.getKey().tags().containsKey("node-id")) continue;
                Object v = e.getValue().metricValue();
                if (v instanceof Number) {
                    sum += ((Number) v).doubleValue();
                    found = true;
                }
            }
            m.put(name, found ? (long) sum : null);
        }
        return m;
    }

    static Properties withAll(Properties base, Map<String, String> extra) {
        Properties p = new Properties();
        p.putAll(base);
        p.putAll(extra);
        return p;
    }

    static String json(Object o) {
        StringBuilder sb = new StringBuilder();
        writeJson(sb, o);
        return sb.toString();
    }

    @SuppressWarnings("unchecked")
    static void writeJson(StringBuilder sb, Object o) {
        if (o == null) {
            sb.append("null");
        } else if (o instanceof Number || o instanceof Boolean) {
            sb.append(o);
        } else if (o instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : ((Map<String, Object>) o).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                writeJson(sb, e.getKey());
                sb.append(':');
                writeJson(sb, e.getValue());
            }
            sb.append('}');
        } else if (o instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object x : (List<Object>) o) {
                if (!first) sb.append(',');
                first = false;
                writeJson(sb, x);
            }
            sb.append(']');
        } else {
            String s = o.toString();
            sb.append('"');
            for (char c : s.toCharArray()) {
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
