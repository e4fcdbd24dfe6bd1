import java.io.BufferedOutputStream;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Java kafka-clients consumer member for bench/rebalance.py ({@code --client java}): the same
 * options and the same JSON event lines on stdout as {@code rebalance.py _member} (member_main):
 * subscribe, assign, revoke, lost, member, recs ({@code [partition, records, age of the oldest
 * record in ms]} per poll), error; {@code t} is epoch seconds. It runs until killed.
 *
 * <p>{@code RebalanceMember --bootstrap B --group G --topic T [--conf k=v]...}: the --conf keys are
 * confluent-kafka (librdkafka) names, mapped to the Java ones here (see {@link #javaProps}). The
 * effective Java properties are printed on stderr.
 */
public final class RebalanceMember {
    private static final PrintStream OUT = new PrintStream(
            new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false,
            StandardCharsets.UTF_8);

    private RebalanceMember() {
    }

    /** Epoch microseconds. */
    static long nowMicros() {
        Instant i = Instant.now();
        return i.getEpochSecond() * 1_000_000L + i.getNano() / 1000;
    }

    /** Epoch seconds as a JSON number with 6 decimals (like Python's time.time()). */
    static String secs(long micros) {
        long frac = micros % 1_000_000L;
        String f = Long.toString(frac);
        return (micros / 1_000_000L) + "." + "000000".substring(f.length()) + f;
    }

    static synchronized void emit(String ev, long micros, String fields) {
        OUT.print("{\"ev\":\"" + ev + "\",\"t\":" + secs(micros) + (fields.isEmpty() ? "" : "," + fields) + "}\n");
        OUT.flush();
    }

    static String str(String s) {
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
        StringBuilder sb = new StringBuilder("\"parts\":[");
        for (int i = 0; i < ps.size(); i++) {
            sb.append(i == 0 ? "" : ",").append(ps.get(i));
        }
        return sb.append(']').toString();
    }

    static void error(Throwable e) {
        emit("error", nowMicros(), "\"msg\":" + str(String.valueOf(e)) + ",\"code\":"
                + str(e.getClass().getSimpleName()));
    }

    static String assignorClass(String name) {
        return switch (name.trim()) {
            case "range" -> RangeAssignor.class.getName();
            case "roundrobin" -> RoundRobinAssignor.class.getName();
            case "cooperative-sticky" -> CooperativeStickyAssignor.class.getName();
            case "sticky" -> StickyAssignor.class.getName();
            default -> name.trim(); // already a class name
        };
    }

    /**
     * Consumer properties from member_main's defaults plus the --conf pairs (librdkafka names):
     * fetch.wait.max.ms becomes fetch.max.wait.ms, partition.assignment.strategy names become
     * assignor classes, librdkafka-only keys are dropped, the rest (same name in both clients) is
     * passed as is. With group.protocol=consumer the classic-only settings are dropped: the Java
     * consumer refuses them (the broker's group.consumer.* settings apply instead).
     */
    static Properties javaProps(String bootstrap, String group, List<String> confs) {
        Map<String, String> c = new HashMap<>();
        c.put("auto.offset.reset", "earliest");
        for (String kv : confs) {
            int eq = kv.indexOf('=');
            if (eq < 0) {
                throw new IllegalArgumentException("--conf " + kv + ": not k=v");
            }
            c.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        boolean consumerProtocol = "consumer".equalsIgnoreCase(c.getOrDefault("group.protocol", "classic"));
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        for (Map.Entry<String, String> e : c.entrySet()) {
            String k = e.getKey();
            String v = e.getValue();
            switch (k) {
                case "enable.partition.eof", "socket.timeout.ms" -> {
                    // librdkafka only (the Java consumer has no EOF events)
                }
                case "fetch.wait.max.ms" -> p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, v);
                case "partition.assignment.strategy" -> {
                    if (!consumerProtocol) {
                        List<String> cls = new ArrayList<>();
                        for (String a : v.split(",")) {
                            cls.add(assignorClass(a));
                        }
                        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, String.join(",", cls));
                    }
                }
                case "session.timeout.ms", "heartbeat.interval.ms" -> {
                    if (!consumerProtocol) {
                        p.put(k, v);
                    }
                }
                case "group.protocol" -> p.put(k, v.toLowerCase(Locale.ROOT));
                case "group.remote.assignor" -> {
                    if (consumerProtocol) {
                        p.put(k, v);
                    }
                }
                default -> p.put(k, v);
            }
        }
        return p;
    }

    public static void main(String[] args) {
        String bootstrap = null;
        String group = null;
        String topic = null;
        List<String> confs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--bootstrap" -> bootstrap = v;
                case "--group" -> group = v;
                case "--topic" -> topic = v;
                case "--conf" -> confs.add(v);
                default -> usage("unknown option " + a);
            }
        }
        if (bootstrap == null || group == null || topic == null) {
            usage("--bootstrap, --group and --topic are required");
        }
        Properties props = javaProps(bootstrap, group, confs);
        System.err.println("RebalanceMember properties: " + new java.util.TreeMap<>(props));

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);
        ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                emit("revoke", nowMicros(), parts(tps));
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                emit("assign", nowMicros(), parts(tps));
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> tps) {
                emit("lost", nowMicros(), parts(tps));
            }
        };
        emit("subscribe", nowMicros(), "");
        consumer.subscribe(List.of(topic), listener);
        String memberId = null;
        Map<Integer, long[]> agg = new HashMap<>(); // partition -> {records, oldest timestamp ms}
        Duration pollTimeout = Duration.ofMillis(50);
        while (true) { // ends by signal (the benchmark kills its members)
            ConsumerRecords<byte[], byte[]> recs;
            try {
                recs = consumer.poll(pollTimeout);
            } catch (Exception e) {
                error(e);
                sleep(50);
                continue;
            }
            long now = nowMicros();
            String mid;
            try {
                mid = consumer.groupMetadata().memberId();
            } catch (Exception e) {
                mid = null;
            }
            if (mid != null && !mid.isEmpty() && !mid.equals(memberId)) {
                memberId = mid;
                emit("member", now, "\"id\":" + str(mid));
            }
            if (recs.isEmpty()) {
                continue;
            }
            agg.clear();
            for (ConsumerRecord<byte[], byte[]> r : recs) {
                long[] a = agg.get(r.partition());
                if (a == null) {
                    agg.put(r.partition(), new long[] {1, r.timestamp()});
                } else {
                    a[0]++;
                    if (r.timestamp() < a[1]) {
                        a[1] = r.timestamp();
                    }
                }
            }
            double nowMs = now / 1000.0;
            StringBuilder sb = new StringBuilder("\"r\":[");
            boolean first = true;
            for (Map.Entry<Integer, long[]> e : agg.entrySet()) {
                sb.append(first ? "[" : ",[").append(e.getKey()).append(',').append(e.getValue()[0])
                        .append(',').append(Math.round(nowMs - e.getValue()[1])).append(']');
                first = false;
            }
            emit("recs", now, sb.append(']').toString());
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void usage(String why) {
        System.err.println("RebalanceMember: " + why + "\nusage: RebalanceMember --bootstrap B --group G "
                + "--topic T [--conf k=v]...");
        System.exit(2);
    }
}
