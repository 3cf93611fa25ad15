"""A confluent-kafka (librdkafka) member of a consumer group, for `kafka/group-mixed`.

usage: group_reader.py BOOTSTRAP TOPIC GROUP CLIENT_ID STRATEGY

Subscribes to TOPIC in GROUP (classic protocol with partition.assignment.strategy STRATEGY, or
KIP-848's group.protocol=consumer when STRATEGY is `consumer`; auto-commit) and reads, about 2,000 records/s. Prints one JSON line per rebalance callback:
{"assigned": [partitions]} or {"revoked": [partitions]}. A line `status` on stdin prints
{"owned": [partitions], "read": N}; the end of stdin closes the consumer (committing, leaving the
group) and prints {"reads": [[partition, offset], ...]}.
"""

import json
import sys
import threading
import time

from confluent_kafka import Consumer

bootstrap, topic, group, client_id, strategy = sys.argv[1:6]
lock = threading.Lock()
owned = set()
reads = []
done = threading.Event()
status_asked = threading.Event()


def say(obj):
    print(json.dumps(obj), flush=True)


def on_assign(consumer, partitions):
    with lock:
        owned.update(p.partition for p in partitions)
    say({"assigned": sorted(p.partition for p in partitions)})


def on_revoke(consumer, partitions):
    with lock:
        owned.difference_update(p.partition for p in partitions)
    say({"revoked": sorted(p.partition for p in partitions)})


def stdin_reader():
    for line in sys.stdin:
        if line.strip() == "status":
            status_asked.set()
    done.set()


config = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "client.id": client_id,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": True,
    "auto.commit.interval.ms": 1000,
}
if strategy == "consumer":
    # KIP-848: the coordinator assigns; the classic settings are refused with it.
    config["group.protocol"] = "consumer"
else:
    config["partition.assignment.strategy"] = strategy
    config["session.timeout.ms"] = 10000
c = Consumer(config)
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
threading.Thread(target=stdin_reader, daemon=True).start()
while not done.is_set():
    msgs = c.consume(num_messages=20, timeout=0.05)
    for m in msgs:
        if m.error():
            continue
        reads.append([m.partition(), m.offset()])
    if status_asked.is_set():
        status_asked.clear()
        with lock:
            say({"owned": sorted(owned), "read": len(reads)})
    time.sleep(0.01)
c.close()
say({"reads": reads})
