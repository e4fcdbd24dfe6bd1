import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Consumer-group member and admin helper for compat/test_groups_java.py (Java kafka-clients 3.9.1,
 * classic consumer).
 *
 * <p>{@code GroupsTest member --bootstrap B --group G --topics T [--assignor range|roundrobin|
 * cooperative-sticky] [--instance-id I] [--session-timeout-ms N] [--heartbeat-ms N]
 * [--max-poll-ms N] [--auto-commit-ms N] [--commit-below N] [--conf k=v]...} runs one member and
 * prints the same JSON event lines as compat/group_member.py (assign, revoke, lost, member with
 * the generation from groupMetadata(), rec, commit, error, closed); stdin {@code close} or EOF
 * closes it, {@code hold} stops polling.
 *
 * <p>{@code GroupsTest offset-delete BOOTSTRAP GROUP TOPIC PARTITION} deletes one committed
 * offset with Admin.deleteConsumerGroupOffsets and prints {@code OK} or {@code ERROR <class>}.
 */
public final class GroupsTest {
    private GroupsTest() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("member")) {
            member(Arrays.copyOfRange(args, 1, args.length));
        } else if (args.length == 5 && args[0].equals("offset-delete")) {
            offsetDelete(args[1], args[2], args[3], Integer.parseInt(args[4]));
        } else {
            System.err.println("usage: GroupsTest member --bootstrap B --group G --topics T ... | "
                    + "offset-delete BOOTSTRAP GROUP TOPIC PARTITION");
            System.exit(2);
        }
        System.exit(0);
    }

    // ---------------------------------------------------------------------------------------------

    static synchronized void emit(String ev, String fields) {
        double t = System.currentTimeMillis() / 1000.0;
        StringBuilder sb = new StringBuilder();
        sb.append("{\"ev\": \"").append(ev).append("\", \"t\": ").append(t);
        if (!fields.isEmpty()) {
            sb.append(", ").append(fields);
        }
        sb.append('}');
        System.out.println(sb);
        System.out.flush();
    }

    static String str(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }

    static String parts(Collection<TopicPartition> tps) {
        List<Integer> ps = new ArrayList<>();
        for (TopicPartition tp : tps) {
            ps.add(tp.partition());
        }
        ps.sort(null);
        return "\"parts\": " + ps;
    }

    static void member(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        List<String> extra = new ArrayList<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (args[i].equals("--conf")) {
                extra.add(args[i + 1]);
            } else {
                opt.put(args[i].substring(2), args[i + 1]);
            }
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opt.get("bootstrap"));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, opt.get("group"));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, opt.containsKey("auto-commit-ms"));
        if (opt.containsKey("auto-commit-ms")) {
            p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, opt.get("auto-commit-ms"));
        }
        String assignor = opt.get("assignor");
        if (assignor != null) {
            String cls = switch (assignor) {
                case "range" -> RangeAssignor.class.getName();
                case "roundrobin" -> RoundRobinAssignor.class.getName();
                case "cooperative-sticky" -> CooperativeStickyAssignor.class.getName();
                default -> throw new IllegalArgumentException("assignor " + assignor);
            };
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
        }
        if (opt.containsKey("instance-id")) {
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, opt.get("instance-id"));
        }
        if (opt.containsKey("session-timeout-ms")) {
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, opt.get("session-timeout-ms"));
        }
        if (opt.containsKey("heartbeat-ms")) {
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, opt.get("heartbeat-ms"));
        }
        if (opt.containsKey("max-poll-ms")) {
            p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, opt.get("max-poll-ms"));
        }
        for (String kv : extra) {
            int eq = kv.indexOf('=');
            p.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        long commitBelow = opt.containsKey("commit-below") ? Long.parseLong(opt.get("commit-below")) : -2;
        List<String> topics = Arrays.asList(opt.get("topics").split(","));

        AtomicBoolean close = new AtomicBoolean();
        AtomicBoolean hold = new AtomicBoolean();
        Thread stdin = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.trim().equals("close")) {
                        close.set(true);
                    } else if (line.trim().equals("hold")) {
                        hold.set(true);
                    }
                }
            } catch (Exception e) {
                emit("error", "\"msg\": " + str("stdin: " + e));
            }
            close.set(true);
        });
        stdin.setDaemon(true);
        stdin.start();

        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(topics, new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                    emit("revoke", parts(tps));
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                    emit("assign", parts(tps));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> tps) {
                    emit("lost", parts(tps));
                }
            });
            emit("ready", "");
            String lastMember = null;
            int lastGen = -2;
            while (!close.get()) {
                if (hold.get()) {
                    Thread.sleep(50);
                    continue;
                }
                Iterable<ConsumerRecord<byte[], byte[]>> records;
                try {
                    records = consumer.poll(Duration.ofMillis(100));
                } catch (Exception e) {
                    emit("error", "\"msg\": " + str(e.toString()));
                    Thread.sleep(100);
                    continue;
                }
                ConsumerGroupMetadata md = consumer.groupMetadata();
                if (md.memberId() != null && !md.memberId().isEmpty()
                        && (!md.memberId().equals(lastMember) || md.generationId() != lastGen)) {
                    lastMember = md.memberId();
                    lastGen = md.generationId();
                    emit("member", "\"id\": " + str(lastMember) + ", \"gen\": " + lastGen);
                }
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    String v = r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8);
                    emit("rec", "\"p\": " + r.partition() + ", \"o\": " + r.offset() + ", \"v\": " + str(v));
                    if (commitBelow == -1 || (commitBelow >= 0 && r.offset() < commitBelow)) {
                        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                        try {
                            consumer.commitSync(Map.of(tp, new OffsetAndMetadata(r.offset() + 1)));
                            emit("commit", "\"p\": " + r.partition() + ", \"o\": " + (r.offset() + 1));
                        } catch (Exception e) {
                            emit("error", "\"msg\": " + str("commit failed: " + e) + ", \"p\": " + r.partition()
                                    + ", \"o\": " + (r.offset() + 1));
                        }
                    }
                }
            }
        }
        emit("closed", "");
    }

    // ---------------------------------------------------------------------------------------------

    static void offsetDelete(String bootstrap, String group, String topic, int partition) throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        try (Admin admin = Admin.create(ap)) {
            try {
                admin.deleteConsumerGroupOffsets(group, Set.of(new TopicPartition(topic, partition)))
                        .all().get(30, TimeUnit.SECONDS);
                System.out.println("OK");
            } catch (ExecutionException e) {
                System.out.println("ERROR " + e.getCause().getClass().getSimpleName() + " " + e.getCause().getMessage());
            }
        }
    }
}
