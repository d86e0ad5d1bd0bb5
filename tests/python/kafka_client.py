"""An independent Kafka client for the gridwatch-kafka tests: confluent-kafka
(librdkafka 2.x from its wheel) and fastavro, never Gridwatch's own code.

Run by connectors/gridwatch-kafka/tests/*.rs. Subcommands, each printing
JSON (one object, or one per line for `read`):

  create-topic --bootstrap B --topic T --partitions N
      creates T through the admin API (Tansu 0.6 does not auto-create).
  read --bootstrap B --topic T [--registry URL] [--schema-dir DIR]
      reads every message of every partition from the start to the high
      watermark, and prints per message: partition, offset, key (text),
      headers (text), value (hex). With --registry (the Apicurio v3 API root)
      it also checks the Apicurio v3 frame (magic 0, 4-byte content id),
      fetches that content id's schema from the registry and decodes the
      datum with fastavro ("decoded"); with --schema-dir it decodes the datum
      against the repo's .avsc files too ("decoded_local", named types
      resolved across files), and says whether both agree.
  produce --bootstrap B --topic T
      produces the JSON lines on stdin: {"key": text|null, "value_hex": hex,
      "partition": n|null}, then flushes; prints the count.
  committed --bootstrap B --topic T --group G
      prints the group's committed offset per partition.
"""

import argparse
import datetime
import glob
import io
import json
import os
import struct
import sys
import urllib.request

# Everything is on loopback: never send it through a proxy from the environment.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

import fastavro  # noqa: E402
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def die(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)],
        operation_timeout=15,
        request_timeout=15,
    )
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                die(f"create {topic}: {e}")
    print(json.dumps({"created": args.topic, "partitions": args.partitions}))


def local_schemas(schema_dir):
    """Parses every .avsc of schema_dir, resolving named types across files."""
    named = {}
    pending = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(schema_dir, "*.avsc")))]
    parsed = {}
    # Files may refer to types another file defines: parse until no progress.
    while pending:
        left = []
        for schema in pending:
            try:
                result = fastavro.parse_schema(schema, named_schemas=named)
                if isinstance(schema, dict):
                    parsed[schema.get("namespace", "") + "." + schema["name"]] = result
            except fastavro.schema.UnknownType:
                left.append(schema)
        if len(left) == len(pending):
            die(f"unresolvable named types in {schema_dir}")
        pending = left
    return parsed


def registry_schema(base, content_id, cache):
    if content_id not in cache:
        url = f"{base}/ids/contentIds/{content_id}"
        with urllib.request.urlopen(url, timeout=10) as response:
            cache[content_id] = fastavro.parse_schema(json.loads(response.read()))
    return cache[content_id]


def plain(value):
    """JSON-friendly datum: bytes as hex."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, datetime.datetime):
        # timestamp-millis: back to epoch milliseconds, as Gridwatch holds it.
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    return value


def read(args):
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "gridwatch-kafka-tests-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(args.topic, timeout=15)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        die(f"topic {args.topic}: {topic.error if topic else 'missing'}")
    assignment = []
    open_partitions = set()
    for partition in topic.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, partition), timeout=15)
        if high > low:
            assignment.append(TopicPartition(args.topic, partition, low))
            open_partitions.add(partition)
    local = local_schemas(args.schema_dir) if args.schema_dir else {}
    local_anomaly = local.get("io.gridwatch.AnomalyEvent")
    cache = {}
    if assignment:
        consumer.assign(assignment)
    idle = 0
    while open_partitions:
        message = consumer.poll(1.0)
        if message is None:
            idle += 1
            if idle > 30:
                die(f"read {args.topic}: no progress, still open: {sorted(open_partitions)}")
            continue
        idle = 0
        if message.error():
            if message.error().code() == -191:  # _PARTITION_EOF
                open_partitions.discard(message.partition())
                continue
            die(f"read {args.topic}: {message.error()}")
        value = message.value() or b""
        key = message.key()
        out = {
            "partition": message.partition(),
            "offset": message.offset(),
            "key": key.decode("utf-8", "replace") if key is not None else None,
            "headers": {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in (message.headers() or [])},
            "value": value.hex(),
        }
        if args.registry:
            if len(value) < 5 or value[0] != 0:
                die(f"partition {message.partition()} offset {message.offset()}: not an Apicurio v3 frame")
            (content_id,) = struct.unpack(">I", value[1:5])
            schema = registry_schema(args.registry, content_id, cache)
            datum = io.BytesIO(value[5:])
            out["content_id"] = content_id
            out["decoded"] = plain(fastavro.schemaless_reader(datum, schema))
            if datum.read():
                die(f"offset {message.offset()}: bytes left after the datum")
            if local_anomaly is not None:
                out["decoded_local"] = plain(fastavro.schemaless_reader(io.BytesIO(value[5:]), local_anomaly))
                out["agree"] = out["decoded_local"] == out["decoded"]
        print(json.dumps(out))
    consumer.close()


def produce(args):
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(str(err))

    count = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        kwargs = {"value": bytes.fromhex(item["value_hex"]), "on_delivery": report}
        if item.get("key") is not None:
            kwargs["key"] = item["key"].encode()
        if item.get("partition") is not None:
            kwargs["partition"] = item["partition"]
        producer.produce(args.topic, **kwargs)
        producer.poll(0)
        count += 1
    left = producer.flush(30)
    if left or failures:
        die(f"produce: {left} undelivered, failures: {failures[:3]}")
    print(json.dumps({"produced": count}))


def committed(args):
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group, "enable.auto.commit": False})
    metadata = consumer.list_topics(args.topic, timeout=15)
    partitions = [TopicPartition(args.topic, p) for p in metadata.topics[args.topic].partitions]
    result = consumer.committed(partitions, timeout=15)
    print(json.dumps({str(tp.partition): tp.offset for tp in result}))
    consumer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("create-topic", "read", "produce", "committed"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--topic", required=True)
        if name == "create-topic":
            p.add_argument("--partitions", type=int, default=1)
        if name == "read":
            p.add_argument("--registry")
            p.add_argument("--schema-dir")
        if name == "committed":
            p.add_argument("--group", required=True)
    args = parser.parse_args()
    {"create-topic": create_topic, "read": read, "produce": produce, "committed": committed}[args.command](args)


if __name__ == "__main__":
    main()
