import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Java kafka-clients 3.9.1 (the reference client) against a Partita broker.
 *
 * <p>Usage: {@code java -cp 'jars/*:build' CompatTest BOOTSTRAP TOPIC [BROKERS]} (BROKERS: how
 * many brokers DescribeCluster must list, 1 by default). Creates TOPIC (3
 * partitions) with the AdminClient, describes it, produces 1000 records with an idempotent
 * producer left at its defaults (acks=all, enable.idempotence=true), reads them all back by
 * assign + seekToBeginning, then the same for each compression codec on a second, compacted
 * topic (whose batches the broker decompresses to check their keys), and deletes both topics. Exits 1 with a message on the first mismatch.
 */
public final class CompatTest {
    static final int PARTITIONS = 3;
    static final int RECORDS = 1000;
    static final long TIMEOUT_S = 30;

    public static void main(String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: CompatTest BOOTSTRAP TOPIC [BROKERS]");
            System.exit(2);
        }
        try {
            run(args[0], args[1], args.length == 3 ? Integer.parseInt(args[2]) : 1);
        } catch (Failure f) {
            System.err.println("FAIL: " + f.getMessage());
            System.exit(1);
        } catch (ExecutionException e) {
            System.err.println("FAIL: " + e.getCause());
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("OK");
        System.exit(0);
    }

    static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;

        Failure(String msg) {
            super(msg);
        }
    }

    static void check(boolean cond, String msg) throws Failure {
        if (!cond) {
            throw new Failure(msg);
        }
    }

    /**
     * A client's properties: the bootstrap servers, plus those of the file named by the system
     * property partita.client.properties if given (security settings, as Kafka's tools take
     * them with --command-config).
     */
    static Properties client(String bootstrap) throws java.io.IOException {
        Properties p = new Properties();
        String file = System.getProperty("partita.client.properties");
        if (file != null) {
            try (java.io.Reader in = java.nio.file.Files.newBufferedReader(java.nio.file.Path.of(file))) {
                p.load(in);
            }
        }
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return p;
    }

    static void step(String msg) {
        System.out.println("== " + msg);
        System.out.flush();
    }

    static void run(String bootstrap, String topic, int brokers) throws Exception {
        Properties ap = client(bootstrap);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 20000);
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        try (Admin admin = Admin.create(ap)) {
            step("describe cluster");
            var cluster = admin.describeCluster();
            String clusterId = cluster.clusterId().get(TIMEOUT_S, TimeUnit.SECONDS);
            var nodes = cluster.nodes().get(TIMEOUT_S, TimeUnit.SECONDS);
            check(nodes.size() == brokers, "expected " + brokers + " nodes, got " + nodes);
            System.out.println("cluster id " + clusterId + ", nodes " + nodes);

            step("create topic " + topic);
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1)))
                    .all().get(TIMEOUT_S, TimeUnit.SECONDS);

            step("list and describe topic");
            waitForTopic(admin, topic, PARTITIONS);
            Set<String> names = admin.listTopics().names().get(TIMEOUT_S, TimeUnit.SECONDS);
            check(names.contains(topic), "listTopics does not contain " + topic + ": " + names);
            TopicDescription desc = admin.describeTopics(List.of(topic)).allTopicNames()
                    .get(TIMEOUT_S, TimeUnit.SECONDS).get(topic);
            check(desc.name().equals(topic), "described name " + desc.name());
            check(!desc.isInternal(), "topic described as internal");
            check(desc.partitions().size() == PARTITIONS, "partitions: " + desc.partitions());
            for (int i = 0; i < PARTITIONS; i++) {
                TopicPartitionInfo pi = desc.partitions().get(i);
                check(pi.partition() == i, "partition order in describe: " + desc.partitions());
                check(pi.leader() != null && nodes.contains(pi.leader()),
                        "partition " + i + " leader " + pi.leader());
                check(pi.replicas().size() == 1 && pi.isr().size() == 1,
                        "partition " + i + " replicas/isr " + pi);
            }

            step("produce " + RECORDS + " records, idempotent producer with default settings");
            Map<Integer, List<String>> sent = produce(bootstrap, topic, RECORDS, null);

            step("consume them back by assign + seekToBeginning");
            consumeAndCheck(bootstrap, topic, sent);

            String codecTopic = topic + "-codecs";
            step("compression codecs on " + codecTopic);
            // Compacted, so that the broker decompresses every batch to check its keys.
            admin.createTopics(List.of(new NewTopic(codecTopic, 1, (short) 1)
                    .configs(Map.of("cleanup.policy", "compact"))))
                    .all().get(TIMEOUT_S, TimeUnit.SECONDS);
            waitForTopic(admin, codecTopic, 1);
            Map<Integer, List<String>> codecSent = new HashMap<>();
            codecSent.put(0, new ArrayList<>());
            for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
                Map<Integer, List<String>> s = produce(bootstrap, codecTopic, 100, codec);
                codecSent.get(0).addAll(s.get(0));
            }
            consumeAndCheck(bootstrap, codecTopic, codecSent);

            step("delete topics");
            admin.deleteTopics(List.of(topic, codecTopic)).all().get(TIMEOUT_S, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
            while (true) {
                Set<String> now = admin.listTopics().names().get(TIMEOUT_S, TimeUnit.SECONDS);
                if (!now.contains(topic) && !now.contains(codecTopic)) {
                    break;
                }
                check(System.nanoTime() < deadline, "topics still listed after delete: " + now);
                Thread.sleep(100);
            }
            try {
                admin.describeTopics(List.of(topic)).allTopicNames().get(TIMEOUT_S, TimeUnit.SECONDS);
                throw new Failure("describeTopics of a deleted topic succeeded");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof UnknownTopicOrPartitionException,
                        "describe of deleted topic: expected UnknownTopicOrPartitionException, got "
                                + e.getCause());
            }
        }
    }

    static void waitForTopic(Admin admin, String topic, int partitions) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
        while (true) {
            try {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
                        .get(TIMEOUT_S, TimeUnit.SECONDS).get(topic);
                if (d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null)) {
                    return;
                }
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) {
                    throw e;
                }
            }
            check(System.nanoTime() < deadline, "topic " + topic + " not ready in metadata");
            Thread.sleep(100);
        }
    }

    /** Produces n keyed records with explicit partitions i % partitionCount; returns per partition values in order. */
    static Map<Integer, List<String>> produce(String bootstrap, String topic, int n, String codec)
            throws Exception {
        Properties pp = client(bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60000);
        if (codec != null) {
            pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        }
        int partitionCount;
        Map<Integer, List<String>> sent = new HashMap<>();
        List<RecordMetadata> metas = Collections.synchronizedList(new ArrayList<>());
        AtomicReference<Exception> error = new AtomicReference<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            partitionCount = producer.partitionsFor(topic).size();
            String tag = codec == null ? "default" : codec;
            for (int i = 0; i < n; i++) {
                int partition = i % partitionCount;
                String value = tag + "-" + i + "-" + "payload".repeat(i % 20);
                sent.computeIfAbsent(partition, k -> new ArrayList<>()).add(value);
                producer.send(new ProducerRecord<>(topic, partition,
                        ("key-" + (i % 7)).getBytes(StandardCharsets.UTF_8),
                        value.getBytes(StandardCharsets.UTF_8)), (meta, exc) -> {
                            if (exc != null) {
                                error.compareAndSet(null, exc);
                            } else {
                                metas.add(meta);
                            }
                        });
            }
            producer.flush();
        }
        if (error.get() != null) {
            throw new Failure("send failed: " + error.get());
        }
        check(metas.size() == n, "acknowledged " + metas.size() + " of " + n + " records");
        return sent;
    }

    static void consumeAndCheck(String bootstrap, String topic, Map<Integer, List<String>> sent)
            throws Exception {
        Properties cp = client(bootstrap);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 200);
        int total = sent.values().stream().mapToInt(List::size).sum();
        Map<Integer, List<String>> got = new HashMap<>();
        Map<Integer, Long> nextOffset = new HashMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p : sent.keySet()) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(TIMEOUT_S));
            for (TopicPartition tp : tps) {
                check(ends.get(tp) == sent.get(tp.partition()).size(),
                        "end offset of " + tp + " is " + ends.get(tp) + ", expected "
                                + sent.get(tp.partition()).size());
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            int count = 0;
            while (count < total) {
                check(System.nanoTime() < deadline, "timed out after reading " + count + " of " + total);
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    long expected = nextOffset.getOrDefault(r.partition(), 0L);
                    check(r.offset() == expected, "partition " + r.partition() + ": offset "
                            + r.offset() + ", expected " + expected);
                    nextOffset.put(r.partition(), expected + 1);
                    got.computeIfAbsent(r.partition(), k -> new ArrayList<>())
                            .add(new String(r.value(), StandardCharsets.UTF_8));
                    count++;
                }
            }
        }
        for (Map.Entry<Integer, List<String>> e : sent.entrySet()) {
            List<String> g = got.getOrDefault(e.getKey(), List.of());
            if (!g.equals(e.getValue())) {
                int i = 0;
                while (i < Math.min(g.size(), e.getValue().size()) && g.get(i).equals(e.getValue().get(i))) {
                    i++;
                }
                throw new Failure("partition " + e.getKey() + ": read " + g.size() + " records, sent "
                        + e.getValue().size() + "; first difference at index " + i);
            }
        }
        System.out.println("read back " + total + " records in order");
    }
}
