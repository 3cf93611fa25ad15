"""Reads a whole topic back with confluent-kafka (librdkafka) for `cargo xtask it`.

Runs inside target/brokers/venv. Assigns every partition from the beginning (no group
membership: the Python wrapper insists on a group.id, but `assign` never joins the group and
nothing is committed) and reads each partition up to the high watermark of its Fetch responses:
librdkafka reports a partition EOF when the next offset reaches that watermark. The Fetch
watermark is the one to trust on tansu, whose ListOffsets(LATEST) is wrong on memory storage.

    python consume_check.py BOOTSTRAP TOPIC PARTITIONS [TIMEOUT_S]

Writes one JSON object per line to stdout:
  {"p": partition, "o": offset, "ts": ms, "tt": timestamp type (1 create, 2 log append),
   "k": hex|null, "v": hex|null, "h": [[name, hex|null], ...]}      one per record, in fetch order
  {"end": {partition: {"eof": fetch high watermark, "lo": ListOffsets earliest,
                       "hi": ListOffsets latest}}}                 last line
Exits 1 (with the reason on stderr) on a consumer error or when the timeout passes first.
"""

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def hexed(b):
    return None if b is None else b.hex()


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"krab-it-consume-check-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # Short fetch long-polls: an idle partition reaches EOF sooner.
            "fetch.wait.max.ms": 50,
            "client.id": "krab-it-consume-check",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(count)])
    eof = {}
    out = sys.stdout
    deadline = time.monotonic() + timeout
    while len(eof) < count:
        if time.monotonic() > deadline:
            missing = sorted(set(range(count)) - set(eof))
            print(f"timed out after {timeout}s; no EOF yet on partitions {missing}", file=sys.stderr)
            return 1
        for msg in consumer.consume(num_messages=10000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # At EOF, the reported offset is the Fetch high watermark.
                    eof[msg.partition()] = msg.offset()
                    continue
                print(f"consumer error on partition {msg.partition()}: {err}", file=sys.stderr)
                return 1
            tt, ts = msg.timestamp()
            headers = msg.headers() or []
            rec = {
                "p": msg.partition(),
                "o": msg.offset(),
                "ts": ts,
                "tt": tt,
                "k": hexed(msg.key()),
                "v": hexed(msg.value()),
                "h": [[name, hexed(value)] for name, value in headers],
            }
            out.write(json.dumps(rec, separators=(",", ":")))
            out.write("\n")
    # Stop fetching first: tansu answers one request at a time per connection, so a ListOffsets
    # would wait behind each fetch long-poll.
    consumer.unassign()
    end = {}
    for p in range(count):
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
        end[str(p)] = {"eof": eof[p], "lo": lo, "hi": hi}
    out.write(json.dumps({"end": end}))
    out.write("\n")
    out.flush()
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
