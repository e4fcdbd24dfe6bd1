import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.AlterConfigsResult;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreatePartitionsOptions;
import org.apache.kafka.clients.admin.CreatePartitionsResult;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DeleteRecordsResult;
import org.apache.kafka.clients.admin.DeleteTopicsResult;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.DescribeTopicsResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;

/**
 * The topic and config calls of {@code kafka-topics.sh}, {@code kafka-configs.sh},
 * {@code kafka-delete-records.sh} and {@code kafka-get-offsets.sh} (Java AdminClient,
 * kafka-clients 3.9.1), for compat/test_admin_topics_java.py.
 *
 * <p>These are further commands of the {@link AdminGroups} program (which hands every command it
 * does not know to {@link #run}), so one JVM answers both kinds; the answers use its JSON writer
 * and error format ({@code {"ok": false, "error": "<exception class>", "msg": ...}}). Arguments
 * are whitespace-separated tokens, so a value may contain commas but no blanks. Commands:
 * <ul>
 * <li>{@code create NAME [p=N] [rf=N] [validate] [c:KEY=VALUE...]}: createTopics (no {@code p=} or
 *     {@code rf=}: the broker defaults, Optional.empty()); answers topic id, partitions,
 *     replication factor and the configs the broker reports
 * <li>{@code topics [internal]}: listTopics (listInternal(true) with {@code internal})
 * <li>{@code describe-topics NAME[,NAME...]}: describeTopics(TopicCollection.ofTopicNames)
 * <li>{@code describe-ids ID[,ID...]}: describeTopics(TopicCollection.ofTopicIds)
 * <li>{@code configs topic|broker NAME [synonyms] [keys=K,K...]}: describeConfigs; NAME {@code -}
 *     stands for the empty name (the broker-wide default resource)
 * <li>{@code alter-inc topic|broker NAME [validate] OP:KEY[=VALUE]...}: incrementalAlterConfigs,
 *     OP one of set, delete, append, subtract
 * <li>{@code alter-legacy topic|broker NAME [validate] KEY=VALUE...}: alterConfigs (deprecated)
 * <li>{@code create-partitions NAME COUNT [validate]}: createPartitions
 * <li>{@code list-offsets TOPIC P=SPEC,...}: listOffsets, SPEC one of earliest, latest, max,
 *     local (earliestLocal), tiered (latestTiered) or a timestamp
 * <li>{@code delete-records TOPIC P=OFFSET,...}: deleteRecords (beforeOffset)
 * <li>{@code delete-topics NAME[,NAME...]}, {@code delete-ids ID[,ID...]}: deleteTopics
 * </ul>
 */
final class AdminTopics {
    private static final long WAIT_S = 45;

    private AdminTopics() {
    }

    /** The answer to command {@code a}, or null if it is not one of these commands. */
    static Map<String, Object> run(Admin admin, String[] a) throws Exception {
        String[] rest = Arrays.copyOfRange(a, 1, a.length);
        switch (a[0]) {
            case "create":
                return create(admin, rest);
            case "topics":
                return listTopics(admin, rest);
            case "describe-topics":
                return describeByName(admin, Arrays.asList(a[1].split(",")));
            case "describe-ids":
                return describeById(admin, Arrays.asList(a[1].split(",")));
            case "configs":
                return describeConfigs(admin, rest);
            case "alter-inc":
                return alterIncremental(admin, rest);
            case "alter-legacy":
                return alterLegacy(admin, rest);
            case "create-partitions":
                return createPartitions(admin, rest);
            case "list-offsets":
                return listOffsets(admin, a[1], a[2]);
            case "delete-records":
                return deleteRecords(admin, a[1], a[2]);
            case "delete-topics":
                return deleteByName(admin, Arrays.asList(a[1].split(",")));
            case "delete-ids":
                return deleteById(admin, Arrays.asList(a[1].split(",")));
            default:
                return null;
        }
    }

    // ---------------------------------------------------------------------------------------------

    static Map<String, Object> create(Admin admin, String[] args) {
        String name = args[0];
        Optional<Integer> partitions = Optional.empty();
        Optional<Short> rf = Optional.empty();
        boolean validate = false;
        Map<String, String> configs = new LinkedHashMap<>();
        for (String arg : Arrays.copyOfRange(args, 1, args.length)) {
            if (arg.startsWith("p=")) {
                partitions = Optional.of(Integer.parseInt(arg.substring(2)));
            } else if (arg.startsWith("rf=")) {
                rf = Optional.of(Short.parseShort(arg.substring(3)));
            } else if (arg.equals("validate")) {
                validate = true;
            } else if (arg.startsWith("c:")) {
                String[] kv = arg.substring(2).split("=", 2);
                configs.put(kv[0], kv[1]);
            } else {
                throw new IllegalArgumentException("create option " + arg);
            }
        }
        NewTopic topic = new NewTopic(name, partitions, rf).configs(configs);
        CreateTopicsResult r = admin.createTopics(List.of(topic), new CreateTopicsOptions().validateOnly(validate));
        Map<String, Object> out = AdminGroups.outcome(r.all());
        if (!(Boolean) out.get("ok")) {
            return out;
        }
        try {
            out.put("topic_id", r.topicId(name).get(WAIT_S, TimeUnit.SECONDS).toString());
            out.put("partitions", r.numPartitions(name).get(WAIT_S, TimeUnit.SECONDS));
            out.put("rf", r.replicationFactor(name).get(WAIT_S, TimeUnit.SECONDS));
        } catch (Exception e) {
            out.put("metadata_error", AdminGroups.error(e));
        }
        try {
            out.put("configs", entries(r.config(name).get(WAIT_S, TimeUnit.SECONDS)));
        } catch (Exception e) {
            out.put("configs", AdminGroups.error(e));
        }
        return out;
    }

    static Map<String, Object> listTopics(Admin admin, String[] opts) throws Exception {
        ListTopicsOptions o = new ListTopicsOptions();
        for (String opt : opts) {
            if (opt.equals("internal")) {
                o.listInternal(true);
            } else {
                throw new IllegalArgumentException("topics option " + opt);
            }
        }
        Map<String, Object> topics = new TreeMap<>();
        for (TopicListing l : admin.listTopics(o).listings().get(WAIT_S, TimeUnit.SECONDS)) {
            Map<String, Object> t = new LinkedHashMap<>();
            t.put("id", l.topicId() == null ? null : l.topicId().toString());
            t.put("internal", l.isInternal());
            topics.put(l.name(), t);
        }
        Map<String, Object> out = AdminGroups.ok();
        out.put("topics", topics);
        return out;
    }

    static Map<String, Object> describeByName(Admin admin, List<String> names) {
        DescribeTopicsResult r = admin.describeTopics(TopicCollection.ofTopicNames(names));
        Map<String, Object> topics = new LinkedHashMap<>();
        boolean all = true;
        for (String n : names) {
            Map<String, Object> d = description(r.topicNameValues().get(n));
            all &= (Boolean) d.get("ok");
            topics.put(n, d);
        }
        Map<String, Object> out = AdminGroups.ok();
        out.put("ok", all);
        out.put("topics", topics);
        return out;
    }

    static Map<String, Object> describeById(Admin admin, List<String> ids) {
        List<Uuid> uuids = new ArrayList<>();
        for (String id : ids) {
            uuids.add(Uuid.fromString(id));
        }
        DescribeTopicsResult r = admin.describeTopics(TopicCollection.ofTopicIds(uuids));
        Map<String, Object> topics = new LinkedHashMap<>();
        boolean all = true;
        for (Uuid id : uuids) {
            Map<String, Object> d = description(r.topicIdValues().get(id));
            all &= (Boolean) d.get("ok");
            topics.put(id.toString(), d);
        }
        Map<String, Object> out = AdminGroups.ok();
        out.put("ok", all);
        out.put("topics", topics);
        return out;
    }

    static Map<String, Object> description(KafkaFuture<TopicDescription> f) {
        try {
            TopicDescription d = f.get(WAIT_S, TimeUnit.SECONDS);
            Map<String, Object> m = AdminGroups.ok();
            m.put("name", d.name());
            m.put("id", d.topicId() == null ? null : d.topicId().toString());
            m.put("internal", d.isInternal());
            List<Object> parts = new ArrayList<>();
            for (TopicPartitionInfo p : d.partitions()) {
                Map<String, Object> pm = new LinkedHashMap<>();
                pm.put("partition", p.partition());
                pm.put("leader", p.leader() == null ? null : p.leader().id());
                pm.put("replicas", nodeIds(p.replicas()));
                pm.put("isr", nodeIds(p.isr()));
                parts.add(pm);
            }
            m.put("partitions", parts);
            return m;
        } catch (Exception e) {
            return AdminGroups.error(e);
        }
    }

    static List<Integer> nodeIds(List<Node> nodes) {
        List<Integer> out = new ArrayList<>();
        for (Node n : nodes) {
            out.add(n.id());
        }
        return out;
    }

    static ConfigResource resource(String type, String name) {
        ConfigResource.Type t;
        switch (type) {
            case "topic":
                t = ConfigResource.Type.TOPIC;
                break;
            case "broker":
                t = ConfigResource.Type.BROKER;
                break;
            default:
                throw new IllegalArgumentException("resource type " + type);
        }
        return new ConfigResource(t, name.equals("-") ? "" : name);
    }

    static Map<String, Object> describeConfigs(Admin admin, String[] args) throws Exception {
        ConfigResource res = resource(args[0], args[1]);
        DescribeConfigsOptions o = new DescribeConfigsOptions();
        List<String> keys = null;
        for (String opt : Arrays.copyOfRange(args, 2, args.length)) {
            if (opt.equals("synonyms")) {
                o.includeSynonyms(true);
            } else if (opt.startsWith("keys=")) {
                keys = Arrays.asList(opt.substring(5).split(","));
            } else {
                throw new IllegalArgumentException("configs option " + opt);
            }
        }
        Config c = admin.describeConfigs(List.of(res), o).values().get(res).get(WAIT_S, TimeUnit.SECONDS);
        Map<String, Object> configs = entries(c);
        if (keys != null) {
            configs.keySet().retainAll(keys);
        }
        Map<String, Object> out = AdminGroups.ok();
        out.put("configs", configs);
        return out;
    }

    static Map<String, Object> entries(Config c) {
        Map<String, Object> configs = new TreeMap<>();
        for (ConfigEntry e : c.entries()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("value", e.value());
            m.put("source", e.source() == null ? null : e.source().toString());
            m.put("default", e.isDefault());
            m.put("sensitive", e.isSensitive());
            m.put("read_only", e.isReadOnly());
            m.put("type", e.type() == null ? null : e.type().toString());
            List<Object> synonyms = new ArrayList<>();
            for (ConfigEntry.ConfigSynonym s : e.synonyms()) {
                Map<String, Object> sm = new LinkedHashMap<>();
                sm.put("name", s.name());
                sm.put("value", s.value());
                sm.put("source", s.source() == null ? null : s.source().toString());
                synonyms.add(sm);
            }
            m.put("synonyms", synonyms);
            configs.put(e.name(), m);
        }
        return configs;
    }

    static Map<String, Object> alterIncremental(Admin admin, String[] args) {
        ConfigResource res = resource(args[0], args[1]);
        boolean validate = false;
        List<AlterConfigOp> ops = new ArrayList<>();
        for (String arg : Arrays.copyOfRange(args, 2, args.length)) {
            if (arg.equals("validate")) {
                validate = true;
                continue;
            }
            String[] opAndRest = arg.split(":", 2);
            String[] kv = opAndRest[1].split("=", 2);
            AlterConfigOp.OpType op = AlterConfigOp.OpType.valueOf(opAndRest[0].toUpperCase());
            ops.add(new AlterConfigOp(new ConfigEntry(kv[0], kv.length > 1 ? kv[1] : null), op));
        }
        Map<ConfigResource, Collection<AlterConfigOp>> req = Map.of(res, ops);
        AlterConfigsResult r = admin.incrementalAlterConfigs(req, new AlterConfigsOptions().validateOnly(validate));
        return AdminGroups.outcome(r.values().get(res));
    }

    @SuppressWarnings("deprecation")
    static Map<String, Object> alterLegacy(Admin admin, String[] args) {
        ConfigResource res = resource(args[0], args[1]);
        boolean validate = false;
        List<ConfigEntry> entries = new ArrayList<>();
        for (String arg : Arrays.copyOfRange(args, 2, args.length)) {
            if (arg.equals("validate")) {
                validate = true;
                continue;
            }
            String[] kv = arg.split("=", 2);
            entries.add(new ConfigEntry(kv[0], kv[1]));
        }
        Map<ConfigResource, Config> req = Map.of(res, new Config(entries));
        AlterConfigsResult r = admin.alterConfigs(req, new AlterConfigsOptions().validateOnly(validate));
        return AdminGroups.outcome(r.values().get(res));
    }

    static Map<String, Object> createPartitions(Admin admin, String[] args) {
        boolean validate = args.length > 2 && args[2].equals("validate");
        CreatePartitionsResult r = admin.createPartitions(
                Map.of(args[0], NewPartitions.increaseTo(Integer.parseInt(args[1]))),
                new CreatePartitionsOptions().validateOnly(validate));
        return AdminGroups.outcome(r.values().get(args[0]));
    }

    static OffsetSpec spec(String s) {
        switch (s) {
            case "earliest":
                return OffsetSpec.earliest();
            case "latest":
                return OffsetSpec.latest();
            case "max":
                return OffsetSpec.maxTimestamp();
            case "local":
                return OffsetSpec.earliestLocal();
            case "tiered":
                return OffsetSpec.latestTiered();
            default:
                return OffsetSpec.forTimestamp(Long.parseLong(s));
        }
    }

    static Map<String, Object> listOffsets(Admin admin, String topic, String specs) {
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (String item : specs.split(",")) {
            String[] pv = item.split("=", 2);
            req.put(new TopicPartition(topic, Integer.parseInt(pv[0])), spec(pv[1]));
        }
        ListOffsetsResult r = admin.listOffsets(req);
        Map<String, Object> per = new TreeMap<>();
        boolean all = true;
        for (TopicPartition tp : req.keySet()) {
            try {
                ListOffsetsResult.ListOffsetsResultInfo i = r.partitionResult(tp).get(WAIT_S, TimeUnit.SECONDS);
                Map<String, Object> m = AdminGroups.ok();
                m.put("offset", i.offset());
                m.put("timestamp", i.timestamp());
                m.put("epoch", i.leaderEpoch().orElse(null));
                per.put(Integer.toString(tp.partition()), m);
            } catch (Exception e) {
                all = false;
                per.put(Integer.toString(tp.partition()), AdminGroups.error(e));
            }
        }
        Map<String, Object> out = AdminGroups.ok();
        out.put("ok", all);
        out.put("partitions", per);
        return out;
    }

    static Map<String, Object> deleteRecords(Admin admin, String topic, String offsets) {
        Map<TopicPartition, RecordsToDelete> req = new HashMap<>();
        for (String item : offsets.split(",")) {
            String[] pv = item.split("=", 2);
            req.put(new TopicPartition(topic, Integer.parseInt(pv[0])),
                    RecordsToDelete.beforeOffset(Long.parseLong(pv[1])));
        }
        DeleteRecordsResult r = admin.deleteRecords(req);
        Map<String, Object> per = new TreeMap<>();
        boolean all = true;
        for (Map.Entry<TopicPartition, KafkaFuture<DeletedRecords>> e : r.lowWatermarks().entrySet()) {
            try {
                Map<String, Object> m = AdminGroups.ok();
                m.put("low_watermark", e.getValue().get(WAIT_S, TimeUnit.SECONDS).lowWatermark());
                per.put(Integer.toString(e.getKey().partition()), m);
            } catch (Exception ex) {
                all = false;
                per.put(Integer.toString(e.getKey().partition()), AdminGroups.error(ex));
            }
        }
        Map<String, Object> out = AdminGroups.ok();
        out.put("ok", all);
        out.put("partitions", per);
        return out;
    }

    static Map<String, Object> deleteByName(Admin admin, List<String> names) {
        DeleteTopicsResult r = admin.deleteTopics(TopicCollection.ofTopicNames(names));
        Map<String, Object> out = AdminGroups.outcome(r.all());
        Map<String, Object> per = new LinkedHashMap<>();
        for (String n : names) {
            per.put(n, AdminGroups.outcome(r.topicNameValues().get(n)));
        }
        out.put("topics", per);
        return out;
    }

    static Map<String, Object> deleteById(Admin admin, List<String> ids) {
        List<Uuid> uuids = new ArrayList<>();
        for (String id : ids) {
            uuids.add(Uuid.fromString(id));
        }
        DeleteTopicsResult r = admin.deleteTopics(TopicCollection.ofTopicIds(uuids));
        Map<String, Object> out = AdminGroups.outcome(r.all());
        Map<String, Object> per = new LinkedHashMap<>();
        for (Uuid id : uuids) {
            per.put(id.toString(), AdminGroups.outcome(r.topicIdValues().get(id)));
        }
        out.put("topics", per);
        return out;
    }
}
