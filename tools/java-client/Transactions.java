/*
 * Transactions: the `transactions` subcommand, the reference traffic for a consumer's
 * read_committed. A transactional producer (transactional.id from $KRAB_TRANSACTIONAL_ID, or a
 * generated one) writes N transactions, committing the even ones (0, 2, ...) and aborting the
 * odd ones. Transaction t holds 2 * PARTITIONS records, record i on partition i % PARTITIONS,
 * valued "c-<t>-<i>" when committed and "a-<t>-<i>" when aborted. Halfway through each
 * transaction (after its first PARTITIONS records are acknowledged), a second, plain producer
 * writes one non-transactional record "p-<t>" to partition t % PARTITIONS and waits for it, so
 * every plain record sits between records of an open transaction. Keys are null. Prints one line:
 *
 *   {"committed": records committed, "aborted": records aborted, "plain": plain records, "open": 0}
 *
 * With $KRAB_LEAVE_OPEN=1, transaction N follows (same shape, its plain record "p-<N>" too, values
 * "o-<N>-<i>") and is left open: once its records are acknowledged the line above is printed (with
 * "open": 2 * PARTITIONS), and the process waits for stdin to close, then halts without committing
 * or aborting (a graceful close would abort). The transaction stays open until the coordinator
 * times it out or a producer with the same transactional.id initializes (which aborts it).
 *
 * The topic must exist with at least PARTITIONS partitions.
 *
 *     transactions BOOTSTRAP TOPIC PARTITIONS N
 */

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

final class Transactions {
    private Transactions() {}

    static int run(String[] args) throws Exception {
        if (args.length != 4) {
            throw new KrabJavaClient.UsageException("transactions takes BOOTSTRAP TOPIC PARTITIONS N");
        }
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = KrabJavaClient.positiveInt(args, 2, "PARTITIONS");
        int n = KrabJavaClient.positiveInt(args, 3, "N");
        String id = System.getenv("KRAB_TRANSACTIONAL_ID");
        if (id == null || id.isEmpty()) {
            id = "krab-java-transactions-" + System.currentTimeMillis() + "-" + ProcessHandle.current().pid();
        }

        Properties txnProps = producerProps(bootstrap, "krab-java-transactions");
        txnProps.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        Properties plainProps = producerProps(bootstrap, "krab-java-plain");
        boolean leaveOpen = "1".equals(System.getenv("KRAB_LEAVE_OPEN"));
        long committed = 0;
        long aborted = 0;
        long plain = 0;
        long open = 0;
        try (KafkaProducer<byte[], byte[]> txn = new KafkaProducer<>(txnProps);
                KafkaProducer<byte[], byte[]> other = new KafkaProducer<>(plainProps)) {
            txn.initTransactions();
            for (int t = 0; t < n + (leaveOpen ? 1 : 0); t++) {
                boolean hang = t == n;
                boolean commit = t % 2 == 0;
                String prefix = hang ? "o-" : commit ? "c-" : "a-";
                txn.beginTransaction();
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < 2 * partitions; i++) {
                    if (i == partitions) {
                        // The first half is in the log: the plain record lands after it.
                        txn.flush();
                        other.send(record(topic, t % partitions, "p-" + t)).get();
                        plain++;
                    }
                    sent.add(txn.send(record(topic, i % partitions, prefix + t + "-" + i)));
                }
                txn.flush();
                // Every record, aborted ones too, must be in the log before the end marker.
                for (Future<RecordMetadata> f : sent) {
                    f.get();
                }
                if (hang) {
                    open += 2L * partitions;
                    System.out.println(Json.spaced(Json.obj("committed", committed, "aborted", aborted, "plain",
                            plain, "open", open)));
                    System.out.flush();
                    while (System.in.read() >= 0) {
                        // Wait for stdin to close.
                    }
                    Runtime.getRuntime().halt(0);
                } else if (commit) {
                    txn.commitTransaction();
                    committed += 2L * partitions;
                } else {
                    txn.abortTransaction();
                    aborted += 2L * partitions;
                }
            }
        }
        System.out.println(Json.spaced(Json.obj("committed", committed, "aborted", aborted, "plain", plain, "open",
                open)));
        return 0;
    }

    private static Properties producerProps(String bootstrap, String clientId) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return props;
    }

    private static ProducerRecord<byte[], byte[]> record(String topic, int partition, String value) {
        return new ProducerRecord<>(topic, partition, null, value.getBytes(StandardCharsets.UTF_8));
    }
}
