import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.TreeMap;

import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's transactions against Partita: a committed, an aborted and another
 * committed transaction, read back by a read_committed and a read_uncommitted consumer; then
 * a second producer with the same transactional.id fences the first. On the way, the admin
 * API describes and lists the transactions, and finds and aborts an open one in its partition.
 * Usage: TransactionsTest BOOTSTRAP TOPIC TRANSACTIONAL_ID. Prints OK at the end.
 */
public final class TransactionsTest {
    private static final int COUNT = 20;

    private TransactionsTest() {}

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        String transactionalId = args[2];
        try (KafkaProducer<String, String> producer = producer(bootstrap, transactionalId)) {
            producer.initTransactions();
            String[][] plan = {{"first", "commit"}, {"aborted", "abort"}, {"second", "commit"}};
            for (String[] step : plan) {
                producer.beginTransaction();
                for (int i = 0; i < COUNT; i++) {
                    producer.send(new ProducerRecord<>(topic, step[0] + "-" + i, step[0] + "-" + i));
                }
                producer.flush();
                if (step[1].equals("commit")) {
                    producer.commitTransaction();
                } else {
                    producer.abortTransaction();
                }
            }
            TreeMap<String, Integer> committed = read(bootstrap, topic, "read_committed", 2 * COUNT);
            expect(committed, "first", COUNT);
            expect(committed, "second", COUNT);
            expect(committed, "aborted", 0);
            TreeMap<String, Integer> everything = read(bootstrap, topic, "read_uncommitted", 3 * COUNT);
            expect(everything, "aborted", COUNT);

            // The admin API (KIP-664) sees the last transaction committed, then one open.
            try (Admin admin = admin(bootstrap)) {
                waitForState(admin, transactionalId, TransactionState.COMPLETE_COMMIT);
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, "open", "open-0")).get();
                TransactionDescription open = waitForState(admin, transactionalId, TransactionState.ONGOING);
                if (open.topicPartitions().isEmpty() || open.transactionStartTimeMs().isEmpty()) {
                    throw new AssertionError("an open transaction without partitions: " + open);
                }
                boolean listed = false;
                ListTransactionsOptions ongoing = new ListTransactionsOptions()
                        .filterStates(List.of(TransactionState.ONGOING));
                for (TransactionListing listing : admin.listTransactions(ongoing).all().get()) {
                    listed |= listing.transactionalId().equals(transactionalId);
                }
                if (!listed) {
                    throw new AssertionError("the open transaction is not listed");
                }
                // kafka-transactions.sh's way with a hanging transaction: find where it
                // starts with describeProducers, and abort it with abortTransaction.
                TopicPartition held = open.topicPartitions().iterator().next();
                ProducerState hanging = null;
                for (ProducerState state : admin.describeProducers(List.of(held))
                        .partitionResult(held).get().activeProducers()) {
                    if (state.currentTransactionStartOffset().isPresent()) {
                        hanging = state;
                    }
                }
                if (hanging == null) {
                    throw new AssertionError("describeProducers shows no open transaction in " + held);
                }
                admin.abortTransaction(new AbortTransactionSpec(held, hanging.producerId(),
                        (short) hanging.producerEpoch(), hanging.coordinatorEpoch().orElse(-1))).all().get();
                for (ProducerState state : admin.describeProducers(List.of(held))
                        .partitionResult(held).get().activeProducers()) {
                    if (state.currentTransactionStartOffset().isPresent()) {
                        throw new AssertionError("still open after abortTransaction: " + state);
                    }
                }
                producer.abortTransaction();
            }

            // A second instance with the same transactional id fences the first.
            try (KafkaProducer<String, String> newer = producer(bootstrap, transactionalId)) {
                newer.initTransactions();
                boolean fenced = false;
                try {
                    producer.beginTransaction();
                    producer.send(new ProducerRecord<>(topic, "zombie", "zombie-0")).get();
                    producer.commitTransaction();
                } catch (ProducerFencedException e) {
                    fenced = true;
                } catch (java.util.concurrent.ExecutionException e) {
                    fenced = e.getCause() instanceof ProducerFencedException;
                } catch (KafkaException e) {
                    fenced = e.getCause() instanceof ProducerFencedException
                            || e instanceof ProducerFencedException;
                }
                if (!fenced) {
                    throw new AssertionError("the first producer was not fenced");
                }
                newer.beginTransaction();
                newer.send(new ProducerRecord<>(topic, "newer", "newer-0"));
                newer.commitTransaction();
            }
        }
        TreeMap<String, Integer> last = read(bootstrap, topic, "read_committed", 2 * COUNT + 1);
        expect(last, "newer", 1);
        expect(last, "zombie", 0);
        System.out.println("OK");
    }

    private static Admin admin(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return Admin.create(props);
    }

    /** The description of `transactionalId` once it is in `state`. */
    private static TransactionDescription waitForState(Admin admin, String transactionalId,
                                                       TransactionState state) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        TransactionDescription last = null;
        while (System.currentTimeMillis() < deadline) {
            last = admin.describeTransactions(List.of(transactionalId))
                    .description(transactionalId).get();
            if (last.state() == state) {
                return last;
            }
            Thread.sleep(100);
        }
        throw new AssertionError(transactionalId + " never reached " + state + ": " + last);
    }

    private static KafkaProducer<String, String> producer(String bootstrap, String transactionalId) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(props);
    }

    /** Counts of each value prefix a consumer with `isolation` reads, once it has `expect`. */
    private static TreeMap<String, Integer> read(String bootstrap, String topic, String isolation,
                                                 int expect) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        TreeMap<String, Integer> counts = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            int got = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            long quietUntil = Long.MAX_VALUE;
            while (System.currentTimeMillis() < deadline) {
                int before = got;
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(300))) {
                    String prefix = record.value().substring(0, record.value().lastIndexOf('-'));
                    counts.merge(prefix, 1, Integer::sum);
                    got++;
                }
                if (got != before) {
                    quietUntil = System.currentTimeMillis() + 1_000;
                }
                if (got >= expect && System.currentTimeMillis() > quietUntil) {
                    return counts;
                }
            }
        }
        throw new AssertionError(isolation + ": read " + counts + ", expected " + expect + " records");
    }

    private static void expect(TreeMap<String, Integer> counts, String prefix, int count) {
        int got = counts.getOrDefault(prefix, 0);
        if (got != count) {
            throw new AssertionError(prefix + ": " + got + " records, expected " + count + " in " + counts);
        }
    }
}
