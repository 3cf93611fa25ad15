/*
 * GroupConsume: the `group-consume` subcommand, the Java side of `cargo xtask bench consume
 * --group`, in two phases like krab-bench's consume-group: one member (classic protocol, range,
 * auto-commit) reads the pre-filled topic (the backlog): records/s from its first record to the
 * last of the backlog, and CPU per record over that phase; then records are written at a steady
 * rate (a KafkaProducer in this JVM) and a second member joins: the time from the join until it
 * has yielded records of every partition it was assigned. Prints one JSON line.
 *
 *     group-consume BOOTSTRAP TOPIC PARTITIONS RECORDS TIMEOUT_S
 */

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

final class GroupConsume {
    private GroupConsume() {}

    /** Records written per second while the second member joins. */
    static final int LIVE_RATE = 20_000;

    static double cpuSeconds() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime() / 1e9;
    }

    /** What both members read, under its own lock. */
    static final class Progress {
        final BitSet[] seen;
        final long[] backlogPerPartition;
        final long records;
        long backlog;
        long firstNanos = -1;
        long doneNanos = -1;
        double backlogCpu = Double.NaN;
        long joinedNanos = -1;
        Set<Integer> assigned = new HashSet<>();
        final Map<Integer, Double> moved = new HashMap<>();

        Progress(int partitions, long records) {
            this.records = records;
            seen = new BitSet[partitions];
            backlogPerPartition = new long[partitions];
            for (int p = 0; p < partitions; p++) {
                seen[p] = new BitSet();
                backlogPerPartition[p] = records / partitions + (p < records % partitions ? 1 : 0);
            }
        }

        synchronized void record(int member, int partition, long offset) {
            long now = System.nanoTime();
            if (firstNanos < 0) {
                firstNanos = now;
            }
            if (offset < backlogPerPartition[partition] && !seen[partition].get((int) offset)) {
                seen[partition].set((int) offset);
                backlog++;
                if (backlog == records) {
                    doneNanos = now;
                    backlogCpu = cpuSeconds();
                }
            }
            if (member == 1 && joinedNanos >= 0) {
                moved.putIfAbsent(partition, (now - joinedNanos) / 1e6);
            }
        }

        synchronized boolean backlogRead() {
            return doneNanos >= 0;
        }

        /** The rebalance time in ms, once the joining member yielded every partition it owns; else -1. */
        synchronized double rebalanced() {
            if (assigned.isEmpty() || !moved.keySet().containsAll(assigned)) {
                return -1;
            }
            double worst = 0;
            for (int p : assigned) {
                worst = Math.max(worst, moved.get(p));
            }
            return worst;
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
        double cpu0 = cpuSeconds();
        Progress progress = new Progress(partitions, records);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> failed = new AtomicReference<>();
        Thread first = member(0, bootstrap, topic, group, "java-group-0", stop, progress, failed);
        while (!progress.backlogRead()) {
            check(deadline, failed, "the backlog was not read in time");
            Thread.sleep(5);
        }
        Thread writer = writer(bootstrap, topic, partitions, stop, failed);
        Thread.sleep(1000);
        synchronized (progress) {
            progress.joinedNanos = System.nanoTime();
        }
        Thread second = member(1, bootstrap, topic, group, "java-group-1", stop, progress, failed);
        double rebalance;
        while ((rebalance = progress.rebalanced()) < 0) {
            check(deadline, failed, "the joining member did not yield all its partitions in time");
            Thread.sleep(5);
        }
        stop.set(true);
        first.join();
        second.join();
        writer.join();
        if (failed.get() != null) {
            throw new IllegalStateException("a member failed", failed.get());
        }
        double cpu = progress.backlogCpu - cpu0;
        System.out.println(Json.compact(Json.obj(
                "client", "java-group",
                "workload", "consume-group",
                "records", records,
                "records_per_s", records / ((progress.doneNanos - progress.firstNanos) / 1e9),
                "rebalance_ms", rebalance,
                "moved", progress.assigned.size(),
                "cpu_s", cpu,
                "cpu_us_per_record", cpu * 1e6 / records,
                "note", "2 Java KafkaConsumers in one group (classic, range, auto-commit), poll(100 ms), one thread each; "
                        + "the second joins while " + LIVE_RATE + " records/s are written; CPU is the whole JVM's over "
                        + "the backlog, start-up and JIT included")));
        return 0;
    }

    private static void check(long deadline, AtomicReference<Throwable> failed, String what) {
        if (failed.get() != null) {
            throw new IllegalStateException("a member failed", failed.get());
        }
        if (System.nanoTime() > deadline) {
            throw new IllegalStateException(what);
        }
    }

    private static Thread writer(String bootstrap, String topic, int partitions, AtomicBoolean stop,
            AtomicReference<Throwable> failed) {
        Thread t = new Thread(() -> {
            Properties props = new Properties();
            props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
                long start = System.nanoTime();
                long sent = 0;
                byte[] value = "live".getBytes(java.nio.charset.StandardCharsets.UTF_8);
                while (!stop.get()) {
                    long due = (long) ((System.nanoTime() - start) / 1e9 * LIVE_RATE);
                    for (; sent < due; sent++) {
                        producer.send(new ProducerRecord<>(topic, (int) (sent % partitions), null, value));
                    }
                    Thread.sleep(5);
                }
            } catch (Throwable e) {
                failed.compareAndSet(null, e);
            }
        }, "live-writer");
        t.start();
        return t;
    }

    private static Thread member(int index, String bootstrap, String topic, String group, String name, AtomicBoolean stop,
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
                while (!stop.get()) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                        progress.record(index, r.partition(), r.offset());
                    }
                    if (index == 1) {
                        Set<Integer> owned = new HashSet<>();
                        for (TopicPartition tp : consumer.assignment()) {
                            owned.add(tp.partition());
                        }
                        synchronized (progress) {
                            progress.assigned = owned;
                        }
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
