"""Writes records chosen by `cargo xtask it` with confluent-kafka (librdkafka) to one topic.

Runs inside target/brokers/venv.

    python produce_interop.py BOOTSTRAP TOPIC CODEC [legacy] [mock]

Reads one record per line from stdin (until a line `.` or the end of input), in the format of
the Java client's `produce` subcommand:

    PARTITION TIMESTAMP KEY VALUE NHEADERS [HEADER_NAME HEADER_VALUE]...

(single spaces; each byte field `-` for null or `x` + lowercase hex, so `x` alone is empty;
header names are hex of UTF-8, never null). Records go out in input order with compression.codec
CODEC, linger.ms=20 (records of a partition share compressed batches), acks=all.

`legacy` makes librdkafka speak to a 0.9 broker: no ApiVersions request,
broker.version.fallback=0.9.0, so Produce v1 with MessageSet v0 (magic 0), no idempotence,
message.timeout.ms=6000. (A fallback of 0.10.0 or later, which would mean MessageSet v1, makes
librdkafka send ApiVersions anyway, and then it writes record batches v2.) Headers cannot be
written then. `mock` ignores BOOTSTRAP and writes to librdkafka's own in-process mock cluster
(test.mock.num.brokers=1); once the delivery reports are printed, it prints
{"serving": "host:port"} (the mock's broker) and serves until stdin closes, so that another
client can read the records back.

Prints one JSON object per record, in input order, once every delivery report is in:
  {"i": index, "p": partition, "o": offset, "ts": timestamp}   delivered
  {"i": index, "err": "librdkafka error name: text"}           failed
"""

import json
import sys

from confluent_kafka import Producer


def field(s):
    if s == "-":
        return None
    if not s.startswith("x"):
        raise ValueError(f"bad byte field {s!r}")
    return bytes.fromhex(s[1:])


def parse(line):
    f = line.split(" ")
    partition, timestamp, key, value, n = int(f[0]), int(f[1]), field(f[2]), field(f[3]), int(f[4])
    if len(f) != 5 + 2 * n:
        raise ValueError(f"{n} headers but {len(f)} fields")
    headers = [(field(f[5 + 2 * h]).decode("utf-8"), field(f[6 + 2 * h])) for h in range(n)]
    return partition, timestamp, key, value, headers


def main():
    bootstrap, topic, codec = sys.argv[1], sys.argv[2], sys.argv[3]
    flags = set(sys.argv[4:])
    records = []
    for line in sys.stdin:
        line = line.strip()
        if line == ".":
            break
        if line:
            records.append(parse(line))
    config = {
        "bootstrap.servers": bootstrap,
        "client.id": "krab-it-produce-interop",
        "compression.codec": codec,
        "linger.ms": 20,
        "acks": "all",
        "message.timeout.ms": 20000,
    }
    if "legacy" in flags:
        config.update(
            {"api.version.request": False, "broker.version.fallback": "0.9.0", "message.timeout.ms": 6000}
        )
    else:
        config["enable.idempotence"] = True
    if "mock" in flags:
        config["test.mock.num.brokers"] = 1
    producer = Producer(config)
    results = [None] * len(records)

    def report(i):
        def on_delivery(err, msg):
            if err is not None:
                results[i] = {"i": i, "err": f"{err.name()}: {err.str()}"}
            else:
                results[i] = {"i": i, "p": msg.partition(), "o": msg.offset(), "ts": msg.timestamp()[1]}

        return on_delivery

    for i, (partition, timestamp, key, value, headers) in enumerate(records):
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    timestamp=timestamp,
                    headers=headers,
                    on_delivery=report(i),
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    for i, r in enumerate(results):
        if r is None:
            r = {"i": i, "err": f"no delivery report ({left} messages still queued)"}
        print(json.dumps(r))
    if "mock" in flags:
        brokers = producer.list_topics(timeout=10).brokers.values()
        print(json.dumps({"serving": ",".join(f"{b.host}:{b.port}" for b in brokers)}), flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
