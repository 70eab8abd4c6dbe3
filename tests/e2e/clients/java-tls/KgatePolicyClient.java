// The official Java client against kgate's policy (tests/e2e/test_policy.py), as one
// principal (the client certificate in the properties file).
//
// Usage: java -cp <jars>:<classes> KgatePolicyClient <props-file> <bootstrap> <allowed-topic>
//             <denied-topic> <allowed-group> <denied-group> <new-topic>
//
// Steps, each recorded in the JSON on the last stdout line:
//   produce      allowed topic, then denied topic (expects the producer's own authorization
//                exception), then the allowed topic again with the same producer;
//   topics       listTopics() as the consumer sees it;
//   consume      the allowed topic in the allowed group (Fetch by topic id on Kafka 3.1+
//                clients when the broker offers Fetch v13+), until both produced values appear;
//   group        subscribe in the denied group: the consumer's own group exception;
//   create       Admin.createTopics(new-topic): the admin's own authorization exception.

import java.io.FileInputStream;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KgatePolicyClient {
    static final Map<String, Object> out = Collections.synchronizedMap(new LinkedHashMap<>());

    public static void main(String[] args) throws Exception {
        Properties common = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            common.load(in);
        }
        common.put("bootstrap.servers", args[1]);
        common.putIfAbsent("request.timeout.ms", "10000");
        common.putIfAbsent("default.api.timeout.ms", "20000");
        String allowed = args[2], denied = args[3], okGroup = args[4], badGroup = args[5], newTopic = args[6];
        Thread wd = new Thread(() -> {
            try {
                Thread.sleep(150_000);
            } catch (InterruptedException e) {
                return;
            }
            out.put("error", "watchdog");
            System.out.println(KgateTlsClient.toJson(out));
            Runtime.getRuntime().halt(1);
        }, "watchdog");
        wd.setDaemon(true);
        wd.start();
        try {
            produce(common, allowed, denied);
            consume(common, allowed, okGroup);
            group(common, allowed, badGroup);
            create(common, newTopic);
        } catch (Throwable t) {
            out.put("error", t.toString());
        }
        System.out.println(KgateTlsClient.toJson(out));
        System.exit(0);
    }

    static String rootClass(Throwable t) {
        Throwable r = t;
        for (int i = 0; i < 20 && r.getCause() != null && r.getCause() != r; i++) r = r.getCause();
        return r.getClass().getSimpleName();
    }

    static void produce(Properties common, String allowed, String denied) throws Exception {
        Properties p = new Properties();
        p.putAll(common);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("acks", "all");
        p.put("max.block.ms", "20000");
        List<String> steps = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.send(new ProducerRecord<>(allowed, "k", "java-before")).get(30, TimeUnit.SECONDS);
            steps.add("ok");
            try {
                producer.send(new ProducerRecord<>(denied, "k", "java-nope")).get(30, TimeUnit.SECONDS);
                steps.add("ok");
            } catch (Exception e) {
                steps.add(rootClass(e));
            }
            producer.send(new ProducerRecord<>(allowed, "k", "java-after")).get(30, TimeUnit.SECONDS);
            steps.add("ok");
        }
        out.put("produce", steps);
    }

    static Properties consumerProps(Properties common, String group) {
        Properties c = new Properties();
        c.putAll(common);
        c.put("group.id", group);
        c.put("auto.offset.reset", "earliest");
        c.put("session.timeout.ms", "6000");
        c.put("heartbeat.interval.ms", "1000");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        return c;
    }

    static void consume(Properties common, String topic, String group) {
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(common, group))) {
            out.put("topics", new ArrayList<>(consumer.listTopics(Duration.ofSeconds(20)).keySet()));
            consumer.subscribe(List.of(topic));
            Set<String> seen = new HashSet<>();
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline && !(seen.contains("java-before") && seen.contains("java-after"))) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) seen.add(r.value());
            }
            out.put("consumed", new ArrayList<>(seen));
            consumer.commitSync();
        }
    }

    static void group(Properties common, String topic, String group) {
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(common, group))) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline) consumer.poll(Duration.ofMillis(500));
            out.put("group", "no error");
        } catch (Exception e) {
            out.put("group", rootClass(e));
        }
    }

    static void create(Properties common, String topic) {
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            out.put("create", "ok");
        } catch (Exception e) {
            out.put("create", rootClass(e));
        }
    }
}
