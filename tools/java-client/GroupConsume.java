/*
 * GroupConsume: the `group-consume` subcommand, the Java side of `cargo xtask bench consume
 * --group`. A consumer group (classic protocol, range, auto-commit) reads a pre-filled topic from
 * the start with one member; once half the records are read a second member joins. Prints one
 * JSON line: records/s over the read (from the first record), the rebalance time (from the second
 * member's start until it has yielded records of every partition it reads), the re-reads, and
 * the JVM's CPU.
 *
 *     group-consume BOOTSTRAP TOPIC PARTITIONS RECORDS TIMEOUT_S
 */

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Properties;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

final class GroupConsume {
    private GroupConsume() {}

    /** What both members read, under its own lock. */
    static final class Progress {
        final BitSet[] seen;
        final int partitions;
        long distinct;
        long reads;
        long joinedNanos = -1;
        long firstNanos = -1;
        /** When the joining member first yielded each partition, in ms after its start. */
        final Map<Integer, Double> moved = new HashMap<>();

        Progress(int partitions) {
            this.partitions = partitions;
            seen = new BitSet[partitions];
            for (int p = 0; p < partitions; p++) {
                seen[p] = new BitSet();
            }
        }

        synchronized void record(int member, int partition, long offset) {
            long now = System.nanoTime();
            if (firstNanos < 0) {
                firstNanos = now;
            }
            if (!seen[partition].get((int) offset)) {
                seen[partition].set((int) offset);
                distinct++;
            }
            reads++;
            if (member == 1 && joinedNanos >= 0) {
                moved.putIfAbsent(partition, (now - joinedNanos) / 1e6);
            }
        }

        synchronized double rebalanceMs() {
            return moved.values().stream().mapToDouble(Double::doubleValue).max().orElse(Double.NaN);
        }

        synchronized long distinct() {
            return distinct;
        }
    }

    static int run(String[] args) throws Exception {
        if (args.length != 5) {
            throw new KrabJavaClient.UsageException("group-consume needs BOOTSTRAP TOPIC PARTITIONS RECORDS TIMEOUT_S");
        }
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = KrabJavaClient.positiveInt(args, 2, "PARTITIONS");
        long records = Long.parseLong(args[3]);
        long deadline = System.nanoTime() + Long.parseLong(args[4]) * 1_000_000_000L;
        String group = "krab-bench-java-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
        Progress progress = new Progress(partitions);
        AtomicReference<Throwable> failed = new AtomicReference<>();
        long t0 = System.nanoTime();
        Thread first = member(0, bootstrap, topic, group, "java-group-0", records, deadline, progress, failed);
        while (progress.distinct() < records / 2) {
            if (System.nanoTime() > deadline || failed.get() != null) {
                throw new IllegalStateException("read " + progress.distinct() + " of " + records, failed.get());
            }
            Thread.sleep(5);
        }
        synchronized (progress) {
            progress.joinedNanos = System.nanoTime();
        }
        Thread second = member(1, bootstrap, topic, group, "java-group-1", records, deadline, progress, failed);
        first.join();
        second.join();
        if (failed.get() != null) {
            throw new IllegalStateException("a member failed", failed.get());
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        double reading = (System.nanoTime() - progress.firstNanos) / 1e9;
        double cpu = ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime() / 1e9;
        System.out.println(Json.compact(Json.obj(
                "client", "java-group",
                "workload", "consume-group",
                "records", records,
                "seconds", seconds,
                "records_per_s", records / reading,
                "rebalance_ms", progress.rebalanceMs(),
                "moved", progress.moved.size(),
                "reread", progress.reads - progress.distinct,
                "cpu_s", cpu,
                "cpu_us_per_record", cpu * 1e6 / records,
                "note", "2 Java KafkaConsumers in one group (classic, range, auto-commit), poll(100 ms), one thread each; "
                        + "the second joins at half; CPU is the whole JVM's, start-up and JIT included")));
        return 0;
    }

    private static Thread member(int index, String bootstrap, String topic, String group, String name, long records, long deadline,
            Progress progress, AtomicReference<Throwable> failed) {
        Thread t = new Thread(() -> {
            Properties props = new Properties();
            props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                    "org.apache.kafka.clients.consumer.RangeAssignor");
            props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
                consumer.subscribe(List.of(topic));
                while (progress.distinct() < records) {
                    if (System.nanoTime() > deadline) {
                        throw new IllegalStateException("not read in time");
                    }
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                        progress.record(index, r.partition(), r.offset());
                    }
                }
            } catch (Throwable e) {
                failed.compareAndSet(null, e);
            }
        }, name);
        t.start();
        return t;
    }
}
