"""Golden-traffic client for `cargo xtask capture`.

Runs inside target/brokers/venv (confluent-kafka, i.e. librdkafka) against the
capture proxy, so every request/response pair it causes is recorded. It must
stay deterministic: the same records, topics and group each run.

    python capture_client.py --bootstrap 127.0.0.1:PORT --out DIR

Writes DIR/produce_<codec>.expected.json: the records sent for that codec, in
order, as {"key": hex|null, "value": hex|null, "headers": [[key, hex|null]],
"timestamp": ms}.
"""

import argparse
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
EXTRA_TOPIC = "golden-extra"
GROUP = "krab-golden-group"
CLIENT_ID = "krab-golden"
BASE_TS = 1_700_000_000_000


def log(msg):
    print(f"[capture_client] {msg}", file=sys.stderr, flush=True)


def records_for(codec):
    """The records produced for one codec: keys, null keys/values, headers."""
    filler = (f"{codec} compressible payload " * 12).encode()
    return [
        {"key": b"key-0", "value": b"value-0", "headers": [("h1", b"v1")]},
        {"key": None, "value": b"value with a null key", "headers": []},
        {"key": b"key-2", "value": None, "headers": []},  # tombstone
        {
            "key": b"key-3",
            "value": filler,
            "headers": [("h-null", None), ("h-bin", b"\x00\x01\xfe\xff"), ("h1", b"")],
        },
        {"key": b"", "value": b"", "headers": []},  # empty, not null
        {
            "key": "clé-5".encode(),
            "value": "välue ünïcode ✓".encode(),
            "headers": [("ünï", "ç".encode())],
        },
        {"key": None, "value": None, "headers": [("only-header", b"x")]},
    ]


def hex_or_none(b):
    return None if b is None else b.hex()


def check(fs, what):
    for name, f in fs.items():
        try:
            f.result(timeout=15)
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise RuntimeError(f"{what} {name}: {err}") from e


def admin_phase(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": CLIENT_ID + "-admin"})
    # The codec topics were created by xtask through `tansu topic create`;
    # this one goes through CreateTopics so that API is captured.
    check(admin.create_topics([NewTopic(EXTRA_TOPIC, num_partitions=1, replication_factor=1)],
                              operation_timeout=10, request_timeout=15), "create")
    md = admin.list_topics(timeout=10)
    log(f"metadata: brokers={list(md.brokers.values())} topics={sorted(md.topics)}")
    try:
        fs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "golden-none")],
                                    request_timeout=10)
        for res, f in fs.items():
            log(f"describe_configs {res}: {len(f.result(timeout=15))} entries")
    except Exception as e:  # noqa: BLE001 - informative only
        log(f"describe_configs failed (ignored): {e!r}")
    try:
        desc = admin.describe_cluster(request_timeout=10).result(timeout=15)
        log(f"describe_cluster: cluster_id={desc.cluster_id} nodes={len(desc.nodes)}")
    except Exception as e:  # noqa: BLE001 - informative only
        log(f"describe_cluster failed (ignored): {e!r}")


def produce_phase(bootstrap, out):
    delivered = {"ok": 0, "err": []}

    def on_delivery(err, msg):
        if err is not None:
            delivered["err"].append(str(err))
        else:
            delivered["ok"] += 1

    total = 0
    for codec in CODECS:
        topic = f"golden-{codec}"
        p = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": f"{CLIENT_ID}-{codec}",
            "compression.type": codec,
            # All records of a codec must land in one batch: flush() below sends
            # them at once; the long linger keeps librdkafka from sending early.
            "linger.ms": 5000,
            "acks": "all",
            "enable.idempotence": False,
        })
        recs = records_for(codec)
        expected = []
        for i, r in enumerate(recs):
            ts = BASE_TS + i
            p.produce(topic, key=r["key"], value=r["value"], headers=r["headers"] or None,
                      partition=0, timestamp=ts, on_delivery=on_delivery)
            expected.append({
                "key": hex_or_none(r["key"]),
                "value": hex_or_none(r["value"]),
                "headers": [[k, hex_or_none(v)] for k, v in r["headers"]],
                "timestamp": ts,
            })
        left = p.flush(15)
        if left:
            raise RuntimeError(f"{codec}: {left} records not delivered")
        total += len(recs)
        with open(os.path.join(out, f"produce_{codec}.expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        log(f"produced {len(recs)} records to {topic} ({codec})")

    # An idempotent producer: InitProducerId and a batch with producer id/epoch/sequence.
    p = Producer({"bootstrap.servers": bootstrap, "client.id": f"{CLIENT_ID}-idempotent",
                  "enable.idempotence": True, "linger.ms": 100})
    for i in range(3):
        p.produce(EXTRA_TOPIC, key=f"idem-{i}".encode(), value=b"idempotent", partition=0,
                  timestamp=BASE_TS + 100 + i, on_delivery=on_delivery)
    if p.flush(15):
        raise RuntimeError("idempotent producer: not delivered")
    total += 3
    log("idempotent producer done")

    # acks=0: a Produce request that gets no response at all.
    p = Producer({"bootstrap.servers": bootstrap, "client.id": f"{CLIENT_ID}-acks0",
                  "acks": 0, "linger.ms": 100})
    p.produce(EXTRA_TOPIC, key=b"acks0", value=b"fire and forget", partition=0,
              timestamp=BASE_TS + 200, on_delivery=on_delivery)
    p.flush(15)
    log("acks=0 producer done")

    if delivered["err"]:
        raise RuntimeError(f"delivery errors: {delivered['err']}")
    return total


def consume_phase(bootstrap):
    topics = [f"golden-{c}" for c in CODECS]
    want = sum(len(records_for(c)) for c in CODECS)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "client.id": f"{CLIENT_ID}-consumer",
        "group.id": GROUP,
        # tansu holds a JoinGroup for session.timeout/2.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 300,
    })
    c.subscribe(topics)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(f"consume error: {m.error()}")
        got.append(m)
    if len(got) != want:
        raise RuntimeError(f"consumed {len(got)} of {want} records")
    log(f"consumed {len(got)} records")

    # Check what came back against what was sent (per topic, in order).
    for codec in CODECS:
        sent = records_for(codec)
        back = [m for m in got if m.topic() == f"golden-{codec}"]
        for r, m in zip(sent, back, strict=True):
            hdrs = [(k, v) for k, v in (m.headers() or [])]
            if (m.key(), m.value(), hdrs) != (r["key"], r["value"], r["headers"]):
                raise RuntimeError(f"{codec}: round trip mismatch {m.key()!r} {m.value()!r} {hdrs!r}")

    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(t, 0) for t in topics], timeout=10)
    log("committed: " + ", ".join(f"{tp.topic}@{tp.offset}" for tp in committed))
    lo, hi = c.get_watermark_offsets(TopicPartition("golden-none", 0), timeout=10)
    log(f"watermarks golden-none: low={lo} high={hi}")
    c.close()
    log("consumer closed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.monotonic()
    admin_phase(args.bootstrap)
    produce_phase(args.bootstrap, args.out)
    consume_phase(args.bootstrap)
    log(f"done in {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    main()
