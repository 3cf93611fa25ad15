/*
 * KeyPartitions: the `key-partitions` subcommand. Produces one record per KEY (value = the key's
 * UTF-8 bytes, acks=all) with the Java producer's default partitioner, and prints where each
 * landed, from its RecordMetadata, in the order of the arguments:
 *
 *   {"k": key, "p": partition, "o": offset}
 *
 * It is the reference for keyed partitioning (murmur2 of the key bytes over the topic's
 * partition count).
 *
 *     key-partitions BOOTSTRAP TOPIC KEY...
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

final class KeyPartitions {
    private KeyPartitions() {}

    static int run(String[] args) throws Exception {
        if (args.length < 3) {
            throw new KrabJavaClient.UsageException("key-partitions takes BOOTSTRAP TOPIC KEY...");
        }
        String topic = args[1];
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "krab-java-key-partitions");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 2; i < args.length; i++) {
                byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
                sent.add(producer.send(new ProducerRecord<>(topic, key, key)));
            }
            producer.flush();
            for (int i = 2; i < args.length; i++) {
                RecordMetadata m = sent.get(i - 2).get();
                System.out.println(Json.spaced(Json.obj("k", args[i], "p", m.partition(), "o", m.offset())));
            }
        }
        return 0;
    }
}
