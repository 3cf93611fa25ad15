/*
 * Workload: the `workload` subcommand, a short deterministic workload whose traffic is captured
 * as golden traffic. In order:
 *   1. Admin: creates TOPIC (3 partitions, replication factor 1, min.insync.replicas=1 so that
 *      acks=all works on any cluster);
 *   2. one producer per compression type (none, gzip, snappy, lz4, zstd; acks=all, linger.ms=0)
 *      sends 4 records, one send + flush at a time so each batch holds one record: key
 *      "key-<codec>-<i>", value "value-<codec>-<i> " repeated 16 times, headers
 *      [("trace", "<codec>-<i>"), ("empty", ""), ("null", null)], record i on partition i % 3;
 *   3. a group consumer (group.id from $KRAB_GROUP_ID, default "krab-java-workload-<TOPIC>";
 *      group.protocol from $KRAB_GROUP_PROTOCOL, default classic) subscribes, reads them all back,
 *      checks every key, value and header against what was sent, and commits;
 *   4. Admin: lists the earliest and latest offsets and the group's committed offsets, describes
 *      the group (while its member is still in it), then deletes the group and the topic.
 * Any mismatch (a missing, duplicated or altered record, committed offsets other than the log
 * end offsets) fails the run. Prints one summary line:
 *
 *   {"topic", "group", "produced": {codec: n}, "consumed": n, "offsets": {"<p>": {"earliest",
 *    "latest", "committed"}}, "group_state", "members", "deleted": true, "seconds"}
 *
 *     workload BOOTSTRAP TOPIC
 */

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

final class Workload {
    private Workload() {}

    private static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    private static final int PER_CODEC = 4;
    private static final int PARTITIONS = 3;
    /** Bound on each Admin call and on reading the records back. */
    private static final long STEP_TIMEOUT_S = 15;

    /** One record as sent, to compare with what comes back. */
    private static final class Sent {
        final int partition;
        final byte[] value;
        final List<Header> headers;

        Sent(int partition, byte[] value, List<Header> headers) {
            this.partition = partition;
            this.value = value;
            this.headers = headers;
        }
    }

    /** What the group consumer left behind. */
    private static final class Consumed {
        /** Committed offset per partition. */
        final Map<Integer, Long> committed;
        /** The group as described while the consumer was still its member. */
        final ConsumerGroupDescription group;

        Consumed(Map<Integer, Long> committed, ConsumerGroupDescription group) {
            this.committed = committed;
            this.group = group;
        }
    }

    static int run(String[] args) throws Exception {
        if (args.length != 2) {
            throw new KrabJavaClient.UsageException("workload takes BOOTSTRAP TOPIC");
        }
        String bootstrap = args[0];
        String topic = args[1];
        String group = envOr("KRAB_GROUP_ID", "krab-java-workload-" + topic);
        String protocol = envOr("KRAB_GROUP_PROTOCOL", "classic");
        long t0 = System.nanoTime();

        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        adminProps.put(AdminClientConfig.CLIENT_ID_CONFIG, "krab-java-workload-admin");
        try (Admin admin = Admin.create(adminProps)) {
            NewTopic newTopic = new NewTopic(topic, PARTITIONS, (short) 1).configs(Map.of("min.insync.replicas", "1"));
            admin.createTopics(List.of(newTopic)).all().get(STEP_TIMEOUT_S, TimeUnit.SECONDS);

            Map<String, Sent> sent = new HashMap<>();
            Map<String, Object> produced = new LinkedHashMap<>();
            for (String codec : CODECS) {
                produce(bootstrap, topic, codec, sent);
                produced.put(codec, PER_CODEC);
            }

            Consumed consumed = consume(bootstrap, topic, group, protocol, sent, admin);
            Map<Integer, Long> committed = consumed.committed;
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < PARTITIONS; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> earliest =
                    listOffsets(admin, tps, OffsetSpec.earliest());
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> latest =
                    listOffsets(admin, tps, OffsetSpec.latest());
            Map<String, Object> offsets = new LinkedHashMap<>();
            long total = 0;
            for (TopicPartition tp : tps) {
                long lo = earliest.get(tp).offset();
                long hi = latest.get(tp).offset();
                Long c = committed.get(tp.partition());
                if (c == null || c != hi) {
                    throw new IllegalStateException("partition " + tp.partition() + ": committed " + c
                            + ", log end offset " + hi);
                }
                total += hi - lo;
                offsets.put(String.valueOf(tp.partition()), Json.obj("earliest", lo, "latest", hi, "committed", c));
            }
            if (total != (long) CODECS.length * PER_CODEC) {
                throw new IllegalStateException(total + " records in the log, " + CODECS.length * PER_CODEC + " sent");
            }
            ConsumerGroupDescription description = consumed.group;
            admin.deleteConsumerGroups(List.of(group)).all().get(STEP_TIMEOUT_S, TimeUnit.SECONDS);
            admin.deleteTopics(List.of(topic)).all().get(STEP_TIMEOUT_S, TimeUnit.SECONDS);

            System.out.println(Json.spaced(Json.obj(
                    "topic", topic,
                    "group", group,
                    "group_protocol", protocol,
                    "produced", produced,
                    "consumed", sent.size(),
                    "offsets", offsets,
                    "group_state", description.groupState().toString(),
                    "members", description.members().size(),
                    "deleted", true,
                    "seconds", Math.round((System.nanoTime() - t0) / 1e6) / 1e3)));
        }
        return 0;
    }

    private static void produce(String bootstrap, String topic, String codec, Map<String, Sent> sent) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "krab-java-workload-" + codec);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < PER_CODEC; i++) {
                String key = "key-" + codec + "-" + i;
                byte[] value = ("value-" + codec + "-" + i + " ").repeat(16).getBytes(StandardCharsets.UTF_8);
                List<Header> headers = List.of(
                        new RecordHeader("trace", (codec + "-" + i).getBytes(StandardCharsets.UTF_8)),
                        new RecordHeader("empty", new byte[0]),
                        new RecordHeader("null", (byte[]) null));
                int partition = i % PARTITIONS;
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(
                        topic, partition, null, key.getBytes(StandardCharsets.UTF_8), value, headers);
                var future = producer.send(record);
                producer.flush();
                RecordMetadata m = future.get();
                if (m.partition() != partition) {
                    throw new IllegalStateException(key + " went to partition " + m.partition());
                }
                sent.put(key, new Sent(partition, value, headers));
            }
        }
    }

    /** Reads every sent record back with a group member, commits; the committed offsets. */
    private static Consumed consume(String bootstrap, String topic, String group, String protocol,
            Map<String, Sent> sent, Admin admin) throws Exception {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "krab-java-workload-consumer");
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        Map<String, Boolean> seen = new HashMap<>();
        ConsumerGroupDescription description;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(STEP_TIMEOUT_S);
            while (seen.size() < sent.size()) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("read " + seen.size() + " of " + sent.size() + " records in "
                            + STEP_TIMEOUT_S + " s");
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    check(r, sent, seen);
                }
            }
            consumer.commitSync(Duration.ofSeconds(STEP_TIMEOUT_S));
            description = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                    .get(STEP_TIMEOUT_S, TimeUnit.SECONDS);
        }
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(STEP_TIMEOUT_S, TimeUnit.SECONDS);
        Map<Integer, Long> out = new HashMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet()) {
            if (e.getKey().topic().equals(topic) && e.getValue() != null) {
                out.put(e.getKey().partition(), e.getValue().offset());
            }
        }
        return new Consumed(out, description);
    }

    private static void check(ConsumerRecord<byte[], byte[]> r, Map<String, Sent> sent, Map<String, Boolean> seen) {
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        Sent s = key == null ? null : sent.get(key);
        String where = "partition " + r.partition() + " offset " + r.offset();
        if (s == null) {
            throw new IllegalStateException(where + ": unexpected key " + key);
        }
        if (seen.put(key, true) != null) {
            throw new IllegalStateException(where + ": " + key + " read twice");
        }
        if (r.partition() != s.partition || !Arrays.equals(r.value(), s.value)) {
            throw new IllegalStateException(where + ": " + key + " altered");
        }
        Header[] got = r.headers().toArray();
        if (got.length != s.headers.size()) {
            throw new IllegalStateException(where + ": " + key + " has " + got.length + " headers");
        }
        for (int i = 0; i < got.length; i++) {
            Header want = s.headers.get(i);
            if (!got[i].key().equals(want.key()) || !Arrays.equals(got[i].value(), want.value())) {
                throw new IllegalStateException(where + ": " + key + " header " + i + " altered");
            }
        }
    }

    private static Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> listOffsets(Admin admin,
            List<TopicPartition> tps, OffsetSpec spec) throws Exception {
        Map<TopicPartition, OffsetSpec> request = new HashMap<>();
        for (TopicPartition tp : tps) {
            request.put(tp, spec);
        }
        return admin.listOffsets(request).all().get(STEP_TIMEOUT_S, TimeUnit.SECONDS);
    }

    private static String envOr(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }
}
