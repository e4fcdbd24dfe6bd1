import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConsumerGroupOffsetsResult;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DeleteConsumerGroupOffsetsResult;
import org.apache.kafka.clients.admin.DeleteConsumerGroupsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConsumerGroupsResult;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ListConsumerGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.MemberAssignment;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupResult;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.ConsumerGroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;

/**
 * The consumer-group calls of {@code kafka-consumer-groups.sh} (Java AdminClient, kafka-clients
 * 3.9.1), for compat/test_admin_java.py.
 *
 * <p>{@code AdminGroups BOOTSTRAP COMMAND ARGS...} runs one command; {@code AdminGroups BOOTSTRAP}
 * reads one command per stdin line and answers each with exactly one JSON line (one Admin client
 * for the whole session). Commands:
 * <ul>
 * <li>{@code cluster}: describeCluster (cluster id, controller, and the node ids/addresses a
 *     coordinator is compared with)
 * <li>{@code list [states=Stable,Empty,...] [types=classic,consumer]}: listConsumerGroups, with
 *     inStates(...) / withTypes(...) when given (--list [--state S] [--type T])
 * <li>{@code describe G[,G...]}: describeConsumerGroups (--describe --members/--state)
 * <li>{@code offsets G [TOPIC P,...]}: listConsumerGroupOffsets of all partitions (--describe
 *     --offsets), or of the partitions given (as KafkaConsumer.committed asks)
 * <li>{@code end-offsets TOPIC N}: listOffsets(latest) of partitions 0..N-1 (LOG-END-OFFSET)
 * <li>{@code alter G TOPIC P=OFFSET[:EPOCH[:METADATA]],...}: alterConsumerGroupOffsets
 *     (--reset-offsets --execute)
 * <li>{@code delete-offsets G TOPIC P,...}: deleteConsumerGroupOffsets (--delete-offsets)
 * <li>{@code delete G[,G...]}: deleteConsumerGroups (--delete)
 * <li>{@code remove-static G INSTANCE[,INSTANCE...]}: removeMembersFromConsumerGroup
 * <li>the topic and config commands of {@link AdminTopics} (compat/test_admin_topics_java.py)
 * </ul>
 * An error is reported as {@code {"ok": false, "error": "<exception class>", "msg": ...}} where
 * the call (or the one group / partition) failed.
 */
public final class AdminGroups {
    private static final long WAIT_S = 45;

    private AdminGroups() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: AdminGroups BOOTSTRAP [COMMAND ARGS...]");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 40000);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 20000);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "admin-groups");
        try (Admin admin = Admin.create(p)) {
            if (args.length > 1) {
                System.out.println(json(run(admin, Arrays.copyOfRange(args, 1, args.length))));
            } else {
                BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
                String line;
                while ((line = r.readLine()) != null) {
                    line = line.trim();
                    if (line.isEmpty()) {
                        continue;
                    }
                    if (line.equals("quit")) {
                        break;
                    }
                    Map<String, Object> out = run(admin, line.split("\\s+"));
                    out.put("cmd", line);
                    System.out.println(json(out));
                    System.out.flush();
                }
            }
        }
        System.exit(0);
    }

    static Map<String, Object> run(Admin admin, String[] a) {
        try {
            switch (a[0]) {
                case "cluster":
                    return cluster(admin);
                case "list":
                    return list(admin, Arrays.copyOfRange(a, 1, a.length));
                case "describe":
                    return describe(admin, Arrays.asList(a[1].split(",")));
                case "offsets":
                    return offsets(admin, a[1], a.length > 3 ? a[2] : null, a.length > 3 ? a[3] : null);
                case "end-offsets":
                    return endOffsets(admin, a[1], Integer.parseInt(a[2]));
                case "alter":
                    return alter(admin, a[1], a[2], a[3]);
                case "delete-offsets":
                    return deleteOffsets(admin, a[1], a[2], a[3]);
                case "delete":
                    return delete(admin, Arrays.asList(a[1].split(",")));
                case "remove-static":
                    return removeStatic(admin, a[1], Arrays.asList(a[2].split(",")));
                default:
                    Map<String, Object> topics = AdminTopics.run(admin, a);
                    return topics != null ? topics
                            : error(new IllegalArgumentException("unknown command " + a[0]));
            }
        } catch (Exception e) {
            return error(e);
        }
    }

    // ---------------------------------------------------------------------------------------------

    static Map<String, Object> cluster(Admin admin) throws Exception {
        DescribeClusterResult r = admin.describeCluster();
        List<Object> nodes = new ArrayList<>();
        for (Node n : r.nodes().get(WAIT_S, TimeUnit.SECONDS)) {
            nodes.add(node(n));
        }
        Map<String, Object> out = ok();
        out.put("nodes", nodes);
        out.put("cluster_id", r.clusterId().get(WAIT_S, TimeUnit.SECONDS));
        Node controller = r.controller().get(WAIT_S, TimeUnit.SECONDS);
        out.put("controller", controller == null ? null : node(controller));
        return out;
    }

    static Map<String, Object> list(Admin admin, String[] opts) throws Exception {
        ListConsumerGroupsOptions o = new ListConsumerGroupsOptions();
        for (String opt : opts) {
            if (opt.startsWith("states=")) {
                Set<ConsumerGroupState> states = new HashSet<>();
                for (String s : opt.substring(7).split(",")) {
                    states.add(ConsumerGroupState.parse(s));
                }
                o.inStates(states);
            } else if (opt.startsWith("types=")) {
                Set<GroupType> types = new HashSet<>();
                for (String s : opt.substring(6).split(",")) {
                    types.add(GroupType.parse(s));
                }
                o.withTypes(types);
            } else {
                throw new IllegalArgumentException("list option " + opt);
            }
        }
        List<Object> groups = new ArrayList<>();
        for (ConsumerGroupListing l : admin.listConsumerGroups(o).all().get(WAIT_S, TimeUnit.SECONDS)) {
            Map<String, Object> g = new LinkedHashMap<>();
            g.put("group", l.groupId());
            g.put("simple", l.isSimpleConsumerGroup());
            g.put("state", l.state().map(ConsumerGroupState::toString).orElse(null));
            g.put("type", l.type().map(GroupType::toString).orElse(null));
            groups.add(g);
        }
        Map<String, Object> out = ok();
        out.put("groups", groups);
        return out;
    }

    static Map<String, Object> describe(Admin admin, List<String> groupIds) {
        DescribeConsumerGroupsResult r = admin.describeConsumerGroups(groupIds);
        Map<String, KafkaFuture<ConsumerGroupDescription>> futures = r.describedGroups();
        Map<String, Object> groups = new LinkedHashMap<>();
        for (String g : groupIds) {
            try {
                ConsumerGroupDescription d = futures.get(g).get(WAIT_S, TimeUnit.SECONDS);
                Map<String, Object> m = ok();
                m.put("group", d.groupId());
                m.put("state", d.state() == null ? null : d.state().toString());
                m.put("type", d.type() == null ? null : d.type().toString());
                m.put("simple", d.isSimpleConsumerGroup());
                m.put("assignor", d.partitionAssignor());
                m.put("coordinator", d.coordinator() == null ? null : node(d.coordinator()));
                List<Object> members = new ArrayList<>();
                for (MemberDescription md : d.members()) {
                    Map<String, Object> mm = new LinkedHashMap<>();
                    mm.put("member_id", md.consumerId());
                    mm.put("instance_id", md.groupInstanceId().orElse(null));
                    mm.put("client_id", md.clientId());
                    mm.put("host", md.host());
                    mm.put("assignment", tps(md.assignment()));
                    mm.put("target", md.targetAssignment().map(AdminGroups::tps).orElse(null));
                    members.add(mm);
                }
                m.put("members", members);
                groups.put(g, m);
            } catch (Exception e) {
                groups.put(g, error(e));
            }
        }
        Map<String, Object> out = ok();
        out.put("groups", groups);
        return out;
    }

    static Map<String, Object> offsets(Admin admin, String group, String topic, String parts) throws Exception {
        ListConsumerGroupOffsetsSpec s = new ListConsumerGroupOffsetsSpec();
        if (topic != null) {
            List<TopicPartition> tps = new ArrayList<>();
            for (String p : parts.split(",")) {
                tps.add(new TopicPartition(topic, Integer.parseInt(p)));
            }
            s.topicPartitions(tps);
        }
        Map<String, ListConsumerGroupOffsetsSpec> spec = Map.of(group, s);
        Map<TopicPartition, OffsetAndMetadata> res = admin.listConsumerGroupOffsets(spec)
                .partitionsToOffsetAndMetadata(group).get(WAIT_S, TimeUnit.SECONDS);
        Map<String, Object> offsets = new TreeMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : res.entrySet()) {
            OffsetAndMetadata om = e.getValue();
            if (om == null) {
                offsets.put(tp(e.getKey()), null);
                continue;
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("offset", om.offset());
            m.put("epoch", om.leaderEpoch().orElse(null));
            m.put("metadata", om.metadata());
            offsets.put(tp(e.getKey()), m);
        }
        Map<String, Object> out = ok();
        out.put("offsets", offsets);
        return out;
    }

    static Map<String, Object> endOffsets(Admin admin, String topic, int n) throws Exception {
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (int i = 0; i < n; i++) {
            req.put(new TopicPartition(topic, i), OffsetSpec.latest());
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> res =
                admin.listOffsets(req).all().get(WAIT_S, TimeUnit.SECONDS);
        Map<String, Object> offsets = new TreeMap<>();
        for (Map.Entry<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> e : res.entrySet()) {
            offsets.put(Integer.toString(e.getKey().partition()), e.getValue().offset());
        }
        Map<String, Object> out = ok();
        out.put("offsets", offsets);
        return out;
    }

    static Map<String, Object> alter(Admin admin, String group, String topic, String spec) {
        Map<TopicPartition, OffsetAndMetadata> offsets = new LinkedHashMap<>();
        for (String item : spec.split(",")) {
            String[] pv = item.split("=", 2);
            String[] parts = pv[1].split(":", 3);
            long offset = Long.parseLong(parts[0]);
            Optional<Integer> epoch = parts.length > 1 && !parts[1].isEmpty()
                    ? Optional.of(Integer.parseInt(parts[1])) : Optional.empty();
            String metadata = parts.length > 2 ? parts[2] : "";
            offsets.put(new TopicPartition(topic, Integer.parseInt(pv[0])),
                    new OffsetAndMetadata(offset, epoch, metadata));
        }
        AlterConsumerGroupOffsetsResult r = admin.alterConsumerGroupOffsets(group, offsets);
        Map<String, Object> out = outcome(r.all());
        Map<String, Object> per = new TreeMap<>();
        for (TopicPartition tp : offsets.keySet()) {
            per.put(Integer.toString(tp.partition()), outcome(r.partitionResult(tp)));
        }
        out.put("partitions", per);
        return out;
    }

    static Map<String, Object> deleteOffsets(Admin admin, String group, String topic, String parts) {
        Set<TopicPartition> tps = new HashSet<>();
        for (String s : parts.split(",")) {
            tps.add(new TopicPartition(topic, Integer.parseInt(s)));
        }
        DeleteConsumerGroupOffsetsResult r = admin.deleteConsumerGroupOffsets(group, tps);
        Map<String, Object> out = outcome(r.all());
        Map<String, Object> per = new TreeMap<>();
        for (TopicPartition tp : tps) {
            per.put(Integer.toString(tp.partition()), outcome(r.partitionResult(tp)));
        }
        out.put("partitions", per);
        return out;
    }

    static Map<String, Object> delete(Admin admin, List<String> groupIds) {
        DeleteConsumerGroupsResult r = admin.deleteConsumerGroups(groupIds);
        Map<String, Object> out = outcome(r.all());
        Map<String, Object> per = new LinkedHashMap<>();
        for (Map.Entry<String, KafkaFuture<Void>> e : r.deletedGroups().entrySet()) {
            per.put(e.getKey(), outcome(e.getValue()));
        }
        out.put("groups", per);
        return out;
    }

    static Map<String, Object> removeStatic(Admin admin, String group, List<String> instances) {
        List<MemberToRemove> ms = new ArrayList<>();
        for (String i : instances) {
            ms.add(new MemberToRemove(i));
        }
        RemoveMembersFromConsumerGroupResult r = admin.removeMembersFromConsumerGroup(group,
                new RemoveMembersFromConsumerGroupOptions(ms));
        Map<String, Object> out = outcome(r.all());
        Map<String, Object> per = new LinkedHashMap<>();
        for (MemberToRemove m : ms) {
            per.put(m.groupInstanceId(), outcome(r.memberResult(m)));
        }
        out.put("members", per);
        return out;
    }

    // ---------------------------------------------------------------------------------------------

    static Map<String, Object> ok() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", true);
        return m;
    }

    static Map<String, Object> error(Throwable e) {
        Throwable c = e;
        while (c instanceof ExecutionException && c.getCause() != null) {
            c = c.getCause();
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", false);
        m.put("error", c.getClass().getSimpleName());
        m.put("msg", String.valueOf(c.getMessage()));
        return m;
    }

    static Map<String, Object> outcome(KafkaFuture<Void> f) {
        try {
            f.get(WAIT_S, TimeUnit.SECONDS);
            return ok();
        } catch (Exception e) {
            return error(e);
        }
    }

    static Map<String, Object> node(Node n) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", n.id());
        m.put("host", n.host());
        m.put("port", n.port());
        return m;
    }

    static String tp(TopicPartition tp) {
        return tp.topic() + ":" + tp.partition();
    }

    static List<String> tps(MemberAssignment a) {
        List<String> out = new ArrayList<>();
        for (TopicPartition tp : a.topicPartitions()) {
            out.add(tp(tp));
        }
        out.sort(null);
        return out;
    }

    // --- minimal JSON writer ----------------------------------------------------------------------

    static String json(Object o) {
        StringBuilder sb = new StringBuilder();
        write(sb, o);
        return sb.toString();
    }

    static void write(StringBuilder sb, Object o) {
        if (o == null) {
            sb.append("null");
        } else if (o instanceof String) {
            str(sb, (String) o);
        } else if (o instanceof Number || o instanceof Boolean) {
            sb.append(o);
        } else if (o instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                str(sb, String.valueOf(e.getKey()));
                sb.append(": ");
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (o instanceof Collection) {
            sb.append('[');
            boolean first = true;
            for (Object x : (Collection<?>) o) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                write(sb, x);
            }
            sb.append(']');
        } else {
            str(sb, o.toString());
        }
    }

    static void str(StringBuilder sb, String s) {
        sb.append('"');
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        sb.append('"');
    }
}
