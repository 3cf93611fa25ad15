"""A group of reference consumers (confluent-kafka) for `kafka/admin`.

usage: group_members.py BOOTSTRAP TOPIC GROUP MEMBERS COUNT

Starts MEMBERS consumers in GROUP subscribed to TOPIC (classic protocol, range assignor,
manual commits), waits until every member has partitions and prints `JOINED`; then consumes
exactly COUNT records among them, commits each partition's next offset from the member that
read it, and prints one JSON line: {"committed": {partition: offset}, "members":
{client_id: [partitions]}}. It stays in the group until stdin closes, then closes the
consumers (leaving the group) and prints `CLOSED`.
"""

import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, group, members, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
consumers = []
for i in range(members):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"ref-{i}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10000,
    })
    c.subscribe([topic])
    consumers.append(c)

deadline = time.time() + 60
while not all(c.assignment() for c in consumers):
    if time.time() > deadline:
        sys.exit("the group did not assign every member a partition within 60 s")
    for c in consumers:
        m = c.poll(0.1)
        if m is not None:
            sys.exit(f"a record before the topic was written: {m.partition()}@{m.offset()}")
print("JOINED", flush=True)

last = {}
owner = {}
seen = 0
deadline = time.time() + 120
while seen < count:
    if time.time() > deadline:
        sys.exit(f"read {seen} of {count} records within 120 s")
    for c in consumers:
        if seen >= count:
            break
        m = c.poll(0.05)
        if m is None:
            continue
        if m.error():
            sys.exit(f"consume error: {m.error()}")
        last[m.partition()] = m.offset()
        owner[m.partition()] = c
        seen += 1

for p, offset in last.items():
    owner[p].commit(offsets=[TopicPartition(topic, p, offset + 1)], asynchronous=False)
assigned = {f"ref-{i}": sorted(tp.partition for tp in c.assignment()) for i, c in enumerate(consumers)}
print(json.dumps({"committed": {str(p): o + 1 for p, o in sorted(last.items())}, "members": assigned}), flush=True)

# Stay in the group (librdkafka heartbeats in the background) until told to leave.
sys.stdin.read()
for c in consumers:
    c.close()
print("CLOSED", flush=True)
