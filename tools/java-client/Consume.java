/*
 * Consume: the `consume` subcommand. Reads every partition of a topic from the beginning up to
 * the end offsets taken at the start (the high watermark, or the last stable offset under
 * read_committed) with the Java consumer: manual assign, no group, no commits, check.crcs=true.
 * Prints the format of xtask/scripts/consume_check.py:
 *
 *   {"p":partition,"o":offset,"ts":ms,"tt":1 create|2 log append,"k":hex|null,"v":hex|null,
 *    "h":[[name,hex|null],...]}                                   one per record, in fetch order
 *   {"end": {"<p>": {"eof": end offset used, "lo": beginning offset, "hi": end offset}}}   last
 *
 * "lo" and "hi" are listed again after the read (under the same isolation level), so a
 * partition written to meanwhile shows hi > eof. Records at or past a partition's end offset
 * are not printed. Exits 1 with the reason on stderr when TIMEOUT_S passes first.
 *
 *     consume BOOTSTRAP TOPIC PARTITIONS TIMEOUT_S [read_uncommitted|read_committed]
 */

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

final class Consume {
    private Consume() {}

    static int run(String[] args) throws Exception {
        if (args.length < 4 || args.length > 5) {
            throw new KrabJavaClient.UsageException(
                    "consume takes BOOTSTRAP TOPIC PARTITIONS TIMEOUT_S [read_uncommitted|read_committed]");
        }
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = KrabJavaClient.positiveInt(args, 2, "PARTITIONS");
        double timeoutS;
        try {
            timeoutS = Double.parseDouble(args[3]);
        } catch (NumberFormatException e) {
            throw new KrabJavaClient.UsageException("TIMEOUT_S must be a number, got `" + args[3] + "`");
        }
        if (!(timeoutS > 0)) {
            throw new KrabJavaClient.UsageException("TIMEOUT_S must be positive");
        }
        String isolation = args.length == 5 ? args[4] : "read_uncommitted";
        if (!isolation.equals("read_uncommitted") && !isolation.equals("read_committed")) {
            throw new KrabJavaClient.UsageException("isolation must be read_uncommitted or read_committed");
        }
        long deadline = System.nanoTime() + (long) (timeoutS * 1e9);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "krab-java-consume");
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        props.put(ConsumerConfig.CHECK_CRCS_CONFIG, "true");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // Short fetch long-polls: the last records of a partition arrive sooner.
        props.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "50");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        PrintStream out = new PrintStream(
                new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false,
                StandardCharsets.UTF_8);
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end;
            try {
                end = consumer.endOffsets(tps, remaining(deadline));
            } catch (TimeoutException e) {
                System.err.println("timed out after " + timeoutS + "s listing the end offsets of " + topic
                        + " partitions 0.." + (partitions - 1) + " (does it have " + partitions + " partitions?): "
                        + e.getMessage());
                return 1;
            }
            for (TopicPartition tp : tps) {
                if (end.get(tp) == null) {
                    throw new IllegalStateException("no end offset for " + tp);
                }
            }
            List<TopicPartition> open = new ArrayList<>();
            List<TopicPartition> done = new ArrayList<>();
            for (TopicPartition tp : tps) {
                (consumer.position(tp, remaining(deadline)) >= end.get(tp) ? done : open).add(tp);
            }
            consumer.pause(done);
            while (!open.isEmpty()) {
                if (System.nanoTime() > deadline) {
                    TreeSet<Integer> missing = new TreeSet<>();
                    for (TopicPartition tp : open) {
                        missing.add(tp.partition());
                    }
                    out.flush();
                    System.err.println("timed out after " + timeoutS + "s; end offsets not reached on partitions "
                            + missing);
                    return 1;
                }
                ConsumerRecords<byte[], byte[]> records =
                        consumer.poll(Duration.ofMillis(Math.min(200, remaining(deadline).toMillis() + 1)));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) {
                        out.println(Json.compact(record(r)));
                    }
                }
                List<TopicPartition> reached = new ArrayList<>();
                for (TopicPartition tp : open) {
                    if (consumer.position(tp, remaining(deadline)) >= end.get(tp)) {
                        reached.add(tp);
                    }
                }
                open.removeAll(reached);
                consumer.pause(reached);
            }
            Map<TopicPartition, Long> lo = consumer.beginningOffsets(tps, remaining(deadline));
            Map<TopicPartition, Long> hi = consumer.endOffsets(tps, remaining(deadline));
            Map<String, Object> extents = new LinkedHashMap<>();
            for (TopicPartition tp : tps) {
                extents.put(String.valueOf(tp.partition()),
                        Json.obj("eof", end.get(tp), "lo", lo.get(tp), "hi", hi.get(tp)));
            }
            out.println(Json.spaced(Json.obj("end", extents)));
        } finally {
            out.flush();
        }
        return 0;
    }

    /** Time left until {@code deadline}, at least 1 ms. */
    private static Duration remaining(long deadline) {
        return Duration.ofNanos(Math.max(1_000_000L, deadline - System.nanoTime()));
    }

    private static Map<String, Object> record(ConsumerRecord<byte[], byte[]> r) {
        List<Object> headers = new ArrayList<>();
        for (Header h : r.headers()) {
            List<Object> pair = new ArrayList<>(2);
            pair.add(h.key());
            pair.add(h.value());
            headers.add(pair);
        }
        return Json.obj("p", r.partition(), "o", r.offset(), "ts", r.timestamp(), "tt", timestampType(r.timestampType()),
                "k", r.key(), "v", r.value(), "h", headers);
    }

    /** librdkafka's numbering: 0 not available, 1 create time, 2 log-append time. */
    private static int timestampType(TimestampType t) {
        switch (t) {
            case CREATE_TIME:
                return 1;
            case LOG_APPEND_TIME:
                return 2;
            default:
                return 0;
        }
    }
}
