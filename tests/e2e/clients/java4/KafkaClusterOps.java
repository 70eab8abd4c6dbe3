// The Java client 4.x (kafka-clients from Maven, see tests/e2e/kafka/clients4/pom.xml)
// against a real Apache Kafka 4 cluster, normally through kgate (tests/e2e/test_kafka_*.py).
//
// Usage: java -cp <kafka-clients 4.x jars>:<classes> KafkaClusterOps <mode> <bootstrap> <args...>
//   kip848 <bootstrap> <topic> <group>
//       group.protocol=consumer (KIP-848, ConsumerGroupHeartbeat): one member, then a second
//       member joins and the 4 partitions are split between them, then a new member resumes
//       from the committed offsets.
//   txn <bootstrap> <topic> <transactional.id>
//       a transactional producer aborts one transaction and commits the next; a
//       read_committed consumer must see exactly the committed records.
//   admin <bootstrap> <prefix> <broker ids comma-separated>
//       the admin operations a user runs, each one recorded as ok or failed.
//   mover <bootstrap> <topic> <group> <stop file>
//       an idempotent acks=all producer and a consumer in a group run until the stop file
//       exists; then every acknowledged record must have been consumed.
//   refusals <bootstrap> <group>
//       admin operations whose API keys kgate never offers (share groups, KIP-932), plus
//       a control that kgate forwards; each recorded as ok or failed with its exception.
//   reassign <bootstrap> <topic> <p:r1.r2.r3,...>
//       direct admin: reassigns replicas (first = preferred leader), waits, and elects
//       the preferred leaders.
// The last line on stdout is one JSON object ("ok": true/false, "errors": [...]).

import java.io.File;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class KafkaClusterOps {
    static final Map<String, Object> out = Collections.synchronizedMap(new LinkedHashMap<>());
    static final List<String> errors = Collections.synchronizedList(new ArrayList<>());
    static final Set<String> brokers = Collections.synchronizedSet(new TreeSet<>());

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: KafkaClusterOps <mode> <bootstrap> ...");
            System.exit(2);
        }
        String mode = args[0];
        out.put("mode", mode);
        out.put("client_version", AppInfoParser());
        Thread wd = new Thread(() -> {
            try {
                Thread.sleep(Long.parseLong(System.getenv().getOrDefault("KGATE_E2E_WATCHDOG_S", "240")) * 1000);
            } catch (InterruptedException e) {
                return;
            }
            errors.add("watchdog: " + mode + " did not finish in time");
            finish();
            Runtime.getRuntime().halt(1);
        });
        wd.setDaemon(true);
        wd.start();
        try {
            switch (mode) {
                case "kip848": kip848(args[1], args[2], args[3]); break;
                case "txn": txn(args[1], args[2], args[3]); break;
                case "admin": admin(args[1], args[2], args[3]); break;
                case "refusals": refusals(args[1], args[2]); break;
                case "mover": mover(args[1], args[2], args[3], args[4]); break;
                case "reassign": reassign(args[1], args[2], args[3]); break;
                default: errors.add("unknown mode " + mode);
            }
        } catch (Throwable t) {
            errors.add("failed: " + describe(t));
            t.printStackTrace(System.err);
        }
        finish();
        System.exit(errors.isEmpty() ? 0 : 1);
    }

    static String AppInfoParser() {
        return org.apache.kafka.common.utils.AppInfoParser.getVersion();
    }

    // ---------------------------------------------------------------- common

    static Properties common(String bootstrap, String id) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", id);
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", "30000");
        p.put("reconnect.backoff.max.ms", "1000");
        p.put("retry.backoff.ms", "100");
        return p;
    }

    static KafkaProducer<String, String> producer(String bootstrap, String id, Map<String, String> extra) {
        Properties p = common(bootstrap, id);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String id, String group, Map<String, String> extra) {
        Properties p = common(bootstrap, id);
        if (group != null) p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.putAll(extra);
        return new KafkaConsumer<>(p);
    }

    static Map<String, String> classic() {
        Map<String, String> m = new HashMap<>();
        m.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        m.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        m.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        return m;
    }

    static void createTopic(Admin admin, String topic, int partitions, short rf, Map<String, String> configs)
            throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, partitions, rf).configs(configs))).all().get(30, TimeUnit.SECONDS);
        long end = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < end) {
            try {
                TopicDescription td = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                boolean ok = td.partitions().size() == partitions;
                for (TopicPartitionInfo p : td.partitions()) {
                    if (p.leader() == null || p.leader().isEmpty()) ok = false;
                    else brokers.add(addr(p.leader()));
                }
                if (ok) return;
            } catch (ExecutionException e) {
                // not there yet
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("topic " + topic + " has no leaders after 30 s");
    }

    static List<String> produceN(KafkaProducer<String, String> p, String topic, String prefix, int n) throws Exception {
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        List<String> values = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String v = prefix + "-" + i;
            values.add(v);
            fs.add(p.send(new ProducerRecord<>(topic, "k" + (i % 16), v)));
        }
        p.flush();
        for (Future<RecordMetadata> f : fs) f.get(60, TimeUnit.SECONDS);
        return values;
    }

    // ---------------------------------------------------------------- KIP-848

    static void kip848(String bootstrap, String topic, String group) throws Exception {
        Map<String, String> proto = Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        try (Admin admin = Admin.create(common(bootstrap, "kip848-admin"));
             KafkaProducer<String, String> prod = producer(bootstrap, "kip848-producer", Map.of())) {
            createTopic(admin, topic, 4, (short) 1, Map.of());
            List<String> first = produceN(prod, topic, "a", 200);

            Map<String, Integer> seen = new ConcurrentHashMap<>();
            AtomicInteger dups = new AtomicInteger();
            KafkaConsumer<String, String> a = consumer(bootstrap, "kip848-a", group, proto);
            a.subscribe(List.of(topic), commitOnRevoke(a));
            long end = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < end && !(seen.keySet().containsAll(first) && a.assignment().size() == 4)) {
                pollInto(a, seen, dups);
            }
            out.put("a_alone_assignment", a.assignment().size());
            out.put("a_alone_consumed", seen.size());
            if (!seen.keySet().containsAll(first)) errors.add("member A alone consumed " + seen.size() + "/200");

            // Second member: the group must split the 4 partitions between A and B.
            KafkaConsumer<String, String> b = consumer(bootstrap, "kip848-b", group, proto);
            b.subscribe(List.of(topic), commitOnRevoke(b));
            end = System.currentTimeMillis() + 60_000;
            boolean split = false;
            while (System.currentTimeMillis() < end) {
                pollInto(a, seen, dups);
                pollInto(b, seen, dups);
                Set<TopicPartition> sa = a.assignment(), sb = b.assignment();
                Set<TopicPartition> union = new HashSet<>(sa);
                union.addAll(sb);
                if (!sa.isEmpty() && !sb.isEmpty() && Collections.disjoint(sa, sb) && union.size() == 4) {
                    split = true;
                    break;
                }
            }
            out.put("a_assignment", a.assignment().toString());
            out.put("b_assignment", b.assignment().toString());
            out.put("rebalanced", split);
            if (!split) errors.add("the two members never split the partitions: A " + a.assignment() + " B " + b.assignment());

            ConsumerGroupDescription gd = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                    .get(30, TimeUnit.SECONDS);
            out.put("group_type", String.valueOf(gd.type()));
            out.put("group_members", gd.members().size());
            out.put("group_state", String.valueOf(gd.groupState()));
            if (gd.coordinator() != null) {
                out.put("coordinator", addr(gd.coordinator()));
                out.put("coordinator_id", gd.coordinator().id());
                brokers.add(addr(gd.coordinator()));
            }

            // Records produced while both members are in the group reach one of them.
            List<String> second = produceN(prod, topic, "b", 200);
            Map<String, Integer> seenA = new HashMap<>(), seenB = new HashMap<>();
            end = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < end && !seen.keySet().containsAll(second)) {
                for (String v : pollInto(a, seen, dups)) seenA.merge(v, 1, Integer::sum);
                for (String v : pollInto(b, seen, dups)) seenB.merge(v, 1, Integer::sum);
            }
            int bothMissing = 0;
            for (String v : second) if (!seen.containsKey(v)) bothMissing++;
            out.put("second_by_a", seenA.size());
            out.put("second_by_b", seenB.size());
            out.put("second_missing", bothMissing);
            if (bothMissing > 0) errors.add(bothMissing + " of 200 records produced with two members never arrived");
            if (seenA.isEmpty() || seenB.isEmpty()) errors.add("one member got none of the second batch: A " + seenA.size() + " B " + seenB.size());
            a.commitSync(Duration.ofSeconds(15));
            b.commitSync(Duration.ofSeconds(15));
            for (PartitionInfo pi : a.partitionsFor(topic)) if (pi.leader() != null) brokers.add(addr(pi.leader()));
            a.close(CloseOptions.timeout(Duration.ofSeconds(10)));
            b.close(CloseOptions.timeout(Duration.ofSeconds(10)));

            // Resume: a new member starts exactly at the committed offsets.
            List<String> third = produceN(prod, topic, "c", 50);
            KafkaConsumer<String, String> c = consumer(bootstrap, "kip848-c", group, proto);
            c.subscribe(List.of(topic));
            Map<String, Integer> seenC = new HashMap<>();
            AtomicInteger dupC = new AtomicInteger();
            end = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < end && !seenC.keySet().containsAll(third)) pollInto(c, seenC, dupC);
            c.commitSync(Duration.ofSeconds(15));
            c.close(CloseOptions.timeout(Duration.ofSeconds(10)));
            int redelivered = 0;
            for (String v : seenC.keySet()) if (!v.startsWith("c-")) redelivered++;
            out.put("resume_consumed", seenC.size());
            out.put("resume_redelivered", redelivered);
            if (!seenC.keySet().containsAll(third)) errors.add("resume: " + seenC.size() + " of 50 new records");
            if (redelivered > 0) errors.add("resume: " + redelivered + " old records redelivered (offsets not committed?)");
            out.put("duplicates", dups.get() + dupC.get());
            if (dups.get() + dupC.get() > 0) errors.add((dups.get() + dupC.get()) + " duplicates");
        }
    }

    static ConsumerRebalanceListener commitOnRevoke(KafkaConsumer<String, String> c) {
        return new ConsumerRebalanceListener() {
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) c.commitSync(Duration.ofSeconds(15));
            }
            public void onPartitionsAssigned(Collection<TopicPartition> parts) { }
        };
    }

    static List<String> pollInto(KafkaConsumer<String, String> c, Map<String, Integer> seen, AtomicInteger dups) {
        List<String> got = new ArrayList<>();
        ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : rs) {
            got.add(r.value());
            if (seen.merge(r.value(), 1, Integer::sum) > 1) dups.incrementAndGet();
        }
        if (!rs.isEmpty()) c.commitSync(Duration.ofSeconds(15));
        return got;
    }

    // ---------------------------------------------------------------- transactions

    static void txn(String bootstrap, String topic, String txnId) throws Exception {
        try (Admin admin = Admin.create(common(bootstrap, "txn-admin"))) {
            createTopic(admin, topic, 3, (short) 3, Map.of("min.insync.replicas", "2"));
            try (KafkaProducer<String, String> p = producer(bootstrap, "txn-producer",
                    Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId))) {
                p.initTransactions();
                p.beginTransaction();
                for (int i = 0; i < 100; i++) p.send(new ProducerRecord<>(topic, "k" + (i % 8), "aborted-" + i));
                p.flush();
                p.abortTransaction();
                p.beginTransaction();
                for (int i = 0; i < 100; i++) p.send(new ProducerRecord<>(topic, "k" + (i % 8), "committed-" + i));
                p.commitTransaction();
                // a transaction left open: read_committed must stop before it (LSO)
                p.beginTransaction();
                for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(topic, "k" + (i % 8), "open-" + i));
                p.flush();

                TransactionDescription td = admin.describeTransactions(List.of(txnId)).description(txnId)
                        .get(30, TimeUnit.SECONDS);
                out.put("txn_state", String.valueOf(td.state()));
                out.put("txn_coordinator_id", td.coordinatorId());
                int listed = 0;
                for (TransactionListing tl : admin.listTransactions().all().get(30, TimeUnit.SECONDS)) {
                    if (tl.transactionalId().equals(txnId)) listed++;
                }
                out.put("txn_listed", listed);

                Map<String, Integer> committed = readAll(bootstrap, topic, "read_committed");
                Map<String, Integer> uncommitted = readAll(bootstrap, topic, "read_uncommitted");
                p.abortTransaction();
                report(committed, "read_committed");
                report(uncommitted, "read_uncommitted");
                int rcCommitted = count(committed, "committed-"), rcAborted = count(committed, "aborted-"),
                        rcOpen = count(committed, "open-");
                int dup = 0;
                for (int v : committed.values()) if (v > 1) dup++;
                if (rcCommitted != 100 || rcAborted != 0 || rcOpen != 0 || dup != 0) {
                    errors.add("read_committed saw committed=" + rcCommitted + " aborted=" + rcAborted + " open=" + rcOpen
                            + " duplicated=" + dup + " (want 100/0/0/0)");
                }
                // The control: the aborted and open records really are in the log.
                if (count(uncommitted, "aborted-") != 100 || count(uncommitted, "open-") != 10
                        || count(uncommitted, "committed-") != 100) {
                    errors.add("read_uncommitted did not see all 210 records: " + uncommitted.size());
                }
            }
            Map<String, Object> coordinators = new LinkedHashMap<>();
            for (Node n : admin.describeCluster().nodes().get(30, TimeUnit.SECONDS)) brokers.add(addr(n));
        }
    }

    static int count(Map<String, Integer> m, String prefix) {
        int n = 0;
        for (String k : m.keySet()) if (k.startsWith(prefix)) n++;
        return n;
    }

    static void report(Map<String, Integer> m, String tag) {
        out.put(tag + "_committed", count(m, "committed-"));
        out.put(tag + "_aborted", count(m, "aborted-"));
        out.put(tag + "_open", count(m, "open-"));
    }

    /** Reads every partition from the beginning to its end (LSO for read_committed). */
    static Map<String, Integer> readAll(String bootstrap, String topic, String isolation) {
        Map<String, Integer> seen = new HashMap<>();
        try (KafkaConsumer<String, String> c = consumer(bootstrap, "txn-" + isolation, null,
                Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic)) {
                tps.add(new TopicPartition(topic, pi.partition()));
                if (pi.leader() != null) brokers.add(addr(pi.leader()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(15));
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) seen.merge(r.value(), 1, Integer::sum);
                boolean done = true;
                for (TopicPartition tp : tps) if (c.position(tp) < end.get(tp)) done = false;
                if (done) break;
            }
            out.put(isolation + "_end_offsets", end.toString());
        }
        return seen;
    }

    // ---------------------------------------------------------------- admin

    interface Op { Object run() throws Exception; }

    static final List<Map<String, Object>> ops = new ArrayList<>();

    static Object op(String name, String api, Op body) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("op", name);
        r.put("api", api);
        try {
            Object v = body.run();
            r.put("ok", true);
            r.put("detail", String.valueOf(v));
            ops.add(r);
            return v;
        } catch (Throwable t) {
            Throwable c = t instanceof ExecutionException && t.getCause() != null ? t.getCause() : t;
            r.put("ok", false);
            r.put("detail", describe(c));
            ops.add(r);
            return null;
        }
    }

    static void refusals(String bootstrap, String group) throws Exception {
        out.put("ops", ops);
        final long T = 30;
        Properties p = common(bootstrap, "admin-refusals");
        p.put("default.api.timeout.ms", "20000");
        try (Admin a = Admin.create(p)) {
            op("listTopics", "Metadata", () -> a.listTopics().names().get(T, TimeUnit.SECONDS).size());
            op("describeShareGroups", "ShareGroupDescribe",
               () -> a.describeShareGroups(List.of(group)).all().get(T, TimeUnit.SECONDS));
            op("listShareGroupOffsets", "DescribeShareGroupOffsets",
               () -> a.listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec())).all().get(T, TimeUnit.SECONDS));
        }
    }

    static void admin(String bootstrap, String prefix, String brokerIds) throws Exception {
        out.put("ops", ops);
        String topic = prefix + "-topic";
        String group = prefix + "-group";
        TopicPartition tp0 = new TopicPartition(topic, 0);
        List<Integer> ids = new ArrayList<>();
        for (String s : brokerIds.split(",")) ids.add(Integer.parseInt(s));
        final long T = 30;
        try (Admin a = Admin.create(common(bootstrap, "admin-ops"))) {
            op("describeCluster", "DescribeCluster", () -> {
                DescribeClusterResult r = a.describeCluster();
                List<String> ns = new ArrayList<>();
                for (Node n : r.nodes().get(T, TimeUnit.SECONDS)) { ns.add(n.id() + "@" + addr(n)); brokers.add(addr(n)); }
                out.put("cluster_nodes", ns);
                Node c = r.controller().get(T, TimeUnit.SECONDS);
                if (c != null && !c.isEmpty()) brokers.add(addr(c));
                return ns;
            });
            op("describeFeatures", "ApiVersions", () -> a.describeFeatures().featureMetadata().get(T, TimeUnit.SECONDS).finalizedFeatures().keySet());
            op("createTopics", "CreateTopics", () -> a.createTopics(List.of(new NewTopic(topic, 2, (short) 2))).all().get(T, TimeUnit.SECONDS));
            op("listTopics", "Metadata", () -> {
                long end = System.currentTimeMillis() + 30_000;
                while (System.currentTimeMillis() < end) {
                    if (a.listTopics().names().get(T, TimeUnit.SECONDS).contains(topic)) return "listed";
                    Thread.sleep(200);
                }
                throw new IllegalStateException(topic + " not listed");
            });
            op("describeTopics", "DescribeTopicPartitions", () -> {
                long end = System.currentTimeMillis() + 30_000;
                while (true) {
                    TopicDescription td = a.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS).get(topic);
                    boolean ok = td.partitions().size() == 2;
                    for (TopicPartitionInfo p : td.partitions()) {
                        if (p.leader() == null || p.leader().isEmpty()) ok = false;
                        else brokers.add(addr(p.leader()));
                        for (Node n : p.replicas()) brokers.add(addr(n));
                    }
                    if (ok) return td.partitions().size() + " partitions";
                    if (System.currentTimeMillis() > end) throw new IllegalStateException("no leaders");
                    Thread.sleep(200);
                }
            });
            op("createPartitions", "CreatePartitions", () -> a.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(T, TimeUnit.SECONDS));
            ConfigResource topicRes = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            op("incrementalAlterConfigs", "IncrementalAlterConfigs", () -> a.incrementalAlterConfigs(Map.of(topicRes,
                    List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "4242000"), AlterConfigOp.OpType.SET))))
                    .all().get(T, TimeUnit.SECONDS));
            op("describeConfigs topic", "DescribeConfigs", () -> {
                String v = a.describeConfigs(List.of(topicRes)).all().get(T, TimeUnit.SECONDS).get(topicRes).get("retention.ms").value();
                if (!"4242000".equals(v)) throw new IllegalStateException("retention.ms is " + v + " after the alter");
                return v;
            });
            ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(ids.get(0)));
            op("describeConfigs broker", "DescribeConfigs", () -> a.describeConfigs(List.of(brokerRes)).all().get(T, TimeUnit.SECONDS).get(brokerRes).entries().size() + " entries");
            ResourcePattern rp = new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL);
            AclBinding acl = new AclBinding(rp, new AccessControlEntry("User:e2e-reader", "*", AclOperation.READ, AclPermissionType.ALLOW));
            op("createAcls", "CreateAcls", () -> a.createAcls(List.of(acl)).all().get(T, TimeUnit.SECONDS));
            op("describeAcls", "DescribeAcls", () -> {
                long end = System.currentTimeMillis() + 15_000;
                while (true) {
                    Collection<AclBinding> got = a.describeAcls(new AclBindingFilter(
                            new ResourcePatternFilter(ResourceType.TOPIC, topic, PatternType.LITERAL), AccessControlEntryFilter.ANY))
                            .values().get(T, TimeUnit.SECONDS);
                    if (got.contains(acl)) return got.size() + " acl(s)";
                    if (System.currentTimeMillis() > end) throw new IllegalStateException("created ACL not listed: " + got);
                    Thread.sleep(200);
                }
            });
            op("deleteAcls", "DeleteAcls", () -> a.deleteAcls(List.of(acl.toFilter())).all().get(T, TimeUnit.SECONDS).size() + " deleted");

            // a group with committed offsets
            op("produce+consume in a group", "OffsetCommit", () -> {
                try (KafkaProducer<String, String> p = producer(bootstrap, "admin-ops-producer", Map.of())) {
                    produceN(p, topic, "adm", 60);
                }
                try (KafkaConsumer<String, String> c = consumer(bootstrap, "admin-ops-consumer", group, classic())) {
                    c.subscribe(List.of(topic));
                    int n = 0;
                    long end = System.currentTimeMillis() + 45_000;
                    while (n < 60 && System.currentTimeMillis() < end) {
                        n += c.poll(Duration.ofMillis(300)).count();
                    }
                    c.commitSync(Duration.ofSeconds(15));
                    if (n < 60) throw new IllegalStateException("consumed " + n + "/60");
                    return n;
                }
            });
            op("listGroups", "ListGroups", () -> {
                for (GroupListing g : a.listGroups().all().get(T, TimeUnit.SECONDS)) if (g.groupId().equals(group)) return "listed";
                throw new IllegalStateException(group + " not listed");
            });
            op("describeConsumerGroups", "DescribeGroups", () -> {
                ConsumerGroupDescription d = a.describeConsumerGroups(List.of(group)).describedGroups().get(group).get(T, TimeUnit.SECONDS);
                if (d.coordinator() != null) brokers.add(addr(d.coordinator()));
                return d.groupState() + " " + d.type();
            });
            op("listConsumerGroupOffsets", "OffsetFetch", () -> {
                Map<TopicPartition, OffsetAndMetadata> m = a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
                if (m.isEmpty()) throw new IllegalStateException("no committed offsets");
                return m;
            });
            op("alterConsumerGroupOffsets", "OffsetCommit", () -> a.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(1))).all().get(T, TimeUnit.SECONDS));
            op("listConsumerGroupOffsets after alter", "OffsetFetch", () -> {
                OffsetAndMetadata o = a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS).get(tp0);
                if (o == null || o.offset() != 1) throw new IllegalStateException("offset " + o + " after altering it to 1");
                return o.offset();
            });
            op("deleteConsumerGroupOffsets", "OffsetDelete", () -> a.deleteConsumerGroupOffsets(group, Set.of(tp0)).all().get(T, TimeUnit.SECONDS));
            op("listOffsets", "ListOffsets", () -> a.listOffsets(Map.of(tp0, OffsetSpec.latest())).all().get(T, TimeUnit.SECONDS).get(tp0).offset());
            op("deleteRecords", "DeleteRecords", () -> a.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(1))).all().get(T, TimeUnit.SECONDS));
            op("describeLogDirs", "DescribeLogDirs", () -> a.describeLogDirs(ids).allDescriptions().get(T, TimeUnit.SECONDS).size() + " brokers");
            op("describeProducers", "DescribeProducers", () -> a.describeProducers(List.of(tp0)).all().get(T, TimeUnit.SECONDS).get(tp0).activeProducers().size() + " producers");
            op("listTransactions", "ListTransactions", () -> a.listTransactions().all().get(T, TimeUnit.SECONDS).size());
            op("describeUserScramCredentials", "DescribeUserScramCredentials", () -> {
                Map<String, UserScramCredentialsDescription> m = a.describeUserScramCredentials().all().get(T, TimeUnit.SECONDS);
                if (m.isEmpty()) throw new IllegalStateException("no SCRAM users listed");
                return m.keySet();
            });
            op("describeClientQuotas", "DescribeClientQuotas", () -> a.describeClientQuotas(ClientQuotaFilter.all()).entities().get(T, TimeUnit.SECONDS).size());
            op("electLeaders", "ElectLeaders", () -> {
                Map<TopicPartition, Optional<Throwable>> m = a.electLeaders(ElectionType.PREFERRED, Set.of(tp0)).partitions().get(T, TimeUnit.SECONDS);
                Optional<Throwable> e = m.get(tp0);
                if (e != null && e.isPresent() && !(e.get() instanceof ElectionNotNeededException)) throw new IllegalStateException(describe(e.get()));
                return "elected or not needed";
            });
            op("alterPartitionReassignments", "AlterPartitionReassignments", () -> {
                TopicDescription td = a.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS).get(topic);
                List<Integer> cur = new ArrayList<>();
                for (Node n : td.partitions().get(0).replicas()) cur.add(n.id());
                List<Integer> target = new ArrayList<>(cur);
                Collections.reverse(target);
                a.alterPartitionReassignments(Map.of(tp0, Optional.of(new NewPartitionReassignment(target)))).all().get(T, TimeUnit.SECONDS);
                return cur + " -> " + target;
            });
            op("listPartitionReassignments", "ListPartitionReassignments", () -> a.listPartitionReassignments().reassignments().get(T, TimeUnit.SECONDS).size());
            op("describeMetadataQuorum", "DescribeQuorum", () -> {
                QuorumInfo q = a.describeMetadataQuorum().quorumInfo().get(T, TimeUnit.SECONDS);
                List<String> eps = new ArrayList<>();
                for (QuorumInfo.Node n : q.nodes().values()) for (RaftVoterEndpoint e : n.endpoints()) eps.add(n.nodeId() + "@" + e.host() + ":" + e.port());
                out.put("quorum_leader", q.leaderId());
                out.put("quorum_voters", q.voters().size());
                out.put("quorum_endpoints", eps);
                return "leader " + q.leaderId() + ", " + q.voters().size() + " voters, endpoints " + eps;
            });
            op("deleteConsumerGroups", "DeleteGroups", () -> a.deleteConsumerGroups(List.of(group)).all().get(T, TimeUnit.SECONDS));
            op("deleteTopics", "DeleteTopics", () -> a.deleteTopics(List.of(topic)).all().get(T, TimeUnit.SECONDS));
        }
    }

    // ---------------------------------------------------------------- mover

    static void mover(String bootstrap, String topic, String group, String stopFile) throws Exception {
        Set<String> acked = ConcurrentHashMap.newKeySet();
        Map<String, Integer> consumed = new ConcurrentHashMap<>();
        AtomicLong sendErrors = new AtomicLong();
        List<String> sendErrorSamples = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger dups = new AtomicInteger();
        File stop = new File(stopFile);
        Thread cons = null;
        final boolean[] producerDone = {false};
        try (KafkaProducer<String, String> p = producer(bootstrap, "mover-producer",
                Map.of(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5"))) {
            cons = new Thread(() -> {
                try (KafkaConsumer<String, String> c = consumer(bootstrap, "mover-consumer", group, classic())) {
                    c.subscribe(List.of(topic));
                    long drainEnd = Long.MAX_VALUE;
                    while (System.currentTimeMillis() < drainEnd) {
                        ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
                        for (ConsumerRecord<String, String> r : rs) if (consumed.merge(r.value(), 1, Integer::sum) > 1) dups.incrementAndGet();
                        if (!rs.isEmpty()) {
                            try {
                                c.commitSync(Duration.ofSeconds(15));
                            } catch (RuntimeException e) {
                                errors.add("consumer commit: " + describe(e));
                            }
                        }
                        synchronized (producerDone) {
                            if (producerDone[0] && drainEnd == Long.MAX_VALUE) drainEnd = System.currentTimeMillis() + 60_000;
                        }
                        if (drainEnd != Long.MAX_VALUE && consumed.keySet().containsAll(acked)) break;
                    }
                    for (PartitionInfo pi : c.partitionsFor(topic)) if (pi.leader() != null) brokers.add(addr(pi.leader()));
                } catch (RuntimeException e) {
                    errors.add("consumer: " + describe(e));
                }
            }, "mover-consumer");
            cons.start();
            int i = 0;
            long t0 = System.currentTimeMillis();
            while (!stop.exists() && System.currentTimeMillis() - t0 < 180_000) {
                String v = "m-" + i;
                p.send(new ProducerRecord<>(topic, "k" + (i % 30), v), (md, e) -> {
                    if (e == null) acked.add(v);
                    else {
                        sendErrors.incrementAndGet();
                        if (sendErrorSamples.size() < 5) sendErrorSamples.add(describe(e));
                    }
                });
                i++;
                Thread.sleep(10);
            }
            p.flush();
            out.put("sent", i);
            for (PartitionInfo pi : p.partitionsFor(topic)) if (pi.leader() != null) brokers.add(addr(pi.leader()));
        }
        synchronized (producerDone) { producerDone[0] = true; }
        cons.join(90_000);
        int lost = 0;
        for (String v : acked) if (!consumed.containsKey(v)) lost++;
        out.put("acked", acked.size());
        out.put("send_errors", sendErrors.get());
        out.put("send_error_samples", sendErrorSamples);
        out.put("consumed", consumed.size());
        out.put("acked_not_consumed", lost);
        out.put("duplicates", dups.get());
        if (lost > 0) errors.add(lost + " acknowledged records were never consumed");
        if (acked.isEmpty()) errors.add("nothing was acknowledged");
    }

    // ---------------------------------------------------------------- reassign

    static void reassign(String bootstrap, String topic, String spec) throws Exception {
        Map<TopicPartition, Optional<NewPartitionReassignment>> m = new HashMap<>();
        for (String part : spec.split(",")) {
            String[] pr = part.split(":");
            List<Integer> reps = new ArrayList<>();
            for (String r : pr[1].split("\\.")) reps.add(Integer.parseInt(r));
            m.put(new TopicPartition(topic, Integer.parseInt(pr[0])), Optional.of(new NewPartitionReassignment(reps)));
        }
        try (Admin a = Admin.create(common(bootstrap, "reassign"))) {
            a.alterPartitionReassignments(m).all().get(30, TimeUnit.SECONDS);
            long end = System.currentTimeMillis() + 60_000;
            while (!a.listPartitionReassignments(m.keySet()).reassignments().get(30, TimeUnit.SECONDS).isEmpty()) {
                if (System.currentTimeMillis() > end) throw new IllegalStateException("reassignment did not finish in 60 s");
                Thread.sleep(200);
            }
            Map<TopicPartition, Optional<Throwable>> r = a.electLeaders(ElectionType.PREFERRED, m.keySet()).partitions().get(30, TimeUnit.SECONDS);
            Map<String, String> res = new TreeMap<>();
            for (Map.Entry<TopicPartition, Optional<Throwable>> e : r.entrySet()) {
                res.put(e.getKey().toString(), e.getValue().map(KafkaClusterOps::describe).orElse("elected"));
            }
            out.put("election", res);
            Map<String, Integer> leaders = new TreeMap<>();
            for (TopicPartitionInfo p : a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic).partitions()) {
                leaders.put(String.valueOf(p.partition()), p.leader() == null ? -1 : p.leader().id());
            }
            out.put("leaders", leaders);
        }
    }

    // ---------------------------------------------------------------- output

    static synchronized void finish() {
        out.put("brokers", new ArrayList<>(brokers));
        out.put("errors", new ArrayList<>(errors));
        out.put("ok", errors.isEmpty());
        System.out.flush();
        System.out.println(json(out));
        System.out.flush();
    }

    static String addr(Node n) { return n.host() + ":" + n.port(); }

    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (; t != null; t = t.getCause()) {
            if (sb.length() > 0) sb.append(" <- ");
            sb.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
        }
        return sb.toString();
    }

    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof Boolean || o instanceof Number) return o.toString();
        if (o instanceof Map) {
            StringJoiner j = new StringJoiner(",", "{", "}");
            synchronized (o) {
                for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) j.add(json(String.valueOf(e.getKey())) + ":" + json(e.getValue()));
            }
            return j.toString();
        }
        if (o instanceof Collection) {
            StringJoiner j = new StringJoiner(",", "[", "]");
            synchronized (o) {
                for (Object x : (Collection<?>) o) j.add(json(x));
            }
            return j.toString();
        }
        String s = o.toString();
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }
}
