"""Reads a whole topic back for `cargo xtask demo`, with confluent-kafka (librdkafka).

usage: demo_readback.py BOOTSTRAP TOPIC PARTITIONS [TIMEOUT_S]

Reads every partition from its low to its high watermark (taken at start) and prints:

    W <partition> <low> <high>        one line per partition, first
    R <partition> <offset> <value>    one line per record (value decoded as ASCII)
    DONE <records>                    last

Exits 1 (with a message on stderr) if the high watermarks are not reached within the timeout.
"""

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def main() -> int:
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"krab-demo-readback-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
        }
    )
    out = sys.stdout
    remaining = {}
    for p in range(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        out.write(f"W {p} {low} {high}\n")
        if high > low:
            remaining[p] = high
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
    deadline = time.monotonic() + timeout
    count = 0
    lines = []
    while remaining:
        if time.monotonic() > deadline:
            print(f"readback: high watermarks not reached within {timeout}s: {remaining}", file=sys.stderr)
            return 1
        for msg in consumer.consume(num_messages=10000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                print(f"readback: {err}", file=sys.stderr)
                return 1
            p, offset = msg.partition(), msg.offset()
            high = remaining.get(p)
            if high is None or offset >= high:
                continue
            value = msg.value()
            lines.append(f"R {p} {offset} {value.decode('ascii', 'replace') if value is not None else '-'}\n")
            count += 1
            if offset + 1 >= high:
                del remaining[p]
        if len(lines) >= 50000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))
    out.write(f"DONE {count}\n")
    out.flush()
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
