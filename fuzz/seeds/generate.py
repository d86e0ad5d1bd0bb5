#!/usr/bin/env python3
"""Writes the committed seed inputs for the fuzz targets (fuzz/seeds/TARGET/).

Valid inputs, so libFuzzer starts from the shapes the decoders accept and
mutates from there; the malformed ones come from tests/corpus/bad-input/,
which scripts/fuzz passes to every target as well. Standard library only.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TS = 1_767_225_600_000


def zigzag(n):
    n = ((n << 1) ^ (n >> 63)) & ((1 << 64) - 1)
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return zigzag(len(x)) + x


def d(x):
    return struct.pack("<d", x)


def reading(meter="feeder-a-001", ts=TS, v=230.5, c=5.0, t=21.0, status=0):
    return s(meter) + zigzag(ts) + d(v) + d(c) + d(t) + zigzag(status)


def dead_letter():
    return (s("UNPARSEABLE") + s("not JSON") + s("validate") + zigzag(1) + s("readings")
            + zigzag(1) + zigzag(1) + zigzag(1) + zigzag(42) + s(b"\xff\x00")
            + zigzag(TS) + zigzag(1))


def frame(schema_id, datum, width=4):
    return b"\x00" + schema_id.to_bytes(width, "big") + datum


def line(**f):
    return json.dumps(f, separators=(",", ":")).encode()


def good(meter="m-1", **over):
    f = {"meter_id": meter, "timestamp": TS, "voltage": 230.1, "current": 5.0,
         "temperature": 21.0}
    f.update(over)
    return line(**f)


seeds = {
    "avro_sensor_reading": [reading(), reading(status=2, meter="")],
    "avro_chain_record": [zigzag(0) + reading(), zigzag(2) + dead_letter(), dead_letter()],
    "framing_header": [frame(41, reading()), frame(7, reading(), 8)],
    "json_reading": [good(), good(timestamp="2026-01-01T01:00:00.250+01:00", status="DEGRADED"),
                     b"2026-01-01T00:00:00Z"],
    "ndjson_body": [good() + b"\n" + good("m-2", status="FAILURE") + b"\r\n\n{bad\n"],
    "json_array_body": [b"[" + good() + b"," + good("m-2") + b",5]"],
    # flags byte, then the record: see fuzz_targets/validate_record.rs
    "validate_record": [
        b"\x00" + frame(41, reading()),
        b"\x00" + frame(42, reading() + s("L2")),
        b"\x00" + frame(43, s("m") + zigzag(5) + struct.pack("<f", 1.0) + zigzag(1)
                      + struct.pack("<f", 2.0) + zigzag(21) + zigzag(3)),
        b"\x00" + frame(44, zigzag(0) + reading()),
        b"\x01" + frame(41, reading(), 8),
        b"\x02" + struct.pack("<q", TS) + frame(41, reading()),
        b"\x00" + good(),
    ],
}
with open(os.path.join(ROOT, "schemas/avro/SensorReading.avsc"), "rb") as fh:
    schema = fh.read()
seeds["validate_writer_schema"] = [
    schema + b"\x00" + reading(),
    b'{"type":"record","name":"R","fields":[{"name":"meter_id","type":"string"}]}\x00'
    + s("m-1"),
]

for target, inputs in seeds.items():
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    for i, data in enumerate(inputs):
        with open(os.path.join(HERE, target, f"seed-{i}"), "wb") as fh:
            fh.write(data)
print(sum(len(v) for v in seeds.values()), "seeds")
