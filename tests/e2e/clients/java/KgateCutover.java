// The Java client through a cut-over: one idempotent producer and one group consumer that
// are never recreated, reporting every event on stdout as it happens, so the test can
// switch kgate to another cluster mid-run and check what each client saw.
//
// Usage: java -cp <jars>:<classes> KgateCutover <bootstrap> <topic> <group> <tag> <rate/s>
//
// Commands on stdin: "stop-producer" (stop sending, flush, report LEFT), "stop" (close
// both and exit).
// Lines on stdout:
//   ACK <seq>                      a record the producer had acknowledged
//   FAIL <seq> <error>             a record that failed for good
//   GOT <partition> <offset> <seq> a record the consumer received
//   COMMIT <p>=<offset>,...        a synchronous commit that succeeded
//   ERR <where> <error>            a non-fatal error (retried by the client or by the loop)
//   FATAL <where> <error>          an error after which the client cannot go on
//   LEFT <n>                       records not delivered when the producer was flushed
//   DONE

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.StringJoiner;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KgateCutover {
    static final PrintStream OUT = System.out;

    static synchronized void say(String line) {
        OUT.println(line);
        OUT.flush();
    }

    static String oneLine(Throwable e) {
        return (e.getClass().getSimpleName() + ": " + e.getMessage()).replace('\n', ' ');
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: KgateCutover <bootstrap> <topic> <group> <tag> <rate/s>");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], group = args[2], tag = args[3];
        int rate = Integer.parseInt(args[4]);
        AtomicBoolean producing = new AtomicBoolean(true), consuming = new AtomicBoolean(true);
        Thread producer = new Thread(() -> produce(bootstrap, topic, tag, rate, producing), "producer");
        Thread consumer = new Thread(() -> consume(bootstrap, topic, group, tag, consuming), "consumer");
        producer.start();
        consumer.start();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.equals("stop-producer")) {
                producing.set(false);
                producer.join();
            } else if (line.equals("stop")) {
                break;
            }
        }
        producing.set(false);
        producer.join();
        consuming.set(false);
        consumer.join();
        say("DONE");
    }

    static void produce(String bootstrap, String topic, String tag, int rate, AtomicBoolean running) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.idempotence", "true");
        p.put("acks", "all");
        p.put("linger.ms", "5");
        p.put("delivery.timeout.ms", "120000");
        p.put("reconnect.backoff.ms", "50");
        p.put("reconnect.backoff.max.ms", "250");
        p.put("retry.backoff.ms", "50");
        p.put("metadata.max.age.ms", "1000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        AtomicLong unacked = new AtomicLong();
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
            long seq = 0;
            long pause = Math.max(1, 1000L / Math.max(1, rate));
            while (running.get()) {
                final long s = seq++;
                unacked.incrementAndGet();
                try {
                    prod.send(new ProducerRecord<>(topic, Long.toString(s % 16), tag + "-" + s), (md, e) -> {
                        unacked.decrementAndGet();
                        if (e == null) {
                            say("ACK " + s);
                        } else {
                            say("FAIL " + s + " " + oneLine(e));
                        }
                    });
                } catch (ProducerFencedException | OutOfOrderSequenceException | AuthorizationException e) {
                    say("FATAL producer " + oneLine(e));
                    return;
                } catch (KafkaException e) {
                    say("ERR producer " + oneLine(e));
                }
                Thread.sleep(pause);
            }
            prod.flush();
            say("LEFT " + unacked.get());
        } catch (InterruptedException e) {
            say("FATAL producer interrupted");
        }
    }

    static void consume(String bootstrap, String topic, String group, String tag, AtomicBoolean running) {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", group);
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        c.put("reconnect.backoff.ms", "50");
        c.put("reconnect.backoff.max.ms", "250");
        c.put("retry.backoff.ms", "50");
        c.put("metadata.max.age.ms", "1000");
        c.put("session.timeout.ms", "10000");
        c.put("heartbeat.interval.ms", "1000");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> cons = new KafkaConsumer<>(c)) {
            cons.subscribe(List.of(topic));
            long lastCommit = System.nanoTime();
            Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
            while (running.get()) {
                try {
                    for (ConsumerRecord<String, String> r : cons.poll(Duration.ofMillis(100))) {
                        String v = r.value();
                        if (v != null && v.startsWith(tag + "-")) {
                            say("GOT " + r.partition() + " " + r.offset() + " " + v.substring(tag.length() + 1));
                        }
                        next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    if (System.nanoTime() - lastCommit > 500_000_000L && !next.isEmpty()) {
                        lastCommit = System.nanoTime();
                        cons.commitSync(next, Duration.ofSeconds(5));
                        StringJoiner j = new StringJoiner(",");
                        next.forEach((tp, o) -> j.add(tp.partition() + "=" + o.offset()));
                        say("COMMIT " + j);
                        next.clear();
                    }
                } catch (AuthorizationException e) {
                    say("FATAL consumer " + oneLine(e));
                    return;
                } catch (KafkaException e) {
                    say("ERR consumer " + oneLine(e));
                    next.clear();
                }
            }
        }
    }
}
