/*
 * Produce: the `produce` subcommand, the Java client as a writer of records chosen by the caller
 * (krab's consumer then reads them back). Reads one record per line from stdin:
 *
 *   PARTITION TIMESTAMP KEY VALUE NHEADERS [HEADER_NAME HEADER_VALUE]...
 *
 * separated by single spaces, where every byte field is `-` for null or `x` followed by its
 * lowercase hex (so `x` alone is empty), and header names are the hex of their UTF-8 bytes in the
 * same form (never `-`). TIMESTAMP is the record's CreateTime in ms. Records are sent in input
 * order with compression.type CODEC (none, gzip, snappy, lz4, zstd), acks=all, idempotence on,
 * linger.ms=20, so that records of one partition share compressed batches. Prints one line per
 * record, in input order, once every send is acknowledged:
 *
 *   {"i": input line index, "p": partition, "o": offset, "ts": timestamp}
 *
 *     produce BOOTSTRAP TOPIC CODEC
 */

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;

final class Produce {
    private Produce() {}

    static int run(String[] args) throws Exception {
        if (args.length != 3) {
            throw new KrabJavaClient.UsageException("produce takes BOOTSTRAP TOPIC CODEC");
        }
        String bootstrap = args[0];
        String topic = args[1];
        String codec = args[2];
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (!line.isBlank()) {
                records.add(parse(topic, line, records.size()));
            }
        }
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "krab-java-produce");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (ProducerRecord<byte[], byte[]> r : records) {
                sent.add(producer.send(r));
            }
            producer.flush();
            for (int i = 0; i < sent.size(); i++) {
                RecordMetadata m = sent.get(i).get();
                System.out.println(Json.spaced(Json.obj("i", i, "p", m.partition(), "o", m.offset(), "ts",
                        m.timestamp())));
            }
        }
        return 0;
    }

    private static ProducerRecord<byte[], byte[]> parse(String topic, String line, int index)
            throws KrabJavaClient.UsageException {
        String[] f = line.split(" ", -1);
        try {
            if (f.length < 5) {
                throw new KrabJavaClient.UsageException("line " + index + ": too few fields");
            }
            int partition = Integer.parseInt(f[0]);
            long timestamp = Long.parseLong(f[1]);
            byte[] key = bytes(f[2]);
            byte[] value = bytes(f[3]);
            int n = Integer.parseInt(f[4]);
            if (n < 0 || f.length != 5 + 2 * n) {
                throw new KrabJavaClient.UsageException("line " + index + ": " + n + " headers, "
                        + f.length + " fields");
            }
            List<Header> headers = new ArrayList<>();
            for (int h = 0; h < n; h++) {
                byte[] name = bytes(f[5 + 2 * h]);
                if (name == null) {
                    throw new KrabJavaClient.UsageException("line " + index + ": a null header name");
                }
                headers.add(new RecordHeader(new String(name, StandardCharsets.UTF_8), bytes(f[6 + 2 * h])));
            }
            return new ProducerRecord<>(topic, partition, timestamp, key, value, headers);
        } catch (NumberFormatException e) {
            throw new KrabJavaClient.UsageException("line " + index + ": " + e.getMessage());
        }
    }

    /** `-` is null; `x<hex>` the bytes. */
    private static byte[] bytes(String field) throws KrabJavaClient.UsageException {
        if (field.equals("-")) {
            return null;
        }
        if (!field.startsWith("x") || field.length() % 2 != 1) {
            throw new KrabJavaClient.UsageException("bad byte field `" + field + "`");
        }
        byte[] out = new byte[(field.length() - 1) / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(field.substring(1 + 2 * i, 3 + 2 * i), 16);
        }
        return out;
    }
}
